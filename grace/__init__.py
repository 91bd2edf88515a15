"""GRACE: an open hardware generator for generative talking-face video decoders."""

__version__ = "0.1.0"
