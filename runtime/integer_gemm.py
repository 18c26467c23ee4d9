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

Imported only where a machine switches to its compiled steps (`runtime/fusion.py`): onnxruntime's import is not
paid by a short run.
"""

from __future__ import annotations

import numpy as np

# K · 255 · 128 below 2^31: every int32 partial sum exact
LARGEST_DEPTH = (2**31 - 1) // (255 * 128)

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


def exact_on_this_cpu() -> bool:
    """Whether MLAS's u8 × s8 kernel in this process sums products exactly: a probe whose every pair of products is
    at an extreme (255 · 127 twice, 255 · −128 twice, and mixed), against the float64 product; kept per process."""
    if "u8s8" not in _PROBE:
        x = np.full((8, 64), 255, np.uint8)
        x[1::2, ::2] = 0
        weights = np.zeros((64, 4), np.int8)
        weights[:, 0], weights[:, 1] = 127, -128
        weights[::2, 2], weights[1::2, 2] = 127, -128
        weights[:, 3] = np.arange(64) % 256 - 128
        exact = x.astype(np.float64) @ weights.astype(np.float64)
        try:
            _PROBE["u8s8"] = bool(np.array_equal(Int8Gemm(weights)(x), exact))
        except Exception:   # an onnxruntime without the kernel, or refusing the model: the float32 GEMM instead
            _PROBE["u8s8"] = False
    return _PROBE["u8s8"]


class Int8Gemm:
    """x [P, K] (integer values in [−offset, 255 − offset], of any dtype) · `weights` (integers in [−128, 127],
    [K, M]) as int32 [P, M], on a one-node onnxruntime session holding the weights as int8."""

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
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                     providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._offset:
            codes = np.empty(x.shape, np.uint8)
            np.add(x, self._offset, out=codes, casting="unsafe")
        else:
            codes = x if x.dtype == np.uint8 else x.astype(np.uint8)
        sums = self._session.run(None, {"x": codes})[0]
        if self._correction is not None:
            sums -= self._correction
        return sums
