"""A QuantizeLinear and the DequantizeLinear operands of the float op before it: what `fuse-qdq`'s matchers
(`fuse_qdq.py`, `fuse_qdq_tables.py`, `fuse_qdq_deconv.py`) read to replace a QDQ group with the integer
kernel onnxruntime runs, and the replacement of a product group onnxruntime runs as a float kernel
(`float_kernel_ops`: the exact integer product rescaled once, `nn.rescale_quantize`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcc.ir.builder import make_op
from rcc.ir.core import Module, Op, Value
from rcc.ir.ops.nn_quant import dequantize_linear


@dataclass(frozen=True)
class Dequantized:
    """A DequantizeLinear's integer operand and its constant parameters."""

    x: Value
    scale: Value
    zero: Value
    axis: int
    bits: int = 8

    @property
    def per_tensor(self) -> bool:
        return self.scale.type.size == 1

    @property
    def per_axis(self) -> bool:
        """One scale per index of `axis` (not per tensor, not blocked)."""
        return self.scale.type.rank == 1 and self.scale.type.size > 1


def dequantized(value: Value) -> Dequantized | None:
    """The DequantizeLinear that produces `value`, if it does, with constant scale and zero point."""
    op = value.producer
    if op is None or op.opname != "nn.dequantize_linear" or not all(v.is_constant for v in op.operands[1:]):
        return None
    return Dequantized(op.operands[0], op.operands[1], op.operands[2], op.attrs["axis"], op.attrs["bits"])


def float_bias(value: Value | None) -> np.ndarray | None | bool:
    """A bias as float32 values: None without one, False when it is neither a float constant nor the
    dequantization of a constant."""
    if value is None:
        return None
    if value.is_constant and value.type.dtype == "f32":
        return value.data.reshape(-1)
    bias = dequantized(value)
    if bias is None or not bias.x.is_constant:
        return False
    return dequantize_linear(bias.x.data, bias.scale.data, bias.zero.data, axis=bias.axis).reshape(-1)


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

    def onnxruntime_dtype(self, value: Value) -> str:
        """The dtype onnxruntime computes `value` in. Its int8 → uint8 rewrite (QDQS8ToU8Transformer) turns an
        int8 QuantizeLinear → DequantizeLinear pair into uint8 (zero point + 128) when that DequantizeLinear
        is the QuantizeLinear's only reader, after it gave every reader of a DequantizeLinear its own copy
        (EnsureUniqueDQForNodeUnit): so only when one float op (or the graph's outputs alone) reads the
        dequantized value and the integers are no graph output. Constants and graph inputs stay int8. (Readers other than DequantizeLinear are integer
        ops `fuse-qdq` made: not counted.)"""
        if value.type.dtype != "i8" or value.producer is None or value.is_constant or id(value) in self.outputs:
            return value.type.dtype
        dequantizes = [op for op in self.users.get(value, []) if op.opname == "nn.dequantize_linear"]
        if len(dequantizes) != 1:
            return "i8"
        result = dequantizes[0].result
        consumers = len(self.users.get(result, [])) + (id(result) in self.outputs)  # a graph output counts as one
        return "u8" if consumers == 1 else "i8"

    def onnxruntime_fuses(self, activations: list[Dequantized]) -> bool:
        """Whether onnxruntime's QDQ selectors replace the group by an integer kernel: they ask the dequantized
        activations and the result to be of one dtype after its int8 → uint8 rewrite; otherwise the group
        stays DequantizeLinear → float op → QuantizeLinear."""
        dtypes = {self.onnxruntime_dtype(d.x) for d in activations}
        return dtypes == {self.onnxruntime_dtype(self.quantize.result)}

    @property
    def scale(self) -> Value:
        return self.quantize.operands[1]

    @property
    def zero(self) -> Value:
        return self.quantize.operands[2]


def float_kernel_ops(group: QdqGroup, acc: Op, x: Dequantized, w: Dequantized, bias: np.ndarray | None,
                     axis: int, repeat: int = 1) -> list[Op]:
    """`acc` (an exact integer product of x and w) and `nn.rescale_quantize` of it: quantize_linear(
    float32(acc) · float32(sx · sw) + bias): what onnxruntime's float kernel computes for the group,
    rounded once instead of in its summation order. `repeat`: the per-channel scales repeat that many
    times along `axis` (a grouped transposed convolution's groups)."""
    scale = np.multiply(np.float32(x.scale.data.reshape(-1)[0]), w.scale.data.reshape(-1).astype(np.float32),
                        dtype=np.float32)
    if scale.size > 1:
        scale = np.tile(scale, repeat)
    operands = [acc.result, group.constant("scale", scale), group.scale, group.zero]
    if bias is not None:
        operands.append(group.constant("bias", bias.astype(np.float32)))
    return [acc, make_op("nn.rescale_quantize", operands, {"axis": axis}, [group.name])]
