"""Tensor types of the IR and the mapping between IR dtype names and numpy dtypes.

Besides numpy's numbers and bool, the IR carries ONNX's narrow element types, as ml_dtypes (onnx's own
dependency) holds them: bfloat16, the float8 and float4 formats and the 4- and 2-bit integers
(`NARROW_DTYPES`). Like onnxruntime's CPU kernels, rcc stores, moves, casts, quantizes and dequantizes them
and computes on nothing else of theirs (`compiler/frontend/narrow_types.py` says which ops). numpy's files
cannot name them, so a file holds their bits as unsigned integers of the same width (`storage_view`,
`from_storage`).
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

DTYPES: dict[str, np.dtype] = {
    "f16": np.dtype(np.float16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "u8": np.dtype(np.uint8),
    "u16": np.dtype(np.uint16),
    "u32": np.dtype(np.uint32),
    "u64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}
NARROW_DTYPES: dict[str, np.dtype] = {
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "f8e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "f8e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "f8e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "f8e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "f8e8m0": np.dtype(ml_dtypes.float8_e8m0fnu),
    "f4e2m1": np.dtype(ml_dtypes.float4_e2m1fn),
    "i4": np.dtype(ml_dtypes.int4),
    "u4": np.dtype(ml_dtypes.uint4),
    "i2": np.dtype(ml_dtypes.int2),
    "u2": np.dtype(ml_dtypes.uint2),
}
DTYPES.update(NARROW_DTYPES)
_NARROW_NAMES = {dtype: name for name, dtype in NARROW_DTYPES.items()}
_NAME_OF_DTYPE = {dtype: name for name, dtype in DTYPES.items()}


def dtype_name(dtype: np.dtype | type) -> str:
    """IR name of a numpy dtype (`float32` → `f32`); KeyError for dtypes the IR does not carry."""
    return _NAME_OF_DTYPE[np.dtype(dtype)]


def is_narrow(dtype: str) -> bool:
    """Whether IR dtype `dtype` is one of ONNX's narrow types (bfloat16, float8, float4, 4- and 2-bit ints)."""
    return dtype in NARROW_DTYPES


def is_narrow_float(dtype: str) -> bool:
    """Whether IR dtype `dtype` is bfloat16, a float8 or float4 type (not a 4- or 2-bit integer)."""
    return dtype in NARROW_DTYPES and dtype[0] in "bf"


def narrow_integer_range(dtype: str) -> tuple[int, int]:
    """The integers a narrow integer type holds: i4 (−8, 7), u4 (0, 15), i2 (−2, 1), u2 (0, 3)."""
    bits = int(dtype[1:])
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dtype[0] == "i" else (0, (1 << bits) - 1)


def stand_in(array: np.ndarray) -> np.ndarray:
    """A narrow array in the numpy dtype that holds its values exactly (float32 for the narrow floats, int8 or
    uint8 for the 4- and 2-bit integers); other arrays unchanged."""
    name = _NARROW_NAMES.get(array.dtype)
    if name is None:
        return array
    return array.astype(np.float32 if is_narrow_float(name) else np.int8 if name[0] == "i" else np.uint8)


def storage_view(array: np.ndarray) -> np.ndarray:
    """`array` as a file can hold it: a narrow type's bits as unsigned integers of its width; others as they are."""
    if array.dtype in _NARROW_NAMES:
        return array.view(np.dtype(f"u{array.dtype.itemsize}"))
    return array


def from_storage(array: np.ndarray, dtype: str) -> np.ndarray:
    """The array of IR dtype `dtype` whose bits a file holds as `array` (`storage_view`'s inverse)."""
    if dtype in NARROW_DTYPES and array.dtype == np.dtype(f"u{NARROW_DTYPES[dtype].itemsize}"):
        return array.view(NARROW_DTYPES[dtype])
    return array



@dataclass(frozen=True)
class TensorType:
    """A statically shaped tensor type: `TensorType(shape=(1, 3, 32, 32), dtype="f32")`."""

    shape: tuple[int, ...]
    dtype: str = "f32"

    def __post_init__(self) -> None:
        assert self.dtype in DTYPES, f"unknown dtype {self.dtype!r}"
        assert all(isinstance(d, int) and d >= 0 for d in self.shape), f"bad shape {self.shape!r}"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @staticmethod
    def of(array: np.ndarray) -> TensorType:
        return TensorType(tuple(int(d) for d in array.shape), dtype_name(array.dtype))

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"
