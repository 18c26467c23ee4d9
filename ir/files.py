"""How rcc writes files: one writer, one output-path check, one JSON encoding. Every layer that writes
(IR text and weights, programs, reports, plots, pruned models, machine outputs) goes through here.

- `write_output(path, data)`: a regular file (or a new one) is written atomically: a temporary file in
  the same folder, created with the mode the umask gives, fsynced, then renamed over `path`; on any
  failure, and on SIGTERM or SIGHUP, the temporary file is removed. A special file (a device such as
  /dev/null, a FIFO, /dev/stdout) is opened and written directly, never replaced.
- `check_output_path(path, flag)` / `check_output_folder(path, flag)`: the checks a command runs on
  every output before doing any work, so a command that fails writes nothing.
- `check_distinct_files(outputs, inputs)`: the check, also before any work, that no output replaces an
  input or another output (`rcc m.onnx -o m.onnx`, `-o p.rccp --report p.rccp`).
- `to_json_value` / `from_json_value`: JSON has no inf or nan; a non-finite float is written as
  `{"float": "inf"}` (or "-inf", "nan") and read back as the float. numpy scalars and arrays become
  plain numbers and lists.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import stat
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rcc.ir.errors import RccError

CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class OutputPathError(RccError):
    """An output path that cannot be written: empty, a folder, in a missing or read-only folder, or a
    write that failed (disk full)."""


def is_special_file(path: str | os.PathLike) -> bool:
    """Whether `path` exists and is neither a regular file nor a folder (a device, FIFO or socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_output_path(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a Path if a file can be written there; else OutputPathError naming `flag` and the path."""
    text = os.fspath(path)
    if not text:
        raise OutputPathError(f"{flag}: the output path is empty")
    where = f"{flag} {text}"
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)) or os.path.isdir(text):
        raise OutputPathError(f"{where}: is a folder; give a file name")
    target = Path(text)
    if is_special_file(target):
        if not os.access(target, os.W_OK):
            raise OutputPathError(f"{where}: not writable")
        return target
    folder = target.parent
    if not folder.is_dir():
        raise OutputPathError(f"{where}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{where}: the folder {folder} is not writable")
    return target


PathArgument = str | os.PathLike | None


def check_distinct_files(outputs: Sequence[tuple[str, PathArgument]],
                         inputs: Sequence[tuple[str, PathArgument]] = ()) -> None:
    """OutputPathError when an output would replace an input or an earlier output. `outputs` are
    (flag, path) pairs, the flag as in `check_output_path` (`"-o"`, `"-o m.ir: its weights file"`);
    `inputs` are (what, path) pairs, `what` a noun phrase (`"the input model"`, `"the --inputs file"`).

    Paths that are None are skipped, and so are special files (`-o /dev/null --report /dev/null` is
    fine) and inputs that do not exist (their loader reports them). Two paths are one file when
    `os.path.samefile` says so (a symlink, a hard link), or, while one does not exist yet, when they
    resolve to the same absolute path. Rewriting an input in place is refused too, in every command:
    the write is atomic, but it is nearly always a slip (and for a pruned model or a program, the
    original is gone for good); writing elsewhere and renaming is one `mv` away.
    """
    taken = [(f"is {what}", Path(path)) for what, path in inputs
             if path is not None and os.path.exists(path) and not is_special_file(path)]
    for flag, path in outputs:
        if path is None or is_special_file(path):
            continue
        for clash, earlier in taken:
            if _same_file(Path(path), earlier):
                raise OutputPathError(f"{flag} {os.fspath(path)}: {clash}")
        taken.append((f"same file as {flag}", Path(path)))


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # not written yet: compare where the paths lead (realpath also survives a symlink loop)
        return os.path.realpath(first) == os.path.realpath(second)


def check_output_folder(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a Path if files can be written into it (it may not exist yet when its parent does)."""
    text = os.fspath(path)
    if not text:
        raise OutputPathError(f"{flag}: the output folder is empty")
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{flag} {text}: exists and is not a folder")
    existing = folder if folder.is_dir() else folder.parent
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {text}: the folder {existing} does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {text}: the folder {existing} is not writable")
    return folder


class _Terminated(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise _Terminated(signum)


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception while a temporary file exists (main thread only, and
    only where the signal would have killed the process anyway: a handler someone installed, or an
    ignored signal, is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in CLEANUP_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _create_temporary(path: Path) -> tuple[int, Path]:
    while True:
        temporary = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:  # mode 0o666: the umask decides, as for any file the user creates
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def write_output(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` (see the module docstring: atomic for regular files, direct for special)."""
    path = Path(path)
    try:
        _write(path, data)
    except OSError as err:  # a full disk, a folder made read-only since the check: the user's to fix
        raise OutputPathError(f"{path}: cannot write ({err.strerror or err.__class__.__name__})") from None


def _write(path: Path, data: bytes) -> None:
    if is_special_file(path):
        with open(path, "wb") as stream:
            stream.write(data)
        return
    try:
        with _signals_raise():
            handle, temporary = _create_temporary(path)
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
    except _Terminated as terminated:  # cleaned up: now die of the signal, as the default would have
        signal.raise_signal(terminated.signum)
        raise


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive of `arrays` (any key text, unlike `np.savez` keyword arguments)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)
    return buffer.getvalue()


def to_json_value(value: Any) -> Any:
    """`value` with tuples and arrays as lists, numpy scalars as Python numbers, non-finite floats as
    `{"float": "inf"}`, so `json.dumps` writes strict JSON."""
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def from_json_value(value: Any) -> Any:
    """The inverse of `to_json_value` for what JSON keeps apart (non-finite floats come back as floats)."""
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return float(value["float"])
        return {key: from_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json_value(item) for item in value]
    return value


def json_bytes(value: Any, indent: int | None = 2) -> bytes:
    """`value` as strict JSON text (see `to_json_value`), newline-terminated, UTF-8."""
    return (json.dumps(to_json_value(value), indent=indent, allow_nan=False) + "\n").encode()
