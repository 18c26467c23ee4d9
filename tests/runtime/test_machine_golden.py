"""Every zoo model and every light model compiles with the default target and verifies on the machine
model against onnxruntime: float mode within rel L2 1e-5, integer mode with the integer accumulators
equal to the exact reference and an SNR held to a stated bound per model.

Bounds (8-bit weights and inputs, lossless ADC): 30 dB on the small zoo, as the issue asks; 28 dB on
the light models, whose random weights (see tests/frontend/test_golden.py) run 20–120 layers deep
(measured 31–62 dB when these bounds were set).
"""

from __future__ import annotations

import onnx
import pytest

from rcc.compiler.driver import compile_model, verify_compiled
from tests.conftest import ZOO, light_params
from tests.frontend.test_golden import with_classifier_inputs_exposed, with_random_weights

ZOO_SNR_DB = 30.0
LIGHT_SNR_DB = 28.0
FLOAT_REL_L2 = 1e-5
FLOAT_LIGHT = {"light_squeezenet", "light_shufflenet", "light_inception_v1"}


def assert_verifies(path, precision: str, snr_bound: float) -> None:
    compiled = compile_model(path, precision=precision)
    result = verify_compiled(path, compiled, seed=2)
    assert result.passed, result.to_json()
    for name, metrics in result.outputs.items():
        if precision == "float":
            assert metrics["rel_l2"] <= FLOAT_REL_L2, (name, metrics)
        elif metrics["max_abs_err"] > 0:
            assert metrics["snr_db"] >= snr_bound, (name, metrics)
    if precision == "int":
        assert result.extra["integer_reference_match"] is True


@pytest.mark.parametrize("precision", ["int", "float"])
@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_zoo_model_verifies_on_the_machine(path, precision) -> None:
    assert_verifies(path, precision, ZOO_SNR_DB)


def logits_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its Softmax outputs dropped: with random weights the logits span hundreds, so the
    probabilities are one-hot and any rounding flips them; the exposed logits carry the comparison."""
    softmax_outputs = {n.output[0] for n in model.graph.node if n.op_type == "Softmax"}
    kept = [o for o in model.graph.output if o.name not in softmax_outputs]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


@pytest.mark.parametrize("path", light_params())
def test_light_model_verifies_on_the_machine(path, tmp_path) -> None:
    model = logits_only(with_classifier_inputs_exposed(with_random_weights(onnx.load(path))))
    randomised = tmp_path / f"{path.stem}.onnx"
    onnx.save(model, randomised)
    assert_verifies(randomised, "int", LIGHT_SNR_DB)
    if path.stem in FLOAT_LIGHT:
        assert_verifies(randomised, "float", LIGHT_SNR_DB)
