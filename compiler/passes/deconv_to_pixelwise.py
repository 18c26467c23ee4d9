"""`deconv-to-pixelwise`: RED's zero-free deconvolution, one stride-1 conv per output phase, interleaved.

Per spatial axis (stride s, dilation d, kernel k, begin pad p) output o = ρ + s·q of phase ρ ∈ [0, s) sums
x[q + (ρ + p − d·t)/s]·W[t] over the taps T_ρ = {t < k : d·t ≡ ρ + p (mod s)}. With g = gcd(d, s) the taps
of a phase step by s/g and their input offsets by d/g, so each phase is an ordinary stride-1 convolution
over the ORIGINAL input with the reversed, in/out-swapped sub-kernel W[:, :, T_ρh, T_ρw], dilation d/g and
explicit pads (nn.pad crops where the pads would be negative). Taps that only ever read padding are left
out; a phase left without taps (k < s, g ∤ ρ + p) is the bias, or zeros, as a constant. `nn.interleave`
scatters the phases back with y[ρh::sh, ρw::sw], which also covers output_padding and odd output sizes.

    %y = nn.conv_transpose2d(%x, %w, %b) {strides = [2, 2], pads = [1, 1, 1, 1], ...} : f32[1,4,8,8]
        →
    %y.phase0_0 = nn.conv2d(%x, %w.phase0_0, %b) {strides = [1, 1], pads = [1, 1, 0, 0], ...} : f32[1,4,4,4]
    %y.phase0_1 = nn.conv2d(%x, %w.phase0_1, %b) {strides = [1, 1], pads = [1, 0, 0, 1], ...} : f32[1,4,4,4]
    %y.phase1_0 = nn.conv2d(%x, %w.phase1_0, %b) {strides = [1, 1], pads = [0, 1, 1, 0], ...} : f32[1,4,4,4]
    %y.phase1_1 = nn.conv2d(%x, %w.phase1_1, %b) {strides = [1, 1], pads = [0, 0, 1, 1], ...} : f32[1,4,4,4]
    %y = nn.interleave(%y.phase0_0, %y.phase0_1, %y.phase1_0, %y.phase1_1) {strides = [2, 2], size = [8, 8]}
    with each %w.phaseρh_ρw a [4, 8/g, 2, 2] constant holding the k4 kernel's taps of that phase.

An input of one pixel (a generator's latent projection, e.g. DCGAN's 1×1 → 4×4) is a dense layer instead:
each output pixel reads that pixel through one tap, so the phase convs would spend all but one tap of
every window on padding. When every output pixel has its tap (dilation 1 or a single output pixel along
the axis, output_padding within the end pad), the rewrite is one 1×1 nn.conv2d with M·H·W outputs (the
taps, output pixel by output pixel) and an nn.reshape to [N, M, H, W]: no padding reaches a crossbar
either. DCGAN's first layer then takes one pass of its arrays instead of 16 (one per output pixel) and 1/16
of the MACs, at the cost of row fill: its 100 × 1024 weights use 100 of each array's 128 rows (64 arrays
where the phase conv's 1600 × 64 took 52).

    %y = nn.conv_transpose2d(%x, %w, %b) {strides = [1, 1], pads = [0, 0, 0, 0], ...} : f32[1,64,4,4]
        →                                                     (x: f32[1,100,1,1], w: [100, 64, 4, 4])
    %y.dense = nn.conv2d(%x, %w.dense, %b.dense) {...} : f32[1,1024,1,1]
    %y = nn.reshape(%y.dense) {shape = [1, 64, 4, 4]}

Only transposed convolutions with a constant weight (and a constant bias, if any) are rewritten. A quantized
model's `nn.conv_transpose_integer` (operands x, w, x_zero, w_zero) becomes `nn.conv_integer` phases the
same way: their padding is x_zero, a phase without taps is int32 zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, NameAllocator, Op, Value
from rcc.ir.ops.nn_linear import flipped_kernel
from rcc.ir.ops.nn_shape import phase_size


@dataclass(frozen=True)
class AxisPhase:
    """One output phase along one spatial axis: its taps and the stride-1 conv that computes it."""

    taps: tuple[int, ...]  # kernel indices, ascending; empty when the phase is bias only
    dilation: int
    crop: tuple[int, int]  # input pixels dropped at the begin and end (nn.pad with negative values)
    pads: tuple[int, int]  # zeros the conv adds at the begin and end
    size: int  # output pixels of this phase


def axis_phases(in_size: int, out_size: int, kernel: int, stride: int, dilation: int,
                pad_begin: int) -> list[AxisPhase]:
    """The `stride` phases of one spatial axis of a transposed convolution, in phase order."""
    step = stride // math.gcd(dilation, stride)  # between kernel indices of one phase
    phases = []
    for phase in range(stride):
        size = phase_size(out_size, stride, phase)
        first = next((t for t in range(min(step, kernel)) if (dilation * t - phase - pad_begin) % stride == 0), kernel)
        # offset[t]: the input index tap t reads for the phase's first output; output q reads offset[t] + q
        offset = {t: (phase + pad_begin - dilation * t) // stride for t in range(first, kernel, step)}
        taps = tuple(t for t, start in offset.items() if start < in_size and start + size > 0) if size else ()
        if not taps:
            phases.append(AxisPhase((), 1, (0, 0), (0, 0), size))
            continue
        low, high = offset[taps[-1]], offset[taps[0]] + size  # input window the phase reads, [low, high)
        phases.append(AxisPhase(taps, dilation // math.gcd(dilation, stride) if len(taps) > 1 else 1,
                                (max(low, 0), max(in_size - high, 0)), (max(-low, 0), max(high - in_size, 0)), size))
    return phases


def deconv_phases(op: Op) -> list[tuple[AxisPhase, AxisPhase]]:
    """Every output phase (ρh, ρw) of a nn.conv_transpose2d, in row-major phase order."""
    x, weight, result = (v.type.shape for v in (op.operands[0], op.operands[1], op.result))
    strides, dilations, pads = op.attrs["strides"], op.attrs["dilations"], op.attrs["pads"]
    rows, cols = (axis_phases(x[2 + axis], result[2 + axis], weight[2 + axis], strides[axis], dilations[axis],
                              pads[axis]) for axis in range(2))
    return [(row, col) for row in rows for col in cols]


def single_pixel_taps(op: Op) -> tuple[list[int], list[int]] | None:
    """For a transposed convolution of a one-pixel input, the tap each output row and column reads
    (output o reads tap (o + p)/d); None when the input has more pixels or some output has no tap."""
    x, weight, result = (v.type.shape for v in (op.operands[0], op.operands[1], op.result))
    if tuple(x[2:]) != (1, 1):
        return None
    taps = []
    for axis in range(2):
        pad, dilation, kernel = op.attrs["pads"][axis], op.attrs["dilations"][axis], weight[2 + axis]
        reads = [divmod(o + pad, dilation) for o in range(result[2 + axis])]
        if any(rest or not 0 <= tap < kernel for tap, rest in reads):
            return None
        taps.append([tap for tap, _ in reads])
    return taps[0], taps[1]


def phase_macs(op: Op) -> int:
    """Multiply-accumulates of what `deconv-to-pixelwise` computes for a nn.conv_transpose2d: the phase
    convs (no product reads an inserted zero), or the dense layer of a one-pixel input (none reads padding)."""
    channels, out_per_group = op.operands[1].type.shape[:2]
    batch = op.operands[0].type.shape[0]
    if single_pixel_taps(op) is not None:
        return batch * channels * out_per_group * math.prod(op.result.type.shape[2:])
    return sum(batch * channels * out_per_group * row.size * col.size * len(row.taps) * len(col.taps)
               for row, col in deconv_phases(op))


class _Rewriter:
    """Builds the ops and constants that replace one transposed convolution."""

    def __init__(self, module: Module, op: Op, names: NameAllocator, kernels: dict) -> None:
        self.module, self.op, self.names, self.kernels = module, op, names, kernels
        self.ops: list[Op] = []
        self.cropped: dict[tuple[int, ...], Value] = {}  # crop → the cropped input
        self.constants: dict[tuple[int, int], Value] = {}  # phase shape → its bias-only constant
        self.constants_by_name: dict[str, Value] = {}

    def constant(self, base: str, data: np.ndarray) -> Value:
        return self.module.add_constant(self.names.fresh(base), data)

    def input(self, row: AxisPhase, col: AxisPhase) -> Value:
        """The deconvolution's input with the phase's crop applied (one nn.pad shared by equal crops)."""
        crop = (row.crop[0], col.crop[0], row.crop[1], col.crop[1])
        x = self.op.operands[0]
        if not any(crop):
            return x
        if crop not in self.cropped:
            pads = [0, 0, -crop[0], -crop[1], 0, 0, -crop[2], -crop[3]]
            self.ops.append(make_op("nn.pad", [x], {"pads": pads}, [self.names.fresh(f"{self.op.result.name}.crop")]))
            self.cropped[crop] = self.ops[-1].result
        return self.cropped[crop]

    def kernel(self, row: AxisPhase, col: AxisPhase, label: str) -> Value:
        """The phase's conv2d weight, shared between deconvolutions with the same weight and taps."""
        weight, group = self.op.operands[1], self.op.attrs["group"]
        key = (id(weight), group, row.taps, col.taps)
        if key not in self.kernels:
            taps = weight.data[:, :, list(row.taps)][:, :, :, list(col.taps)]
            self.kernels[key] = self.constant(f"{weight.name}.{label}", flipped_kernel(taps, group))
        return self.kernels[key]

    def bias_only(self, height: int, width: int) -> Value:
        """A phase without taps: the bias (or zeros) broadcast to it, one constant per phase shape."""
        result, operands = self.op.result, self.op.operands
        if (height, width) not in self.constants:
            n, m = result.type.shape[:2]
            biased = len(operands) == 3 and self.op.opname == "nn.conv_transpose2d"
            bias = operands[2].data if biased else np.zeros(m, result.type.np_dtype)
            data = np.broadcast_to(bias.reshape(1, m, 1, 1), (n, m, height, width)).astype(result.type.np_dtype)
            kind = "bias" if biased else "zeros"
            self.constants[(height, width)] = self.constant(f"{result.name}.{kind}", data)
        return self.constants[(height, width)]

    def phase(self, row: AxisPhase, col: AxisPhase, label: str) -> Value:
        """One output phase: a stride-1 conv2d, or a constant when the phase has no taps."""
        result, operands = self.op.result, self.op.operands
        if not row.taps or not col.taps:
            return self.bias_only(row.size, col.size)
        attrs = {"strides": (1, 1), "pads": (row.pads[0], col.pads[0], row.pads[1], col.pads[1]),
                 "dilations": (row.dilation, col.dilation), "group": self.op.attrs["group"]}
        conv_operands = [self.input(row, col), self.kernel(row, col, label), *self.extra_operands()]
        conv = _PHASE_CONV[self.op.opname]
        self.ops.append(make_op(conv, conv_operands, attrs, [self.names.fresh(f"{result.name}.{label}")]))
        return self.ops[-1].result

    def extra_operands(self) -> list[Value]:
        """The phase convs' operands after the weight: the bias, or the zero points of an integer product
        (the weight's, one per output channel of a group, repeated for every group as conv_integer wants)."""
        operands = self.op.operands[2:]
        if self.op.opname != "nn.conv_transpose_integer" or len(operands) < 2 or operands[1].type.size == 1:
            return list(operands)
        if "w_zero" not in self.constants_by_name:
            tiled = np.tile(operands[1].data.reshape(-1), self.op.attrs["group"])
            self.constants_by_name["w_zero"] = self.constant(f"{self.op.result.name}.w_zero", tiled)
        return [operands[0], self.constants_by_name["w_zero"]]

    def dense(self, rows: list[int], cols: list[int]) -> list[Op]:
        """A one-pixel input's deconvolution as one 1×1 conv with an output channel per (channel, output
        pixel), reshaped back; the weight, the bias and the integer weight zero points follow that order."""
        x, weight, result = self.op.operands[0], self.op.operands[1], self.op.result
        group, (channels, out_per_group) = self.op.attrs["group"], weight.type.shape[:2]
        pixels = len(rows) * len(cols)
        taps = weight.data[:, :, rows][:, :, :, cols]   # [C, M/g, H, W]
        dense = taps.reshape(group, channels // group, out_per_group * pixels).transpose(0, 2, 1)
        operands = [x, self.constant(f"{weight.name}.dense",
                                     np.ascontiguousarray(dense).reshape(-1, channels // group, 1, 1))]
        for index, extra in enumerate(self.op.operands[2:]):
            if self.op.opname == "nn.conv_transpose2d":   # the bias, one per output channel
                extra = self.constant(f"{extra.name}.dense", np.repeat(extra.data, pixels))
            elif index == 1 and extra.type.size > 1:   # the weight's zero points, one per channel of a group
                extra = self.constant(f"{extra.name}.dense", np.tile(np.repeat(extra.data.reshape(-1), pixels), group))
            operands.append(extra)
        attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": group}
        conv = make_op(_PHASE_CONV[self.op.opname], operands, attrs, [self.names.fresh(f"{result.name}.dense")])
        return [conv, make_op("nn.reshape", [conv.result], {"shape": result.type.shape}, [result.name])]

    def rewrite(self) -> list[Op]:
        """The replacement ops; the final nn.interleave (or a one-pixel input's nn.reshape) keeps the
        original result name."""
        single_pixel = single_pixel_taps(self.op)
        if single_pixel is not None:
            return self.dense(*single_pixel)
        strides, width = self.op.attrs["strides"], self.op.attrs["strides"][1]
        phases = [self.phase(row, col, f"phase{index // width}_{index % width}")
                  for index, (row, col) in enumerate(deconv_phases(self.op))]
        attrs = {"strides": strides, "size": self.op.result.type.shape[2:]}
        self.ops.append(make_op("nn.interleave", phases, attrs, [self.op.result.name]))
        return self.ops


_PHASE_CONV = {"nn.conv_transpose2d": "nn.conv2d", "nn.conv_transpose_integer": "nn.conv_integer"}


def _rewritable(op: Op) -> bool:
    return op.opname in _PHASE_CONV and all(v.is_constant for v in op.operands[1:])


@dataclass
class DeconvToPixelwise(Pass):
    name = "deconv-to-pixelwise"

    def run(self, module: Module, ctx: PassContext) -> bool:
        deconvs = [op for op in module.ops if _rewritable(op)]
        names = module.name_allocator()
        kernels: dict = {}  # (id of the weight, group, row taps, column taps) → the phase's conv2d weight
        for op in deconvs:
            lowered = _Rewriter(module, op, names, kernels).rewrite()
            module.replace_op(op, lowered)
            ctx.report.removed.append({"op": op.opname, "value": op.result.name})
        if deconvs:
            module.drop_unused_constants()
        return bool(deconvs)
