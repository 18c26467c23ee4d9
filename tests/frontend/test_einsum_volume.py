"""Einsum (lowered to matmuls) and 3-D convolution and pooling (rewritten to 2-D), against onnxruntime:
one-node models through the frontend, the interpreter and the ONNX export, and models with constant
weights compiled and verified on the machine in float and integer mode, where the weights sit on crossbars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcc.compiler.frontend import lower_model
from rcc.ir.errors import RccError, UnsupportedError
from tests.frontend.test_index_ops import PROPERTY, SEEDS, check_model, floats, one_node
from tests.frontend.through_cli import compile_verified

EINSUMS = [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("bhqk,bhkd->bhqd", [(1, 2, 3, 5), (1, 2, 5, 4)]),
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij->ji", [(3, 4)]),
    ("ii->", [(4, 4)]),
    ("ii->i", [(3, 3)]),
    ("...ij,...jk", [(2, 3, 4), (2, 4, 2)]),
    ("i,i", [(5,), (5,)]),
    ("bij->bj", [(2, 3, 4)]),
    ("ij,kj->ikj", [(2, 3), (4, 3)]),
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 2)]),
]


@pytest.mark.parametrize(("equation", "shapes"), EINSUMS, ids=[e for e, _ in EINSUMS])
def test_einsum_on_activations(equation: str, shapes: list[tuple]) -> None:
    fed = {f"x{i}": floats(i, shape) for i, shape in enumerate(shapes)}
    check_model(one_node("Einsum", fed, {}, opset=12, equation=equation), fed)


@pytest.mark.parametrize(("equation", "shapes"), [("bij,jk->bik", [(2, 3, 4), (4, 5)]),
                                                  ("jk,bij->bik", [(4, 5), (2, 3, 4)]),
                                                  ("ij,kj->ik", [(3, 4), (5, 4)])])
def test_einsum_with_a_constant_operand_is_a_crossbar_matmul(equation: str, shapes: list[tuple]) -> None:
    constant_first = equation.startswith("jk")
    activation_shape, weight_shape = (shapes[1], shapes[0]) if constant_first else shapes
    x, weight = floats(1, activation_shape), floats(2, weight_shape)
    model = one_node("Einsum", {"x": x}, {"w": weight}, opset=12, equation=equation)
    if constant_first:
        model.graph.node[0].input[:] = ["w", "x"]
    check_model(model, {"x": x})
    [matmul] = [op for op in lower_model(model, "einsum").ops if op.opname == "nn.matmul"]
    assert matmul.operands[1].is_constant and matmul.operands[1].type.rank == 2


@pytest.mark.parametrize(("equation", "message"), [("ij,jk->iz", "result 'iz' repeats a label or names one"),
                                                   ("ijk->i", "does not label the 2 axes")])
def test_bad_einsum_equation_is_one_line_naming_node_and_equation(equation: str, message: str) -> None:
    x = floats(0, (3, 3))
    fed = {"x": x, "y": x} if "," in equation else {"x": x}
    with pytest.raises(RccError, match=rf"\(Einsum\): Einsum equation '{equation}': .*{message}"):
        lower_model(one_node("Einsum", fed, {}, opset=12, equation=equation), "one")


def test_einsum_broadcasting_a_unit_axis_is_unsupported() -> None:
    fed = {"x": floats(0, (1, 3, 4)), "y": floats(1, (2, 4, 5))}
    with pytest.raises(UnsupportedError, match=r"Einsum equation 'bij,bjk->bik': label 'b' has sizes 1 and 2"):
        lower_model(one_node("Einsum", fed, {}, opset=12, equation="bij,bjk->bik"), "one")


# --- 3-D convolution and pooling ----------------------------------------------------------------

@PROPERTY
@given(data=st.data(), seed=SEEDS)
def test_conv3d_matches_onnxruntime(data: st.DataObject, seed: int) -> None:
    group = data.draw(st.sampled_from([1, 2]))
    channels, outputs = group * data.draw(st.integers(1, 2)), group * data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(3)]
    strides = [data.draw(st.integers(1, 2)) for _ in range(3)]
    dilations = [data.draw(st.integers(1, 2)) for _ in range(3)]
    pads = [data.draw(st.integers(0, 1)) for _ in range(6)]
    size = [max(k * d, 3) + data.draw(st.integers(0, 2)) for k, d in zip(kernel, dilations)]
    x = floats(seed, (data.draw(st.integers(1, 2)), channels, *size))
    weights = {"w": floats(seed + 1, (outputs, channels // group, *kernel)),
               "b": floats(seed + 2, (outputs,)) if data.draw(st.booleans()) else None}
    model = one_node("Conv", {"x": x}, weights, opset=17, group=group, strides=strides, dilations=dilations,
                     pads=pads)
    check_model(model, {"x": x})
    assert [op.opname for op in lower_model(model, "conv3d").ops].count("nn.conv2d") == 1


def test_conv3d_with_weights_as_an_input_and_same_padding() -> None:
    x, w = floats(0, (1, 2, 4, 5, 3)), floats(1, (3, 2, 2, 3, 2))
    check_model(one_node("Conv", {"x": x, "w": w}, {}, opset=17, auto_pad="SAME_UPPER"), {"x": x, "w": w})


@PROPERTY
@given(data=st.data(), seed=SEEDS, op_type=st.sampled_from(["MaxPool", "AveragePool"]))
def test_pool3d_matches_onnxruntime(data: st.DataObject, seed: int, op_type: str) -> None:
    kernel = [data.draw(st.integers(1, 3)) for _ in range(3)]
    strides = [data.draw(st.integers(1, 2)) for _ in range(3)]
    pads = [data.draw(st.integers(0, k - 1)) for k in kernel] * 2
    dilations = [data.draw(st.integers(1, 2)) if op_type == "MaxPool" else 1 for _ in range(3)]
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads, "ceil_mode": int(data.draw(st.booleans()))}
    if op_type == "AveragePool":
        attrs["count_include_pad"] = int(data.draw(st.booleans()))
    else:
        attrs["dilations"] = dilations
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    x = floats(seed, (1, 2, *(span + data.draw(st.integers(0, 3)) for span in spans)))
    check_model(one_node(op_type, {"x": x}, {}, opset=17, **attrs), {"x": x})


def test_global_average_pool_of_a_volume() -> None:
    x = floats(3, (2, 3, 2, 4, 3))
    check_model(one_node("GlobalAveragePool", {"x": x}, {}), {"x": x})


@PROPERTY
@given(data=st.data(), seed=SEEDS)
def test_conv_transpose3d_matches_onnxruntime(data: st.DataObject, seed: int) -> None:
    """Strides, dilations, pads, output padding (or an output_shape), groups and bias: one nn.conv_transpose2d per
    depth tap."""
    group = data.draw(st.sampled_from([1, 2]))
    channels, per_group = group * data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(3)]
    strides = [data.draw(st.integers(1, 3)) for _ in range(3)]
    dilations = [data.draw(st.integers(1, 2)) for _ in range(3)]
    pads = [data.draw(st.integers(0, d * (k - 1) // 2)) for _ in range(2) for k, d in zip(kernel, dilations)]
    output_padding = [data.draw(st.integers(0, s - 1)) for s in strides]   # onnxruntime: below the stride
    x = floats(seed, (data.draw(st.integers(1, 2)), channels, *(data.draw(st.integers(1, 3)) for _ in range(3))))
    weights = {"w": floats(seed + 1, (channels, per_group, *kernel)),
               "b": floats(seed + 2, (group * per_group,)) if data.draw(st.booleans()) else None}
    attrs = {"group": group, "strides": strides, "dilations": dilations, "pads": pads, "output_padding": output_padding}
    if data.draw(st.booleans()):   # an output_shape instead: pads resolved from it (SAME_UPPER split)
        attrs = {"group": group, "strides": strides, "dilations": dilations,
                 "output_shape": [size * stride for size, stride in zip(x.shape[2:], strides)]}
    model = one_node("ConvTranspose", {"x": x}, weights, opset=17, **attrs)
    check_model(model, {"x": x})
    assert [op.opname for op in lower_model(model, "deconv3d").ops].count("nn.conv_transpose2d") == kernel[0]


def test_conv_transpose3d_with_weights_as_an_input() -> None:
    x, w = floats(0, (1, 2, 3, 3, 2)), floats(1, (2, 3, 2, 2, 3))
    check_model(one_node("ConvTranspose", {"x": x, "w": w}, {}, opset=17, strides=[2, 1, 2], pads=[1, 0, 0, 0, 1, 1]),
                {"x": x, "w": w})


def test_conv_transpose_of_four_spatial_axes_is_named_unsupported() -> None:
    x, w = floats(0, (1, 2, 2, 2, 2, 2)), floats(1, (2, 2, 2, 2, 2, 2))
    with pytest.raises(UnsupportedError, match=r"4-D ConvTranspose \(rcc handles 1-D, 2-D and 3-D\)"):
        lower_model(one_node("ConvTranspose", {"x": x}, {"w": w}), "one")


def verified_programs(tmp_path: Path, name: str, nodes: list, weights: dict[str, np.ndarray], x_shape: tuple,
                       y_shape: tuple) -> list:
    """The model x → nodes → y compiled and verified on the machine in float and in integer mode: its programs."""
    graph = onnx.helper.make_graph(
        nodes, name, [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x_shape)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, y_shape)],
        [onnx.numpy_helper.from_array(a, n) for n, a in weights.items()])
    path = tmp_path / f"{name}.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=9), path)
    return [compile_verified(path, precision, tmp_path) for precision in ("float", "int")]


def test_volume_decoder_runs_on_crossbars(tmp_path: Path) -> None:
    """A strided 3-D ConvTranspose with bias, then ReLU, float and integer, verified on the machine: each of its 2
    depth taps' 2-D transposed convolutions (stride 2) is rewritten into 4 pixel-wise phases on crossbars."""
    rng = np.random.default_rng(1)
    weights = {"w": rng.standard_normal((3, 4, 2, 3, 3)).astype(np.float32) * 0.3,
               "b": rng.standard_normal(4).astype(np.float32) * 0.1}
    nodes = [onnx.helper.make_node("ConvTranspose", ["x", "w", "b"], ["d"], strides=[2, 2, 2], pads=[0, 1, 1] * 2,
                                   output_padding=[0, 1, 1]),
             onnx.helper.make_node("Relu", ["d"], ["y"])]
    for program in verified_programs(tmp_path, "decoder", nodes, weights, (1, 3, 3, 5, 5), (1, 4, 6, 10, 10)):
        assert sum(i.opcode == "mvm" for i in program.instructions) == 8


def test_volume_network_runs_on_crossbars(tmp_path: Path) -> None:
    """Conv3d → MaxPool3d → Conv3d (grouped, strided) → GlobalAveragePool, float and integer, on the machine:
    every convolution is one crossbar layer."""
    rng = np.random.default_rng(0)
    weights = {"w1": rng.standard_normal((4, 2, 3, 3, 3)).astype(np.float32) * 0.3,
               "b1": rng.standard_normal(4).astype(np.float32) * 0.1,
               "w2": rng.standard_normal((4, 2, 2, 3, 3)).astype(np.float32) * 0.3}
    nodes = [onnx.helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 6),
             onnx.helper.make_node("Relu", ["c1"], ["r1"]),
             onnx.helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2, 2], strides=[1, 2, 2]),
             onnx.helper.make_node("Conv", ["p1", "w2"], ["c2"], group=2, strides=[1, 2, 1], pads=[0, 1, 1] * 2),
             onnx.helper.make_node("GlobalAveragePool", ["c2"], ["y"])]
    for program in verified_programs(tmp_path, "volume", nodes, weights, (1, 2, 4, 8, 8), (1, 4, 1, 1, 1)):
        assert sum(i.opcode == "mvm" for i in program.instructions) == 2
