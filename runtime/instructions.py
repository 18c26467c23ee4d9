"""The instruction table: for each opcode, what it reads and writes, how it executes, what it counts.

| opcode     | unit          | reads → writes                     | counts                                        |
|------------|---------------|------------------------------------|-----------------------------------------------|
| load       | buffers       | an input → a buffer                | off-chip bytes (`input_bits` per element)     |
| store      | buffers       | a buffer → an output               | off-chip bytes (`input_bits` per element)     |
| im2col     | vector unit   | activation → vectors [P, K]        | vec ops over the vectors                      |
| quantize   | vector unit   | vectors → input_bits integers      | vec ops                                       |
| mvm        | crossbars     | integer vectors → accumulators     | per vector: for each input bit-slice every    |
|            |               |                                    | array of the layer is read once (mvm_ops),    |
|            |               |                                    | every used column converted (adc_conversions) |
|            |               |                                    | and shifted-and-added; row tiles and sign     |
|            |               |                                    | arrays then merged digitally (accumulations)  |
| dequantize | vector unit   | accumulators → float activations   | vec ops                                       |
| write_mvm  | crossbars     | integer vectors and weights        | an mvm's counts, plus the weights written     |
|            |               | computed at run time → accumulators| first: every row of every array holding them  |
|            |               |                                    | (row_writes, cell_writes; write_steps rows of |
|            |               |                                    | the fullest array in sequence)                |
| vec        | vector unit   | any graph-level op without weights | vec ops over its largest operand or result;   |
|            |               |                                    | a matmul or convolution of activations counts |
|            |               |                                    | its multiply-accumulates (vector_macs)        |

Cycles: the arrays of a layer all hold their own weights and run in parallel; per vector and input
bit-slice a layer takes one array read plus its ADCs' conversions (`adcs_per_array` per array);
vector-unit work takes `vector_op_cycles` per `vector_lanes` elements (or multiply-accumulates); a
run-time write takes `row_write_cycles` per row of the fullest array. Layers run one after another.
The vector unit's semantics are the IR op table's: one definition of every op.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rcc.backends.mapping import CrossbarMapping
from rcc.backends.program import Instruction
from rcc.backends.target import Target
from rcc.ir.ops.xbar import (dequantize, dequantize_terms, dequantizer, im2col, im2col_sources, quantize,
                             quantize_limits, quantizer_constants, taps_first_order)
from rcc.ir.ops.nn_index import slicer
from rcc.ir.ops.nn_linear import conv_output_size
from rcc.ir.optable import OPS, normalize_attrs
from rcc.runtime.compiled_steps import (VECTOR_KERNELS, compilable, dequantize_step, gather_step, levels_step,
                                        vector_kernel_step)
from rcc.runtime.counters import Counts
from rcc.runtime.crossbar import CrossbarGroup


def _vector_counts(target: Target, elements: int) -> Counts:
    ops = math.ceil(elements / target.vector_lanes)
    return Counts(vec_ops=ops, cycles=ops * target.vector_op_cycles)


def activation_bytes(input_bits: int, elements: int) -> int:
    """Bytes of `elements` activations moved at an input width of `input_bits`."""
    return elements * math.ceil(input_bits / 8)


def mvm_counts(target: Target, mapping: CrossbarMapping, vectors: int) -> Counts:
    per_slice = target.array_read_cycles + \
        math.ceil(mapping.max_columns_per_array / target.adcs_per_array) * target.adc_conversion_cycles
    accumulate_steps = vectors * math.ceil(mapping.merges / target.vector_lanes)
    steps = vectors * mapping.input_cycles
    conversions = steps * mapping.used_columns
    return Counts(mvm_ops=steps * mapping.arrays, adc_conversions=conversions,
                  accumulations=vectors * mapping.merges,
                  cycles=steps * per_slice + accumulate_steps * target.accumulate_cycles,
                  dac_drives=steps * mapping.driven_rows, sh_samples=conversions, shift_adds=conversions,
                  array_steps=steps, column_steps=steps * mapping.max_columns_per_array,
                  bytes_in=activation_bytes(mapping.input_bits, vectors * mapping.groups * mapping.rows),
                  bytes_out=activation_bytes(target.input_bits, vectors * mapping.groups * mapping.outputs),
                  macs=vectors * mapping.weights)


@dataclass(frozen=True)
class InstructionDef:
    opcode: str
    prepare: Callable  # (machine, instruction) -> Step: operands -> list of results (attributes resolved once)
    count: Callable    # (target, instruction, operand shapes) -> Counts

    def execute(self, machine, instruction: Instruction, operands: list[np.ndarray]) -> list[np.ndarray]:
        """Run `instruction` once on `operands` (the machine's plan prepares each instruction once instead)."""
        return self.prepare(machine, instruction)(operands)


Step = Callable[[list[np.ndarray]], list[np.ndarray]]


def _shape_size(shape) -> int:
    return math.prod(shape)


# Multiply-accumulates of a weighted graph op whose weights are activations, from its operand and result
# shapes: every output element sums K products (matmul: K = the left operand's last axis; conv: the
# weight's C/g·kh·kw; a transposed conv scatters every input element over the weight's M/g·kh·kw).
_VECTOR_MACS = {
    "nn.matmul": lambda operands, result: _shape_size(result) * operands[0][-1],
    "nn.conv2d": lambda operands, result: _shape_size(result) * _shape_size(operands[1][1:]),
    "nn.conv_transpose2d": lambda operands, result: _shape_size(operands[0]) * _shape_size(operands[1][1:]),
}


# Ops that copy out part of an operand (a look-up in an embedding table, a slice, samples at a grid's points):
# their work is the elements they produce and the indices they read, not the size of the table they read from.
_RESULT_SIZED = frozenset({"nn.gather", "nn.gather_elements", "nn.gather_nd", "nn.slice", "nn.grid_sample"})


def _vec_count(target: Target, instruction: Instruction, operand_shapes: list) -> Counts:
    fn = instruction.attrs.get("fn") if instruction.opcode == "vec" else None
    macs = _VECTOR_MACS.get(fn)
    if macs is not None:
        return vector_mac_counts(target, macs(operand_shapes, instruction.shapes[0]))
    read = operand_shapes[1:] if fn in _RESULT_SIZED else operand_shapes
    sizes = [_shape_size(s) for s in read + instruction.shapes]
    return _vector_counts(target, max(sizes, default=0))


def vector_mac_counts(target: Target, macs: int) -> Counts:
    """`macs` multiply-accumulates on the vector unit, `vector_lanes` per `vector_op_cycles`."""
    return Counts(vector_macs=macs, macs=macs, cycles=math.ceil(macs / target.vector_lanes) * target.vector_op_cycles)


# vector ops whose attributes are prepared once per step (attributes → the op on its operands)
_PREPARED_VECTOR_OPS = {"nn.slice": slicer}


def vector_step(fn: str, attrs: dict) -> Step:
    """The vector unit running IR op `fn` with `attrs` (normalized here, once)."""
    opdef = OPS[fn]
    impl, normalized = opdef.impl, normalize_attrs(opdef, attrs)
    if fn in _PREPARED_VECTOR_OPS:
        prepared = _PREPARED_VECTOR_OPS[fn](**normalized)
        return lambda operands: [prepared(*operands)]
    if opdef.results != 1:
        return lambda operands: list(impl(*operands, **normalized))
    step = lambda operands: [impl(*operands, **normalized)]   # noqa: E731
    if fn == "nn.reshape":   # the straight-line code writes it out (`runtime/straight_line.py`)
        step.method_call = f".reshape({tuple(normalized['shape'])!r})"   # type: ignore[attr-defined]
    if fn in VECTOR_KERNELS:
        return compilable(step, lambda: vector_kernel_step(fn, normalized, step))
    return step


def _prepare_vec(machine, instruction: Instruction) -> Step:
    return vector_step(instruction.attrs["fn"], instruction.attrs["attrs"])


def _prepare_mvm(machine, instruction: Instruction) -> Step:
    """The layer's crossbars (looked up at each call: tests may wrap a group's `run`); an ideal group is told
    its input range when the program proves it (`Machine.input_ranges`), which spares it a pass over the data."""
    crossbars, name, sliced = machine.crossbars, instruction.dst[0], machine.force_sliced
    bound = machine.input_ranges.get(instruction.src[0])
    if bound is None or not isinstance(crossbars[name], CrossbarGroup):
        return lambda operands: [crossbars[name].run(operands[0], sliced)]
    return lambda operands: [crossbars[name].run(operands[0], sliced, bound)]


# vector ops whose result holds some of their operand's values and nothing else
_VALUE_KEEPING_FNS = frozenset({"nn.reshape", "nn.transpose", "nn.slice"})


def input_ranges(program) -> dict[str, tuple[int, int]]:
    """The integer range [low, high] of every buffer that is a `quantize` result, or an `im2col` of one (whose
    padding adds zeros, inside every quantized range), or a reshape, transpose or slice of one: what the program
    proves about an mvm's input."""
    ranges: dict[str, tuple[int, int]] = {}
    for instruction in program.instructions:
        if instruction.opcode == "quantize":
            attrs = instruction.attrs
            ranges[instruction.dst[0]] = quantize_limits(int(attrs["bits"]), bool(attrs["signed"]))
        elif instruction.src and instruction.src[0] in ranges and (instruction.opcode == "im2col" or (
                instruction.opcode == "vec" and instruction.attrs["fn"] in _VALUE_KEEPING_FNS)):
            ranges[instruction.dst[0]] = ranges[instruction.src[0]]
        else:   # a buffer written again by anything else proves nothing
            for name in instruction.dst:
                ranges.pop(name, None)
    return ranges


def _mvm_count(target: Target, instruction: Instruction, operand_shapes: list) -> Counts:
    return mvm_counts(target, CrossbarMapping.of(instruction.attrs, instruction.attrs["weights_shape"]),
                      operand_shapes[0][0])


def _prepare_write_mvm(machine, instruction: Instruction) -> Step:
    """Program the arrays with this inference's weights, then read them like any mvm (same DAC, ADC and
    shift-and-add path; the device model applies only to arrays programmed when the program loads)."""
    attrs, sliced = instruction.attrs, machine.force_sliced
    return lambda operands: [CrossbarGroup(operands[1], attrs).run(operands[0], sliced)]


def write_counts(target: Target, mapping: CrossbarMapping) -> Counts:
    """Writing a dense mapping's weights once: every row holding weights, every cell of them (a zero level
    is written too, over the last inference's), the fullest array's rows one after another."""
    steps = min(mapping.xbar_rows, mapping.rows)
    return Counts(row_writes=mapping.driven_rows, cell_writes=mapping.weights * mapping.weight_slices * mapping.signs,
                  write_steps=steps, cycles=steps * target.row_write_cycles)


def _write_mvm_count(target: Target, instruction: Instruction, operand_shapes: list) -> Counts:
    mapping = CrossbarMapping.of(instruction.attrs, operand_shapes[1])
    count = write_counts(target, mapping)
    count += mvm_counts(target, mapping, operand_shapes[0][0])
    return count


def _offchip_count(target: Target, instruction: Instruction, operand_shapes: list) -> Counts:
    shapes = operand_shapes if instruction.opcode == "store" else instruction.shapes
    return Counts(offchip_bytes=activation_bytes(target.input_bits, sum(_shape_size(s) for s in shapes)))


def _attr_call(fn: Callable, keys: tuple[str, ...]) -> Callable:
    def prepare(machine, instruction: Instruction) -> Step:
        attrs = {k: instruction.attrs[k] for k in keys}
        return lambda operands: [fn(*operands, **attrs)]
    return prepare


GATHERED_IM2COL_ELEMENTS = 1 << 18   # largest im2col run as a gather (its int64 index: 2 MiB)
# Up to this many elements a gather beats the copies whatever the channels (measured, float32, medians: 3
# channels at 32×32, 3×3 stride 2: 7 µs against 23; 16 at 16×16 stride 2: 8 against 15; 32 at 8×8: 13
# against 15 taps first; 16 at 16×16 stride 1, 36,864 elements: 32 against 26).
SMALL_IM2COL_ELEMENTS = 1 << 15


def gathers_im2col(instruction: Instruction) -> bool:
    """Whether an im2col runs as one gather (`_prepare_im2col`): a small result, or one whose taps outnumber its
    channels fourfold (each tap's copy would move a few elements at a time) that is not large."""
    kernel, (rows, columns) = instruction.attrs["kernel"], instruction.shapes[0]
    taps = kernel[0] * kernel[1]
    return rows * columns <= SMALL_IM2COL_ELEMENTS or \
        (4 * (columns // taps) < taps and rows * columns <= GATHERED_IM2COL_ELEMENTS)


def _prepare_im2col(machine, instruction: Instruction) -> Step:
    """An im2col that `gathers_im2col` runs as one gather through an index prepared per input shape
    (`im2col_sources`); others copy tap by tap (`ir.ops.xbar.im2col`). Compiled (`runtime/compiled_steps.py`
    gather_step), those gather in one pass, and the others too up to COMPILED_GATHER_ELEMENTS elements."""
    attrs = {k: instruction.attrs[k] for k in ("kernel", "strides", "pads", "dilations")}
    if not gathers_im2col(instruction):
        copy = lambda operands: [im2col(operands[0], **attrs)]   # noqa: E731
        return compilable(copy, lambda: gather_step(im2col_index(attrs, COMPILED_GATHER_ELEMENTS), copy))
    # a large batch's index would cost too much memory: it is copied tap by tap
    sources_for = im2col_index(attrs, 4 * GATHERED_IM2COL_ELEMENTS)

    def gather(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        index = sources_for(x.shape)
        if index is None:
            return [im2col(x, **attrs)]
        padded = np.empty(x.size + 1, dtype=x.dtype)
        padded[:-1] = x.reshape(-1)
        padded[-1] = 0
        return [np.take(padded, index)]
    return compilable(gather, lambda: gather_step(sources_for, gather))


# Up to this many elements the compiled gather beats im2col's copies, plain or taps first (measured, float32,
# medians: 16 channels at 16×16 3×3, 36,864 elements: 54 µs against 84 and 72; 16 at 32×32 stride 2: 61 against
# 122 and 86; 147,456 elements: 226-279 against 206-264 and 110-206).
COMPILED_GATHER_ELEMENTS = 1 << 16


def im2col_index(attrs: dict, limit: int, taps_first: bool = False):
    """shape → the flat gather index of the im2col with `attrs` of an input of that shape (`im2col_sources`; its
    columns taps first, `ir.ops.xbar.taps_first_order`, if `taps_first`), kept per shape; None where the columns
    hold more than `limit` elements."""
    (kh, kw), (sh, sw), pads, (dh, dw) = attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"]
    geometry = ((kh, kw), (sh, sw), pads, (dh, dw))
    sources: dict[tuple[int, ...], np.ndarray | None] = {}

    def sources_for(shape: tuple[int, ...]) -> np.ndarray | None:
        if shape not in sources:
            pixels = conv_output_size(shape[2], kh, sh, pads[0], pads[2], dh) * \
                conv_output_size(shape[3], kw, sw, pads[1], pads[3], dw)
            index = None if shape[0] * pixels * shape[1] * kh * kw > limit else im2col_sources(shape, *geometry)
            if index is not None and taps_first:
                index = np.ascontiguousarray(index[:, taps_first_order(shape[1], kh * kw)])
            sources[shape] = index
        return sources[shape]
    return sources_for


def _prepare_quantize(machine, instruction: Instruction) -> Step:
    attrs = {k: instruction.attrs[k] for k in ("scale", "bits", "signed")}
    step = lambda operands: [quantize(operands[0], **attrs)]   # noqa: E731
    constants = quantizer_constants(attrs["scale"], attrs["bits"], attrs["signed"])
    return compilable(step, lambda: levels_step(*constants, step, np.int32))


def constant_dequantize_terms(machine, instruction: Instruction) -> tuple | None:
    """A dequantize's (scale, bias or None, input_scale) when its scales and bias are program constants (as the
    compiler emits them), else None."""
    constants, names = machine.program.constants, instruction.src[1:]
    if not all(name in constants for name in names):
        return None
    return (constants[names[0]], constants[names[1]] if len(names) > 1 else None, instruction.attrs["input_scale"])


def _prepare_dequantize(machine, instruction: Instruction) -> Step:
    """Scales and bias that are program constants are combined once."""
    terms = constant_dequantize_terms(machine, instruction)
    if terms is None:
        return _attr_call(dequantize, ("input_scale",))(machine, instruction)
    run = dequantizer(*terms)
    step = lambda operands: [run(operands[0])]   # noqa: E731
    return compilable(step, lambda: dequantize_step(*dequantize_terms(*terms), step))


def _prepare_load(machine, instruction: Instruction) -> Step:
    return lambda operands: [machine.inputs[instruction.dst[0]]]


INSTRUCTIONS: dict[str, InstructionDef] = {
    "load": InstructionDef("load", _prepare_load, _offchip_count),
    "store": InstructionDef("store", lambda m, i: lambda operands: [], _offchip_count),
    "im2col": InstructionDef("im2col", _prepare_im2col, _vec_count),
    "quantize": InstructionDef("quantize", _prepare_quantize, _vec_count),
    "mvm": InstructionDef("mvm", _prepare_mvm, _mvm_count),
    "dequantize": InstructionDef("dequantize", _prepare_dequantize, _vec_count),
    "vec": InstructionDef("vec", _prepare_vec, _vec_count),
    "write_mvm": InstructionDef("write_mvm", _prepare_write_mvm, _write_mvm_count),
}
