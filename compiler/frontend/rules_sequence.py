"""Lowering of ONNX's sequence ops on sequences whose length is known at compile time.

A sequence never becomes an IR value: the frontend keeps it as the list of IR values of its elements
(`ctx.sequences`), so SequenceConstruct, SequenceInsert, SequenceErase, SequenceAt, SequenceLength and
SequenceEmpty only rearrange that list, SplitToSequence crops its input into elements (`nn.pad` with
negative pads) and ConcatFromSequence joins them (`nn.concat`, after `nn.reshape` for `new_axis`).
Positions, split sizes and axes must be compile-time constants.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.core import Value


def sequence_input(ctx: LowerContext, index: int, needs_elements: str = "") -> list[Value]:
    """The elements of sequence input `index`; an error when that input is not a sequence rcc knows, or
    is empty and the op `needs_elements` ("erase from": "cannot erase from an empty sequence")."""
    name = ctx.node.input[index] if ctx.has_input(index) else ""
    if name not in ctx.sequences:
        raise ctx.unsupported(f"input {name!r} is not a sequence of compile-time length")
    if needs_elements and not ctx.sequences[name]:
        raise ctx.error(f"cannot {needs_elements} an empty sequence")
    return list(ctx.sequences[name])


def bind_sequence(ctx: LowerContext, elements: list[Value]) -> None:
    ctx.sequences[ctx.node.output[0]] = elements


def _position(ctx: LowerContext, index: int, length: int, default: int, inserting: bool = False) -> int:
    """Constant position input `index` made non-negative; positions run to `length` when inserting."""
    if not ctx.has_input(index):
        return default
    raw = int(ctx.constant(index, "position").reshape(-1)[0])
    position = raw + length if raw < 0 else raw
    if not 0 <= position < length + inserting:
        raise ctx.error(f"position {raw} is out of range for a sequence of {length} tensors")
    return position


@rule("SequenceEmpty")
def lower_sequence_empty(ctx: LowerContext) -> None:
    bind_sequence(ctx, [])


@rule("SequenceConstruct")
def lower_sequence_construct(ctx: LowerContext) -> None:
    bind_sequence(ctx, [ctx.input(i) for i in range(len(ctx.node.input))])


@rule("SequenceInsert")
def lower_sequence_insert(ctx: LowerContext) -> None:
    elements = sequence_input(ctx, 0)
    elements.insert(_position(ctx, 2, len(elements), len(elements), inserting=True), ctx.input(1))
    bind_sequence(ctx, elements)


@rule("SequenceErase")
def lower_sequence_erase(ctx: LowerContext) -> None:
    elements = sequence_input(ctx, 0, needs_elements="erase from")
    del elements[_position(ctx, 1, len(elements), len(elements) - 1)]
    bind_sequence(ctx, elements)


@rule("SequenceAt")
def lower_sequence_at(ctx: LowerContext) -> None:
    elements = sequence_input(ctx, 0, needs_elements="pick from")
    ctx.bind(0, ctx.op("nn.identity", [elements[_position(ctx, 1, len(elements), 0)]]))


@rule("SequenceLength")
def lower_sequence_length(ctx: LowerContext) -> None:
    ctx.bind_constant(ctx.node.output[0], np.array(len(sequence_input(ctx, 0)), dtype=np.int64))


def _split_sizes(ctx: LowerContext, size: int) -> list[int]:
    """Chunk lengths along the axis: the `split` input's, equal chunks of a scalar split, or ones."""
    if not ctx.has_input(1):
        return [1] * size
    split = ctx.constant(1, "split")
    if split.ndim == 0:
        chunk = int(split)
        if chunk < 1:
            raise ctx.error(f"split {chunk} must be positive")
        return [min(chunk, size - start) for start in range(0, size, chunk)]
    sizes = [int(s) for s in split.reshape(-1)]
    if sum(sizes) != size or min(sizes, default=0) < 0:
        raise ctx.error(f"split {sizes} does not add up to the axis length {size}")
    return sizes


@rule("SplitToSequence")
def lower_split_to_sequence(ctx: LowerContext) -> None:
    x = ctx.input(0)
    rank = x.type.rank
    axis = int(ctx.attr("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ctx.error(f"axis {ctx.attr('axis')} is out of range for rank {rank}")
    size = x.type.shape[axis]
    squeeze = not ctx.has_input(1) and not ctx.attr("keepdims", 1)
    elements, start = [], 0
    for index, length in enumerate(_split_sizes(ctx, size)):
        pads = [0] * 2 * rank
        pads[axis], pads[axis + rank] = -start, -(size - start - length)
        name = f"{ctx.node.output[0]}.piece{index}"
        piece = ctx.op("nn.pad", [x], {"pads": tuple(pads)}, name=name + ".crop" if squeeze else name)
        if squeeze:
            shape = x.type.shape[:axis] + x.type.shape[axis + 1:]
            piece = ctx.op("nn.reshape", [piece], {"shape": shape}, name=name)
        elements.append(piece)
        start += length
    bind_sequence(ctx, elements)


@rule("ConcatFromSequence")
def lower_concat_from_sequence(ctx: LowerContext) -> None:
    elements = sequence_input(ctx, 0, needs_elements="concatenate")
    new_axis = bool(ctx.attr("new_axis", 0))
    rank = elements[0].type.rank + new_axis
    axis = int(ctx.attr("axis"))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ctx.error(f"axis {ctx.attr('axis')} is out of range for rank {rank}")
    if new_axis:
        elements = [ctx.op("nn.reshape", [e], {"shape": e.type.shape[:axis] + (1,) + e.type.shape[axis:]},
                           name=f"{e.name}.stacked") for e in elements]
    ctx.bind(0, ctx.op("nn.concat", elements, {"axis": axis}))


def bind_sequence_output(ctx: LowerContext, name: str) -> list[Value]:
    """The module outputs of graph output `name`, a sequence: one tensor per element, `name.0`, `name.1`, ..."""
    return [ctx.builder.op("nn.identity", [element], name=f"{name}.{index}")
            for index, element in enumerate(ctx.sequences[name])]
