"""`fold-batch-norm`: fold an inference batch norm into the conv, transposed conv or matmul before it.

    %c = nn.conv2d(%x, %w, %b) {...} : f32[1,8,4,4]
    %y = nn.batch_norm(%c, %g, %beta, %mean, %var) {epsilon = 1e-05} : f32[1,8,4,4]
        →   %y = nn.conv2d(%x, %w', %b') {...} : f32[1,8,4,4]
    with w' = w · g/√(var+ε) per output channel and b' = (b − mean) · g/√(var+ε) + beta.

Only when the weights and statistics are constants and the batch norm is the producer's only user.
A matmul folds when its output is 2-D (channels last = axis 1), with or without a following bias add.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, Op, Value
from rcc.ir.ops.nn_linear import scale_output_channels


def _match(module: Module, users: dict[Value, list[Op]], norm: Op) -> tuple[Op, Op | None] | None:
    """The (weighted op, bias add or None) feeding `norm`, if it can absorb the normalisation."""
    source = norm.operands[0]
    if any(not v.is_constant for v in norm.operands[1:]) or len(users.get(source, [])) != 1 \
            or source in module.outputs or source.producer is None:
        return None
    producer, bias_add = source.producer, None
    if producer.opname == "nn.add" and source.type.rank == 2:
        bias, inner = producer.operands[1], producer.operands[0]
        if not bias.is_constant or inner.producer is None or len(users.get(inner, [])) != 1 \
                or bias.type.shape not in ((source.type.shape[1],), (1, source.type.shape[1])):
            return None
        producer, bias_add = inner.producer, producer
    if producer.opname in ("nn.conv2d", "nn.conv_transpose2d") and producer.operands[1].is_constant \
            and all(v.is_constant for v in producer.operands[2:]):
        return producer, None
    if producer.opname == "nn.matmul" and producer.operands[1].is_constant and producer.result.type.rank == 2 \
            and producer.operands[1].type.rank == 2:
        return producer, bias_add
    return None


@dataclass
class FoldBatchNorm(Pass):
    name = "fold-batch-norm"

    def run(self, module: Module, ctx: PassContext) -> bool:
        changed = False
        for norm in [op for op in module.ops if op.opname == "nn.batch_norm"]:
            users = module.users()
            match = _match(module, users, norm)
            if match is None:
                continue
            producer, bias_add = match
            scale, beta, mean, var = (v.data.astype(np.float64) for v in norm.operands[1:])
            with np.errstate(all="ignore"):
                factor = scale / np.sqrt(var + norm.attrs["epsilon"])
            if not np.isfinite(factor).all():   # a negative or zero variance: folded weights would be NaN or
                continue                        # inf; the normalisation stays a vector op, NaN where ORT's is
            weight = producer.operands[1]
            old_bias = (bias_add.operands[1] if bias_add else
                        producer.operands[2] if len(producer.operands) > 2 else None)
            bias = old_bias.data.reshape(-1).astype(np.float64) if old_bias is not None else 0.0
            dtype = weight.type.np_dtype
            scaled = scale_output_channels(producer, weight.data.astype(np.float64), factor).astype(dtype)
            new_weight = module.add_constant(module.fresh_name(weight.name + ".bn"), scaled)
            new_bias = module.add_constant(module.fresh_name(norm.result.name + ".bias"),
                                           ((bias - mean) * factor + beta).astype(dtype))
            x = producer.operands[0]
            if producer.opname == "nn.matmul":
                matmul = make_op("nn.matmul", [x, new_weight], {}, [producer.result.name])
                folded = [matmul, make_op("nn.add", [matmul.result, new_bias], {}, [norm.result.name])]
            else:
                folded = [make_op(producer.opname, [x, new_weight, new_bias], producer.attrs, [norm.result.name])]
            position = module.ops.index(norm)
            module.ops[position:position + 1] = folded
            module.ops = [op for op in module.ops if op is not producer and op is not bias_add]
            module.replace_uses(norm.result, folded[-1].result)
            ctx.report.removed.append({"op": norm.opname, "value": norm.result.name, "into": producer.result.name})
            changed = True
        if changed:
            module.drop_unused_constants()
        return changed
