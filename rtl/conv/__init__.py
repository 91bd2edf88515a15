"""The convolution engine, one part per file; `ConvEngine` (engine.py) joins them."""

from rtl.conv.engine import ISSUE_TO_TREE, ConvEngine

__all__ = ["ISSUE_TO_TREE", "ConvEngine"]
