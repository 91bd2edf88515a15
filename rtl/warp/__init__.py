"""The warp engine: bilinear grid sampling by a flow, with the fused occlusion multiply."""

from rtl.warp.engine import WarpEngine

__all__ = ["WarpEngine"]
