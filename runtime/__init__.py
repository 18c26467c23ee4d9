"""The functional machine model: executes rcc programs bit-accurately and counts what the chip does."""
