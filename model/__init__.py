"""The AGC decoder: float model, codec, quantization and the fixed-point reference."""
