"""Exact products of 8-bit codes on onnxruntime's integer GEMM (MLAS's u8 × s8 kernels: AVX-512 VNNI or AMX where
the CPU has them, several times the float32 GEMM's speed on one thread).

A layer whose inputs lie in a range of at most 256 integers ([0, 255] unsigned, [−128, 127] signed) and whose
weights are integers in [−128, 127] (every 8-bit layer of a quantized model) has its product x · W computed as
onnxruntime's MatMulInteger of uint8 codes and the int8 weights (an initializer of a one-node session per layer,
one thread): each product of the sum is an integer below 2^15 and MLAS accumulates them in int32, exact while
K · 255 · 128 < 2^31. Signed inputs are offset into [0, 255] (x + o) and the constant o · Σₖ W[k, m] taken off
each column's sums, in int32 (every term bounded as above). One MLAS kernel does not: the AVX2 (and
AVX-512 without VNNI) u8 × s8 kernel adds pairs of products in int16 with saturation (vpmaddubsw), so a pair
255 · 127 + 255 · 127 comes back as 32767. `exact_on_this_cpu` runs every pair at its extremes through the kernel
this process dispatches to, once; where it saturates, no layer takes this path (the float32 GEMM does their
products, as before).

`layer_takes` is the rule for a layer (`runtime/fusion.py` asks it once, when a machine switches to its compiled
steps, so a short run never imports onnxruntime). A NaN that reaches such a layer's codes (a NaN made inside the
network, in a run that does not propagate NaN: those run the unfused steps) gives an arbitrary code, as the unfused
steps' int32 cast does, where the float32 GEMM's product was NaN.
"""

from __future__ import annotations

import numpy as np

# K · 255 · 128 below 2^31: every int32 partial sum exact
LARGEST_DEPTH = (2**31 - 1) // (255 * 128)
# Fewer rows a sample than this: a matrix-vector product, bound by reading the weights, where the session's copy of
# them would cost memory (VGG-19's classifier: 123 M weights, 1 row; with it in sessions the compiled machine's
# VmHWM was 1574 MiB, without 1208) for a small gain
INTEGER_GEMM_ROWS = 16
# Fewer multiply-accumulates a sample than this: the float32 GEMM is as quick as a session's call (one thread,
# medians, µs: 16 x 128 x 32 float32 4.0 against 9.7 from uint8 codes; 64 x 288 x 64 28.3 against 12.3; 256 x 576
# x 64 244 against 49; 784 x 1152 x 128 3149 against 426)
INTEGER_GEMM_MACS = 1 << 19

# From this many multiply-accumulates a sample, a layer that would go tap by tap in float32 (several GEMMs of a few
# channels each, `runtime/tap_conv.py`) takes the integer GEMM from its uint8 columns; below INTEGER_GEMM_MACS too,
# as that bound weighs one float32 GEMM (one thread, medians, µs, taps → columns and integer GEMM: 16 channels at
# 16×16 into 9, 3×3, 2^18.3 MACs, 79 → 55; 32 at 8×8 into 32 58 → 37; 8 at 32×32 into 8 123 → 106, but a layer
# with few outputs has its own compiled taps: `TapConvolution.few_outputs`)
TAP_LAYER_MACS = 1 << 18

_PROBE: dict[str, bool] = {}


def input_offset(x_range: tuple[int, int]) -> int:
    """The offset o taking inputs in `x_range` into uint8 codes x + o (0 for unsigned ones)."""
    return max(0, -int(x_range[0]))


def takes(matrix: np.ndarray, x_range: tuple[int, int]) -> bool:
    """Whether x · `matrix` (one group's integer-valued weights [K, M]) for x in `x_range` is this module's exact
    product: inputs within 256 integers from 0 or from −128, weights in [−128, 127], K within LARGEST_DEPTH, and an
    exact kernel on this CPU."""
    low, high = x_range
    return -128 <= low and high + input_offset(x_range) <= 255 and matrix.shape[0] <= LARGEST_DEPTH and \
        float(matrix.min(initial=0)) >= -128 and float(matrix.max(initial=0)) <= 127 and exact_on_this_cpu()


def layer_takes(group, bound: tuple[int, int], order: np.ndarray | None, rows: int, by_taps: bool = False) -> bool:
    """Whether a layer's (`runtime/crossbar.py` CrossbarGroup, its inputs in `bound`, weight rows in `order`) exact
    product is this module's: dense, one group, INTEGER_GEMM_ROWS rows a sample and INTEGER_GEMM_MACS
    multiply-accumulates or more (TAP_LAYER_MACS for a layer that would otherwise go tap by tap, `by_taps`), and
    codes and weights `takes`."""
    _, depth, outputs = group.matrix.shape
    smallest = min(TAP_LAYER_MACS, INTEGER_GEMM_MACS) if by_taps else INTEGER_GEMM_MACS
    return rows >= INTEGER_GEMM_ROWS and rows * depth * outputs >= smallest and group.blocks is None and \
        group.mapping.groups == 1 and takes(group.matrix_in_order(order)[0], bound)


def exact_on_this_cpu() -> bool:
    """Whether MLAS's u8 × s8 kernel in this process sums products exactly, against the float64 product; kept per
    process. The probe's rows of 255 meet columns of 127 and of −128, so that however the kernel pairs adjacent
    products, each pair of those columns overflows int16 (64770, −65280); other rows and columns mix zeros and
    signs; one probe of 8 rows and one of a single row (MLAS's matrix-vector kernel), an even and an odd depth."""
    if "u8s8" not in _PROBE:
        _PROBE["u8s8"] = all(_probe(rows, depth) for rows, depth in ((8, 64), (1, 63)))
    return _PROBE["u8s8"]


def _probe(rows: int, depth: int) -> bool:
    x = np.full((rows, depth), 255, np.uint8)
    x[1::2, ::2] = 0
    weights = np.zeros((depth, 4), np.int8)
    weights[:, 0], weights[:, 1] = 127, -128
    weights[::2, 2], weights[1::2, 2] = 127, -128
    weights[:, 3] = np.arange(depth) % 256 - 128
    exact = x.astype(np.float64) @ weights.astype(np.float64)
    try:
        gemm = Int8Gemm(weights)
    except Exception:   # noqa: BLE001 -- an onnxruntime refusing the one-node model: the float32 GEMM instead
        return False
    return bool(np.array_equal(gemm(x), exact))


class Int8Gemm:
    """x [P, K] (integer values in [−offset, 255 − offset], of any dtype; uint8: their codes x + offset already)
    · `weights` (integers in [−128, 127], [K, M]) as int32 [P, M], on a one-node onnxruntime session holding the
    weights as int8."""

    def __init__(self, weights: np.ndarray, offset: int = 0):
        self._offset = offset
        self._correction = (offset * np.asarray(weights, np.float64).sum(axis=0)).astype(np.int32) if offset else None
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper
        depth, outputs = weights.shape
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["x", "w"], ["y"])], "product",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, ["rows", depth])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, ["rows", outputs])],
            [numpy_helper.from_array(np.asarray(weights).astype(np.int8), "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False   # a session per layer: no arena of its own held between runs
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                     providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == np.uint8:
            codes = x
        elif self._offset:
            codes = np.empty(x.shape, np.uint8)
            np.add(x, self._offset, out=codes, casting="unsafe")
        else:
            codes = x.astype(np.uint8)
        sums = self._session.run(None, {"x": codes})[0]
        if self._correction is not None:
            sums -= self._correction
        return sums
