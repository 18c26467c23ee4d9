"""Magnitude pruning of an ONNX model's weights, so users can make sparse models to study (the Python
call behind `rcc prune`, whose command line is compiler/commands/prune.py).

Every Conv, ConvTranspose, Gemm and MatMul whose weight is an initializer is pruned in place of a copy
of the model; biases and everything else are left alone. Two granularities:

- `none` (unstructured): the ⌈s·size⌉ weights of smallest |w| become zero, ties broken by a stable sort
  on the flat index, so the count is exact (weights already zero sort first).
- `crossbar` (Lin et al., ASP-DAC 2019, crossbar-grained pruning): the weight is viewed as the matrix the
  arrays hold, [K, M] per group (K = C/g·kh·kw input rows, M = output channels; [in, out] for Gemm and
  MatMul), tiled into blocks of `xbar_rows` rows × `xbar_cols // weight_slices` outputs, the span of one
  array. Whole blocks are zeroed in order of increasing salience Σ|w| until at least s of the weights are
  zero; the last block may overshoot, and the achieved sparsity is reported.

    rcc prune lenet5.onnx --sparsity 0.9 --structured crossbar --xbar 32x32 -o lenet5_s90.onnx

The sparsity is read as the decimal the user wrote (0.9 is 9/10, not the binary float just above it),
so ⌈0.9 · 100⌉ is 90, not 91.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from rcc.backends.target import Target
from rcc.ir.errors import RccError
from rcc.ir.ops.nn_linear import conv_weight_from_matrix, conv_weight_matrix, swap_conv_transpose_weight

STRUCTURES = ("none", "crossbar")
PRUNABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(onnx.helper.get_attribute_value(attribute))
    return default


def _weight_input(node: onnx.NodeProto) -> str | None:
    """The name of the node's weight operand (Conv/ConvTranspose W, Gemm B, MatMul's second input)."""
    return node.input[1] if len(node.input) > 1 and node.input[1] else None


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type} #{index}"


def crossbar_view(weight: np.ndarray, node: onnx.NodeProto,
                  label: str) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The weight as the matrices the arrays hold, [G, K, M] (rows in (c, *k) order, as lower-to-xbar lays
    them), and the function that puts such matrices back into the weight's own layout."""
    if node.op_type == "Gemm":
        if weight.ndim != 2:
            raise RccError(f"{label} (Gemm): weight B must be 2-D, got shape {list(weight.shape)}")
        if _attribute(node, "transB", 0):  # B is [out, in]
            return weight.T[None], lambda view: view[0].T
        return weight[None], lambda view: view[0]
    if node.op_type == "MatMul":  # [..., K, M]: every leading index is its own matrix
        matrices = weight.reshape(1, -1, 1) if weight.ndim == 1 else weight.reshape(-1, *weight.shape[-2:])
        return matrices, lambda view: view.reshape(weight.shape)
    if weight.ndim < 3:
        raise RccError(f"{label} ({node.op_type}): weight must have at least 3 dimensions, "
                       f"got shape {list(weight.shape)}")
    groups = _attribute(node, "group", 1)
    if groups < 1 or weight.shape[0] % groups:
        raise RccError(f"{label} ({node.op_type}): weight dimension 0 ({weight.shape[0]}) is not divisible by "
                       f"group = {groups}")
    if node.op_type == "Conv":
        return conv_weight_matrix(weight, groups), lambda view: conv_weight_from_matrix(view, weight.shape)
    # ConvTranspose W [C, M/g, *k]: the conv weight [M, C/g, *k] with inputs and outputs swapped
    swapped = swap_conv_transpose_weight(weight, groups)
    return (conv_weight_matrix(swapped, groups),
            lambda view: swap_conv_transpose_weight(conv_weight_from_matrix(view, swapped.shape), groups))


def _target_zeros(size: int, sparsity: Fraction) -> int:
    return math.ceil(sparsity * size)


def prune_unstructured(weight: np.ndarray, sparsity: Fraction) -> np.ndarray:
    """A copy of `weight` with its ⌈s·size⌉ smallest-|w| entries zero (stable sort: ties by flat index)."""
    count = _target_zeros(weight.size, sparsity)
    order = np.argsort(np.abs(weight).ravel(), kind="stable")
    pruned = weight.copy().ravel()
    pruned[order[:count]] = 0
    return pruned.reshape(weight.shape)


def prune_blocks(view: np.ndarray, sparsity: Fraction, block_rows: int,
                 block_cols: int) -> tuple[np.ndarray, int, int]:
    """Zero whole [block_rows × block_cols] blocks of each [K, M] matrix of `view` ([G, K, M]), least
    salient first, until at least s of the weights are zero. Returns the pruned copy, the blocks zeroed
    (those that held a non-zero) and the total number of blocks."""
    groups, rows, cols = view.shape
    needed = _target_zeros(view.size, sparsity)
    zeros = int(np.count_nonzero(view == 0))
    blocks = [(g, r, c) for g in range(groups) for r in range(0, rows, block_rows) for c in range(0, cols, block_cols)]
    magnitude = np.abs(view.astype(np.float64))
    salience = [magnitude[g, r:r + block_rows, c:c + block_cols].sum() for g, r, c in blocks]
    pruned = view.copy()
    removed = 0
    for index in np.argsort(np.asarray(salience, dtype=np.float64), kind="stable"):
        if zeros >= needed:
            break
        g, r, c = blocks[index]
        block = pruned[g, r:r + block_rows, c:c + block_cols]
        nonzero = int(np.count_nonzero(block))
        if nonzero:
            block[...] = 0
            zeros += nonzero
            removed += 1
    return pruned, removed, len(blocks)


def _sparsity(array: np.ndarray) -> float:
    return float(np.count_nonzero(array == 0) / array.size) if array.size else 0.0


def sparsity_fraction(sparsity: float, option: str) -> Fraction:
    """The sparsity as the exact decimal the user wrote; RccError naming `option` outside [0, 1)."""
    if not isinstance(sparsity, (int, float)) or isinstance(sparsity, bool) or not 0 <= sparsity < 1:
        raise RccError(f"{option} must be a number in [0, 1), got {sparsity!r}")
    return Fraction(repr(float(sparsity)))  # the decimal the user wrote, not its binary neighbour


def prune_onnx(model: onnx.ModelProto, sparsity: float, structured: str = "none",
               target: Target | None = None) -> tuple[onnx.ModelProto, list[dict[str, Any]]]:
    """A pruned copy of `model` and one report row per pruned weight tensor (see the module docstring).

    A weight initializer shared by several nodes is pruned once, in the view of its first consumer."""
    fraction = sparsity_fraction(sparsity, "sparsity")
    if structured not in STRUCTURES:
        raise RccError(f"--structured must be one of {', '.join(STRUCTURES)}, got {structured!r}")
    target = target or Target()
    pruned_model = onnx.ModelProto()
    pruned_model.CopyFrom(model)
    initializers = {init.name: init for init in pruned_model.graph.initializer}
    done: set[str] = set()
    rows: list[dict[str, Any]] = []
    for index, node in enumerate(pruned_model.graph.node):
        name = _weight_input(node) if node.op_type in PRUNABLE_OPS else None
        if name is None or name not in initializers or name in done:
            continue
        done.add(name)
        label = _node_label(node, index)
        weight = numpy_helper.to_array(initializers[name])
        if weight.size == 0 or not np.issubdtype(weight.dtype, np.number):
            continue
        row: dict[str, Any] = {"node": label, "op_type": node.op_type, "tensor": name, "shape": list(weight.shape),
                               "size": int(weight.size), "sparsity_before": _sparsity(weight),
                               "blocks_removed": None, "blocks_total": None}
        if structured == "none":
            pruned = prune_unstructured(weight, fraction)
        else:
            view, restore = crossbar_view(weight, node, label)
            pruned_view, removed, total = prune_blocks(view, fraction, target.xbar_rows,
                                                       target.weights_per_array_row)
            pruned = restore(pruned_view)
            row["blocks_removed"], row["blocks_total"] = removed, total
        row["sparsity_after"] = _sparsity(pruned)
        initializers[name].CopyFrom(numpy_helper.from_array(pruned.astype(weight.dtype, copy=False), name))
        rows.append(row)
    return pruned_model, rows
