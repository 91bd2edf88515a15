"""Shared definitions at the bottom of the project: parameters, boards, hardware limits.

Every module in this package imports only the standard library, so `model/`,
`rtl/`, `sim/`, `boards/` and the CLI (`grace/`) may all use them without one
layer naming another (tests/test_layering.py enforces it).
"""
