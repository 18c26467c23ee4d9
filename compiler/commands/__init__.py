"""The `rcc` commands, one module each: argparse, printing and writing files. Each command is
`<name>_command(argv) -> exit code` in `rcc.compiler.commands.<name>` and does its work through Python calls
of the layers below.

The table names each command's module instead of importing it: a command's module is imported only when
that command runs, so `rcc --help`, `rcc --version` and `rcc run` do not pay for onnx, onnxruntime or
scipy, which only compiling needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # one line for `rcc --help`

    def function(self) -> Callable[[list[str]], int]:
        """`<name>_command` of `rcc.compiler.commands.<name>` (imported now)."""
        return getattr(importlib.import_module(f"{__name__}.{self.name}"), f"{self.name}_command")


COMMANDS: dict[str, Command] = {command.name: command for command in (
    Command("compile", "compile an ONNX model into a program for a ReRAM crossbar accelerator (the default command)"),
    Command("run", "execute a compiled program (.rccp) on the machine model"),
    Command("opt", "run passes on IR text (with its .npz weights) and print or write the result"),
    Command("prune", "magnitude-prune an ONNX model's weights (unstructured or crossbar-grained) into a new model"),
    Command("eval", "run a data set through the machine (with device non-idealities, over seeds) and "
                    "onnxruntime; report accuracy and SNR"),
    Command("sweep", "explore a design space: compile, cost and verify many target/compile settings on Dask"),
)}
