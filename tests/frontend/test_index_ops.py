"""Slice, Split, Gather, GatherElements, GatherND, ScatterND, ScatterElements, Expand, Tile, the shape
producers, Resize (linear, cubic, nearest), GridSample, TopK, OneHot and Trilu through the frontend, against onnxruntime on one-node models.

Each model is lowered, printed and parsed back, run by the interpreter, exported back to ONNX and run by
onnxruntime; both must match onnxruntime on the original model. Parameters (starts, ends, steps, split
sizes, resize modes and scales) are drawn by hypothesis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from rcc.backends.onnx_export import export_onnx
from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from rcc.ir.core import modules_equal
from rcc.ir.errors import RccError, UnsupportedError
from rcc.ir.ops.nn_select import ONE_HOT_KERNELS
from rcc.ir.parser import parse_module
from rcc.ir.printer import print_module
from rcc.ir.types import DTYPES

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)


def one_node(op_type: str, fed: dict[str, np.ndarray], constants: dict[str, np.ndarray | None],
             outputs: int = 1, opset: int = 19, out_dtype: type | None = None, **attrs: Any) -> onnx.ModelProto:
    """A model of one node reading `fed` (graph inputs) then `constants` (initializers; None = omitted); its
    outputs have `out_dtype` (by default the first input's)."""
    names = list(fed) + [name if array is not None else "" for name, array in constants.items()]
    while names and not names[-1]:
        names.pop()
    out_names = [f"y{i}" for i in range(outputs)]
    first = next(iter(fed.values()), None)
    out_type = helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype) if out_dtype else
                                               (first if first is not None else next(iter(constants.values()))).dtype)
    graph = helper.make_graph(
        [helper.make_node(op_type, names, out_names, **attrs)], "one",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in fed.items()],
        [helper.make_tensor_value_info(n, out_type, None) for n in out_names],
        [numpy_helper.from_array(a, n) for n, a in constants.items() if a is not None])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def onnxruntime_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def check_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """Interpreter and exported model agree with onnxruntime; the IR text round-trips."""
    expected = onnxruntime_run(model, feeds)
    module = lower_model(model, "one")
    text = print_module(module)
    reparsed = parse_module(text, {c.name: c.data for c in module.constants})
    assert modules_equal(reparsed, module) and print_module(reparsed) == text
    actual = interpreter.run(module, feeds)
    exported = onnxruntime_run(export_onnx(module), feeds)
    for name, reference in expected.items():
        assert actual[name].dtype == reference.dtype and actual[name].shape == reference.shape, name
        np.testing.assert_allclose(actual[name], reference, rtol=rtol, atol=atol, err_msg=f"interpreter {name}")
        np.testing.assert_allclose(exported[name], reference, rtol=rtol, atol=atol, err_msg=f"export {name}")


def floats(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ints(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


# --- Slice and Split ----------------------------------------------------------------------------

BOUNDS = st.one_of(st.integers(-9, 9), st.sampled_from([2**63 - 1, -2**63, 2**31 - 1]))


@PROPERTY
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data(), seed=SEEDS)
def test_slice_matches_onnxruntime(shape: list[int], data: st.DataObject, seed: int) -> None:
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank,
                              unique_by=lambda a: a % rank), label="axes")
    starts = [data.draw(BOUNDS) for _ in axes]
    ends = [data.draw(BOUNDS) for _ in axes]
    steps = [data.draw(st.integers(-3, 3).filter(bool)) for _ in axes]
    model = one_node("Slice", {"x": floats(seed, tuple(shape))},
                     {"starts": ints(starts), "ends": ints(ends), "axes": ints(axes), "steps": ints(steps)})
    check_model(model, {"x": floats(seed, tuple(shape))})


def test_slice_opset_1_attributes_and_default_axes() -> None:
    x = floats(0, (3, 5, 4))
    check_model(one_node("Slice", {"x": x}, {}, opset=9, starts=[1, -4], ends=[100, -1]), {"x": x})
    check_model(one_node("Slice", {"x": x}, {}, opset=9, starts=[-2], ends=[3], axes=[2]), {"x": x})
    check_model(one_node("Slice", {"x": x}, {"starts": ints([0, 1]), "ends": ints([2, 5])}, opset=13), {"x": x})


def test_slice_step_zero_is_a_one_line_error() -> None:
    x = floats(0, (4,))
    model = one_node("Slice", {"x": x}, {"starts": ints([0]), "ends": ints([3]), "axes": ints([0]),
                                          "steps": ints([0])})
    with pytest.raises(RccError, match=r"node .*\(Slice\): a step of 0"):
        lower_model(model, "one")


def test_slice_with_activation_starts_names_the_input() -> None:
    x = floats(0, (4,))
    model = one_node("Slice", {"x": x, "starts": ints([1])}, {"ends": ints([3])})
    with pytest.raises(UnsupportedError, match="input starts .* must be a compile-time constant"):
        lower_model(model, "one")


@PROPERTY
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=3), data=st.data(), seed=SEEDS)
def test_split_sizes_match_onnxruntime(shape: list[int], data: st.DataObject, seed: int) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    length = shape[axis]
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=3), label="cuts"))
    sizes = np.diff([0] + cuts + [length])
    x = floats(seed, tuple(shape))
    model = one_node("Split", {"x": x}, {"split": ints(sizes)}, outputs=len(sizes), opset=13, axis=axis)
    check_model(model, {"x": x})


@pytest.mark.parametrize(("length", "pieces"), [(7, 3), (6, 3), (5, 2), (4, 4)])
def test_split_num_outputs_of_opset_18_may_be_uneven(length: int, pieces: int) -> None:
    x = floats(1, (2, length))
    check_model(one_node("Split", {"x": x}, {}, outputs=pieces, opset=18, axis=1, num_outputs=pieces), {"x": x})


def test_split_attribute_form_and_equal_default() -> None:
    x = floats(2, (6, 2))
    check_model(one_node("Split", {"x": x}, {}, outputs=2, opset=11, split=[1, 5]), {"x": x})
    check_model(one_node("Split", {"x": x}, {}, outputs=3, opset=13), {"x": x})


def test_split_that_does_not_add_up_is_refused() -> None:
    x = floats(2, (6,))
    with pytest.raises(RccError, match=r"\(Split\): split \[2, 2\] does not cut the axis of 6 into 2 pieces"):
        lower_model(one_node("Split", {"x": x}, {"split": ints([2, 2])}, outputs=2, opset=13), "one")


# --- Gather family ------------------------------------------------------------------------------

@PROPERTY
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data(), seed=SEEDS,
       index_dtype=st.sampled_from([np.int32, np.int64]))
def test_gather_on_activations_with_fed_indices(shape: list[int], data: st.DataObject, seed: int,
                                                index_dtype: type) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    size = shape[axis]
    index_shape = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2), label="index shape"))
    indices = np.random.default_rng(seed).integers(-size, size, index_shape).astype(index_dtype)
    x = floats(seed, tuple(shape))
    check_model(one_node("Gather", {"x": x, "i": indices}, {}, axis=axis), {"x": x, "i": indices})


def test_gather_from_a_constant_table_is_an_embedding_lookup() -> None:
    table = floats(3, (10, 4))
    tokens = np.array([[1, 9, -1, 0]], np.int64)
    model = one_node("Gather", {"tokens": tokens}, {"table": table}, out_dtype=np.float32)
    model.graph.node[0].input[:] = ["table", "tokens"]
    check_model(model, {"tokens": tokens})
    module = lower_model(model, "one")
    [gather] = [op for op in module.ops if op.opname == "nn.gather"]
    assert gather.operands[0].is_constant and not gather.operands[1].is_constant


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_with_a_scalar_constant_index_drops_the_axis(axis: int) -> None:
    """ViT's class token x[:, 0] and Swin's q, k, v = qkv[0], qkv[1], qkv[2]: a 0-d initializer index
    removes the axis (a scalar constant once became 1-D in the IR and kept it)."""
    x = floats(4, (3, 5, 2))
    model = one_node("Gather", {"x": x}, {"i": np.array(-1 if axis else 2, np.int64)}, axis=axis)
    check_model(model, {"x": x})
    [output] = lower_model(model, "one").outputs
    assert output.type.shape == tuple(d for a, d in enumerate(x.shape) if a != axis)


def test_gather_with_constant_indices_out_of_range_is_refused() -> None:
    x = floats(0, (3, 4))
    with pytest.raises(RccError, match=r"\(Gather\): indices 'i' hold values outside \[-4, 3\]"):
        lower_model(one_node("Gather", {"x": x}, {"i": ints([4])}, axis=1), "one")


@PROPERTY
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data(), seed=SEEDS)
def test_gather_elements(shape: list[int], data: st.DataObject, seed: int) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    index_shape = tuple(data.draw(st.integers(1, d)) if a != axis % len(shape) else data.draw(st.integers(1, 4))
                        for a, d in enumerate(shape))
    size = shape[axis]
    indices = np.random.default_rng(seed).integers(-size, size, index_shape).astype(np.int64)
    x = floats(seed, tuple(shape))
    check_model(one_node("GatherElements", {"x": x, "i": indices}, {}, axis=axis), {"x": x, "i": indices})


@pytest.mark.parametrize(("x_shape", "index", "batch_dims"), [
    ((2, 3), [[0, 1], [1, -1]], 0), ((2, 3, 4), [[1], [0]], 0), ((2, 3, 4), [[1], [2]], 1),
    ((2, 2, 3), [[[0, 1]], [[1, 2]]], 1)])
def test_gather_nd(x_shape: tuple, index: list, batch_dims: int) -> None:
    x, indices = floats(4, x_shape), ints(index)
    check_model(one_node("GatherND", {"x": x, "i": indices}, {}, batch_dims=batch_dims), {"x": x, "i": indices})


# --- Scatters -----------------------------------------------------------------------------------

REDUCTIONS = st.sampled_from(["none", "add", "mul", "max", "min"])


def check_exact(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """`check_model`, and the interpreter bit for bit with onnxruntime (scatters: both apply the updates one
    index after the other, the last of a repeated index winning without a reduction; GridSample: the same
    float operations in the same order)."""
    check_model(model, feeds)
    actual = interpreter.run(lower_model(model, "one"), feeds)
    for name, expected in onnxruntime_run(model, feeds).items():
        np.testing.assert_array_equal(actual[name], expected, err_msg=name)


@PROPERTY
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data(), seed=SEEDS, reduction=REDUCTIONS)
def test_scatter_nd_with_repeated_indices(shape: list[int], data: st.DataObject, seed: int, reduction: str) -> None:
    depth = data.draw(st.integers(1, len(shape)), label="depth")
    count = data.draw(st.integers(1, 6), label="updates")
    rng = np.random.default_rng(seed)
    indices = np.stack([rng.integers(-d, d, count) for d in shape[:depth]], axis=-1).astype(np.int64)
    x, updates = floats(seed, tuple(shape)), floats(seed + 1, (count, *shape[depth:]))
    attrs = {} if reduction == "none" else {"reduction": reduction}
    feeds = {"x": x, "i": indices, "u": updates}
    check_exact(one_node("ScatterND", feeds, {}, opset=18, **attrs), feeds)


@PROPERTY
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data(), seed=SEEDS, reduction=REDUCTIONS)
def test_scatter_elements_with_repeated_indices(shape: list[int], data: st.DataObject, seed: int,
                                                reduction: str) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    index_shape = tuple(data.draw(st.integers(1, d)) if a != axis % len(shape) else data.draw(st.integers(1, 5))
                        for a, d in enumerate(shape))
    size = shape[axis]
    indices = np.random.default_rng(seed).integers(-size, size, index_shape).astype(np.int64)
    x, updates = floats(seed, tuple(shape)), floats(seed + 1, index_shape)
    attrs = {} if reduction == "none" else {"reduction": reduction}
    feeds = {"x": x, "i": indices, "u": updates}
    check_exact(one_node("ScatterElements", feeds, {}, opset=18, axis=axis, **attrs), feeds)


def test_scatter_of_opset_10_is_scatter_elements() -> None:
    x, updates = floats(1, (3, 4)), floats(2, (2, 4))
    indices = ints([[2, 0, 1, 2], [0, 1, 1, 0]])
    feeds = {"x": x, "i": indices, "u": updates}
    check_exact(one_node("Scatter", feeds, {}, opset=10, axis=0), feeds)


@pytest.mark.parametrize("op_type", ["ScatterND", "ScatterElements"])
@pytest.mark.parametrize(("dtype", "reduction"), [(np.bool_, "add"), (np.bool_, "mul"), (np.float16, "none"),
                                                  (np.int32, "max")])
def test_scatter_of_other_dtypes(op_type: str, dtype: type, reduction: str) -> None:
    """bool add and mul are or and and; float16 scatters without arithmetic (as onnxruntime, which has them)."""
    rng = np.random.default_rng(3)
    x, updates = (rng.standard_normal((3, 4)) > 0).astype(dtype), (rng.standard_normal((3, 4)) > 0).astype(dtype)
    if op_type == "ScatterND":
        indices, updates = ints([[2], [0], [2]]), updates
    else:
        indices = ints([[0, 1, 1, 3], [2, 2, 0, 1], [3, 0, 0, 0]])
    attrs = ({} if reduction == "none" else {"reduction": reduction}) | ({"axis": 1} if op_type != "ScatterND" else {})
    feeds = {"x": x, "i": indices, "u": updates}
    check_exact(one_node(op_type, feeds, {}, opset=18, **attrs), feeds)


@pytest.mark.parametrize(("op_type", "dtype", "reduction"), [("ScatterND", np.float16, "add"),
                                                             ("ScatterElements", np.float16, "mul"),
                                                             ("ScatterND", np.bool_, "max")])
def test_scatter_kernels_onnxruntime_lacks_are_refused(op_type: str, dtype: type, reduction: str) -> None:
    x = np.ones((3, 4), dtype)
    indices = ints([[1]]) if op_type == "ScatterND" else ints([[1, 0, 0, 0]])
    updates = np.ones((1, 4), dtype)
    feeds = {"x": x, "i": indices, "u": updates}
    model = one_node(op_type, feeds, {}, opset=18, reduction=reduction)
    with pytest.raises(Exception):
        onnxruntime_run(model, feeds)
    with pytest.raises(RccError, match=rf"reduction '{reduction}' of (f16|bool) data \(onnxruntime has no such kernel"):
        lower_model(model, "one")


@pytest.mark.parametrize(("op_type", "opset", "reduction", "message"), [
    ("ScatterND", 13, "add", "attribute reduction='add' is not one of none in opset 13"),
    ("ScatterElements", 13, "max", "attribute reduction='max' is not one of none in opset 13"),
    ("ScatterND", 18, "sum", "attribute reduction='sum' is not one of none, add, mul, max, min in opset 18")])
def test_scatter_reduction_an_opset_lacks_is_a_one_line_error(op_type: str, opset: int, reduction: str,
                                                             message: str) -> None:
    x = floats(0, (3, 2))
    model = one_node(op_type, {"x": x}, {"i": ints([[1]] if op_type == "ScatterND" else [[1, 0]]),
                                         "u": floats(1, (1, 2))}, opset=opset, reduction=reduction)
    model.graph.node[0].name = "put"
    with pytest.raises(RccError) as caught:
        lower_model(model, "bad.onnx")
    assert str(caught.value) == f"bad.onnx: node 'put' ({op_type}): {message}"


# --- Expand, Tile, shape producers --------------------------------------------------------------

@pytest.mark.parametrize(("x_shape", "shape"), [((3, 1), (2, 3, 4)), ((1, 4), (3, 1)), ((2, 1, 3), (1, 1)),
                                                ((1,), (2, 0))])
def test_expand_broadcasts_both_ways(x_shape: tuple, shape: tuple) -> None:
    x = floats(5, x_shape)
    check_model(one_node("Expand", {"x": x}, {"shape": ints(shape)}), {"x": x})


def test_tile() -> None:
    x = floats(6, (2, 3))
    check_model(one_node("Tile", {"x": x}, {"repeats": ints([3, 2])}), {"x": x})
    check_model(one_node("Tile", {"x": x}, {"repeats": ints([0, 1])}), {"x": x})


def test_shape_of_an_activation_folds_into_constant_of_shape_and_range() -> None:
    """Shape(start, end), ConstantOfShape, Size and Range fold on static shapes: only the Add is left."""
    x = floats(7, (2, 5, 3))
    nodes = [helper.make_node("Shape", ["x"], ["s"], start=-1, end=5),
             helper.make_node("ConstantOfShape", ["s"], ["c"],
                              value=numpy_helper.from_array(np.array([2.5], np.float32))),
             helper.make_node("Size", ["x"], ["n"]),
             helper.make_node("Range", ["zero", "n", "three"], ["r"]),
             helper.make_node("Add", ["x", "c"], ["y"])]
    graph = helper.make_graph(nodes, "shapes", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("r", onnx.TensorProto.INT64, None)],
                              [numpy_helper.from_array(ints(0), "zero"), numpy_helper.from_array(ints(3), "three")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    check_model(model, {"x": x})
    assert [op.opname for op in lower_model(model, "shapes").ops] == ["nn.add", "nn.identity"]


def test_range_of_activations_names_the_input() -> None:
    model = one_node("Range", {"start": np.array(0.0, np.float32)}, {"limit": np.array(4.0, np.float32),
                                                                      "delta": np.array(1.0, np.float32)})
    with pytest.raises(UnsupportedError, match=r"\(Range\): input start .* must be a compile-time constant"):
        lower_model(model, "one")


# --- Resize ---------------------------------------------------------------------------------------

COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric",
                    "tf_crop_and_resize")
SCALES = (0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["linear", "cubic"]), coordinate_mode=st.sampled_from(COORDINATE_MODES),
       by_sizes=st.booleans(), exclude_outside=st.booleans(), antialias=st.booleans(), data=st.data(), seed=SEEDS)
def test_resize_interpolation_matches_onnxruntime(mode: str, coordinate_mode: str, by_sizes: bool,
                                                  exclude_outside: bool, antialias: bool, data: st.DataObject,
                                                  seed: int) -> None:
    shape = (1, data.draw(st.integers(1, 2)), data.draw(st.integers(2, 6)), data.draw(st.integers(2, 6)))
    x = floats(seed, shape)
    constants: dict[str, np.ndarray | None] = {"roi": None, "scales": None, "sizes": None}
    if coordinate_mode == "tf_crop_and_resize":
        low = data.draw(st.sampled_from([0.0, 0.1, 0.3, -0.2]))
        high = data.draw(st.sampled_from([1.0, 0.8, 1.2]))
        constants["roi"] = np.array([0, 0, low, low, 1, 1, high, high], np.float32)
    if by_sizes:
        constants["sizes"] = ints(shape[:2] + tuple(data.draw(st.integers(1, 9)) for _ in range(2)))
    else:
        scales = [data.draw(st.sampled_from(SCALES).filter(lambda s, d=d: int(np.float32(s) * np.float32(d))))
                  for d in shape[2:]]
        constants["scales"] = np.array([1, 1, *scales], np.float32)
    exclude_outside = exclude_outside and (mode == "cubic" or antialias)  # onnxruntime refuses it otherwise
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinate_mode, "exclude_outside": int(exclude_outside),
             "antialias": int(antialias), "cubic_coeff_a": data.draw(st.sampled_from([-0.75, -0.5])),
             "extrapolation_value": 7.0}
    check_model(one_node("Resize", {"x": x}, constants, **attrs), {"x": x})


def test_resize_antialiased_axis_of_unchanged_size_still_extrapolates() -> None:
    """tf_crop_and_resize with antialias: the width keeps its size (2 × 1.25 → 2), so its values are copied, but
    the second column's region-of-interest coordinate (1.2) lies outside the input: onnxruntime gives the
    extrapolation value there (a case hypothesis found)."""
    x = floats(0, (1, 1, 2, 2))
    constants = {"roi": np.array([0, 0, 0.0, 0.0, 1, 1, 1.2, 1.2], np.float32), "scales": np.array([1, 1, 0.5, 1.25],
                                                                                                    np.float32)}
    check_model(one_node("Resize", {"x": x}, constants, mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                         antialias=1, extrapolation_value=7.0), {"x": x})


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_axes_and_keep_aspect_ratio_policy(mode: str) -> None:
    x = floats(8, (1, 2, 4, 6))
    for policy in ("stretch", "not_larger", "not_smaller"):
        model = one_node("Resize", {"x": x}, {"roi": None, "scales": None, "sizes": ints([6, 5])}, mode=mode,
                         axes=[3, 2], keep_aspect_ratio_policy=policy)
        check_model(model, {"x": x})
    check_model(one_node("Resize", {"x": x}, {"roi": None, "scales": np.array([2.0, 1.5], np.float32)},
                         mode=mode, axes=[-2, -1]), {"x": x})


@pytest.mark.parametrize(("op_type", "opset", "mode"), [("Upsample", 9, "nearest"), ("Upsample", 9, "linear"),
                                                        ("Resize", 10, "linear"), ("Resize", 10, "nearest")])
def test_old_upsample_and_resize_10(op_type: str, opset: int, mode: str) -> None:
    x = floats(9, (1, 1, 3, 4))
    model = one_node(op_type, {"x": x}, {"scales": np.array([1, 1, 2, 1.5], np.float32)}, opset=opset, mode=mode)
    expected = onnxruntime_run(model, {"x": x})["y0"]
    np.testing.assert_allclose(interpreter.run(lower_model(model, "old"), {"x": x})["y0"], expected, rtol=1e-5,
                               atol=1e-6)


def test_resize_with_a_bad_attribute_is_a_one_line_error() -> None:
    x = floats(0, (1, 1, 2, 2))
    scales = {"roi": None, "scales": np.array([1, 1, 2, 2], np.float32)}
    with pytest.raises(RccError, match=r"\(Resize\): mode 'area' is not nearest, linear or cubic"):
        lower_model(one_node("Resize", {"x": x}, scales, mode="area"), "one")
    with pytest.raises(RccError, match=r"\(Resize\): exclude_outside applies to cubic resizing"):
        lower_model(one_node("Resize", {"x": x}, scales, mode="linear", exclude_outside=1), "one")
    with pytest.raises(RccError, match=r"\(Resize\): coordinate_transformation_mode tf_crop_and_resize needs"):
        lower_model(one_node("Resize", {"x": x}, scales, mode="cubic",
                             coordinate_transformation_mode="tf_crop_and_resize"), "one")


# --- GridSample ---------------------------------------------------------------------------------

@PROPERTY
@given(mode=st.sampled_from(["linear", "nearest", "cubic"]), padding=st.sampled_from(["zeros", "border", "reflection"]),
       align=st.booleans(), volumetric=st.booleans(), double=st.booleans(), seed=SEEDS, data=st.data())
def test_grid_sample_bit_for_bit(mode: str, padding: str, align: bool, volumetric: bool, double: bool, seed: int,
                                 data: st.DataObject) -> None:
    """Opset 20 (3-D, float64), and opset 16's names for 2-D float32; points inside, outside and on the pixel grid."""
    volumetric = volumetric and mode != "cubic"
    spatial = data.draw(st.lists(st.integers(1, 5), min_size=3 if volumetric else 2, max_size=3 if volumetric else 2))
    out = data.draw(st.lists(st.integers(1, 4), min_size=len(spatial), max_size=len(spatial)))
    opset = 20 if volumetric or double else data.draw(st.sampled_from([16, 20]))
    rng = np.random.default_rng(seed)
    dtype = np.float64 if double else np.float32
    x = rng.standard_normal((2, 3, *spatial)).astype(dtype)
    grid = rng.uniform(-2.5, 2.5, (2, *out, len(spatial))).astype(dtype)
    if data.draw(st.booleans(), label="on quarter steps"):
        grid = np.round(grid * 4) / 4
    name = {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode) if opset == 16 else mode
    model = one_node("GridSample", {"x": x, "grid": grid}, {}, opset=opset, mode=name, padding_mode=padding,
                     align_corners=int(align))
    check_exact(model, {"x": x, "grid": grid})


@pytest.mark.parametrize(("opset", "rank", "attrs", "message"), [
    (16, 4, {"mode": "linear"}, "attribute mode='linear' is not one of bilinear, nearest, bicubic in opset 16"),
    (20, 4, {"padding_mode": "wrap"}, "attribute padding_mode='wrap' is not one of zeros, border, reflection"),
    (20, 5, {"mode": "cubic"}, "nn.grid_sample: cubic sampling is 2-D only, got f32[1,1,2,2,2]")])
def test_grid_sample_refusals_name_the_node(opset: int, rank: int, attrs: dict, message: str) -> None:
    x = floats(0, (1, 1) + (2,) * (rank - 2))
    grid = floats(1, (1,) + (2,) * (rank - 2) + (rank - 2,))
    model = one_node("GridSample", {"x": x, "grid": grid}, {}, opset=opset, **attrs)
    model.graph.node[0].name = "warp"
    with pytest.raises(RccError) as caught:
        lower_model(model, "bad.onnx")
    assert str(caught.value) == f"bad.onnx: node 'warp' (GridSample): {message}"


# --- TopK, OneHot, Trilu ------------------------------------------------------------------------

@PROPERTY
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), largest=st.booleans(), dtype=st.sampled_from(
    [np.float32, np.int64, np.uint8]), opset=st.sampled_from([1, 10, 11]), seed=SEEDS, data=st.data())
def test_top_k_with_ties_bit_for_bit(shape: list[int], largest: bool, dtype: type, opset: int, seed: int,
                                     data: st.DataObject) -> None:
    """Values and indices in onnxruntime's order: by value, equal values by lower index (few distinct values)."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    k = data.draw(st.integers(1 if opset == 1 else 0, shape[axis]), label="k")
    dtype = dtype if opset >= 11 else np.float32   # integer TopK from opset 11 on
    x = np.random.default_rng(seed).integers(0, 4, shape).astype(dtype)
    if opset == 1:
        model = one_node("TopK", {"x": x}, {}, outputs=2, opset=1, axis=axis % len(shape), k=k)
    else:
        attrs = {"largest": int(largest)} if opset >= 11 else {}
        model = one_node("TopK", {"x": x}, {"k": ints([k])}, outputs=2, opset=opset, axis=axis, **attrs)
    model.graph.output[1].type.tensor_type.elem_type = onnx.TensorProto.INT64
    check_exact(model, {"x": x})


def test_unsorted_top_k_beyond_one_is_refused() -> None:
    x = floats(0, (2, 5))
    with pytest.raises(UnsupportedError, match=r"TopK with sorted=0"):
        lower_model(one_node("TopK", {"x": x}, {"k": ints([3])}, opset=11, sorted=0), "one")


@pytest.mark.parametrize("axis", [-1, 0, 1, 2])
@pytest.mark.parametrize("types", sorted(ONE_HOT_KERNELS))
def test_one_hot_with_negative_and_outside_indices(axis: int, types: tuple[str, str, str]) -> None:
    """Every (indices, depth, values) dtype triple onnxruntime has a kernel for; float indices truncate."""
    index_dtype, depth_dtype, value_dtype = (DTYPES[name] for name in types)
    indices = np.array([[0, 3.7, -1, 5, 7], [2, -6, 1.2, 0, -7]]).astype(index_dtype)
    model = one_node("OneHot", {"i": indices}, {"depth": np.array(6, depth_dtype), "values": np.array([5, 2], value_dtype)},
                     opset=11, out_dtype=value_dtype, axis=axis)
    check_exact(model, {"i": indices})


def test_one_hot_of_dtypes_onnxruntime_lacks_is_refused() -> None:
    indices = np.array([0, 2], np.int32)
    model = one_node("OneHot", {"i": indices}, {"depth": np.array(3), "values": np.array([0, 1], np.float32)},
                     opset=11, out_dtype=np.float32)
    with pytest.raises(Exception):
        onnxruntime_run(model, {"i": indices})
    with pytest.raises(RccError, match=r"i32 indices, i64 depth and f32 values: onnxruntime has no such OneHot"):
        lower_model(model, "one")


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -2, 0, 1, 5])
def test_trilu(upper: int, k: int | None) -> None:
    x = floats(3, (2, 3, 4))
    check_exact(one_node("Trilu", {"x": x}, {"k": None if k is None else np.array(k)}, opset=14, upper=upper), {"x": x})


# --- a review's findings (each failed before its fix) ---------------------------------------------

def test_scatter_nd_of_whole_tensors_and_of_a_scalar() -> None:
    """Index tuples of length 0 name the whole tensor (the updates replace it in turn); 0-d data is refused."""
    data = floats(1, (3, 4))
    feeds = {"x": data, "i": np.zeros((2, 0), np.int64), "u": floats(2, (2, 3, 4))}
    check_exact(one_node("ScatterND", feeds, {}, opset=18), feeds)
    check_exact(one_node("ScatterND", feeds, {}, opset=18, reduction="add"), feeds)
    scalar = {"x": np.array(1.0, np.float32), "i": np.zeros((0,), np.int64), "u": np.array(2.0, np.float32)}
    with pytest.raises(RccError, match="do not scatter into f32"):
        lower_model(one_node("ScatterND", scalar, {}, opset=18), "one")


@pytest.mark.parametrize("op_type", ["ScatterND", "ScatterElements"])
@pytest.mark.parametrize("reduction", ["max", "min"])
def test_scatter_max_and_min_with_nan_and_repeats_as_onnxruntime(op_type: str, reduction: str) -> None:
    """onnxruntime keeps the update unless it compares strictly worse: a NaN on either side gives the update;
    opset 16 models may ask for max and min (onnxruntime runs them)."""
    x = np.array([1.0, np.nan, 2.0, 5.0], np.float32)
    updates = np.array([np.nan, 1.0, 3.0, 4.0, np.nan, 9.0], np.float32)
    indices = np.array([0, 1, 2, 2, 3, 3])
    feeds = {"x": x, "i": indices[:, None] if op_type == "ScatterND" else indices, "u": updates}
    for opset in (16, 18):
        check_exact(one_node(op_type, feeds, {}, opset=opset, reduction=reduction), feeds)


def test_grid_sample_refuses_empty_spatial_axes_and_takes_a_float16_grid_and_5d_in_opset_16() -> None:
    x = floats(1, (1, 1, 0, 4))
    with pytest.raises(RccError, match="input spatial dimensions must be non-empty"):
        lower_model(one_node("GridSample", {"x": x, "grid": floats(2, (1, 2, 2, 2))}, {}, opset=16), "one")
    x, grid = floats(3, (1, 2, 3, 4)), np.random.default_rng(4).uniform(-1, 1, (1, 3, 2, 2)).astype(np.float16)
    check_exact(one_node("GridSample", {"x": x, "grid": grid}, {}, opset=20), {"x": x, "grid": grid})
    x, grid = floats(5, (1, 2, 3, 4, 5)), floats(6, (1, 2, 2, 2, 3))
    check_exact(one_node("GridSample", {"x": x, "grid": grid}, {}, opset=16, mode="bilinear"), {"x": x, "grid": grid})


@pytest.mark.parametrize(("depth", "values"), [(np.float16, np.float32), (np.float32, np.float16),
                                               (np.int64, np.float16)])
def test_one_hot_takes_its_type_from_its_values_with_float16_anywhere(depth: type, values: type) -> None:
    """A float16 depth or values reaches onnxruntime's kernels through inserted casts; the result has the
    values' type (a float16 depth once rounded a float32 result to float16: 1e6 became inf)."""
    indices = np.array([[0, 2, -1], [5, 1, 0]])
    model = one_node("OneHot", {"i": indices}, {"depth": np.array(3, depth), "values": np.array([0.1, 1e4], values)},
                     opset=11, out_dtype=values)
    check_exact(model, {"i": indices})


@pytest.mark.parametrize(("op_type", "dtype"), [("TopK", np.uint16), ("TopK", np.uint64), ("Trilu", np.int8),
                                                ("Trilu", np.uint8)])
def test_top_k_and_trilu_of_dtypes_onnxruntime_has_no_kernel_for_are_refused(op_type: str, dtype: type) -> None:
    x = np.ones((3, 4), dtype)
    model = one_node(op_type, {"x": x}, {"k": ints([2])} if op_type == "TopK" else {}, outputs=2 if op_type == "TopK"
                     else 1, opset=14)
    with pytest.raises(Exception):
        onnxruntime_run(model, {"x": x})
    with pytest.raises(UnsupportedError, match=rf"{op_type} of [iu]\d+: onnxruntime has no such kernel either"):
        lower_model(model, "one")
