"""Verification metrics that cannot be gamed: K seeded samples, the input-dependent SNR, top-1/top-5
agreement, the reported input-dependent bound, and softmax outputs of very large logits judged on
their logits."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import compile_model, crossbar_depth, verify_compiled
from rcc.compiler.evaluate import _scores as eval_scores
from rcc.compiler.verify import (input_dependent_metrics, input_snr_bound, sample_metrics, snr_db,
                                 top_k_agreement)
from tests.cli.test_cli import LENET, run_cli
from tests.conftest import LIGHT


def test_input_dependent_snr_sees_error_the_whole_output_snr_hides() -> None:
    rng = np.random.default_rng(0)
    expected = [100.0 + rng.standard_normal(8) for _ in range(4)]  # a large constant part, a small varying one
    actual = [e + 0.1 * rng.standard_normal(8) for e in expected]
    metrics = sample_metrics(actual, expected)
    assert metrics["snr_db"] > 55 and 15 < metrics["snr_input_db"] < 25
    assert math.isclose(metrics["rel_l2_input"], 10 ** (-metrics["snr_input_db"] / 20))


def test_input_dependent_snr_of_a_constant_reference_is_minus_infinity_with_a_note() -> None:
    metrics = input_dependent_metrics(np.ones((3, 4)) + 1e-3, np.ones((3, 4)))
    assert metrics["snr_input_db"] == -math.inf and "does not change" in metrics["note"]


def test_an_exact_match_of_a_constant_reference_says_it_proves_little() -> None:
    """ViT-B/16 as torchvision builds it: a zero-initialised head makes every output 0, matched exactly."""
    metrics = sample_metrics([np.zeros((1, 5))] * 3, [np.zeros((1, 5))] * 3)
    assert metrics["passed"] and metrics["rel_l2_input"] == 0 and metrics["constant_reference"]
    assert "does not change" in metrics["note"]


def test_top_k_agreement_counts_rows() -> None:
    expected = np.zeros((2, 1, 10))
    expected[0, 0, 3] = expected[1, 0, 7] = 1
    actual = np.zeros((2, 1, 10))
    actual[0, 0, 3] = 1  # row 0 agrees; row 1's reference class is only the machine's 4th largest
    actual[1, 0, [0, 1, 2, 7]] = [4, 3, 2, 1]
    assert top_k_agreement(actual, expected) == {"top1_agreement": 0.5, "top5_agreement": 1.0}
    assert top_k_agreement(np.zeros((2, 1, 3, 4, 4)), np.zeros((2, 1, 3, 4, 4))) == {}


def test_input_bound_follows_bits_and_depth() -> None:
    assert math.isclose(input_snr_bound(8, 8, 1), 6.02 * 8 + 10 * math.log10(3) - 20 * math.log10(4) - 10 * math.log10(2))
    assert math.isclose(input_snr_bound(8, 8, 5) - input_snr_bound(8, 8, 10), 10 * math.log10(2))
    assert math.isclose(input_snr_bound(4, 8, 3), input_snr_bound(8, 4, 3))


def test_machine_verify_reports_k_samples_and_the_input_dependent_figures(tmp_path, capsys) -> None:
    code, out, _ = run_cli(capsys, LENET, "--verify", "--samples", "3", "-o", tmp_path / "l.rccp",
                           "--report", tmp_path / "r.json", "-q")
    verify = json.loads((tmp_path / "r.json").read_text())["verify"]
    logits = verify["outputs"]["logits"]
    assert verify["samples"] == 3 and verify["crossbar_depth"] == 5
    assert math.isclose(verify["snr_input_bound"], input_snr_bound(8, 8, 5))
    assert logits["snr_input_db"] < logits["snr_db"] and "top1_agreement" in logits and "top5_agreement" in logits
    assert logits["within_input_bound"] == (logits["snr_input_db"] >= verify["snr_input_bound"])
    assert "snr_input_db" in out and f"{logits['snr_input_db']:.1f}" in out and code == (0 if verify["passed"] else 1)


def test_samples_below_two_exit_2(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, LENET, "--verify", "--samples", "1", "-o", tmp_path / "l.rccp")
    assert code == 2 and "--samples" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "l.rccp").exists()


def huge_logit_softmax(path) -> None:
    """x[1, 8] → MatMul by weights of 1e8 → Softmax: logits near 1e8, probabilities one-hot."""
    weights = np.random.default_rng(1).standard_normal((8, 10)).astype(np.float32) * 1e8
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probs"])],
        "huge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])], [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_softmax_of_huge_logits_is_judged_on_its_logits(tmp_path) -> None:
    path = tmp_path / "huge.onnx"
    huge_logit_softmax(path)
    compiled = compile_model(path, precision="float")
    assert crossbar_depth(compiled.program) == 1
    probs = verify_compiled(path, compiled).outputs["probs"]
    assert "judged on its logits" in probs["note"] and probs["logits"]["rel_l2"] <= 1e-5
    assert probs["passed"] == probs["logits"]["passed"]


def test_a_failed_verify_exits_1_with_and_without_localize(tmp_path, capsys) -> None:
    mlp = LENET.parent / "mlp.onnx"
    for extra in ([], ["--localize"]):
        code, out, _ = run_cli(capsys, mlp, "--verify", "--adc-bits", "4", "-o", tmp_path / "m.rccp", *extra)
        assert code == 1 and "FAILED" in out


def test_shipped_light_squeezenet_softmax_is_judged_on_its_logits() -> None:
    path = next(p for p in LIGHT if p.stem == "light_squeezenet")  # logits near 6.7e9 as shipped
    probs = verify_compiled(path, compile_model(path, precision="float")).outputs["softmaxout_1"]
    assert "judged on its logits" in probs["note"] and probs["logits"]["rel_l2"] <= 1e-5 and probs["passed"]


def test_verify_table_prints_exact_only_for_a_zero_error_and_na_when_not_measured(capsys) -> None:
    from rcc.compiler.commands.compile import print_verify
    from rcc.compiler.verify import VerifyResult

    exact = {"max_abs_err": 0.0, "rel_l2": 0.0, "snr_db": None, "passed": True}       # one sample: no input SNR
    missing = {"max_abs_err": None, "rel_l2": None, "snr_db": None, "passed": False, "note": "shape differs"}
    measured = {"max_abs_err": 0.5, "rel_l2": 0.01, "snr_db": 40.0, "snr_input_db": None, "rel_l2_input": 0.0,
                "passed": True}
    print_verify(VerifyResult("machine", {"exact": exact, "missing": missing, "measured": measured}))
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["exact"][:4] == ["exact", "exact", "inf", "n/a"]
    assert rows["missing"][:4] == ["n/a", "n/a", "n/a", "n/a"]
    assert rows["measured"][:4] == ["0.5", "0.01", "40.0", "inf"]


def test_one_snr_formula_for_every_figure() -> None:
    """verify, the noise probe, mixed precision and eval share `snr_db`; its edges: no error is +inf, no signal
    (or an infinite error) is -inf, NaN in or infinite over infinite is NaN."""
    assert snr_db(100.0, 1.0) == 20.0
    assert snr_db(1.0, 0.0) == math.inf and snr_db(0.0, 0.0) == math.inf
    assert snr_db(0.0, 1.0) == -math.inf and snr_db(1.0, math.inf) == -math.inf
    assert math.isnan(snr_db(math.nan, 1.0)) and math.isnan(snr_db(math.inf, math.inf))


def test_eval_scores_an_all_zero_reference_without_crashing() -> None:
    """`rcc eval`'s SNR of outputs against an all-zero reference (log10 of 0 raised ValueError: exit 3)."""
    scores = eval_scores(np.full((4, 10), 0.5, np.float32), np.zeros((4, 10), np.float32), None)
    assert scores["snr_db"] == -math.inf
