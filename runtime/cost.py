"""What one inference of a compiled program costs on a chip: energy by component and by layer, latency,
pipeline throughput, area, power and efficiency, from the instructions' counts.

    cost = estimate_cost(program, load_chip("isaac"))                        # static: no execution
    cost = estimate_cost(program, chip, Machine(program).run(x).per_instruction)   # the machine's counts
    cost.to_json()["totals"]["energy_pj"]

Energy: every counted event (array reads, DAC row drives, S+H samples, ADC conversions, shift-and-adds,
register accesses, tile-buffer and bus bytes, network hop-bytes, vector ops and adds, off-chip bytes)
times its unit energy (`backends/cost_model.py`), grouped by the component it is charged to; leakage
of the tiles the model occupies over the whole inference is `static`.

Data movement: a layer reads `bytes_in` from its tile buffer over the bus into its arrays and writes
`bytes_out` back (counted per instruction); its input crosses the network from the tiles of the layer
before it (or from tile 0, where the off-chip link delivers the model's inputs). Layers sit on
consecutive tiles in program order; tiles share routers (`shared_by`) laid out as a square mesh, and a
transfer takes the routers' Manhattan distance plus one hops.

Latency: layers run one after another; a layer's arrays run in parallel, so its crossbar time is the
slowest of its stages (array reads × input bit-slices, conversions of its busiest array ÷ the ADCs
serving that array × sample time, bytes over the tile bus and the off-chip link), then its vector-unit
work follows. As a pipeline, a new inference starts every slowest-layer time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rcc.backends.chip import EVENTS, Chip
from rcc.backends.cost_model import Peak, adapt_chip, event_energies_pj, peak
from rcc.backends.program import Program
from rcc.backends.target import Target
from rcc.runtime.counters import Counts
from rcc.runtime.machine import target_of
from rcc.runtime.schedule import instruction_layers, layer_counts, static_counts

CATEGORIES = tuple(dict.fromkeys([*EVENTS.values(), "static"]))


@dataclass(frozen=True)
class LayerCost:
    """One layer's share of an inference."""

    name: str
    energy_breakdown_pj: dict[str, float]
    latency_ns: float
    area_mm2: float   # its arrays' share of their tiles
    ops: int          # 2 per multiply-accumulate

    @property
    def energy_pj(self) -> float:
        return sum(self.energy_breakdown_pj.values())

    def to_json(self) -> dict[str, Any]:
        return _figures(self.energy_breakdown_pj, self.latency_ns, self.latency_ns, self.area_mm2, self.ops)


@dataclass(frozen=True)
class Cost:
    """One inference of a program on a chip; `to_json()` gives the report's `cost` objects."""

    chip: str
    layers: tuple[LayerCost, ...]
    area_mm2: float          # the tiles the model occupies
    array_area_mm2: float    # its arrays alone
    tiles: int
    chips: int
    peak: Peak
    energy_breakdown_pj: dict[str, float] = field(default_factory=dict)

    @property
    def energy_pj(self) -> float:
        return sum(self.energy_breakdown_pj.values())

    @property
    def latency_ns(self) -> float:
        return sum(layer.latency_ns for layer in self.layers)

    @property
    def bottleneck_ns(self) -> float:
        """The slowest layer: a pipeline of layers starts one inference per this."""
        return max((layer.latency_ns for layer in self.layers), default=0.0)

    @property
    def ops(self) -> int:
        return sum(layer.ops for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        totals = _figures(self.energy_breakdown_pj, self.latency_ns, self.bottleneck_ns, self.area_mm2, self.ops)
        totals.update({"chip": self.chip, "array_area_mm2": self.array_area_mm2, "tiles": self.tiles,
                       "chips": self.chips, "chip_area_mm2": self.peak.chip_area_mm2,
                       "chip_power_mw": self.peak.chip_power_mw, "peak_tops_per_w": self.peak.tops_per_w,
                       "peak_tops_per_mm2": self.peak.tops_per_mm2})
        return {"totals": totals, "layers": {layer.name: layer.to_json() for layer in self.layers}}


def _figures(breakdown: dict[str, float], latency_ns: float, interval_ns: float, area_mm2: float,
             ops: int) -> dict[str, Any]:
    energy = sum(breakdown.values())
    return {"energy_pj": energy, "energy_breakdown_pj": dict(breakdown), "latency_ns": latency_ns,
            "throughput_inf_s": 1e9 / interval_ns if interval_ns else None, "area_mm2": area_mm2,
            "power_mw": energy / latency_ns if latency_ns else None,
            "tops_per_w": ops / energy if energy else None,
            "tops_per_mm2": ops / latency_ns / 1e3 / area_mm2 if latency_ns and area_mm2 else None}


def estimate_cost(program: Program, chip: Chip, counts: list[Counts] | None = None) -> Cost:
    """The cost of one inference: from the program's static counts, or from `counts` (one per
    instruction, as `Machine.run` returns them), which give the same figures."""
    target = target_of(program)
    counts = static_counts(program, target) if counts is None else counts
    adapted = adapt_chip(chip, target)
    energies = event_energies_pj(adapted)
    per_layer = layer_counts(program, counts)
    arrays = _layer_arrays(program)
    hops = _layer_hops(adapted, per_layer, arrays)
    total_arrays = sum(arrays.values())
    tiles = math.ceil(total_arrays / adapted.arrays_per_tile)
    tile_area = adapted.tile_area_mm2()
    rows = [(name, count, _dynamic_pj(count, hops.get(name, 0), energies), _latency_ns(adapted, target, count))
            for name, count in per_layer.items()]
    latency = sum(row[3] for row in rows)
    static_mw_per_array = (adapted.tile_static_mw() + adapted.chip_static_mw() / adapted.tiles_per_chip) \
        / adapted.arrays_per_tile
    layers = tuple(LayerCost(name, {**breakdown, "static": static_mw_per_array * arrays.get(name, 0) * latency},
                             layer_latency, tile_area * arrays.get(name, 0) / adapted.arrays_per_tile, 2 * count.macs)
                   for name, count, breakdown, layer_latency in rows)
    breakdown = {category: sum(layer.energy_breakdown_pj[category] for layer in layers) for category in CATEGORIES}
    array_area = sum(c.area_mm2 for c in adapted.of_event("array_read")) / adapted.arrays_per_core
    return Cost(chip.name, layers, tiles * tile_area, total_arrays * array_area, tiles,
                math.ceil(tiles / adapted.tiles_per_chip), peak(chip, target), breakdown)


def _event_counts(count: Counts, hop_bytes: int) -> dict[str, int]:
    moved = count.bytes_in + count.bytes_out
    return {"array_read": count.mvm_ops, "row_drive": count.dac_drives, "sample": count.sh_samples,
            "conversion": count.adc_conversions, "shift_add": count.shift_adds, "input_register": count.mvm_ops,
            "output_register": count.shift_adds, "buffer_byte": moved, "bus_byte": moved,
            "hop_byte": hop_bytes, "vector_op": count.vec_ops, "accumulation": count.accumulations,
            "output_byte": count.bytes_out, "offchip_byte": count.offchip_bytes}


def _dynamic_pj(count: Counts, hops: int, energies: dict[str, float]) -> dict[str, float]:
    breakdown = dict.fromkeys(CATEGORIES, 0.0)
    for event, events in _event_counts(count, count.bytes_in * hops).items():
        breakdown[EVENTS[event]] += events * energies[event]
    return breakdown


def _latency_ns(chip: Chip, target: Target, count: Counts) -> float:
    reads = count.array_steps * chip.xbar_read_ns
    conversions = count.column_steps * chip.arrays_per_core / chip.adcs_per_core / chip.adc_gsps
    bus = sum(c.events_per_cycle for c in chip.of_event("bus_byte")) * chip.clock_ghz
    link = sum(c.bytes_per_ns for c in chip.of_event("offchip_byte"))
    movement = (count.bytes_in + count.bytes_out) / bus if bus else 0.0
    movement += count.offchip_bytes / link if link else 0.0
    digital_cycles = count.vec_ops * target.vector_op_cycles + \
        count.accumulations / target.vector_lanes * target.accumulate_cycles
    return max(reads, conversions, movement) + digital_cycles / chip.clock_ghz


def _layer_arrays(program: Program) -> dict[str, int]:
    arrays: dict[str, int] = {}
    for instruction, layer in zip(program.instructions, instruction_layers(program)):
        if instruction.opcode == "mvm":
            arrays[layer] = arrays.get(layer, 0) + instruction.attrs["arrays"]
    return arrays


def _layer_hops(chip: Chip, layers: dict[str, Counts], arrays: dict[str, int]) -> dict[str, int]:
    """Routers each layer's input crosses: from the previous crossbar layer's first tile (tile 0 for the
    first) to its own, layers placed on consecutive tiles in program order."""
    per_router = max((c.shared_by for c in chip.of_event("hop_byte")), default=1)
    side = math.ceil(math.sqrt(math.ceil(chip.tiles_per_chip / per_router)))

    def router_of(array_index: int) -> tuple[int, int]:
        router = array_index // chip.arrays_per_tile % chip.tiles_per_chip // per_router
        return router % side, router // side

    hops, placed, source = {}, 0, (0, 0)
    for name in layers:
        if name not in arrays:
            continue
        here = router_of(placed)
        hops[name] = abs(here[0] - source[0]) + abs(here[1] - source[1]) + 1
        source, placed = here, placed + arrays[name]
    return hops
