"""The design space of a sweep: the keys a point may set, `--grid KEY=VALUES` parsing, the grid's points,
and how one point becomes the arguments of `compile_model` and `load_chip`.

    space = parse_grid(["xbar=64x64,128x128", "adc_bits=4:9", "packing=dense,best"])
    points = grid_points(space)          # [{"xbar": "64x64", "adc_bits": 4, "packing": "dense"}, ...]
    check_points(points)                 # SweepError naming the keys of the first unusable point
    settings = point_settings(points[0]) # Target, compile options, cost model, verify seed

A point is a plain dict of canonical values (ints, strings, None for "auto"), so it travels to Dask
workers, into a results file and back unchanged. Every key belongs to one group (`target`, `compile`,
`cost`, `verify`, `device`); a new option plugs in with `register_key` and a group that `point_settings`
routes. Device keys (`device`, `device_seed`, `faults=OFF/ON`, `fault_aware`, `time`) only matter to the
accuracy a sweep measures with `--data` (`check_device_keys`). Values are lists separated by commas; whole-number keys also take
inclusive ranges `LOW:HIGH` or `LOW:HIGH:STEP` (`adc_bits=4:9` is 4, 5, 6, 7, 8, 9); a key holds at most
MAX_KEY_VALUES values and a grid MAX_GRID_POINTS points, counted before anything is listed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcc.backends.chip import load_chip
from rcc.backends.device import PRESETS as DEVICE_PRESETS
from rcc.backends.device import Device, load_device, parse_duration, parse_rates
from rcc.backends.packing import MODES as PACKING_MODES
from rcc.backends.target import AUTO, ENCODINGS, Target, parse_xbar
from rcc.compiler.pass_context import DECONV_PASSES, MIXED_PRECISION_WIDTHS, PRECISIONS, PruneBudget
from rcc.compiler.passes.mixed_precision import mixed_precision_goal
from rcc.ir.errors import RccError

Point = dict[str, Any]
Value = int | str | None


class SweepError(RccError):
    """A sweep the user described wrongly: a bad grid, search, objective or results file."""


@dataclass(frozen=True)
class SweepKey:
    """One option a sweep point can set: its group, how a value's text parses, and what it means."""

    name: str
    group: str  # "target", "compile", "cost", "verify" or "device": who consumes the value (see point_settings)
    parse: Callable[[str], Value]
    help: str
    text: bool = False  # values are strings (kept as text when a CSV results file is read back)
    unset: str = "auto"  # what a value of None means, as tables print it


KEYS: dict[str, SweepKey] = {}


def register_key(key: SweepKey) -> None:
    """Make `key` usable in `--grid` (a device model or data-set option registers itself here)."""
    assert key.name not in KEYS, f"sweep key {key.name!r} registered twice"
    KEYS[key.name] = key


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _whole_or_auto(text: str) -> int | None:
    return None if text.lower() == "auto" else _whole(text)


def _choice(choices: tuple[str, ...] | list[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"choose from {', '.join(choices)}")
        return text
    return parse


def _xbar(text: str) -> str:
    rows, cols = parse_xbar(text)
    return f"{rows}x{cols}"


def _prune(text: str) -> str | None:
    if text.lower() == "none":
        return None
    PruneBudget.parse(text)
    return text


def _mixed_precision(text: str) -> str | None:
    """`none`, `auto` or an SNR goal in dB (as `--mixed-precision`), kept as text."""
    if text.lower() == "none":
        return None
    mixed_precision_goal(text, Target())
    return text


def _cost_model(text: str) -> str:
    load_chip(text)  # a preset name or a readable cost file; ChipError names it otherwise
    return text


register_key(SweepKey("xbar", "target", _xbar, "crossbar size ROWSxCOLS (sets xbar_rows and xbar_cols)", text=True))
for _field in dataclasses.fields(Target):
    if _field.name == "encoding":
        register_key(SweepKey("encoding", "target", _choice(ENCODINGS), "how weight signs are stored", text=True))
    elif _field.name in ("adc_bits", "chips"):
        register_key(SweepKey(_field.name, "target", _whole_or_auto, f"target {_field.name}, a number or auto"))
    else:
        register_key(SweepKey(_field.name, "target", _whole, f"target {_field.name}"))
register_key(SweepKey("precision", "compile", _choice(PRECISIONS), "int (bit-accurate) or float", text=True))
register_key(SweepKey("packing", "compile", _choice(list(PACKING_MODES)), "sparse packing mode", text=True))
register_key(SweepKey("deconv", "compile", _choice(list(DECONV_PASSES)), "transposed-convolution lowering", text=True))
register_key(SweepKey("prune", "compile", _prune, "prune budget: FRACTION, error=MAX or none", text=True,
                      unset="none"))
register_key(SweepKey("mixed_precision", "compile", _mixed_precision,
                      "SNR goal of the mixed-precision pass: none, auto or dB", text=True, unset="none"))
register_key(SweepKey("mixed_precision_widths", "compile", _choice(MIXED_PRECISION_WIDTHS),
                      "what the mixed-precision pass may widen: auto, both, inputs or weights", text=True))
register_key(SweepKey("cost_model", "cost", _cost_model, "cost preset (isaac, puma) or FILE.toml", text=True))
register_key(SweepKey("seed", "verify", _whole, "seed of the random verification inputs"))


def _rates(text: str) -> str:
    """`OFF/ON` stuck-at rates (a slash, since commas separate a key's values), e.g. 0.09/0.01."""
    if text.count("/") != 1:
        raise ValueError("give the stuck-off and stuck-on rates as OFF/ON, like 0.09/0.01")
    parse_rates(text.replace("/", ","), "faults")
    return text


def _yes_no(text: str) -> int:
    choices = {"yes": 1, "true": 1, "on": 1, "1": 1, "no": 0, "false": 0, "off": 0, "0": 0}
    if text.lower() not in choices:
        raise ValueError("choose yes or no")
    return choices[text.lower()]


def _duration(text: str) -> str:
    parse_duration(text, "time")
    return text


register_key(SweepKey("device", "device", _choice(list(DEVICE_PRESETS)), "device preset of the --data accuracy",
                      text=True))
register_key(SweepKey("device_seed", "device", _whole, "first device-noise seed of the --data trials"))
register_key(SweepKey("faults", "device", _rates, "stuck-at rates OFF/ON, like 0.09/0.01", text=True))
register_key(SweepKey("fault_aware", "device", _yes_no, "map around stuck cells (yes or no)"))
register_key(SweepKey("time", "device", _duration, "inference time after programming: 30s, 1h, 1y", text=True))
DEVICE_KEYS = tuple(name for name, key in KEYS.items() if key.group == "device")


MAX_KEY_VALUES = 100_000  # of one key: far beyond any useful sweep (each point is a compile)
MAX_GRID_POINTS = 1_000_000  # of the whole grid: every point is listed and checked before the sweep starts


def _values_of(key: SweepKey, text: str) -> list[Value]:
    """The values of one `--grid` item's right-hand side; ValueError or RccError when one does not parse or
    the ranges hold more than MAX_KEY_VALUES (counted before any range is listed)."""
    values: list[Value] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError("an empty value")
        if ":" in item and key.parse in (_whole, _whole_or_auto):
            parts = item.split(":")
            if len(parts) not in (2, 3):
                raise ValueError(f"{item!r} is not a range LOW:HIGH or LOW:HIGH:STEP")
            low, high, step = _whole(parts[0]), _whole(parts[1]), _whole(parts[2]) if len(parts) == 3 else 1
            if step < 1:
                raise ValueError(f"range {item!r}: the step must be a positive whole number")
            if low > high:
                raise ValueError(f"range {item!r} is empty")
            count = len(values) + (high - low) // step + 1
            if count > MAX_KEY_VALUES:
                raise ValueError(f"{count:,} values, over the limit of {MAX_KEY_VALUES:,} per key")
            values += range(low, high + 1, step)
        else:
            values.append(key.parse(item))
    return list(dict.fromkeys(values))  # repeated values would be repeated points


def parse_grid(items: list[str]) -> dict[str, list[Value]]:
    """`["KEY=V1,V2", "KEY=LOW:HIGH", ...]` → key → values, in the order given; SweepError naming the key."""
    space: dict[str, list[Value]] = {}
    for item in items:
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals:
            raise SweepError(f"--grid {item!r}: expected KEY=VALUES, like adc_bits=4:9")
        if name not in KEYS:
            raise SweepError(f"--grid {name}: unknown key (known: {', '.join(sorted(KEYS))})")
        if name in space:
            raise SweepError(f"--grid {name}: given twice; list its values once, separated by commas")
        try:
            space[name] = _values_of(KEYS[name], text)
        except (ValueError, RccError) as err:
            raise SweepError(f"--grid {name}={text}: {str(err).splitlines()[0]}") from None
    if "xbar" in space and {"xbar_rows", "xbar_cols"} & space.keys():
        raise SweepError("--grid xbar: give either xbar or xbar_rows/xbar_cols, not both")
    points = math.prod(len(values) for values in space.values())
    if points > MAX_GRID_POINTS:
        sizes = " × ".join(f"{len(values):,} {name}" for name, values in space.items())
        raise SweepError(f"--grid: {points:,} points ({sizes}), over the limit of {MAX_GRID_POINTS:,}")
    return space


def grid_points(space: dict[str, list[Value]]) -> list[Point]:
    """Every combination of the space's values, the last key varying fastest."""
    names = list(space)
    return [dict(zip(names, combination)) for combination in itertools.product(*space.values())]


@dataclass(frozen=True)
class PointSettings:
    """What one point means: the target, `compile_model`'s keyword options, the cost model and verify seed."""

    target: Target
    compile_options: dict[str, Any]
    cost_model: str = "isaac"
    seed: int = 0
    device: Device = Device()
    device_seed: int = 0
    fault_aware: bool = False


def point_settings(point: Point) -> PointSettings:
    """The settings of `point` (keys it leaves out keep rcc's defaults); RccError when they are unusable."""
    by_group: dict[str, dict[str, Value]] = {}
    for name, value in point.items():
        by_group.setdefault(KEYS[name].group, {})[name] = value
    target_options: dict[str, Any] = dict(by_group.get("target", {}))
    if "xbar" in target_options:
        target_options["xbar_rows"], target_options["xbar_cols"] = parse_xbar(target_options.pop("xbar"))
    for name in ("adc_bits", "chips"):
        if name in target_options and target_options[name] is None:
            target_options[name] = AUTO
    compile_options: dict[str, Any] = dict(by_group.get("compile", {}))
    if compile_options.get("prune") is not None:
        compile_options["prune"] = PruneBudget.parse(compile_options["prune"])
    target = Target().with_overrides(**target_options)
    if compile_options.get("mixed_precision") is not None:
        compile_options["mixed_precision"] = mixed_precision_goal(compile_options["mixed_precision"], target)
    device_options = by_group.get("device", {})
    return PointSettings(target, compile_options,
                         by_group.get("cost", {}).get("cost_model", "isaac"),
                         by_group.get("verify", {}).get("seed", 0), _device_of(device_options),
                         device_options.get("device_seed", 0), bool(device_options.get("fault_aware", 0)))


def _device_of(options: dict[str, Value]) -> Device:
    """The device a point's device keys describe (the `--device`, `--faults` and `--time` flags of rcc eval)."""
    device = load_device(options["device"]) if options.get("device") is not None else Device()
    rates = parse_rates(options["faults"].replace("/", ","), "faults") if options.get("faults") else (None, None)
    time_s = parse_duration(options["time"], "time") if options.get("time") is not None else None
    return device.with_overrides(time_s=time_s, stuck_off_rate=rates[0], stuck_on_rate=rates[1])


def check_device_keys(space: dict[str, list[Value]], has_data: bool) -> None:
    """SweepError naming the first device key of a sweep without `--data` (only accuracy sees a device)."""
    used = [name for name in space if name in DEVICE_KEYS]
    if used and not has_data:
        raise SweepError(f"--grid {used[0]}: device keys set the device the --data accuracy is measured on; "
                         f"give --data X.npz (or drop the key)")


def describe(point: Point) -> str:
    return ", ".join(f"{name}={'auto' if value is None else value}" for name, value in point.items())


def check_points(points: list[Point]) -> None:
    """SweepError naming the point's keys and values when any point's settings are unusable together
    (`--cell-bits 8` with 8-bit weights, a crossbar narrower than one weight's slices, ...)."""
    for point in points:
        try:
            point_settings(point)
        except RccError as err:
            raise SweepError(f"--grid {describe(point)}: {str(err).splitlines()[0]}") from None


def point_id(model_digest: str, point: Point, data_digest: str | None = None) -> str:
    """A stable name of one (model, point) pair, and of the `--data` set when there is one: resumed sweeps
    recognise finished points by it."""
    parts = [model_digest, sorted(point.items())] + ([] if data_digest is None else [data_digest])
    text = json.dumps(parts, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]
