"""Calibration: the range of every activation that feeds a crossbar, measured on sample inputs.

Samples are seeded random inputs (as `--verify` draws them, from other seeds) or the user's
`--calibrate FILE.npz` (arrays keyed by input name; a leading axis of samples is allowed when the
array has one more dimension than the input). The range is the maximum over the samples, so too few
samples clip later inputs: small models get up to 32 random samples, large ones fewer, within a budget
of about 2·10⁹ multiply-accumulates of calibration.

How the range is chosen from what the samples produced (`--calibration-method`, METHODS):
- `max` (default): the minimum and maximum seen. Nothing is clipped, but one outlier stretches the scale
  and every other value gets fewer levels.
- `percentile`: the magnitude at the PERCENTILE-th percentile of |x| bounds the range (TensorRT's and
  onnxruntime's percentile calibration; onnxruntime's default is 99.999, TensorRT's examples 99.99):
  the rare larger values are clipped.
- `mse`: the clipping magnitude, among MSE_CANDIDATES fractions of the maximum, that minimises the mean
  squared error of quantising the seen values to the target's input bits (clipping error plus rounding
  error; NVIDIA's pytorch-quantization `mse` calibrator and OpenVINO's MSE range estimator).
Both clip only the magnitude: the sign of the range (signed or unsigned quantisation) stays the measured
one. They keep at most KEPT_VALUES values per tensor (an even stride over each sample's values).
"""

from __future__ import annotations

import numpy as np

from rcc.ir.core import Module, Value
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs
from rcc.ir.interpreter import evaluate
from rcc.ir.limits import NpzArrays
from rcc.ir.progress import tracked
from rcc.ir.ops.nn_linear import op_macs
from rcc.ir.ops.xbar import quantize_limits

MIN_SAMPLES, MAX_SAMPLES = 2, 32
CALIBRATION_MACS = 2 * 10**9
CALIBRATION_SEED = 1_000_003
METHODS = ("max", "percentile", "mse")
PERCENTILE = 99.99
MSE_CANDIDATES = np.linspace(0.05, 1.0, 96)  # clipping magnitudes tried, as fractions of the largest |x|
KEPT_VALUES = 1 << 20


def default_sample_count(module: Module) -> int:
    macs = sum(op_macs(op) for op in module.ops)
    return int(min(MAX_SAMPLES, max(MIN_SAMPLES, CALIBRATION_MACS // max(macs, 1))))


def samples_origin(data: dict[str, np.ndarray] | None, flag: str = "--calibrate") -> str:
    """What `calibration_samples(module, data)` draws from, for messages."""
    if data is None:
        return "seeded random inputs (integers below 8: give real ones with --calibrate FILE.npz)"
    return f"{flag} {data.path}" if isinstance(data, NpzArrays) and data.path is not None else flag


def calibration_samples(module: Module, data: dict[str, np.ndarray] | None = None,
                        samples: int | None = None, flag: str = "--calibrate") -> list[dict[str, np.ndarray]]:
    """Seeded random samples, or the sets in `data` (the arrays of the file given with `flag`). An input
    with a default value that `data` lacks takes its default in every set."""
    if data is None:
        count = default_sample_count(module) if samples is None else samples
        return [random_inputs(module, CALIBRATION_SEED + i) for i in range(count)]
    origin = samples_origin(data, flag)
    arrays: dict[str, np.ndarray] = {}
    defaults: dict[str, np.ndarray] = {}
    for value in module.inputs:
        if value.name not in data and value.name not in module.input_defaults:
            raise RccError(f"{origin}: input {value.name!r} is missing")
        if value.name not in data:
            defaults[value.name] = np.asarray(module.input_defaults[value.name]).astype(value.type.np_dtype)
            continue
        array = np.asarray(data[value.name])
        if array.shape == value.type.shape:
            array = array[None]
        if array.shape[1:] != value.type.shape:
            raise RccError(f"{origin}: input {value.name!r} is {list(array.shape)}, expected "
                           f"{list(value.type.shape)} or [samples, {', '.join(map(str, value.type.shape))}]")
        if not len(array):
            raise RccError(f"{origin}: input {value.name!r} has 0 samples ({list(array.shape)})")
        arrays[value.name] = array.astype(value.type.np_dtype)
    counts = {name: len(array) for name, array in arrays.items()}
    if len(set(counts.values())) > 1:
        raise RccError(f"{origin}: inputs have different sample counts "
                       f"({', '.join(f'{name}: {count}' for name, count in counts.items())})")
    return [{**defaults, **{name: array[index, ...] for name, array in arrays.items()}}   # 0-d stays an array
            for index in range(max(counts.values(), default=1))]


class ActivationObservation:
    """What the calibration samples produced at some values: each one's (min, max) and, unless `method` is
    `max`, up to KEPT_VALUES of its magnitudes; `range_of` clips a value's range for a width (once per width:
    only `mse` depends on it), so one pass over the samples serves every width a layer may get."""

    def __init__(self, method: str, ranges: dict[Value, tuple[float, float]],
                 magnitudes: dict[Value, np.ndarray]) -> None:
        self.method, self.ranges, self.magnitudes = method, ranges, magnitudes
        self._clipped: dict[tuple[Value, int | None], tuple[float, float]] = {}

    def range_of(self, value: Value, bits: int) -> tuple[float, float]:
        """`value`'s calibrated (min, max) when it is quantised to `bits`."""
        low, high = self.ranges[value]
        if self.method == "max":
            return low, high
        key = (value, bits if self.method == "mse" else None)
        if key not in self._clipped:
            peak = clipping_magnitude(self.magnitudes[value], self.method, bits, signed=low < 0)
            self._clipped[key] = (max(low, -peak), min(high, peak))
        return self._clipped[key]


def observe_activations(module: Module, values: list[Value], samples: list[dict[str, np.ndarray]],
                        method: str = "max", origin: str = "the calibration inputs") -> ActivationObservation:
    """One pass of `module` over `samples` (from `origin`, which an error running one names), keeping what
    `method` needs of each of `values`."""
    if method not in METHODS:
        raise RccError(f"--calibration-method {method!r}: choose one of {', '.join(METHODS)}")
    ranges: dict[Value, tuple[float, float]] = {}
    kept: dict[Value, list[np.ndarray]] = {value: [] for value in values}
    per_sample = max(1, KEPT_VALUES // max(len(samples), 1))
    for index, sample in enumerate(tracked(samples, "calibrate")):
        try:
            env = evaluate(module, sample)
        except RccError as error:
            raise RccError(f"calibrating on {origin}, sample {index}: {error}") from None
        for value in values:
            array = env[value]
            if array.dtype.kind == "f" and not np.isfinite(array).all():  # --allow-nonfinite data: skip NaN/Inf
                array = array[np.isfinite(array)]
            low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
            old = ranges.get(value, (low, high))
            ranges[value] = (min(old[0], low), max(old[1], high))
            if method != "max":
                flat = np.abs(array.reshape(-1).astype(np.float64))
                kept[value].append(flat[::max(1, -(-flat.size // per_sample))])
    magnitudes = {value: np.concatenate(arrays) if arrays else np.zeros(0) for value, arrays in kept.items()}
    return ActivationObservation(method, ranges, magnitudes)


def clipping_magnitude(magnitudes: np.ndarray, method: str, bits: int, signed: bool) -> float:
    """The largest magnitude `method` keeps of the seen |x| values (`percentile` or `mse`, in float64)."""
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    largest = float(magnitudes.max(initial=0.0))
    if largest == 0.0:
        return 0.0
    if method == "percentile":
        return float(np.percentile(magnitudes, PERCENTILE))
    _, limit = quantize_limits(bits, signed)
    errors = []
    error = np.empty_like(magnitudes)   # one buffer for every candidate (3x faster at 2^20 values)
    for peak in MSE_CANDIDATES * largest:
        step = peak / limit
        np.divide(magnitudes, step, out=error)
        np.round(error, out=error)
        np.minimum(error, limit, out=error)
        np.multiply(error, step, out=error)
        np.subtract(error, magnitudes, out=error)
        np.square(error, out=error)
        errors.append(float(np.mean(error)))
    return float(MSE_CANDIDATES[int(np.argmin(errors))] * largest)
