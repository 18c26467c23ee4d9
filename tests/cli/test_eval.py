"""`rcc eval` and `evaluate_model`: accuracy of the trained digits model on ideal and faulty devices, fault-aware
mapping against plain mapping at MNSIM's stuck-at rates, the JSON report, and bad input exiting 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcc.backends.device import Device, load_device
from rcc.compiler import cli
from rcc.compiler.evaluate import evaluate_model
from tests.conftest import ROOT

TRAINED = ROOT / "models" / "trained"
MODEL, DATA, LABELS = TRAINED / "digits_mlp.onnx", TRAINED / "digits_test.npz", TRAINED / "digits_test_labels.npy"


def _data():
    return {"pixels": np.load(DATA)["pixels"]}, np.load(LABELS)


def run_cli(capsys, *args: object) -> tuple[int, str, str]:
    return run_cli_command(capsys, "eval", *args)


def test_ideal_device_keeps_the_trained_models_accuracy():
    data, labels = _data()
    result = evaluate_model(MODEL, data, labels, batch=128)
    assert result["onnxruntime_accuracy"] > 0.95
    assert abs(result["accuracy"]["mean"] - result["onnxruntime_accuracy"]) < 0.02   # 8-bit quantisation only
    assert result["accuracy"]["ci95"] == 0.0 and len(result["accuracy"]["trials"]) == 1


def test_fault_aware_mapping_loses_less_accuracy_at_mnsim_rates():
    data, labels = _data()
    losses = {False: [], True: []}
    for chip in range(3):
        device = load_device("mnsim").with_overrides(fault_seed=chip)
        for aware in (False, True):
            result = evaluate_model(MODEL, data, labels, device=device, batch=270, fault_aware=aware)
            losses[aware].append(result["onnxruntime_accuracy"] - result["accuracy"]["mean"])
    assert all(a <= p for a, p in zip(losses[True], losses[False])), losses
    assert np.mean(losses[True]) < 0.5 * np.mean(losses[False]) and np.mean(losses[False]) > 0.05, losses


@pytest.mark.slow
def test_cli_report_over_trials_on_dask(tmp_path, capsys):
    report = tmp_path / "eval.json"
    data, labels = _data()
    data, labels = {"pixels": data["pixels"][:135]}, labels[:135]
    np.savez(tmp_path / "x.npz", **data)
    np.save(tmp_path / "y.npy", labels)
    code, out, err = run_cli(capsys, MODEL, "--data", tmp_path / "x.npz", "--labels", tmp_path / "y.npy", "--device",
                             "reram", "--trials", 2, "--batch", 135, "--report", report)
    assert code == 0, err
    assert "top-1 accuracy" in out
    figures = json.loads(report.read_text())
    accuracy = figures["accuracy"]
    assert len(accuracy["trials"]) == 2 and accuracy["mean"] == pytest.approx(np.mean(accuracy["trials"]))
    snr = figures["snr_db"]["trials"]
    assert snr[0] != snr[1] and figures["snr_db"]["ci95"] > 0     # two device seeds, two noise draws
    assert figures["device"]["name"] == "reram" and "snr_db" in figures
    # the two trials ran as Dask tasks on a local cluster: the figures are the in-process run's, seed for seed
    serial = evaluate_model(MODEL, data, labels, device=load_device("reram"), trials=2, batch=135)
    assert serial["snr_db"]["trials"] == snr and serial["accuracy"]["trials"] == accuracy["trials"]


def test_same_device_seed_same_figures():
    data, labels = _data()
    device = Device(programming_noise="pcm")
    first = evaluate_model(MODEL, data, labels, device=device, seed=4, batch=270)
    again = evaluate_model(MODEL, data, labels, device=device, seed=4, batch=270)
    assert first["snr_db"] == again["snr_db"]


@pytest.mark.parametrize("case", ["malformed device", "rate", "fault map array", "bad duration", "labels npz",
                                  "fault-aware without faults", "labels empty", "labels broken zip",
                                  "fault map huge field"])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    args = [MODEL, "--data", DATA, "--labels", LABELS, "--batch", 270]
    if case == "malformed device":
        bad = tmp_path / "dev.toml"
        bad.write_text("[device]\nread_noise = 'lots'\n")
        args += ["--device", bad]
    elif case == "rate":
        args += ["--faults", "0.1,1.5"]
    elif case == "fault map array":
        faults = tmp_path / "faults.csv"
        faults.write_text("array,row,column,state\n999,0,0,off\n")
        args += ["--fault-map", faults, "--report", tmp_path / "r.json"]
    elif case == "labels npz":
        args[4] = DATA
    elif case in ("labels empty", "labels broken zip"):
        args[4] = tmp_path / "labels.npy"
        args[4].write_bytes(b"" if case == "labels empty" else b"PK\x03\x04broken")
    elif case == "fault map huge field":
        faults = tmp_path / "faults.csv"
        faults.write_text("array,row,column,state\n0,0,0," + "x" * 200_000 + "\n")
        args += ["--fault-map", faults, "--report", tmp_path / "r.json"]
    elif case == "fault-aware without faults":
        args += ["--fault-aware"]
    else:
        args += ["--time", "soon"]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rcc: error:"), err
    assert not (tmp_path / "r.json").exists()


def test_run_takes_the_device_flags(tmp_path, capsys):
    program, inputs = tmp_path / "mlp.rccp", tmp_path / "in.npz"
    assert cli.main(["compile", str(ROOT / "models" / "mlp.onnx"), "-o", str(program), "-q"]) == 0
    np.savez(inputs, **{"input": np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)})
    outputs = {}
    for name, extra in (("ideal", []), ("reram", ["--device", "reram", "--device-seed", "3"])):
        code, _, err = run_cli_command(capsys, "run", program, "--inputs", inputs, "-o", tmp_path / f"{name}.npz", *extra)
        assert code == 0, err
        outputs[name] = np.load(tmp_path / f"{name}.npz")
    key = next(iter(outputs["ideal"].files))
    assert not np.array_equal(outputs["ideal"][key], outputs["reram"][key])
    faults = tmp_path / "faults.csv"
    faults.write_text("5000,0,0,on\n")
    code, _, err = run_cli_command(capsys, "run", program, "--inputs", inputs, "-o", tmp_path / "x.npz",
                                   "--fault-map", faults)
    assert code == 2 and "array 5000" in err and not (tmp_path / "x.npz").exists()


def run_cli_command(capsys, *args: object) -> tuple[int, str, str]:
    code = cli.main([*map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
