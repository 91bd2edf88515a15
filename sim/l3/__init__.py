"""L3, the instruction-level simulator: the engines' state and what each instruction does to it."""
