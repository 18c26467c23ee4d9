"""Which instructions run once on a whole batch, stacked along the leading axis.

A batch of N samples is held as every buffer's N per-sample values concatenated along axis 0 (a
per-sample [1, C, H, W] becomes [N, C, H, W], a layer's vectors [P, K] become [N·P, K]). Constants and
what is computed from constants alone are not stacked: they are the same for every sample. An
instruction whose per-sample results, stacked, are what it computes on the stacked operands runs once
(`stacks`); any other runs sample by sample on the stacked operands' parts and its results are stacked.

Stacked in one call: `mvm`, `quantize`, `dequantize` and `im2col` (each row or sample on its own), and
on the vector unit the element-wise ops (every stacked operand has the result's rank and leading size,
every other one leading size 1 or a lower rank), reshapes (the leading size scales by N), transposes
that keep axis 0 first, pooling and depth-to-space (per sample along axis 0), softmax, layer norm and
concat along another axis, the phases of a deconvolution interleaved, and `store`. Left per sample:
products of activations on the vector unit (`nn.matmul`, `nn.conv2d`: BLAS may round a bigger call
differently, and integer mode promises a batch's results bit for bit equal to single runs), and every
other op (gather, slice, resize...: their attributes may address axis 0).
"""

from __future__ import annotations

from collections.abc import Sequence

from rcc.backends.program import Instruction
from rcc.ir.optable import OPS

# per-sample vector-unit ops whose axis 0 is the batch (NCHW) and whose other operands are not stacked
_PER_SAMPLE_FNS = frozenset({"nn.max_pool2d", "nn.avg_pool2d", "nn.global_avg_pool", "nn.global_max_pool",
                             "nn.depth_to_space"})
_AXIS_FNS = frozenset({"nn.softmax", "nn.log_softmax", "nn.layer_norm"})   # along `axis` ≥ 1 of operand 0
_ROW_OPCODES = frozenset({"quantize", "dequantize", "im2col", "mvm"})       # operand 0 alone is stacked


def stacks(instruction: Instruction, operand_shapes: Sequence[Sequence[int]], stacked: Sequence[bool]) -> bool:
    """Whether `instruction`, given its per-sample operand shapes and which operands are stacked, computes
    the stacked batch's results in one call."""
    if instruction.opcode == "store":
        return True
    results = instruction.shapes
    if not results or any(len(shape) == 0 for shape in results):
        return False
    if instruction.opcode in _ROW_OPCODES or instruction.opcode == "write_mvm":
        return stacked[0] and not any(stacked[1:])
    if instruction.opcode != "vec":
        return False
    fn = instruction.attrs["fn"]
    attrs = instruction.attrs.get("attrs", {})
    first = operand_shapes[0] if operand_shapes else ()
    if fn in _PER_SAMPLE_FNS or fn in _AXIS_FNS and attrs.get("axis", 0) >= 1:
        return stacked[0] and not any(stacked[1:]) and len(first) >= 1
    if fn == "nn.reshape":
        return len(first) >= 1 and all(results[0][1:]) and len(results[0]) >= 1
    if fn == "nn.transpose":
        return attrs["perm"][0] == 0
    if fn in ("nn.concat", "nn.interleave") and (fn != "nn.concat" or attrs["axis"] >= 1):
        return all(stacked) and len({shape[0] for shape in operand_shapes} | {results[0][0]}) == 1
    if "elementwise" in OPS[fn].tags:
        return _broadcasts_per_sample(operand_shapes, stacked, results)
    return False


def _broadcasts_per_sample(operand_shapes: Sequence[Sequence[int]], stacked: Sequence[bool],
                           results: Sequence[Sequence[int]]) -> bool:
    """Element-wise: axis 0 of every result comes from the stacked operands alone."""
    rank, leading = len(results[0]), results[0][0]
    if any(len(shape) != rank or shape[0] != leading for shape in results):
        return False
    for shape, is_stacked in zip(operand_shapes, stacked):
        if is_stacked and (len(shape) != rank or shape[0] != leading):
            return False
        if not is_stacked and len(shape) == rank and shape[0] != 1:
            return False
    return True


def batch_attrs(instruction: Instruction, batch: int) -> dict | None:
    """The vector op's attributes for a stacked batch when they name sizes (a reshape's leading size);
    None when the per-sample attributes serve."""
    if instruction.opcode == "vec" and instruction.attrs["fn"] == "nn.reshape":
        shape = instruction.shapes[0]
        return {**instruction.attrs["attrs"], "shape": (batch * shape[0], *shape[1:])}
    return None
