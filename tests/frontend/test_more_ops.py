"""The activation, normalisation, padding and sequence ops through the whole tool, against onnxruntime.

Each small ONNX model is imported by the frontend, printed and parsed back, run by the interpreter,
exported back to ONNX and run by onnxruntime, and compared with onnxruntime on the original model; models with a convolution are
also compiled and run on the machine, where the activation after the crossbar layer is a vector-unit
instruction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.onnx_export import export_onnx
from rcc.compiler.frontend import import_onnx, lower_model
from rcc.ir import interpreter
from rcc.ir.core import modules_equal
from rcc.ir.parser import parse_module
from rcc.ir.printer import print_module
from rcc.ir.errors import RccError, UnsupportedError
from rcc.ir.inputs import random_inputs
from tests.backends.test_onnx_export import assert_outputs_close, run_export
from tests.frontend.through_cli import compile_verified

FLOAT = TensorProto.FLOAT


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple], outputs: list[str], opset: int = 17,
           initializers: dict[str, np.ndarray] | None = None, output_shape: tuple | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info(n, FLOAT, s) for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, FLOAT, output_shape) for n in outputs],
                              [numpy_helper.from_array(a, n) for n, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _check_against_onnxruntime(model: onnx.ModelProto) -> None:
    module = lower_model(model, "ops")
    text = print_module(module)
    reparsed = parse_module(text, {c.name: c.data for c in module.constants})
    assert modules_equal(reparsed, module) and print_module(reparsed) == text
    inputs = random_inputs(module, seed=1)
    expected = run_export(model, inputs)
    assert_outputs_close(interpreter.run(module, inputs), expected, "interpreter")
    assert_outputs_close(run_export(export_onnx(module), inputs), expected, "export")


@pytest.mark.parametrize(("opset", "node"), [
    (13, helper.make_node("Clip", ["x", "low"], ["y"])),             # max absent
    (13, helper.make_node("Clip", ["x", "", "high"], ["y"])),        # min absent
    (6, helper.make_node("Clip", ["x"], ["y"], min=-0.0)),           # attributes, max absent
    (13, helper.make_node("Relu", ["x"], ["y"]))], ids=["max-absent", "min-absent", "opset6", "relu"])
def test_clip_and_relu_bit_for_bit_on_special_values(opset: int, node: onnx.NodeProto) -> None:
    """An absent Clip bound is the type's finite limit, as onnxruntime has it (±inf clamped to ±3.4e38); −0,
    NaN and the bounds themselves come through bit for bit."""
    x = np.array([-0.0, 0.0, np.nan, np.inf, -np.inf, -1.0, 7.0, 3.4e38], np.float32)
    bounds = {"low": np.array(-0.0, np.float32), "high": np.array(6.0, np.float32)}
    model = _model([node], {"x": x.shape}, ["y"], opset, {name: bounds[name] for name in node.input if name in bounds})
    [actual] = interpreter.run(lower_model(model, "clip"), {"x": x}).values()
    [expected] = run_export(model, {"x": x}).values()
    assert np.array_equal(actual, expected, equal_nan=True) and np.array_equal(np.signbit(actual), np.signbit(expected))


ACTIVATIONS = [("Elu", {"alpha": 0.7}), ("Selu", {}), ("Celu", {"alpha": 1.5}), ("Softplus", {}), ("Softsign", {}),
               ("Shrink", {"bias": 0.25, "lambd": 0.5}), ("Sign", {}), ("ThresholdedRelu", {"alpha": 0.3}),
               ("Neg", {}), ("Abs", {}), ("Exp", {})]


@pytest.mark.parametrize(("op_type", "attrs"), ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation(op_type: str, attrs: dict) -> None:
    _check_against_onnxruntime(_model([helper.make_node(op_type, ["x"], ["y"], **attrs)], {"x": (2, 3, 4)}, ["y"]))


def test_math_chain() -> None:
    nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Sqrt", ["a"], ["s"]),
             helper.make_node("Pow", ["s", "e"], ["p"]), helper.make_node("Min", ["p", "x", "z"], ["lo"]),
             helper.make_node("Max", ["p", "z"], ["hi"]), helper.make_node("Max", ["x"], ["only"])]
    model = _model(nodes, {"x": (2, 3), "z": (3,)}, ["lo", "hi", "only"],
                   initializers={"e": np.array([1.5, 2.0, 0.5], np.float32)})
    _check_against_onnxruntime(model)


def test_instance_and_group_normalization() -> None:
    rng = np.random.default_rng(0)
    weights = {name: rng.standard_normal(6).astype(np.float32) for name in ("s", "b", "gs", "gb")}
    nodes = [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["i"], epsilon=1e-3),
             helper.make_node("GroupNormalization", ["i", "gs", "gb"], ["y"], num_groups=3)]
    _check_against_onnxruntime(_model(nodes, {"x": (2, 6, 4, 5)}, ["y"], opset=21, initializers=weights))


def test_group_normalization_18_repeats_per_group_scale() -> None:
    rng = np.random.default_rng(1)
    weights = {"gs": rng.standard_normal(2).astype(np.float32), "gb": rng.standard_normal(2).astype(np.float32)}
    node = helper.make_node("GroupNormalization", ["x", "gs", "gb"], ["y"], num_groups=2, epsilon=1e-4)
    _check_against_onnxruntime(_model([node], {"x": (1, 6, 3, 3)}, ["y"], opset=18, initializers=weights))


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap", "constant"])
def test_pad_modes(mode: str) -> None:
    pads = np.array([0, 0, 2, -1, 0, 0, 1, 3], np.int64)
    node = helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)
    _check_against_onnxruntime(_model([node], {"x": (1, 2, 4, 5)}, ["y"], opset=19, initializers={"pads": pads}))


def test_reflect_pad_wider_than_the_axis_names_the_node() -> None:
    node = helper.make_node("Pad", ["x", "pads"], ["y"], name="mirror", mode="reflect")
    model = _model([node], {"x": (1, 3)}, ["y"], initializers={"pads": np.array([0, 3, 0, 0], np.int64)})
    with pytest.raises(RccError, match=r"node 'mirror' \(Pad\).*reflect padding"):
        lower_model(model, "ops")


def test_sequences_of_compile_time_length() -> None:
    """Split into a sequence, insert, erase, pick and concatenate back, stacking on a new axis."""
    nodes = [helper.make_node("SplitToSequence", ["x", "split"], ["seq"], axis=1),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("SequenceConstruct", ["r", "r"], ["pair"]),
             helper.make_node("SequenceInsert", ["seq", "z"], ["grown"]),
             helper.make_node("SequenceInsert", ["grown", "z", "front"], ["front_grown"]),
             helper.make_node("SequenceErase", ["front_grown", "last"], ["trimmed"]),
             helper.make_node("SequenceAt", ["trimmed", "first"], ["head"]),
             helper.make_node("ConcatFromSequence", ["trimmed"], ["joined"], axis=1),
             helper.make_node("ConcatFromSequence", ["pair"], ["stacked"], axis=-1, new_axis=1),
             helper.make_node("SplitToSequence", ["x"], ["columns"], axis=-1, keepdims=0),
             helper.make_node("ConcatFromSequence", ["columns"], ["rejoined"], axis=0, new_axis=1)]
    constants = {"split": np.array([1, 3], np.int64), "front": np.array(0, np.int64),
                 "last": np.array(-1, np.int64), "first": np.array(0, np.int64)}
    model = _model(nodes, {"x": (2, 4, 3), "z": (2, 2, 3)}, ["joined", "head", "stacked", "rejoined"],
                   initializers=constants)
    _check_against_onnxruntime(model)


def test_sequence_graph_output_becomes_one_output_per_element() -> None:
    node = helper.make_node("SplitToSequence", ["x"], ["parts"], axis=0)
    parts_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, None))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", FLOAT, (3, 2))],
                              [helper.make_value_info("parts", parts_type)])
    module = lower_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "seq")
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert [v.name for v in module.outputs] == ["parts.0", "parts.1", "parts.2"]
    outputs = interpreter.run(module, {"x": x})
    for index in range(3):
        np.testing.assert_array_equal(outputs[f"parts.{index}"], x[index:index + 1])


@pytest.mark.parametrize(("type_proto", "text"), [
    (helper.make_tensor_type_proto(TensorProto.STRING, [2]), "tensor(string)"),
    (helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.INT64, [2])),
     "sequence(tensor(int64))"),
    (helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(FLOAT, None)),
     "map(string, tensor(float))"),
    (helper.make_optional_type_proto(helper.make_tensor_type_proto(FLOAT, [1])), "optional(tensor(float))"),
])
def test_non_numeric_inputs_are_named_with_their_type(type_proto: onnx.TypeProto, text: str) -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["words"], ["y"])], "g",
                              [helper.make_value_info("words", type_proto)],
                              [helper.make_value_info("y", type_proto)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UnsupportedError) as caught:
        lower_model(model, "strings.onnx")
    assert str(caught.value).startswith(f"strings.onnx: input 'words' has type {text}; rcc takes tensors of f16")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("op_type", ["Elu", "Softplus", "Abs"])
def test_activation_after_a_crossbar_layer_runs_on_the_vector_unit(op_type: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    weights = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node(op_type, ["c"], ["y"])]
    path = tmp_path / f"conv_{op_type.lower()}.onnx"
    onnx.save(_model(nodes, {"x": (1, 3, 6, 6)}, ["y"], initializers=weights, output_shape=(1, 4, 6, 6)), path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        activation = [i for i in program.instructions if i.opcode == "vec" and i.dst == ["y"]]
        assert activation and activation[0].attrs["fn"] == import_onnx(path).ops[-1].opname


@pytest.mark.parametrize("which", ["min", "max", "both"])
def test_clip_with_bounds_computed_at_run_time_matches_onnxruntime(which: str) -> None:
    """openWakeWord's mel spectrogram floors its dB values at their maximum − 80: Clip(x, ReduceMax(x) − 80)."""
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32) * 10
    nodes = [helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
             helper.make_node("Sub", ["top", "range"], ["floor"]),
             helper.make_node("Add", ["top", "range"], ["ceiling"]),
             helper.make_node("Clip", ["x", "floor" if which != "max" else "", "ceiling" if which != "min" else "lid"],
                              ["y"])]
    graph = helper.make_graph(nodes, "clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
                              [numpy_helper.from_array(np.array(8, np.float32), "range"),
                               numpy_helper.from_array(np.array(3, np.float32), "lid")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    actual = interpreter.run(lower_model(model, "clip"), {"x": x})["y"]
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("momentum", [0.9, 0.3])
def test_training_mode_batch_norm_uses_the_batch_statistics(momentum: float, tmp_path: Path) -> None:
    """A model exported in training mode: Conv → BatchNormalization(training_mode=1) → Relu normalises with the
    batch's own mean and population variance (not the given statistics, which only enter the running-statistics
    outputs); the interpreter, the ONNX export and the machine (float and integer) against onnxruntime, and the BN is
    not folded into the conv."""
    rng = np.random.default_rng(4)
    weights = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
               "s": rng.uniform(0.5, 2, 4).astype(np.float32), "bias": rng.standard_normal(4).astype(np.float32),
               "mean": rng.standard_normal(4).astype(np.float32),
               "var": rng.uniform(0.5, 2, 4).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bias", "mean", "var"],
                              ["n", "running_mean", "running_var"], training_mode=1, momentum=momentum, epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"])]
    graph = helper.make_graph(nodes, "bn_training", [helper.make_tensor_value_info("x", FLOAT, (2, 3, 6, 6))],
                              [helper.make_tensor_value_info("y", FLOAT, (2, 4, 6, 6)),
                               helper.make_tensor_value_info("running_mean", FLOAT, (4,)),
                               helper.make_tensor_value_info("running_var", FLOAT, (4,))],
                              [numpy_helper.from_array(a, n) for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)
    _check_against_onnxruntime(model)
    path = tmp_path / "bn_training.onnx"
    onnx.save(model, path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert any(i.opcode == "vec" and i.attrs["fn"] == "nn.batch_norm" for i in program.instructions)
