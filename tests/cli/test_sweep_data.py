"""`rcc sweep --data`: a point's accuracy is `evaluate_model`'s on the point's target and device keys, device
keys and accuracy objectives without `--data` exit 2 naming them, `--constraint accuracy>=X` filters the
front, and the energy-vs-accuracy plot is drawn (the trained digits model on a slice of its test split)."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.compiler.cli import main
from rcc.compiler.evaluate import evaluate_model
from rcc.compiler.sweep_point import SweepData, SweepModel, evaluate_point
from rcc.compiler.sweep_results import ResultsFile
from rcc.compiler.sweep_search import Constraint, feasible
from rcc.compiler.sweep_space import parse_grid, point_settings
from tests.conftest import ROOT

TRAINED = ROOT / "models" / "trained"
MODEL = TRAINED / "digits_mlp.onnx"
SAMPLES = 64


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("digits")
    pixels = np.load(TRAINED / "digits_test.npz")["pixels"][:SAMPLES]
    labels = np.load(TRAINED / "digits_test_labels.npy")[:SAMPLES]
    np.savez(folder / "x.npz", pixels=pixels)
    np.save(folder / "y.npy", labels)
    return folder / "x.npz", folder / "y.npy", pixels, labels


@pytest.mark.parametrize("point", [
    {"adc_bits": 3},
    {"adc_bits": 6, "device": "mnsim", "faults": "0.09/0.01", "fault_aware": 1, "device_seed": 3, "time": "1h"},
])
def test_a_points_accuracy_is_evaluate_models(point, data_files) -> None:
    _, _, pixels, labels = data_files
    row = evaluate_point(SweepModel.load(MODEL), point, data=SweepData.of({"pixels": pixels}, labels, trials=2))
    assert row["status"] == "ok", row["error"]
    settings = point_settings(point)
    expected = evaluate_model(MODEL, {"pixels": pixels}, labels, settings.target, settings.device, trials=2,
                              seed=settings.device_seed, fault_aware=settings.fault_aware)
    assert (row["accuracy"], row["accuracy_ci95"], row["top5"]) == (
        expected["accuracy"]["mean"], expected["accuracy"]["ci95"], expected["top5"]["mean"])
    assert expected["device"]["name"] == point.get("device", "ideal")


def test_without_labels_accuracy_is_agreement_and_no_top5(data_files) -> None:
    _, _, pixels, _ = data_files
    row = evaluate_point(SweepModel.load(MODEL), {"adc_bits": 6}, verify=False, data=SweepData.of({"pixels": pixels}))
    expected = evaluate_model(MODEL, {"pixels": pixels}, None, point_settings({"adc_bits": 6}).target)
    assert row["accuracy"] == expected["accuracy"]["mean"] and "top5" not in row


def test_a_static_batch_model_keeps_its_batch() -> None:
    """models/mlp.onnx declares its batch (4): the point compiles it as declared, where an override to batch 1
    was refused, and its accuracy runs 6 samples as a full batch and a padded one."""
    data = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32)
    row = evaluate_point(SweepModel.load(ROOT / "models" / "mlp.onnx"), {"adc_bits": 6},
                         data=SweepData.of({"input": data}))
    assert row["status"] == "ok", row["error"]
    assert row["verify_passed"] and 0 <= row["accuracy"] <= 1


def test_device_keys_parse_and_reach_the_device() -> None:
    space = parse_grid(["faults=0.09/0.01,0/0", "fault_aware=yes,no", "time=1h"])
    assert space == {"faults": ["0.09/0.01", "0/0"], "fault_aware": [1, 0], "time": ["1h"]}
    settings = point_settings({"device": "mnsim", "faults": "0.2/0.1", "time": "1h", "device_seed": 4})
    device = settings.device
    assert (device.name, device.stuck_off_rate, device.stuck_on_rate, device.time_s) == ("mnsim", 0.2, 0.1, 3600.0)
    assert settings.device_seed == 4 and not settings.fault_aware


def test_accuracy_constraint_filters_rows() -> None:
    constraint = Constraint.parse("accuracy>=0.9", has_data=True)
    rows = [{"accuracy": 0.95}, {"accuracy": 0.5}, {"accuracy": None}]
    assert feasible(rows, (constraint,)) == [{"accuracy": 0.95}]


@pytest.mark.parametrize("argv, message", [
    (["--grid", "device=mnsim"], "--grid device: device keys set the device the --data accuracy"),
    (["--grid", "adc_bits=4", "--grid", "faults=0.1/0"], "--grid faults: device keys"),
    (["--data", "X", "--grid", "device=sparkle"], "--grid device=sparkle: choose from ideal"),
    (["--data", "X", "--grid", "faults=0.1,0.2"], "--grid faults=0.1,0.2: give the stuck-off and stuck-on rates"),
    (["--data", "X", "--grid", "faults=0.1/2"], "--grid faults=0.1/2: faults '0.1,2': each rate must be in [0, 1]"),
    (["--data", "X", "--grid", "fault_aware=maybe"], "--grid fault_aware=maybe: choose yes or no"),
    (["--data", "X", "--grid", "time=soon"], "--grid time=soon: time 'soon': give a duration"),
    (["--constraint", "accuracy>=0.97"], "--constraint accuracy: accuracy needs --data"),
    (["--labels", "Y"], "--labels and --eval-trials go with --data"),
    (["--data", "X", "--eval-trials", "0"], "--eval-trials must be positive"),
])
def test_bad_device_keys_and_accuracy_options_exit_2(argv, message, data_files, tmp_path, capsys,
                                                      monkeypatch) -> None:
    x_file, y_file, _, _ = data_files
    argv = [str(x_file) if a == "X" else str(y_file) if a == "Y" else a for a in argv]
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(MODEL), "-o", "r.csv", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rcc: error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_command_line_sweep_with_data_constrains_and_plots_accuracy(data_files, tmp_path, capsys) -> None:
    x_file, y_file, pixels, labels = data_files
    out, plots = tmp_path / "r.parquet", tmp_path / "plots"
    assert main(["sweep", str(MODEL), "--grid", "adc_bits=2,6", "--grid", "device=ideal,mnsim", "--data", str(x_file),
                 "--labels", str(y_file), "--constraint", "accuracy>=0.9", "--workers", "2", "--plot", str(plots),
                 "-o", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    rows = ResultsFile.checked(out).read()
    assert len(rows) == 4 and all(row["status"] == "ok" for row in rows)
    data = SweepData.of({"pixels": pixels}, labels)
    for row in rows:  # the workers' figures are the in-process ones
        point = {"adc_bits": row["adc_bits"], "device": row["device"]}
        assert row["accuracy"] == evaluate_point(SweepModel.load(MODEL), point, data=data)["accuracy"]
    missing = sum(row["accuracy"] < 0.9 for row in rows)
    assert 0 < missing < 4 and f"{missing} of 4 points miss a --constraint" in printed  # 2-bit ADCs miss it
    assert "Pareto front over energy_pj, latency_ns, area_mm2, crossbars, accuracy, snr_db: " in printed
    assert "accuracy" in printed.splitlines()[1] and (plots / "energy_pj-vs-accuracy.png").read_bytes()[:4] == b"\x89PNG"
