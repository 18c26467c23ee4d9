"""`--verify --localize`: the per-tensor table against onnxruntime, the first tensor outside tolerance,
and its layer's error split by source (weight quantisation, activation rounding and clipping, ADC
saturation with the arrays and columns that saturated)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.device import Device
from rcc.backends.faults import RandomFaults
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model
from rcc.compiler.localize import localize
from tests.cli.test_cli import LENET, run_cli

MLP = Path(__file__).resolve().parents[2] / "models" / "mlp.onnx"


def test_a_4_bit_adc_is_localized_to_the_first_layer_and_its_saturated_columns() -> None:
    result = localize(MLP, compile_model(MLP, Target(adc_bits=4)))
    assert result.first == "fc1" and result.tensors[0]["tensor"] == "fc1" and not result.tensors[0]["passed"]
    attribution = result.attribution
    sources = attribution["sources"]
    assert attribution["layer"] == "fc1.matmul" and sources["device_noise"] is None
    assert sources["adc_saturation"]["rel_l2"] > 0.9 * attribution["rel_l2"]
    assert sources["adc_saturation"]["rel_l2_without"] < 0.1 * attribution["rel_l2"]
    assert sources["weight_quantization"]["rel_l2"] > 0 and sources["activation_clipping"]["rel_l2"] == 0
    saturated = attribution["saturated_arrays"]
    assert saturated and all(array["columns"] for array in saturated)


def test_a_layer_fed_through_a_reshape_is_attributed(tmp_path) -> None:
    """A MatMul of a 3-D activation: the program reshapes the quantised input to rows between `quantize` and
    `mvm` (attribution took the reshape for the quantize and crashed, exit 3, on MobileViT and Swin)."""
    rng = np.random.default_rng(1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "tokens",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 5, 16))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 5, 8))],
        [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")])
    path = tmp_path / "tokens.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    compiled = compile_model(path, Target(adc_bits=3))
    assert any(i.opcode == "vec" and i.attrs["fn"] == "nn.reshape" for i in compiled.program.instructions)
    attribution = localize(path, compiled).attribution
    assert attribution is not None and attribution["sources"]["adc_saturation"]["rel_l2"] > 0


def test_a_lossless_adc_localizes_nothing() -> None:
    result = localize(LENET, compile_model(LENET))
    assert result.first is None and result.attribution is None
    assert [t["tensor"] for t in result.tensors][:3] == ["conv1", "relu1", "pool1"]
    assert all(t["passed"] for t in result.tensors)


def test_a_narrow_calibration_is_blamed_on_activation_clipping() -> None:
    rng = np.random.default_rng(0)
    narrow = {"input": (0.05 * rng.standard_normal((4, 1, 1, 28, 28))).astype(np.float32)}
    result = localize(LENET, compile_model(LENET, calibration=narrow))
    attribution = result.attribution
    assert result.first == "conv1" and attribution["layer"] == "conv1" and attribution["clipped_inputs"] > 0
    assert attribution["sources"]["activation_clipping"]["rel_l2"] > 0.5 * attribution["rel_l2"]
    assert attribution["saturated_arrays"] == []


def test_cli_prints_the_first_mismatch_and_reports_it(tmp_path, capsys) -> None:
    code, out, _ = run_cli(capsys, MLP, "--verify", "--localize", "--adc-bits", "4", "-o", tmp_path / "m.rccp",
                           "--report", tmp_path / "r.json", "-q")
    localization = json.loads((tmp_path / "r.json").read_text())["verify"]["localization"]
    assert code == 1 and localization["first"] == "fc1"
    assert "first tensor outside" in out and "fc1" in out and "ADC saturated on array" in out


def test_localize_without_verify_exits_2(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, LENET, "--localize", "-o", tmp_path / "l.rccp")
    assert code == 2 and "--localize needs --verify" in err and not (tmp_path / "l.rccp").exists()


def test_stacked_input_samples_localize_on_the_first(tmp_path) -> None:
    """`--inputs` with a leading samples axis, as `--verify` takes it: localize compares on the first set (it was
    one line refusing the stacked shape)."""
    rng = np.random.default_rng(3)
    samples = rng.standard_normal((3, 4, 64)).astype(np.float32)
    compiled = compile_model(MLP, Target(adc_bits=4))
    stacked = localize(MLP, compiled, {"input": samples})
    first = localize(MLP, compiled, {"input": samples[0]})
    assert stacked.tensors == first.tensors and stacked.first == "fc1"


def test_localize_runs_the_machine_verify_ran_and_blames_its_faults() -> None:
    """With stuck cells `--verify` fails; localize ran the ideal machine and found every tensor within the bound."""
    compiled = compile_model("models/mlp.onnx")
    faults = RandomFaults(0.05, 0.01, seed=0)
    found = localize("models/mlp.onnx", compiled, device=Device(), faults=faults)
    assert found.first is not None and found.attribution is not None
    sources = found.attribution["sources"]
    assert sources["device_noise"]["rel_l2"] > 10 * max(sources[name]["rel_l2"] for name in
                                                        ("weight_quantization", "activation_rounding"))
    assert localize("models/mlp.onnx", compiled).first is None   # the ideal machine: nothing to blame


def test_a_quantized_models_own_layer_is_attributed_on_a_noisy_device(tmp_path) -> None:
    """No quantize of rcc's before a quantized model's integer product: its accumulators' error is split into ADC
    saturation and device noise (it raised, exit 3, once the device pushed a layer out of tolerance)."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    path = tmp_path / "mlp_dynamic.onnx"
    quantization.quantize_dynamic("models/mlp.onnx", str(path), weight_type=quantization.QuantType.QInt8)
    found = localize(path, compile_model(path), device=Device(), faults=RandomFaults(0.05, 0.01, seed=0))
    assert found.first is not None and found.attribution["against"] == "exact integer product"
    sources = found.attribution["sources"]
    assert sources["weight_quantization"] is None and sources["device_noise"]["rel_l2"] > 0.1
