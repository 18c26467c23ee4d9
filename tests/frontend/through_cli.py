"""Compiling a model the way a user does, through `rcc MODEL --verify`, for tests that need the program."""

from __future__ import annotations

from pathlib import Path

from rcc.backends.program import Program, load_program
from rcc.compiler.cli import main


def compile_verified(model: Path, precision: str, directory: Path) -> Program:
    """The program `rcc MODEL --precision P --verify` writes; asserts the machine verified against onnxruntime."""
    output = directory / f"{model.stem}.{precision}.rccp"
    code = main([str(model), "--precision", precision, "--verify", "-q", "-o", str(output)])
    assert code == 0, f"rcc {model.name} --precision {precision} --verify exited with {code}"
    return load_program(output)
