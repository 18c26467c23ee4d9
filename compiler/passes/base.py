"""What a pass is: a small named object with its options as dataclass fields.

`run(module)` rewrites the module in place and returns whether it changed anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rcc.ir.core import Module


@dataclass
class Pass:
    name: ClassVar[str] = ""

    def run(self, module: Module) -> bool:
        raise NotImplementedError
