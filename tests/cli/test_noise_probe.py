"""The noise probe of a failed integer verification (compiler/noise_gain.py): onnxruntime alone, its inputs
perturbed at one operand's rounding level, tells a model that amplifies noise from a miss of rcc's own."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.commands.compile import noise_probe_line
from rcc.compiler.driver import compile_model, noise_probe
from rcc.compiler.noise_gain import output_snrs
from rcc.compiler.verify import integer_snr_bound, operand_snr_db
from tests.cli.test_cli import LENET, run_cli

FEATURES, OUTPUTS = 64, 4


def weights() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((FEATURES, OUTPUTS)).astype(np.float32)


def inputs_near_the_null_space(samples: int = 3) -> np.ndarray:
    """Inputs whose product with `weights()` is tiny: almost orthogonal to its columns. x·W then amplifies
    any perturbation of x (white noise has a full-size component along the columns)."""
    w = weights().astype(np.float64)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((samples, FEATURES))
    x -= x @ w @ np.linalg.pinv(w)                 # the part along W's columns removed
    x += 1e-3 * rng.standard_normal((samples, OUTPUTS)) @ w.T
    return x.astype(np.float32).reshape(samples, 1, FEATURES)


def test_a_linear_gain_keeps_the_input_snr() -> None:
    feeds = [{"x": np.random.default_rng(i).standard_normal((16, 256)).astype(np.float32)} for i in range(3)]
    snr = output_snrs(lambda feed: {"y": 3 * feed["x"]}, feeds, 40.0)["y"]
    assert abs(snr - 40.0) < 0.3


def test_inputs_the_model_nearly_cancels_show_the_amplification() -> None:
    w = weights()
    feeds = [{"x": x} for x in inputs_near_the_null_space()]
    snr = output_snrs(lambda feed: {"y": feed["x"] @ w}, feeds, 40.0)["y"]
    assert snr < 10.0


def test_outputs_without_an_element_wise_figure_are_nan_and_unmoved_ones_inf() -> None:
    feeds = [{"x": np.linspace(-1, 1, 32, dtype=np.float32)}]
    snrs = output_snrs(lambda feed: {"positive": feed["x"] > 0, "picked": feed["x"][feed["x"] > 0.5],
                                     "index": np.argmax(feed["x"]), "constant": np.ones(3, np.float32),
                                     "y": feed["x"]}, feeds, 40.0,
                       names=["positive", "picked", "index", "constant", "absent"])
    assert set(snrs) == {"positive", "picked", "index", "constant", "absent"}
    assert math.isnan(snrs["positive"]) and math.isnan(snrs["index"]) and math.isnan(snrs["absent"])
    assert snrs["constant"] == math.inf
    assert math.isnan(snrs["picked"]) or snrs["picked"] > 20  # NaN when the noise moved an element across 0.5


def exp(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(x)


def test_an_output_the_noise_drives_to_infinity_is_minus_infinity() -> None:
    feeds = [{"x": np.full(64, 88.0, np.float32)}]      # exp(88) is finite in float32, exp(88.8) is not
    assert output_snrs(lambda feed: {"e": exp(feed["x"])}, feeds, 40.9)["e"] == -math.inf


def test_the_probe_says_what_it_found_in_one_line() -> None:
    compiled = compile_model(LENET)
    level = operand_snr_db(8, 8)
    no_float = noise_probe(compiled, lambda feed: {"y": np.ones(2, np.float32)}, [{"ids": np.arange(4)}], 26.2, ["y"])
    assert no_float["skipped"] == "no float input to perturb"
    assert noise_probe_line(no_float) == "noise probe: skipped, no float input to perturb"
    feeds = [{"x": np.full(64, 88.0, np.float32)}]
    diverged = noise_probe(compiled, lambda feed: {"e": exp(feed["x"]), "c": np.ones(2, np.float32)}, feeds,
                           26.2, ["e", "c"])
    assert diverged["output_snr_db"] == {"e": "diverged", "c": "not moved"} and diverged["input_snr_db"] == level
    assert "drives e to infinity" in noise_probe_line(diverged)
    unmoved = noise_probe(compiled, lambda feed: {"c": np.ones(2, np.float32)}, feeds, 26.2, ["c"])
    assert noise_probe_line(unmoved).endswith("moves no output")


def test_a_failed_verification_of_an_amplifying_model_says_the_model_is_the_cause(tmp_path, capsys) -> None:
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "cancel",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, FEATURES])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, OUTPUTS])],
                              [numpy_helper.from_array(weights(), "w")])
    model = tmp_path / "cancel.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.savez(tmp_path / "x.npz", x=inputs_near_the_null_space())
    code, out, _ = run_cli(capsys, model, "--verify", "--inputs", tmp_path / "x.npz", "-o", tmp_path / "c.rccp",
                           "--report", tmp_path / "r.json", "-q")
    assert code == 1
    probe = json.loads((tmp_path / "r.json").read_text())["verify"]["noise_probe"]
    assert math.isclose(probe["input_snr_db"], operand_snr_db(8, 8)) and math.isclose(probe["bound_db"], integer_snr_bound(8, 8))
    assert probe["output_snr_db"]["y"] < probe["bound_db"]
    assert "noise probe:" in out and "the model amplifies noise" in out


def test_a_miss_the_model_does_not_explain_points_to_localize(tmp_path, capsys) -> None:
    code, out, _ = run_cli(capsys, LENET, "--verify", "--adc-bits", "2", "-o", tmp_path / "l.rccp",
                           "--report", tmp_path / "r.json", "-q")
    assert code == 1
    probe = json.loads((tmp_path / "r.json").read_text())["verify"]["noise_probe"]
    assert probe["output_snr_db"]["logits"] > probe["bound_db"]
    assert "the model does not explain the miss; --localize" in out


def test_a_passing_verification_runs_no_probe(tmp_path, capsys) -> None:
    code, out, _ = run_cli(capsys, LENET, "--verify", "-o", tmp_path / "l.rccp", "--report", tmp_path / "r.json",
                           "-q")
    assert code == 0 and "noise probe" not in out
    assert "noise_probe" not in json.loads((tmp_path / "r.json").read_text())["verify"]


def test_the_probe_reuses_the_clean_outputs_verification_already_has() -> None:
    """Given the unperturbed outputs, the probe runs onnxruntime once per feed (the perturbed run), not twice,
    and finds the same figures (the noise draws do not depend on the clean run)."""
    feeds = [{"x": np.random.default_rng(index).standard_normal(64).astype(np.float32)} for index in range(3)]
    calls = []

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(1)
        return {"y": 3 * feed["x"]}
    fresh = output_snrs(run, feeds, 40.9)
    assert len(calls) == 6
    reused = output_snrs(run, feeds, 40.9, clean=[{"y": 3 * feed["x"]} for feed in feeds])
    assert len(calls) == 9 and reused == fresh
