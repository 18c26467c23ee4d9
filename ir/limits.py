"""Bounded input: how much rcc agrees to read or allocate for one file, archive member or tensor.

Every file a user hands rcc goes through here, so a hostile or careless input fails with one line
instead of exhausting memory or time:
- text files (IR text, TOML, `program.json`) are read up to `RCC_MAX_TEXT_BYTES` (default 64 MiB);
  devices and FIFOs (`/dev/zero`) are read no further than that either;
- `.npz` archives and `.npy` members are checked before anything is inflated: a member's declared
  size and the `.npy` header's shape × dtype must agree and stay within the tensor budget, and a
  compressed member may inflate at most `RCC_MAX_COMPRESSION_RATIO` times (default 200; zip bombs);
- a tensor, declared or computed, may take at most `RCC_MAX_TENSOR_BYTES` (default 1 GiB): the
  frontend checks every node's result and `--input-shape`, the program loader every buffer.
Genuinely huge models raise the limits through these environment variables (see README).
"""

from __future__ import annotations

import io
import lzma
import math
import os
import stat
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rcc.ir.errors import RccError
from rcc.ir.types import DTYPES

TEXT_LIMIT_ENV = "RCC_MAX_TEXT_BYTES"
TENSOR_LIMIT_ENV = "RCC_MAX_TENSOR_BYTES"
RATIO_LIMIT_ENV = "RCC_MAX_COMPRESSION_RATIO"
_DEFAULTS = {TEXT_LIMIT_ENV: 64 * 2**20, TENSOR_LIMIT_ENV: 2**30, RATIO_LIMIT_ENV: 200}
_RATIO_FREE_BYTES = 2**20  # members this small may compress any amount (an all-zero bias is fine)
_ALLOWED_KINDS = "biuf"  # no complex, object, void, string or datetime arrays


class LimitError(RccError):
    """An input larger than rcc agrees to read or allocate; the message names the input and the limit."""


def limit(name: str) -> int:
    """The current value of one limit: its environment variable if set to a positive integer, else the default."""
    text = os.environ.get(name, "")
    try:
        value = int(text)
    except ValueError:
        return _DEFAULTS[name]
    return value if value > 0 else _DEFAULTS[name]


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def _np_dtype(dtype: np.dtype | str) -> np.dtype:
    return DTYPES[dtype] if isinstance(dtype, str) and dtype in DTYPES else np.dtype(dtype)


def tensor_bytes(shape: tuple[int, ...] | list[int], dtype: np.dtype | str) -> int:
    """Bytes of a tensor of `shape` and `dtype` (a numpy dtype or an IR dtype name such as "f32")."""
    return math.prod(int(d) for d in shape) * _np_dtype(dtype).itemsize


def check_tensor_bytes(what: str, shape: tuple[int, ...] | list[int], dtype: np.dtype | str) -> None:
    """LimitError naming `what`, its shape and the bytes it would need when over the tensor budget."""
    needed, budget = tensor_bytes(shape, dtype), limit(TENSOR_LIMIT_ENV)
    if needed > budget:
        raise LimitError(f"{what}: {_np_dtype(dtype)}{list(shape)} would need {format_bytes(needed)}, over the "
                         f"{format_bytes(budget)} budget per tensor (raise {TENSOR_LIMIT_ENV} for huge models)")


def read_bounded(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of a text-sized file; LimitError when it holds more than RCC_MAX_TEXT_BYTES.
    FileNotFoundError/IsADirectoryError/OSError propagate for the caller to word."""
    budget = limit(TEXT_LIMIT_ENV)
    with open(path, "rb") as file:
        data = file.read(budget + 1)
    if len(data) > budget:
        raise LimitError(f"{what} {path}: larger than {format_bytes(budget)} (raise {TEXT_LIMIT_ENV} to read it)")
    return data


def regular_file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an input file (missing, a directory, a device), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as err:
        return f"cannot read ({err.strerror or err.__class__.__name__})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a device or pipe)"
    return None


def _read_npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the `.npy` header at the start of `stream`; ValueError on anything
    malformed. numpy lets some broken headers out as other types: an unterminated header dict as
    tokenize.TokenError (from its Python 2 fallback), `{[]: 1}` as TypeError, and a shape of bools or
    negative numbers through unchecked."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (tokenize.TokenError, SyntaxError, TypeError, RecursionError) as err:
        raise ValueError(f"malformed .npy header ({err.args[0] if err.args else err.__class__.__name__})") from None
    for size in shape:
        if isinstance(size, bool) or not 0 <= size < 2**63:
            raise ValueError(f"malformed .npy header: shape {shape!r} is not a tuple of sizes")
    return shape, fortran, dtype


def read_npy(stream: BinaryIO, available: int, what: str) -> np.ndarray:
    """One `.npy` array from `stream`, whose header is checked (dtype, shape, budget, `available` bytes)
    before the data is read; ValueError on a malformed header, LimitError over budget."""
    shape, fortran, dtype = _read_npy_header(stream)
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS:
        raise ValueError(f"dtype {dtype} is not a numeric array")
    check_tensor_bytes(what, shape, dtype)
    needed = tensor_bytes(shape, dtype)
    if needed > available:
        raise ValueError(f"header declares {dtype}{list(shape)} ({needed} bytes) but only {available} follow")
    data = stream.read(needed)
    if len(data) != needed:
        raise ValueError("truncated array data")
    array = np.frombuffer(data, dtype=dtype)
    if fortran:
        return array.reshape(shape[::-1]).transpose().copy()
    return array.reshape(shape).copy()


def read_member(archive: zipfile.ZipFile, name: str, what: str) -> bytes | np.ndarray:
    """A checked archive member: `.npy` members as arrays, others as bytes (bounded like text).
    KeyError when absent, ValueError/zipfile.BadZipFile when malformed, LimitError when too large."""
    info = archive.getinfo(name)
    ratio_limit = limit(RATIO_LIMIT_ENV)
    if info.file_size > _RATIO_FREE_BYTES and info.file_size > ratio_limit * max(info.compress_size, 1):
        raise LimitError(f"{what}: member {name} inflates {info.file_size / max(info.compress_size, 1):.0f}-fold "
                         f"(limit {ratio_limit}, {RATIO_LIMIT_ENV}); refusing a possible zip bomb")
    if not name.endswith(".npy"):
        budget = limit(TEXT_LIMIT_ENV)
        if info.file_size > budget:
            raise LimitError(f"{what}: member {name} declares {format_bytes(info.file_size)}, more than "
                             f"{format_bytes(budget)} (raise {TEXT_LIMIT_ENV} to read it)")
        with _inflating(name), archive.open(info) as member:
            return member.read(budget + 1)
    header_room = 2**16
    if info.file_size > limit(TENSOR_LIMIT_ENV) + header_room:
        raise LimitError(f"{what}: member {name} declares {format_bytes(info.file_size)}, over the "
                         f"{format_bytes(limit(TENSOR_LIMIT_ENV))} budget per tensor (raise {TENSOR_LIMIT_ENV})")
    with _inflating(name), archive.open(info) as member:
        head = member.read(min(info.file_size, header_room))
        stream = io.BytesIO(head)
        array_start = _header_length(stream)
        stream.seek(0)
        rest = _ChainedStream(stream, member)
        return read_npy(rest, info.file_size - array_start, what)


@contextmanager
def _inflating(name: str) -> Iterator[None]:
    """Corrupted compressed data as ValueError: zlib and lzma raise their own error types (bzip2 raises OSError)."""
    try:
        yield
    except (zlib.error, lzma.LZMAError) as err:
        raise ValueError(f"member {name}: corrupted compressed data ({err})") from None


def _header_length(stream: BinaryIO) -> int:
    _read_npy_header(stream)
    return stream.tell()


class _ChainedStream:
    """Reads the already buffered head of a member, then the rest of the member."""

    def __init__(self, head: io.BytesIO, tail: BinaryIO) -> None:
        self.head, self.tail = head, tail

    def read(self, size: int = -1) -> bytes:
        data = self.head.read(size)
        if size < 0:
            return data + self.tail.read()
        if len(data) < size:
            data += self.tail.read(size - len(data))
        return data


class NpzArrays(dict):
    """The arrays of an `.npz` archive by key, remembering the file they came from, so that a check made
    later (calibration's sample counts) can name it."""

    path: Path | None = None


def load_npz(path: str | os.PathLike, what: str) -> NpzArrays:
    """Every array of an `.npz` archive by key, each checked before it is inflated; LimitError or
    RccError naming `what` and the file (missing, a plain .npy, not an archive, malformed member)."""
    path = _regular_file(path, what)
    try:
        with open(path, "rb") as file:
            if file.read(6) == b"\x93NUMPY":
                raise RccError(f"{what} {path}: a plain .npy array; give an .npz archive keyed by name "
                               f"(numpy.savez(path, name=array))")
        with zipfile.ZipFile(path) as archive:
            arrays = NpzArrays()
            arrays.path = path
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    raise ValueError(f"member {name!r} is not an .npy array")
                array = read_member(archive, name, f"{what} {path} [{name[:-4]}]")
                arrays[name[:-4]] = array
            return arrays
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, KeyError, EOFError, OSError,
            NotImplementedError) as err:
        raise _unreadable(what, path, "a readable .npz archive", err) from None


def load_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """The array of one `.npy` file, its header checked before the data is read (as an archive member's);
    LimitError or RccError naming `what` and the file (missing, a device, an archive, malformed)."""
    path = _regular_file(path, what)
    try:
        with open(path, "rb") as file:
            if file.read(4) == b"PK\x03\x04":
                raise RccError(f"{what} {path}: a zip (.npz) archive; give one .npy array (numpy.save)")
            file.seek(0)
            array_start = _header_length(file)
            file.seek(0)
            return read_npy(file, os.fstat(file.fileno()).st_size - array_start, f"{what} {path}")
    except (ValueError, EOFError, OSError) as err:
        raise _unreadable(what, path, "a readable .npy array", err) from None


def _regular_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path; RccError naming `what` when it is missing, a directory, a device or a pipe."""
    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise RccError(f"{what} {path}: {problem}")
    return path


def _unreadable(what: str, path: Path, kind: str, err: Exception) -> RccError:
    """The one line for a file that is not `kind`, with the first 160 characters of why."""
    detail = " ".join(str(err).split())[:160] or err.__class__.__name__
    return RccError(f"{what} {path}: not {kind} ({detail})")
