"""The integer GEMM (`runtime/integer_gemm.py`): onnxruntime's u8 × s8 MatMulInteger as an 8-bit layer's exact
product, the same integers as the float64 product on extremes, offsets and depths; refused for ranges it cannot
code and on a CPU whose kernel saturates; and in a machine's compiled steps, with uint8 columns, the same outputs
as the traced run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.runtime import integer_gemm
from rcc.runtime.integer_gemm import LARGEST_DEPTH, Int8Gemm, exact_on_this_cpu, input_offset, takes
from rcc.runtime.machine import Machine
from tests.conftest import ROOT
from tests.runtime.test_compiled_steps import _identical

needs_exact_kernel = pytest.mark.skipif(not exact_on_this_cpu(), reason="this CPU's u8 x s8 kernel saturates pairs")


@needs_exact_kernel
@pytest.mark.parametrize("x_range", [(0, 255), (0, 15), (-128, 127), (-127, 127), (-8, 7)])
@pytest.mark.parametrize("depth", [1, 147, 4608])
def test_the_integer_gemm_is_the_exact_product(x_range: tuple[int, int], depth: int) -> None:
    """Random codes, a row and a column at their extremes (every pair of products 255 · 127 or 255 · −128, the
    sums then near ±2^22·2), in float32 levels as the machine holds them: the float64 product's integers."""
    rng = np.random.default_rng(depth)
    low, high = x_range
    x = rng.integers(low, high + 1, (37, depth)).astype(np.float32)
    x[0], x[1] = high, low
    weights = rng.integers(-128, 128, (depth, 9)).astype(np.float32)
    weights[:, 0], weights[:, 1] = 127, -128
    assert takes(weights, x_range)
    sums = Int8Gemm(weights, input_offset(x_range))(x)
    assert sums.dtype == np.int32
    assert np.array_equal(sums, x.astype(np.float64) @ weights.astype(np.float64))


def test_ranges_and_weights_it_cannot_code_are_refused() -> None:
    weights = np.ones((8, 4), np.float32)
    for x_range in [(0, 256), (-129, 126), (-1, 255), (-128, 128)]:
        assert not takes(weights, x_range)
    for extreme in (128, -129):
        wide = weights.copy()
        wide[3, 2] = extreme
        assert not takes(wide, (0, 255))
    assert not takes(np.ones((LARGEST_DEPTH + 1, 1), np.float32), (0, 255))
    assert input_offset((-128, 127)) == 128 and input_offset((0, 255)) == 0 and input_offset((3, 9)) == 0


class _EmulatedKernel:
    """A session whose u8 × s8 sums are computed in int64: exactly, or as MLAS's AVX2 kernel sums them (products in
    adjacent pairs from the first, each pair saturated to int16, then int32)."""

    def __init__(self, weights: np.ndarray, saturating: bool):
        self.weights, self.saturating = weights.astype(np.int64), saturating

    def run(self, outputs, feeds: dict) -> list[np.ndarray]:
        codes, weights = feeds["x"].astype(np.int64), self.weights
        assert feeds["x"].dtype == np.uint8
        if not self.saturating:
            return [(codes @ weights).astype(np.int32)]
        if codes.shape[1] % 2:
            codes, weights = np.pad(codes, ((0, 0), (0, 1))), np.pad(weights, ((0, 1), (0, 0)))
        pairs = codes[:, 0::2, None] * weights[None, 0::2] + codes[:, 1::2, None] * weights[None, 1::2]
        return [np.clip(pairs, -2**15, 2**15 - 1).sum(axis=1).astype(np.int32)]


def _emulated(monkeypatch, saturating: bool) -> None:
    """Every Int8Gemm (its offset, casts and correction as they are) on an emulated kernel, the probe run anew."""
    original = Int8Gemm.__init__

    def on_emulated_kernel(self, weights, offset=0):
        original(self, weights, offset)
        self._session = _EmulatedKernel(np.asarray(weights), saturating)
    monkeypatch.setattr(Int8Gemm, "__init__", on_emulated_kernel)
    monkeypatch.setattr(integer_gemm, "_PROBE", {})


def test_a_cpu_whose_kernel_saturates_keeps_the_float_gemm(monkeypatch) -> None:
    """On a kernel that sums pairs of products in int16 with saturation (MLAS's AVX2 one), the probe fails, no layer
    takes the integer GEMM, and a machine's compiled runs still equal its traced run."""
    _emulated(monkeypatch, saturating=True)
    assert not exact_on_this_cpu()
    assert not takes(np.ones((8, 4), np.float32), (0, 255))
    machine, traced, inputs = _traced("resnet_small")
    assert _runs_equal(machine, traced, inputs)
    assert not _integer_products(machine)


@pytest.mark.parametrize("model, layers", [("resnet_small", 6), ("transformer_encoder_block", 6)])
def test_on_an_exact_kernel_every_cpu_runs_the_integer_path(model: str, layers: int, monkeypatch) -> None:
    """With an exact kernel emulated (so on any CPU, this module's offsets, casts and corrections as they are), the
    size rules lifted: the layers take the integer GEMM, unsigned columns as uint8 codes, signed inputs offset,
    and the compiled runs equal the traced run."""
    _emulated(monkeypatch, saturating=False)
    monkeypatch.setattr(integer_gemm, "INTEGER_GEMM_ROWS", 1)
    monkeypatch.setattr(integer_gemm, "INTEGER_GEMM_MACS", 1)
    machine, traced, inputs = _traced(model)
    assert _runs_equal(machine, traced, inputs)
    assert len(_integer_products(machine)) == layers


@needs_exact_kernel
def test_the_deepest_layer_it_takes_sums_to_the_edge_of_int32() -> None:
    """K = LARGEST_DEPTH, every code 255 against every weight −128 (and 127): sums of −2,147,450,880 and
    2,130,719,745, exact in int32."""
    x = np.full((2, LARGEST_DEPTH), 255, np.uint8)
    weights = np.empty((LARGEST_DEPTH, 2), np.float32)
    weights[:, 0], weights[:, 1] = -128, 127
    assert takes(weights, (0, 255))
    sums = Int8Gemm(weights)(x)
    assert sums.tolist() == [[-255 * 128 * LARGEST_DEPTH, 255 * 127 * LARGEST_DEPTH]] * 2


def _traced(model: str):
    compiled = compile_model(ROOT / "models" / f"{model}.onnx", precision="int")
    machine = Machine(compiled.program)
    inputs = random_inputs(compiled.graph, 4)
    return machine, machine.run(inputs, trace=True).outputs, inputs


def _runs_equal(machine: Machine, traced: dict, inputs: dict) -> bool:
    machine.plan.compile_after_seconds = 0.0
    equal = True
    for _ in range(2):
        outputs = machine.run(inputs).outputs
        equal &= all(_identical(np.asarray(outputs[name]), np.asarray(value)) for name, value in traced.items())
    return equal and machine.plan.steps_compiled


def _integer_products(machine: Machine) -> list:
    return [step for step in machine.plan.single if step.instruction.opcode == "mvm" and
            "integer_product" in step.run.__qualname__]   # (integer_product_of_columns too)


@needs_exact_kernel
@pytest.mark.parametrize("model, layers, every_size", [
    ("lenet5", 0, False), ("resnet_small", 4, False), ("fcn_segmenter", 2, False), ("subpixel_sr", 2, False),
    ("resnet_small", 6, True),
    ("transformer_encoder_block", 0, False), ("transformer_encoder_block", 6, True), ("gpt_decoder_block", 7, True)])
def test_compiled_runs_take_the_integer_gemm_and_equal_the_traced_run(model: str, layers: int, every_size: bool,
                                                                      monkeypatch) -> None:
    """Once compiled, the large 8-bit layers take the integer GEMM (resnet_small's four 3x3 layers, the three of stride
    1 from its columns of uint8 codes instead of tap by tap in float32, fcn_segmenter's two, from unsigned inputs;
    subpixel_sr's two 3x3 layers from signed ones, offset, one of them below INTEGER_GEMM_MACS, as it would
    otherwise go tap by tap (TAP_LAYER_MACS); not lenet5's dense layers, one row each, nor the transformer block's
    16-token projections, 2^14-2^16 multiply- accumulates); with the size rules lifted, layers of every size
    (resnet_small's stem from signed inputs, offset, and a 3x3 layer's 1x1 shortcut, the transformer blocks'
    projections from signed inputs; not resnet_small's classifier, one kernel call with its quantize and
    dequantize). An im2col read by one copies uint8 codes where its inputs are unsigned or its kernel has several
    taps (signed inputs offset); outputs bit for bit those of the traced run."""
    if every_size:
        monkeypatch.setattr(integer_gemm, "INTEGER_GEMM_ROWS", 1)
        monkeypatch.setattr(integer_gemm, "INTEGER_GEMM_MACS", 1)
    machine, traced, inputs = _traced(model)
    assert _runs_equal(machine, traced, inputs)
    assert len(_integer_products(machine)) == layers
    producer = {name: (step.instruction.opcode, step.instruction.attrs) for step in machine.plan.single
                for name in step.instruction.dst}
    seen = {}   # each integer product's codes' dtype (as the integer GEMM gets them), its input's range and producer
    gemm_call, running = Int8Gemm.__call__, []

    def recording_gemm(self, x):
        step = running[-1]
        source = step.instruction.src[0]
        seen[step.index] = (x.dtype, machine.input_ranges[source], producer[source])
        return gemm_call(self, x)
    monkeypatch.setattr(Int8Gemm, "__call__", recording_gemm)

    def recording(step):
        def run(operands):
            running.append(step)
            return step.run(operands)
        return dataclasses.replace(step, run=run)
    machine.plan.single = [recording(step) if step in _integer_products(machine) else step
                           for step in machine.plan.single]
    machine.run(inputs, timings={})   # a profiled run calls the single-sample steps one by one
    assert len(seen) == layers
    # uint8 codes from an im2col: of unsigned inputs, and of signed ones (offset) where the kernel has several taps
    assert all((dtype == np.uint8) == (by == "im2col" and (low >= 0 or math.prod(attrs["kernel"]) > 1))
               for dtype, (low, _), (by, attrs) in seen.values()), seen
    assert (np.dtype(np.uint8) in {dtype for dtype, _, _ in seen.values()}) == (model in ("resnet_small",
                                                                                     "fcn_segmenter", "subpixel_sr"))
