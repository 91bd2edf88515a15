"""The element-wise engine: runtime-loaded tables and per-channel affine, lanes in parallel."""

from rtl.act.engine import ActEngine

__all__ = ["ActEngine"]
