"""Unit costs of a chip: the energy of every event, the pipeline stage time, and peak efficiency.

The energy of one event is its component group's power over the events the group does per
nanosecond at full activity (mW / (1/ns) = pJ), which is how ISAAC's Table I reads: power × stage
time ÷ events in that stage. The crossbar pipeline's rates follow from the hierarchy: per core,
`arrays_per_core` array reads (each driving `xbar_rows` rows and sampling `xbar_cols` columns) per
`xbar_read_ns`, and `adcs_per_core × adc_gsps` conversions (each shifted-and-added and written to the
output register) per nanosecond; digital groups state their rate per clock cycle.

    chip = adapt_chip(load_chip("isaac"), target)     # the preset at the target's array, ADC and DAC
    energies = event_energies_pj(chip)                 # {"conversion": 1.5625, ...}
    figures = peak(load_chip("isaac"), target)         # ops/s, TOPS/W, TOPS/mm² with every array busy
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rcc.backends.chip import EVENTS, Chip, Component
from rcc.backends.converters import adc_scale, dac_scale
from rcc.backends.target import Target

_READ_EVENTS = {"array_read": 1, "input_register": 1}  # per array read
_CONVERSION_EVENTS = frozenset({"conversion", "shift_add", "output_register"})


def adapt_chip(chip: Chip, target: Target) -> Chip:
    """The chip with the target's array size, cell bits, ADC and DAC resolution: array groups scale with
    their cells (puma-simulator's xbar_pow_dict and xbar_area_dict: 0.075 mW at 64×64, 0.3 mW at
    128×128), DACs with rows and resolution, sample-and-holds with columns, ADCs with resolution; the
    arrays' area also grows by the target's spare columns."""
    cells = target.xbar_rows * target.xbar_cols / (chip.xbar_rows * chip.xbar_cols)
    rows = target.xbar_rows / chip.xbar_rows
    factors = {"array_read": cells, "row_drive": rows * dac_scale(target.dac_bits, chip.dac_bits),
               "sample": target.xbar_cols / chip.xbar_cols,
               "conversion": adc_scale(target.effective_adc_bits, chip.adc_bits)}
    # spare columns (fault repair) take area beside every array; they draw power only in place of a column
    spares = (target.xbar_cols + target.spare_columns) / target.xbar_cols
    components = tuple(_scaled(c, factors.get(c.events[0], 1.0), spares if c.events[0] == "array_read" else 1.0)
                       if len(c.events) == 1 else c for c in chip.components)
    return dataclasses.replace(chip, xbar_rows=target.xbar_rows, xbar_cols=target.xbar_cols,
                               cell_bits=target.cell_bits, adc_bits=target.effective_adc_bits,
                               dac_bits=target.dac_bits, components=components)


def _scaled(component: Component, factor: float, area_factor: float = 1.0) -> Component:
    if factor == 1.0 and area_factor == 1.0:
        return component
    return dataclasses.replace(component, power_mw=component.power_mw * factor, static_mw=component.static_mw * factor,
                               area_mm2=component.area_mm2 * factor * area_factor)


def columns_per_adc(chip: Chip) -> float:
    """Columns one ADC converts per array read when every array of a core is full."""
    return chip.xbar_cols * chip.arrays_per_core / chip.adcs_per_core


def stage_ns(chip: Chip) -> float:
    """One input bit-slice through a full array: the read and its conversions overlap (ISAAC's
    pipeline), so the slower of the two."""
    return max(chip.xbar_read_ns, columns_per_adc(chip) / chip.adc_gsps)


def event_rate_per_ns(chip: Chip, component: Component, event: str) -> float:
    """Events of this kind the group does per nanosecond at full activity."""
    if event in _READ_EVENTS:
        return chip.arrays_per_core / chip.xbar_read_ns
    if event == "row_drive":
        return chip.arrays_per_core * chip.xbar_rows / chip.xbar_read_ns
    if event == "sample":
        return chip.arrays_per_core * chip.xbar_cols / chip.xbar_read_ns
    if event in _CONVERSION_EVENTS:
        return chip.adcs_per_core * chip.adc_gsps
    if event == "offchip_byte":
        return component.bytes_per_ns
    return component.events_per_cycle * chip.clock_ghz


def event_energies_pj(chip: Chip) -> dict[str, float]:
    """pJ per event of every kind (0 where no group does it), summed over the groups that do it."""
    energies = dict.fromkeys(EVENTS, 0.0)
    for component in chip.components:
        for event in component.events:
            energies[event] += component.power_mw / event_rate_per_ns(chip, component, event)
    return energies


@dataclass(frozen=True)
class Peak:
    """The chip with every array busy on full weight blocks (ISAAC's Table IV figures)."""

    ops_per_s: float
    chip_power_mw: float
    chip_area_mm2: float
    tile_power_mw: float
    tile_area_mm2: float

    @property
    def tops_per_w(self) -> float:
        return self.ops_per_s / 1e12 / (self.chip_power_mw / 1e3)

    @property
    def tops_per_mm2(self) -> float:
        return self.ops_per_s / 1e12 / self.chip_area_mm2


def peak(chip: Chip, target: Target) -> Peak:
    """Peak throughput and efficiency of `chip` running weights and inputs as `target` encodes them: each
    array holds `xbar_rows` × (outputs per array) weights (half a block under a differential pair),
    2 ops per multiply-accumulate, one vector every `input_cycles` stages."""
    chip = adapt_chip(chip, target)
    macs_per_array = target.xbar_rows * target.weights_per_array_row / target.signs
    arrays = chip.arrays_per_tile * chip.tiles_per_chip
    ops_per_s = 2 * macs_per_array * arrays / (target.input_cycles * stage_ns(chip) * 1e-9)
    return Peak(ops_per_s, chip.chip_power_mw(), chip.chip_area_mm2(), chip.tile_power_mw(), chip.tile_area_mm2())
