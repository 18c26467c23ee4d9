"""Property tests of the activation, math, normalisation and padding ops against onnxruntime.

Same oracle as test_nn_ops_vs_onnxruntime.py: one-node ONNX models run by onnxruntime on the CPU, and
`OPS[name]` must infer the same type and compute the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rcc.ir.optable import OPS, normalize_attrs
from rcc.ir.types import TensorType
from tests.ops.test_nn_ops_vs_onnxruntime import (SEEDS, SETTINGS, broadcast_pair, check, check_both_reject, floats,
                                                  run_onnxruntime)

SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)
INT_DTYPES = [np.int8, np.int32, np.int64, np.uint8]


def real(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """`floats` as an array even for shape () (numpy gives a scalar there, which onnxruntime refuses)."""
    return np.asarray(floats(seed, shape, scale))


def integers(seed: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(max(info.min, -100), min(info.max, 100) + 1, shape).astype(dtype)


# ONNX op type → (IR op, ONNX attributes drawn for it, opset)
FLOAT_UNARY: dict[str, tuple[str, dict[str, Any], int]] = {
    "Elu": ("nn.elu", {"alpha": st.floats(0.125, 3, width=32)}, 6),
    "Selu": ("nn.selu", {"alpha": st.floats(0.5, 3, width=32), "gamma": st.floats(0.5, 3, width=32)}, 6),
    "Celu": ("nn.celu", {"alpha": st.floats(0.125, 3, width=32)}, 12),
    "Softplus": ("nn.softplus", {}, 1),
    "Softsign": ("nn.softsign", {}, 1),
    "ThresholdedRelu": ("nn.thresholded_relu", {"alpha": st.floats(-2, 2, width=32)}, 10),
    "Exp": ("nn.exp", {}, 13),
    "Sqrt": ("nn.sqrt", {}, 13),
}


@SETTINGS
@given(op_type=st.sampled_from(sorted(FLOAT_UNARY)), shape=SHAPES, scale=st.sampled_from([1.0, 10.0, 80.0]),
       seed=SEEDS, data=st.data())
def test_float_activations(op_type: str, shape: tuple[int, ...], scale: float, seed: int,
                           data: st.DataObject) -> None:
    name, drawn, opset = FLOAT_UNARY[op_type]
    attrs = {key: data.draw(strategy) for key, strategy in drawn.items()}
    x = real(seed, shape, scale)
    if op_type == "Sqrt":
        x = np.asarray(np.abs(x))
    check(name, [x], attrs, op_type, attrs, opset=max(opset, 13))


@SETTINGS
@given(op_type=st.sampled_from(["Sign", "Neg", "Abs"]), shape=SHAPES,
       dtype=st.sampled_from([np.float32] + INT_DTYPES), seed=SEEDS)
def test_sign_neg_abs(op_type: str, shape: tuple[int, ...], dtype: type, seed: int) -> None:
    if op_type == "Neg" and dtype is np.uint8:
        return  # onnxruntime has no unsigned Neg
    x = real(seed, shape, 5.0) if dtype is np.float32 else integers(seed, shape, dtype)
    check({"Sign": "nn.sign", "Neg": "nn.neg", "Abs": "nn.abs"}[op_type], [x], {}, op_type)


@SETTINGS
@given(shape=SHAPES, dtype=st.sampled_from([np.float32, np.int8, np.int32]), seed=SEEDS,
       bias=st.floats(-3, 3, width=32), lambd=st.floats(0, 3, width=32))
def test_shrink(shape: tuple[int, ...], dtype: type, seed: int, bias: float, lambd: float) -> None:
    x = real(seed, shape, 5.0) if dtype is np.float32 else integers(seed, shape, dtype)
    attrs = {"bias": bias, "lambd": lambd}
    check("nn.shrink", [x], attrs, "Shrink", attrs)


@SETTINGS
@given(shapes=broadcast_pair(), types=st.sampled_from([(np.float32, np.float32), (np.float32, np.int64),
                                                       (np.int32, np.float32), (np.int64, np.int64),
                                                       (np.int32, np.int32)]), seed=SEEDS)
def test_pow(shapes: tuple, types: tuple[type, type], seed: int) -> None:
    rng = np.random.default_rng(seed)
    base_type, exponent_type = types
    base = real(seed, shapes[0], 3.0) if base_type is np.float32 else rng.integers(-6, 7, shapes[0]).astype(base_type)
    if exponent_type is np.float32:
        exponent = real(seed + 1, shapes[1], 3.0)
        base = np.asarray(np.abs(base))  # negative ** fractional is NaN (and casting NaN to an integer undefined)
    else:
        exponent = rng.integers(0 if base_type is not np.float32 else -3, 4, shapes[1]).astype(exponent_type)
    check("nn.pow", [base, exponent], {}, "Pow", opset=15)


@pytest.mark.parametrize("power", [2.0, 3.0, 0.5])
@pytest.mark.parametrize("exponent_shape", [(), (1,), (1, 1, 1)])
def test_pow_by_one_small_exponent_is_onnxruntimes_bit_for_bit(power: float, exponent_shape: tuple) -> None:
    """x², x³ (onnxruntime multiplies) and x^0.5 (pow, correctly rounded as the square root) on values, zeros,
    infinities and NaN: the same float32 bits (up to the sign of a zero)."""
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 3e12]
    base = np.concatenate([floats(0, (200,), 50.0), np.array(special, np.float32)]).reshape(4, 2, 26)
    exponent = np.full(exponent_shape, power, dtype=np.float32)
    expected = run_onnxruntime("Pow", [base, exponent], None, 15)
    [got] = OPS["nn.pow"].run([base, exponent], {})
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float32


@SETTINGS
@given(op=st.sampled_from([("nn.minimum", "Min"), ("nn.maximum", "Max")]), shapes=broadcast_pair(),
       dtype=st.sampled_from([np.float32] + INT_DTYPES), seed=SEEDS)
def test_min_max(op: tuple[str, str], shapes: tuple, dtype: type, seed: int) -> None:
    if dtype is np.float32:
        lhs, rhs = real(seed, shapes[0]), real(seed + 1, shapes[1])
    else:
        lhs, rhs = integers(seed, shapes[0], dtype), integers(seed + 1, shapes[1], dtype)
    check(op[0], [lhs, rhs], {}, op[1])


def test_min_max_propagate_nan() -> None:
    lhs = np.array([np.nan, 1, 2], np.float32)
    rhs = np.array([0, np.nan, 1], np.float32)
    check("nn.minimum", [lhs, rhs], {}, "Min")
    check("nn.maximum", [lhs, rhs], {}, "Max")


def test_float_only_ops_refuse_integers() -> None:
    for name in ("nn.elu", "nn.exp", "nn.sqrt", "nn.softplus", "nn.instance_norm"):
        types = [TensorType((2, 3), "i32")] * (3 if name == "nn.instance_norm" else 1)
        with pytest.raises(ValueError):
            OPS[name].infer(types, normalize_attrs(OPS[name], {}))


# --- normalisation -------------------------------------------------------------------------------

@SETTINGS
@given(batch=st.integers(1, 2), channels=st.integers(1, 5), spatial=st.lists(st.integers(1, 4), max_size=3),
       epsilon=st.floats(1e-6, 1e-1), seed=SEEDS)
def test_instance_norm(batch: int, channels: int, spatial: list[int], epsilon: float, seed: int) -> None:
    x = floats(seed, (batch, channels, *spatial), 4.0)
    scale, bias = floats(seed + 1, (channels,)), floats(seed + 2, (channels,))
    if not spatial:  # onnxruntime needs at least one spatial axis
        check_both_reject("nn.instance_norm", [x, scale, bias], {"epsilon": epsilon}, "InstanceNormalization",
                          {"epsilon": epsilon})
        return
    check("nn.instance_norm", [x, scale, bias], {"epsilon": epsilon}, "InstanceNormalization", {"epsilon": epsilon})


@SETTINGS
@given(batch=st.integers(1, 2), groups=st.integers(1, 3), per_group=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 4), min_size=1, max_size=2), epsilon=st.floats(1e-6, 1e-1), seed=SEEDS)
def test_group_norm(batch: int, groups: int, per_group: int, spatial: list[int], epsilon: float, seed: int) -> None:
    channels = groups * per_group
    x = floats(seed, (batch, channels, *spatial), 4.0)
    # onnxruntime's GroupNormalization takes the variance as E[x²] − E[x]² in float32, which loses about
    # float32-epsilon · E[x²] / variance of it (found: a group of 2 values near −2.9, variance 0.0018, where it is
    # 2.3e-5 off a float64 reference and rcc is not); the comparison with it is meaningful where that is small.
    grouped = x.astype(np.float64).reshape(batch, groups, -1)
    if grouped.shape[2] > 1:  # a group of one value normalises to exactly 0 whatever the variance
        assume(bool(np.all((grouped ** 2).mean(axis=2) <= 100 * (grouped.var(axis=2) + epsilon))))
    scale, bias = floats(seed + 1, (channels,)), floats(seed + 2, (channels,))
    attrs = {"num_groups": groups, "epsilon": epsilon}
    check("nn.group_norm", [x, scale, bias], attrs, "GroupNormalization", attrs, opset=21)


# --- padding modes -------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), rank=st.integers(1, 3), mode=st.sampled_from(["reflect", "edge", "wrap"]), seed=SEEDS)
def test_pad_modes(data: st.DataObject, rank: int, mode: str, seed: int) -> None:
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    begins = [data.draw(st.integers(-dim + 1, 4)) for dim in shape]
    ends = [data.draw(st.integers(-(dim + min(begin, 0)) + 1, 4)) for dim, begin in zip(shape, begins)]
    x = floats(seed, shape)
    pads = begins + ends
    attrs = {"pads": pads, "mode": mode}
    try:
        expected = run_onnxruntime("Pad", [x, np.array(pads, np.int64)], {"mode": mode}, opset=19)
    except Exception:  # reflection wider than the (cropped) axis: both refuse
        with pytest.raises(ValueError):
            OPS["nn.pad"].infer([TensorType.of(x)], normalize_attrs(OPS["nn.pad"], attrs))
        return
    [got] = OPS["nn.pad"].run([x], normalize_attrs(OPS["nn.pad"], attrs))
    assert OPS["nn.pad"].infer([TensorType.of(x)], normalize_attrs(OPS["nn.pad"], attrs)) == [TensorType.of(expected)]
    np.testing.assert_array_equal(got, expected)
