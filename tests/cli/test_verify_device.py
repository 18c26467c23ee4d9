"""`rcc MODEL --verify --device ...`: the verifying machine run uses the device's cells, and says so."""

from __future__ import annotations

from rcc.compiler.cli import main
from tests.conftest import ROOT

LENET = ROOT / "models" / "lenet5.onnx"


def test_the_ideal_device_verifies_like_no_device(tmp_path, capsys) -> None:
    assert main([str(LENET), "--verify", "-o", str(tmp_path / "a.rccp")]) == 0
    plain = capsys.readouterr().out.splitlines()[-3:]
    assert main([str(LENET), "--verify", "--device", "ideal", "-o", str(tmp_path / "b.rccp")]) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == plain


def test_a_noisy_or_faulty_chip_is_measured_and_named(tmp_path, capsys) -> None:
    # seeded: programming and read noise of the reram preset, or MNSIM-rate stuck cells, on an 8-bit LeNet
    assert main([str(LENET), "--verify", "--device", "reram", "-o", str(tmp_path / "a.rccp")]) == 1
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert "FAILED" in verdict and "device reram (seed 0)" in verdict and "integer reference match: NO" in verdict
    assert main([str(LENET), "--verify", "--faults", "0.09,0.01", "-o", str(tmp_path / "b.rccp")]) == 1
    assert "stuck-at 0.09/0.01" in capsys.readouterr().out.splitlines()[-1]


def test_device_flags_without_verify_are_a_usage_error(tmp_path, capsys) -> None:
    assert main([str(LENET), "--device", "reram", "-o", str(tmp_path / "a.rccp")]) == 2
    assert "--device acts on the machine run of --verify" in capsys.readouterr().err
    assert not (tmp_path / "a.rccp").exists()
    assert main([str(LENET), "--verify", "--executor", "interpreter", "--device", "reram",
                 "-o", str(tmp_path / "b.rccp")]) == 2
