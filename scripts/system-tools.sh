#!/bin/sh
# Debian tools GRACE needs beside its PyPI packages: iverilog (cocotb's second
# simulator) and openFPGALoader (board programming; the ULX3S build looks for it).
# Installs what is missing via apt-get when root; otherwise says what to run.
set -eu
missing=""
command -v iverilog >/dev/null 2>&1 || missing="$missing iverilog"
command -v openFPGALoader >/dev/null 2>&1 || missing="$missing openfpgaloader"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "grace setup: missing Debian package(s):$missing; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "grace setup: installing$missing with apt-get"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y -q $missing || { apt-get update -q && apt-get install -y -q $missing; }
