"""`lower-quantized`: map a quantized model's integer products (`nn.conv_integer`, `nn.matmul_integer` with
constant weights) onto crossbars with the model's own integers: no re-quantisation, no calibration.

    %acc = nn.conv_integer(%xq, %wq, %zx, %zw) {pads = [1, 1, 1, 1], ...} : i32[1,8,16,16]
        →
    %acc.x    = vec.subtract_zero(%xq, %zx)              : i32[1,3,16,16]   xq − zx
    %acc.cols = vec.im2col(%acc.x) {kernel = [3, 3], ...}  : i32[256,27]      pads are zx, i.e. 0 here
    %acc.mvm  = xbar.mvm(%acc.cols, %acc.wq) {weight_bits = 8, input_bits = 8, input_signed = false, ...}
    %acc.nhwc = nn.reshape(%acc.mvm) ; %acc.i64 = nn.transpose(%acc.nhwc)   : i64[1,8,16,16]
    (+ vec.accumulators_i32 when a reader needs ConvInteger's int32 tensor)

The weights on the arrays are wq − zw; `weight_bits` is the fewest signed bits that hold them in the
arrays' symmetric range (8 for onnxruntime's symmetric int8 weights; 5 for int4/uint4 weights, whose
wq − zw reach −8, 4 when they stay within ±7) and `input_bits`/`input_signed` the fewest that hold
xq − zx, so the bit widths follow the model, not the target's `--weight-bits`/`--input-bits` (a zero point
computed at run time, DynamicQuantizeLinear's, may be any of the dtype's values: 9 signed input bits). A 4-bit
weight's magnitude (4 bits) takes half the slices of an 8-bit one (7 bits): 2 columns of 2-bit cells
instead of 4, so 4-bit layers need about half the arrays (LeNet-5: 28 instead of 46). With a lossless
ADC the arrays give the exact integer accumulators, which `nn.requantize` or `nn.rescale_quantize`
(vector unit) turns into onnxruntime's output bit for bit. Products reading one integer weight tensor (tied
weights) with the same input width run on one set of arrays. Runs after `lower-to-xbar` and numbers its arrays after that pass's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rcc.backends.mapping import CrossbarMapping
from rcc.backends.target import Target
from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, Op, Value
from rcc.ir.ops.nn_linear import conv_weight_matrix
from rcc.ir.ops.nn_quant import integer_limits, shifted
from rcc.ir.ops.xbar import quantize_limits

_PRODUCTS = ("nn.conv_integer", "nn.matmul_integer")


def signed_bits_for(magnitude: int) -> int:
    """The fewest signed bits whose symmetric range ±(2^(b−1)−1) holds `magnitude`."""
    bits = 2
    while quantize_limits(bits, True)[1] < magnitude:
        bits += 1
    return bits


def input_width(dtype: np.dtype, zero: int) -> tuple[int, bool]:
    """(input_bits, input_signed) holding every xq − zero of a quantized dtype."""
    low, high = integer_limits(dtype)
    low, high = low - zero, high - zero
    if low >= 0:
        bits = 1
        while quantize_limits(bits, False)[1] < high:
            bits += 1
        return bits, False
    return signed_bits_for(max(-low, high)), True


def any_zero_width(dtype: np.dtype) -> tuple[int, bool]:
    """(input_bits, input_signed) holding xq − zero for every zero point of the dtype (one computed at run time):
    9 signed bits for uint8 and int8."""
    low, high = integer_limits(dtype)
    return signed_bits_for(high - low), True


def is_mappable_product(op: Op) -> bool:
    """An integer conv or matmul whose weights (and their zero points) are constants; the input's zero point may
    be computed at run time (DynamicQuantizeLinear)."""
    return op.opname in _PRODUCTS and op.operands[1].is_constant and all(v.is_constant for v in op.operands[3:])


def first_free_array(module: Module) -> int:
    return max((op.attrs["first_array"] + op.attrs["arrays"] for op in module.ops if op.opname == "xbar.mvm"),
               default=0)


class _ProductLowering:
    """The ops replacing one integer product."""

    def __init__(self, module: Module, op: Op, target: Target, first_array: int,
                 programmed: dict[tuple, tuple[Value, int]]) -> None:
        self.module, self.op, self.target, self.first_array = module, op, target, first_array
        self.programmed = programmed   # weights already on arrays (tied weights): their constant and first array
        self.name = op.result.name
        self.created: list[Op] = []

    def emit(self, opname: str, operands: list[Value], attrs: dict, suffix: str) -> Value:
        new = make_op(opname, operands, attrs, [self.module.fresh_name(f"{self.name}.{suffix}")])
        self.module.ops.insert(self.module.ops.index(self.op), new)
        self.created.append(new)
        return new.result

    def weights(self) -> np.ndarray:
        """wq − zw as the [G, K, M] matrices the arrays hold."""
        op = self.op
        zero = op.operands[3].data if len(op.operands) > 3 else None
        if op.opname == "nn.conv_integer":
            return conv_weight_matrix(shifted(op.operands[1].data, zero, 0), op.attrs["group"])
        return shifted(op.operands[1].data, zero, -1)[None]

    def lower(self) -> tuple[Value, int]:
        """The i64 accumulators in the product's layout, and the arrays it adds (none on arrays already holding its
        weights: a tied weight read by several products, which run on them in turn)."""
        op = self.op
        x = op.operands[0]
        zero = op.operands[2] if len(op.operands) > 2 else self.module.add_constant(
            self.module.fresh_name(f"{self.name}.x_zero"), np.zeros((), x.type.np_dtype))
        input_bits, signed = input_width(x.type.np_dtype, int(zero.data.reshape(-1)[0])) if zero.is_constant \
            else any_zero_width(x.type.np_dtype)
        matrix = self.weights()
        weight_bits = signed_bits_for(int(np.abs(matrix).max(initial=0)))
        stored = matrix.astype(np.int8 if weight_bits <= 8 else np.int16)
        target = dataclasses.replace(self.target, weight_bits=weight_bits, input_bits=input_bits)
        mapping = CrossbarMapping.lowered(target, stored.shape, signed)
        rows = self.emit("vec.subtract_zero", [x, zero], {}, "x")
        if op.opname == "nn.conv_integer":
            attrs = {k: op.attrs[k] for k in ("strides", "pads", "dilations")}
            rows = self.emit("vec.im2col", [rows], {"kernel": op.operands[1].type.shape[2:], **attrs}, "cols")
        elif x.type.rank != 2:
            rows = self.emit("nn.reshape", [rows], {"shape": (x.type.size // x.type.shape[-1], x.type.shape[-1])},
                             "vectors")
        w_zero = op.operands[3].data.tobytes() if len(op.operands) > 3 else b""   # the frontend's copy per node
        key = (op.opname, op.attrs.get("group"), op.operands[1].name, w_zero, input_bits, signed)
        if key not in self.programmed:
            self.programmed[key] = (self.module.add_constant(self.module.fresh_name(f"{self.name}.wq"),
                                                             np.ascontiguousarray(stored)), self.first_array)
            added = mapping.arrays
        else:
            added = 0
        weights, first_array = self.programmed[key]
        attrs = {"layer": self.name, **mapping.attrs(), "first_array": first_array}
        acc = self.emit("xbar.mvm", [rows, weights], attrs, "mvm")
        shape = op.result.type.shape
        if op.opname == "nn.conv_integer":
            n, m, oh, ow = shape
            nhwc = self.emit("nn.reshape", [acc], {"shape": (n, oh, ow, m)}, "nhwc")
            acc = self.emit("nn.transpose", [nhwc], {"perm": (0, 3, 1, 2)}, "i64")
        elif len(shape) != 2:
            acc = self.emit("nn.reshape", [acc], {"shape": shape}, "i64")
        return acc, added


@dataclass
class LowerQuantized(Pass):
    name = "lower-quantized"

    def run(self, module: Module, ctx: PassContext) -> bool:
        products = [op for op in module.ops if is_mappable_product(op)]
        next_array = first_free_array(module)
        outputs = {id(v) for v in module.outputs}
        programmed: dict[tuple, tuple[Value, int]] = {}
        for op in products:
            lowering = _ProductLowering(module, op, ctx.target, next_array, programmed)
            acc, arrays = lowering.lower()
            readers = module.users().get(op.result, [])
            if op.result.type.dtype == "i32" and (id(op.result) in outputs
                                                  or any(r.opname != "nn.requantize" for r in readers)):
                acc = lowering.emit("vec.accumulators_i32", [acc], {}, "i32")
            module.ops.remove(op)
            module.replace_uses(op.result, acc)
            acc.name, op.result.name = op.result.name, acc.name
            ctx.report.removed.append({"op": op.opname, "value": acc.name, "arrays": arrays})
            next_array += arrays
        module.drop_unused_constants()
        ctx.report.figures.update({"layers": len(products), "arrays": sum(r["arrays"] for r in ctx.report.removed)})
        return bool(products)
