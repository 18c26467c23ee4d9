"""Special values and edge dtypes through the frontend and the interpreter, against onnxruntime bit for bit (or,
where onnxruntime's kernel is an approximation, against the exact value): ±0, ±inf, NaN, float16 sums that
overflow float16 midway, integer results beyond 2^53, integer bounds at the dtype's limits."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from tests.backends.test_onnx_export import run_export


def _one_node(node: onnx.NodeProto, inputs: dict[str, np.ndarray], opset: int,
              constants: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    type_of = onnx.helper.np_dtype_to_tensor_dtype
    first = next(iter(inputs.values()))
    graph = helper.make_graph([node], "special", [helper.make_tensor_value_info(name, type_of(a.dtype), a.shape)
                                                  for name, a in inputs.items()],
                              [helper.make_tensor_value_info(node.output[0], type_of(first.dtype), None)],
                              [numpy_helper.from_array(a, name) for name, a in (constants or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _both(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    [ours] = interpreter.run(lower_model(model, "special", allow_nonfinite=True), inputs).values()
    [theirs] = run_export(model, inputs).values()
    return np.asarray(ours), theirs


def _bitwise(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs, equal_nan=True), (ours, theirs)
    if ours.dtype.kind == "f":
        assert np.array_equal(np.signbit(ours), np.signbit(theirs))


def test_sigmoid_is_onnxruntimes_bit_for_bit_tails_included() -> None:
    """rcc computes float32 Sigmoid as onnxruntime's MLAS kernel does (a rational approximation on [-18, 18],
    fused multiply-adds): bit for bit, also in the tails where it is far from the exact value (0 from −16.6 down,
    up to 7x relative error above that), which an exact sigmoid missed by rel L2 4e-5 on a tiny output."""
    x = np.concatenate([np.linspace(-88, 88, 40001), [-0.0, 0.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    ours, theirs = _both(_one_node(helper.make_node("Sigmoid", ["x"], ["y"]), {"x": x}, 13), {"x": x})
    assert np.array_equal(ours.view(np.int32), theirs.view(np.int32))
    assert ours[x == -np.inf][0] == 0.0 and ours[x == np.inf][0] == 1.0 and np.isnan(ours[-1])


def test_tanh_is_onnxruntimes_bit_for_bit() -> None:
    """float32 Tanh as onnxruntime's MLAS kernel computes it (np.tanh differed by an ulp on a third of inputs)."""
    x = np.concatenate([np.linspace(-30, 30, 60001), [-0.0, 0.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    ours, theirs = _both(_one_node(helper.make_node("Tanh", ["x"], ["y"]), {"x": x}, 13), {"x": x})
    assert np.array_equal(ours.view(np.int32), theirs.view(np.int32))


def test_sigmoid_float16_every_value() -> None:
    """float16 in float32 as onnxruntime computes it, rounded once: every float16 value bit for bit (the float16
    arithmetic was off by up to 7e-4: sigmoid(−8) was 0)."""
    x = np.arange(-2**15, 2**15, dtype=np.int32).astype(np.uint16).view(np.float16)
    x = x[~np.isnan(x)]          # onnxruntime quiets signalling NaNs: payloads are not the point here
    ours, theirs = _both(_one_node(helper.make_node("Sigmoid", ["x"], ["y"]), {"x": x}, 13), {"x": x})
    assert np.array_equal(ours.view(np.int16), theirs.view(np.int16))


@pytest.mark.parametrize("op_type", ["ReduceMean", "ReduceL2", "ReduceLogSum"])
def test_float16_reductions_accumulate_in_float32(op_type: str) -> None:
    """Representable results whose float16 sum overflowed: ReduceMean([40000, 40000]) was inf."""
    x = np.array([[40000, 40000], [300, 300], [65504, 0], [1, 2]], np.float16)
    node = helper.make_node(op_type, ["x"], ["y"], axes=[1], keepdims=0)
    ours, theirs = _both(_one_node(node, {"x": x}, 13), {"x": x})
    assert np.isfinite(ours).all()
    _bitwise(ours, theirs)


@pytest.mark.parametrize("op_type", ["Sum", "Mean"])
@pytest.mark.parametrize("count", [2, 3, 4])
def test_float16_sum_and_mean_accumulate_in_float32(op_type: str, count: int) -> None:
    """Sum of three float16 inputs and Mean of two or more: onnxruntime adds in float32 and rounds once; a float16
    chain rounded each step (1 + 2048 + 0.5 gave 2048, not 2050) and overflowed (Mean(40000, 40000) was inf).
    Random values over float16's range, one input broadcast along the last axis."""
    rng = np.random.default_rng(count)
    inputs = {f"x{index}": (rng.standard_normal((64, 16)) * 10.0 ** rng.uniform(-3, 4.3, (64, 16))
                            ).astype(np.float16) for index in range(count - 1)}
    inputs[f"x{count - 1}"] = (rng.standard_normal(16) * 2000).astype(np.float16)
    inputs["x0"][:4, :4] = [[40000, 40000, 1, 0.1], [40000, -40000, 2048, 0.2], [65504, 65504, 0.5, 0.3],
                            [-65504, 1, 1, 3]]
    node = helper.make_node(op_type, list(inputs), ["y"])
    _bitwise(*_both(_one_node(node, inputs, 13), inputs))


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax", "LayerNormalization"])
def test_float16_normalisations_compute_in_float32(op_type: str) -> None:
    """float16 Softmax, LogSoftmax and LayerNormalization (scale and bias too) in float32, rounded once, as
    onnxruntime: float16 arithmetic differed in 308, 135 and 124 of these 512 values (up to 6 % on softmax)."""
    rng = np.random.default_rng(0)
    inputs = {"x": (rng.standard_normal((8, 64)) * (300 if op_type == "LayerNormalization" else 3)).astype(np.float16)}
    extra = ["s", "b"] if op_type == "LayerNormalization" else []
    inputs.update({name: rng.standard_normal(64).astype(np.float16) for name in extra})
    node = helper.make_node(op_type, list(inputs), ["y"], axis=-1)
    _bitwise(*_both(_one_node(node, inputs, 17), inputs))


@pytest.mark.parametrize("exponent", [np.array(2, np.int64), np.array(2.0, np.float32), np.array(3, np.int64)])
def test_integer_pow_is_exact_and_wraps(exponent: np.ndarray) -> None:
    """x·x in int64, not through float64 (3037000499² was off by 41); overflow wraps as onnxruntime's does."""
    x = np.array([3037000499, 94906267, 2**53 + 1, -3, 2**40], np.int64)
    if exponent == 3:
        x = np.array([2097151, -2097151, 2**30, 7], np.int64)
    node = helper.make_node("Pow", ["x", "e"], ["y"])
    model = _one_node(node, {"x": x}, 15, {"e": exponent})
    _bitwise(*_both(model, {"x": x}))
    small = x.astype(np.int32)
    _bitwise(*_both(_one_node(node, {"x": small}, 15, {"e": exponent}), {"x": small}))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_clip_at_the_dtype_limits(dtype) -> None:
    """Bounds at the dtype's limits: float(2^63 − 1) is 2^63, which crashed the interpreter."""
    info = np.iinfo(dtype)
    x = np.array([info.min, info.max, 0, 5], dtype)
    node = helper.make_node("Clip", ["x", "low", "high"], ["y"])
    bounds = {"low": np.array(info.min, dtype), "high": np.array(info.max, dtype)}
    _bitwise(*_both(_one_node(node, {"x": x}, 13, bounds), {"x": x}))


def test_clip6_absent_bounds_are_float32_limits() -> None:
    """Clip-6's defaults are ±3.4e38 whatever the type: float16 ±inf stay ±inf (±3.4e38 is ±inf there)."""
    x = np.array([np.inf, -np.inf, 65504, -0.0, np.nan], np.float16)
    _bitwise(*_both(_one_node(helper.make_node("Clip", ["x"], ["y"]), {"x": x}, 6), {"x": x}))


@pytest.mark.parametrize(("op_type", "attrs"), [("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.1}), ("HardSigmoid", {}),
                                                ("HardSwish", {})], ids=["leaky", "leaky-0.1", "hard-sigmoid", "hard-swish"])
def test_float16_activations_every_value(op_type: str, attrs: dict) -> None:
    """float16 in float32 with the float32 attribute, rounded once, as onnxruntime: float16 arithmetic differed on
    7745 (LeakyRelu), 1356 (HardSigmoid) and 8424 (HardSwish) of the 65536 values."""
    x = np.arange(-2**15, 2**15, dtype=np.int32).astype(np.uint16).view(np.float16)
    x = x[~np.isnan(x)]
    opset = 14 if op_type == "HardSwish" else 13
    _bitwise(*_both(_one_node(helper.make_node(op_type, ["x"], ["y"], **attrs), {"x": x}, opset), {"x": x}))


def test_square_root_power_of_a_scalar() -> None:
    """Pow(x, 0.5) of a 0-d tensor (its root is a numpy scalar: marking -inf's root by item assignment crashed)."""
    for value in (4.0, -np.inf, -0.0):
        x = np.array(value, np.float32)
        node = helper.make_node("Pow", ["x", "half"], ["y"])
        _bitwise(*_both(_one_node(node, {"x": x}, 13, {"half": np.array(0.5, np.float32)}), {"x": x}))
