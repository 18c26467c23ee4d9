"""Property tests of the machine's exactness claims (`runtime/crossbar.py`, `runtime/machine.py`).

1. With a lossless ADC both execution paths of a `CrossbarGroup` (`sliced` and `merged`) equal the
   int64 product, for any array size, bit widths, encoding, input signedness and group count.
2. With a narrow ADC the `sliced` path equals a deliberately naive simulation written here: explicit
   loops over arrays, input bit-slices, cell columns and sign arrays, saturating every column sum.
3. In float mode a compiled conv layer run on the machine equals the interpreter on the graph IR.
4. The machine's counters equal the instruction table's counts derived from the program alone, and its
   totals follow the schedule: a layer's parallel mvms (pixel-wise deconvolution phases) overlap in cycles.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, example, given, settings, target
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.mapping import CrossbarMapping
from rcc.backends.program import Program
from rcc.backends.target import Target, TargetError
from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir import interpreter
from rcc.runtime.counters import PARALLEL, Counts
from rcc.runtime import crossbar
from rcc.runtime.crossbar import CrossbarGroup
from rcc.runtime.instructions import INSTRUCTIONS
from rcc.runtime.machine import Machine, target_of
from rcc.runtime.schedule import instruction_layers

MODELS = Path(__file__).resolve().parents[2] / "models"
LENET = MODELS / "lenet5.onnx"


# ----- layers built directly, with the attributes `lower-to-xbar` would give them

@dataclass(frozen=True)
class Layer:
    """Integer weights [G, K, M], input vectors [P, G·K] and the `xbar.mvm` attributes of their mapping."""

    weights: np.ndarray
    x: np.ndarray
    attrs: dict

    def __repr__(self) -> str:  # hypothesis prints the failing case; show what decides it
        return f"Layer(weights={self.weights.tolist()}, x={self.x.tolist()}, attrs={self.attrs})"


def lossless_adc_bits(rows: int, dac_bits: int, cell_bits: int) -> int:
    return (rows * (2**dac_bits - 1) * (2**cell_bits - 1)).bit_length()


def weight_slices(weight_bits: int, cell_bits: int, encoding: str) -> int:
    magnitude_bits = weight_bits - 1 if encoding == "differential" else weight_bits
    return math.ceil(magnitude_bits / cell_bits)


def mvm_attrs(*, rows: int, cols: int, weight_bits: int, input_bits: int, input_signed: bool, cell_bits: int,
              dac_bits: int, encoding: str, groups: int, k: int, m: int, adc_bits: int | None = None) -> dict:
    """The mapping attributes as `compiler/passes/lower_to_xbar.py` computes them (adc_bits None: lossless)."""
    slices = weight_slices(weight_bits, cell_bits, encoding)
    row_tiles, col_tiles = -(-k // rows), -(-m // (cols // slices))
    signs = 2 if encoding == "differential" else 1
    return {"layer": "layer", "xbar_rows": rows, "xbar_cols": cols, "weight_bits": weight_bits,
            "input_bits": input_bits, "input_signed": input_signed, "cell_bits": cell_bits, "dac_bits": dac_bits,
            "adc_bits": lossless_adc_bits(rows, dac_bits, cell_bits) if adc_bits is None else adc_bits,
            "encoding": encoding, "groups": groups, "row_tiles": row_tiles, "col_tiles": col_tiles,
            "weight_slices": slices, "arrays": groups * row_tiles * col_tiles * signs, "first_array": 0}


def random_integers(rng: np.random.Generator, low: int, high: int, shape: tuple, mode: str) -> np.ndarray:
    """Uniform in [low, high]; "extreme" draws only the two ends (the worst case for exactness bounds)."""
    if mode == "extreme":
        return rng.choice(np.array([low, high], dtype=np.int64), size=shape)
    return rng.integers(low, high, endpoint=True, size=shape, dtype=np.int64)


@st.composite
def layers(draw: st.DrawFn, max_rows: int = 64, max_cols: int = 64, max_weight_bits: int = 10,
           max_input_bits: int = 10, max_cell_bits: int = 4, max_dac_bits: int = 10, max_groups: int = 3,
           max_vectors: int = 4, max_row_tiles: int = 3, max_col_tiles: int = 3) -> Layer:
    """A random layer and inputs in the quantiser's ranges, its attributes with a lossless ADC."""
    weight_bits = draw(st.integers(2, max_weight_bits))
    input_bits = draw(st.integers(1, max_input_bits))
    cell_bits = draw(st.integers(1, max_cell_bits))
    dac_bits = draw(st.integers(1, min(input_bits, max_dac_bits)))
    encoding = draw(st.sampled_from(["differential", "offset"]))
    input_signed = draw(st.booleans())
    slices = weight_slices(weight_bits, cell_bits, encoding)
    rows = draw(st.integers(2, max_rows))
    cols = draw(st.integers(max(2, slices), max(max_cols, slices)))
    per_array = cols // slices
    groups = draw(st.integers(1, max_groups))
    k = draw(st.integers(1, rows * max_row_tiles))
    m = draw(st.integers(1, per_array * max_col_tiles))
    vectors = draw(st.integers(1, max_vectors))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weight_max = 2 ** (weight_bits - 1) - 1
    fills = st.sampled_from(["uniform", "extreme"])
    weights = random_integers(rng, -weight_max, weight_max, (groups, k, m), draw(fills))
    input_max = 2 ** (input_bits - 1) - 1 if input_signed else 2**input_bits - 1
    x = random_integers(rng, -input_max if input_signed else 0, input_max, (vectors, groups * k),
                        draw(fills))
    attrs = mvm_attrs(rows=rows, cols=cols, weight_bits=weight_bits, input_bits=input_bits, input_signed=input_signed,
                      cell_bits=cell_bits, dac_bits=dac_bits, encoding=encoding, groups=groups, k=k, m=m)
    return Layer(weights.astype(np.int8 if weight_bits <= 8 else np.int16), x.astype(np.int32), attrs)


def int64_product(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """x [P, G·K] · W [G, K, M] → [P, G·M] in int64, group by group."""
    groups, k, _ = weights.shape
    wide = x.astype(np.int64)
    return np.concatenate([wide[:, g * k:(g + 1) * k] @ weights[g].astype(np.int64) for g in range(groups)], axis=1)


# ----- 1. lossless integer mode

@settings(max_examples=80, deadline=None)
@given(layers())
def test_lossless_paths_equal_int64_product(layer: Layer) -> None:
    """Both paths of a lossless CrossbarGroup give exactly x·W in int64, whatever the geometry and widths,
    including K and M that do not fill the last row or column tile; the attributes agree with the mapping
    lowering writes whenever the widths make a valid Target."""
    a = layer.attrs
    try:
        chip = Target(xbar_rows=a["xbar_rows"], xbar_cols=a["xbar_cols"], weight_bits=a["weight_bits"],
                      input_bits=a["input_bits"], cell_bits=a["cell_bits"], dac_bits=a["dac_bits"],
                      encoding=a["encoding"])
    except TargetError:
        chip = None  # cell_bits above the magnitude bits: the crossbar is still exact, the target refuses it
    if chip is not None:
        lowered = CrossbarMapping.lowered(chip, layer.weights.shape, a["input_signed"]).attrs()
        assert lowered == {key: a[key] for key in lowered}
        assert chip.lossless_adc_bits == a["adc_bits"]
    crossbars = CrossbarGroup(layer.weights, a)
    assert crossbars.adc_lossless
    expected = int64_product(layer.x, layer.weights)
    for sliced in (True, False):
        actual = crossbars.run(layer.x, sliced=sliced)
        assert actual.dtype == np.int64
        assert np.array_equal(actual, expected), f"sliced={sliced}"


@settings(max_examples=40, deadline=None)
@given(layers(max_weight_bits=16, max_input_bits=16, max_cell_bits=16, max_dac_bits=2, max_groups=1))
def test_lossless_paths_exact_with_wide_cells_and_16_bits(layer: Layer) -> None:
    """The same with the target's widest settings: 16-bit weights and inputs and cells up to 16 bits (levels
    above 255 must not wrap); a 2-bit DAC keeps 64 rows' column sums below the target's 2^24 limit."""
    crossbars = CrossbarGroup(layer.weights, layer.attrs)
    expected = int64_product(layer.x, layer.weights)
    for sliced in (True, False):
        assert np.array_equal(crossbars.run(layer.x, sliced=sliced), expected), f"sliced={sliced}"


@settings(max_examples=60, deadline=None)
@given(layers())
def test_geometry_columns_match_layout(layer: Layer) -> None:
    """The columns the counters charge ADC conversions for are the columns holding cells: output j of a
    column tile in columns j·S .. j·S+S−1, the last `cols mod S` columns of every array empty."""
    a = layer.attrs
    groups, k, m = layer.weights.shape
    signs = 2 if a["encoding"] == "differential" else 1
    per_array, slices = a["xbar_cols"] // a["weight_slices"], a["weight_slices"]
    used = [sum(slices for j in range(per_array) if tile_col * per_array + j < m)
            for _ in range(groups * a["row_tiles"] * signs) for tile_col in range(a["col_tiles"])]
    mapping = CrossbarGroup(layer.weights, a).mapping
    assert mapping.arrays == len(used) == a["arrays"]
    assert mapping.used_columns == sum(used)
    assert mapping.max_columns_per_array == max(used)
    assert all(0 < columns <= a["xbar_cols"] for columns in used)


# ----- 2. a narrow ADC saturates exactly as the naive simulation says

def naive_crossbars(weights: np.ndarray, x: np.ndarray, attrs: dict) -> tuple[np.ndarray, int]:
    """The accumulators [P, G·M] (int64) of the arrays simulated one cell column at a time, and how many
    column conversions saturated. Written independently of `runtime/crossbar.py` and `backends/mapping.py`.

    Per group, row tile, column tile and sign array the cells are programmed explicitly (output j of the
    tile in columns j·S .. j·S+S−1, slice s holding bits [cell_bits·s, cell_bits·(s+1)) of the level);
    per input vector and input bit-slice every column sums drive·level over the rows, the ADC clips the
    sum at 2^adc_bits − 1, and the code is shifted by dac_bits·cycle + cell_bits·slice and added (or
    subtracted for the negative array). The offsets of offset-binary inputs and offset-encoded weights are
    removed at the end: Σ(x+ox)(w+ow) − ow·Σ(x+ox) − ox·Σw = Σ x·w.
    """
    groups, k_rows, m_outputs = weights.shape
    rows, cols, slices = attrs["xbar_rows"], attrs["xbar_cols"], attrs["weight_slices"]
    cell_bits, dac_bits = attrs["cell_bits"], attrs["dac_bits"]
    per_array = cols // slices
    cycles = -(-attrs["input_bits"] // dac_bits)
    adc_max = 2 ** attrs["adc_bits"] - 1
    input_offset = 2 ** (attrs["input_bits"] - 1) if attrs["input_signed"] else 0
    if attrs["encoding"] == "differential":
        sign_arrays = [(+1, lambda w: max(w, 0)), (-1, lambda w: max(-w, 0))]
        weight_offset = 0
    else:
        weight_offset = 2 ** (attrs["weight_bits"] - 1)
        sign_arrays = [(+1, lambda w: w + weight_offset)]
    vectors = x.shape[0]
    out = np.zeros((vectors, groups * m_outputs), dtype=np.int64)
    saturated = 0
    for g in range(groups):
        w = [[int(weights[g, r, c]) for c in range(m_outputs)] for r in range(k_rows)]
        acc = [[0] * m_outputs for _ in range(vectors)]
        fed = [[int(x[p, g * k_rows + r]) + input_offset for r in range(k_rows)] for p in range(vectors)]
        for tile_row in range(attrs["row_tiles"]):
            for tile_col in range(attrs["col_tiles"]):
                for sign, level_of in sign_arrays:
                    cells = [[0] * cols for _ in range(rows)]
                    for r in range(rows):
                        for j in range(per_array):
                            row, output = tile_row * rows + r, tile_col * per_array + j
                            if row < k_rows and output < m_outputs:
                                level = level_of(w[row][output])
                                for s in range(slices):
                                    cells[r][j * slices + s] = (level >> (cell_bits * s)) % 2**cell_bits
                    for p in range(vectors):
                        for cycle in range(cycles):
                            drive = [(fed[p][tile_row * rows + r] >> (dac_bits * cycle)) % 2**dac_bits
                                     if tile_row * rows + r < k_rows else 0 for r in range(rows)]
                            for column in range(per_array * slices):
                                column_sum = sum(drive[r] * cells[r][column] for r in range(rows))
                                code = min(column_sum, adc_max)
                                saturated += column_sum > adc_max
                                j, s = divmod(column, slices)
                                output = tile_col * per_array + j
                                if output < m_outputs:
                                    acc[p][output] += sign * code * 2 ** (dac_bits * cycle + cell_bits * s)
        for p in range(vectors):
            for output in range(m_outputs):
                column_weight_sum = sum(w[r][output] for r in range(k_rows))
                value = acc[p][output] - weight_offset * sum(fed[p]) - input_offset * column_weight_sum
                out[p, g * m_outputs + output] = value
    return out, saturated


TINY = dict(max_rows=6, max_cols=8, max_weight_bits=6, max_input_bits=5, max_cell_bits=3, max_groups=2,
            max_vectors=2, max_row_tiles=2, max_col_tiles=2)


def saturating_example() -> tuple[Layer, int]:
    """A layer whose every column sums to 3·3 = 9 with 2-bit cells and a 2-bit DAC: a 3-bit ADC clips it."""
    attrs = mvm_attrs(rows=3, cols=4, weight_bits=5, input_bits=2, input_signed=False, cell_bits=2, dac_bits=2,
                      encoding="differential", groups=1, k=3, m=2)
    weights = np.array([[[15, -15], [15, -15], [15, -15]]], dtype=np.int8)
    return Layer(weights, np.array([[3, 3, 3]], dtype=np.int32), attrs), 3


@settings(max_examples=60, deadline=None)
@given(layers(**TINY), st.data())
@example(*saturating_example()).via("a fully saturated layer")
def test_narrow_adc_matches_naive_simulation(layer: Layer, adc_choice) -> None:
    """With adc_bits below lossless the sliced path equals the naive simulation bit for bit; with the
    lossless width the naive simulation equals the int64 product (which validates the reference)."""
    a = layer.attrs
    lossless = a["adc_bits"]
    reference, saturated = naive_crossbars(layer.weights, layer.x, a)
    assert saturated == 0
    assert np.array_equal(reference, int64_product(layer.x, layer.weights))
    adc_bits = adc_choice if isinstance(adc_choice, int) else adc_choice.draw(st.integers(1, lossless - 1))
    narrow = {**a, "adc_bits": adc_bits}
    expected, saturated = naive_crossbars(layer.weights, layer.x, narrow)
    target(float(saturated), label="saturated column conversions")
    crossbars = CrossbarGroup(layer.weights, narrow)
    assert not crossbars.adc_lossless
    actual = crossbars.run(layer.x, sliced=True)
    assert actual.dtype == np.int64
    assert np.array_equal(actual, expected)
    assert np.array_equal(crossbars.run(layer.x), expected)  # the default path of a narrow ADC is sliced


@settings(max_examples=30, deadline=None)
@given(layers(**TINY), st.data())
def test_narrow_adc_on_both_threads_matches_naive_simulation(layer: Layer, adc_choice) -> None:
    """The saturation read on both threads (`PARALLEL_EXCESS` 0, `PARALLEL_VECTORS` 2: the vectors in two halves, a
    single vector on one): the naive simulation's values, bit for bit."""
    adc_bits = adc_choice.draw(st.integers(1, layer.attrs["adc_bits"] - 1))
    narrow = {**layer.attrs, "adc_bits": adc_bits}
    expected, _ = naive_crossbars(layer.weights, layer.x, narrow)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crossbar, "PARALLEL_EXCESS", 0)
        patch.setattr(crossbar, "PARALLEL_VECTORS", 2)
        assert np.array_equal(CrossbarGroup(layer.weights, narrow).run(layer.x, sliced=True), expected)


@settings(max_examples=40, deadline=None)
@given(layers(max_vectors=5), st.data())
def test_packed_reads_match_naive_simulation(layer: Layer, choices) -> None:
    """Input cycles packed as digits of one GEMM per read (up to all of them, down to one where a column's sum
    needs most of float32's 24 bits), in chunks down to a single vector: the naive simulation's values, bit for
    bit; and each read packs as many cycles as float32 holds exactly, no more."""
    adc_bits = choices.draw(st.integers(1, layer.attrs["adc_bits"] - 1))
    narrow = {**layer.attrs, "adc_bits": adc_bits}
    expected, _ = naive_crossbars(layer.weights, layer.x, narrow)
    crossbars = CrossbarGroup(layer.weights, narrow)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crossbar, "EXCESS_CHUNK_ELEMENTS", choices.draw(st.sampled_from([1, 64, 1 << 22])))
        assert np.array_equal(crossbars.run(layer.x, sliced=True), expected)
    cycles = crossbars.mapping.input_cycles
    for tile in crossbars._saturable_tiles():
        peak = int(tile.levels.sum(axis=0).max()) * (2 ** narrow["dac_bits"] - 1)
        assert tile.base > peak and tile.base & (tile.base - 1) == 0
        digits = sum(tile.base ** j for j in range(tile.per_read))
        assert peak * digits < 2**24
        assert tile.per_read == cycles or peak * (digits + tile.base ** tile.per_read) >= 2**24


def test_saturating_example_saturates() -> None:
    """The explicit example really clips: 4 columns × 1 cycle all saturate, and the result is not x·W."""
    layer, adc_bits = saturating_example()
    narrow = {**layer.attrs, "adc_bits": adc_bits}
    expected, saturated = naive_crossbars(layer.weights, layer.x, narrow)
    assert saturated > 0
    assert not np.array_equal(expected, int64_product(layer.x, layer.weights))
    assert np.array_equal(CrossbarGroup(layer.weights, narrow).run(layer.x, sliced=True), expected)


# ----- 3. float mode equals the interpreter

@st.composite
def conv_models(draw: st.DrawFn) -> tuple[onnx.ModelProto, dict[str, np.ndarray], Target]:
    """A one-Conv ONNX model (random groups, kernel, strides, pads, dilations, bias), inputs, array size."""
    group = draw(st.integers(1, 3))
    in_channels = group * draw(st.integers(1, 3))
    out_channels = group * draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(2)]
    dilations = [draw(st.integers(1, 2)) for _ in range(2)]
    strides = [draw(st.integers(1, 3)) for _ in range(2)]
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    size = [draw(st.integers(max(1, d * (kk - 1) + 1 - p0 - p1), 9))
            for kk, d, p0, p1 in zip(kernel, dilations, pads[:2], pads[2:])]
    batch = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weight = rng.standard_normal((out_channels, in_channels // group, *kernel)).astype(np.float32)
    initializers = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if draw(st.booleans()):
        initializers.append(numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], name="conv", group=group, kernel_shape=kernel,
                            strides=strides, pads=pads, dilations=dilations)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, in_channels, *size])
    out_size = [(n + p0 + p1 - d * (kk - 1) - 1) // st_ + 1
                for n, kk, d, st_, p0, p1 in zip(size, kernel, dilations, strides, pads[:2], pads[2:])]
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, out_channels, *out_size])
    graph = helper.make_graph([node], "conv", [x_info], [y_info], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    chip = Target(xbar_rows=draw(st.integers(1, 40)), xbar_cols=draw(st.integers(4, 40)))  # ≥ 4 slices of 7 bits
    x = rng.standard_normal((batch, in_channels, *size)).astype(np.float32)
    return model, {"x": x}, chip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_models())
def test_float_mode_equals_interpreter(case: tuple[onnx.ModelProto, dict[str, np.ndarray], Target]) -> None:
    """A conv layer compiled in float mode and run on the machine equals the interpreter on the graph IR
    to float rounding, whatever the array size (row and column tiles), strides, pads and groups."""
    model, inputs, chip = case
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "conv.onnx"
        onnx.save(model, path)
        compiled = compile_model(path, chip, precision="float")
    expected = interpreter.run(compiled.graph, inputs)
    actual = Machine(compiled.program).run(inputs).outputs
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name].shape == value.shape and actual[name].dtype == value.dtype
        np.testing.assert_allclose(actual[name], value, rtol=1e-5, atol=1e-6)


# ----- 4. the counters are static

def static_counts(program: Program) -> list[Counts]:
    """Each instruction's counts from the program alone: operand shapes come from the constants, the
    declared inputs and the `shapes` of the instructions that write them, never from running it."""
    chip = target_of(program)
    shapes = {name: list(array.shape) for name, array in program.constants.items()}
    shapes.update({spec["name"]: list(spec["shape"]) for spec in program.inputs})
    counts = []
    for instruction in program.instructions:
        operand_shapes = [shapes[name] for name in instruction.src]
        counts.append(INSTRUCTIONS[instruction.opcode].count(chip, instruction, operand_shapes))
        shapes.update({name: list(shape) for name, shape in zip(instruction.dst, instruction.shapes)})
    return counts


@st.composite
def lenet_targets(draw: st.DrawFn) -> Target:
    weight_bits = draw(st.integers(2, 8))
    encoding = draw(st.sampled_from(["differential", "offset"]))
    magnitude_bits = weight_bits - 1 if encoding == "differential" else weight_bits
    cell_bits = draw(st.integers(1, min(3, magnitude_bits)))
    # input_bits 1 leaves signed activations no non-zero level: lower-to-xbar divides by zero (reported)
    input_bits = draw(st.integers(2, 8))
    slices = math.ceil(magnitude_bits / cell_bits)
    return Target(xbar_rows=draw(st.integers(8, 128)), xbar_cols=draw(st.integers(max(8, slices), 128)),
                  weight_bits=weight_bits, input_bits=input_bits, cell_bits=cell_bits,
                  dac_bits=draw(st.integers(1, input_bits)), encoding=encoding,
                  adc_bits=draw(st.none() | st.integers(1, 12)), adcs_per_array=draw(st.integers(1, 4)),
                  vector_lanes=draw(st.integers(1, 128)))


@settings(max_examples=15, deadline=None)
@given(lenet_targets(), st.sampled_from(["int", "float"]))
def test_machine_counters_equal_static_counts(chip: Target, precision: str) -> None:
    """On lenet5, the counts the machine accumulates while running equal, instruction by instruction and in
    total, the instruction table's counts computed statically from the program."""
    compiled = compile_model(LENET, chip, precision=precision)
    result = Machine(compiled.program).run(random_inputs(compiled.graph, 0))
    expected = static_counts(compiled.program)
    assert result.per_instruction == expected
    assert result.totals == scheduled_totals(compiled.program, expected)
    assert result.totals.mvm_ops > 0 and result.totals.adc_conversions > 0 and result.totals.cycles > 0


def scheduled_totals(program: Program, counts: list[Counts]) -> Counts:
    """The program's totals under the schedule's rule (runtime/schedule.py), stated as a correction of the
    plain sum: the mvms of one layer run in parallel, so of each time-like count (`PARALLEL`: cycles,
    array and column steps) all but the slowest mvm's overlap it."""
    total = Counts()
    for count in counts:
        total += count
    per_layer: dict[str, list[Counts]] = {}
    for instruction, layer, count in zip(program.instructions, instruction_layers(program), counts):
        if instruction.opcode == "mvm":
            per_layer.setdefault(layer, []).append(count)
    for key in PARALLEL:
        overlapped = sum(sum(getattr(c, key) for c in mvms) - max(getattr(c, key) for c in mvms)
                         for mvms in per_layer.values())
        setattr(total, key, getattr(total, key) - overlapped)
    return total


@pytest.mark.parametrize("model", ["dcgan_generator", "fcn_segmenter"])
@pytest.mark.parametrize("chip", [Target(), Target(xbar_rows=32, xbar_cols=32, adc_bits=6, encoding="offset")],
                         ids=["default", "small-offset"])
def test_parallel_mvms_of_a_layer_overlap_in_the_totals(model: str, chip: Target) -> None:
    """Pixel-wise deconvolution layers hold several mvms (one per output phase, each over several arrays):
    the machine's totals add their array reads, conversions and merges but count only the slowest one's
    cycles, and they equal the static counts put together by that rule."""
    compiled = compile_model(MODELS / f"{model}.onnx", chip)
    program = compiled.program
    layers = [layer for instruction, layer in zip(program.instructions, instruction_layers(program))
              if instruction.opcode == "mvm"]
    assert max(layers.count(layer) for layer in layers) > 1  # some layer really has parallel mvms
    result = Machine(program).run(random_inputs(compiled.graph, 0))
    expected = static_counts(program)
    assert result.per_instruction == expected
    assert result.totals == scheduled_totals(program, expected)
    plain = Counts()
    for counts in expected:
        plain += counts
    assert result.totals.cycles < plain.cycles
    assert (result.totals.mvm_ops, result.totals.adc_conversions, result.totals.accumulations) == \
        (plain.mvm_ops, plain.adc_conversions, plain.accumulations)
