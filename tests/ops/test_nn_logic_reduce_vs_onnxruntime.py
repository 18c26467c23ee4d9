"""Property tests of the logic, cast, reduction and transformer-activation ops against onnxruntime.

One-node ONNX models run by onnxruntime on the CPU (result type left to onnxruntime, since comparisons
give bool and ArgMax int64); `OPS[name]` must infer the same type and compute the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.helper import np_dtype_to_tensor_dtype

from rcc.ir.optable import OPS, normalize_attrs
from rcc.ir.types import DTYPES, TensorType, is_narrow
from tests.ops.test_nn_ops_vs_onnxruntime import SEEDS, assert_op_matches, check_both_reject

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)
NUMERIC = ["f32", "f64", "i8", "i32", "i64", "u8"]


def run_node(op_type: str, inputs: list[np.ndarray], attrs: dict[str, Any] | None = None,
             opset: int = 18) -> np.ndarray:
    """One ONNX node run by onnxruntime with all inputs fed; its first output."""
    names = [f"in{i}" for i in range(len(inputs))]
    infos = [helper.make_tensor_value_info(n, np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in zip(names, inputs)]
    graph = helper.make_graph([helper.make_node(op_type, names, ["out"], **(attrs or {}))], "one", infos,
                              [helper.make_empty_tensor_value_info("out")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs)))[0]


def values(seed: int, shape: tuple[int, ...], dtype: str, low: int = -20, high: int = 20) -> np.ndarray:
    """Small values of `dtype` with many ties (so equality and arg-reductions have something to decide)."""
    rng = np.random.default_rng(seed)
    np_dtype = DTYPES[dtype]
    if np_dtype.kind == "b":
        return np.asarray(rng.integers(0, 2, shape).astype(bool))
    if np_dtype.kind == "u":
        low = max(low, 0)
    array = rng.integers(low, high + 1, shape)
    if np_dtype.kind == "f":
        array = array / 4
    return np.asarray(array.astype(np_dtype))


@st.composite
def broadcast_shapes(draw: st.DrawFn, count: int) -> list[tuple[int, ...]]:
    """`count` shapes that broadcast together (trailing-aligned, some axes 1, some dropped)."""
    full = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4))
    shapes = []
    for _ in range(count):
        rank = draw(st.integers(0, len(full)))
        shapes.append(tuple(1 if draw(st.booleans()) else d for d in full[len(full) - rank:]))
    return shapes


COMPARISONS = {"Equal": "nn.equal", "Less": "nn.less", "LessOrEqual": "nn.less_equal", "Greater": "nn.greater",
               "GreaterOrEqual": "nn.greater_equal"}
LOGIC = {"And": "nn.logical_and", "Or": "nn.logical_or", "Xor": "nn.logical_xor"}


@SETTINGS
@given(op_type=st.sampled_from(sorted(COMPARISONS)), dtype=st.sampled_from(NUMERIC), shapes=broadcast_shapes(2),
       seed=SEEDS)
def test_comparisons(op_type: str, dtype: str, shapes: list, seed: int) -> None:
    arrays = [values(seed, shapes[0], dtype, -3, 3), values(seed + 1, shapes[1], dtype, -3, 3)]
    assert_op_matches(COMPARISONS[op_type], arrays, {}, run_node(op_type, arrays))


@SETTINGS
@given(op_type=st.sampled_from(sorted(LOGIC) + ["Not"]), shapes=broadcast_shapes(2), seed=SEEDS)
def test_logic(op_type: str, shapes: list, seed: int) -> None:
    arrays = [values(seed, shapes[0], "bool"), values(seed + 1, shapes[1], "bool")][:1 if op_type == "Not" else 2]
    assert_op_matches(LOGIC.get(op_type, "nn.logical_not"), arrays, {}, run_node(op_type, arrays))


@SETTINGS
@given(dtype=st.sampled_from(["f32", "f64", "u8", "i32", "i64"]), shapes=broadcast_shapes(3), seed=SEEDS)
def test_where(dtype: str, shapes: list, seed: int) -> None:
    arrays = [values(seed, shapes[0], "bool"), values(seed + 1, shapes[1], dtype), values(seed + 2, shapes[2], dtype)]
    assert_op_matches("nn.where", arrays, {}, run_node("Where", arrays))


WIDE = [dtype for dtype in DTYPES if not is_narrow(dtype)]


@SETTINGS
@given(source=st.sampled_from(WIDE), target=st.sampled_from(WIDE), shape=SHAPES, seed=SEEDS,
       opset=st.sampled_from([13, 19, 21]))
def test_cast(source: str, target: str, shape: tuple, seed: int, opset: int) -> None:
    """numpy's and bool types (the narrow ones: tests/frontend/test_narrow_types.py)."""
    # values every target holds (casts out of a target's range are undefined in C, so in onnxruntime too)
    x = values(seed, shape, source, 0 if DTYPES[target].kind in "ub" else -100, 100)
    if DTYPES[source].kind == "f":
        x = np.asarray(x + np.asarray(0.375, x.dtype) * np.sign(x))  # fractions, to check truncation toward zero
        x = np.asarray(np.clip(x, 0 if DTYPES[target].kind == "u" else -100, 100).astype(x.dtype))
    to = np_dtype_to_tensor_dtype(DTYPES[target])
    assert_op_matches("nn.cast", [x], {"to": target}, run_node("Cast", [x], {"to": to}, opset))


REDUCTIONS = {"ReduceSum": "nn.reduce_sum", "ReduceMean": "nn.reduce_mean", "ReduceMax": "nn.reduce_max",
              "ReduceMin": "nn.reduce_min", "ReduceProd": "nn.reduce_prod", "ReduceL1": "nn.reduce_l1",
              "ReduceL2": "nn.reduce_l2", "ReduceSumSquare": "nn.reduce_sum_square",
              "ReduceLogSum": "nn.reduce_log_sum", "ReduceLogSumExp": "nn.reduce_log_sum_exp"}
INT_REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")  # onnxruntime's int kernels


@SETTINGS
@given(op_type=st.sampled_from(sorted(REDUCTIONS)), shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
       keepdims=st.booleans(), dtype=st.sampled_from(["f32", "i32", "i64"]), seed=SEEDS, data=st.data())
def test_reductions(op_type: str, shape: tuple, keepdims: bool, dtype: str, seed: int, data: st.DataObject) -> None:
    if op_type not in INT_REDUCTIONS:
        dtype = "f32"
    axes = sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
    low = 1 if op_type in ("ReduceLogSum",) else -4
    x = values(seed, shape, dtype, low, 4)
    onnx_axes = [a - len(shape) if data.draw(st.booleans()) else a for a in axes]
    expected = run_node(op_type, [x, np.array(onnx_axes, np.int64)], {"keepdims": int(keepdims)})
    assert_op_matches(REDUCTIONS[op_type], [x], {"axes": tuple(axes), "keepdims": keepdims}, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
def test_an_empty_mean_is_onnxruntimes_zero(dtype: type) -> None:
    """ReduceMean over an axis of length 0: onnxruntime gives 0 for floats too (not 0 / 0's NaN)."""
    x = np.zeros((2, 0, 3), dtype)
    expected = run_node("ReduceMean", [x, np.array([1], np.int64)], {"keepdims": 0})
    assert_op_matches("nn.reduce_mean", [x], {"axes": (1,), "keepdims": False}, expected)


@SETTINGS
@given(op_type=st.sampled_from(["ArgMax", "ArgMin"]), shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
       keepdims=st.booleans(), last=st.booleans(), dtype=st.sampled_from(["f32", "i32", "u8"]), seed=SEEDS,
       data=st.data())
def test_arg_reductions(op_type: str, shape: tuple, keepdims: bool, last: bool, dtype: str, seed: int,
                        data: st.DataObject) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = values(seed, shape, dtype, -2, 2)
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
    expected = run_node(op_type, [x], {k: int(v) for k, v in attrs.items()}, opset=13)
    assert_op_matches("nn." + op_type.lower(), [x], attrs, expected)


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), epsilon=st.floats(1e-6, 0.5),
       bias=st.booleans(), broadcast_scale=st.booleans(), seed=SEEDS, data=st.data())
def test_layer_norm(shape: tuple, epsilon: float, bias: bool, broadcast_scale: bool, seed: int,
                    data: st.DataObject) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    normalized = shape[axis:]
    scale_shape = normalized[1:] if broadcast_scale and len(normalized) > 1 else normalized
    params = [rng.standard_normal(scale_shape).astype(np.float32) for _ in range(2 if bias else 1)]
    expected = run_node("LayerNormalization", [x, *params], {"axis": axis, "epsilon": epsilon}, opset=17)
    assert_op_matches("nn.layer_norm", [x, *params], {"axis": axis, "epsilon": epsilon}, expected)


# ONNX op type → (IR op, ONNX attributes drawn, opset, input scale)
FLOAT_UNARY: dict[str, tuple[str, dict[str, Any], int]] = {
    "Erf": ("nn.erf", {}, 13),
    "Gelu": ("nn.gelu", {"approximate": st.sampled_from(["none", "tanh"])}, 20),
    "HardSigmoid": ("nn.hard_sigmoid", {"alpha": st.floats(-1, 1, width=32), "beta": st.floats(-1, 1, width=32)}, 6),
    "HardSwish": ("nn.hard_swish", {}, 14),
    "Mish": ("nn.mish", {}, 18),
    "Reciprocal": ("nn.reciprocal", {}, 13),
    "Log": ("nn.log", {}, 13),
}


@SETTINGS
@given(op_type=st.sampled_from(sorted(FLOAT_UNARY)), shape=SHAPES, scale=st.sampled_from([1.0, 8.0, 40.0]),
       seed=SEEDS, data=st.data())
def test_float_activations(op_type: str, shape: tuple, scale: float, seed: int, data: st.DataObject) -> None:
    name, drawn, opset = FLOAT_UNARY[op_type]
    attrs = {key: data.draw(strategy) for key, strategy in drawn.items()}
    x = np.asarray((np.random.default_rng(seed).uniform(-scale, scale, shape)).astype(np.float32))
    if op_type == "Log":
        x = np.asarray(np.abs(x))
    assert_op_matches(name, [x], attrs, run_node(op_type, [x], attrs, opset))


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), seed=SEEDS, data=st.data())
def test_hardmax(shape: tuple, seed: int, data: st.DataObject) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = values(seed, shape, "f32", -2, 2)  # ties: the first maximum wins
    assert_op_matches("nn.hardmax", [x], {"axis": axis}, run_node("Hardmax", [x], {"axis": axis}, 13))


@SETTINGS
@given(op_type=st.sampled_from(["Pow", "Neg", "Abs", "Min", "Max"]), dtype=st.sampled_from(["i32", "i64", "f32"]),
       exponent_dtype=st.sampled_from(["i32", "i64", "f32"]), shapes=broadcast_shapes(2), seed=SEEDS)
def test_math_on_integers(op_type: str, dtype: str, exponent_dtype: str, shapes: list, seed: int) -> None:
    if op_type == "Pow":
        arrays = [values(seed, shapes[0], dtype, -5, 5), values(seed + 1, shapes[1], exponent_dtype, 0, 3)]
    elif op_type in ("Min", "Max"):
        arrays = [values(seed, shapes[0], dtype), values(seed + 1, shapes[1], dtype)]
    else:
        arrays = [values(seed, shapes[0], dtype)]
    name = {"Pow": "nn.pow", "Neg": "nn.neg", "Abs": "nn.abs", "Min": "nn.minimum", "Max": "nn.maximum"}[op_type]
    assert_op_matches(name, arrays, {}, run_node(op_type, arrays))


@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
       dtype=st.sampled_from(["f32", "f64", "i32", "i64"]), exclusive=st.booleans(), reverse=st.booleans(), axis_dtype=st.sampled_from([np.int32, np.int64]), seed=SEEDS,
       data=st.data())
def test_cumsum(shape: tuple, dtype: str, exclusive: bool, reverse: bool, axis_dtype: type, seed: int,
                data: st.DataObject) -> None:
    """Bit for bit: both add one element after the other in the tensor's own type."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = values(seed, shape, dtype, -1000, 1000)
    if dtype.startswith("f"):
        x = (x * np.float32(1.37)).astype(x.dtype)  # values whose sums round
    flags = {"exclusive": int(exclusive), "reverse": int(reverse)}
    expected = run_node("CumSum", [x, np.array(axis, axis_dtype)], flags, 14)
    attrs = {"axis": axis % len(shape), "exclusive": exclusive, "reverse": reverse}
    assert_op_matches("nn.cumsum", [x], attrs, expected)
    [got] = OPS["nn.cumsum"].run([x], normalize_attrs(OPS["nn.cumsum"], attrs))
    np.testing.assert_array_equal(got, expected)


MATH = {"Sin": "f64", "Cos": "f64", "Tan": "f32", "Asin": "f32", "Acos": "f32", "Atan": "f32", "Sinh": "f32",
        "Cosh": "f32", "Asinh": "f32", "Acosh": "f32", "Atanh": "f32", "Floor": "f64", "Ceil": "f64", "Round": "f64"}


@SETTINGS
@given(op_type=st.sampled_from(sorted(MATH)), shape=SHAPES, wide=st.booleans(), seed=SEEDS)
def test_unary_math(op_type: str, shape: tuple, wide: bool, seed: int) -> None:
    """In and out of each function's domain (NaN there, as onnxruntime), halves for Round, ±0, ±inf."""
    dtype = MATH[op_type] if wide else "f32"
    x = np.asarray(values(seed, shape, dtype, -12, 12) / DTYPES[dtype].type(2), DTYPES[dtype])
    if x.size:
        x.reshape(-1)[:4] = np.array([np.inf, -np.inf, -0.0, 2.5], dtype=x.dtype)[:x.size]
    assert_op_matches("nn." + op_type.lower(), [x], {}, run_node(op_type, [x], opset=13))


@SETTINGS
@given(dtype=st.sampled_from(["i8", "i32", "i64", "u8", "u32", "f32", "f64"]), fmod=st.booleans(),
       shapes=broadcast_shapes(2), seed=SEEDS)
def test_mod(dtype: str, fmod: bool, shapes: list, seed: int) -> None:
    """Opset 28: a float remainder with the divisor's sign (fmod=0) too."""
    lhs = values(seed, shapes[0], dtype, -30, 30)
    rhs = values(seed + 1, shapes[1], dtype, -7, 7)
    rhs[rhs == 0] = 3  # an integer remainder by zero is undefined in onnxruntime
    assert_op_matches("nn.mod", [lhs, rhs], {"fmod": fmod}, run_node("Mod", [lhs, rhs], {"fmod": int(fmod)}, 28))


@SETTINGS
@given(op_type=st.sampled_from(["BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift"]),
       dtype=st.sampled_from(["i8", "i32", "i64", "u8", "u16", "u64"]), left=st.booleans(), shapes=broadcast_shapes(2),
       seed=SEEDS)
def test_bits(op_type: str, dtype: str, left: bool, shapes: list, seed: int) -> None:
    if op_type == "BitShift":   # opset 28 shifts signed integers too, by any amount
        width = DTYPES[dtype].itemsize * 8
        arrays = [values(seed, shapes[0], dtype, -128, 127), values(seed + 1, shapes[1], dtype, -3, width + 3)]
        attrs = {"direction": "LEFT" if left else "RIGHT"}
        assert_op_matches("nn.bit_shift", arrays, attrs, run_node("BitShift", arrays, attrs, 28))
        return
    arrays = [values(seed, shapes[0], dtype, -100, 100), values(seed + 1, shapes[1], dtype, -100, 100)]
    assert_op_matches("nn.bitwise_" + op_type[7:].lower(), arrays, {}, run_node(op_type, arrays))
    assert_op_matches("nn.bitwise_not", arrays[:1], {}, run_node("BitwiseNot", arrays[:1]))


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize(("negative", "positive"), [(True, True), (True, False), (False, True), (False, False)])
def test_isinf_and_isnan(dtype: str, negative: bool, positive: bool) -> None:
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -1.0, 3e38], DTYPES[dtype])
    attrs = {"detect_negative": negative, "detect_positive": positive}
    assert_op_matches("nn.isinf", [x], attrs, run_node("IsInf", [x], {k: int(v) for k, v in attrs.items()}, 13))
    assert_op_matches("nn.isnan", [x], {}, run_node("IsNaN", [x], opset=13))


@pytest.mark.parametrize(("op_type", "dtype"), [("Tan", np.float64), ("Floor", np.int32), ("IsInf", np.float16),
                                               ("BitwiseAnd", np.float32)])
def test_math_onnxruntime_refuses_is_refused(op_type: str, dtype: type) -> None:
    arrays = [np.ones(3, dtype)] * (2 if op_type == "BitwiseAnd" else 1)
    name = {"Tan": "nn.tan", "Floor": "nn.floor", "IsInf": "nn.isinf", "BitwiseAnd": "nn.bitwise_and"}[op_type]
    check_both_reject(name, arrays, {}, op_type, opset=18)


@pytest.mark.parametrize(("name", "attrs", "types"), [
    ("nn.exp", {}, [TensorType((2,), "i32")]),
    ("nn.less", {}, [TensorType((2,), "f32"), TensorType((2,), "i32")]),
    ("nn.logical_and", {}, [TensorType((2,), "f32"), TensorType((2,), "bool")]),
    ("nn.where", {}, [TensorType((2,), "f32"), TensorType((2,), "f32"), TensorType((2,), "f32")]),
    ("nn.reduce_sum", {"axes": (0, 0)}, [TensorType((2, 3), "f32")]),
    ("nn.argmax", {"axis": 2}, [TensorType((2, 3), "f32")]),
    ("nn.layer_norm", {"axis": 1}, [TensorType((2, 3), "f32"), TensorType((2,), "f32")]),
    ("nn.layer_norm", {"axis": 0, "stash_type": "f16"}, [TensorType((2,), "f32"), TensorType((2,), "f32")]),
    ("nn.gelu", {"approximate": "erf"}, [TensorType((2,), "f32")]),
    ("nn.cast", {"to": "string"}, [TensorType((2,), "f32")]),
    ("nn.hardmax", {"axis": 1}, [TensorType((2,), "f32")]),
    ("nn.cumsum", {"axis": 1}, [TensorType((2,), "f32")]),
    ("nn.cumsum", {"axis": 0}, [TensorType((2,), "u8")]),
])
def test_ill_typed_operands_are_refused(name: str, attrs: dict, types: list) -> None:
    opdef = OPS[name]
    with pytest.raises(ValueError):
        opdef.infer(types, normalize_attrs(opdef, attrs))


@pytest.mark.parametrize("op_type", ["Exp", "Sqrt", "Erf", "Log", "Reciprocal"])
def test_float_only_math_refuses_integers_as_onnxruntime_does(op_type: str) -> None:
    name = {"Exp": "nn.exp", "Sqrt": "nn.sqrt", "Erf": "nn.erf", "Log": "nn.log", "Reciprocal": "nn.reciprocal"}[op_type]
    check_both_reject(name, [np.arange(4, dtype=np.int32)], {}, op_type, opset=13)
