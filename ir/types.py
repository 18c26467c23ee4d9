"""Tensor types of the IR and the mapping between IR dtype names and numpy dtypes."""

from __future__ import annotations

from dataclasses import dataclass

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
_NAME_OF_DTYPE = {dtype: name for name, dtype in DTYPES.items()}


def dtype_name(dtype: np.dtype | type) -> str:
    """IR name of a numpy dtype (`float32` → `f32`); KeyError for dtypes the IR does not carry."""
    return _NAME_OF_DTYPE[np.dtype(dtype)]


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
