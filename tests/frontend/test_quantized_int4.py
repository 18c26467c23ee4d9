"""4-bit quantized ONNX (int4/uint4 QuantizeLinear/DequantizeLinear at opset 21: per tensor, per axis and
blocked; 4-bit weights under a QDQ Conv and MatMul): the machine's outputs equal onnxruntime's bit for bit,
the 4-bit weights take half the slices of 8-bit ones, and a malformed 4-bit model is one line naming its node.

onnxruntime has no integer kernel for 4-bit weights: it runs such a Conv or MatMul in float32. With scales
that are powers of two every float32 step of that kernel is exact, so its result is the exact one rcc
computes, and the test can demand bit equality (`verify_quant.float_kernel_boundaries` covers the rest).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import lower_model
from rcc.ir.errors import RccError
from tests.frontend.test_quantized_import import assert_machine_bit_exact, qdq_nodes

FOUR_BIT = {"int4": (TensorProto.INT4, -8, 7), "uint4": (TensorProto.UINT4, 0, 15)}


def save(tmp_path, nodes, inputs: dict[str, tuple], outputs: dict[str, tuple], initializers: list,
         name: str = "q4.onnx") -> str:
    graph = helper.make_graph(nodes, "q4", [helper.make_tensor_value_info(k, t, s) for k, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info(k, t, s) for k, (t, s) in outputs.items()], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


@pytest.mark.parametrize("kind", ["per-tensor", "per-axis", "blocked"])
@pytest.mark.parametrize("dtype", FOUR_BIT)
def test_four_bit_quantize_dequantize_is_bit_exact(tmp_path, dtype, kind) -> None:
    onnx_type, low, high = FOUR_BIT[dtype]
    rng = np.random.default_rng(len(kind))
    shape, attrs = (2, 3, 4), {}
    if kind == "per-tensor":
        param_shape = []
    elif kind == "per-axis":
        param_shape, attrs = [3], {"axis": 1}
    else:
        param_shape, attrs = [2, 3, 2], {"axis": 2, "block_size": 2}
    scale = rng.uniform(0.1, 0.5, param_shape).astype(np.float32)
    zero = rng.integers(low, high + 1, param_shape)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q", **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq", **attrs)]
    path = save(tmp_path, nodes, {"x": (TensorProto.FLOAT, shape)}, {"y": (TensorProto.FLOAT, shape)},
                [numpy_helper.from_array(scale, "s"), helper.make_tensor("z", onnx_type, param_shape, zero.tolist())])
    compiled = compile_model(path)
    assert [op.attrs["bits"] for op in compiled.graph.ops] == [4, 4]
    assert_machine_bit_exact(path, {"x": (rng.standard_normal(shape) * 3).astype(np.float32)})  # saturates too


def _qdq_conv_matmul(tmp_path, dtype: str) -> str:
    """x (u8) → Conv with per-channel 4-bit weights → u8 → MatMul with per-tensor 4-bit weights → u8, every
    scale a power of two."""
    onnx_type, low, high = FOUR_BIT[dtype]
    rng = np.random.default_rng(4)
    w_zero = 0 if low < 0 else 8
    inits = [numpy_helper.from_array(np.float32(2.0 ** -4), "xs"), numpy_helper.from_array(np.uint8(128), "xz"),
             helper.make_tensor("w", onnx_type, [6, 3, 3, 3], rng.integers(low, high + 1, 162).tolist()),
             numpy_helper.from_array(np.float32(2.0) ** -rng.integers(2, 5, 6).astype(np.float32), "ws"),
             helper.make_tensor("wz", onnx_type, [6], [w_zero] * 6),
             numpy_helper.from_array(np.float32(0.5), "ys"), numpy_helper.from_array(np.uint8(100), "yz"),
             helper.make_tensor("m", onnx_type, [5, 4], rng.integers(low, high + 1, 20).tolist()),
             numpy_helper.from_array(np.float32(2.0 ** -3), "ms"), helper.make_tensor("mz", onnx_type, [], [w_zero]),
             numpy_helper.from_array(np.float32(0.25), "zs"), numpy_helper.from_array(np.uint8(120), "zz")]
    nodes = [*qdq_nodes("x", "xs", "xz"), helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]), *qdq_nodes("y", "ys", "yz"),
             helper.make_node("DequantizeLinear", ["m", "ms", "mz"], ["md"]),
             helper.make_node("MatMul", ["yd", "md"], ["z"]), *qdq_nodes("z", "zs", "zz")]
    return save(tmp_path, nodes, {"x": (TensorProto.FLOAT, [1, 3, 6, 5])}, {"zd": (TensorProto.FLOAT, [1, 6, 6, 4])},
                inits, name=f"conv_{dtype}.onnx")


@pytest.mark.parametrize("dtype", FOUR_BIT)
def test_four_bit_weights_map_as_they_are_with_half_the_slices(tmp_path, dtype) -> None:
    path = _qdq_conv_matmul(tmp_path, dtype)
    compiled = compile_model(path)
    assert {op.opname for op in compiled.graph.ops} >= {"nn.rescale_quantize"}  # onnxruntime's float kernel
    mvms = [i for i in compiled.program.instructions if i.opcode == "mvm"]
    assert mvms and all(i.attrs["weight_bits"] <= 5 for i in mvms)  # wq − zw in [−8, 7]: 4 magnitude bits
    cell_bits = compiled.target.cell_bits
    assert all(i.attrs["weight_slices"] == -(-(i.attrs["weight_bits"] - 1) // cell_bits) for i in mvms)
    assert all(i.attrs["weight_slices"] * 2 <= -(-7 // cell_bits) for i in mvms)  # int8 weights: 7 magnitude bits
    result = verify_compiled(path, compiled, samples=3)
    assert result.passed and result.extra["bit_exact"] and result.extra["differing"] == 0, result.extra
    assert result.extra["boundaries_compared"] == 3 and result.extra["boundaries_bit_exact"]
    assert set(result.extra["float_kernels"].values()) == {"Conv", "MatMul"}


def test_a_four_bit_zero_point_that_does_not_fit_is_one_line(tmp_path, capsys) -> None:
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q_int4", output_dtype=TensorProto.INT4)
    path = save(tmp_path, [node], {"x": (TensorProto.FLOAT, [4])}, {"q": (TensorProto.INT4, [4])},
                [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(20), "z")])
    code = main([path, "-o", str(tmp_path / "out.rccp")])
    err = capsys.readouterr().err
    # an int8 zero point for an int4 output is ill-typed: onnx's type check names the node before rcc's range check
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "q_int4" in err and "does not match y_zero_point type INT8" in err
    assert not (tmp_path / "out.rccp").exists()
    with pytest.raises(RccError) as caught:   # rcc's own check, for a model that reaches it unchecked
        lower_model(onnx.load(path), "q4.onnx")
    assert "q_int4" in str(caught.value) and "[20]" in str(caught.value) and "[-8, 7]" in str(caught.value)


def test_a_block_size_that_does_not_divide_the_axis_is_one_line(tmp_path, capsys) -> None:
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"], name="dq_blocked", axis=1, block_size=3),
             helper.make_node("MatMul", ["x", "wd"], ["y"])]
    path = save(tmp_path, nodes, {"x": (TensorProto.FLOAT, [1, 2])}, {"y": (TensorProto.FLOAT, [1, 4])},
                [helper.make_tensor("w", TensorProto.INT4, [2, 4], [1] * 8),
                 numpy_helper.from_array(np.ones((2, 2), np.float32), "s"),
                 helper.make_tensor("z", TensorProto.INT4, [2, 2], [0] * 4)])
    code = main([path, "-o", str(tmp_path / "out.rccp")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "dq_blocked" in err and "block_size 3 does not divide axis 1" in err
