"""Lowering of ONNX's If when its condition is known at compile time: the branch it takes is lowered in its
place.

Exporters write shape checks as control flow (Silero VAD: `If(Equal(Gather(Shape(x), 0), 1))`; torch's
`if x.shape[0] == ...`). Every shape is static here, so such a condition folds to a constant and the If is
not data-dependent: its branch's nodes are compiled for the chip like the graph's own. ONNX forbids a branch
to shadow an outer name, so its tensors keep their names; its outputs become the If's. An If whose condition
is computed at run time is `DataDependentIf`: the driver then cuts the model there and the rest runs on the
host (`host_split.py`), as for NonZero.
"""

from __future__ import annotations

from onnx import helper

from rcc.compiler.frontend.context import LowerContext, initializer_arrays
from rcc.compiler.frontend.registry import rule
from rcc.ir.errors import UnsupportedError
from rcc.ir.inputs import check_finite


class DataDependentIf(UnsupportedError):
    """An If whose condition is a run-time value, or whose taken branch holds a node rcc cannot compile for the
    chip (NonZero, a TopK with a computed K, an unsupported op): `index` is the main graph's node that holds it
    (the If itself, or the If whose taken branch holds it)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@rule("If")
def lower_if(ctx: LowerContext) -> None:
    if not ctx.is_constant(0):
        raise DataDependentIf(f"{ctx.source}: {ctx.label}: its condition is computed at run time, so which branch "
                              f"runs (and its output shape) depends on tensor values", ctx.top_index)
    condition = ctx.constant(0, "cond")
    if condition.size != 1:
        raise ctx.error(f"cond must hold one value, got shape {list(condition.shape)}")
    node = ctx.node
    name = "then_branch" if bool(condition.reshape(-1)[0]) else "else_branch"
    branch = next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)
    if len(branch.output) != len(node.output):
        raise ctx.error(f"{name} has {len(branch.output)} outputs; the If has {len(node.output)}")
    weights = initializer_arrays(branch, ctx.source)
    if not ctx.allow_nonfinite:
        for weight, array in weights.items():
            check_finite(f"{ctx.source}: initializer {weight!r} of {ctx.label}'s {name}", array)
    ctx.constants.update(weights)
    ctx.used.update(output.name for output in branch.output)
    label = ctx.label
    try:
        ctx.lower_nodes(list(zip(branch.node, range(len(branch.node)))), f"{label}'s {name}")
    except UnsupportedError as err:   # the If goes to the host whole, as an If on a run-time value does
        if isinstance(err, DataDependentIf):
            raise
        raise DataDependentIf(f"{err} (so the If runs on the host)", ctx.top_index) from None
    ctx.node, ctx.label = node, label
    for inner, outer in zip(branch.output, node.output):
        if not outer:
            continue
        if inner.name in ctx.sequences:
            ctx.sequences[outer] = ctx.sequences[inner.name]
        elif inner.name in ctx.constants:
            ctx.bind_constant(outer, ctx.constants[inner.name])
        else:
            ctx.values[outer] = ctx.value_of(inner.name)
