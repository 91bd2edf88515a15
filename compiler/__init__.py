"""The compiler: the quantized decoder lowered to a co-processor program (docs/isa.md)."""
