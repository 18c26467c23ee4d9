"""How much the original model amplifies a small perturbation of its input, measured in onnxruntime alone.

Integer quantisation adds rounding noise at every crossbar layer's input, about 40 dB below the signal for an
8-bit tensor. A model that passes noise through at about unit gain keeps the output near that; one that
amplifies it (a chaotic network: random weights under batch normalisation, say) loses the same decibels at
every layer's rounding, and no 8-bit machine, nor onnxruntime's own int8 quantisation, reaches the integer
verification bound on it. So when an integer verification fails, `--verify` probes the model itself: every
float input perturbed by seeded white Gaussian noise at one operand's rounding level at the target's widths
(`compiler.verify.operand_snr_db`, 40.9 dB at 8 bits), the outputs' SNR in onnxruntime against the unperturbed
run. An output that stays near the probe level says the miss is in rcc's quantisation; one that falls below
the bound says the model amplifies noise so much that rounding its input alone would miss it. One noise
draw per sample: on a chaotic model the figure moves by a few dB with the draw (a random-weight DeepLabV3,
3 samples: 14.9 to 19.4 dB over four seeds at 40.9 dB in), far less than the gains that matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from rcc.compiler.verify import snr_db

PROBE_SEED = 7_000_001

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def output_snrs(run: Runner, feeds: Sequence[dict[str, np.ndarray]], input_snr_db: float,
                names: Sequence[str] | None = None, seed: int = PROBE_SEED,
                clean: Sequence[dict[str, np.ndarray]] | None = None) -> dict[str, float]:
    """Each output's SNR (dB, summed over `feeds`) when every float input is perturbed by white noise
    `input_snr_db` below its mean power; `names` (default: every output of the first run) limits the outputs.
    An output that is not float (indices, counts, masks: no signal to add noise to), that the run does not
    return, or whose shape depends on the data (detections) gets NaN; one that the noise does not move, inf;
    one that it drives to infinity, -inf. `clean`: the runs' outputs on `feeds` when the caller has them."""
    rng = np.random.default_rng(seed)
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for index, feed in enumerate(feeds):
        unperturbed = run(feed) if clean is None else clean[index]
        moved = run({name: perturbed(value, input_snr_db, rng) for name, value in feed.items()})
        for name in unperturbed if names is None else names:
            reference, other = np.asarray(unperturbed.get(name, ())), np.asarray(moved.get(name, ()))
            measurable = name in unperturbed and reference.dtype.kind == "f" and reference.shape == other.shape
            reference64 = reference.astype(np.float64) if measurable else np.zeros(0)
            signal[name] = signal.get(name, 0.0) + float(np.sum(reference64 ** 2))
            noise[name] = noise.get(name, 0.0) + (float(np.sum((other - reference64) ** 2)) if measurable
                                                  else math.nan)
    return {name: snr_db(signal[name], noise[name]) if signal[name] > 0 else math.nan for name in signal}


def perturbed(value: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A float array plus white Gaussian noise `snr_db` below its mean power; other arrays (token ids,
    masks) as they are."""
    value = np.asarray(value)
    if value.dtype.kind != "f":
        return value
    sigma = math.sqrt(float(np.mean(value.astype(np.float64) ** 2)) / 10 ** (snr_db / 10))
    return (value + rng.standard_normal(value.shape) * sigma).astype(value.dtype)
