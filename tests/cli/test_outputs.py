"""Every output path of every command is checked before any work starts, so a failing command writes
nothing; special files (FIFOs, /dev/null) are written, never replaced; files get the umask's mode."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rcc.compiler import driver
from rcc.compiler.cli import main
from tests.conftest import ROOT

LENET = ROOT / "models" / "lenet5.onnx"


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A folder holding a copy of lenet5.onnx, as the current directory; compiling must never be reached."""
    shutil.copy(LENET, tmp_path / "lenet5.onnx")
    monkeypatch.chdir(tmp_path)

    def no_work(*args, **kwargs):
        raise AssertionError("the command started work before checking its outputs")

    monkeypatch.setattr(driver, "compile_model", no_work)
    return tmp_path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _fails_cleanly(capsys, folder: Path, argv: list[str], message: str) -> None:
    before = _files(folder)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("rcc: error: ") and message in err, err
    assert _files(folder) == before


@pytest.mark.parametrize("argv, message", [
    (["--plot", "missing/plots"], "--plot missing/plots: the folder missing does not exist"),
    (["--plot", "lenet5.onnx"], "--plot lenet5.onnx: exists and is not a folder"),
    (["--report", "sub"], "--report sub: is a folder"),
    (["--report", "lenet5.onnx/r.json"], "--report lenet5.onnx/r.json: the folder lenet5.onnx does not exist"),
    (["--report", ""], "--report: the output path is empty"),
    (["-o", ""], "-o: the output path is empty"),
    (["-o", "new/"], "-o new/: is a folder"),
    (["-o", "sub"], "-o sub: is a folder"),
    (["-o", "."], "-o .: is a folder"),
    (["--emit", "ir", "-o", "x.ir"], "-o x.ir: its weights file x.npz: is a folder"),
])
def test_compile_checks_outputs_first(work, capsys, argv, message) -> None:
    (work / "sub").mkdir()
    (work / "x.npz").mkdir()
    _fails_cleanly(capsys, work, ["lenet5.onnx", *argv], message)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_report_into_a_read_only_folder(work, capsys) -> None:
    (work / "locked").mkdir(mode=0o500)
    _fails_cleanly(capsys, work, ["lenet5.onnx", "--report", "locked/r.json"], "not writable")


def test_opt_checks_the_ir_and_its_weights_before_writing_either(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([str(LENET), "-q", "--emit", "ir", "-o", "l.ir"]) == 0
    (tmp_path / "X.ir").mkdir()
    _fails_cleanly(capsys, tmp_path, ["opt", "l.ir", "-p", "dce", "-o", "X.ir"], "-o X.ir: is a folder")
    (tmp_path / "Y.npz").mkdir()
    _fails_cleanly(capsys, tmp_path, ["opt", "l.ir", "-p", "dce", "-o", "Y.ir"],
                   "-o Y.ir: its weights file Y.npz: is a folder")


def test_run_and_prune_check_their_outputs(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([str(LENET), "-q", "-o", "l.rccp"]) == 0
    np.savez("in.npz", input=np.ones((1, 1, 28, 28), np.float32))
    (tmp_path / "sub").mkdir()
    _fails_cleanly(capsys, tmp_path, ["run", "l.rccp", "--inputs", "in.npz", "-o", "sub"], "-o sub: is a folder")
    _fails_cleanly(capsys, tmp_path, ["run", "l.rccp", "--inputs", "in.npz", "-o", "o.npz", "--report", "sub/"],
                   "--report sub/: is a folder")
    _fails_cleanly(capsys, tmp_path, ["prune", str(LENET), "--sparsity", "0.5", "-o", "gone/p.onnx"],
                   "-o gone/p.onnx: the folder gone does not exist")


def _read_fifo(fifo: Path, received: list[bytes]) -> threading.Thread:
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    return reader


def test_compile_to_a_fifo_writes_the_program_through_it(tmp_path, capsys) -> None:
    fifo, report = tmp_path / "program.fifo", tmp_path / "report.fifo"
    os.mkfifo(fifo)
    os.mkfifo(report)
    programs: list[bytes] = []
    reports: list[bytes] = []
    readers = [_read_fifo(fifo, programs), _read_fifo(report, reports)]
    assert main([str(LENET), "-q", "-o", str(fifo), "--report", str(report)]) == 0
    for reader in readers:
        reader.join(timeout=60)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISFIFO(report.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["program.fifo", "report.fifo"]
    (tmp_path / "copy.rccp").write_bytes(programs[0])
    assert "program.json" in zipfile.ZipFile(tmp_path / "copy.rccp").namelist()
    assert json.loads(reports[0])["totals"]["crossbars"] > 0


def test_compile_to_dev_null_keeps_the_device(capsys) -> None:
    assert main([str(LENET), "-q", "-o", "/dev/null", "--emit", "onnx"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_outputs_get_the_umask_mode(tmp_path, capsys) -> None:
    previous = os.umask(0o027)
    try:
        assert main([str(LENET), "-q", "--emit", "ir", "-o", str(tmp_path / "l.ir"),
                     "--report", str(tmp_path / "r.json")]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"l.ir": 0o640, "l.npz": 0o640, "r.json": 0o640}
