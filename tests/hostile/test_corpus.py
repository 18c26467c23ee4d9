"""The hostile-input corpus (`cases.py`): every case exits with its exact code, prints one line on
stderr and leaves no file behind, within bounded time (SIGALRM in-process, a timeout in a subprocess)
and memory (RLIMIT_AS for the cases whose danger is memory)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.hostile import builders
from tests.hostile.cases import CASES, Base
from tests.hostile.harness import check_refusal, files_under, run_in_process, run_subprocess


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Base:
    folder = tmp_path_factory.mktemp("hostile_base")
    program, _ = builders.compiled_mlp(folder)
    return Base(folder, folder / "mlp.onnx", program, builders.mlp_inputs(folder / "in.npz"))


@pytest.mark.parametrize("name", sorted(CASES), ids=lambda name: f"{CASES[name][0]}:{name}")
def test_hostile_case(name, base, tmp_path, monkeypatch) -> None:
    _, build = CASES[name]
    case = build(tmp_path, base)
    before, base_before = files_under(tmp_path), files_under(base.folder)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    outcome = run_subprocess(case.argv, case.env) if case.subprocess else run_in_process(case.argv)
    created = {p.name for p in files_under(tmp_path) - before}
    if case.code == 0:
        assert outcome.code == 0, outcome.err[-600:]
        assert created >= set(case.expect_files)
    else:
        check_refusal(outcome, case.code, case.fragment)
        assert not created, f"left behind: {sorted(created)}"
    assert files_under(base.folder) == base_before


def test_nonfinite_inputs_propagate_like_onnxruntime_when_allowed(base, tmp_path) -> None:
    """With --allow-nonfinite the machine gives NaN exactly where onnxruntime's output is not finite."""
    from rcc.compiler.verify import onnxruntime_outputs

    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)[:1]
    x[0, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    outcome = run_in_process(["run", base.program, "--inputs", tmp_path / "nan.npz", "-o", tmp_path / "o.npz",
                              "--allow-nonfinite"])
    assert outcome.code == 0, outcome.err
    actual = np.load(tmp_path / "o.npz")["y"]
    expected = onnxruntime_outputs(base.model, {"x": x})["y"]
    assert np.array_equal(np.isnan(actual), ~np.isfinite(expected)) and np.isnan(actual).any()


def test_constant_output_keeps_its_name(tmp_path) -> None:
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Relu", ["x"], ["y"], name="act"),
             helper.make_node("Constant", [], ["k"], name="const",
                              value=numpy_helper.from_array(np.array([1.5, -2.0], np.float32)))]
    model = builders.save_model(tmp_path / "k.onnx", nodes, [builders.tensor("x", [1, 4])],
                                [builders.tensor("y", [1, 4]), builders.tensor("k", [2])])
    program = tmp_path / "k.rccp"
    outcome = run_in_process([model, "--verify", "-o", program, "-q"])
    assert outcome.code == 0, outcome.out + outcome.err
    builders.mlp_inputs(tmp_path / "in.npz")
    outcome = run_in_process(["run", program, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "o.npz"])
    assert outcome.code == 0, outcome.err
    assert np.array_equal(np.load(tmp_path / "o.npz")["k"], [1.5, -2.0])



def test_toml_errors_name_the_file_once(tmp_path) -> None:
    path = tmp_path / "chip.toml"
    path.write_text("[target]\nxbar = 128\nxbar_rows = 64\n")
    outcome = run_in_process([builders.mlp_model(tmp_path / "m.onnx"), "--target", path, "-o", tmp_path / "m.rccp"])
    assert outcome.code == 2 and outcome.err.count(str(path)) == 1, outcome.err


def test_allowed_nonfinite_calibration_samples_calibrate_on_their_finite_values(base, tmp_path) -> None:
    samples = np.full((4, 1, 4), np.nan, np.float32)
    samples[0, 0] = [0.5, -1.0, 2.0, 0.1]
    np.savez(tmp_path / "cal.npz", x=samples)
    np.savez(tmp_path / "in.npz", x=samples[0])  # the calibrated input: random ones would clip at 4 values' range
    outcome = run_in_process([base.model, "--calibrate", tmp_path / "cal.npz", "--allow-nonfinite", "--verify",
                              "--inputs", tmp_path / "in.npz", "-o", tmp_path / "m.rccp", "-q"])
    assert outcome.code == 0, outcome.out + outcome.err
