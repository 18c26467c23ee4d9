"""Conversions to and from ONNX's narrow types (bfloat16, float8, float4, 4- and 2-bit integers), as onnxruntime's
Cast computes them; `nn.cast` calls `convert`.

- A narrow value widens exactly: a narrow float to float32, a narrow integer to int8/uint8; the wide value then
  converts as any other (floats to integers truncate toward zero). A float8 to bool tests its bits, as
  onnxruntime does (−0 is true, e8m0's 2^−127 false).
- To bfloat16, float8 and float4: round to nearest even, from float32 (integers, float16 and float64 are converted
  to float32 first, as onnxruntime does: a double rounding for some int32 and float64 values). float8
  with `saturate` (ONNX's default) clips finite values and ±inf to the format's largest finite value; without
  it, what does not fit is inf (e5m2) or NaN, except where onnxruntime's conversion departs from rounding just
  above the largest value (`_to_float8`).
  float4 e2m1 has neither inf nor NaN and always saturates (NaN becomes −0, as ml_dtypes converts it; onnxruntime
  has no float4 Cast to compare with).
- To float8 e8m0 (a power of two, 2^−127 … 2^127, and NaN): the exponent of x rounded by `round_mode` (`up`
  unless x is a power of two, `down`, or `nearest`, ties up). Values above 2^127 (inf too) and below 2^−127
  (zero and negative values too) are out of range, judged before rounding: with `saturate` they give 2^127 and
  2^−127, without it NaN.
- To 4- and 2-bit integers: round half away from zero, then keep the low bits (two's complement wrap, as int8
  wraps); NaN, ±inf and values beyond int32 give 0. Integers wrap the same way.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.types import DTYPES, NARROW_DTYPES, is_narrow, is_narrow_float, stand_in

ROUND_MODES = ("up", "down", "nearest")
_E8M0 = "f8e8m0"
_BITWISE_TRUTH = frozenset(NARROW_DTYPES[name] for name in ("f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz", "f8e8m0"))
_FLOAT8_WITH_MAXIMUM = ("f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz")   # saturate clips to their largest


def convert(x: np.ndarray, to: str, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """`x` converted to IR dtype `to` as onnxruntime's Cast converts it (module docstring)."""
    x = np.asarray(x)
    if to == "bool" and x.dtype in _BITWISE_TRUTH:   # onnxruntime tests a float8's bits: −0 is true, 2^−127 false
        return x.view(np.uint8) != 0
    x = stand_in(x)
    with np.errstate(invalid="ignore", over="ignore"):
        if not is_narrow(to):
            return x.astype(DTYPES[to])
        if to == _E8M0:
            return _to_e8m0(x, saturate, round_mode)
        if not is_narrow_float(to):
            return _to_narrow_integer(x, to)
        x = x.astype(np.float32)   # onnxruntime converts integers, float16 and float64 to float32 first
        if to in _FLOAT8_WITH_MAXIMUM:
            return _to_float8(x, to, saturate)
        return x.astype(DTYPES[to])


def _to_float8(x: np.ndarray, to: str, saturate: bool) -> np.ndarray:
    largest = float(np.finfo(DTYPES[to]).max)
    if saturate:
        return np.where(np.isnan(x), x, np.clip(x, -largest, largest)).astype(DTYPES[to])
    result = x.astype(DTYPES[to])
    # Where onnxruntime's conversion departs from rounding to nearest even just above the largest value: e4m3fn
    # gives ±448 for [480, 496) (it reads the NaN code's mantissa as 448's), e5m2 NaN for [61440, 65536).
    magnitude = np.abs(x)
    if to == "f8e4m3fn":
        result = np.where((magnitude >= 480) & (magnitude < 496), np.copysign(largest, x), result).astype(DTYPES[to])
    elif to == "f8e5m2":
        result = np.where((magnitude >= 61440) & (magnitude < 65536), np.nan, result).astype(DTYPES[to])
    return result


def _to_narrow_integer(x: np.ndarray, to: str) -> np.ndarray:
    bits = int(to[1:])
    if x.dtype.kind == "f":
        exact = x.astype(np.float64)   # x + 0.5 rounds nothing below 2^52 in float64
        rounded = np.trunc(exact + np.copysign(0.5, exact))
        in_int32 = np.isfinite(rounded) & (np.abs(rounded) < 2.0 ** 31)
        x = np.where(in_int32, rounded, 0).astype(np.int64)
    low = x.astype(np.int64) & ((1 << bits) - 1)
    if to[0] == "i":
        low = np.where(low >= 1 << (bits - 1), low - (1 << bits), low)
    return low.astype(DTYPES[to])


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    assert round_mode in ROUND_MODES, round_mode
    x = np.asarray(x, dtype=np.float32).astype(np.float64)   # onnxruntime converts to float32 first
    fraction, exponent = np.frexp(np.abs(x))                 # |x| = fraction · 2^exponent, fraction in [0.5, 1)
    power = exponent.astype(np.int64) - 1                    # |x| = (1 + excess) · 2^power
    excess = 2 * fraction - 1
    if round_mode == "up":
        power = power + (excess > 0)
    elif round_mode == "nearest":
        power = power + (excess >= 0.5)
    positive = (x > 0) & np.isfinite(x)
    over = np.isinf(x) & (x > 0) | positive & (x > 2.0 ** 127)
    under = ~np.isnan(x) & ~over & (~positive | (x < 2.0 ** -127))   # judged before rounding, as overflow is
    code = np.clip(power + 127, 0, 254)
    code = np.where(over, 254 if saturate else 255, code)
    code = np.where(under, 0 if saturate else 255, code)
    code = np.where(np.isnan(x), 255, code)
    return code.astype(np.uint8).view(DTYPES[_E8M0])
