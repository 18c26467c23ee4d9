"""onnxruntime's com.microsoft quantized ops as nodes of a model (QLinearAdd, QLinearMul,
QLinearGlobalAveragePool, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearConcat): compiled and run
on the machine, bit for bit equal to onnxruntime's CPU kernels; the kernels' formulas checked over every
pair of codes (ties included); ops rcc does not reproduce are refused in one line naming them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import compile_model
from rcc.ir.errors import UnsupportedError
from rcc.ir.ops.nn_quant import qlinear_add
from rcc.ir.ops.nn_quant_tables import qlinear_softmax
from rcc.runtime.machine import Machine

ONNX_TYPE = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}
SHAPE = (1, 4, 5, 6)


def ms_model(node: onnx.NodeProto, inputs: dict[str, np.ndarray], initializers: dict[str, np.ndarray],
             out_shape: tuple[int, ...], dtype: np.dtype) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node], "ms", [helper.make_tensor_value_info(k, ONNX_TYPE[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", ONNX_TYPE[np.dtype(dtype)], out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def onnxruntime_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def params(rng: np.random.Generator, dtype: type) -> dict[str, np.ndarray]:
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    out = {}
    for name in ("a", "b", "y"):
        out[f"s{name}"] = np.array(np.float32(rng.uniform(0.005, 0.2)))
        out[f"z{name}"] = np.array(dtype(rng.integers(low, high + 1)))
    return out


CASES = {  # op → (inputs, attributes, output shape)
    "QLinearAdd": (["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], {}, SHAPE),
    "QLinearMul": (["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], {}, SHAPE),
    "QLinearGlobalAveragePool": (["a", "sa", "za", "sy", "zy"], {}, SHAPE[:2] + (1, 1)),
    "QLinearSigmoid": (["a", "sa", "za", "sy", "zy"], {}, SHAPE),
    "QLinearLeakyRelu": (["a", "sa", "za", "sy", "zy"], {"alpha": 0.2}, SHAPE),
    "QLinearSoftmax": (["a", "sa", "za", "sy", "zy"], {"axis": 1, "opset": 13}, SHAPE),
    "QLinearConcat": (["sy", "zy", "a", "sa", "za", "b", "sb", "zb", "a", "sy", "zy"], {"axis": 1},
                      (1, 12, 5, 6)),
}


@pytest.mark.parametrize("dtype", [np.uint8, np.int8], ids=["u8", "i8"])
@pytest.mark.parametrize("op_type", CASES)
def test_com_microsoft_op_runs_bit_exact_on_the_machine(tmp_path, op_type, dtype) -> None:
    inputs, attrs, out_shape = CASES[op_type]
    rng = np.random.default_rng(sum(map(ord, op_type)))
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    for trial in range(2):
        feeds = {name: rng.integers(low, high + 1, SHAPE).astype(dtype) for name in ("a", "b")}
        feeds = {name: value for name, value in feeds.items() if name in inputs}
        node = helper.make_node(op_type, inputs, ["y"], domain="com.microsoft", **attrs)
        model = ms_model(node, feeds, params(rng, dtype), out_shape, dtype)
        path = tmp_path / f"{op_type}{trial}.onnx"
        onnx.save(model, path)
        compiled = compile_model(path)
        actual = Machine(compiled.program).run(feeds).outputs["y"]
        expected = onnxruntime_run(model, feeds)
        assert actual.dtype == expected.dtype and np.array_equal(actual, expected), op_type


def _every_pair(dtype: type) -> tuple[np.ndarray, np.ndarray]:
    codes = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype)
    return np.repeat(codes, 256).reshape(1, 1, 256, 256), np.tile(codes, 256).reshape(1, 1, 256, 256)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8], ids=["u8", "i8"])
def test_qlinear_add_matches_onnxruntime_on_every_pair_of_codes(dtype) -> None:
    a, b = _every_pair(dtype)
    rng = np.random.default_rng(7)
    for _ in range(40):  # a tie the fused multiply-adds decide turns up about once in 15 parameter sets
        p = params(rng, dtype)
        node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"],
                                domain="com.microsoft")
        expected = onnxruntime_run(ms_model(node, {"a": a, "b": b}, p, a.shape, dtype), {"a": a, "b": b})
        actual = qlinear_add(a, b, a_scale=float(p["sa"]), a_zero=int(p["za"]), b_scale=float(p["sb"]),
                             b_zero=int(p["zb"]), y_scale=float(p["sy"]), y_zero=int(p["zy"]),
                             dtype="u8" if dtype == np.uint8 else "i8")
        assert np.array_equal(actual, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8], ids=["u8", "i8"])
@pytest.mark.parametrize("length", [2, 10, 1000])
def test_qlinear_softmax_matches_onnxruntime_including_a_certain_class(dtype, length) -> None:
    rng = np.random.default_rng(length)
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    x = rng.integers(low, high + 1, (8, length)).astype(dtype)
    x[0] = low
    x[0, 0] = high  # one class certain: the kernel's saturation at the top of the range
    for y_scale, y_zero in ((1 / 256, low), (1 / 255, low), (0.0037, 3)):
        p = {"sa": np.array(np.float32(rng.uniform(0.01, 0.3))), "za": np.array(dtype(0)),
             "sy": np.array(np.float32(y_scale)), "zy": np.array(dtype(y_zero))}
        node = helper.make_node("QLinearSoftmax", ["x", "sa", "za", "sy", "zy"], ["y"], domain="com.microsoft",
                                axis=-1, opset=13)
        expected = onnxruntime_run(ms_model(node, {"x": x}, p, x.shape, dtype), {"x": x})
        actual = qlinear_softmax(x, axis=1, x_scale=float(p["sa"]), y_scale=float(p["sy"]), y_zero=y_zero,
                                 dtype="u8" if dtype == np.uint8 else "i8")
        assert np.array_equal(actual, expected)


def test_a_com_microsoft_op_rcc_does_not_reproduce_is_named(tmp_path) -> None:
    x = np.zeros(SHAPE, np.uint8)
    node = helper.make_node("QLinearWhere", ["a", "sa", "za"], ["y"], domain="com.microsoft")
    path = tmp_path / "where.onnx"
    onnx.save(ms_model(node, {"a": x}, {"sa": np.array(np.float32(0.1)), "za": np.array(np.uint8(0))}, SHAPE,
                       np.uint8), path)
    with pytest.raises(UnsupportedError, match=r"unsupported op com\.microsoft\.QLinearWhere"):
        compile_model(path)
