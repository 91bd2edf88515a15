"""Amaranth components of the GRACE accelerator."""
