"""`lower-to-xbar`: quantise and map every weighted op onto crossbar arrays (the crossbar-level IR).

    %y = nn.conv2d(%x, %w, %b) {strides = [1, 1], pads = [1, 1, 1, 1], ...} : f32[1,8,16,16]
        →
    %y.xq   = vec.quantize(%x) {scale = 0.0123, bits = 8, signed = true}     : i32[1,3,16,16]
    %y.cols = vec.im2col(%y.xq) {kernel = [3, 3], ...}                      : i32[256,27]
    %y.acc  = xbar.mvm(%y.cols, %y.wq) {xbar_rows = 128, row_tiles = 1, ...} : i64[256,8]
    %y.rows = vec.dequantize(%y.acc, %y.w_scale, %b) {input_scale = 0.0123} : f32[256,8]
    %y.nhwc = nn.reshape(%y.rows) {shape = [1, 16, 16, 8]}                  : f32[1,16,16,8]
    %y      = nn.transpose(%y.nhwc) {perm = [0, 3, 1, 2]}                    : f32[1,8,16,16]

Quantisation (integer mode; the scheme is in `compiler/lowering.py`), with the target and calibration
inputs of the `PassContext`:
- weights symmetric per output channel; activations feeding a crossbar per tensor, their ranges
  calibrated on sample inputs (`compiler/calibrate.py`);
- activations are quantised before im2col (a padded zero quantises to 0), once per tensor and scale,
  so convolutions reading the same tensor share one `vec.quantize`;
- the crossbar produces exact integer accumulators (with a lossless ADC); `vec.dequantize` applies
  s_x · s_w[m] and the float bias.
Float mode (the context's precision, or the option `precision=float`) keeps float weights and activations on the same mapping: no
quantisation, ideal analog arithmetic, so any difference from the graph-level IR is a mapping error.

Ops that read the same weight constant with the same target (a recurrent layer's steps, all reading R) share
arrays: the first is programmed, the later ones run on its arrays in turn (time-multiplexed; their `xbar.mvm`
reads the same weight constants and states the same `first_array`, and adds none of its own).

Only `nn.conv2d` and `nn.matmul` whose weights are constants map onto arrays (run `deconv-zero-insertion`
first for transposed convolutions); a matmul of two activations stays at graph level for `place-attention`
(the vector unit, or crossbars written at run time, as the target's `attention` says).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcc.backends.mapping import CrossbarMapping
from rcc.backends.target import Target
from rcc.compiler.lowering import input_quantization, is_mappable, quantize_weights
from rcc.compiler.pass_context import PRECISIONS, PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, NameAllocator, Op, Value
from rcc.ir.errors import RccError
from rcc.ir.ops.nn_linear import weight_matrix
from rcc.ir.optable import OPS


def inserted_zero_macs(op: Op) -> int:
    """MACs a conv spends on zeros that `nn.zero_insert` put between pixels (through an optional pad):
    the 1-channel im2col of a mask (pixels 1, inserted zeros 0, pads −1) counts them per channel."""
    source = op.operands[0].producer
    pads = None
    if source is not None and source.opname == "nn.pad":
        pads, source = source.attrs["pads"], source.operands[0].producer
    if op.opname != "nn.conv2d" or source is None or source.opname != "nn.zero_insert":
        return 0
    n, _, h, w = source.operands[0].type.shape
    mask = OPS["nn.zero_insert"].run([np.ones((1, 1, h, w), np.float32)], source.attrs)[0]
    if pads is not None:
        mask = OPS["nn.pad"].run([mask], {"pads": pads, "value": -1.0})[0]
    kernel = op.operands[1].type.shape
    columns = OPS["vec.im2col"].run([mask], {"kernel": kernel[2:], "strides": op.attrs["strides"],
                                            "pads": op.attrs["pads"], "dilations": op.attrs["dilations"]})[0]
    return int(np.count_nonzero(columns == 0)) * n * kernel[1] * kernel[0]  # per channel × C/g × M


@dataclass
class LowerToXbar(Pass):
    name = "lower-to-xbar"
    precision: str | None = field(default=None, metadata={"choices": PRECISIONS})  # None: the context's

    def run(self, module: Module, ctx: PassContext) -> bool:
        ctx.graph = module.copy()
        mapped = [op for op in module.ops if is_mappable(op)]
        precision = self.precision or ctx.precision
        check_layer_widths(mapped, precision, ctx)
        if not mapped:
            return False
        sources = {op: op.operands[0] for op in mapped}  # before earlier lowerings rewire the operands
        widths = {op: ctx.input_bits_of(op.result.name) for op in mapped}
        weight_widths = {op: ctx.weight_bits_of(op.result.name) for op in mapped}
        ranges = ctx.layer_ranges(module, sources, widths) if precision == "int" else {}
        names = module.name_allocator()
        quantized_inputs: dict[tuple, Value] = {}
        programmed: dict[tuple, tuple[Value, Value, int, str]] = {}  # weights on arrays: constants, first array, layer
        next_array = 0
        new_ops: list[Op] = []
        for op in module.ops:
            if op not in mapped:
                new_ops.append(op)
                continue
            lowering = _Lowering(module, op, ctx.layer_target(op.result.name), precision, names, next_array,
                                 quantized_inputs, programmed)
            created = lowering.ops(ranges.get(op))
            ctx.report.removed.append({"op": op.opname, "value": op.result.name, "arrays": lowering.new_arrays,
                                       **({"shares": lowering.shares} if lowering.shares else {})})
            new_ops.extend(created)
            module.replace_uses(op.result, created[-1].result)
            next_array += lowering.new_arrays
        module.ops = new_ops
        module.drop_unused_constants()
        ctx.report.figures.update({"layers": len(mapped), "arrays": next_array, "precision": precision})
        wide = {op.result.name: bits for op, bits in widths.items() if bits != ctx.target.input_bits}
        if wide and precision == "int":
            ctx.report.figures["layer_input_bits"] = wide
        wide = {op.result.name: bits for op, bits in weight_widths.items() if bits != ctx.target.weight_bits}
        if wide and precision == "int":
            ctx.report.figures["layer_weight_bits"] = wide
        return True


def check_layer_widths(mapped: list[Op], precision: str, ctx: PassContext) -> None:
    """RccError naming the first `--layer-input-bits` or `--layer-weight-bits` entry that widens nothing lowered
    here."""
    for flag, table in (("--layer-input-bits", ctx.layer_input_bits), ("--layer-weight-bits", ctx.layer_weight_bits)):
        if table:
            _check_widths(flag, table, mapped, precision, ctx)


def _check_widths(flag: str, table: dict[str, int], mapped: list[Op], precision: str, ctx: PassContext) -> None:
    if precision != "int":
        raise RccError(f"{flag}: float precision has no {flag.split('-')[3]} widths (use --precision int)")
    used = {ctx.width_key(op.result.name, table) for op in mapped}
    unknown = [layer for layer in table if layer not in used]
    for layer in unknown:
        named = [op.result.name for op in mapped if (op.result.name + ".").startswith(layer + ".")]
        if named:
            longer = sorted({ctx.width_key(name, table) for name in named})
            raise RccError(f"{flag} {layer}={table[layer]}: every layer it names has a longer entry of its own "
                           f"({', '.join(longer[:4])}{', ...' if len(longer) > 4 else ''}), so it sets nothing")
    if unknown:
        names = ", ".join(op.result.name for op in mapped[:8]) + (", ..." if len(mapped) > 8 else "")
        raise RccError(f"{flag}: no float crossbar layer named {unknown[0]!r} " +
                       (f"(the layers: {names})" if mapped else
                        "(the model has no float conv or matmul with constant weights; a quantized model's "
                        "layers keep the widths of its own integers)"))


class _Lowering:
    """The ops replacing one weighted op."""

    def __init__(self, module: Module, op: Op, target: Target, precision: str, names: NameAllocator,
                 first_array: int, quantized_inputs: dict[tuple, Value],
                 programmed: dict[tuple, tuple[Value, Value, int, str]]) -> None:
        self.module, self.op, self.target, self.precision = module, op, target, precision
        self.names, self.first_array, self.quantized_inputs = names, first_array, quantized_inputs
        self.programmed = programmed
        self.name = op.result.name
        self.created: list[Op] = []
        self.new_arrays = 0   # arrays this op adds (none when it runs on an earlier op's)
        self.shares: str | None = None   # the layer whose arrays it runs on

    def fresh(self, suffix: str) -> str:
        return self.names.fresh(f"{self.name}.{suffix}")

    def emit(self, opname: str, operands: list[Value], attrs: dict, suffix: str | None = None) -> Value:
        new = make_op(opname, operands, attrs, [self.fresh(suffix) if suffix else self.name])
        self.created.append(new)
        return new.result

    def constant(self, suffix: str, data: np.ndarray) -> Value:
        return self.module.add_constant(self.fresh(suffix), data)

    def ops(self, activation_range: tuple[float, float] | None) -> list[Op]:
        op, target = self.op, self.target
        weights = weight_matrix(op)
        groups, k, m = weights.shape
        bias = op.operands[2] if op.opname == "nn.conv2d" and len(op.operands) > 2 else None
        x = op.operands[0]
        if self.precision == "int":
            x_scale, signed = input_quantization(*activation_range, target.input_bits)
            x = self.quantized(x, {"scale": x_scale, "bits": target.input_bits, "signed": signed})
        else:
            x_scale, signed = 1.0, True
        rows = self.rows(x)
        plan = CrossbarMapping.lowered(target, (groups, k, m), signed)
        key = (op.opname, op.attrs.get("group"), op.operands[1].name, target, signed)
        if key in self.programmed:
            wq, w_scale, first_array, self.shares = self.programmed[key]
        else:
            if self.precision == "int":
                quantized, scales = quantize_weights(weights, target.weight_bits)
            else:
                quantized, scales = weights.astype(np.float32), np.ones(groups * m, np.float32)
            wq, w_scale = self.constant("wq", np.ascontiguousarray(quantized)), self.constant("w_scale", scales)
            first_array, self.new_arrays = self.first_array, plan.arrays
            self.programmed[key] = (wq, w_scale, first_array, self.name)
        mapping = {"layer": self.name, **plan.attrs(), "first_array": first_array,
                   "zero_macs": inserted_zero_macs(op)}
        acc = self.emit("xbar.mvm", [rows, wq], mapping, "acc")
        operands = [acc, w_scale] + ([bias] if bias is not None else [])
        out = self.emit("vec.dequantize", operands, {"input_scale": x_scale}, "rows")
        self.restore_shape(out)
        return self.created

    def quantized(self, x: Value, attrs: dict) -> Value:
        """`vec.quantize` of x with `attrs`, shared with earlier layers that quantised x the same way."""
        key = (id(x), attrs["scale"], attrs["bits"], attrs["signed"])
        if key not in self.quantized_inputs:
            self.quantized_inputs[key] = self.emit("vec.quantize", [x], attrs, "xq")
        return self.quantized_inputs[key]

    def rows(self, x: Value) -> Value:
        """The activation as a matrix whose rows are the vectors fed to the arrays."""
        op = self.op
        if op.opname == "nn.conv2d":
            kernel = op.operands[1].type.shape[2:]
            attrs = {"kernel": kernel, "strides": op.attrs["strides"], "pads": op.attrs["pads"],
                     "dilations": op.attrs["dilations"]}
            return self.emit("vec.im2col", [x], attrs, "cols")
        if x.type.rank == 2:
            return x
        return self.emit("nn.reshape", [x], {"shape": (x.type.size // x.type.shape[-1], x.type.shape[-1])}, "vectors")

    def restore_shape(self, out: Value) -> None:
        """Bring [P, M] back to the original result's shape, finishing with the original name."""
        final = self.op.result.type
        last = self.created[-1]
        if final.rank == 2 and self.op.opname == "nn.matmul":
            last.results[0].name = self.name
            return
        if self.op.opname == "nn.matmul":
            self.emit("nn.reshape", [out], {"shape": final.shape})
            return
        n, m, oh, ow = final.shape
        nhwc = self.emit("nn.reshape", [out], {"shape": (n, oh, ow, m)}, "nhwc")
        self.emit("nn.transpose", [nhwc], {"perm": (0, 3, 1, 2)})
