"""The accelerator a cost is computed for: its hierarchy (arrays → cores → tiles → chip), converters,
timing, and every component's power and area, loaded from TOML presets that cite a source per figure.

    chip = load_chip("isaac")               # backends/presets/isaac.toml
    chip = load_chip("my_chip.toml")        # a file with the same [chip] and [cost.*] tables

A preset file has one `[chip]` table (hierarchy, crossbar read time, digital clock, ADC and DAC; optionally
the vector unit's MAC energy, a row write's time and energy and the cells' endurance) and one
`[cost.<component>]` table per component group:

    [cost.adc]
    level = "core"          # the group repeats per core (ISAAC's IMA), per tile, or once per chip
    event = "conversion"    # what the group does once per counted event (see EVENTS), or a list of them
    count = 8               # instances in the group (for the record; figures are group totals)
    power_mw = 16.0         # dynamic power of the whole group at full activity
    static_mw = 0.0         # leakage of the whole group, where the source gives it
    area_mm2 = 0.0096
    source = "ISAAC (Shafiee et al., ISCA 2016) Table I"

Figures are group totals, as ISAAC's Table I gives them; the energy of one event is the group's power
over the events it does per nanosecond at full activity (`backends/cost_model.py`). Digital components
state that rate (`events_per_cycle` at the chip's clock); the crossbar pipeline's rates follow from the
hierarchy (arrays per core per read, ADCs × sample rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from typing import Any

from rcc.backends.target import CHIP_PRESETS as PRESETS, read_preset_or_file
from rcc.ir.errors import RccError

LEVELS = ("core", "tile", "chip")
# event → the energy breakdown's component it is charged to
EVENTS = {
    "array_read": "arrays",          # one array read for one input bit-slice
    "row_drive": "dacs",             # one DAC driving one row for one read
    "sample": "sample_hold",         # one column sampled and held for its ADC
    "conversion": "adcs",            # one ADC conversion
    "shift_add": "shift_add",        # one converted column shifted and added
    "input_register": "registers",   # one array's inputs read from the input register
    "output_register": "registers",  # one shift-and-add result written to the output register
    "buffer_byte": "buffer",         # one byte read from or written to the tile buffer
    "bus_byte": "network",           # one byte over the buffer-to-core bus
    "hop_byte": "network",           # one byte through one router
    "vector_op": "vector_unit",      # one vector-unit operation (`vector_lanes` elements)
    "accumulation": "vector_unit",   # one digital add merging row tiles and sign arrays
    "output_byte": "registers",      # one byte of a layer's output staged in the tile's output register
    "offchip_byte": "offchip",       # one byte over the off-chip link
}
# Events whose full-activity rate the preset states (events per digital clock cycle, per group).
STATED_RATE = frozenset({"buffer_byte", "bus_byte", "hop_byte", "vector_op", "accumulation", "output_byte"})
_CHIP_KEYS = {
    "name": str, "source": str, "arrays_per_core": int, "cores_per_tile": int, "tiles_per_chip": int,
    "xbar_rows": int, "xbar_cols": int, "cell_bits": int, "xbar_read_ns": float, "clock_ghz": float,
    "adcs_per_core": int, "adc_bits": int, "adc_gsps": float, "dac_bits": int,
}
# Figures of work outside the analog pipeline, optional in a preset (a file without them gets these):
# a digital multiply-accumulate of the vector unit, integer (8-bit product into a 32-bit sum: 0.2 + 0.1 pJ)
# and float32 (3.7 + 0.9 pJ), from Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm; a write of one
# array row, 50.88 ns and 3.91 nJ (PipeLayer, Song et al., HPCA 2017, §6.1, from NVSim); and a cell's write
# endurance, 10^12 cycles (Lee et al., "A fast, high-endurance and scalable non-volatile memory device made
# from asymmetric Ta2O5−x/TaO2−x bilayer structures", Nature Materials 10, 2011).
OPTIONAL_CHIP_KEYS = {"vector_mac_pj": 0.3, "vector_float_mac_pj": 4.6, "write_row_ns": 50.88,
                      "write_row_pj": 3910.0, "cell_endurance": 1e12}
_COMPONENT_KEYS = {
    "level": str, "event": list, "count": int, "power_mw": float, "static_mw": float, "area_mm2": float,
    "shared_by": int, "events_per_cycle": float, "bytes_per_ns": float, "source": str, "derivation": str,
}
_COMPONENT_REQUIRED = ("level", "event", "power_mw", "area_mm2", "source")
_MAY_BE_ZERO = frozenset({"static_mw"})


class ChipError(RccError):
    """A cost model that cannot be used: unknown preset, missing or malformed file, a bad figure."""


@dataclass(frozen=True)
class Component:
    """One group of identical components: powers and area are the group's totals."""

    name: str
    level: str
    events: tuple[str, ...]
    power_mw: float
    area_mm2: float
    source: str
    static_mw: float = 0.0
    count: int = 1
    shared_by: int = 1             # groups of this many tiles share one (ISAAC's router: 4)
    events_per_cycle: float = 0.0  # stated full-activity rate of a digital component
    bytes_per_ns: float = 0.0      # the off-chip link's bandwidth
    derivation: str = ""



@dataclass(frozen=True)
class Chip:
    """An accelerator's organisation, timing and component costs; validated on construction."""

    name: str
    source: str
    arrays_per_core: int
    cores_per_tile: int
    tiles_per_chip: int
    xbar_rows: int
    xbar_cols: int
    cell_bits: int
    xbar_read_ns: float
    clock_ghz: float
    adcs_per_core: int
    adc_bits: int
    adc_gsps: float
    dac_bits: int
    components: tuple[Component, ...]
    vector_mac_pj: float = OPTIONAL_CHIP_KEYS["vector_mac_pj"]
    vector_float_mac_pj: float = OPTIONAL_CHIP_KEYS["vector_float_mac_pj"]
    write_row_ns: float = OPTIONAL_CHIP_KEYS["write_row_ns"]
    write_row_pj: float = OPTIONAL_CHIP_KEYS["write_row_pj"]
    cell_endurance: float = OPTIONAL_CHIP_KEYS["cell_endurance"]

    def __post_init__(self) -> None:
        for key, kind in {**_CHIP_KEYS, **dict.fromkeys(OPTIONAL_CHIP_KEYS, float)}.items():
            _check_value(f"chip.{key}", getattr(self, key), kind)
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ChipError(f"cost: component {_first_repeat(names)!r} is given twice")
        for component in self.components:
            _check_component(component)

    @property
    def arrays_per_tile(self) -> int:
        return self.arrays_per_core * self.cores_per_tile

    def of_event(self, event: str) -> list[Component]:
        return [c for c in self.components if event in c.events]

    def instances_per_tile(self, component: Component) -> float:
        """How many of this group one tile holds (a fraction for groups tiles share)."""
        if component.level == "core":
            return self.cores_per_tile
        if component.level == "tile":
            return 1.0 / component.shared_by
        return 0.0

    def tile_power_mw(self) -> float:
        """A tile's power at full activity, its share of shared groups included."""
        return sum(self.instances_per_tile(c) * (c.power_mw + c.static_mw) for c in self.components)

    def tile_area_mm2(self) -> float:
        return sum(self.instances_per_tile(c) * c.area_mm2 for c in self.components)

    def chip_power_mw(self) -> float:
        """The whole chip at full activity: every tile plus the chip-level groups (off-chip links)."""
        chip_level = sum(c.power_mw + c.static_mw for c in self.components if c.level == "chip")
        return self.tiles_per_chip * self.tile_power_mw() + chip_level

    def chip_area_mm2(self) -> float:
        chip_level = sum(c.area_mm2 for c in self.components if c.level == "chip")
        return self.tiles_per_chip * self.tile_area_mm2() + chip_level

    def tile_static_mw(self) -> float:
        return sum(self.instances_per_tile(c) * c.static_mw for c in self.components)

    def chip_static_mw(self) -> float:
        return sum(c.static_mw for c in self.components if c.level == "chip")


def _first_repeat(names: list[str]) -> str:
    return next(name for index, name in enumerate(names) if name in names[:index])


def _check_value(key: str, value: Any, kind: type) -> None:
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise ChipError(f"{key} must be a non-empty string, got {value!r}")
        return
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
        raise ChipError(f"{key} must be a {'whole ' if kind is int else ''}number, got {value!r}")
    if key.rsplit(".", 1)[-1] in _MAY_BE_ZERO:
        if value < 0:
            raise ChipError(f"{key} must not be negative, got {value!r}")
    elif value <= 0:
        raise ChipError(f"{key} must be positive, got {value!r}")


def _check_component(component: Component) -> None:
    key = f"cost.{component.name}"
    if component.level not in LEVELS:
        raise ChipError(f"{key}.level must be one of {', '.join(LEVELS)}, got {component.level!r}")
    unknown = [event for event in component.events if event not in EVENTS]
    if not component.events or unknown:
        raise ChipError(f"{key}.event must be one of {', '.join(EVENTS)} (or a list of them), "
                        f"got {unknown[0] if unknown else '[]'!r}")
    for name in ("power_mw", "area_mm2", "static_mw", "count", "shared_by"):
        _check_value(f"{key}.{name}", getattr(component, name), int if name in ("count", "shared_by") else float)
    _check_value(f"{key}.source", component.source, str)
    if STATED_RATE & set(component.events):
        _check_value(f"{key}.events_per_cycle", component.events_per_cycle, float)
    if "offchip_byte" in component.events:
        _check_value(f"{key}.bytes_per_ns", component.bytes_per_ns, float)


def load_chip(spec: str | PathLike[str]) -> Chip:
    """A preset by name (`isaac`, `puma`) or a TOML file; ChipError naming the key on anything unusable."""
    data, origin = read_preset_or_file(spec, PRESETS, "{name}.toml", ChipError, "--cost-model")
    return chip_from_dict(data, origin)


def chip_from_dict(data: dict[str, Any], origin: str) -> Chip:
    """The chip a parsed preset describes; errors are prefixed with `origin` and name the key."""
    try:
        return _chip_from_dict(data)
    except ChipError as err:
        raise ChipError(f"{origin}: {err}") from None


def _chip_from_dict(data: dict[str, Any]) -> Chip:
    extra = sorted(data.keys() - {"chip", "cost"})
    if extra:
        raise ChipError(f"unknown table or key {extra[0]!r} (expected [chip] and [cost.*])")
    chip = _table(data, "chip")
    cost = _table(data, "cost")
    for key in chip:
        if key not in _CHIP_KEYS and key not in OPTIONAL_CHIP_KEYS:
            raise ChipError(f"unknown key 'chip.{key}' (known: {', '.join([*_CHIP_KEYS, *OPTIONAL_CHIP_KEYS])})")
    for key in _CHIP_KEYS:
        if key not in chip:
            raise ChipError(f"missing key 'chip.{key}'")
        _check_value(f"chip.{key}", chip[key], _CHIP_KEYS[key])
    if not cost:
        raise ChipError("no [cost.<component>] tables")
    components = tuple(_component(name, _table(cost, name, "cost.")) for name in cost)
    optional = {key: chip[key] for key in OPTIONAL_CHIP_KEYS if key in chip}
    for key, value in optional.items():
        _check_value(f"chip.{key}", value, float)
    return Chip(**{key: (float(chip[key]) if kind is float else chip[key]) for key, kind in _CHIP_KEYS.items()},
                components=components, **{key: float(value) for key, value in optional.items()})


def _table(data: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    if key not in data:
        raise ChipError(f"missing table [{prefix}{key}]")
    if not isinstance(data[key], dict):
        raise ChipError(f"'{prefix}{key}' must be a table, got {data[key]!r}")
    return data[key]


def _component(name: str, table: dict[str, Any]) -> Component:
    key = f"cost.{name}"
    for field in table:
        if field not in _COMPONENT_KEYS:
            raise ChipError(f"unknown key '{key}.{field}' (known: {', '.join(_COMPONENT_KEYS)})")
    event = table.get("event")
    events = [event] if isinstance(event, str) else [e for e in event if isinstance(e, str)] \
        if isinstance(event, list) else []
    stated = ["events_per_cycle"] if any(e in STATED_RATE for e in events) else []
    for field in [*_COMPONENT_REQUIRED, *stated, *(["bytes_per_ns"] if "offchip_byte" in events else [])]:
        if field not in table:
            raise ChipError(f"missing key '{key}.{field}'")
    for field, value in table.items():
        kind = _COMPONENT_KEYS[field]
        if kind is list:
            if isinstance(value, str):
                continue
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ChipError(f"{key}.{field} must be a string or a list of strings, got {value!r}")
        elif kind is not str:
            _check_value(f"{key}.{field}", value, kind)
        elif not isinstance(value, str):
            raise ChipError(f"{key}.{field} must be a string, got {value!r}")
    values = {field: (float(value) if _COMPONENT_KEYS[field] is float else value) for field, value in table.items()
              if field != "event"}
    event = table["event"]
    return Component(name=name, events=(event,) if isinstance(event, str) else tuple(event), **values)
