"""Property tests: every graph-level nn op agrees with onnxruntime on random one-node ONNX models.

onnxruntime is rcc's golden reference, so each test draws an op configuration, builds the matching
single-node ONNX model, runs it on CPU and checks that `OPS[name].run` gives the same values and
`OPS[name].infer` the same type. ONNX attributes are mapped to rcc's attributes in each test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.helper import np_dtype_to_tensor_dtype

import rcc.ir.ops  # noqa: F401  (fills OPS)
from rcc.ir.optable import OPS, normalize_attrs
from rcc.ir.types import TensorType

ort.set_default_logger_severity(3)
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)


# --- the oracle ----------------------------------------------------------------------------------

def run_onnxruntime(op_type: str, inputs: list[np.ndarray | None], attrs: dict[str, Any] | None = None,
                    opset: int = 17) -> np.ndarray:
    """Run one ONNX node (inputs fed at run time, None = omitted optional input) and return its output."""
    names = [f"in{i}" if array is not None else "" for i, array in enumerate(inputs)]
    fed = {name: array for name, array in zip(names, inputs) if array is not None}
    graph_inputs = [helper.make_tensor_value_info(name, np_dtype_to_tensor_dtype(array.dtype), array.shape)
                    for name, array in fed.items()]
    out_type = np_dtype_to_tensor_dtype(inputs[0].dtype)
    node = helper.make_node(op_type, names, ["out"], **(attrs or {}))
    graph = helper.make_graph([node], op_type.lower(), graph_inputs,
                              [helper.make_tensor_value_info("out", out_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, fed)[0]


def assert_op_matches(name: str, arrays: list[np.ndarray], attrs: dict[str, Any], expected: np.ndarray) -> None:
    """OPS[name] infers the type of `expected` and computes its values (rtol 1e-4, atol 1e-5)."""
    opdef = OPS[name]
    full_attrs = normalize_attrs(opdef, attrs)
    [inferred] = opdef.infer([TensorType.of(a) for a in arrays], full_attrs)
    assert inferred == TensorType.of(expected), f"{name} {attrs}: inferred {inferred}, onnxruntime gives " \
                                                f"{TensorType.of(expected)}"
    [got] = opdef.run(arrays, full_attrs)
    assert TensorType.of(got) == inferred, f"{name} {attrs}: computed {TensorType.of(got)}, inferred {inferred}"
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"{name} {attrs}")


def check(name: str, arrays: list[np.ndarray | None], attrs: dict[str, Any], op_type: str,
          onnx_attrs: dict[str, Any] | None = None, extra_inputs: Sequence[np.ndarray | None] = (),
          opset: int = 17) -> None:
    """Compare OPS[name] on `arrays` (None operands dropped) with ONNX `op_type` on arrays + extra_inputs."""
    expected = run_onnxruntime(op_type, list(arrays) + list(extra_inputs), onnx_attrs, opset)
    assert_op_matches(name, [a for a in arrays if a is not None], attrs, expected)


def check_both_reject(name: str, arrays: list[np.ndarray | None], attrs: dict[str, Any], op_type: str,
                      onnx_attrs: dict[str, Any] | None = None, opset: int = 17) -> None:
    """onnxruntime refuses the node and OPS[name].infer refuses the same configuration."""
    with pytest.raises(Exception):
        run_onnxruntime(op_type, list(arrays), onnx_attrs, opset)
    opdef = OPS[name]
    with pytest.raises(ValueError):
        opdef.infer([TensorType.of(a) for a in arrays if a is not None], normalize_attrs(opdef, attrs))


def floats(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(-scale, scale, shape)).astype(np.float32)


# --- convolution ---------------------------------------------------------------------------------

@st.composite
def conv_geometry(draw: st.DrawFn) -> dict[str, Any]:
    """Channels with groups (depthwise when 1 channel per group), per-axis kernel/stride/dilation/pads."""
    group = draw(st.integers(1, 3))
    axes = [draw(st.fixed_dictionaries({"kernel": st.integers(1, 5), "stride": st.integers(1, 3),
                                        "dilation": st.integers(1, 3), "pad_begin": st.integers(0, 3),
                                        "pad_end": st.integers(0, 3)})) for _ in range(2)]
    return {"group": group, "batch": draw(st.integers(1, 2)), "c_per_group": draw(st.integers(1, 3)),
            "m_per_group": draw(st.integers(1, 3)), "axes": axes, "bias": draw(st.booleans()),
            "seed": draw(SEEDS)}


def _conv_attrs(geo: dict[str, Any]) -> dict[str, Any]:
    h, w = geo["axes"]
    return {"strides": [h["stride"], w["stride"]], "dilations": [h["dilation"], w["dilation"]],
            "pads": [h["pad_begin"], w["pad_begin"], h["pad_end"], w["pad_end"]], "group": geo["group"]}


@SETTINGS
@given(geo=conv_geometry(), data=st.data())
def test_conv2d(geo: dict[str, Any], data: st.DataObject) -> None:
    spatial = []
    for axis in geo["axes"]:
        smallest = max(1, axis["dilation"] * (axis["kernel"] - 1) + 1 - axis["pad_begin"] - axis["pad_end"])
        spatial.append(data.draw(st.integers(smallest, smallest + 6)))
    group, m = geo["group"], geo["m_per_group"] * geo["group"]
    seed = geo["seed"]
    x = floats(seed, (geo["batch"], geo["c_per_group"] * group, *spatial))
    weight = floats(seed + 1, (m, geo["c_per_group"], geo["axes"][0]["kernel"], geo["axes"][1]["kernel"]))
    bias = floats(seed + 2, (m,)) if geo["bias"] else None
    attrs = _conv_attrs(geo)
    onnx_attrs = {**attrs, "kernel_shape": list(weight.shape[2:])}
    check("nn.conv2d", [x, weight, bias], attrs, "Conv", onnx_attrs)


@SETTINGS
@given(geo=conv_geometry(), data=st.data())
def test_conv_transpose2d(geo: dict[str, Any], data: st.DataObject) -> None:
    output_padding, spatial = [], []
    for axis in geo["axes"]:
        # ONNX allows output_padding < max(stride, dilation); onnxruntime only < stride.
        output_padding.append(data.draw(st.integers(0, max(axis["stride"], axis["dilation"]) - 1)))
        full = axis["dilation"] * (axis["kernel"] - 1) + 1 + output_padding[-1]
        # (h-1)*stride + full - pads >= 1
        smallest = max(1, 1 + math.ceil((1 + axis["pad_begin"] + axis["pad_end"] - full) / axis["stride"]))
        spatial.append(data.draw(st.integers(smallest, smallest + 4)))
    group, c = geo["group"], geo["c_per_group"] * geo["group"]
    seed = geo["seed"]
    x = floats(seed, (geo["batch"], c, *spatial))
    weight = floats(seed + 1, (c, geo["m_per_group"], geo["axes"][0]["kernel"], geo["axes"][1]["kernel"]))
    bias = floats(seed + 2, (geo["m_per_group"] * group,)) if geo["bias"] else None
    attrs = {**_conv_attrs(geo), "output_padding": output_padding}
    onnx_attrs = {**attrs, "kernel_shape": list(weight.shape[2:])}
    if all(pad < stride for pad, stride in zip(output_padding, attrs["strides"])):
        check("nn.conv_transpose2d", [x, weight, bias], attrs, "ConvTranspose", onnx_attrs)
    else:
        check_both_reject("nn.conv_transpose2d", [x, weight, bias], attrs, "ConvTranspose", onnx_attrs)


# --- pooling and normalisation -------------------------------------------------------------------

@st.composite
def pool_geometry(draw: st.DrawFn, dilated: bool) -> dict[str, Any]:
    """Kernel 1-4, stride 1-3, dilation 1-3 (or 1), pads < kernel, and an input the window fits in."""
    kernel, strides, dilations, pads_begin, pads_end, spatial = [], [], [], [], [], []
    for _ in range(2):
        kernel.append(draw(st.integers(1, 4)))
        strides.append(draw(st.integers(1, 3)))
        dilations.append(draw(st.integers(1, 3)) if dilated else 1)
        pads_begin.append(draw(st.integers(0, kernel[-1] - 1)))
        pads_end.append(draw(st.integers(0, kernel[-1] - 1)))
        smallest = max(1, dilations[-1] * (kernel[-1] - 1) + 1 - pads_begin[-1] - pads_end[-1])
        spatial.append(draw(st.integers(smallest, smallest + 6)))
    return {"kernel": kernel, "strides": strides, "dilations": dilations, "pads": pads_begin + pads_end,
            "ceil_mode": draw(st.booleans()), "shape": (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial),
            "seed": draw(SEEDS)}


def _onnx_pool_attrs(geo: dict[str, Any]) -> dict[str, Any]:
    return {"kernel_shape": geo["kernel"], "strides": geo["strides"], "dilations": geo["dilations"],
            "pads": geo["pads"], "ceil_mode": int(geo["ceil_mode"])}


def _ir_pool_attrs(geo: dict[str, Any]) -> dict[str, Any]:
    return {key: geo[key] for key in ("kernel", "strides", "dilations", "pads", "ceil_mode")}


@SETTINGS
@given(geo=pool_geometry(dilated=True), dtype=st.sampled_from([np.float32, np.int8, np.uint8]))
def test_max_pool2d(geo: dict[str, Any], dtype: type) -> None:
    x = floats(geo["seed"], geo["shape"], 100.0)
    x = x.astype(dtype) if dtype is not np.uint8 else np.abs(x).astype(dtype)
    check("nn.max_pool2d", [x], _ir_pool_attrs(geo), "MaxPool", _onnx_pool_attrs(geo))


@SETTINGS
@given(geo=pool_geometry(dilated=True), count_include_pad=st.booleans())
def test_avg_pool2d(geo: dict[str, Any], count_include_pad: bool) -> None:
    x = floats(geo["seed"], geo["shape"])
    attrs = {**_ir_pool_attrs(geo), "count_include_pad": count_include_pad}
    onnx_attrs = {**_onnx_pool_attrs(geo), "count_include_pad": int(count_include_pad)}
    check("nn.avg_pool2d", [x], attrs, "AveragePool", onnx_attrs, opset=19)


@SETTINGS
@given(rank=st.integers(3, 5), data=st.data(), seed=SEEDS)
def test_global_pools(rank: int, data: st.DataObject, seed: int) -> None:
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    x = floats(seed, shape, 10.0)
    check("nn.global_avg_pool", [x], {}, "GlobalAveragePool")
    check("nn.global_max_pool", [x], {}, "GlobalMaxPool")


@SETTINGS
@given(size=st.integers(1, 5), channels=st.integers(1, 7), seed=SEEDS,
       alpha=st.floats(1e-4, 1.0), beta=st.floats(0.1, 1.0), bias=st.floats(0.5, 2.0))
def test_lrn(size: int, channels: int, seed: int, alpha: float, beta: float, bias: float) -> None:
    x = floats(seed, (2, channels, 3, 2), 3.0)
    attrs = {"size": size, "alpha": alpha, "beta": beta, "bias": bias}
    if size % 2:
        check("nn.lrn", [x], attrs, "LRN", attrs)
    else:  # ONNX defines even sizes; onnxruntime refuses them
        check_both_reject("nn.lrn", [x], attrs, "LRN", attrs)


@SETTINGS
@given(channels=st.integers(1, 4), spatial=st.integers(0, 2), epsilon=st.floats(1e-5, 1e-1), seed=SEEDS)
def test_batch_norm(channels: int, spatial: int, epsilon: float, seed: int) -> None:
    x = floats(seed, (2, channels) + (3,) * spatial, 3.0)
    scale, bias, mean = (floats(seed + i, (channels,)) for i in (1, 2, 3))
    var = np.abs(floats(seed + 4, (channels,))) + np.float32(0.1)
    check("nn.batch_norm", [x, scale, bias, mean, var], {"epsilon": epsilon}, "BatchNormalization",
          {"epsilon": epsilon}, opset=15)


# --- data movement -------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), rank=st.integers(1, 4), value=st.floats(-5, 5, width=32), seed=SEEDS)
def test_pad(data: st.DataObject, rank: int, value: float, seed: int) -> None:
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    begins = [data.draw(st.integers(-dim + 1, 3)) for dim in shape]
    ends = [data.draw(st.integers(-(dim + begin) + 1 if begin < 0 else -dim + 1, 3))
            for dim, begin in zip(shape, begins)]
    x = floats(seed, shape)
    pads = begins + ends
    check("nn.pad", [x], {"pads": pads, "value": value}, "Pad", {"mode": "constant"},
          extra_inputs=[np.array(pads, np.int64), np.array(value, np.float32)], opset=18)


@SETTINGS
@given(block=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(1, 3),
       mode=st.sampled_from(["DCR", "CRD"]), seed=SEEDS)
def test_depth_to_space(block: int, c: int, h: int, w: int, mode: str, seed: int) -> None:
    x = floats(seed, (2, c * block * block, h, w))
    attrs = {"blocksize": block, "mode": mode}
    check("nn.depth_to_space", [x], attrs, "DepthToSpace", attrs)


@SETTINGS
@given(block=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(1, 3), seed=SEEDS)
def test_space_to_depth(block: int, c: int, h: int, w: int, seed: int) -> None:
    x = floats(seed, (2, c, h * block, w * block))
    check("nn.space_to_depth", [x], {"blocksize": block}, "SpaceToDepth", {"blocksize": block})


RESIZE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
SCALES = tuple(float(np.float32(s)) for s in (0.25, 1 / 3, 0.5, 0.6, 0.7, 0.75, 1.0, 1.2, 1.25, 1.5, 1.6, 2.0, 2.4,
                                               2.5, 3.0, 3.5, 4.0))


def resized_length(length: int, scale: float) -> int:
    """Output length of Resize with `scales`: floor(length * scale), the product in float32 as onnxruntime does."""
    return int(np.float32(scale) * np.float32(length))


def run_resize_nearest(x: np.ndarray, coordinate_mode: str, nearest_mode: str, *, sizes: tuple[int, ...] | None = None,
                       scales: tuple[float, ...] | None = None) -> np.ndarray:
    """onnxruntime's Resize (mode nearest) with either sizes or scales; Resize-11 for tf_half_pixel_for_nn."""
    opset = 11 if coordinate_mode == "tf_half_pixel_for_nn" else 19  # ONNX dropped tf_half_pixel_for_nn in 13
    # Resize-11 needs roi and scales even when unused (empty); Resize-19 takes them as omitted inputs
    unused = np.zeros(0, np.float32) if opset == 11 else None
    extra = [unused, np.array(scales, np.float32)] if sizes is None else [unused, unused, np.array(sizes, np.int64)]
    attrs = {"mode": "nearest", "coordinate_transformation_mode": coordinate_mode, "nearest_mode": nearest_mode}
    return run_onnxruntime("Resize", [x] + extra, attrs, opset)


@settings(max_examples=60, deadline=None)
@given(coordinate_mode=st.sampled_from(RESIZE_MODES), nearest_mode=st.sampled_from(NEAREST_MODES),
       by_sizes=st.booleans(), data=st.data(), seed=SEEDS)
def test_resize_nearest(coordinate_mode: str, nearest_mode: str, by_sizes: bool, data: st.DataObject,
                        seed: int) -> None:
    shape = (1, data.draw(st.integers(1, 2)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7)))
    x = floats(seed, shape)
    if by_sizes:
        sizes = shape[:2] + tuple(data.draw(st.integers(1, 12)) for _ in range(2))
        scales = tuple(out / dim for out, dim in zip(sizes, shape))
        expected = run_resize_nearest(x, coordinate_mode, nearest_mode, sizes=sizes)
    else:
        scales = (1.0, 1.0) + tuple(data.draw(st.sampled_from(SCALES).filter(lambda s, d=dim: resized_length(d, s)))
                                    for dim in shape[2:])
        sizes = tuple(resized_length(dim, scale) for dim, scale in zip(shape, scales))
        expected = run_resize_nearest(x, coordinate_mode, nearest_mode, scales=scales)
    attrs = {"sizes": sizes, "scales": scales, "coordinate_transformation_mode": coordinate_mode,
             "nearest_mode": nearest_mode}
    assert_op_matches("nn.resize_nearest", [x], attrs, expected)


@pytest.mark.parametrize("coordinate_mode", RESIZE_MODES)
def test_resize_nearest_index_grid(coordinate_mode: str) -> None:
    """Every length 1-9 resized to every length 1-20: the float32 ties (7 → 2 lands on 3.4999998) all agree."""
    for in_size in range(1, 10):
        x = np.arange(in_size, dtype=np.float32).reshape(1, 1, 1, in_size)
        for out_size in range(1, 21):
            sizes = (1, 1, 1, out_size)
            for nearest_mode in NEAREST_MODES:
                expected = run_resize_nearest(x, coordinate_mode, nearest_mode, sizes=sizes)
                attrs = {"sizes": sizes, "scales": (1.0, 1.0, 1.0, out_size / in_size),
                         "coordinate_transformation_mode": coordinate_mode, "nearest_mode": nearest_mode}
                assert_op_matches("nn.resize_nearest", [x], attrs, expected)


# --- element-wise, normalising, matmul -----------------------------------------------------------

@st.composite
def broadcast_pair(draw: st.DrawFn, max_rank: int = 4) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast: a common shape, each side drops leading axes and sets some to 1."""
    common = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, max_rank))))

    def side() -> tuple[int, ...]:
        kept = common[draw(st.integers(0, len(common))):]
        return tuple(1 if draw(st.booleans()) else d for d in kept)

    return side(), side()


@SETTINGS
@given(op=st.sampled_from([("nn.add", "Add"), ("nn.sub", "Sub"), ("nn.mul", "Mul"), ("nn.div", "Div")]),
       shapes=broadcast_pair(), dtype=st.sampled_from([np.float32, np.int32]), seed=SEEDS)
def test_binary_arithmetic(op: tuple[str, str], shapes: tuple, dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if dtype is np.int32:
        lhs = rng.integers(-50, 50, shapes[0]).astype(np.int32)
        rhs = rng.integers(-9, 9, shapes[1]).astype(np.int32)
        rhs[rhs == 0] = 7  # integer division by zero is undefined
    else:
        lhs, rhs = floats(seed, shapes[0], 5.0), floats(seed + 1, shapes[1], 5.0)
        rhs = np.where(np.abs(rhs) < 0.1, np.float32(0.5), rhs).astype(np.float32)
    check(op[0], [lhs, rhs], {}, op[1])


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(), seed=SEEDS,
       alpha=st.floats(-2, 2, width=32))
def test_activations(shape: list[int], data: st.DataObject, seed: int, alpha: float) -> None:
    x = floats(seed, tuple(shape), 100.0)
    check("nn.relu", [x], {}, "Relu")
    check("nn.sigmoid", [x], {}, "Sigmoid")
    check("nn.tanh", [x], {}, "Tanh")
    check("nn.leaky_relu", [x], {"alpha": alpha}, "LeakyRelu", {"alpha": alpha})
    slope_shape = tuple(1 if data.draw(st.booleans()) else d for d in shape[data.draw(st.integers(0, len(shape))):])
    slope = floats(seed + 1, slope_shape)
    check("nn.prelu", [x, slope], {}, "PRelu")


@pytest.mark.parametrize("size", [8, 1 << 14])
def test_relu_and_clip_keep_signed_zeros_as_onnxruntime(size: int) -> None:
    """onnxruntime's Relu and Clip keep −0 (and NaN); so do nn.relu and nn.clip, bit for bit."""
    x = np.zeros(size, np.float32)
    x[:8] = [-0.0, 0.0, np.nan, 7.0, -1.0, -0.0, np.inf, -np.inf]
    cases = [("nn.relu", {}, "Relu", []),
             ("nn.clip", {"min": 0.0, "max": 6.0}, "Clip", [np.array(0.0, np.float32), np.array(6.0, np.float32)]),
             ("nn.clip", {"min": -0.0, "max": math.inf}, "Clip", [np.array(-0.0, np.float32), np.array(np.inf, np.float32)])]
    for name, attrs, op_type, bounds in cases:
        expected = run_onnxruntime(op_type, [x] + bounds, None, 13)
        [actual] = OPS[name].run([x], normalize_attrs(OPS[name], attrs))
        assert np.array_equal(actual, expected, equal_nan=True), name
        assert np.array_equal(np.signbit(actual), np.signbit(expected)), name


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), seed=SEEDS,
       low=st.none() | st.floats(-60, 60, width=32), high=st.none() | st.floats(-60, 60, width=32),
       dtype=st.sampled_from([np.float32, np.int32]))
def test_clip(shape: list[int], seed: int, low: float | None, high: float | None, dtype: type) -> None:
    x = np.random.default_rng(seed).uniform(-100, 100, shape).astype(dtype)
    if dtype is np.int32:
        low, high = (None if b is None else float(int(b)) for b in (low, high))
    attrs = {key: bound for key, bound in (("min", low), ("max", high)) if bound is not None}
    bounds = [None if b is None else np.array(b, dtype) for b in (low, high)]
    check("nn.clip", [x], attrs, "Clip", extra_inputs=bounds, opset=13)


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(), seed=SEEDS)
def test_softmax(shape: list[int], data: st.DataObject, seed: int) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = floats(seed, tuple(shape), 20.0)
    for name, op_type in (("nn.softmax", "Softmax"), ("nn.log_softmax", "LogSoftmax")):
        check(name, [x], {"axis": axis % len(shape)}, op_type, {"axis": axis}, opset=13)


@st.composite
def matmul_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Operand shapes for MatMul: 1-D or ≥2-D each side, batch axes broadcasting."""
    m, k, n = (draw(st.integers(1, 5)) for _ in range(3))
    lhs_batch, rhs_batch = draw(broadcast_pair(max_rank=2))
    lhs = (k,) if draw(st.booleans()) else lhs_batch + (m, k)
    rhs = (k,) if draw(st.booleans()) else rhs_batch + (k, n)
    return lhs, rhs


@SETTINGS
@given(shapes=matmul_shapes(), seed=SEEDS)
def test_matmul(shapes: tuple, seed: int) -> None:
    lhs, rhs = floats(seed, shapes[0]), floats(seed + 1, shapes[1])
    check("nn.matmul", [lhs, rhs], {}, "MatMul")


def test_sigmoid_saturates_without_overflow() -> None:
    x = np.array([-1e4, -100.0, -88.7, -20.0, 0.0, 20.0, 88.7, 100.0, 1e4], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        check("nn.sigmoid", [x], {}, "Sigmoid")


def test_int32_division_truncates_toward_zero() -> None:
    lhs = np.array([7, -7, 7, -7, 0, 1, -1, 9], np.int32)
    rhs = np.array([2, 2, -2, -2, 3, -3, 3, -4], np.int32)
    check("nn.div", [lhs, rhs], {}, "Div")
    assert OPS["nn.div"].run([lhs, rhs], {})[0].tolist() == [3, -3, -3, 3, 0, 0, 0, -2]


@pytest.mark.parametrize(("size", "pad"), [(5, 0), (11, 1)])
def test_pool_ceil_mode_keeps_only_windows_starting_inside(size: int, pad: int) -> None:
    """5 → 3 windows (the last one half outside); 11 padded by 1 → 6, not 7 (the 7th starts in the padding)."""
    x = floats(0, (1, 1, size, size))
    geo = {"kernel": [2, 2], "strides": [2, 2], "dilations": [1, 1], "pads": [pad] * 4, "ceil_mode": True}
    check("nn.max_pool2d", [x], geo, "MaxPool", _onnx_pool_attrs(geo))
    check("nn.avg_pool2d", [x], geo, "AveragePool", _onnx_pool_attrs(geo), opset=19)


@pytest.mark.parametrize("coordinate_mode", [m for m in RESIZE_MODES if m != "tf_half_pixel_for_nn"])
def test_bilinear_resize_is_onnxruntimes_float32_formula_bit_for_bit(coordinate_mode: str) -> None:
    """Linear resizing of an NCHW tensor's two spatial axes is onnxruntime's UpsampleBilinear to the last bit
    (a quantized model's float Resize must give onnxruntime's integers): every pair of lengths 1-6 → 1-9."""
    rng = np.random.default_rng(len(coordinate_mode))
    for in_size in range(1, 7):
        x = rng.standard_normal((1, 2, in_size, in_size + 1)).astype(np.float32)
        for out_h, out_w in [(h, w) for h in range(1, 10) for w in (1, 4, 9)]:
            sizes = (1, 2, out_h, out_w)
            expected = run_onnxruntime("Resize", [x, None, None, np.array(sizes, np.int64)],
                                       {"mode": "linear", "coordinate_transformation_mode": coordinate_mode}, 19)
            attrs = {"mode": "linear", "sizes": sizes, "coordinate_transformation_mode": coordinate_mode,
                     "scales": tuple(out / dim for out, dim in zip(sizes, x.shape))}
            [got] = OPS["nn.resize"].run([x], normalize_attrs(OPS["nn.resize"], attrs))
            assert np.array_equal(got, expected), (coordinate_mode, x.shape, sizes, np.abs(got - expected).max())
