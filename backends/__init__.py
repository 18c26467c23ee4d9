"""ReRAM targets, the program format, and lowering of crossbar-level IR into programs."""
