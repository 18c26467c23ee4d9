"""Quantized ONNX built by hand (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, QuantizeLinear/
DequantizeLinear at opsets 10–21): compiled with the model's integers on crossbars, the machine's outputs
equal onnxruntime's bit for bit; malformed quantization parameters are one-line errors naming the node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.ir.errors import RccError, UnsupportedError
from rcc.runtime.machine import Machine

ONNX_TYPE = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
             np.dtype(np.uint16): TensorProto.UINT16, np.dtype(np.int16): TensorProto.INT16,
             np.dtype(np.int32): TensorProto.INT32, np.dtype(np.float32): TensorProto.FLOAT}


def save_model(tmp_path, nodes, inputs: dict[str, np.ndarray], initializers: dict[str, np.ndarray],
               outputs: dict[str, tuple[type, tuple]], opset: int = 13, name: str = "q.onnx") -> str:
    graph = helper.make_graph(
        nodes, "quantized",
        [helper.make_tensor_value_info(k, ONNX_TYPE[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, ONNX_TYPE[np.dtype(t)], shape) for o, (t, shape) in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def onnxruntime_run(path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def assert_machine_bit_exact(path: str, feeds: dict[str, np.ndarray]) -> None:
    compiled = compile_model(path)
    actual = Machine(compiled.program).run(feeds).outputs
    expected = onnxruntime_run(path, feeds)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype and np.array_equal(actual[name], value), name


def qdq_nodes(name: str, scale: str, zero: str) -> list[onnx.NodeProto]:
    """QuantizeLinear `name` → `{name}q`, DequantizeLinear → `{name}d`: a QDQ model's activation."""
    return [helper.make_node("QuantizeLinear", [name, scale, zero], [f"{name}q"]),
            helper.make_node("DequantizeLinear", [f"{name}q", scale, zero], [f"{name}d"])]


def integers(rng, dtype, shape) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("x_dtype, w_dtype, per_channel", [(np.uint8, np.int8, True), (np.int8, np.int8, False),
                                                           (np.uint8, np.uint8, True)])
def test_qlinear_conv_then_matmul_is_bit_exact(tmp_path, x_dtype, w_dtype, per_channel) -> None:
    rng = np.random.default_rng(0)
    channels = 6
    w_zero = np.full(channels, 3 if w_dtype == np.uint8 else 0, w_dtype)
    w_scale = rng.uniform(0.002, 0.01, channels).astype(np.float32)
    if not per_channel:
        w_zero, w_scale = w_zero[:1].reshape(()), w_scale[:1].reshape(())
    x_zero = np.array(120 if x_dtype == np.uint8 else -5, x_dtype)
    inits = {"xs": np.float32(0.03), "xz": x_zero, "w": integers(rng, w_dtype, (channels, 4, 3, 3)), "ws": w_scale,
             "wz": w_zero, "ys": np.float32(0.21), "yz": np.array(7, x_dtype),
             "b": rng.integers(-3000, 3000, channels).astype(np.int32),
             "m": integers(rng, np.int8, (5, 3)), "ms": np.float32(0.05), "mz": np.array(0, np.int8),
             "zs": np.float32(0.4), "zz": np.array(-2 if x_dtype == np.int8 else 9, x_dtype)}
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], name="conv",
                              pads=[1, 1, 1, 1], strides=[2, 1]),
             helper.make_node("QLinearMatMul", ["y", "ys", "yz", "m", "ms", "mz", "zs", "zz"], ["z"], name="mm")]
    path = save_model(tmp_path, nodes, {"x": integers(rng, x_dtype, (1, 4, 7, 5))}, inits,
                      {"y": (x_dtype, (1, channels, 4, 5)), "z": (x_dtype, (1, channels, 4, 3))})
    assert_machine_bit_exact(path, {"x": integers(rng, x_dtype, (1, 4, 7, 5))})


@pytest.mark.parametrize("a_shape, b_shape", [((3, 2, 5), (3, 5, 4)), ((2, 5), (3, 5, 4)), ((1, 2, 5), (3, 5, 4)),
                                            ((3, 2, 5), (1, 5, 4))])
def test_qlinear_matmul_with_a_3d_b_is_bit_exact(tmp_path, a_shape, b_shape) -> None:
    """A 3-D b: one product per batch (batches broadcast as MatMul's): the machine's uint8 outputs equal
    onnxruntime's bit for bit, with one b scale and with per-column scales and zero points for each batch
    ([B, 1, N], the form onnxruntime takes); [1, N] is an error, as in onnxruntime."""
    rng = np.random.default_rng(len(a_shape) + b_shape[0])
    inits = {"as": np.float32(0.02), "az": np.array(7, np.uint8), "b": integers(rng, np.int8, b_shape),
             "bs": np.float32(0.02), "bz": np.array(0, np.int8), "ys": np.float32(0.3), "yz": np.array(128, np.uint8)}
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], name="mm")
    feeds = {"a": integers(rng, np.uint8, a_shape)}
    out_shape = (max(a_shape[0] if len(a_shape) == 3 else 1, b_shape[0]), a_shape[-2], b_shape[-1])
    path = save_model(tmp_path, [node], feeds, inits, {"y": (np.uint8, out_shape)})
    assert_machine_bit_exact(path, feeds)
    assert len(set(onnxruntime_run(path, feeds)["y"].ravel())) > 10   # the outputs vary: the check can fail
    per_column = (b_shape[0], 1, b_shape[-1])
    inits.update(bs=rng.uniform(0.005, 0.04, per_column).astype(np.float32),
                 bz=rng.integers(-3, 4, per_column).astype(np.int8))
    path = save_model(tmp_path, [node], feeds, inits, {"y": (np.uint8, out_shape)}, name="per_column.onnx")
    assert_machine_bit_exact(path, feeds)
    inits.update(bz=np.array(2, np.int8))   # one zero point with per-column scales: onnxruntime broadcasts it
    path = save_model(tmp_path, [node], feeds, inits, {"y": (np.uint8, out_shape)}, name="one_zero.onnx")
    assert_machine_bit_exact(path, feeds)
    inits.update(bs=np.full((1, b_shape[-1]), 0.02, np.float32), bz=np.zeros((1, b_shape[-1]), np.int8))
    path = save_model(tmp_path, [node], feeds, inits, {"y": (np.uint8, out_shape)}, name="per_row.onnx")
    with pytest.raises(RccError, match=r"node 'mm' \(QLinearMatMul\): b scale \[1, 4\] and zero point \[1, 4\] of a "
                                       r"3-D b"):
        compile_model(path)


def test_conv_integer_and_matmul_integer_are_exact_int32(tmp_path) -> None:
    rng = np.random.default_rng(1)
    inits = {"w": integers(rng, np.uint8, (4, 2, 2, 2)), "xz": np.array(128, np.uint8),
             "wz": np.array(2, np.uint8), "b": integers(rng, np.int8, (3, 4)), "bz": np.array(-1, np.int8)}
    nodes = [helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], name="ci", group=2),
             helper.make_node("MatMulInteger", ["a", "b", "", "bz"], ["z"], name="mi")]
    feeds = {"x": integers(rng, np.uint8, (1, 4, 5, 5)), "a": integers(rng, np.int8, (2, 3, 3))}
    path = save_model(tmp_path, nodes, feeds, inits, {"y": (np.int32, (1, 4, 4, 4)), "z": (np.int32, (2, 3, 4))},
                      opset=10)
    assert_machine_bit_exact(path, feeds)


@pytest.mark.parametrize("opset", [10, 13, 19, 21])
def test_quantize_dequantize_round_trip_at_each_opset(tmp_path, opset) -> None:
    rng = np.random.default_rng(opset)
    per_axis = opset >= 13
    scale = rng.uniform(0.01, 0.1, 3).astype(np.float32) if per_axis else np.float32(0.05)
    zero = np.array([5, -7, 0], np.int8) if per_axis else np.array(-3, np.int8)
    axis = {"axis": 1} if per_axis else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q", **axis),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq", **axis)]
    feeds = {"x": (rng.standard_normal((2, 3, 4)) * 4).astype(np.float32)}
    path = save_model(tmp_path, nodes, feeds, {"s": scale, "z": zero}, {"q": (np.int8, (2, 3, 4)), "y": (np.float32, (2, 3, 4))},
                      opset=opset)
    assert_machine_bit_exact(path, feeds)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
@pytest.mark.parametrize("layout", ["tensor", "axis", "blocked"])
def test_16_bit_quantize_dequantize_is_bit_exact(tmp_path, dtype, layout) -> None:
    """int16/uint16 QuantizeLinear → DequantizeLinear (opset 21) per tensor, per axis and blocked, with values that
    saturate at both ends and ties (x an odd multiple of scale/2), bit for bit with onnxruntime on the machine."""
    rng = np.random.default_rng(21)
    shape = (2, 4, 6)
    info = np.iinfo(dtype)
    params = {"tensor": ((), {}), "axis": ((4,), {"axis": 1}), "blocked": ((2, 4, 3), {"axis": 2, "block_size": 2})}
    param_shape, attrs = params[layout]
    scale = rng.uniform(1e-4, 1e-3, param_shape).astype(np.float32)
    zero = rng.integers(info.min // 2, info.max // 2, param_shape).astype(dtype)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)]
    path = save_model(tmp_path, nodes, {"x": np.zeros(shape, np.float32)}, {"s": scale, "z": zero},
                      {"q": (dtype, shape), "y": (np.float32, shape)}, opset=21)
    x = (rng.standard_normal(shape) * 20).astype(np.float32)   # past ±32767·1e-3 at both ends
    odd_halves = 2 * rng.integers(-1000, 1000, x.size)[::5] + 1
    x.flat[::5] = (odd_halves * 0.5 * np.float32(scale.flat[0])).astype(np.float32)
    assert_machine_bit_exact(path, {"x": x})


def test_a_16_bit_qdq_conv_maps_its_codes_on_17_input_bits(tmp_path) -> None:
    """A uint16 activation with a mid-range zero point (x − zx spans 17 signed bits) into an int8 Conv: onnxruntime
    runs DequantizeLinear → float32 Conv → QuantizeLinear; rcc puts the exact integer product on crossbars with 17
    input bits, rescales once, and verify holds the first differing boundary to one step."""
    rng = np.random.default_rng(16)
    w = rng.integers(-127, 128, (3, 2, 3, 3)).astype(np.int8)
    inits = {"sx": np.float32(2e-4), "zx": np.array(32000, np.uint16), "w": w, "sw": np.float32(0.01),
             "zw": np.array(0, np.int8), "sy": np.float32(3e-3), "zy": np.array(30000, np.uint16)}
    nodes = [*qdq_nodes("x", "sx", "zx"), helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]), *qdq_nodes("c", "sy", "zy")]
    path = save_model(tmp_path, nodes, {"x": np.zeros((1, 2, 6, 6), np.float32)}, inits,
                      {"cd": (np.float32, (1, 3, 6, 6))}, opset=21)
    compiled = compile_model(path)
    assert {op.opname for op in compiled.graph.ops} >= {"nn.conv_integer", "nn.rescale_quantize"}
    mvm = next(i for i in compiled.program.instructions if i.opcode == "mvm")
    assert mvm.attrs["input_bits"] == 17 and mvm.attrs["input_signed"] and mvm.attrs["weight_bits"] == 8
    result = verify_compiled(path, compiled, samples=2)
    assert result.passed and result.extra["integer_reference_match"], result.extra
    assert result.extra["wide_boundaries"] == 2 and result.extra["first_step"] <= 1


def test_a_qdq_conv_verifies_bit_exact_with_its_boundaries(tmp_path) -> None:
    rng = np.random.default_rng(2)
    inits = {"s": np.float32(0.02), "z": np.array(128, np.uint8), "w": integers(rng, np.int8, (3, 2, 3, 3)),
             "ws": np.float32(0.01), "wz": np.array(0, np.int8), "ys": np.float32(0.05), "yz": np.array(3, np.uint8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    path = save_model(tmp_path, nodes, {"x": np.zeros((1, 2, 6, 6), np.float32)}, inits, {"out": (np.float32, (1, 3, 6, 6))})
    compiled = compile_model(path)
    assert {op.opname for op in compiled.graph.ops} >= {"nn.conv_integer", "nn.requantize"}
    assert any(i.opcode == "mvm" and i.attrs["weight_bits"] == 8 for i in compiled.program.instructions)
    result = verify_compiled(path, compiled, samples=2)
    assert result.passed and result.extra["bit_exact"] and result.extra["differing"] == 0
    assert result.extra["boundaries_compared"] == 2 and result.extra["boundaries_bit_exact"]


def _quantize_model(tmp_path, scale, zero, axis: int = 1, opset: int = 13, block_size: int | None = None) -> str:
    extra = {"block_size": block_size} if block_size is not None else {}
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="bad_q", axis=axis, **extra)
    return save_model(tmp_path, [node], {"x": np.zeros((1, 3, 4), np.float32)}, {"s": scale, "z": zero},
                      {"q": (zero.dtype, (1, 3, 4))}, opset=opset)


@pytest.mark.parametrize("scale, zero, axis, words", [
    (np.float32(0.0), np.array(0, np.uint8), 1, "scale must be positive"),
    (np.array([0.1, 0.2], np.float32), np.array([0, 0], np.uint8), 1, "axis 1"),
    (np.array([0.1, 0.2, 0.3], np.float32), np.array([0, 0, 0], np.uint8), 5, "axis 5 is out of range"),
    (np.array([0.1, 0.2, 0.3], np.float32), np.array([0, 0], np.uint8), 1, "differ in shape"),
])
def test_malformed_quantization_is_one_line_naming_the_node(tmp_path, capsys, scale, zero, axis, words) -> None:
    path = _quantize_model(tmp_path, scale, zero, axis)
    code = main([path, "-o", str(tmp_path / "out.rccp")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "bad_q" in err and words in err
    assert not (tmp_path / "out.rccp").exists()


def test_a_non_zero_int32_zero_point_is_refused(tmp_path) -> None:
    node = helper.make_node("DequantizeLinear", ["b", "s", "z"], ["y"], name="bias_dq")
    path = save_model(tmp_path, [node], {"b": np.zeros(4, np.int32)},
                      {"s": np.float32(0.1), "z": np.array(3, np.int32)}, {"y": (np.float32, (4,))})
    with pytest.raises(RccError, match="bias_dq.*zero point of an int32 tensor must be 0"):
        compile_model(path)


def test_int8_qdq_mul_and_add_are_bit_exact_as_onnxruntime_runs_them(tmp_path) -> None:
    """x·y with int8 activations: onnxruntime's int8 → uint8 rewrite converts both and the result, and runs
    QLinearMul on uint8; (x·y) + c with an int8 constant c: the constant stays int8, so the add stays float."""
    rng = np.random.default_rng(5)
    inits = {"sx": np.float32(0.037), "zx": np.array(-3, np.int8), "sy": np.float32(0.051), "zy": np.array(9, np.int8),
             "sm": np.float32(0.011), "zm": np.array(-7, np.int8), "c": np.array([40, -90, 7, 127], np.int8),
             "sc": np.float32(0.013), "zc": np.array(2, np.int8), "so": np.float32(0.017), "zo": np.array(1, np.int8)}
    nodes = [*qdq_nodes("x", "sx", "zx"), *qdq_nodes("y", "sy", "zy"), helper.make_node("Mul", ["xd", "yd"], ["m"]),
             *qdq_nodes("m", "sm", "zm"), helper.make_node("DequantizeLinear", ["c", "sc", "zc"], ["cd"]),
             helper.make_node("Add", ["md", "cd"], ["a"]), *qdq_nodes("a", "so", "zo")]
    shape = (2, 3, 4)
    feeds = {"x": (rng.standard_normal(shape) * 3).astype(np.float32),
             "y": (rng.standard_normal(shape) * 3).astype(np.float32)}
    path = save_model(tmp_path, nodes, feeds, inits, {"ad": (np.float32, shape)})
    compiled = compile_model(path)
    mul = next(op for op in compiled.graph.ops if op.opname == "nn.qlinear_mul")
    assert mul.attrs["as_uint8"] and any(op.opname == "nn.add" for op in compiled.graph.ops)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        assert_machine_bit_exact(path, {name: (rng.standard_normal(shape) * 3).astype(np.float32) for name in feeds})
