"""Models below opset 7: converted before lowering, verified against onnxruntime through the conversion.

The oracle for the legacy semantics is independent of the converter: the same network written by hand
at opset 13 (bias and slope given their unit axes explicitly), run by onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from rcc.compiler.cli import main
from rcc.compiler.frontend import import_onnx
from rcc.compiler.frontend.loader import load_onnx
from rcc.compiler.frontend.opsets import conversion_note, conversion_summary, upgrade_old_opset
from rcc.ir import interpreter
from rcc.ir.errors import RccError
from rcc.runtime.machine import Machine
from tests.frontend.through_cli import compile_verified

CHANNELS, CLASSES = 4, 5


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    shapes = {"w": (CHANNELS, 3, 3, 3), "cb": (CHANNELS,), "s": (CHANNELS,), "b": (CHANNELS,), "m": (CHANNELS,),
              "slope": (CHANNELS,), "gw": (CLASSES, CHANNELS * 16), "gb": (CLASSES,), "scale": (1,)}
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    weights["v"] = rng.uniform(0.5, 1.5, CHANNELS).astype(np.float32)
    weights["slope"] = rng.uniform(0.05, 0.5, CHANNELS).astype(np.float32)
    return weights


def _network(legacy: bool) -> onnx.ModelProto:
    """Conv → Add(bias per channel) → BatchNormalization → PRelu(per channel) → AveragePool → Flatten → Gemm
    → Mul(scalar): at opset 6 with legacy broadcast and a 1-D slope, or at opset 13 written out explicitly."""
    weights = _weights()
    if not legacy:
        weights["cb"] = weights["cb"].reshape(CHANNELS, 1, 1)
        weights["slope"] = weights["slope"].reshape(CHANNELS, 1, 1)
    broadcast = {"broadcast": 1} if legacy else {}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "cb"], ["a"], name="bias", **broadcast, **({"axis": 1} if legacy else {})),
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["bn"], name="bn", epsilon=1e-5,
                         **({"is_test": 1} if legacy else {})),
        helper.make_node("PRelu", ["bn", "slope"], ["pr"], name="prelu"),
        helper.make_node("AveragePool", ["pr"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["g"], name="fc", transB=1, **broadcast),
        helper.make_node("Mul", ["g", "scale"], ["y"], name="scale", **broadcast),
    ]
    initializers = [numpy_helper.from_array(array, name) for name, array in weights.items()]
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])]
    if legacy:  # IR version 3 lists initializers among the graph inputs
        inputs += [helper.make_tensor_value_info(i.name, onnx.TensorProto.FLOAT, list(i.dims)) for i in initializers]
    graph = helper.make_graph(nodes, "legacy" if legacy else "explicit", inputs,
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, CLASSES])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6 if legacy else 13)],
                             ir_version=3 if legacy else 7)


@pytest.fixture(scope="module")
def legacy_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("opset6") / "legacy6.onnx"
    onnx.save(_network(legacy=True), path)
    return path


def _explicit_outputs(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(_network(legacy=False).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_onnxruntime_refuses_the_original(legacy_path: Path) -> None:
    with pytest.raises(Exception):
        ort.InferenceSession(str(legacy_path), providers=["CPUExecutionProvider"])


def test_conversion_keeps_the_legacy_meaning(legacy_path: Path) -> None:
    converted = load_onnx(legacy_path)
    assert conversion_summary(converted) == "converted from opset 6 to 7"
    assert conversion_note(legacy_path) == "converted from opset 6 to 7"
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], _explicit_outputs(x), rtol=1e-5, atol=1e-6)
    module = import_onnx(legacy_path)
    np.testing.assert_allclose(interpreter.run(module, {"x": x})["y"], _explicit_outputs(x), rtol=1e-4, atol=1e-5)


def test_models_from_opset_7_on_are_not_converted(tmp_path: Path) -> None:
    path = tmp_path / "explicit.onnx"
    onnx.save(_network(legacy=False), path)
    assert conversion_summary(load_onnx(path)) is None
    assert conversion_note(path) is None


@pytest.mark.parametrize("precision", ["float", "int"])
def test_opset6_model_compiles_verifies_and_runs_on_the_machine(legacy_path: Path, precision: str,
                                                               tmp_path: Path) -> None:
    program = compile_verified(legacy_path, precision, tmp_path)
    assert sum(i.opcode == "mvm" for i in program.instructions) == 2  # the convolution and the Gemm
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    machine_y = Machine(program).run({"x": x}).outputs["y"]
    expected = _explicit_outputs(x)
    if precision == "float":
        np.testing.assert_allclose(machine_y, expected, rtol=1e-4, atol=1e-4)
    else:  # 8-bit weights and inputs: the SNR bound `--verify` applies
        snr = 10 * np.log10(np.sum(expected ** 2) / np.sum((machine_y - expected) ** 2))
        assert snr > 6.02 * 8 - 22


def test_failed_conversion_is_one_line_naming_node_and_opsets() -> None:
    node = helper.make_node("Upsample", ["x"], ["y"], name="up", scales=[1.0, 1.0, 2.0, 2.0])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)], ir_version=3)
    with pytest.raises(RccError) as caught:
        upgrade_old_opset(model, "up.onnx")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("up.onnx: node 'up' (Upsample): cannot convert from opset 6 to 7: "), message


def test_the_summary_and_report_say_the_model_was_converted(legacy_path: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "r.json"
    assert main([str(legacy_path), "-o", str(tmp_path / "l.rccp"), "--report", str(report)]) == 0
    assert f"{legacy_path}: converted from opset 6 to 7" in capsys.readouterr().out.splitlines()
    assert json.loads(report.read_text())["converted"] == "converted from opset 6 to 7"
