"""Compiled steps (runtime/step_kernels.py, runtime/compiled_steps.py) give the numpy steps' values bit for bit,
the plan switches to them once single-sample runs have taken `compile_after_seconds` (a few short runs never
import numba), and the straight-line runner (runtime/straight_line.py) does what the plan's loop does."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.xbar import (channels_first_dequantizer, dequantize_terms, dequantizer, im2col, im2col_sources,
                             im2col_taps_first, quantize, quantizer, quantizer_constants, taps_first_order)
from rcc.runtime.compiled_steps import (VECTOR_KERNELS, add_relu_step, dense_taps_step, dequantize_step, depthwise_step, gather_step,
                                        levels_step)
from rcc.runtime.instructions import im2col_index, vector_step
from rcc.runtime.fusion import pass_on
from rcc.runtime.machine import Machine
from rcc.runtime.straight_line import straight_line
from rcc.runtime.tap_conv import FEW_OUTPUTS, DepthwiseTaps, TapConvolution, tap_product_of
from tests.conftest import ROOT
from tests.runtime.test_machine_fast_paths import _layer

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 2.0, -2.0, 1.9999999, -1.9999999, 2.0000002,
           6.0, -6.0, 9.0, -9.0, 18.0, -18.0, 3.4e38, -3.4e38, 0.5, -0.5, 3.0, -3.0, 127.5, -127.5, 128.49]


# NaNs of both signs with several payloads (x86's default NaN, the one a Sqrt of a negative gives, is negative)
NANS = np.array([0x7FC00000, 0xFFC00000, 0x7FC00001, 0xFFC12345, 0x7FFFFFFF, 0xFFFFFFFF], np.uint32).view(np.float32)


def _probes(seed: int = 0) -> np.ndarray:
    """Special values, NaNs, a dense sweep of [-30, 30], and random values of several magnitudes (float32)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.array(SPECIAL, np.float32), NANS, np.linspace(-30, 30, 200_001, dtype=np.float32),
                           *(rng.standard_normal(20_000).astype(np.float32) * scale for scale in (0.01, 1, 4, 100))])


def _identical(a: np.ndarray, b: np.ndarray, nan_bits: bool = True) -> bool:
    """Same dtype, shape and bits (the sign of zero; NaN payloads and signs too unless not `nan_bits`)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if nan_bits:
        return a.tobytes() == b.tobytes()
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and a[~nan].tobytes() == b[~nan].tobytes())


def runs_equal_the_traced_one(machine, inputs: dict) -> bool:
    """Whether the machine's numpy steps and then its compiled steps (two runs each) give the traced (unfused) run's
    outputs bit for bit, and its steps did switch to their compiled forms."""
    traced = machine.run(inputs, trace=True).outputs
    for compile_after in (float("inf"), 0.0):
        machine.plan.compile_after_seconds = compile_after
        for _ in range(2):
            outputs = machine.run(inputs).outputs
            if not all(_identical(np.asarray(outputs[name]), np.asarray(value)) for name, value in traced.items()):
                return False
    return machine.plan.steps_compiled


@pytest.mark.parametrize("fn, attrs", [("nn.tanh", {}), ("nn.sigmoid", {}), ("nn.erf", {}), ("nn.hard_swish", {}), ("nn.relu", {}),
                                       ("nn.hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
                                       ("nn.hard_sigmoid", {"alpha": 1 / 6, "beta": 0.5}),
                                       ("nn.hard_sigmoid", {"alpha": -0.7, "beta": 0.1})])
def test_a_vector_kernel_is_its_numpy_op_bit_for_bit(fn: str, attrs: dict) -> None:
    assert fn in VECTOR_KERNELS
    step = vector_step(fn, attrs)
    compiled = step.compiled_form()
    x = _probes()
    x = x[:x.size // 4 * 4].reshape(4, -1)
    with np.errstate(all="ignore"):
        expected, got = step([x])[0], compiled([x])[0]
    # erf: numpy's own product keeps a negative NaN's sign in short arrays and drops it in long ones (its SIMD
    # loop); the kernel keeps it. NaN stays NaN either way.
    assert _identical(expected, got, nan_bits=fn != "nn.erf")
    strided = x[:, ::3]   # not contiguous: the numpy step
    with np.errstate(all="ignore"):
        assert _identical(step([strided])[0], compiled([strided])[0])
        scalar = np.array(np.float32(0.3))   # 0-d: numpy gives a scalar, and so does the compiled step
        assert type(step([scalar])[0]) is type(compiled([scalar])[0]) and step([scalar])[0] == compiled([scalar])[0]


def _rows(shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """float32 arrays of `shape`: random at four magnitudes, then with NaNs of both signs, ±inf, and signed zeros."""
    rng = np.random.default_rng(seed)
    arrays = [(rng.standard_normal(shape) * scale).astype(np.float32) for scale in (1, 100, 1e-30, 3e37)]
    specials = arrays[0].copy()
    specials.flat[::5], specials.flat[1::7], specials.flat[2::11] = -np.inf, np.inf, NANS[3]
    zeros = arrays[0].copy()
    zeros.flat[::2], zeros.flat[1::3] = -0.0, 0.0
    return [*arrays, specials, zeros]


# Rows of up to 128 values (one block of numpy's pairwise sum), beyond (its halving), and past its 8192-value cast
# buffer; normalised over one axis and over several.
ROW_CASES = [((1, 16, 32), 2), ((2, 7, 5), 2), ((1, 3, 300), 2), ((1, 5, 7, 9), 1), ((3, 9000), 1), ((1, 4, 1), 2),
             ((2, 3, 8), 0), ((1, 2, 129), 2)]


@pytest.mark.parametrize("shape, axis", ROW_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_a_compiled_layer_norm_is_the_numpy_step_bit_for_bit(shape: tuple[int, ...], axis: int,
                                                              with_bias: bool) -> None:
    rng = np.random.default_rng(len(shape) * axis)
    scale, bias = (rng.standard_normal(shape[axis:]).astype(np.float32) for _ in range(2))
    for epsilon in (1e-5, 0.0):
        step = vector_step("nn.layer_norm", {"axis": axis, "epsilon": epsilon, "stash_type": "f32"})
        for x in _rows(shape, axis):
            operands = [x, scale, *([bias] if with_bias else [])]
            with np.errstate(all="ignore"):
                assert _identical(step(operands)[0], step.compiled_form()(operands)[0]), (shape, epsilon)
    f64 = vector_step("nn.layer_norm", {"axis": axis, "epsilon": 1e-5, "stash_type": "f64"})
    x = _rows(shape, 0)[0]
    assert _identical(f64([x, scale])[0], f64.compiled_form()([x, scale])[0])   # handed to numpy


@pytest.mark.parametrize("shape", [(4, 10), (1, 4, 16, 16), (2, 3, 129), (1, 7), (2, 9000)])
def test_a_compiled_softmax_is_the_numpy_step_bit_for_bit(shape: tuple[int, ...]) -> None:
    step = vector_step("nn.softmax", {"axis": len(shape) - 1})
    for x in _rows(shape, 1):
        with np.errstate(all="ignore"):
            assert _identical(step([x])[0], step.compiled_form()([x])[0]), shape
    other_axis = vector_step("nn.softmax", {"axis": 0})   # not the last axis: numpy's
    x = _rows(shape, 2)[0]
    assert _identical(other_axis([x])[0], other_axis.compiled_form()([x])[0])


@pytest.mark.parametrize("mode", ["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel",
                                  "half_pixel_symmetric"])
@pytest.mark.parametrize("shape, sizes", [((1, 4, 8, 8), (1, 4, 16, 16)), ((2, 3, 5, 7), (2, 3, 11, 4)),
                                          ((1, 2, 3, 3), (1, 2, 3, 9)), ((1, 1, 1, 1), (1, 1, 4, 4)),
                                          ((1, 4, 8, 8), (1, 4, 8, 8))])
def test_a_compiled_bilinear_resize_is_the_numpy_step_bit_for_bit(mode: str, shape: tuple[int, ...],
                                                                  sizes: tuple[int, ...]) -> None:
    """onnxruntime's bilinear formula (one resized axis or two, an unchanged shape handed to numpy)."""
    step = vector_step("nn.resize", {"mode": "linear", "sizes": sizes, "coordinate_transformation_mode": mode,
                                     "scales": [out / size for out, size in zip(sizes, shape)]})
    payloads = _rows(shape, 4)[0]
    payloads.reshape(-1)[::2], payloads.reshape(-1)[1::3] = NANS[2], NANS[3]   # NaNs of two payloads meet
    for x in [*_rows(shape, 3), payloads]:
        with np.errstate(all="ignore"):
            assert _identical(step([x])[0], step.compiled_form()([x])[0]), (shape, sizes, mode)


@pytest.mark.parametrize("shape, kernel", [((1, 16, 10, 10), 2), ((2, 3, 9, 6), 3), ((1, 4, 8, 8), 4),
                                           ((1, 2, 7, 7), 1), ((1, 2, 7, 7), 2)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_a_compiled_average_pool_is_the_numpy_step_bit_for_bit(shape: tuple[int, ...], kernel: int,
                                                               ceil_mode: bool) -> None:
    """Windows that tile the input (7×7 with 2×2 windows does not: numpy's), with NaNs of two payloads meeting."""
    step = vector_step("nn.avg_pool2d", {"kernel": (kernel, kernel), "strides": (kernel, kernel),
                                         "pads": (0, 0, 0, 0), "dilations": (1, 1), "ceil_mode": ceil_mode,
                                         "count_include_pad": False})
    payloads = _rows(shape, 5)[0]
    payloads.reshape(-1)[::2], payloads.reshape(-1)[1::3] = NANS[2], NANS[3]
    for x in [*_rows(shape, 5), payloads]:
        with np.errstate(all="ignore"):
            assert _identical(step([x])[0], step.compiled_form()([x])[0]), (shape, kernel)


@pytest.mark.parametrize("bits, signed, scale", [(8, True, 0.0371), (8, False, 0.0123), (4, True, 0.5), (16, True, 1e-3),
                                                 (1, False, 0.7), (9, True, 3.0)])
def test_compiled_levels_are_quantize_bit_for_bit(bits: int, signed: bool, scale: float) -> None:
    x = _probes(1)
    levels = quantizer(scale, bits, signed)
    constants = quantizer_constants(scale, bits, signed)
    with np.errstate(all="ignore"):
        floats = levels_step(*constants, lambda ops: [levels(ops[0])])([x])[0]
        assert _identical(levels(x), floats)
        integers = levels_step(*constants, None, np.int32)([x[np.isfinite(x)]])[0]
        assert _identical(quantize(x[np.isfinite(x)], scale=scale, bits=bits, signed=signed), integers)
    wide = x[np.isfinite(x)].astype(np.float64)   # float64 operands take the numpy step
    fallback = lambda ops: [quantize(ops[0], scale=scale, bits=bits, signed=signed)]   # noqa: E731
    assert _identical(levels_step(*constants, fallback, np.int32)([wide])[0], fallback([wide])[0])


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float64, np.int32])
@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_dequantize_is_dequantize_bit_for_bit(dtype, with_bias: bool) -> None:
    rng = np.random.default_rng(3)
    acc = rng.integers(-2 ** 23, 2 ** 23, (3 * 49, 40)).astype(dtype)
    acc[0, :4] = [0, -1, 1, 2 ** 23 - 1]
    w_scale = (rng.random(40) * 0.05).astype(np.float32)
    bias = rng.standard_normal(40).astype(np.float32) if with_bias else None
    terms = dequantize_terms(w_scale, bias, 0.0173)
    rows = dequantizer(w_scale, bias, 0.0173)
    assert _identical(rows(acc), dequantize_step(*terms, None)([acc])[0])
    transposed = np.ascontiguousarray(acc.T).T   # a column-major view, as a depthwise product gives it
    assert _identical(rows(transposed), dequantize_step(*terms, None)([transposed])[0])
    first = channels_first_dequantizer(w_scale, bias, 0.0173, (3, 7, 7, 40))
    assert _identical(first(acc), dequantize_step(*terms, None, (3, 7, 7, 40))([acc])[0])


def test_compiled_dequantize_hands_float16_accumulators_to_numpy() -> None:
    """numba has no float16: a hand-written program's float16 accumulators take the numpy step."""
    acc = np.arange(8, dtype=np.float16).reshape(2, 4)
    rows = dequantizer(np.ones(4, np.float32), None, 0.5)
    step = dequantize_step(*dequantize_terms(np.ones(4, np.float32), None, 0.5), lambda ops: [rows(ops[0])])
    assert _identical(step([acc])[0], rows(acc))


def test_kernels_compile_uncached_where_numba_cannot_cache(monkeypatch) -> None:
    """No place to write numba's cache (a read-only install, no writable home): compiled anew, not an error."""
    import numba

    from rcc.runtime import numba_jit
    real = numba.njit

    def no_locator(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file '<test>'")
        return real(*args, **options)

    monkeypatch.setattr(numba_jit.numba, "njit", no_locator)

    def twice(x):
        return 2 * x
    assert numba_jit.jit(twice)(21) == 42


@pytest.mark.parametrize("seed", range(16))
def test_a_compiled_depthwise_product_is_the_im2col_product(seed: int) -> None:
    """Random kernels, strides, pads, dilations, channel multipliers and batch sizes: the same float32 integers as
    the grouped product of the im2col columns (int32 levels take the numpy step)."""
    rng = np.random.default_rng(200 + seed)
    n, c, multiplier = int(rng.integers(1, 3)), int(rng.integers(2, 40)), int(rng.integers(1, 4))
    attrs = {"kernel": tuple(int(k) for k in rng.integers(1, 4, 2)),
             "strides": (1, 1) if seed % 2 else tuple(int(s) for s in rng.integers(1, 4, 2)),
             "pads": tuple(int(p) for p in rng.integers(0, 3, 4)), "dilations": tuple(int(d) for d in rng.integers(1, 3, 2))}
    taps = attrs["kernel"][0] * attrs["kernel"][1]
    if taps == 1:
        attrs["kernel"] = (3, attrs["kernel"][1] + 1)
        taps = 3 * attrs["kernel"][1]
    x = rng.integers(-128, 128, (n, c, int(rng.integers(4, 20)), int(rng.integers(4, 20)))).astype(np.int32)
    layer = _layer(rng, taps, multiplier, x, rng.integers(-127, 128, (c, taps, multiplier)))
    expected = layer.exact_product((-128, 127))(im2col(x, **attrs))
    tap = tap_product_of(layer, attrs)
    assert isinstance(tap, DepthwiseTaps)
    numpy_step = lambda ops: [tap(ops[0])]   # noqa: E731
    for keep_float in (True, False):
        got = depthwise_step(tap, keep_float, numpy_step)([x.astype(np.float32)])[0]
        assert got.dtype == (np.float32 if keep_float else np.int64) and np.array_equal(got, expected)
    assert _identical(depthwise_step(tap, True, numpy_step)([x])[0], tap(x))


def _geometry(rng: np.random.Generator, strides: bool) -> dict:
    """A random kernel of two taps or more, pads, dilations, and strides if `strides`."""
    kernel = (int(rng.integers(1, 4)), int(rng.integers(2, 6)))
    return {"kernel": kernel, "strides": tuple(int(s) for s in rng.integers(1, 4, 2)) if strides else (1, 1),
            "pads": tuple(int(p) for p in rng.integers(0, 3, 4)), "dilations": tuple(int(d) for d in rng.integers(1, 3, 2))}


@pytest.mark.parametrize("seed", range(12))
def test_a_compiled_dense_tap_product_is_the_im2col_product(seed: int) -> None:
    """Stride-1 layers with few outputs (up to FEW_OUTPUTS) and any channels, random kernels, pads (also uneven),
    dilations and batch sizes: the same float32 integers as the product of the im2col columns; int32 levels, and
    layers with more outputs, take the numpy step."""
    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(1, 3))
    c, m = int(rng.integers(1, 40)), int(rng.integers(1, FEW_OUTPUTS + 1))
    attrs = _geometry(rng, strides=False)
    taps = attrs["kernel"][0] * attrs["kernel"][1]
    x = rng.integers(-128, 128, (n, c, int(rng.integers(3, 20)), int(rng.integers(5, 20)))).astype(np.int32)
    layer = _layer(rng, c * taps, m, x, rng.integers(-127, 128, (1, c * taps, m)))
    expected = layer.exact_product((-128, 127))(im2col(x, **attrs))
    tap = tap_product_of(layer, attrs)
    assert isinstance(tap, TapConvolution) and tap.few_outputs
    numpy_calls = []
    numpy_step = lambda ops: numpy_calls.append(1) or [layer.exact_product((-128, 127))(im2col(ops[0], **attrs))]  # noqa: E731
    for keep_float in (True, False):
        got = dense_taps_step(tap, keep_float, numpy_step)([x.astype(np.float32)])[0]
        assert got.dtype == (np.float32 if keep_float else np.int64) and np.array_equal(got, expected)
    assert not numpy_calls
    dense_taps_step(tap, True, numpy_step)([x])
    wide = tap_product_of(_layer(rng, c * taps, FEW_OUTPUTS + 1, x, rng.integers(-127, 128, (1, c * taps, FEW_OUTPUTS + 1))),
                          attrs)
    assert not wide.few_outputs
    dense_taps_step(wide, True, lambda ops: numpy_calls.append(2) or [None])([x.astype(np.float32)])
    assert numpy_calls == [1, 2]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_a_compiled_gather_is_im2col(seed: int, dtype: type) -> None:
    """Random geometries (strides, pads, dilations, batches): the gathered columns are im2col's, dtype included;
    another dtype, and a shape the caller gives no index for, take the numpy step."""
    rng = np.random.default_rng(400 + seed)
    attrs = _geometry(rng, strides=True)
    x = rng.integers(-128, 128, (int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(6, 16)),
                                 int(rng.integers(6, 16)))).astype(dtype)
    calls = []
    step = gather_step(lambda shape: None if shape[0] > 2 else im2col_sources(shape, *attrs.values()),
                       lambda ops: calls.append(ops[0].dtype) or [im2col(ops[0], **attrs)])
    assert _identical(step([x])[0], im2col(x, **attrs)) and not calls
    assert _identical(step([x.astype(np.int64)])[0], im2col(x.astype(np.int64), **attrs))
    step([np.concatenate([x] * 3)])
    assert calls == [np.dtype(np.int64), np.dtype(dtype)]


@pytest.mark.parametrize("seed", range(6))
def test_a_compiled_gather_writes_taps_first_columns_and_keeps_to_its_limit(seed: int) -> None:
    """`im2col_index`: the taps-first columns' index gathers what `im2col_taps_first` copies; beyond its limit it
    gives no index (the numpy copies run)."""
    rng = np.random.default_rng(500 + seed)
    attrs = _geometry(rng, strides=True)
    x = rng.integers(-128, 128, (1, int(rng.integers(2, 20)), int(rng.integers(6, 16)),
                                 int(rng.integers(6, 16)))).astype(np.float32)
    columns = im2col_taps_first(x, attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"])
    step = gather_step(im2col_index(attrs, columns.size, taps_first=True), lambda ops: [None])
    assert _identical(step([x])[0], columns)
    assert im2col_index(attrs, columns.size - 1)(x.shape) is None


@pytest.mark.parametrize("seed", range(24))
def test_taps_first_columns_are_im2col_columns_reordered(seed: int) -> None:
    """`im2col_taps_first` (a kernel row's kw pixels in one copy when the width is not dilated and the padded input is
    contiguous; else tap by tap, e.g. unpadded, whose channels-last input is a view) gives im2col's columns in
    (kh, kw, c) order: batches, strides, dilations and pads of every kind."""
    rng = np.random.default_rng(900 + seed)
    attrs = _geometry(rng, strides=True)
    if seed % 3 == 0:
        attrs["pads"] = (0, 0, 0, 0)
    channels = 1 if seed % 4 == 0 else int(rng.integers(2, 20))   # one channel: an unpadded input's view is a run
    x = rng.integers(-128, 128, (int(rng.integers(1, 3)), channels, int(rng.integers(10, 18)),
                                 int(rng.integers(10, 18)))).astype(np.float32)   # room for the widest kernel
    (kh, kw) = attrs["kernel"]
    columns = im2col_taps_first(x, attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"])
    assert _identical(columns, im2col(x, **attrs)[:, taps_first_order(x.shape[1], kh * kw)])


def test_a_fused_add_and_relu_is_their_numpy_steps_bit_for_bit() -> None:
    """`add_relu_step`: a + b in float32, then relu's clip (−0, NaN and its payload kept, +inf kept, overflow to
    +inf), bit for bit with the add and relu steps; a broadcast or non-float32 operand takes the numpy steps."""
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, -1e-45], np.float32)
    pairs = np.array(np.meshgrid(special, special)).reshape(2, -1)   # every pair: −0 + −0 = −0, NaN + 1, inf − inf
    a = np.concatenate([pairs[0], rng.standard_normal(1000).astype(np.float32)]).reshape(-1, 10)
    b = np.concatenate([pairs[1], rng.standard_normal(1000).astype(np.float32)]).reshape(-1, 10)
    add, relu = vector_step("nn.add", {}), vector_step("nn.relu", {})
    numpy_steps = lambda operands: relu(add(operands))   # noqa: E731
    step = add_relu_step(numpy_steps)
    with np.errstate(over="ignore", invalid="ignore"):   # inf − inf and 3e38 + 3e38, on purpose
        assert _identical(step([a, b])[0], numpy_steps([a, b])[0])
    calls = []
    fallback = add_relu_step(lambda operands: calls.append(len(operands)) or numpy_steps(operands))
    with np.errstate(over="ignore", invalid="ignore"):
        fallback([a, b[:1]])
        fallback([a.astype(np.float64), b])
    assert calls == [2, 2]


def test_a_residual_blocks_add_and_relu_run_as_one_step() -> None:
    compiled = compile_model(ROOT / "models" / "resnet_small.onnx", precision="int")
    machine = Machine(compiled.program)
    fused = [step for step in machine.plan.single if step.run.__qualname__.startswith("_add_relus")]
    assert fused and all(step.instruction.attrs["fn"] == "nn.add" for step in fused)


ZOO = sorted(path.stem for path in (ROOT / "models").glob("*.onnx"))


@pytest.mark.parametrize("precision", ["int", "float"])
@pytest.mark.parametrize("model", ZOO)
def test_a_machines_later_runs_equal_its_first_and_the_traced_run(model: str, precision: str) -> None:
    """Run 1 records counts (fused steps), later runs take the numpy single-sample steps (a machine that does not
    compile) or the compiled ones (a machine that compiles at once); the traced run takes the unfused steps:
    every output identical."""
    compiled = compile_model(ROOT / "models" / f"{model}.onnx", precision=precision)
    numpy_steps, compiled_steps = Machine(compiled.program), Machine(compiled.program)
    numpy_steps.plan.compile_after_seconds = float("inf")
    compiled_steps.plan.compile_after_seconds = 0.0
    inputs = random_inputs(compiled.graph, 5)
    runs = [machine.run(inputs).outputs for machine in (numpy_steps, compiled_steps) for _ in range(3)]
    assert compiled_steps.plan.steps_compiled and not numpy_steps.plan.steps_compiled
    runs.append(numpy_steps.run(inputs, trace=True).outputs)
    for outputs in runs[1:]:
        assert outputs.keys() == runs[0].keys()
        for name, value in outputs.items():
            assert _identical(np.asarray(value), np.asarray(runs[0][name])), (model, name)


def test_the_plan_switches_to_compiled_steps_after_its_single_runs_took_a_while() -> None:
    compiled = compile_model(ROOT / "models" / "mobilenetv3_block.onnx", precision="int")
    machine = Machine(compiled.program)
    inputs = random_inputs(compiled.graph, 0)
    names = lambda: {step.run.__qualname__.split(".")[0] for step in machine.plan.single}   # noqa: E731
    for _ in range(3):
        machine.run(inputs)
    assert not machine.plan.steps_compiled and not names() & {"depthwise_step", "vector_kernel_step"}
    machine.plan._quick_seconds = machine.plan.compile_after_seconds   # as if its runs had taken that long
    machine.run(inputs)
    assert machine.plan.steps_compiled
    assert {"depthwise_step", "vector_kernel_step", "levels_step", "dequantize_step"} <= names()


def test_one_inference_does_not_import_numba() -> None:
    script = ("import sys; from rcc.compiler.driver import compile_model; from rcc.ir.inputs import random_inputs; "
              "from rcc.runtime.machine import Machine; "
              f"c = compile_model({str(ROOT / 'models' / 'mobilenetv3_block.onnx')!r}); m = Machine(c.program); "
              "x = random_inputs(c.graph, 0); [m.run(x) for _ in range(5)]; print('numba' in sys.modules); "
              "m.plan.compile_after_seconds = 0; m.run(x); print('numba' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert lines == ["False", "True"]


def test_the_straight_line_runner_runs_steps_as_the_loop_does() -> None:
    """Two results, none, a pass-on, frees, a store and progress: slots read in order, freed slots dropped."""
    calls: list[tuple] = []

    def record(name, results):
        def run(operands):
            calls.append((name, tuple(np.asarray(o).item() for o in operands)))
            return results
        return run

    def pass_on(operands):
        raise AssertionError("a pass-on step is an assignment")

    slots = [np.array(1.0), np.array(2.0), None, None, None, None]
    fields = ("run", "src", "dst", "free", "output", "progress")
    steps = [SimpleNamespace(**dict(zip(fields, step))) for step in [
        (record("split", [np.array(3.0), np.array(4.0)]), (0,), (2, 3), (0,), None, 0),
        (pass_on, (2,), (4,), (2,), None, 1),
        (record("sink", []), (4, 1), (), (), None, 0),
        (record("add", [np.array(7.0)]), (3, 4), (5,), (3, 4), None, 2),
        (record("store", []), (5,), (), (5,), "y", 1)]]
    outputs: dict = {}
    ticks: list[int] = []
    run, runs = straight_line(steps, pass_on)
    run(slots, outputs, ticks.append)
    assert calls == [("split", (1.0,)), ("sink", (3.0, 2.0)), ("add", (4.0, 3.0))]
    assert outputs == {"y": np.array(7.0)} and ticks == [1, 2, 1] and slots == []
    runs[3] = record("sub", [np.array(-1.0)])   # what the switch to compiled steps does
    run([np.array(1.0), np.array(2.0), None, None, None, None], outputs, ticks.append)
    assert calls[-1] == ("sub", (4.0, 3.0)) and outputs == {"y": np.array(-1.0)}


def test_the_straight_line_runner_is_the_profiled_loop() -> None:
    """The generated function and the loop `timings` takes give the same outputs."""
    for model in ("gpt_decoder_block", "shufflenet_block", "unet_small"):
        compiled = compile_model(ROOT / "models" / f"{model}.onnx", precision="int")
        machine = Machine(compiled.program)
        inputs = random_inputs(compiled.graph, 2)
        machine.run(inputs)
        straight = machine.run(inputs).outputs
        timings: dict[str, float] = {}
        looped = machine.run(inputs, timings=timings).outputs
        assert timings and all(_identical(straight[name], looped[name]) for name in straight)


BATCHED = [model for model in ZOO if model != "mlp"]   # mlp fixes its batch


@pytest.mark.parametrize("compile_after", [float("inf"), 0.0], ids=["numpy", "compiled"])
@pytest.mark.parametrize("model", BATCHED)
def test_a_stacked_batchs_later_runs_take_the_single_sample_steps_and_equal_single_runs(model: str,
                                                                                          compile_after: float) -> None:
    """A batch's first run records counts (fused steps); later ones take the single-sample steps (tap products,
    channels-first dequantize; compiled ones once due): integer outputs equal the single runs' bit for bit."""
    compiled = compile_model(ROOT / "models" / f"{model}.onnx", precision="int")
    machine = Machine(compiled.program)
    machine.plan.compile_after_seconds = compile_after
    samples = [random_inputs(compiled.graph, seed) for seed in range(3)]
    batch = {name: np.concatenate([sample[name] for sample in samples]) for name in samples[0]}
    machine.run(batch)
    machine.plan._compile_if_due()   # (the next run would switch first; the wrappers below must see its steps)
    assert machine.plan.steps_compiled == (compile_after == 0.0)
    seen = []
    for step in machine.plan.single:
        if step.run is not pass_on:   # (the plan passes those on without a call)
            step.run = (lambda run, index: lambda ops: seen.append(index) or run(ops))(step.run, step.index)
    batched = machine.run(batch).outputs
    assert seen
    singles = [Machine(compiled.program).run(sample).outputs for sample in samples]
    for name, value in batched.items():
        assert _identical(value, np.concatenate([single[name] for single in singles])), name
