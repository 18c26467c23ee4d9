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

Latency: a layer's arrays (and the copies of its weights) run in parallel, so its crossbar time is the
slowest of its stages (array reads × input bit-slices, conversions of its busiest array ÷ the ADCs
serving that array × sample time, bytes over the tile bus and the off-chip link), then its vector-unit
work follows. How layers overlap is the program's schedule (the mvms' `pipeline` and `lead`):
`none`: one after another, one inference at a time (throughput = 1 / latency); `layer`: one after
another, but inferences overlap, one starting every slowest-layer time; `row`: also a layer starts when
`lead` of the layer before has run (its first window's input rows; layers without crossbars stream)
and finishes no earlier than `lead` of itself after the layer before finishes. Layers that run on the same arrays
(time-multiplexed weights, e.g. tied ones) are one pipeline stage: the arrays serve them all in every inference.

Phases (a model larger than the chip): each phase's arrays are reprogrammed before it runs, every
inference (batch 1) or once per `batch` inferences. Phases are the mvms' own: one layer's mvms (a recurrent
node's steps) may span several; the timeline puts their writes before that layer (its last phase is its phase)
and so before the layers after it. Write figures: the chip's `write_row_ns` and
`write_row_pj` per write of one array row (PipeLayer's 50.88 ns and 3.91 nJ in the presets; the rows
of an array are written one after another, arrays in parallel); charged as `write` energy.

Attention (`target.attention`): a matmul of two activations on the vector unit is charged
`vector_mac_pj` (float mode: `vector_float_mac_pj`) per multiply-accumulate and takes
`vector_op_cycles` per `vector_lanes` of them; on crossbars written at run time (`write_mvm`) its rows
are charged as writes (energy and `write_steps` × `write_row_ns` before the reads) and wear the cells:
`endurance` in the totals gives the cell writes per inference, the writes of the most written cell per
inference and the inferences until the chip's `cell_endurance` is spent.
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
from rcc.runtime.schedule import (array_owners, instruction_layers, layer_counts, owned_arrays, phase_arrays,
                                  static_counts)

CATEGORIES = tuple(dict.fromkeys([*EVENTS.values(), "static", "write"]))


@dataclass(frozen=True)
class LayerCost:
    """One layer's share of an inference."""

    name: str
    energy_breakdown_pj: dict[str, float]
    latency_ns: float
    area_mm2: float   # its arrays' share of their tiles
    ops: int          # 2 per multiply-accumulate
    arrays: int = 0   # copies included
    copies: int = 1
    phase: int = 0
    lead: float = 1.0  # fraction of the layer before that runs before this one starts (`row` pipelining)
    shares: str | None = None   # the layer whose arrays it runs on (time-multiplexed), if another's

    @property
    def energy_pj(self) -> float:
        return sum(self.energy_breakdown_pj.values())

    def to_json(self) -> dict[str, Any]:
        figures = _figures(self.energy_breakdown_pj, self.latency_ns, self.latency_ns, self.area_mm2, self.ops)
        figures.update({"arrays": self.arrays, "copies": self.copies, "phase": self.phase})
        return figures


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
    pipeline: str = "none"
    phase_write_ns: tuple[float, ...] = ()   # reprogramming before each phase (empty: one phase, no writes)
    arrays: int = 0          # the arrays the fullest phase holds
    batch: int = 1
    endurance: dict[str, Any] = field(default_factory=dict)  # run-time writes and the cells' wear

    @property
    def energy_pj(self) -> float:
        return sum(self.energy_breakdown_pj.values())

    def _phases(self) -> list[list[LayerCost]]:
        phases: dict[int, list[LayerCost]] = {}
        for layer in self.layers:
            phases.setdefault(layer.phase, []).append(layer)
        return [phases[key] for key in sorted(phases)]

    @property
    def write_ns(self) -> float:
        return sum(self.phase_write_ns)

    def timeline(self) -> list[tuple[str, float, float]]:
        """(layer or `write phase N`, start ns, finish ns) of one inference under the schedule."""
        spans, now, written = [], 0.0, 0

        def write_until(phase: int) -> None:   # the writes of every phase up to `phase` not yet written
            nonlocal now, written
            while written < len(self.phase_write_ns) and written <= phase:
                spans.append((f"write phase {written}", now, now + self.phase_write_ns[written]))
                now += self.phase_write_ns[written]
                written += 1

        for layers in self._phases():
            write_until(layers[0].phase)
            phase = _phase_spans(layers, self.pipeline)
            spans += [(name, now + start, now + finish) for name, start, finish in phase]
            now += max((finish for _, _, finish in phase), default=0.0)
        write_until(len(self.phase_write_ns))   # phases inside a layer (a recurrent node split by the budget)
        return spans

    @property
    def latency_ns(self) -> float:
        """One inference: every phase's writes and layers, layers overlapping as the pipeline allows."""
        return max((finish for _, _, finish in self.timeline()), default=0.0)

    @property
    def interval_ns(self) -> float:
        """Steady state: time between inferences (phases: `batch` inferences per reprogramming)."""
        if len(self.phase_write_ns) > 1:
            return (self.write_ns + self.batch * (self.latency_ns - self.write_ns)) / self.batch
        return self.latency_ns if self.pipeline == "none" else self.bottleneck_ns

    def _stages(self) -> dict[str, float]:
        """Pipeline stages and their times: each layer, with the layers running on its arrays (time-multiplexed:
        its arrays serve all of them in every inference)."""
        stages: dict[str, float] = {}
        for layer in self.layers:
            stages[layer.shares or layer.name] = stages.get(layer.shares or layer.name, 0.0) + layer.latency_ns
        return stages

    @property
    def bottleneck_ns(self) -> float:
        """The slowest stage: a pipeline of layers starts one inference per this."""
        return max(self._stages().values(), default=0.0)

    @property
    def ops(self) -> int:
        return sum(layer.ops for layer in self.layers)

    @property
    def bottleneck(self) -> str | None:
        stages = self._stages()
        return max(stages, key=stages.__getitem__) if stages else None

    def to_json(self) -> dict[str, Any]:
        totals = _figures(self.energy_breakdown_pj, self.latency_ns, self.interval_ns, self.area_mm2, self.ops)
        layers = {layer.name: layer.to_json() for layer in self.layers}
        spans = self.timeline()
        for name, start, finish in spans:
            if name in layers:
                layers[name].update({"start_ns": start, "finish_ns": finish})
        for name, figures in layers.items():
            figures.update({"stage_share": figures["latency_ns"] / self.bottleneck_ns if self.bottleneck_ns else 0.0,
                            "bottleneck": name == self.bottleneck})
        totals.update({"pipeline": self.pipeline, "phases": max(len(self.phase_write_ns), 1), "batch": self.batch,
                       "write_latency_ns": self.write_ns, "bottleneck": self.bottleneck,
                       "writes": [[start, finish] for name, start, finish in spans if name not in layers],
                       "arrays": self.arrays,
                       "chip": self.chip, "array_area_mm2": self.array_area_mm2, "tiles": self.tiles,
                       "chips": self.chips, "chip_area_mm2": self.peak.chip_area_mm2,
                       "chip_power_mw": self.peak.chip_power_mw, "peak_tops_per_w": self.peak.tops_per_w,
                       "peak_tops_per_mm2": self.peak.tops_per_mm2, "endurance": dict(self.endurance)})
        return {"totals": totals, "layers": layers}


def _phase_spans(layers: list[LayerCost], pipeline: str) -> list[tuple[str, float, float]]:
    """One phase's (layer, start, finish): in sequence, or (`row`) each layer starting once `lead` of the
    one before has run (`lead` after its start, and no earlier than `1 - lead` before its finish) and
    finishing no earlier than `lead` of itself after it."""
    spans: list[tuple[str, float, float]] = []
    start = finish = 0.0
    previous: LayerCost | None = None
    for layer in layers:
        if previous is None:
            finish = layer.latency_ns
        elif pipeline == "row":  # `lead` of the layer before exists no earlier than either bound
            start = max(start + layer.lead * previous.latency_ns, finish - (1 - layer.lead) * previous.latency_ns)
            finish = max(start + layer.latency_ns, finish + layer.lead * layer.latency_ns)
        else:
            start, finish = finish, finish + layer.latency_ns
        spans.append((layer.name, start, finish))
        previous = layer
    return spans


def _figures(breakdown: dict[str, float], latency_ns: float, interval_ns: float, area_mm2: float,
             ops: int) -> dict[str, Any]:
    energy = sum(breakdown.values())
    return {"energy_pj": energy, "energy_breakdown_pj": dict(breakdown), "latency_ns": latency_ns,
            "throughput_inf_s": 1e9 / interval_ns if interval_ns else None, "area_mm2": area_mm2,
            "power_mw": energy / latency_ns if latency_ns else None,
            "tops_per_w": ops / energy if energy else None,
            "tops_per_mm2": ops / latency_ns / 1e3 / area_mm2 if latency_ns and area_mm2 else None}


def estimate_cost(program: Program, chip: Chip, counts: list[Counts] | None = None, batch: int = 1) -> Cost:
    """The cost of one inference under the program's schedule: from its static counts, or from `counts`
    (one per instruction, as `Machine.run` returns them), which give the same figures. `batch`: inferences
    per reprogramming of a phased program."""
    target = target_of(program)
    counts = static_counts(program, target) if counts is None else counts
    adapted = adapt_chip(chip, target)
    energies = event_energies_pj(adapted)
    per_layer = layer_counts(program, counts)
    arrays = _layer_arrays(program)
    shares = _shared_layers(program)
    hops = _layer_hops(adapted, per_layer, arrays)
    plan = _layer_schedule(program)
    phases = phase_arrays(program)   # by the mvms' own phases: a recurrent node's steps may span several
    total_arrays = max(phases.values(), default=0)
    phased = len(phases) > 1
    tiles = math.ceil(total_arrays / adapted.arrays_per_tile)
    tile_area = adapted.tile_area_mm2()
    mac_pj = chip.vector_mac_pj if program.precision == "int" else chip.vector_float_mac_pj
    rows = [(name, count, _dynamic_pj(count, hops.get(name, 0), energies, mac_pj, chip.write_row_pj),
             _latency_ns(adapted, target, count))
            for name, count in per_layer.items()]
    layer_plan = {name: _layer_plan(plan, name, layer_names=list(per_layer)) for name in per_layer}
    latency = sum(row[3] for row in rows)
    static_mw_per_array = (adapted.tile_static_mw() + adapted.chip_static_mw() / adapted.tiles_per_chip) \
        / adapted.arrays_per_tile
    write_pj = chip.write_row_pj * target.xbar_rows / batch if phased else 0.0
    programmed = _layer_arrays(program, ("mvm",))  # written when a phase starts (run-time writes are counted)
    layers = tuple(LayerCost(name, {**breakdown, "static": static_mw_per_array * arrays.get(name, 0) * latency,
                                    "write": breakdown["write"] + write_pj * programmed.get(name, 0)},
                             layer_latency, tile_area * arrays.get(name, 0) / adapted.arrays_per_tile, 2 * count.macs,
                             arrays.get(name, 0), *layer_plan[name], shares.get(name))
                   for name, count, breakdown, layer_latency in rows)
    breakdown = {category: sum(layer.energy_breakdown_pj[category] for layer in layers) for category in CATEGORIES}
    array_area = sum(c.area_mm2 for c in adapted.of_event("array_read")) / adapted.arrays_per_core
    pipeline = next((mode for mode, _phase, _copies, _lead in plan.values()), "none")
    writes = tuple(chip.write_row_ns * target.xbar_rows for _ in phases) if phased else ()
    return Cost(chip.name, layers, tiles * tile_area, total_arrays * array_area, tiles,
                math.ceil(tiles / adapted.tiles_per_chip), peak(chip, target), breakdown, pipeline, writes,
                total_arrays, batch, _endurance(program, counts, chip))


def _endurance(program: Program, counts: list[Counts], chip: Chip) -> dict[str, Any]:
    """Cells written per inference (from the counts), the cells the `write_mvm`s hold (each its own arrays),
    writes per cell per inference and the inferences until the cells' endurance is spent."""
    cell_writes = sum(count.cell_writes for count in counts)
    held = sum(count.cell_writes for instruction, count in zip(program.instructions, static_counts(
        program, target_of(program))) if instruction.opcode == "write_mvm")
    per_cell = cell_writes / held if held else 0.0
    return {"cell_writes": cell_writes, "written_cells": held, "writes_per_cell": per_cell,
            "cell_endurance": chip.cell_endurance,
            "inferences_to_wear_out": chip.cell_endurance / per_cell if per_cell else None}


def _event_counts(count: Counts, hop_bytes: int) -> dict[str, int]:
    moved = count.bytes_in + count.bytes_out
    return {"array_read": count.mvm_ops, "row_drive": count.dac_drives, "sample": count.sh_samples,
            "conversion": count.adc_conversions, "shift_add": count.shift_adds, "input_register": count.mvm_ops,
            "output_register": count.shift_adds, "buffer_byte": moved, "bus_byte": moved,
            "hop_byte": hop_bytes, "vector_op": count.vec_ops, "accumulation": count.accumulations,
            "output_byte": count.bytes_out, "offchip_byte": count.offchip_bytes}


def _dynamic_pj(count: Counts, hops: int, energies: dict[str, float], mac_pj: float,
                write_row_pj: float) -> dict[str, float]:
    breakdown = dict.fromkeys(CATEGORIES, 0.0)
    for event, events in _event_counts(count, count.bytes_in * hops).items():
        breakdown[EVENTS[event]] += events * energies[event]
    breakdown["vector_unit"] += count.vector_macs * mac_pj
    breakdown["write"] += count.row_writes * write_row_pj
    return breakdown


def _latency_ns(chip: Chip, target: Target, count: Counts) -> float:
    reads = count.array_steps * chip.xbar_read_ns
    conversions = count.column_steps * chip.arrays_per_core / chip.adcs_per_core / chip.adc_gsps
    bus = sum(c.events_per_cycle for c in chip.of_event("bus_byte")) * chip.clock_ghz
    link = sum(c.bytes_per_ns for c in chip.of_event("offchip_byte"))
    movement = (count.bytes_in + count.bytes_out) / bus if bus else 0.0
    movement += count.offchip_bytes / link if link else 0.0
    digital_cycles = count.vec_ops * target.vector_op_cycles + \
        count.accumulations / target.vector_lanes * target.accumulate_cycles + \
        count.vector_macs / target.vector_lanes * target.vector_op_cycles
    return count.write_steps * chip.write_row_ns + max(reads, conversions, movement) + digital_cycles / chip.clock_ghz


def _layer_arrays(program: Program, opcodes: tuple[str, ...] = ("mvm", "write_mvm")) -> dict[str, int]:
    """The arrays each crossbar layer holds (a layer running on another's arrays holds none of its own)."""
    arrays: dict[str, int] = {}
    for instruction, layer, owned in zip(program.instructions, instruction_layers(program),
                                         owned_arrays(program, opcodes)):
        if instruction.opcode in opcodes:
            arrays[layer] = arrays.get(layer, 0) + owned
    return arrays


def _shared_layers(program: Program) -> dict[str, str]:
    """Each layer that runs on another layer's arrays, and that layer."""
    layers = instruction_layers(program)
    return {layers[index]: layers[owner] for index, owner in enumerate(array_owners(program))
            if owner is not None and layers[owner] != layers[index]}


def _layer_schedule(program: Program) -> dict[str, tuple[str, int, int, float]]:
    """Each crossbar layer's (pipeline, last phase, most copies, least lead) from its mvms' schedule."""
    plan: dict[str, tuple[str, int, int, float]] = {}
    for instruction, layer in zip(program.instructions, instruction_layers(program)):
        if instruction.opcode in ("mvm", "write_mvm"):
            a = instruction.attrs
            held = plan.get(layer, (a.get("pipeline", "none"), a.get("phase", 0), 1, 1.0))
            plan[layer] = (held[0], max(held[1], a.get("phase", 0)), max(held[2], a.get("copies", 1)),
                           min(held[3], a.get("lead", 1.0)))
    return plan


def _layer_plan(plan: dict[str, tuple[str, int, int, float]], name: str, layer_names: list[str]
                ) -> tuple[int, int, float]:
    """(copies, phase, lead) of a layer; one without crossbars runs in the phase of the crossbar layer
    before it (or the first) and, when rows are pipelined, streams (lead 0)."""
    if name in plan:
        return plan[name][2], plan[name][1], plan[name][3]
    before = [plan[n] for n in layer_names[:layer_names.index(name)] if n in plan] or list(plan.values())[:1]
    pipeline, phase = (before[-1][0], before[-1][1]) if before else ("none", 0)
    return 1, phase, 0.0 if pipeline == "row" else 1.0


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
