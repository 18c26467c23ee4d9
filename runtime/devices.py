"""Crossbars made of real devices: programmed conductances with noise, drift, stuck cells, a finite on/off
ratio and IR drop, read bit-slice by bit-slice through the ADC (rcc.backends.device says what each knob is).

Programming (once per machine, seeded per array): every array's cell grid [xbar_rows, xbar_cols] of levels
l ∈ [0, L] becomes target conductances g = g_min + (g_max − g_min)·l/L, then
1. programming noise g ← max(g + s·σ(g̃)·N(0, 1), 0), g̃ = g/g_max, with σ in µS
   - `pcm`: aihwkit PCMLikeNoiseModel: σ = (0.26348 + 1.9650·g̃ − 1.1731·g̃²)·g_max/25
     (coefficients fitted at g_max = 25 µS; aihwkit src/aihwkit/inference/noise/pcm.py);
   - `reram`: aihwkit ReRamWan2022NoiseModel at 1 s: σ = (0.348 + 16.030·g̃ − 43.853·g̃² + 45.393·g̃³
     − 16.815·g̃⁴)·g_max/40 (fitted at g_max = 40 µS; aihwkit src/aihwkit/inference/noise/reram.py, after
     Wan et al., Nature 2022);
   - `constant`: σ = programming_sigma;
2. drift at t = time_s + t₀: g ← g·(t/t₀)^(−ν), ν per device: `pcm` |N(μ, σ)| with
   μ = clip(−0.0155·ln g̃ + 0.0244, 0.049, 0.1), σ = clip(−0.0125·ln g̃ − 0.0059, 0.008, 0.045) and
   g̃ = max(g_target/g_max, 1e-7) (aihwkit PCMLikeNoiseModel.generate_drift_coefficients); `fixed`
   |N(drift_nu_mean, drift_nu_std)|. With `pcm` drift, aihwkit's accumulated 1/f read noise follows:
   g ← max(g + |g|·Q_s·√(ln((t + t_read)/(2·t_read)))·N(0, 1), 0), Q_s = min(0.0088/max(g̃_prog^0.65, 1e-3),
   0.2), t_read = 250 ns;
3. stuck cells: stuck off → g_min, stuck on → g_max (rcc.backends.faults);
4. IR drop, first order: a cell at row i, column j sees the wire of (j + 1) row segments from its driver and
   (xbar_rows − i) column segments to its sense amplifier, R_w each, in series:
   g ← g / (1 + g·R_w·segments) (the other cells' currents on the wires are neglected).
Global drift compensation (aihwkit GlobalDriftCompensation: one scalar per layer from a reference read
just after programming and one at the inference time): the layer's column currents are scaled by
Σ g_programmed / Σ g_drifted over its arrays.

Reading, per input bit-slice k (`dac_bits` bits): the column current I = Σ_rows bit·g, plus read noise: each
driven cell's read adds N(0, (read_noise·g_max)²) independently (aihwkit's `w_noise` of type
ADDITIVE_CONSTANT, which aihwkit's ReRamWan2022NoiseModel recommends at about 0.01 for short-term read
noise), i.e. N(0, (read_noise·g_max)²·Σ bit²) per column and conversion (Σ over the driven rows). The standard
normals come from a tape of 2^21 drawn once from the seed; each read block (below) takes a contiguous slice
at a fresh random offset: i.i.d. within a block; across blocks values recur at shifted positions (two blocks'
slices overlap with probability about 2·block/2^21: 12.5% for the default target's blocks of 2^17), which
keeps drawing normals from dominating the run time.
The ADC converts v = I/Δg, Δg = (g_max − g_min)/L, as clip(rint(v·(1 + gain_error) + offset), 0, A); then
shift-and-add of the codes over slices, input cycles and sign arrays, and the digital removal of the input
and weight offsets (exact integers, as the ideal machine does). How it runs: all bit-slices of a row tile
(and all its column tiles) form one bit matrix [vectors·cycles, rows], read in blocks of 64 vectors × 256
columns (one float32 matmul each, at BLAS's full speed, whose noise, ADC and shift-and-add passes stay in the
core's cache); the ADC offset is a row of the cell matrix that every read drives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcc.backends.device import Device, DeviceError
from rcc.backends.faults import OK, STUCK_OFF, STUCK_ON, FaultMap, RandomFaults
from rcc.backends.mapping import CrossbarMapping, array_blocks, weight_levels
from rcc.backends.program import Program, ProgramError
from rcc.runtime.crossbar import EXACT_FLOAT32, CrossbarGroup, contiguous
from rcc.runtime.schedule import array_owners
from rcc.runtime.threads import in_parallel, work_buffer

CHUNK_ELEMENTS = 1 << 23     # bound on one step's temporaries (elements)
BLOCK_VECTORS, BLOCK_COLUMNS = 64, 256   # a read block: 64·cycles × 256 column reads, GEMM-efficient and L2-sized
NOISE_TAPE = 1 << 21         # standard normals drawn once per machine for read noise
PCM_PROG_COEFF = (0.26348, 1.9650, -1.1731)                 # aihwkit PCMLikeNoiseModel prog_coeff
PCM_PROG_G_MAX = 25.0                                        # µS, its reference g_max
RERAM_PROG_COEFF = (0.348, 16.030, -43.853, 45.393, -16.815)  # aihwkit ReRamWan2022NoiseModel, 1 s
RERAM_PROG_G_MAX = 40.0                                      # µS, its reference g_max
PCM_T_READ = 250e-9                                          # s, aihwkit PCMLikeNoiseModel t_read
_PROGRAM_STREAM, _READ_STREAM = 0xD0, 0xD1
READ_LIMIT = 2.0 ** 64       # ADC steps: no physical cell read or read-noise σ comes near (a column's sum of
                             # them stays far inside float32)


@dataclass(frozen=True)
class PhysicalBlock:
    """One array (pair) of a layer: its logical rows and outputs (within `group`) and where they sit."""

    group: int
    rows: np.ndarray        # logical rows, in physical-row order
    row_slots: np.ndarray   # the physical row of each
    outputs: np.ndarray     # logical outputs
    output_slots: np.ndarray  # the output position (columns slot·S … slot·S + S − 1) of each


def physical_blocks(weights_shape: tuple[int, int, int], attrs: dict, row_map: np.ndarray | None = None,
                    col_map: np.ndarray | None = None) -> list[PhysicalBlock]:
    """Every array (pair) of an mvm in the machine's (and the fault map's) order, with cell positions: a packed
    block's map position is its physical row or output slot; a dense tile fills its array from slot 0."""
    groups, k, m = weights_shape
    if row_map is None:
        return [PhysicalBlock(group, rows, np.arange(rows.size), outputs, np.arange(outputs.size))
                for group, rows, outputs in array_blocks(weights_shape, attrs)]
    blocks = []
    for rows, cols in zip(row_map, col_map):
        row_slots, output_slots = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
        group = int(cols[output_slots[0]] // m) if output_slots.size else 0
        blocks.append(PhysicalBlock(group, rows[row_slots] - group * k, row_slots, cols[output_slots] - group * m,
                                    output_slots))
    return blocks


def block_levels(weights: np.ndarray, mapping: CrossbarMapping, block: PhysicalBlock) -> list[np.ndarray]:
    """Per sign array, the levels [rows, outputs·S] of a block's cells (column o·S + s: output o, slice s)."""
    levels = weight_levels(weights[block.group][np.ix_(block.rows, block.outputs)], mapping.weight_bits,
                           mapping.cell_bits, mapping.weight_slices, mapping.encoding)
    return [level.transpose(1, 2, 0).reshape(block.rows.size, -1) for level in levels]


def block_columns(mapping: CrossbarMapping, block: PhysicalBlock) -> np.ndarray:
    """Physical column of each of a block's cells' columns (o·S + s order)."""
    slices = mapping.weight_slices
    return (block.output_slots[:, None] * slices + np.arange(slices)).reshape(-1)


def programming_sigma(device: Device, g: np.ndarray) -> np.ndarray:
    """σ of the programming noise (µS) at target conductances g."""
    relative = g / device.g_max
    if device.programming_noise == "pcm":
        coeff, reference = PCM_PROG_COEFF, PCM_PROG_G_MAX
    elif device.programming_noise == "reram":
        coeff, reference = RERAM_PROG_COEFF, RERAM_PROG_G_MAX
    else:
        return np.full_like(g, device.programming_sigma)
    sigma = sum(c * relative ** power for power, c in enumerate(coeff))
    return sigma * (device.g_max / reference)


def pcm_drift_nu(device: Device, g_target: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """ν per device from aihwkit's PCM fit (the formula in the module docstring)."""
    log_g = np.log(np.maximum(np.abs(g_target) / device.g_max, 1e-7))
    mean = np.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
    std = np.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
    return np.abs(mean + std * normal)


def ir_drop_segments(rows: int, cols: int) -> np.ndarray:
    """Wire segments in series with each cell: (j + 1) along its row, (rows − i) down its column."""
    return (np.arange(1, cols + 1)[None, :] + (rows - np.arange(rows))[:, None]).astype(np.float64)


def program_array(device: Device, levels: np.ndarray, level_max: int, states: np.ndarray | None,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(conductances at the inference time, conductances just after programming) of one array's cell grid.
    Options far outside a physical range (a time of 1e300 years, a programming σ of 1e300 µS) overflow to
    inf or NaN here without a warning: DeviceCrossbarGroup refuses the reads they lead to."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _program_array(device, levels, level_max, states, rng)


def _program_array(device: Device, levels: np.ndarray, level_max: int, states: np.ndarray | None,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    g_min = device.g_min
    g = g_min + (device.g_max - g_min) * levels.astype(np.float64) / level_max
    target = g
    if device.programming_noise != "none":
        g = np.maximum(g + device.programming_noise_scale * programming_sigma(device, g)
                       * rng.standard_normal(g.shape), 0.0)
    programmed = g
    if device.drift != "none":
        t = device.time_s + device.drift_t0_s
        normal = rng.standard_normal(g.shape)
        nu = pcm_drift_nu(device, target, normal) if device.drift == "pcm" else \
            np.abs(device.drift_nu_mean + device.drift_nu_std * normal)
        g = g * (t / device.drift_t0_s) ** (-nu)
        if device.drift == "pcm":
            q_s = np.minimum(0.0088 / np.maximum((np.abs(programmed) / device.g_max) ** 0.65, 1e-3), 0.2)
            sigma = q_s * np.sqrt(np.log((t + PCM_T_READ) / (2 * PCM_T_READ)))
            g = np.maximum(g + np.abs(g) * sigma * rng.standard_normal(g.shape), 0.0)
    if states is not None:
        g = np.where(states == STUCK_OFF, g_min, np.where(states == STUCK_ON, device.g_max, g))
        programmed = np.where(states == STUCK_OFF, g_min, np.where(states == STUCK_ON, device.g_max, programmed))
    if device.wire_resistance > 0:
        series = 1e-6 * device.wire_resistance * ir_drop_segments(*g.shape)   # µS·Ω = 1e-6
        g = g / (1.0 + g * series)
    return g, programmed


def _programming(device: Device) -> str:
    """The programming-noise options, for a message."""
    sigma = f" {device.programming_sigma:g} µS" if device.programming_noise == "constant" else ""
    return f"programming noise {device.programming_noise}{sigma} ×{device.programming_noise_scale:g}"


@dataclass
class _Unit:
    """Arrays read by one matmul: same group and rows; columns [signs, outputs, slices] of all its blocks."""

    group: int
    rows: np.ndarray
    outputs: np.ndarray          # logical outputs within the group, one per (output) column group
    levels: np.ndarray           # float32 [rows, signs·outputs·S]: each cell's read in ADC steps (programming
                                 # builds it in µS as [signs, rows, outputs, S])
    weight_sums: np.ndarray | None = None   # float64 [outputs]: Σ over the unit's rows of the integer weights


class NoiseTape:
    """Standard normals for read noise: NOISE_TAPE of them drawn once (lazily) from the seed; a draw of
    `count` ≤ NOISE_TAPE values is a contiguous slice at a fresh random offset (a longer draw is drawn afresh).
    The reads draw their offsets up front (`offsets`) and read the slices later, on any thread."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, _READ_STREAM])
        self._values: np.ndarray | None = None

    @property
    def values(self) -> np.ndarray:
        """The tape (drawn by the first `offsets`)."""
        assert self._values is not None, "offsets are drawn before the tape is read"
        return self._values

    def offsets(self, draws: int, count: int) -> np.ndarray:
        """Start offsets of `draws` slices of `count` ≤ NOISE_TAPE values."""
        if self._values is None:    # the tape is drawn from the stream before any offset
            self._values = self.rng.standard_normal(NOISE_TAPE, dtype=np.float32)
        return self.rng.integers(0, NOISE_TAPE - count + 1, size=draws)

    def draw(self, count: int) -> np.ndarray:
        if count > NOISE_TAPE:
            return self.rng.standard_normal(count, dtype=np.float32)
        start = int(self.offsets(1, count)[0])
        return self.values[start:start + count]


class DeviceCrossbarGroup:
    """One `mvm`'s arrays built from `device` cells; `run` has CrossbarGroup's contract (int64 accumulators)."""

    def __init__(self, weights: np.ndarray, attrs: dict, row_map: np.ndarray | None, col_map: np.ndarray | None,
                 device: Device, seed: int, first_array: int, faults: FaultMap | None, tape: NoiseTape) -> None:
        if weights.dtype.kind != "i":
            raise DeviceError(f"mvm {attrs.get('layer', '?')!r}: device models need integer precision "
                              f"(compile with --precision int)")
        self.weights, self.attrs, self.device = weights, attrs, device
        self.mapping = g = CrossbarMapping.of(attrs, weights.shape)
        self.level_max = (1 << g.cell_bits) - 1
        self.step = (device.g_max - device.g_min) / self.level_max
        self.tape = tape
        self.blocks = physical_blocks(weights.shape, attrs, row_map, col_map)
        self.array_ids = first_array + np.arange(len(self.blocks) * g.signs).reshape(len(self.blocks), g.signs)
        self.spare_columns = spare_columns(attrs, first_array)
        self.units, drifted, programmed = self._program(seed, faults)
        if not (math.isfinite(drifted) and math.isfinite(programmed)):   # program_array overflowed, quietly
            raise DeviceError(f"device {device.name!r}: layer {attrs.get('layer', '?')!r}'s cells program to "
                              f"conductances that are not finite numbers ({_programming(device)}, drift "
                              f"{device.drift} to time_s {device.time_s:g}): a device option is far outside a "
                              f"physical range")
        with np.errstate(over="ignore", invalid="ignore"):   # out of a physical range: refused below
            self.compensation = programmed / drifted if device.drift != "none" and device.drift_compensation \
                and drifted > 0 else 1.0
            self.gain = self.compensation * (1.0 + device.adc_gain_error) / self.step \
                if self.step > 0 else math.inf   # µS → ADC steps (a g_max of 1e-320 µS leaves no step)
            self.noise_steps = self.gain * device.read_noise * device.g_max   # σ of one cell's read, ADC steps
            peaks = []
            for unit in self.units:   # µS [signs, rows, outputs, S] → ADC steps [rows, signs·outputs·S]
                levels = (unit.levels * self.gain).transpose(1, 0, 2, 3).reshape(unit.rows.size, -1)
                if device.adc_offset:   # a row every read drives: each conversion's offset, added by the matmul
                    levels = np.vstack([levels, np.full((1, levels.shape[1]), device.adc_offset)])
                peaks.append(np.abs(levels).max(initial=0.0))
                unit.levels = levels
        self._check_reads(float(np.max(peaks, initial=0.0)))   # np.max, not max: a NaN peak must count
        for unit in self.units:
            unit.levels = np.ascontiguousarray(unit.levels, dtype=np.float32)

    def _check_reads(self, peak: float) -> None:
        """DeviceError unless the largest cell read (`peak`) and the read noise's σ, in ADC steps, are below
        READ_LIMIT: else a device option is far outside a physical range, and the reads would leave float32
        or be NaN. The message gives the figures that scale a read, so the option can be found."""
        device, layer = self.device, self.attrs.get("layer", "?")
        scaling = (f"ADC step {self.step:g} µS from g_max {device.g_max:g} µS, adc_gain_error "
                   f"{device.adc_gain_error:g}, drift compensation ×{self.compensation:g} of drift and "
                   f"wire_resistance")
        if not peak < READ_LIMIT:   # NaN too
            raise DeviceError(f"device {device.name!r}: layer {layer!r} reads a cell as {peak:g} ADC steps ({scaling}, "
                              f"adc_offset {device.adc_offset:g}, {_programming(device)}): a device option is far "
                              f"outside a physical range")
        if not self.noise_steps < READ_LIMIT:
            raise DeviceError(f"device {device.name!r}: layer {layer!r}'s read noise σ is {self.noise_steps:g} ADC "
                              f"steps (read_noise {device.read_noise:g} of g_max, {scaling}): a device option is far "
                              f"outside a physical range")

    def _program(self, seed: int, faults: FaultMap | None) -> tuple[list[_Unit], float, float]:
        g = self.mapping
        units: list[_Unit] = []
        drifted_total = programmed_total = 0.0
        jobs = [(block, level, int(array_id), seed, faults) for block, ids in zip(self.blocks, self.array_ids)
                for level, array_id in zip(block_levels(self.weights, g, block), ids)]
        cells = iter(in_parallel(self._program_cells, jobs))      # each array from its own seeded stream
        for block in self.blocks:
            per_sign = []
            for _ in range(g.signs):
                now, programmed = next(cells)
                drifted_total += float(now.sum())
                programmed_total += float(programmed.sum())
                per_sign.append(now.reshape(block.rows.size, block.outputs.size, g.weight_slices))
            conductance = np.stack(per_sign)              # [signs, rows, outputs, S]
            previous = units[-1] if units else None
            dense_neighbour = previous is not None and not self.mapping.is_packed and previous.group == block.group
            if dense_neighbour and np.array_equal(previous.rows, block.rows):   # column tiles of one row tile
                previous.outputs = np.concatenate([previous.outputs, block.outputs])
                previous.levels = np.concatenate([previous.levels, conductance], axis=2)
            else:
                units.append(_Unit(block.group, block.rows, block.outputs, conductance))
        return units, drifted_total, programmed_total

    def _program_cells(self, block: PhysicalBlock, level: np.ndarray, array_id: int, seed: int,
                       faults: FaultMap | None) -> tuple[np.ndarray, np.ndarray]:
        """(conductances now, just after programming) of the cells of one array that hold the block's levels."""
        g = self.mapping
        columns = block_columns(g, block)
        grid = np.zeros((g.xbar_rows, g.xbar_cols), dtype=np.int64)
        grid[np.ix_(block.row_slots, columns)] = level
        states = None if faults is None else repaired_states(
            faults.states(array_id, g.xbar_rows, g.xbar_cols), self.spare_columns.get(array_id))
        rng = np.random.default_rng([seed, _PROGRAM_STREAM, array_id])
        now, programmed = program_array(self.device, grid, self.level_max, states, rng)
        used = np.ix_(block.row_slots, columns)
        return now[used], programmed[used]

    @property
    def array_count(self) -> int:
        return int(self.array_ids.size)

    def run(self, x: np.ndarray, sliced: bool | None = None) -> np.ndarray:
        """The layer's accumulators [P, G·M] (int64) as the device arrays and ADCs produce them (each unit's
        read noise is drawn up front, in unit order). Device cells are always read slice by slice through
        the ADC, so `sliced` None or True is what happens; False (skip the slices) cannot be honoured."""
        if sliced is False:
            raise DeviceError(f"mvm {self.attrs.get('layer', '?')!r}: force_sliced=False cannot skip the bit-slices "
                              f"of device cells (every read goes through the ADC); leave it None")
        g = self.mapping
        total = np.zeros((x.shape[0], g.groups * g.outputs), dtype=np.float64)
        width = np.uint8 if g.input_bits <= 8 else np.uint16 if g.input_bits <= 16 else np.int64
        units, tasks = [], []
        for unit in self.units:
            part = x[:, contiguous(unit.group * g.rows + unit.rows)]
            inputs = (np.add(part, g.input_offset, dtype=np.int64) if g.input_offset else part).astype(width)
            step = self._step(unit, inputs.shape[0])
            starts = range(0, inputs.shape[0], step)
            for start in starts:
                chunk = inputs[start:start + step]
                blocks = -(-chunk.shape[0] // BLOCK_VECTORS) * -(-unit.levels.shape[1] // BLOCK_COLUMNS)
                offsets = self.tape.offsets(blocks, BLOCK_VECTORS * g.input_cycles * BLOCK_COLUMNS) \
                    if self.device.read_noise > 0 else None
                tasks.append((unit, chunk, offsets))
            units.append((unit, inputs, len(starts)))
        raws = iter(in_parallel(self._chunk_raw, tasks))
        for unit, inputs, steps in units:
            chunks = [next(raws) for _ in range(steps)]
            raw = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
            columns = contiguous(unit.group * g.outputs + unit.outputs)      # distinct within a unit
            total[:, columns] += raw - self._offsets(unit, inputs)
        return np.rint(total).astype(np.int64)

    def _step(self, unit: _Unit, vectors: int) -> int:
        """Vectors per step (a task of `in_parallel`): half of them in whole read blocks, so that a layer of
        one unit still gives two threads work, and a step's temporaries bounded by CHUNK_ELEMENTS. The steps
        do not depend on the thread count, so neither do the noise draws."""
        bound = CHUNK_ELEMENTS // max(self.mapping.input_cycles * max(unit.levels.shape), 1)
        half = -(-vectors // 2)
        return max(1, min(bound, -(-half // BLOCK_VECTORS) * BLOCK_VECTORS))

    def _offsets(self, unit: _Unit, inputs: np.ndarray) -> np.ndarray:
        """What the offset-binary inputs and offset-encoded weights add to the raw sums (exact integers)."""
        g = self.mapping
        if unit.weight_sums is None:   # the programmed weights' column sums, once
            weights = self.weights[unit.group][np.ix_(unit.rows, unit.outputs)].astype(np.int64)
            unit.weight_sums = weights.sum(axis=0).astype(np.float64)
        correction = g.input_offset * unit.weight_sums[None, :]
        if g.encoding == "offset":
            correction = correction + float(2 ** (g.weight_bits - 1)) * inputs.sum(axis=1, keepdims=True, dtype=np.int64)
        return correction

    def _chunk_raw(self, unit: _Unit, chunk: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
        """Σ over sign arrays, input slices and cell slices of sign·2^(dac·k)·2^(cell·s)·ADC(column) for the
        vectors of `chunk`, [vectors, outputs]. The chunk's input slices are one bit matrix (row vector·cycles
        + k; a last column of ones reads the unit's row of ADC offsets); it is read block by block
        (`BLOCK_VECTORS` vectors × `BLOCK_COLUMNS` columns: the block's GEMM runs at full speed and its passes
        stay in the core's cache): one float32 matmul against the block's columns into this thread's work
        buffer, then its read-out in one compiled pass (rcc.runtime.read_kernels: the read noise, a contiguous
        slice of the tape at the block's drawn offset; the ADC; the shift-and-add over input slices); then
        cell slices and sign arrays. The shift-and-adds run in float32 when every sum they form is an
        integer below 2^24, else in float64."""
        from rcc.runtime.read_kernels import input_slices, read_out   # numba's import takes most of a second:
        #                                                                only machines with device cells pay it
        g, device = self.mapping, self.device
        cycles, signs, rows = g.input_cycles, g.signs, unit.rows.size
        vectors, columns = chunk.shape[0], unit.levels.shape[1]
        cycle_peak = g.adc_max * (2.0 ** (g.dac_bits * cycles) - 1)          # a column's shift-and-add
        slice_weights = 2.0 ** (g.cell_bits * np.arange(g.weight_slices))
        exact32 = cycle_peak < EXACT_FLOAT32
        merge_dtype = np.float32 if cycle_peak * slice_weights.sum() < EXACT_FLOAT32 else np.float64
        cycle_weights = (2.0 ** (g.dac_bits * np.arange(cycles))).astype(np.float32 if exact32 else np.float64)
        bits = work_buffer("bits", (vectors * cycles, unit.levels.shape[0]))
        bits[:, rows:] = 1.0
        spread = np.empty(vectors * cycles if offsets is not None else 0, dtype=np.float32)
        input_slices(chunk, g.dac_bits, cycles, bits, spread, np.float32(self.noise_steps))
        if offsets is not None:
            tape, draws = self.tape.values, iter(offsets)
        merged = np.empty((vectors, columns), dtype=cycle_weights.dtype)
        adc_max, no_noise = np.float32(g.adc_max), np.zeros((0, 0), dtype=np.float32)
        for first in range(0, vectors, BLOCK_VECTORS):
            last = min(first + BLOCK_VECTORS, vectors)
            reads = slice(first * cycles, last * cycles)
            for start in range(0, columns, BLOCK_COLUMNS):
                block = slice(start, min(start + BLOCK_COLUMNS, columns))
                analog = np.matmul(bits[reads], unit.levels[:, block],
                                   out=work_buffer("analog", ((last - first) * cycles, block.stop - start)))
                normals = no_noise
                if offsets is not None:   # this block's normals: a contiguous slice of the tape
                    at = next(draws)
                    normals = tape[at:at + analog.size].reshape(analog.shape)
                totals = np.empty((last - first, analog.shape[1]), dtype=merged.dtype)   # contiguous: vectorised
                read_out(analog, normals, spread[reads], adc_max, cycle_weights, totals)
                merged[first:last, block] = totals
        merged = merged.reshape(vectors, signs, unit.outputs.size, g.weight_slices).astype(merge_dtype, copy=False)
        merged = merged @ slice_weights.astype(merge_dtype)
        return (merged.transpose(0, 2, 1) @ np.array([1.0, -1.0][:signs], dtype=merge_dtype)).astype(np.float64)


def spare_columns(attrs: dict, first_array: int) -> dict[int, list[int]]:
    """The columns an `mvm` replaced by spares (its `spare_columns` attribute: flattened pairs of the layer's
    array and column), by chip array number."""
    pairs = list(attrs.get("spare_columns", ()))
    repaired: dict[int, list[int]] = {}
    for array, column in zip(pairs[::2], pairs[1::2]):
        repaired.setdefault(first_array + int(array), []).append(int(column))
    return repaired


def repaired_states(states: np.ndarray, columns: list[int] | None) -> np.ndarray:
    """An array's cell states once `columns` are replaced by spare columns: the spares are taken as tested
    good (a repair uses spares that passed test), so those columns read as perfect cells."""
    if columns:
        states = states.copy()
        states[:, columns] = OK
    return states


def check_spares(program: Program) -> None:
    """ProgramError when an `mvm` repairs more columns of an array than the target's `spare_columns`, or
    names an array or column its layer does not have."""
    allowed = int(program.target.get("spare_columns", 0))
    for instruction in program.instructions:
        if instruction.opcode != "mvm" or not instruction.attrs.get("spare_columns"):
            continue
        mapping = CrossbarMapping.of(instruction.attrs, program.constants[instruction.src[1]].shape)
        repaired = spare_columns(instruction.attrs, 0)
        counts = [len(columns) for columns in repaired.values()]
        if len(instruction.attrs["spare_columns"]) % 2 or max(counts) > allowed or \
                any(not 0 <= a < mapping.arrays or not all(0 <= c < mapping.xbar_cols for c in columns)
                    for a, columns in repaired.items()):
            raise ProgramError(f"program {program.name!r}: mvm {instruction.attrs.get('layer', '?')!r} repairs "
                               f"columns the target's {allowed} spare columns per array cannot cover")


def chip_faults(device: Device, faults: FaultMap | None) -> FaultMap | None:
    """The fault map a machine uses: the one given, else the device's random one (None when it has none)."""
    if faults is not None:
        return faults
    return RandomFaults(device.stuck_off_rate, device.stuck_on_rate, device.fault_seed) if device.has_faults else None


def program_crossbars(program: Program, device: Device | None = None, seed: int = 0,
                      faults: FaultMap | None = None) -> dict[str, CrossbarGroup | DeviceCrossbarGroup]:
    """The crossbars of every `mvm` of `program`, by destination buffer: exact `CrossbarGroup`s for the ideal
    device without faults (today's machine, bit for bit), else `DeviceCrossbarGroup`s programmed with `seed`."""
    check_spares(program)
    owners = array_owners(program)
    mvms = [i for i, owner in zip(program.instructions, owners) if i.opcode == "mvm" and owner is None]
    operands = [(program.constants[i.src[1]], i.attrs, *[program.constants[n] for n in i.src[2:]]) for i in mvms]
    faults = None if device is None else chip_faults(device, faults)
    crossbars: dict[str, CrossbarGroup | DeviceCrossbarGroup] = {}
    if device is None or (device.is_ideal and faults is None):
        crossbars = {i.dst[0]: CrossbarGroup(*args) for i, args in zip(mvms, operands)}
    else:
        if faults is not None:
            first = next((args for args in operands), None)
            if first is not None:
                mapping = CrossbarMapping.of(first[1], first[0].shape)
                total = sum(CrossbarMapping.of(args[1], args[0].shape).arrays for args in operands)
                faults.check(total, mapping.xbar_rows, mapping.xbar_cols)
        first_array, tape = 0, NoiseTape(seed)
        for instruction, (weights, attrs, *maps) in zip(mvms, operands):
            group = DeviceCrossbarGroup(weights, attrs, *(maps or [None, None]), device=device, seed=seed,
                                        first_array=first_array, faults=faults, tape=tape)
            first_array += group.array_count
            crossbars[instruction.dst[0]] = group
    for instruction, owner in zip(program.instructions, owners):   # mvms on an earlier mvm's arrays read them
        if owner is not None:
            crossbars[instruction.dst[0]] = crossbars[program.instructions[owner].dst[0]]
    return crossbars
