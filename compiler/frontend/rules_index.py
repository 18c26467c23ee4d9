"""Lowering of ONNX's indexing ops: Slice, Split, Gather, GatherElements, GatherND, ScatterND,
ScatterElements (and its older name Scatter), Expand, Tile, and the shape producers (Shape, Size,
ConstantOfShape, Range).

Starts, ends, steps, axes, split sizes, target shapes and repeats must be known at compile time; they are
resolved here into the static attributes of `nn.slice`, `nn.expand`, `nn.tile`. Split becomes one
`nn.slice` per output. Gather indices may be activations (token ids), and a Gather from a constant table
is an embedding look-up held on the vector unit (see rcc.ir.ops.nn_index). Shape and Size of a tensor
always fold (every IR value has a static shape), and so do ConstantOfShape and Range on constant inputs
(`fold.py`); their rule is reached only when an input is not known at compile time, and says which.
"""

from __future__ import annotations

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.core import Value
from rcc.ir.optable import broadcast_shapes


_TO_THE_END = (2**31 - 1, 2**63 - 1)  # ends onnxruntime reads as "to the last element in the step's direction"


def slice_bounds(start: int, end: int, step: int, size: int) -> tuple[int, int]:
    """ONNX Slice's (first index, element count) along an axis of `size`, as onnxruntime computes it:
    negative bounds count from the end, then starts and ends are clamped (to [0, size] going forward,
    [-1, size - 1] going back); an end of INT32_MAX or INT64_MAX runs to the end in either direction."""
    if end in _TO_THE_END:
        end = size if step > 0 else -size - 1
    start, end = (b + size if b < 0 else b for b in (start, end))
    if step > 0:
        start, end = min(max(start, 0), size), min(max(end, 0), size)
    else:
        start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
    count = max(0, -(-(end - start) // step))
    return (start if count else 0), count


def _slice_lists(ctx: LowerContext, rank: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """starts, ends, axes and steps of the current Slice, from attributes (opset < 10) or inputs."""
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes, steps = ctx.attr("axes"), None
    else:
        starts = ctx.constant(1, "starts").reshape(-1).tolist()
        ends = ctx.constant(2, "ends").reshape(-1).tolist()
        axes = ctx.constant(3, "axes").reshape(-1).tolist() if ctx.has_input(3) else None
        steps = ctx.constant(4, "steps").reshape(-1).tolist() if ctx.has_input(4) else None
    axes = list(range(len(starts))) if axes is None else [ctx.axis(a, rank) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error(f"starts, ends, axes and steps differ in length ({len(starts)}, {len(ends)}, "
                        f"{len(axes)}, {len(steps)})")
    if len(set(axes)) != len(axes):
        raise ctx.error(f"axes {axes} repeat an axis")
    if 0 in steps:
        raise ctx.error("a step of 0")
    return [int(s) for s in starts], [int(e) for e in ends], axes, steps


def slice_value(ctx: LowerContext, x: Value, bounds: dict[int, tuple[int, int, int]], name: str | None = None) -> Value:
    """`nn.slice` of x keeping, on each axis in `bounds`, (start, step, count); other axes whole."""
    starts, steps, sizes = [0] * x.type.rank, [1] * x.type.rank, list(x.type.shape)
    for axis, (start, step, count) in bounds.items():
        starts[axis], steps[axis], sizes[axis] = start, step, count
    return ctx.op("nn.slice", [x], {"starts": tuple(starts), "steps": tuple(steps), "sizes": tuple(sizes)}, name=name)


@rule("Slice")
def lower_slice(ctx: LowerContext) -> None:
    x = ctx.input(0)
    shape = x.type.shape
    bounds = {}
    for start, end, axis, step in zip(*_slice_lists(ctx, len(shape))):
        first, count = slice_bounds(start, end, step, shape[axis])
        bounds[axis] = (first, step, count)
    ctx.bind(0, slice_value(ctx, x, bounds))


def _split_sizes(ctx: LowerContext, size: int, outputs: int) -> list[int]:
    """Lengths of the pieces: the `split` attribute or input, else `num_outputs` (opset 18) or the outputs'
    count, in equal chunks (the last one smaller when num_outputs does not divide the axis)."""
    split = ctx.attr("split")
    if split is None and ctx.has_input(1):
        split = ctx.constant(1, "split").reshape(-1).tolist()
    if split is not None:
        sizes = [int(s) for s in split]
        if len(sizes) != outputs or sum(sizes) != size or min(sizes, default=0) < 0:
            raise ctx.error(f"split {sizes} does not cut the axis of {size} into {outputs} pieces")
        return sizes
    pieces = ctx.attr("num_outputs")
    if pieces is not None:
        if pieces != outputs or pieces < 1:
            raise ctx.error(f"num_outputs {pieces} does not match the {outputs} outputs")
        chunk = -(-size // pieces)
        if chunk * (pieces - 1) >= size and pieces > 1:
            raise ctx.error(f"cannot split an axis of {size} into {pieces} chunks of {chunk}")
        return [chunk] * (pieces - 1) + [size - chunk * (pieces - 1)]
    if size % outputs:
        raise ctx.error(f"cannot split an axis of {size} into {outputs} equal pieces")
    return [size // outputs] * outputs


@rule("Split")
def lower_split(ctx: LowerContext) -> None:
    x = ctx.input(0)
    axis = ctx.axis(ctx.attr("axis", 0), x.type.rank)
    outputs = len(ctx.node.output)
    start = 0
    for index, length in enumerate(_split_sizes(ctx, x.type.shape[axis], outputs)):
        if ctx.node.output[index]:
            ctx.bind(index, slice_value(ctx, x, {axis: (start if length else 0, 1, length)},
                                        name=ctx.node.output[index]))
        start += length


def _indices(ctx: LowerContext) -> Value:
    indices = ctx.input(1)
    if indices.type.dtype not in ("i32", "i64"):
        raise ctx.error(f"indices {ctx.node.input[1]!r} are {indices.type.dtype}, not int32 or int64")
    return indices


def _check_constant_indices(ctx: LowerContext, size: int) -> None:
    """Constant indices out of range are the model's mistake, named before anything runs."""
    if ctx.is_constant(1):
        indices = ctx.constant(1, "indices")
        if indices.size and (indices.min() < -size or indices.max() >= size):
            raise ctx.error(f"indices {ctx.node.input[1]!r} hold values outside [-{size}, {size - 1}]")


_GATHERS = {"Gather": "nn.gather", "GatherElements": "nn.gather_elements"}


@rule(*_GATHERS)
def lower_gather(ctx: LowerContext) -> None:
    x = ctx.input(0)
    axis = ctx.axis(ctx.attr("axis", 0), x.type.rank)
    _check_constant_indices(ctx, x.type.shape[axis])
    ctx.bind(0, ctx.op(_GATHERS[ctx.node.op_type], [x, _indices(ctx)], {"axis": axis}))


@rule("GatherND")
def lower_gather_nd(ctx: LowerContext) -> None:
    batch_dims = int(ctx.attr("batch_dims", 0))
    ctx.bind(0, ctx.op("nn.gather_nd", [ctx.input(0), _indices(ctx)], {"batch_dims": batch_dims}))


# The scatter reductions each opset accepts: none before 16, then add, mul, max and min (ONNX has max and min
# from 18 on; onnxruntime 1.32 runs them in opset 16 and 17 models too)
_SCATTER_REDUCTIONS = ((16, ("none", "add", "mul", "max", "min")), (0, ("none",)))
_SCATTERS = {"ScatterND": "nn.scatter_nd", "ScatterElements": "nn.scatter_elements", "Scatter": "nn.scatter_elements"}


@rule(*_SCATTERS)
def lower_scatter(ctx: LowerContext) -> None:
    data, updates = ctx.input(0), ctx.input(2)
    reduction = ctx.attr("reduction", "none")
    allowed = next(names for since, names in _SCATTER_REDUCTIONS if ctx.opset >= since)
    if reduction not in allowed:
        raise ctx.error(f"attribute reduction={reduction!r} is not one of {', '.join(allowed)} in opset {ctx.opset}")
    attrs: dict[str, object] = {"reduction": reduction}
    if ctx.node.op_type != "ScatterND":
        attrs["axis"] = axis = ctx.axis(ctx.attr("axis", 0), data.type.rank)
        _check_constant_indices(ctx, data.type.shape[axis])
    ctx.bind(0, ctx.op(_SCATTERS[ctx.node.op_type], [data, _indices(ctx), updates], attrs))


@rule("Expand")
def lower_expand(ctx: LowerContext) -> None:
    x = ctx.input(0)
    requested = tuple(int(d) for d in ctx.constant(1, "shape").reshape(-1))
    try:
        shape = broadcast_shapes(x.type.shape, requested)
    except ValueError as err:
        raise ctx.error(str(err)) from None
    ctx.bind(0, ctx.op("nn.expand", [x], {"shape": shape}))


@rule("Tile")
def lower_tile(ctx: LowerContext) -> None:
    x = ctx.input(0)
    repeats = [int(r) for r in ctx.constant(1, "repeats").reshape(-1)]
    if len(repeats) != x.type.rank or min(repeats, default=0) < 0:
        raise ctx.error(f"repeats {repeats} need {x.type.rank} non-negative values")
    ctx.bind(0, ctx.op("nn.tile", [x], {"repeats": tuple(repeats)}))


_SHAPE_INPUTS = {"Shape": ("data",), "Size": ("data",), "ConstantOfShape": ("shape",),
                 "Range": ("start", "limit", "delta")}


@rule(*_SHAPE_INPUTS)
def lower_shape_producer(ctx: LowerContext) -> None:
    """Reached only when folding could not run: names the input that is not known at compile time."""
    for index, what in enumerate(_SHAPE_INPUTS[ctx.node.op_type]):
        ctx.constant(index, what)  # UnsupportedError naming the input
    raise AssertionError(f"{ctx.label} has constant inputs but was not folded")

