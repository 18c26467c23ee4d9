"""Frontend tests of the logic, reduction and transformer ops: every opset form of the reductions, Mean,
Hardmax, LayerNormalization, Gelu, SiLU and Mish patterns, bool mask paths on the machine (float and
integer mode), one-line errors naming the node, and constant folding that falls back to onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from rcc.ir.errors import RccError, UnsupportedError
from tests.frontend.test_more_ops import _check_against_onnxruntime
from tests.frontend.through_cli import compile_verified

FLOAT = TensorProto.FLOAT


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple], outputs: list[str] | dict[str, tuple],
           opset: int = 17, initializers: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A model of `nodes`; tensors named "best" or "ids" are int64 and "keep_mask" bool, others float;
    output shapes when `outputs` is a dict."""
    shapes = outputs if isinstance(outputs, dict) else dict.fromkeys(outputs)
    types = {"best": TensorProto.INT64, "ids": TensorProto.INT64, "keep_mask": TensorProto.BOOL}
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info(n, types.get(n, FLOAT), s)
                                             for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, types.get(n, FLOAT), shape) for n, shape in shapes.items()],
                              [numpy_helper.from_array(a, n) for n, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("opset", [11, 13, 17, 18])
@pytest.mark.parametrize(("op_type", "axes", "keepdims"), [
    ("ReduceSum", [1], 1), ("ReduceMean", [-1, 1], 0), ("ReduceMax", None, 1), ("ReduceL2", [0, 2], 0),
    ("ReduceLogSumExp", [-2], 1), ("ReduceSumSquare", None, 0)])
def test_reductions_in_every_opset_form(op_type: str, axes: list | None, keepdims: int, opset: int) -> None:
    as_input = opset >= (13 if op_type == "ReduceSum" else 18)
    initializers = {"axes": np.array(axes, np.int64)} if as_input and axes is not None else {}
    inputs = ["x", "axes"] if initializers else ["x"]
    attrs = {"keepdims": keepdims} if as_input or axes is None else {"keepdims": keepdims, "axes": axes}
    node = helper.make_node(op_type, inputs, ["y"], **attrs)
    _check_against_onnxruntime(_model([node], {"x": (2, 3, 4)}, ["y"], opset, initializers))


def test_empty_axes_with_noop_is_an_identity() -> None:
    nodes = [helper.make_node("ReduceSum", ["x", "none"], ["y"], noop_with_empty_axes=1),
             helper.make_node("ReduceMax", ["x"], ["z"], noop_with_empty_axes=0)]
    model = _model(nodes, {"x": (2, 3)}, ["y", "z"], 18, {"none": np.zeros(0, np.int64)})
    assert [op.opname for op in lower_model(model, "ops").ops] == ["nn.identity", "nn.reduce_max"]
    _check_against_onnxruntime(model)


@pytest.mark.parametrize("opset", [8, 13])
def test_mean_is_variadic_and_broadcasts(opset: int) -> None:
    nodes = [helper.make_node("Mean", ["a", "b", "c"], ["m"]), helper.make_node("Mean", ["a"], ["one"])]
    _check_against_onnxruntime(_model(nodes, {"a": (2, 3), "b": (3,), "c": (1, 1)}, ["m", "one"], opset))


@pytest.mark.parametrize(("opset", "axis"), [(11, 1), (11, 0), (13, 0), (13, -2)])
def test_softmax_family_on_any_axis(opset: int, axis: int) -> None:
    nodes = [helper.make_node(op, ["x"], [op.lower()], axis=axis) for op in ("Softmax", "LogSoftmax", "Hardmax")]
    _check_against_onnxruntime(_model(nodes, {"x": (2, 3, 4)}, ["softmax", "logsoftmax", "hardmax"], opset))


def test_layer_norm_gelu_silu_and_mish_patterns() -> None:
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-3),
             helper.make_node("LayerNormalization", ["x", "gamma2"], ["ln2"], axis=1),
             helper.make_node("Gelu", ["ln"], ["gelu"]), helper.make_node("Gelu", ["ln"], ["gelu_tanh"], approximate="tanh"),
             helper.make_node("Sigmoid", ["x"], ["sig"]), helper.make_node("Mul", ["x", "sig"], ["silu"]),
             helper.make_node("Softplus", ["x"], ["sp"]), helper.make_node("Tanh", ["sp"], ["th"]),
             helper.make_node("Mul", ["x", "th"], ["mish_pattern"]), helper.make_node("Mish", ["x"], ["mish"]),
             helper.make_node("HardSwish", ["x"], ["hswish"]),
             helper.make_node("HardSigmoid", ["x"], ["hsig"], alpha=0.25, beta=0.4)]
    weights = {"gamma": rng.standard_normal(4).astype(np.float32), "beta": rng.standard_normal(4).astype(np.float32),
               "gamma2": rng.standard_normal((3, 4)).astype(np.float32)}
    outputs = ["gelu", "gelu_tanh", "ln2", "silu", "mish_pattern", "mish", "hswish", "hsig"]
    _check_against_onnxruntime(_model(nodes, {"x": (2, 3, 4)}, outputs, 20, weights))


def _mask_model() -> onnx.ModelProto:
    """Token ids (int64) and a bool mask input select x → Where(mask, x, −4) → MatMul, gated by bool logic
    on the mask and the product; ArgMax gives int64 indices."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Less", ["x", "threshold"], ["below"]),
             helper.make_node("Equal", ["ids", "pad_id"], ["padding"]),
             helper.make_node("Xor", ["below", "padding"], ["either"]),
             helper.make_node("And", ["either", "keep_mask"], ["mask"]),
             helper.make_node("Where", ["mask", "x", "fill"], ["masked"]),
             helper.make_node("MatMul", ["masked", "w"], ["h"]),
             helper.make_node("Greater", ["h", "zero"], ["positive"]),
             helper.make_node("Not", ["mask"], ["unmasked"]),
             helper.make_node("Cast", ["unmasked"], ["unmasked_f"], to=FLOAT),
             helper.make_node("ReduceMax", ["unmasked_f"], ["count"], axes=[1], keepdims=1),
             helper.make_node("Greater", ["count", "zero"], ["any"]),
             helper.make_node("Or", ["positive", "any"], ["keep"]),
             helper.make_node("Cast", ["keep"], ["gate"], to=FLOAT),
             helper.make_node("Mul", ["h", "gate"], ["y"]),
             helper.make_node("ArgMax", ["h"], ["best"], axis=1)]
    weights = {"threshold": np.array(0.3, np.float32), "fill": np.array(-4.0, np.float32), "pad_id": np.array(0),
               "zero": np.array(0.0, np.float32), "w": rng.standard_normal((8, 6)).astype(np.float32)}
    return _model(nodes, {"x": (4, 8), "ids": (4, 8), "keep_mask": (4, 1)}, {"y": (4, 6), "best": (4, 1)}, 17, weights)


def test_mask_path_exports_and_matches_onnxruntime() -> None:
    _check_against_onnxruntime(_mask_model())


@pytest.mark.parametrize("precision", ["float", "int"])
def test_bool_mask_path_runs_on_the_machine(precision: str, tmp_path: Path) -> None:
    path = tmp_path / "mask.onnx"
    onnx.save(_mask_model(), path)
    program = compile_verified(path, precision, tmp_path)
    vec_fns = {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}
    assert {"nn.less", "nn.equal", "nn.logical_and", "nn.where", "nn.cast", "nn.logical_or", "nn.argmax"} <= vec_fns
    dtypes = {spec["name"]: spec["dtype"] for spec in program.inputs}
    dtypes.update({name: str(array.dtype) for name, array in program.constants.items()})
    for instruction in program.instructions:
        dtypes.update(zip(instruction.dst, instruction.dtypes))
    quantized = [i for i in program.instructions if i.opcode in ("quantize", "dequantize")]
    assert any(i.opcode == "quantize" for i in quantized) == (precision == "int")
    # only the float activation feeding the crossbar is quantised, and only float results are dequantised
    assert all(dtypes[i.src[0]] == "f32" for i in quantized if i.opcode == "quantize")
    assert all(dtypes[name] == "f32" for i in quantized if i.opcode == "dequantize" for name in i.dst)


@pytest.mark.parametrize(("node", "opset", "message"), [
    (helper.make_node("Gelu", ["x"], ["y"], name="act", approximate="erf"), 20,
     "node 'act' (Gelu): attribute approximate='erf' is not 'none' or 'tanh'"),
    (helper.make_node("ReduceMean", ["x"], ["y"], name="pool", axes=[1]), 18,
     "node 'pool' (ReduceMean): attribute axes is not part of ReduceMean-18; axes are its input"),
    (helper.make_node("ReduceMean", ["x"], ["y"], name="pool", axes=[1, -1]), 17,
     "node 'pool' (ReduceMean): axes [1, -1] are out of range or repeated for rank 2"),
    (helper.make_node("ArgMax", ["x"], ["y"], name="pick", axis=2), 13,
     "node 'pick' (ArgMax): axis 2 is out of range for rank 2"),
    (helper.make_node("Cast", ["x"], ["y"], name="narrow", to=TensorProto.BFLOAT16), 13,
     "node 'narrow' (Cast): cast to BFLOAT16, an element type rcc does not carry"),
])
def test_bad_attributes_are_one_line_errors_naming_the_node(node: onnx.NodeProto, opset: int, message: str) -> None:
    with pytest.raises(RccError) as caught:
        lower_model(_model([node], {"x": (2, 2)}, ["y"], opset), "bad.onnx")
    assert str(caught.value) == f"bad.onnx: {message}"


def test_layer_norm_statistics_outputs_are_refused_when_used() -> None:
    node = helper.make_node("LayerNormalization", ["x", "g"], ["y", "mean"], name="ln")
    model = _model([node], {"x": (2, 4)}, ["y", "mean"], 17, {"g": np.ones(4, np.float32)})
    with pytest.raises(UnsupportedError, match=r"^bad.onnx: node 'ln' \(LayerNormalization\): LayerNormalization's "
                                               r"Mean and InvStdDev outputs$"):
        lower_model(model, "bad.onnx")


def test_folding_falls_back_to_onnxruntime_where_the_reference_evaluator_fails() -> None:
    """onnx 1.23's reference GatherElements breaks on an axis of 64 or more entries (as in BERT's position ids)."""
    table = np.arange(64, dtype=np.int64).reshape(1, 64) * 3
    index = np.arange(16, dtype=np.int64).reshape(1, 16)[:, ::-1].copy()
    nodes = [helper.make_node("GatherElements", ["table", "index"], ["ids"], axis=1),
             helper.make_node("Cast", ["ids"], ["ids_f"], to=FLOAT), helper.make_node("Add", ["x", "ids_f"], ["y"])]
    model = _model(nodes, {"x": (1, 16)}, ["y"], 17, {"table": table, "index": index})
    module = lower_model(model, "bert.onnx")
    x = np.zeros((1, 16), np.float32)
    np.testing.assert_array_equal(interpreter.run(module, {"x": x})["y"], (table[0, 15::-1] * 1.0)[None])


def test_folding_that_both_evaluators_refuse_names_the_node_and_both() -> None:
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["bad"], name="fold_me"),
             helper.make_node("Add", ["x", "bad"], ["y"])]
    model = _model(nodes, {"x": (2, 3)}, ["y"], 17, {"w": np.ones(6, np.float32), "shape": np.array([4, 2], np.int64)})
    with pytest.raises(RccError) as caught:
        lower_model(model, "broken.onnx")
    text = str(caught.value)
    assert text.startswith("broken.onnx: node 'fold_me' (Reshape): cannot evaluate on constant inputs: onnx's "
                           "reference evaluator: ") and "; onnxruntime: " in text and "\n" not in text


def test_transformer_layer_runs_on_the_machine(tmp_path: Path) -> None:
    """MatMul → LayerNorm → Gelu → MatMul with a residual, ReduceMean pooling and Softmax over axis 1."""
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["ln"], axis=-1),
             helper.make_node("Gelu", ["ln"], ["act"]), helper.make_node("MatMul", ["act", "w2"], ["o"]),
             helper.make_node("Add", ["o", "x"], ["res"]),
             helper.make_node("ReduceMean", ["res", "axes"], ["pooled"], keepdims=0),
             helper.make_node("Softmax", ["res"], ["y"], axis=1)]
    weights = {"w1": rng.standard_normal((8, 16)).astype(np.float32) / 3,
               "w2": rng.standard_normal((16, 8)).astype(np.float32) / 4,
               "gamma": rng.uniform(0.5, 1.5, 16).astype(np.float32), "beta": rng.standard_normal(16).astype(np.float32),
               "axes": np.array([1])}
    path = tmp_path / "layer.onnx"
    onnx.save(_model(nodes, {"x": (1, 5, 8)}, {"y": (1, 5, 8), "pooled": (1, 8)}, 20, weights), path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert {"nn.layer_norm", "nn.gelu", "nn.reduce_mean", "nn.softmax"} <= \
            {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}


@pytest.mark.parametrize("opset", [7, 8, 12, 13])
def test_variadic_sum_min_max_mean_in_every_opset(opset: int) -> None:
    """Before opset 8 the variadic ops take equal shapes; from 8 on they broadcast."""
    shapes = {"a": (2, 3), "b": (2, 3), "c": (2, 3)} if opset < 8 else {"a": (2, 3), "b": (3,), "c": (1, 1)}
    nodes = [helper.make_node(op, ["a", "b", "c"], [op.lower()]) for op in ("Sum", "Min", "Max", "Mean")]
    _check_against_onnxruntime(_model(nodes, shapes, ["sum", "min", "max", "mean"], opset))


def test_remaining_ops_export_and_match_onnxruntime() -> None:
    nodes = [helper.make_node("Erf", ["x"], ["erf"]), helper.make_node("Abs", ["x"], ["magnitude"]),
             helper.make_node("Log", ["magnitude"], ["log"]), helper.make_node("Reciprocal", ["x"], ["reciprocal"]),
             helper.make_node("LessOrEqual", ["x", "y"], ["le"]), helper.make_node("GreaterOrEqual", ["x", "y"], ["ge"]),
             helper.make_node("Or", ["le", "ge"], ["either"]), helper.make_node("CastLike", ["either", "x"], ["both"]),
             helper.make_node("ReduceMin", ["x"], ["min"], axes=[0]), helper.make_node("ReduceProd", ["x"], ["prod"]),
             helper.make_node("ReduceL1", ["x"], ["l1"], axes=[-1], keepdims=0),
             helper.make_node("ReduceLogSum", ["magnitude"], ["logsum"], axes=[1]),
             helper.make_node("ArgMin", ["x"], ["argmin"], axis=1, select_last_index=1),
             helper.make_node("Cast", ["argmin"], ["argmin_f"], to=FLOAT)]
    outputs = ["erf", "log", "reciprocal", "both", "min", "prod", "l1", "logsum", "argmin_f"]
    _check_against_onnxruntime(_model(nodes, {"x": (3, 4), "y": (4,)}, outputs, 15))
