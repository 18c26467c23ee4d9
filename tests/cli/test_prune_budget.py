"""Crossbar-grained pruning under `--prune-budget`: it removes arrays, reports the error it causes, and
that error is what onnxruntime measures on the pruned model exported to ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcc.backends.onnx_export import save_onnx
from rcc.backends.target import Target
from rcc.compiler.calibrate import calibration_samples
from rcc.compiler.cli import main
from rcc.compiler.driver import PruneBudget, compile_model
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir.errors import RccError
from tests.conftest import ROOT

PRUNED_LENET = ROOT / "models" / "lenet5_pruned.onnx"
SMALL_ARRAYS = Target(xbar_rows=32, xbar_cols=32)


def arrays(compiled) -> int:
    return sum(op.attrs["arrays"] for op in compiled.xbar.ops if op.opname == "xbar.mvm")


def test_fraction_budget_removes_arrays_and_reports_the_onnxruntime_error(tmp_path) -> None:
    full = compile_model(PRUNED_LENET, SMALL_ARRAYS)
    pruned = compile_model(PRUNED_LENET, SMALL_ARRAYS, prune=PruneBudget(fraction=0.25))
    report = pruned.pruning
    assert arrays(pruned) < arrays(full)
    assert sum(layer["removed_blocks"] for layer in report["layers"]) > 0 and report["fraction"] == 0.25
    exported = tmp_path / "pruned.onnx"
    save_onnx(pruned.graph, exported)
    worst = 0.0
    for sample in calibration_samples(full.graph)[:report["samples"]]:
        original, after = onnxruntime_outputs(PRUNED_LENET, sample), onnxruntime_outputs(exported, sample)
        for name, reference in original.items():
            worst = max(worst, np.linalg.norm(after[name] - reference) / np.linalg.norm(reference))
    assert report["rel_l2_error"] == pytest.approx(worst, rel=1e-3, abs=1e-6)


def test_error_budget_is_kept(tmp_path) -> None:
    for bound in (0.05, 0.3):
        pruned = compile_model(PRUNED_LENET, SMALL_ARRAYS, prune=PruneBudget(max_error=bound))
        assert pruned.pruning["rel_l2_error"] <= bound
    loose = compile_model(PRUNED_LENET, SMALL_ARRAYS, prune=PruneBudget(max_error=0.3))
    tight = compile_model(PRUNED_LENET, SMALL_ARRAYS, prune=PruneBudget(max_error=0.05))
    assert loose.pruning["fraction"] >= tight.pruning["fraction"] and arrays(loose) <= arrays(tight)


def test_cli_reports_pruning(tmp_path, capsys) -> None:
    code = main([str(PRUNED_LENET), "--xbar", "32x32", "--prune-budget", "0.2", "-o", str(tmp_path / "p.rccp"),
                 "--report", str(tmp_path / "r.json")])
    assert code == 0 and "pruned" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["pruning"]["fraction"] == 0.2 and report["totals"]["crossbars"] < report["totals"]["crossbars_dense"]


@pytest.mark.parametrize("text", ["0", "1.5", "error=-1", "lots"])
def test_bad_budget_is_a_usage_error(text) -> None:
    with pytest.raises(RccError, match="--prune-budget"):
        PruneBudget.parse(text)
