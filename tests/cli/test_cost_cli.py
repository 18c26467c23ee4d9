"""`rcc --cost-model`: the report's `cost` objects, the summary's energy and latency columns, and one-line
exit-2 errors (no output left behind) for a bad preset name or an unusable cost file."""

from __future__ import annotations

import json

import pytest

from rcc.compiler.cli import main
from tests.conftest import ROOT, ZOO

LENET = ROOT / "models" / "lenet5.onnx"
COST_KEYS = {"energy_pj", "energy_breakdown_pj", "latency_ns", "throughput_inf_s", "area_mm2", "power_mw",
             "tops_per_w", "tops_per_mm2"}


def test_report_and_summary_carry_the_cost(tmp_path, capsys) -> None:
    report_path = tmp_path / "r.json"
    assert main([str(LENET), "--cost-model", "puma", "-o", str(tmp_path / "l.rccp"),
                 "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "energy_nj" in out.splitlines()[0] and "latency_us" in out.splitlines()[0]
    report = json.loads(report_path.read_text())
    totals = report["totals"]["cost"]
    assert COST_KEYS <= set(totals) and totals["chip"] == "puma"
    for layer in report["layers"]:
        assert COST_KEYS <= set(layer["cost"])
        assert sum(layer["cost"]["energy_breakdown_pj"].values()) == pytest.approx(layer["cost"]["energy_pj"])
    assert sum(layer["cost"]["energy_pj"] for layer in report["layers"]) == pytest.approx(totals["energy_pj"])


def test_plot_draws_the_energy_breakdown(tmp_path, capsys) -> None:
    plots = tmp_path / "plots"
    assert main([str(LENET), "-q", "-o", str(tmp_path / "l.rccp"), "--plot", str(plots)]) == 0, \
        capsys.readouterr().err
    data = (plots / "energy.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def _preset_with(tmp_path, old: str, new: str):
    text = (ROOT / "backends" / "presets" / "isaac.toml").read_text()
    assert old in text
    path = tmp_path / f"chip{len(list(tmp_path.iterdir()))}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("kind", ["bad name", "missing file", "malformed file", "negative figure", "zero figure"])
def test_bad_cost_model_is_one_line_exit_2(kind, tmp_path, capsys) -> None:
    model, expected = {
        "bad name": ("sparkle", "--cost-model 'sparkle'"),
        "missing file": (tmp_path / "none.toml", "none.toml: no such file"),
        "malformed file": (_preset_with(tmp_path, "[chip]", "[chip"), "invalid TOML"),
        "negative figure": (_preset_with(tmp_path, "power_mw = 16.0", "power_mw = -16.0"),
                            "cost.adc.power_mw must be positive"),
        "zero figure": (_preset_with(tmp_path, "clock_ghz = 1.2", "clock_ghz = 0"), "chip.clock_ghz must be positive"),
    }[kind]
    capsys.readouterr()
    before = set(tmp_path.iterdir())
    code = main([str(LENET), "--cost-model", str(model), "-o", str(tmp_path / "l.rccp"),
                 "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rcc: error: ") and expected in lines[0], err
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize("model", ZOO, ids=lambda path: path.stem)
def test_every_zoo_model_gets_a_cost(model, tmp_path, capsys) -> None:
    report_path = tmp_path / "r.json"
    assert main([str(model), "--cost-model", "isaac", "-q", "-o", str(tmp_path / "m.rccp"),
                 "--report", str(report_path)]) == 0, capsys.readouterr().err
    cost = json.loads(report_path.read_text())["totals"]["cost"]
    assert cost["energy_pj"] > 0 and cost["latency_ns"] > 0 and cost["tops_per_w"] < cost["peak_tops_per_w"]


def test_rcc_run_report_carries_the_cost_of_the_run(tmp_path, capsys) -> None:
    import numpy as np

    program = tmp_path / "l.rccp"
    compile_report = tmp_path / "c.json"
    assert main([str(LENET), "-q", "-o", str(program), "--cost-model", "puma", "--report", str(compile_report)]) == 0
    np.savez(tmp_path / "in.npz", input=np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32))
    report_path = tmp_path / "r.json"
    assert main(["run", str(program), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"), "-q",
                 "--cost-model", "puma", "--report", str(report_path)]) == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    cost = report["totals"]["cost"]
    assert report["cost_model"] == "puma" and COST_KEYS <= set(cost) and cost["chip"] == "puma"
    assert report["layers"] and all(COST_KEYS <= set(layer["cost"]) for layer in report["layers"])
    # the machine's counters give the static estimate's figures
    static = json.loads(compile_report.read_text())["totals"]["cost"]
    assert cost["energy_pj"] == pytest.approx(static["energy_pj"])
    assert cost["latency_ns"] == pytest.approx(static["latency_ns"])
    capsys.readouterr()
    assert main(["run", str(program), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "p.npz"),
                 "--cost-model", "nosuchchip", "--report", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nosuchchip" in err
    assert not (tmp_path / "p.npz").exists() and not (tmp_path / "s.json").exists()
