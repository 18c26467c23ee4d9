"""Property tests of the spatial lowering rules: a one-node ONNX Conv, ConvTranspose, MaxPool or AveragePool
with random attributes, lowered by `lower_model` and run by the interpreter, agrees with onnxruntime.

tests/ops pins the IR ops' semantics; these tests pin what rules_spatial.py adds on top: auto_pad and
ConvTranspose's output_shape resolved into explicit pads and output padding, 1-D ops run as 2-D ones with
H = 1, and the defaults of omitted attributes. The strategies draw configurations the ONNX spec allows;
where onnxruntime (rcc's reference) refuses one, or departs from the spec, `assume` drops it and a comment
says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from rcc.ir.printer import print_module

ort.set_default_logger_severity(3)
SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a window op."""

    kernel: int
    stride: int
    dilation: int
    pad_begin: int
    pad_end: int

    @property
    def extent(self) -> int:
        """Length the dilated kernel spans."""
        return self.dilation * (self.kernel - 1) + 1


def axes_strategy(spatial: int, max_kernel: int = 3) -> st.SearchStrategy[list[Axis]]:
    # Dilation 1 half of the time: onnxruntime refuses (Conv) or mis-sizes (pooling) dilated SAME windows.
    axis = st.builds(Axis, kernel=st.integers(1, max_kernel), stride=st.integers(1, 3),
                     dilation=st.one_of(st.just(1), st.integers(2, 3)), pad_begin=st.integers(0, 2),
                     pad_end=st.integers(0, 2))
    return st.lists(axis, min_size=spatial, max_size=spatial)


def same_total_pad(size: int, axis: Axis) -> int:
    """The spec's total SAME padding of a window op (negative when stride > window)."""
    return (math.ceil(size / axis.stride) - 1) * axis.stride + axis.extent - size


def window_input_size(data: st.DataObject, axis: Axis, auto_pad: str) -> int:
    """An input length on which a Conv/pool window fits, as `auto_pad` pads it."""
    if auto_pad == "NOTSET":
        smallest = max(1, axis.extent - axis.pad_begin - axis.pad_end)
    elif auto_pad == "VALID":
        smallest = axis.extent
    else:
        smallest = 1
    return data.draw(st.integers(smallest, smallest + 3), label="size")


def pad_attrs(auto_pad: str, axes: list[Axis]) -> dict[str, Any]:
    """auto_pad, and explicit pads with NOTSET (the spec forbids pads next to any other auto_pad)."""
    if auto_pad != "NOTSET":
        return {"auto_pad": auto_pad}
    return {"auto_pad": auto_pad, "pads": [a.pad_begin for a in axes] + [a.pad_end for a in axes]}


def spelled(data: st.DataObject, attrs: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`attrs` with those at their default value randomly left out, so the rules' defaults are tested too."""
    return {name: value for name, value in attrs.items()
            if value != defaults.get(name) or data.draw(st.booleans(), label=f"spell {name}")}


def window_defaults(spatial: int, kernel: list[int] | None = None) -> dict[str, Any]:
    """Defaults of the window attributes; Conv and ConvTranspose take `kernel` from the weight's shape."""
    return {"kernel_shape": kernel, "auto_pad": "NOTSET", "strides": [1] * spatial, "dilations": [1] * spatial,
            "pads": [0] * 2 * spatial, "group": 1, "output_padding": [0] * spatial, "ceil_mode": 0,
            "count_include_pad": 0}


def floats(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


# --- the oracle ----------------------------------------------------------------------------------

def one_node_model(op_type: str, x: np.ndarray, attrs: dict[str, Any], initializers: dict[str, np.ndarray],
                   opset: int = 17) -> onnx.ModelProto:
    """Model `y = op_type(x, *initializers)`, checked against the op's schema and by strict shape inference."""
    node = helper.make_node(op_type, ["x", *initializers], ["y"], name=op_type.lower(), **attrs)
    graph = helper.make_graph([node], op_type.lower(), [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              # no output shape: onnx's inference gives up on an output_shape below the input's
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(array, name) for name, array in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    checker_context = onnx.checker.C.CheckerContext()
    checker_context.ir_version, checker_context.opset_imports = model.ir_version, {"": opset}
    onnx.checker.check_node(node, checker_context)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return model


def run_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def assert_frontend_matches(model: onnx.ModelProto, x: np.ndarray) -> None:
    """lower_model + interpreter give onnxruntime's shape (declared and computed) and values."""
    expected = run_onnxruntime(model, x)
    node = helper.printable_node(model.graph.node[0])
    module = lower_model(model, "one-node model")
    context = f"{node} on x{list(x.shape)}\n{print_module(module)}"
    [output] = module.outputs
    assert output.type.shape == expected.shape, f"declared {output.type}, onnxruntime gives " \
                                                f"{list(expected.shape)}: {context}"
    got = interpreter.run(module, {"x": x})["y"]
    assert got.shape == expected.shape, f"computed {list(got.shape)}, onnxruntime gives " \
                                        f"{list(expected.shape)}: {context}"
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=context)


# --- convolution ---------------------------------------------------------------------------------

@st.composite
def channels(draw: st.DrawFn) -> dict[str, int]:
    """Batch 1-3 and grouped channels; one input channel per group is a depthwise convolution."""
    return {"batch": draw(st.integers(1, 3)), "group": draw(st.integers(1, 3)),
            "c_per_group": draw(st.integers(1, 2)), "m_per_group": draw(st.integers(1, 2))}


@SETTINGS
@given(spatial=st.sampled_from([1, 2]), auto_pad=st.sampled_from(AUTO_PADS), chans=channels(),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_conv(spatial: int, auto_pad: str, chans: dict[str, int], bias: bool, seed: int,
              data: st.DataObject) -> None:
    axes = data.draw(axes_strategy(spatial), label="axes")
    # onnxruntime refuses dilations with SAME_UPPER / SAME_LOWER ("Dilation not supported"); the spec allows them.
    assume(not (auto_pad.startswith("SAME") and any(a.dilation > 1 for a in axes)))
    sizes = tuple(window_input_size(data, a, auto_pad) for a in axes)
    group, rng = chans["group"], np.random.default_rng(seed)
    x = floats(rng, (chans["batch"], chans["c_per_group"] * group, *sizes))
    m = chans["m_per_group"] * group
    initializers = {"w": floats(rng, (m, chans["c_per_group"], *(a.kernel for a in axes)))}
    if bias:
        initializers["b"] = floats(rng, (m,))
    kernel = [a.kernel for a in axes]
    attrs = spelled(data, {"kernel_shape": kernel, "strides": [a.stride for a in axes],
                           "dilations": [a.dilation for a in axes], "group": group, **pad_attrs(auto_pad, axes)},
                    window_defaults(spatial, kernel))
    assert_frontend_matches(one_node_model("Conv", x, attrs, initializers), x)


@st.composite
def transpose_axes(draw: st.DrawFn, spatial: int) -> tuple[list[Axis], list[int]]:
    axes = draw(axes_strategy(spatial))
    # The spec allows output_padding < max(stride, dilation); onnxruntime refuses output_padding >= stride.
    output_padding = [draw(st.integers(0, max(a.stride, a.dilation) - 1)) for a in axes]
    assume(all(extra < a.stride for extra, a in zip(output_padding, axes)))
    return axes, output_padding


@SETTINGS
@given(spatial=st.sampled_from([1, 2]), auto_pad=st.sampled_from(AUTO_PADS), chans=channels(),
       bias=st.booleans(), with_output_shape=st.booleans(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_conv_transpose(spatial: int, auto_pad: str, chans: dict[str, int], bias: bool, with_output_shape: bool,
                        seed: int, data: st.DataObject) -> None:
    axes, output_padding = data.draw(transpose_axes(spatial), label="axes, output_padding")
    sizes, output_shape = [], []
    for axis, extra in zip(axes, output_padding):
        smallest = 1
        if auto_pad == "NOTSET" and not with_output_shape:  # (size - 1) * stride + extent + extra - pads >= 1
            cropped = axis.pad_begin + axis.pad_end + 1 - axis.extent - extra
            smallest = max(1, 1 + math.ceil(cropped / axis.stride))
        size = data.draw(st.integers(smallest, smallest + 3), label="size")
        sizes.append(size)
        full = (size - 1) * axis.stride + axis.extent
        if with_output_shape:
            # onnxruntime accepts an output up to stride - 1 longer than the full result (the tail is zeros)
            output_shape.append(data.draw(st.integers(1, full + axis.stride - 1), label="output_shape"))
        elif auto_pad.startswith("SAME"):
            # The spec makes the output size * stride long; when that is longer than the full result
            # onnxruntime clamps the padding at 0 and returns the full result instead.
            assume(full + extra >= size * axis.stride)
    group, rng = chans["group"], np.random.default_rng(seed)
    c = chans["c_per_group"] * group
    x = floats(rng, (chans["batch"], c, *sizes))
    initializers = {"w": floats(rng, (c, chans["m_per_group"], *(a.kernel for a in axes)))}
    if bias:
        initializers["b"] = floats(rng, (chans["m_per_group"] * group,))
    attrs = {"kernel_shape": [a.kernel for a in axes], "strides": [a.stride for a in axes],
             "dilations": [a.dilation for a in axes], "group": group, "output_padding": output_padding,
             **pad_attrs(auto_pad, axes)}
    if with_output_shape:
        attrs["output_shape"] = output_shape  # explicit pads next to it are ignored, as the spec says
    attrs = spelled(data, attrs, window_defaults(spatial, attrs["kernel_shape"]))
    assert_frontend_matches(one_node_model("ConvTranspose", x, attrs, initializers), x)


# --- pooling -------------------------------------------------------------------------------------

def pool_case(data: st.DataObject, spatial: int, auto_pad: str, ceil_mode: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Input and attributes of one pooling node; `assume` drops what onnxruntime refuses or mis-sizes."""
    axes = data.draw(axes_strategy(spatial, max_kernel=4), label="axes")
    if auto_pad == "NOTSET":
        # The spec allows pads >= kernel; onnxruntime refuses them ("Pad should be smaller than kernel").
        assume(all(max(a.pad_begin, a.pad_end) < a.kernel for a in axes))
    if auto_pad.startswith("SAME"):
        # onnxruntime sizes SAME pads with the undilated kernel, so its output is not the spec's
        # ceil(size / stride) long; it is no reference for dilated SAME windows.
        assume(all(a.dilation == 1 for a in axes))
    sizes = tuple(window_input_size(data, a, auto_pad) for a in axes)
    if auto_pad.startswith("SAME"):
        # The spec's SAME padding is negative when stride > kernel; onnxruntime then refuses the node
        # ("padding values must be non-negative"; AveragePool in ceil mode only sometimes).
        assume(all(same_total_pad(size, a) >= 0 for size, a in zip(sizes, axes)))
    batch, chans = data.draw(st.integers(1, 3), label="batch"), data.draw(st.integers(1, 3), label="channels")
    x = floats(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed")), (batch, chans, *sizes))
    attrs = {"kernel_shape": [a.kernel for a in axes], "strides": [a.stride for a in axes],
             "dilations": [a.dilation for a in axes], "ceil_mode": int(ceil_mode), **pad_attrs(auto_pad, axes)}
    return x, attrs


@SETTINGS
@given(spatial=st.sampled_from([1, 2]), auto_pad=st.sampled_from(AUTO_PADS), ceil_mode=st.booleans(),
       data=st.data())
def test_max_pool(spatial: int, auto_pad: str, ceil_mode: bool, data: st.DataObject) -> None:
    x, attrs = pool_case(data, spatial, auto_pad, ceil_mode)
    attrs = spelled(data, attrs, window_defaults(spatial))
    assert_frontend_matches(one_node_model("MaxPool", x, attrs, {}), x)


@SETTINGS
@given(spatial=st.sampled_from([1, 2]), auto_pad=st.sampled_from(AUTO_PADS), ceil_mode=st.booleans(),
       count_include_pad=st.booleans(), data=st.data())
def test_average_pool(spatial: int, auto_pad: str, ceil_mode: bool, count_include_pad: bool,
                      data: st.DataObject) -> None:
    x, attrs = pool_case(data, spatial, auto_pad, ceil_mode)
    attrs = spelled(data, {**attrs, "count_include_pad": int(count_include_pad)}, window_defaults(spatial))
    opset = 19 if "dilations" in attrs else 17  # AveragePool has dilations from opset 19
    assert_frontend_matches(one_node_model("AveragePool", x, attrs, {}, opset), x)
