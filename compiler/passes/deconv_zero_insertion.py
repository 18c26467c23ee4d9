"""`deconv-zero-insertion`: lower a transposed convolution to zero insertion, padding and one stride-1 conv.

This is the baseline that prior ReRAM accelerators run (RED's pixel-wise mapping improves on it): the
input gets s−1 zeros between pixels, is padded by d·(k−1) − p on each side (plus output_padding at the
end; negative amounts crop), and an ordinary convolution with the flipped, in/out-swapped kernel slides
over it. For stride s about (s²−1)/s² of its multiply-accumulates read inserted zeros.

    %y = nn.conv_transpose2d(%x, %w, %b) {strides = [2, 2], pads = [1, 1, 1, 1], ...} : f32[1,4,8,8]
        →
    %y.zeros = nn.zero_insert(%x) {strides = [2, 2]} : f32[1,8,7,7]
    %y.padded = nn.pad(%y.zeros) {pads = [0, 0, 2, 2, 0, 0, 2, 2], value = 0.0} : f32[1,8,11,11]
    %y = nn.conv2d(%y.padded, %w.flipped, %b) {strides = [1, 1], pads = [0, 0, 0, 0], ...} : f32[1,4,8,8]
    with %w [C, M/g, kh, kw] regrouped to %w.flipped [M, C/g, kh, kw] and reversed along kh and kw.

Only transposed convolutions whose weight is a constant are rewritten; the bias passes through as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, NameAllocator, Op, Value
from rcc.ir.ops.nn_linear import flipped_kernel


def conv_pads(op: Op) -> list[int]:
    """nn.pad's [begins..., ends...] over NCHW that turns the zero-inserted input into the conv's input."""
    _, _, kh, kw = op.operands[1].type.shape
    (dh, dw), pads, extra = op.attrs["dilations"], op.attrs["pads"], op.attrs["output_padding"]
    begins = [dh * (kh - 1) - pads[0], dw * (kw - 1) - pads[1]]
    ends = [dh * (kh - 1) - pads[2] + extra[0], dw * (kw - 1) - pads[3] + extra[1]]
    return [0, 0, *begins, 0, 0, *ends]


def _lower(op: Op, weight: Value, names: NameAllocator) -> list[Op]:
    """zero_insert → pad → conv2d replacing `op`; the conv2d keeps the original result name."""
    def fresh(suffix: str) -> str:
        return names.fresh(f"{op.result.name}.{suffix}")

    x, attrs = op.operands[0], op.attrs
    lowered: list[Op] = []
    if tuple(attrs["strides"]) != (1, 1):
        lowered.append(make_op("nn.zero_insert", [x], {"strides": attrs["strides"]}, [fresh("zeros")]))
        x = lowered[-1].result
    pads = conv_pads(op)
    if any(pads):
        lowered.append(make_op("nn.pad", [x], {"pads": pads}, [fresh("padded")]))
        x = lowered[-1].result
    conv_attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": attrs["dilations"], "group": attrs["group"]}
    lowered.append(make_op("nn.conv2d", [x, weight, *op.operands[2:]], conv_attrs, [op.result.name]))
    return lowered


@dataclass
class DeconvZeroInsertion(Pass):
    name = "deconv-zero-insertion"

    def run(self, module: Module, ctx: PassContext) -> bool:
        deconvs = [op for op in module.ops if op.opname == "nn.conv_transpose2d" and op.operands[1].is_constant]
        names = module.name_allocator()
        flipped: dict[tuple[int, int], Value] = {}  # (id of the weight, group) → its conv2d weight
        for op in deconvs:
            weight, group = op.operands[1], op.attrs["group"]
            key = (id(weight), group)
            if key not in flipped:
                name = names.fresh(weight.name + ".flipped")
                flipped[key] = module.add_constant(name, flipped_kernel(weight.data, group))
            lowered = _lower(op, flipped[key], names)
            module.replace_op(op, lowered)
            ctx.report.removed.append({"op": op.opname, "value": op.result.name})
        if deconvs:
            module.drop_unused_constants()
        return bool(deconvs)
