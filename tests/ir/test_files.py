"""The one writer (atomic for regular files with the umask's mode, direct for special files, nothing left
behind on failure or SIGTERM/SIGHUP), the output-path checks, and the one JSON encoding."""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from rcc.ir.files import (OutputPathError, check_output_folder, check_output_path, from_json_value, json_bytes,
                          to_json_value, write_output)
from tests.conftest import ROOT


@pytest.fixture
def umask():
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_regular_files_get_the_umask_mode_and_no_temporary_stays(tmp_path, umask, mask, mode) -> None:
    umask(mask)
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_output(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def refuse(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputPathError, match=r"out.bin: cannot write \(No space left on device\)"):
        write_output(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_an_exception_while_writing_removes_the_temporary(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_output(tmp_path / "out.bin", b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_writing_removes_the_temporary_and_still_kills(tmp_path, signum) -> None:
    # The child signals itself between writing the temporary file and renaming it. It starts with the signal's
    # default action, as in a terminal: under nohup (which ignores SIGHUP) the child would inherit the ignore,
    # which write_output leaves alone by design.
    script = f"""
import os, signal, sys
signal.signal({int(signum)}, signal.SIG_DFL)
sys.path.insert(0, {str(ROOT)!r})
from rcc.ir import files
real_fsync = os.fsync
def fsync_then_signal(fd):
    real_fsync(fd)
    os.kill(os.getpid(), {int(signum)})
os.fsync = fsync_then_signal
files.write_output({str(tmp_path / "out.bin")!r}, b"x" * 100000)
print("survived")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signum, done.stderr
    assert "survived" not in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_is_written_not_replaced(tmp_path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_output(fifo, b"through the pipe")
    reader.join(timeout=30)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_dev_null_stays_a_device() -> None:
    write_output("/dev/null", b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert check_output_path("/dev/null", "-o") == Path("/dev/null")


@pytest.mark.parametrize("name, message", [
    ("", "-o: the output path is empty"),
    ("folder", "is a folder"),
    ("folder/", "is a folder"),
    ("new/", "is a folder"),
    (".", "is a folder"),
    ("missing/out.rccp", "the folder .*missing does not exist"),
    ("file.txt/out.rccp", "the folder .*file.txt does not exist"),
])
def test_bad_output_paths_name_the_flag(tmp_path, monkeypatch, name, message) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(OutputPathError, match=message):
        check_output_path(name, "-o")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_folder_is_refused(tmp_path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_path(folder / "out", "--report")


def test_output_folder_checks(tmp_path) -> None:
    (tmp_path / "file.txt").write_text("")
    assert check_output_folder(tmp_path / "plots", "--plot") == tmp_path / "plots"  # made when plotting
    with pytest.raises(OutputPathError, match="--plot .*file.txt: exists and is not a folder"):
        check_output_folder(tmp_path / "file.txt", "--plot")
    with pytest.raises(OutputPathError, match="--plot .*: the folder .*missing does not exist"):
        check_output_folder(tmp_path / "missing" / "plots", "--plot")


def test_json_keeps_non_finite_numbers_and_reads_numpy() -> None:
    value = {"a": math.inf, "b": [-math.inf, np.float32(1.5), (np.int64(3), np.bool_(True))], "c": math.nan,
             "d": np.arange(3, dtype=np.int8)}
    text = json_bytes(value).decode()
    assert "Infinity" not in text and "NaN" not in text
    decoded = from_json_value(json.loads(text))
    assert decoded["a"] == math.inf and decoded["b"] == [-math.inf, 1.5, [3, True]] and math.isnan(decoded["c"])
    assert decoded["d"] == [0, 1, 2] and to_json_value({"x": 1}) == {"x": 1}
