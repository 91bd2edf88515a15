"""One thin top per FPGA board: build, program and report."""
