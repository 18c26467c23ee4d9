"""A QuantizeLinear and the DequantizeLinear operands of the float op before it: what `fuse-qdq`'s matchers
(`fuse_qdq.py`, `fuse_qdq_tables.py`) read to replace a QDQ group with the integer kernel onnxruntime runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcc.ir.core import Module, Op, Value


@dataclass(frozen=True)
class Dequantized:
    """A DequantizeLinear's integer operand and its constant parameters."""

    x: Value
    scale: Value
    zero: Value
    axis: int

    @property
    def per_tensor(self) -> bool:
        return self.scale.type.size == 1


def dequantized(value: Value) -> Dequantized | None:
    """The DequantizeLinear that produces `value`, if it does, with constant scale and zero point."""
    op = value.producer
    if op is None or op.opname != "nn.dequantize_linear" or not all(v.is_constant for v in op.operands[1:]):
        return None
    return Dequantized(op.operands[0], op.operands[1], op.operands[2], op.attrs["axis"])


class QdqGroup:
    """One QuantizeLinear and the module around it, with the helpers to build its replacement."""

    def __init__(self, module: Module, quantize: Op, users: dict[Value, list[Op]]) -> None:
        self.module, self.quantize, self.users = module, quantize, users
        self.outputs = {id(v) for v in module.outputs}
        self.name = quantize.result.name

    def only_read_by_quantize(self, value: Value) -> bool:
        return len(self.users.get(value, [])) == 1 and id(value) not in self.outputs

    def constant(self, suffix: str, data: np.ndarray) -> Value:
        return self.module.add_constant(self.module.fresh_name(f"{self.name}.{suffix}"), data)

    @property
    def scale(self) -> Value:
        return self.quantize.operands[1]

    @property
    def zero(self) -> Value:
        return self.quantize.operands[2]
