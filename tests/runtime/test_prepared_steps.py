"""Steps the machine prepares once per program agree with their definitions bit for bit: an im2col as one
gather (`im2col_sources`), a dequantize with constant scales and bias (`dequantizer`, one block or many), and a
layer's exact product prepared for a known input range (`CrossbarGroup.exact_product`); a packed layer's blocks
as one dense GEMM; a dequantize given channels first; a stride-1 convolution's product tap by tap, without its im2col."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.nn_shape import transpose
from rcc.ir.ops.xbar import (_DEQUANTIZE_BLOCK, channels_first_dequantizer, dequantize, dequantizer, im2col,
                             im2col_sources, quantize_limits)
from rcc.runtime import crossbar
from rcc.runtime.crossbar import CrossbarGroup
from rcc.runtime.machine import Machine
from rcc.runtime import tap_conv
from rcc.runtime.tap_conv import DepthwiseTaps, TapConvolution, tap_product_of
from tests.conftest import ROOT
from tests.runtime.test_crossbar_exactness import Layer, int64_product, mvm_attrs
from tests.runtime.test_machine_fast_paths import _layer
from tests.runtime.test_packing_exactness import packed_attrs


@pytest.mark.parametrize("seed", range(6))
def test_im2col_as_a_gather_is_im2col(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(5, 12)), int(rng.integers(5, 12)))
    attrs = {"kernel": tuple(int(k) for k in rng.integers(1, 5, 2)), "strides": tuple(int(s) for s in rng.integers(1, 3, 2)),
             "pads": tuple(int(p) for p in rng.integers(0, 3, 4)), "dilations": tuple(int(d) for d in rng.integers(1, 3, 2))}
    x = rng.standard_normal(shape).astype(np.float32)
    sources = im2col_sources(shape, *attrs.values())
    assert np.array_equal(np.take(np.append(x.reshape(-1), np.float32(0)), sources), im2col(x, **attrs))


def _blockwise(acc: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None, input_scale: float) -> np.ndarray:
    """The definition: acc · input_scale · w_scale (+ bias) in float64, one row at a time, rounded once."""
    scale = input_scale * w_scale.astype(np.float64)
    rows = [row * scale + (0.0 if bias is None else bias.astype(np.float64)) for row in acc.astype(np.float64)]
    return np.array(rows).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 37, 3 * _DEQUANTIZE_BLOCK // 16 + 5])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("acc_dtype", [np.int64, np.float32])
def test_a_prepared_dequantize_is_the_float64_formula(rows: int, with_bias: bool, acc_dtype: type) -> None:
    rng = np.random.default_rng(rows)
    acc = rng.integers(-2 ** 20, 2 ** 20, (rows, 16)).astype(acc_dtype)
    w_scale = rng.uniform(1e-4, 1e-2, 16).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32) if with_bias else None
    assert np.array_equal(dequantizer(w_scale, bias, 0.037)(acc), _blockwise(acc, w_scale, bias, 0.037))


@pytest.mark.parametrize("with_bias", [True, False])
def test_a_dequantize_given_channels_first_is_dequantize_then_transpose(with_bias: bool) -> None:
    rng = np.random.default_rng(7)
    shape = (2, 5, 3, 11)
    acc = rng.integers(-2 ** 20, 2 ** 20, (2 * 5 * 3, 11)).astype(np.float32)
    w_scale = rng.uniform(1e-4, 1e-2, 11).astype(np.float32)
    bias = rng.standard_normal(11).astype(np.float32) if with_bias else None
    expected = transpose(dequantize(acc, w_scale, bias, input_scale=0.02).reshape(shape), perm=(0, 3, 1, 2))
    got = channels_first_dequantizer(w_scale, bias, 0.02, shape)(acc)
    assert got.flags.c_contiguous and np.array_equal(got, expected)


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("bits", [4, 8, 16])
def test_a_product_prepared_for_a_range_is_exact_values(groups: int, bits: int) -> None:
    rng = np.random.default_rng(bits)
    low, high = quantize_limits(bits, True)
    x = rng.integers(low, high + 1, (40, groups * 300)).astype(np.float32)
    weights = rng.integers(-127, 128, (groups, 300, 7))
    layer = _layer(rng, 300, 7, x, weights)
    expected = layer.exact_values(x, (low, high))
    got = layer.exact_product((low, high))(x)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("input_bits", [8, 16])
def test_a_packed_layer_as_one_dense_matrix_is_its_blocks_sum(monkeypatch, groups: int, input_bits: int) -> None:
    """The packed blocks run as one GEMM (small layers) and block by block (large ones, here forced) give the
    int64 product, in float32 and (16-bit inputs over 300 rows) float64."""
    rng = np.random.default_rng(groups + input_bits)
    k, m = 300, 40
    weights = np.where(rng.random((groups, k, m)) < 0.2, rng.integers(-127, 128, (groups, k, m)), 0).astype(np.int8)
    low, high = quantize_limits(input_bits, True)
    x = rng.integers(low, high + 1, (23, groups * k)).astype(np.int32)
    attrs = mvm_attrs(rows=128, cols=128, weight_bits=8, input_bits=input_bits, input_signed=True, cell_bits=2,
                      dac_bits=1, encoding="differential", groups=groups, k=k, m=m)
    layer = Layer(weights, x, attrs)
    attrs, row_map, col_map = packed_attrs(layer, "compact")
    expected = int64_product(x, weights)
    assert np.array_equal(CrossbarGroup(weights, attrs, row_map, col_map).run(x, x_range=(low, high)), expected)
    monkeypatch.setattr(crossbar, "DENSE_PACKED_ELEMENTS", 0)
    looped = CrossbarGroup(weights, attrs, row_map, col_map)
    assert np.array_equal(looped.run(x, x_range=(low, high)), expected) and looped._packed_dense is None


@pytest.mark.parametrize("seed", range(5))
def test_a_stride_one_convolution_tap_by_tap_is_the_im2col_product(seed: int) -> None:
    """Random kernels, pads, dilations and batch sizes; int32 and float32 levels: the same float32 integers."""
    rng = np.random.default_rng(seed)
    n, c, m = int(rng.integers(1, 3)), int(rng.integers(1, 20)), int(rng.integers(1, 9))
    attrs = {"kernel": tuple(int(k) for k in rng.integers(1, 4, 2)), "strides": (1, 1),
             "pads": tuple(int(p) for p in rng.integers(0, 3, 4)), "dilations": tuple(int(d) for d in rng.integers(1, 3, 2))}
    taps = attrs["kernel"][0] * attrs["kernel"][1]
    x = rng.integers(0, 256, (n, c, int(rng.integers(6, 12)), int(rng.integers(6, 12)))).astype(np.int32)
    weights = rng.integers(-127, 128, (1, c * taps, m))
    layer = _layer(rng, c * taps, m, x, weights)
    assert layer.single_gemm_exact((0, 255))
    cols = im2col(x, **attrs)
    expected = layer.exact_product((0, 255))(cols)
    convolution = TapConvolution(layer, attrs)
    for levels in (x, x.astype(np.float32)):
        got = convolution(levels)
        assert got.dtype == np.float32 and np.array_equal(got, expected)


@pytest.mark.parametrize("n", [1, 3])
def test_a_pointwise_convolution_reads_its_input_pixels_as_they_lie(n: int) -> None:
    """A 1×1 unpadded layer's product is the GEMM of the input's pixels read transposed, whatever its size: the
    same float32 integers as im2col's product. A 3×3 layer with few columns goes through im2col's gather and one
    GEMM."""
    rng = np.random.default_rng(n)
    attrs = {"kernel": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1)}
    x = rng.integers(0, 256, (n, 16, 5, 7)).astype(np.int32)
    layer = _layer(rng, 16, 6, x, rng.integers(-127, 128, (1, 16, 6)))
    convolution = TapConvolution(layer, attrs)
    assert convolution.pointwise and convolution.suits(x.shape)
    expected = layer.exact_product((0, 255))(im2col(x, **attrs))
    for levels in (x, x.astype(np.float32)):
        got = convolution(levels)
        assert got.dtype == np.float32 and np.array_equal(got, expected)
    small = TapConvolution(_layer(rng, 8 * 9, 6, x, rng.integers(-127, 128, (1, 8 * 9, 6))),
                           {**attrs, "kernel": (3, 3), "pads": (1, 1, 1, 1)})
    assert not small.pointwise and not small.suits((1, 8, 16, 16))   # 18,432 column elements: the gather
    assert small.suits((1, 8, 32, 32))   # 73,728


@pytest.mark.parametrize("seed", range(8))
def test_a_depthwise_convolution_tap_by_tap_is_the_im2col_product(monkeypatch, seed: int) -> None:
    """Random kernels, strides, pads, dilations, channel multipliers and batch sizes, channels first and (stride
    1) channels last; int32 and float32 levels: the same float32 integers as the grouped product of the columns."""
    rng = np.random.default_rng(100 + seed)
    n, c, multiplier = int(rng.integers(1, 3)), int(rng.integers(2, 40)), int(rng.integers(1, 4))
    attrs = {"kernel": tuple(int(k) for k in rng.integers(1, 4, 2)), "strides": tuple(int(s) for s in rng.integers(1, 4, 2)),
             "pads": tuple(int(p) for p in rng.integers(0, 3, 4)), "dilations": tuple(int(d) for d in rng.integers(1, 3, 2))}
    taps = attrs["kernel"][0] * attrs["kernel"][1]
    x = rng.integers(-128, 128, (n, c, int(rng.integers(4, 12)), int(rng.integers(4, 12)))).astype(np.int32)
    layer = _layer(rng, taps, multiplier, x, rng.integers(-127, 128, (c, taps, multiplier)))
    assert layer.single_gemm_exact((-128, 127))
    expected = layer.exact_product((-128, 127))(im2col(x, **attrs))
    tap = tap_product_of(layer, attrs)
    assert isinstance(tap, DepthwiseTaps) if taps > 1 else tap is None
    if tap is None:
        return
    layouts = (0, 1 << 30) if attrs["strides"] == (1, 1) else (0,)   # channels first, channels last
    for pixels in layouts:
        monkeypatch.setattr(tap_conv, "CHANNELS_FIRST_PIXELS", pixels)
        for levels in (x, x.astype(np.float32)):
            got = tap(levels)
            assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_depthwise_taps_take_the_layers_they_pay_for() -> None:
    """Stride 1 from DEPTHWISE_MIN_OUTPUTS outputs; strided only with output planes of CHANNELS_FIRST_PIXELS;
    never when the tiled weights would pass SPREAD_ELEMENTS."""
    rng = np.random.default_rng(0)
    x = np.zeros((1, 48, 16, 16), np.int32)
    layer = _layer(rng, 9, 1, x, rng.integers(-127, 128, (48, 9, 1)))
    attrs = {"kernel": (3, 3), "pads": (1, 1, 1, 1), "dilations": (1, 1)}
    stride_one, stride_two = (DepthwiseTaps(layer, {**attrs, "strides": s}) for s in ((1, 1), (2, 2)))
    assert stride_one.suits((1, 48, 16, 16)) and not stride_one.suits((1, 8, 8, 8))
    assert not stride_two.suits((1, 48, 16, 16)) and stride_two.suits((1, 48, 32, 32))
    assert not stride_one.suits((1, 48, 112, 112))


def test_a_single_run_with_depthwise_taps_gives_the_traced_runs_outputs() -> None:
    compiled = compile_model(ROOT / "models" / "mobilenetv3_block.onnx", precision="int")
    machine = Machine(compiled.program)
    inputs = random_inputs(compiled.graph, 3)
    machine.run(inputs)
    tapped = [step.run for step in machine.plan.single if step.run.__qualname__.startswith("_tap_product")]
    assert any(isinstance(cell.cell_contents, DepthwiseTaps) for run in tapped for cell in run.__closure__)
    again, traced = machine.run(inputs), machine.run(inputs, trace=True)
    for name, value in traced.outputs.items():
        assert np.array_equal(again.outputs[name], value)


def test_a_single_run_with_tap_convolutions_gives_the_traced_runs_outputs() -> None:
    compiled = compile_model(ROOT / "models" / "resnet_small.onnx", precision="int")
    machine = Machine(compiled.program)
    assert any(step.run.__qualname__.startswith("_tap_product") for step in machine.plan.single)
    assert any(step.run.__qualname__.startswith("_dequantize_channels_first") for step in machine.plan.single)
    inputs = random_inputs(compiled.graph, 1)
    first = machine.run(inputs)           # records the shapes for the counts: the fused steps
    again = machine.run(inputs)           # the single-sample steps, convolutions tap by tap
    traced = machine.run(inputs, trace=True)
    timings: dict[str, float] = {}
    profiled = machine.run(inputs, timings=timings)   # the single-sample steps, each timed by its kind
    for name, value in traced.outputs.items():
        assert np.array_equal(first.outputs[name], value) and np.array_equal(again.outputs[name], value)
        assert np.array_equal(profiled.outputs[name], value)
    assert again.per_instruction == first.per_instruction
    assert {"mvm", "im2col", "quantize", "dequantize", "nn.relu"} <= set(timings)


def test_a_reshaped_quantized_input_keeps_its_range_and_its_results() -> None:
    """The transformer block reshapes its quantized activations before each mvm: the range survives, so every
    layer takes the prepared product, and the outputs are the traced (unfused) run's."""
    compiled = compile_model(ROOT / "models" / "transformer_encoder_block.onnx", precision="int")
    machine = Machine(compiled.program)
    mvms = [instruction for instruction in compiled.program.instructions if instruction.opcode == "mvm"]
    assert mvms and all(instruction.src[0] in machine.input_ranges for instruction in mvms)
    inputs = random_inputs(compiled.graph, 2)
    machine.run(inputs)
    single, traced = machine.run(inputs), machine.run(inputs, trace=True)
    for name, value in traced.outputs.items():
        assert np.array_equal(single.outputs[name], value)
