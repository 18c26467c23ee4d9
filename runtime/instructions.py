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
| vec        | vector unit   | any graph-level op without weights | vec ops over its largest operand or result    |

Cycles: the arrays of a layer all hold their own weights and run in parallel; per vector and input
bit-slice a layer takes one array read plus its ADCs' conversions (`adcs_per_array` per array);
vector-unit work takes `vector_op_cycles` per `vector_lanes` elements. Layers run one after another.
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
from rcc.ir.ops.xbar import dequantize, im2col, quantize
from rcc.ir.optable import OPS, normalize_attrs
from rcc.runtime.counters import Counts


def _vector_counts(target: Target, elements: int) -> Counts:
    ops = math.ceil(elements / target.vector_lanes)
    return Counts(vec_ops=ops, cycles=ops * target.vector_op_cycles)


def activation_bytes(target: Target, elements: int) -> int:
    """Bytes of `elements` activations moved at the target's input width."""
    return elements * math.ceil(target.input_bits / 8)


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
                  bytes_in=activation_bytes(target, vectors * mapping.groups * mapping.rows),
                  bytes_out=activation_bytes(target, vectors * mapping.groups * mapping.outputs),
                  macs=vectors * mapping.weights)


@dataclass(frozen=True)
class InstructionDef:
    opcode: str
    execute: Callable  # (machine, instruction, operands) -> list of results
    count: Callable    # (target, instruction, operand shapes) -> Counts


def _shape_size(shape) -> int:
    return math.prod(shape)


def _vec_count(target: Target, instruction: Instruction, operand_shapes: list) -> Counts:
    sizes = [_shape_size(s) for s in operand_shapes + instruction.shapes]
    return _vector_counts(target, max(sizes, default=0))


def _exec_vec(machine, instruction: Instruction, operands: list[np.ndarray]) -> list[np.ndarray]:
    opdef = OPS[instruction.attrs["fn"]]
    return opdef.run(operands, normalize_attrs(opdef, instruction.attrs["attrs"]))


def _exec_mvm(machine, instruction: Instruction, operands: list[np.ndarray]) -> list[np.ndarray]:
    return [machine.crossbars[instruction.dst[0]].run(operands[0], machine.force_sliced)]


def _mvm_count(target: Target, instruction: Instruction, operand_shapes: list) -> Counts:
    return mvm_counts(target, CrossbarMapping.of(instruction.attrs, instruction.attrs["weights_shape"]),
                      operand_shapes[0][0])


def _offchip_count(target: Target, instruction: Instruction, operand_shapes: list) -> Counts:
    shapes = operand_shapes if instruction.opcode == "store" else instruction.shapes
    return Counts(offchip_bytes=activation_bytes(target, sum(_shape_size(s) for s in shapes)))


def _attr_call(fn: Callable, keys: tuple[str, ...]) -> Callable:
    return lambda machine, instruction, operands: [fn(*operands, **{k: instruction.attrs[k] for k in keys})]


INSTRUCTIONS: dict[str, InstructionDef] = {
    "load": InstructionDef("load", lambda m, i, ops: [m.inputs[i.dst[0]]], _offchip_count),
    "store": InstructionDef("store", lambda m, i, ops: [], _offchip_count),
    "im2col": InstructionDef("im2col", _attr_call(im2col, ("kernel", "strides", "pads", "dilations")), _vec_count),
    "quantize": InstructionDef("quantize", _attr_call(quantize, ("scale", "bits", "signed")), _vec_count),
    "mvm": InstructionDef("mvm", _exec_mvm, _mvm_count),
    "dequantize": InstructionDef("dequantize", _attr_call(dequantize, ("input_scale",)), _vec_count),
    "vec": InstructionDef("vec", _exec_vec, _vec_count),
}
