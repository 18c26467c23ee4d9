"""Slice, Split, Gather, GatherElements, GatherND, Expand, Tile, the shape producers and Resize (linear,
cubic, nearest) through the frontend, against onnxruntime on one-node models.

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
from rcc.ir.parser import parse_module
from rcc.ir.printer import print_module

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


def check_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
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
        np.testing.assert_allclose(actual[name], reference, rtol=1e-5, atol=1e-5, err_msg=f"interpreter {name}")
        np.testing.assert_allclose(exported[name], reference, rtol=1e-5, atol=1e-5, err_msg=f"export {name}")


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
