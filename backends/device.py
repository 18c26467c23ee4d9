"""The ReRAM device a target's cells are made of: how a cell's conductance departs from the level it was
programmed to. A `Device` is a frozen, validated value; each non-ideality is switched on by its own field
and off by its default, so `Device()` (the `ideal` preset) is today's exact machine, bit for bit.

    device = load_device("reram")                 # a preset: ideal, reram, pcm-aihwkit, mnsim
    device = load_device("my-chip.toml")          # keys at top level or in a [device] table
    device = device.with_overrides(time_s=3600.0, stuck_off_rate=0.09)

Conductances are in µS; level l of a cell with L = 2^cell_bits − 1 is programmed to the target
g(l) = g_min + (g_max − g_min)·l/L with g_min = g_max / on_off_ratio (an infinite ratio: g_min = 0), and
the ADC reads a column's current in steps of Δg = (g_max − g_min)/L (runtime/devices.py says how).

Non-idealities (each formula's source is beside its coefficients in rcc.runtime.devices):
- programming noise: `none`, `pcm` (aihwkit PCMLikeNoiseModel), `reram` (aihwkit ReRamWan2022NoiseModel,
  Wan et al., Nature 2022) or `constant` (σ = `programming_sigma` µS), scaled by `programming_noise_scale`;
- read noise: each read of a driven cell adds N(0, (read_noise·g_max)²) (aihwkit's additive-constant weight
  noise), drawn per conversion and column as their sum; with `drift = "pcm"` also aihwkit's accumulated
  1/f noise at the inference time;
- drift: `none`, `pcm` (ν per device from aihwkit's fit) or `fixed` (ν ~ N(drift_nu_mean, drift_nu_std));
  G(t) = G₀·((t + t₀)/t₀)^(−ν) at `time_s` after programming, with aihwkit's global drift compensation;
- stuck-at faults: rates of cells stuck at the high-resistance state (g_min, reads as zero) and at the
  low-resistance state (g_max, reads as the largest level), drawn per chip from `fault_seed`;
- IR drop: `wire_resistance` Ω per wire segment between neighbouring cells (first order, see devices.py);
- ADC offset (in LSB) and gain error (relative).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from os import PathLike
from typing import Any

from rcc.backends.target import read_preset_or_file
from rcc.ir.errors import RccError

PRESETS = ("ideal", "reram", "pcm-aihwkit", "mnsim")
PROGRAMMING_NOISE = ("none", "pcm", "reram", "constant")
DRIFT = ("none", "pcm", "fixed")


class DeviceError(RccError):
    """A device option out of range, a device file that cannot be used, or an unusable fault map."""


@dataclass(frozen=True)
class Device:
    """One cell technology and its non-idealities; validated on construction."""

    name: str = "ideal"
    g_max: float = 25.0                  # µS
    on_off_ratio: float = math.inf       # g_max / g_min
    programming_noise: str = "none"
    programming_noise_scale: float = 1.0
    programming_sigma: float = 0.0       # µS, for programming_noise = "constant"
    read_noise: float = 0.0              # σ of one read of one cell, as a fraction of g_max
    drift: str = "none"
    drift_nu_mean: float = 0.0           # for drift = "fixed"
    drift_nu_std: float = 0.0
    drift_t0_s: float = 20.0             # aihwkit PCMLikeNoiseModel t_0 = 20 s
    drift_compensation: bool = True
    time_s: float = 0.0                  # inference time after programming
    stuck_off_rate: float = 0.0          # cells stuck at the high-resistance state (read as zero)
    stuck_on_rate: float = 0.0           # cells stuck at the low-resistance state (read as the top level)
    fault_seed: int = 0                  # which chip: the random fault map's seed
    wire_resistance: float = 0.0         # Ω per segment
    adc_offset: float = 0.0              # LSB
    adc_gain_error: float = 0.0          # relative

    def __post_init__(self) -> None:
        self.validate()

    @property
    def g_min(self) -> float:
        return 0.0 if math.isinf(self.on_off_ratio) else self.g_max / self.on_off_ratio

    @property
    def has_faults(self) -> bool:
        return self.stuck_off_rate > 0 or self.stuck_on_rate > 0

    @property
    def is_ideal(self) -> bool:
        """Whether every cell reads exactly its level (the machine's exact fast path applies)."""
        ideal = Device()
        return all(getattr(self, f.name) == getattr(ideal, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("name", "g_max", "fault_seed", "drift_t0_s", "drift_compensation",
                                     "programming_noise_scale", "time_s"))

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = {"str": str, "bool": bool, "int": int}.get(str(f.type), float)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise DeviceError(f"device option {f.name!r} must be {str(f.type)}, got {value!r}")
        if self.programming_noise not in PROGRAMMING_NOISE:
            raise DeviceError(f"device option 'programming_noise' must be one of {', '.join(PROGRAMMING_NOISE)}, "
                              f"got {self.programming_noise!r}")
        if self.drift not in DRIFT:
            raise DeviceError(f"device option 'drift' must be one of {', '.join(DRIFT)}, got {self.drift!r}")
        for name in ("stuck_off_rate", "stuck_on_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DeviceError(f"device option {name!r} is a rate in [0, 1], got {getattr(self, name)}")
        if self.stuck_off_rate + self.stuck_on_rate > 1.0:
            raise DeviceError("device stuck_off_rate + stuck_on_rate exceeds 1")
        if not (self.g_max > 0 and math.isfinite(self.g_max)):
            raise DeviceError(f"device option 'g_max' must be a positive number of µS, got {self.g_max}")
        if not self.on_off_ratio > 1:
            raise DeviceError(f"device option 'on_off_ratio' must exceed 1 (inf for ideal), got {self.on_off_ratio}")
        for name in ("programming_noise_scale", "programming_sigma", "read_noise", "drift_nu_mean", "drift_nu_std",
                     "time_s", "wire_resistance"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise DeviceError(f"device option {name!r} must be a finite number ≥ 0, got {value}")
        if not 0 <= self.fault_seed < 2**63:    # the seeds numpy's generators accept (as --seed allows)
            raise DeviceError(f"device option 'fault_seed' must be between 0 and 2^63 - 1, got {self.fault_seed}")
        if not self.drift_t0_s > 0:
            raise DeviceError(f"device option 'drift_t0_s' must be > 0, got {self.drift_t0_s}")
        for name in ("adc_offset", "adc_gain_error"):
            if not math.isfinite(getattr(self, name)):
                raise DeviceError(f"device option {name!r} must be finite")

    def with_overrides(self, **changes: Any) -> Device:
        """A validated copy with the changes that are not None applied."""
        unknown = sorted(changes.keys() - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise DeviceError(f"unknown device option {unknown[0]!r}")
        updates = {key: value for key, value in changes.items() if value is not None}
        return dataclasses.replace(self, **updates) if updates else self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def device_from_dict(data: dict[str, Any], origin: str) -> Device:
    """The device a parsed TOML file describes: options at top level or in a [device] table (other tables,
    such as a target file's [target], are left to their readers)."""
    options = data.get("device", None)
    if options is None:
        options = {key: value for key, value in data.items() if not isinstance(value, dict)}
    elif not isinstance(options, dict):
        raise DeviceError(f"{origin}: 'device' must be a table of options, got {options!r}")
    names = [f.name for f in dataclasses.fields(Device)]
    for key in options:
        if key not in names:
            raise DeviceError(f"{origin}: unknown device key {key!r} (known: {', '.join(names)})")
    try:
        return Device(**options)
    except DeviceError as err:
        raise DeviceError(f"{origin}: {err}") from None


def load_device(spec: str | PathLike[str]) -> Device:
    """A preset by name or a TOML file; DeviceError naming the file and key on anything unusable."""
    data, origin = read_preset_or_file(spec, PRESETS, "device-{name}.toml", DeviceError, "--device")
    return device_from_dict(data, origin)


_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|m|min|h|d|y)?\s*")
_SECONDS = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "y": 365.25 * 86400.0}


def parse_duration(text: str, option: str = "--time") -> float:
    """`"1h"`, `"30s"`, `"2d"`, `"1y"` or plain seconds → seconds."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise DeviceError(f"{option} {text!r}: give a duration such as 30s, 10m, 1h, 2d or 1y")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_rates(text: str, option: str = "--faults") -> tuple[float, float]:
    """`"0.09,0.01"` → (stuck-off rate, stuck-on rate), each in [0, 1]."""
    parts = text.split(",")
    try:
        off, on = (float(part) for part in parts)
    except ValueError:
        raise DeviceError(f"{option} {text!r}: give RATE_OFF,RATE_ON such as 0.09,0.01") from None
    for rate in (off, on):
        if not 0.0 <= rate <= 1.0:
            raise DeviceError(f"{option} {text!r}: each rate must be in [0, 1]")
    return off, on
