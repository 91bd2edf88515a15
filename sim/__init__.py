"""cocotb testbenches, the runner helper and bus/memory models."""
