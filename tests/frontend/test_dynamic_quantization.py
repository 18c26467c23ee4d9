"""onnxruntime's dynamically quantized models (`quantize_dynamic`: DynamicQuantizeLinear → ConvInteger /
MatMulInteger with a run-time zero point → Cast → Mul by the scales): DynamicQuantizeLinear equals onnxruntime's
bit for bit (data, scale and zero point, ties and one-signed ranges included), and the zoo's models quantized this
way compile, map their integer products onto crossbars reading x − zero point (9 signed bits) and verify on the
machine, every quantized boundary equal to onnxruntime's."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from rcc.ir.errors import RccError
from rcc.runtime.machine import Machine
from tests.frontend.test_index_ops import PROPERTY, SEEDS, onnxruntime_run

quantization = pytest.importorskip("onnxruntime.quantization")


def dynamic_quantize_model(shape: tuple[int, ...]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zero_point"])], "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, shape),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("zero_point", TensorProto.UINT8, [])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def sample(seed: int, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(10.0 ** rng.uniform(-3, 3))
    if kind == "positive":
        return np.abs(x)
    if kind == "negative":
        return -np.abs(x)
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "ties":   # values half a step from the grid of a round scale: rint's ties
        return (rng.integers(-100, 100, shape) + 0.5).astype(np.float32) * np.float32(0.25)
    return x


@PROPERTY
@given(seed=SEEDS, kind=st.sampled_from(["normal", "positive", "negative", "zeros", "ties"]),
       shape=st.sampled_from([(1,), (3, 5), (2, 3, 4, 5)]))
def test_dynamic_quantize_linear_is_onnxruntimes_bit_for_bit(seed: int, kind: str, shape: tuple[int, ...]) -> None:
    model, x = dynamic_quantize_model(shape), sample(seed, kind, shape)
    expected = onnxruntime_run(model, {"x": x})
    actual = interpreter.run(lower_model(model, "dql"), {"x": x})
    for name, reference in expected.items():
        assert actual[name].dtype == reference.dtype and actual[name].shape == reference.shape, name
        np.testing.assert_array_equal(actual[name], reference, err_msg=name)


@pytest.mark.parametrize("model", ["mlp", "lenet5", "transformer_encoder_block"])
def test_dynamically_quantized_zoo_models_verify_on_the_machine(model: str, tmp_path) -> None:
    path = tmp_path / f"{model}_dynamic.onnx"
    quantization.quantize_dynamic(f"models/{model}.onnx", str(path), weight_type=quantization.QuantType.QInt8)
    compiled = compile_model(path)
    mvms = [i for i in compiled.program.instructions if i.opcode == "mvm"]
    assert mvms and all(i.attrs["input_bits"] == 9 and i.attrs["input_signed"] for i in mvms)
    result = verify_compiled(path, compiled)
    assert result.passed and result.extra["integer_reference_match"], result.outputs
    assert result.extra["boundaries_compared"] > 0 and result.extra["boundaries_bit_exact"], result.extra
    assert "every quantized boundary within one step of onnxruntime's: yes" in result.extra["tolerance"]


@pytest.mark.parametrize("values", [[1, np.nan, -2, 3], [1, -np.inf, 2, 3], [1, np.inf, 2], [np.nan, np.nan],
                                    [-np.inf, np.inf], [0.0, -0.0], [3.0e38, -3.0e38]])
def test_non_finite_and_extreme_values_quantize_as_onnxruntime(values) -> None:
    """MLAS's min/max skip NaN; a NaN zero point offset (−inf / inf) clamps to 255; max − min may overflow."""
    x = np.array(values, np.float32)
    model = dynamic_quantize_model(x.shape)
    expected = onnxruntime_run(model, {"x": x})
    with np.errstate(all="ignore"):
        actual = interpreter.run(lower_model(model, "dql"), {"x": x})
    for name, reference in expected.items():
        np.testing.assert_array_equal(actual[name], reference, err_msg=name)


def test_a_boundary_more_than_one_step_off_fails_the_dynamic_verdict() -> None:
    from rcc.compiler.driver import hold_to_one_step
    from rcc.compiler.verify import VerifyResult
    for step, passed in ((1, True), (2, False)):
        result = VerifyResult("machine", outputs={"y": {"passed": True}}, extra={"tolerance": "snr_db >= 26.2"})
        hold_to_one_step(result, {"max_step": step}, strict=True)
        assert result.outputs["y"]["passed"] is passed and ("yes" in result.extra["tolerance"]) is passed


def test_a_run_time_zero_point_of_another_dtype_is_one_line(tmp_path) -> None:
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "scale", "zero_point"]),
         helper.make_node("Cast", ["zero_point"], ["wrong"], to=TensorProto.INT8),
         helper.make_node("MatMulInteger", ["xq", "w", "wrong"], ["y"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 2])],
        [onnx.numpy_helper.from_array(np.ones((4, 2), np.int8), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(RccError, match="input zero point must be one u8"):
        lower_model(model, "bad")


def test_a_batch_of_samples_with_scalar_outputs_runs(tmp_path) -> None:
    """DynamicQuantizeLinear's scale and zero point are scalars: a batch gives one per sample (it raised, exit 3)."""
    path = tmp_path / "dql.onnx"
    onnx.save(dynamic_quantize_model((1, 4)), path)
    machine = Machine(compile_model(path).program)
    batch = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    outputs = machine.run({"x": batch}).outputs
    for index in range(3):
        single = machine.run({"x": batch[index:index + 1]}).outputs
        for name, values in single.items():
            np.testing.assert_array_equal(outputs[name][index] if values.ndim == 0 else
                                          outputs[name][index:index + 1], values, err_msg=name)


def test_a_batch_keeps_the_sample_axis_of_squeezed_outputs(tmp_path) -> None:
    """An output without the batch axis of 1 (squeezed to [16]) is stacked per sample, not flattened to [48]."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Squeeze", ["y", "axis"], ["s"])], "squeezed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [16])],
        [onnx.numpy_helper.from_array(np.array([0], np.int64), "axis")])
    path = tmp_path / "squeezed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    machine = Machine(compile_model(path).program)
    outputs = machine.run({"x": np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)}).outputs
    assert outputs["y"].shape == (3, 16) and outputs["s"].shape == (3, 16)
    np.testing.assert_array_equal(outputs["s"], outputs["y"])


def fused_model(op: str, per_column: bool, bias: bool, zero: bool, seed: int) -> onnx.ModelProto:
    """com.microsoft DynamicQuantizeMatMul (float A) or MatMulIntegerToFloat (uint8 A) with a constant int8 B."""
    rng = np.random.default_rng(seed)
    columns = 8 if per_column else 1
    constants = {"b": rng.integers(-127, 128, (16, 8)).astype(np.int8),
                 "b_scale": rng.uniform(0.01, 0.05, columns).astype(np.float32),
                 "b_zero": rng.integers(-3, 4, columns).astype(np.int8), "bias": rng.standard_normal(8).astype(np.float32),
                 "a_scale": np.array(0.02, np.float32), "a_zero": np.array(7, np.uint8)}
    if op == "DynamicQuantizeMatMul":
        inputs, a_type = ["a", "b", "b_scale", "b_zero" if zero else "", "bias" if bias else ""], TensorProto.FLOAT
    else:
        inputs = ["a", "b", "a_scale", "b_scale", "a_zero" if zero else "", "b_zero" if zero else "",
                  "bias" if bias else ""]
        a_type = TensorProto.UINT8
    while not inputs[-1]:
        inputs.pop()
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], domain="com.microsoft")], "fused",
        [helper.make_tensor_value_info("a", a_type, [3, 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])],
        [onnx.numpy_helper.from_array(array, name) for name, array in constants.items() if name in inputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("op", ["DynamicQuantizeMatMul", "MatMulIntegerToFloat"])
@pytest.mark.parametrize("per_column, bias, zero", [(False, False, False), (True, True, True), (False, True, True),
                                                    (True, False, False)])
def test_onnxruntimes_fused_dynamic_products_bit_for_bit(op, per_column, bias, zero, tmp_path) -> None:
    model = fused_model(op, per_column, bias, zero, seed=3)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 16)).astype(np.float32) if op == "DynamicQuantizeMatMul" else \
        rng.integers(0, 256, (3, 16)).astype(np.uint8)
    expected = onnxruntime_run(model, {"a": a})["y"]
    np.testing.assert_array_equal(interpreter.run(lower_model(model, "fused"), {"a": a})["y"], expected)
    path = tmp_path / "fused.onnx"
    onnx.save(model, path)
    compiled = compile_model(path)
    assert sum(i.opcode == "mvm" for i in compiled.program.instructions) == 1   # B on crossbars
    result = verify_compiled(path, compiled, inputs={"a": a})
    assert result.passed and result.extra["integer_reference_match"]
