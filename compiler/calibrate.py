"""Calibration: the range of every activation that feeds a crossbar, measured on sample inputs.

Samples are seeded random inputs (as `--verify` draws them, from other seeds) or the user's
`--calibrate FILE.npz` (arrays keyed by input name; a leading axis of samples is allowed when the
array has one more dimension than the input). The range is the maximum over the samples, so too few
samples clip later inputs: small models get up to 32 random samples, large ones fewer, within a budget
of about 2·10⁹ multiply-accumulates of calibration.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.core import Module, Value
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs
from rcc.ir.interpreter import evaluate
from rcc.ir.progress import tracked
from rcc.ir.ops.nn_linear import op_macs

MIN_SAMPLES, MAX_SAMPLES = 2, 32
CALIBRATION_MACS = 2 * 10**9
CALIBRATION_SEED = 1_000_003


def default_sample_count(module: Module) -> int:
    macs = sum(op_macs(op) for op in module.ops)
    return int(min(MAX_SAMPLES, max(MIN_SAMPLES, CALIBRATION_MACS // max(macs, 1))))


def calibration_samples(module: Module, data: dict[str, np.ndarray] | None = None,
                        samples: int | None = None, flag: str = "--calibrate") -> list[dict[str, np.ndarray]]:
    """Seeded random samples, or the sets in `data` (the arrays of the file given with `flag`)."""
    if data is None:
        count = default_sample_count(module) if samples is None else samples
        return [random_inputs(module, CALIBRATION_SEED + i) for i in range(count)]
    batches: list[dict[str, np.ndarray]] = []
    for value in module.inputs:
        if value.name not in data and value.name not in module.input_defaults:
            raise RccError(f"{flag}: input {value.name!r} is missing")
        array = np.asarray(data[value.name] if value.name in data else module.input_defaults[value.name])
        if array.shape == value.type.shape:
            array = array[None]
        if array.shape[1:] != value.type.shape:
            raise RccError(f"{flag}: input {value.name!r} is {list(array.shape)}, expected "
                           f"{list(value.type.shape)} or [samples, {', '.join(map(str, value.type.shape))}]")
        for index, sample in enumerate(array.astype(value.type.np_dtype)):
            if index == len(batches):
                batches.append({})
            batches[index][value.name] = sample
    return batches


def activation_ranges(module: Module, values: list[Value], samples: list[dict[str, np.ndarray]]
                      ) -> dict[Value, tuple[float, float]]:
    """(min, max) of each of `values` over all samples."""
    ranges: dict[Value, tuple[float, float]] = {}
    for sample in tracked(samples, "calibrate"):
        env = evaluate(module, sample)
        for value in values:
            array = env[value]
            if array.dtype.kind == "f" and not np.isfinite(array).all():  # --allow-nonfinite data: skip NaN/Inf
                array = array[np.isfinite(array)]
            low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
            old = ranges.get(value, (low, high))
            ranges[value] = (min(old[0], low), max(old[1], high))
    return ranges
