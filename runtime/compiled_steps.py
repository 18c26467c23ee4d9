"""Plan steps with a compiled form (`runtime/step_kernels.py`, numba), and the switch to it.

Where a step's numpy callable is made (a quantize's levels, a dequantize with constant scales, a vector op with a
kernel, a depthwise layer's product), `compilable` tags it with a factory of its compiled form; `compiled` (called
by `runtime/plan.py` once a `Machine`'s runs have taken a second) swaps a tagged callable for it.
This module imports numba only inside the factories, so tagging costs nothing and a short run never loads it. A
compiled step hands operands its kernel does not take (elementwise kernels and the depthwise and dense tap products
take float32 C-contiguous arrays; an im2col's gather float32 or int32 ones; dequantize float32, float64, int32 or int64
accumulators of any layout) to the numpy callable it replaces.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rcc.ir.ops.nn_linear import conv_output_size

Step = Callable[[list[np.ndarray]], list[np.ndarray]]

def compilable(run: Step, factory: Callable[[], Step]) -> Step:
    """`run`, tagged with the `factory` of its compiled form."""
    run.compiled_form = factory   # type: ignore[attr-defined]
    return run


def compiled(run: Step) -> Step:
    """The compiled form of a tagged step, else the step itself."""
    factory = getattr(run, "compiled_form", None)
    return run if factory is None else factory()


def _takes(x: np.ndarray) -> bool:
    """Whether an elementwise kernel takes `x`: float32, C-contiguous, not 0-d (numpy gives a 0-d op a scalar)."""
    return x.dtype == np.float32 and x.flags.c_contiguous and x.ndim > 0


ACCUMULATOR_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


def levels_step(inverse: np.float32, low: np.float32, high: np.float32, fallback: Step,
                integers: type | None = None) -> Step:
    """A quantize's float32 levels (`ir.ops.xbar.quantizer`'s constants) in one pass; cast to `integers` (the
    quantize instruction's int32) by numpy, as `ir.ops.xbar.quantize` casts them."""
    from rcc.runtime.step_kernels import levels

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if not _takes(x):
            return fallback(operands)
        out = np.empty(x.shape, np.float32)
        levels(x.reshape(-1), inverse, low, high, out.reshape(-1))
        return [out if integers is None else out.astype(integers)]
    if integers is None:
        run.levels_constants = (inverse, low, high)   # type: ignore[attr-defined]  # for small_layer_step
    return run


def dequantize_step(scale: np.ndarray, bias: np.ndarray | None, fallback: Step,
                    channels_first: tuple[int, int, int, int] | None = None, addend: np.ndarray | None = None,
                    relu: bool = False) -> Step:
    """A dequantize with constant float64 terms (`ir.ops.xbar.dequantize_terms`) in one pass over the
    accumulators [P, M] (of any dtype and layout); `channels_first` [N, H, W, M]: written as [N, M, H, W], in the
    same pass up to STRIDED_CHANNELS_FIRST elements a sample or from column-major accumulators (the transposed view
    of channels-first sums, as the tap-by-tap products give one sample's), beyond that dequantized as rows and then
    transposed (`transposed`). Its epilogue (`runtime/fusion.py`): `addend` (float32 [M], one value per output
    channel) added in float32, then relu if `relu`."""
    from rcc.runtime.step_kernels import dequantize_channels_first, dequantize_rows
    from rcc.runtime.threads import work_buffer
    with_bias, with_addend = bias is not None, addend is not None
    terms = (np.ascontiguousarray(scale, np.float64),
             np.ascontiguousarray(bias if with_bias else np.zeros(0), np.float64), with_bias,
             np.ascontiguousarray(addend if with_addend else np.zeros(0), np.float32), with_addend, relu)

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        acc = operands[0]
        if acc.ndim != 2 or acc.dtype not in ACCUMULATOR_DTYPES:
            return fallback(operands)
        if channels_first is None:
            out = np.empty(acc.shape, np.float32)
            dequantize_rows(acc, *terms, out)
            return [out]
        _, h, w, m = channels_first
        n = acc.shape[0] // (h * w)   # the samples of a stacked batch too
        out = np.empty((n, m, h * w), np.float32)
        if h * w * m <= STRIDED_CHANNELS_FIRST or acc.strides[0] == acc.itemsize:   # small, or read in order
            dequantize_channels_first(acc, *terms, out)
        else:
            rows = work_buffer("dequantized rows", acc.shape)
            dequantize_rows(acc, *terms, rows)
            transposed(rows.reshape(n, h * w, m), out)
        return [out.reshape(n, m, h, w)]
    if channels_first is None:
        run.rows_terms = terms   # type: ignore[attr-defined]  # for small_layer_step
    return run


# Up to this many multiply-accumulates a run (rows × K × M) a layer's quantize, product and dequantize are one kernel
# call (`small_layer_step`): its product in numba's loops, slower than BLAS beyond (one thread, medians, µs, the three
# kernels against one: 4 x 64 x 128 6.2 → 5.1, 4 x 64 x 10 5.0 → 3.7, 16 x 32 x 32 5.8 → 4.1, 1 x 48 x 12 4.1 → 1.9;
# but 16 x 32 x 96 6.6 → 8.3, 16 x 64 x 64 8.1 → 11.0), besides the two steps' calls it saves either way.
SMALL_LAYER_MACS = 1 << 15


def layer_chain(quantize: Step, product: Step, dequantize: Step, constants: list[np.ndarray]) -> Step:
    """A layer's quantize, product and dequantize steps called in turn as one step reading the quantize's input and
    the product's other operands (the dequantize also reading its `constants`)."""
    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        levels = quantize(operands[:1])[0]
        return dequantize([product([levels, *operands[1:]])[0], *constants])
    return run


def small_layer_step(weights: np.ndarray, quantize: Step, product: Step, dequantize: Step,
                     constants: list[np.ndarray]) -> Step:
    """A layer's quantize → product → dequantize (`runtime/fusion.py` _small_layers) as one step reading the
    quantize's input and the product's other operands: one kernel call (`step_kernels.small_layer`, the float32
    `weights` [K, M] of a product that is one exact float32 GEMM) for products of up to SMALL_LAYER_MACS, when the
    quantize gives float32 levels (`levels_step`) and the dequantize rows (`dequantize_step`); else the three
    steps called in turn (the dequantize also reading its `constants`)."""
    chain = layer_chain(quantize, product, dequantize, constants)
    levels_constants, terms = getattr(quantize, "levels_constants", None), getattr(dequantize, "rows_terms", None)
    if levels_constants is None or terms is None:
        return chain
    from rcc.runtime.step_kernels import small_layer
    inverse, low, high = levels_constants

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if x.ndim != 2 or not _takes(x) or x.shape[0] * weights.size > SMALL_LAYER_MACS:
            return chain(operands)
        out = np.empty((x.shape[0], weights.shape[1]), np.float32)
        small_layer(x, inverse, low, high, weights, *terms, out)
        return [out]
    return run


# A channels-first dequantize reads its accumulators [pixels, M] a column at a time: the fastest way up to this many
# elements a sample (1024 x 16: 19 us against 32 blocked, measured); beyond, dequantized rows transposed are faster
# (3136 x 256: 6.3 ms strided, 1.6 blocked in the same pass, 0.3 + 1.0 as rows then transposed tile by tile).
STRIDED_CHANNELS_FIRST = 1 << 17
# numpy's transposed copy of [Q, M] runs at memory speed while a column of the source stays in cache; beyond this
# many elements it misses (3136 x 256: 5.6 ms, 12544 x 64: 5.5) and tiles are faster (1.0 and 0.9 ms); below, numpy
# is as fast or faster (3136 x 64: 0.18 ms against 0.19; 784 x 512: 0.55 against 0.46-0.8), measured.
TILED_TRANSPOSE_ELEMENTS = 1 << 19


def transposed(x: np.ndarray, out: np.ndarray) -> None:
    """out [N, M, Q] = x [N, Q, M] transposed (float32, C-contiguous): numpy's copy, or tile by tile when large."""
    from rcc.runtime.step_kernels import transpose_tiles

    if x[0].size > TILED_TRANSPOSE_ELEMENTS:
        transpose_tiles(x, out)
    else:
        np.copyto(out, x.transpose(0, 2, 1))


def vector_kernel_step(fn: str, attrs: dict, fallback: Step) -> Step:
    """Vector op `fn` (one of VECTOR_KERNELS) with normalized `attrs` as one pass over float32: elementwise
    (`_ELEMENTWISE_KERNELS`), or its own step (`_KERNEL_STEPS`: row by row for layer norm and softmax, output pixel
    by output pixel for a bilinear resize, ...)."""
    if fn in _KERNEL_STEPS:
        return _KERNEL_STEPS[fn](attrs, fallback)
    kernel = _ELEMENTWISE_KERNELS[fn](attrs)

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if not _takes(x):
            return fallback(operands)
        out = np.empty(x.shape, np.float32)
        kernel(x.reshape(-1), out.reshape(-1))
        return [out]
    return run


def _rational(fn: str) -> Callable[[np.ndarray, np.ndarray], None]:
    """MLAS's rational tanh or logistic, its coefficients bound as float32 arguments."""
    from rcc.ir.ops.nn_quant_tables import (_LOGISTIC_DENOMINATOR, _LOGISTIC_NUMERATOR, _TANH_DENOMINATOR,
                                            _TANH_NUMERATOR)
    from rcc.runtime import step_kernels
    rational, coefficients = (step_kernels.tanh, _TANH_NUMERATOR + _TANH_DENOMINATOR) if fn == "nn.tanh" else \
        (step_kernels.logistic, _LOGISTIC_NUMERATOR + _LOGISTIC_DENOMINATOR)
    constants = tuple(np.float32(c) for c in coefficients)
    return lambda x, out: rational(x, constants, out)


def _hard_sigmoid(attrs: dict) -> Callable[[np.ndarray, np.ndarray], None]:
    from rcc.runtime.step_kernels import hard_sigmoid
    alpha, beta = np.float32(attrs["alpha"]), np.float32(attrs["beta"])
    return lambda x, out: hard_sigmoid(x, alpha, beta, out)


def add_relu_step(fallback: Step) -> Step:
    """An add of two float32 tensors of one shape and the relu of its sum in one pass (`step_kernels.add_relu`, the
    same float32 operations); other operands take `fallback` (the add and the relu as numpy steps)."""
    from rcc.runtime.step_kernels import add_relu

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        a, b = operands
        if not (_takes(a) and _takes(b)) or a.shape != b.shape:
            return fallback(operands)
        out = np.empty(a.shape, np.float32)
        add_relu(a.reshape(-1), b.reshape(-1), out.reshape(-1))
        return [out]
    return run


def _kernel(name: str) -> Callable[[np.ndarray, np.ndarray], None]:
    """A kernel of `runtime/step_kernels.py` that takes no attributes (numba is imported only here, at the switch)."""
    from rcc.runtime import step_kernels
    return getattr(step_kernels, name)


def _erf_step(attrs: dict, fallback: Step) -> Step:
    """erf: the kernels' polynomials, below 2 in magnitude and beyond; numpy's exp for the elements beyond."""
    from rcc.ir.ops.nn_transcendental import _ERF_NEAR, _ERFCX_FAR
    from rcc.runtime.step_kernels import erf_far_finish, erf_far_terms, erf_near
    near_coefficients, far_coefficients = tuple(map(float, _ERF_NEAR)), np.array(_ERFCX_FAR, np.float64)

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if not _takes(x):
            return fallback(operands)
        out = np.empty(x.shape, np.float32)
        flat, values = out.reshape(-1), x.reshape(-1)
        far = np.empty(values.size, np.intp)
        count = erf_near(values, near_coefficients, flat, far)
        if count:   # numpy's exp of the same compact array erf_far exponentiates
            far = far[:count]
            argument, tail = np.empty(count), np.empty(count)
            erf_far_terms(values, far, far_coefficients, argument, tail)
            erf_far_finish(values, far, np.exp(argument), tail, flat)
        return [out]
    return run


def _layer_norm_step(attrs: dict, fallback: Step) -> Step:
    """Layer normalization of float32 rows with stash_type f32, scale and bias (as many values as a row: the
    normalised shape, perhaps with leading ones) in one pass per row; a row whose sum is NaN sends the whole
    step to numpy."""
    from rcc.runtime.step_kernels import layer_norm
    axis, epsilon = attrs["axis"], np.float32(attrs["epsilon"])
    no_bias = np.zeros(0, np.float32)

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x, scale, bias = operands[0], operands[1], operands[2] if len(operands) > 2 else None
        count = math.prod(x.shape[axis:])
        if not _takes(x) or attrs["stash_type"] != "f32" or count == 0 or any(
                p.dtype != np.float32 or p.size != count for p in (scale, bias) if p is not None):
            return fallback(operands)
        out = np.empty(x.shape, np.float32)
        if not layer_norm(x.reshape(-1, count), np.ascontiguousarray(scale).reshape(-1),
                          no_bias if bias is None else np.ascontiguousarray(bias).reshape(-1), bias is not None,
                          epsilon, out.reshape(-1, count)):
            return fallback(operands)
        return [out]
    return run


def _bilinear_step(attrs: dict, fallback: Step) -> Step:
    """A resize onnxruntime computes as its bilinear upsampling (`ir.ops.nn_resize.ort_bilinear_taps`) in one pass;
    its taps are stacked once per input shape; a NaN output sends the whole step to numpy."""
    from rcc.ir.ops.nn_resize import ort_bilinear_taps
    from rcc.runtime.step_kernels import bilinear
    stacked: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray] | None] = {}

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if x.shape not in stacked:
            taps = ort_bilinear_taps(x.shape, x.dtype, attrs)
            stacked[x.shape] = None if taps is None else (np.stack([index for index, _ in taps]),
                                                          np.stack([weight for _, weight in taps]))
        taps = stacked[x.shape]
        if taps is None or not _takes(x):
            return fallback(operands)
        n, c = x.shape[:2]
        out = np.empty((n, c, *attrs["sizes"][2:]), np.float32)
        if not bilinear(x.reshape(n * c, -1), *taps, out.reshape(n * c, -1)):
            return fallback(operands)
        return [out]
    return run


def _softmax_step(attrs: dict, fallback: Step) -> Step:
    """Softmax over the last axis of float32 rows: the shift by each row's maximum and the normalisation compiled,
    numpy's own exp between them (an input holding a NaN sends the whole step to numpy)."""
    from rcc.runtime.step_kernels import softmax_normalize, softmax_shift

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if not _takes(x) or attrs["axis"] not in (-1, x.ndim - 1) or x.shape[-1] == 0:
            return fallback(operands)
        out = np.empty(x.shape, np.float32)
        rows = out.reshape(-1, x.shape[-1])
        if not softmax_shift(x.reshape(rows.shape), rows):
            return fallback(operands)
        np.exp(rows, out=rows)
        softmax_normalize(rows)
        return [out]
    return run


def _average_tiles_step(attrs: dict, fallback: Step) -> Step:
    """Average pooling whose windows tile a float32 NCHW input (`ir.ops.nn_pool.windows_tile`) in one pass;
    other geometries, and a NaN sum, go to numpy."""
    from rcc.ir.ops.nn_pool import windows_tile
    from rcc.runtime.step_kernels import average_tiles
    kh, kw = (int(k) for k in attrs["kernel"])

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if not _takes(x) or x.ndim != 4 or \
                not windows_tile(x.shape, attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"]):
            return fallback(operands)
        out = np.empty((x.shape[0], x.shape[1], x.shape[2] // kh, x.shape[3] // kw), np.float32)
        if not average_tiles(x, kh, kw, out):
            return fallback(operands)
        return [out]
    return run


def depthwise_step(taps, keep_float: bool, fallback: Step) -> Step:
    """A depthwise layer's product from its im2col's input (`runtime/tap_conv.py` DepthwiseTaps `taps`: the
    kernel, strides, dilations, pads, multiplier and weights) in one pass, [N·oh·ow, G·mult] as the layer's
    product orders it (for N = 1 the transposed view of the channels-first sums, which is how DepthwiseTaps gives
    larger planes; the values are what matter downstream, and they are the same)."""
    from rcc.runtime.step_kernels import depthwise
    weights = np.ascontiguousarray(np.concatenate(taps.tap_weights, axis=1), np.float32)   # [G·mult, taps]
    geometry = (int(taps.multiplier), tuple(map(int, taps.kernel)), tuple(map(int, taps.strides)),
                tuple(map(int, taps.dilations)), (int(taps.pads[0]), int(taps.pads[1])))

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if not _takes(x) or x.ndim != 4:
            return fallback(operands)
        oh, ow = taps.output_size(x.shape)
        n, channels = x.shape[0], weights.shape[0]
        out = np.empty((n, channels, oh, ow), np.float32)
        depthwise(x, weights, *geometry, out)
        return _product_rows(out, keep_float)
    return run


def _product_rows(out: np.ndarray, keep_float: bool) -> list[np.ndarray]:
    """A layer's channels-first sums [N, M, oh, ow] as its product orders them, [N·oh·ow, M] (for N = 1 the transposed
    view), int64 unless `keep_float`."""
    n, channels, oh, ow = out.shape
    values = out.reshape(channels, oh * ow).T if n == 1 else out.transpose(0, 2, 3, 1).reshape(n * oh * ow, channels)
    return [values if keep_float else values.astype(np.int64)]


def gather_step(sources_for: Callable[[tuple[int, ...]], np.ndarray | None], fallback: Step) -> Step:
    """An im2col run as one gather (`runtime/instructions.py` `im2col_index`) in one pass: `sources_for(shape)` is
    the flat int64 index of an input of that shape (kept by its maker; None: the numpy step's copies). float32,
    int32 and uint8 inputs (the levels and integers a quantize gives, the codes of an integer GEMM's inputs); other
    dtypes go to numpy."""
    from rcc.runtime.step_kernels import gather_cells

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        index = sources_for(x.shape)
        if index is None or x.dtype not in _GATHERED_DTYPES or not x.flags.c_contiguous:
            return fallback(operands)
        out = np.empty(index.shape, x.dtype)
        gather_cells(x.reshape(-1), index.reshape(-1), out.reshape(-1))
        return [out]
    return run


_GATHERED_DTYPES = (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.uint8))


def code_columns_step(attrs: dict, offset: int = 0) -> Step:
    """An im2col of an integer-GEMM layer's inputs (`runtime/integer_gemm.py`), integers in [−offset, 255 − offset],
    as uint8 codes x + offset, taps first: the input's codes channels last and padded with level 0's code (numpy's
    cast, then its transposed copy: numba's byte scatter is 2x slower), then the columns in one pass
    (`step_kernels.code_columns`; numpy's copies of short runs are 2-3x slower: 16 channels at 32×32, 3×3, 80 µs
    against 45)."""
    from rcc.runtime.step_kernels import code_columns
    kernel, strides, dilations, pads = (tuple(map(int, attrs[key])) for key in ("kernel", "strides", "dilations", "pads"))
    top, left, bottom, right = pads

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        n, c, h, w = x.shape
        padded = np.full((n, h + top + bottom, w + left + right, c), offset, np.uint8)
        codes = (x + offset if offset else x).astype(np.uint8)
        padded[:, top:top + h, left:left + w] = codes.transpose(0, 2, 3, 1)
        oh = conv_output_size(h, kernel[0], strides[0], top, bottom, dilations[0])
        ow = conv_output_size(w, kernel[1], strides[1], left, right, dilations[1])
        out = np.empty((n * oh * ow, c * kernel[0] * kernel[1]), np.uint8)
        code_columns(padded, kernel, strides, dilations, out)
        return [out]
    return run


def dense_taps_step(taps, keep_float: bool, fallback: Step) -> Step:
    """A dense stride-1 layer's product from its im2col's input (`runtime/tap_conv.py` TapConvolution `taps`) in one
    pass, for a layer with few outputs (`TapConvolution.few_outputs`; another keeps `fallback`); [N·oh·ow, M] as the
    layer's product orders it (for N = 1 the transposed view of the channels-first sums, as `depthwise_step` gives
    them)."""
    if not taps.few_outputs:
        return fallback
    from rcc.runtime.step_kernels import dense_taps
    weights = np.ascontiguousarray(np.stack(taps.tap_weights, axis=1).reshape(-1, taps.outputs).T, np.float32)
    geometry = (tuple(map(int, taps.kernel)), tuple(map(int, taps.dilations)), (int(taps.pads[0]), int(taps.pads[1])))

    def run(operands: list[np.ndarray]) -> list[np.ndarray]:
        x = operands[0]
        if not _takes(x) or x.ndim != 4:
            return fallback(operands)
        oh, ow = taps.output_size(x.shape)
        out = np.empty((x.shape[0], taps.outputs, oh, ow), np.float32)
        dense_taps(x, weights, *geometry, out)
        return _product_rows(out, keep_float)
    return run


# The vector ops with a compiled form: IR op → (normalized attrs → kernel(x, out)) for elementwise ones, IR op →
# (normalized attrs, numpy step → step) for the others.
_ELEMENTWISE_KERNELS: dict[str, Callable[[dict], Callable[[np.ndarray, np.ndarray], None]]] = {
    "nn.tanh": lambda attrs: _rational("nn.tanh"), "nn.sigmoid": lambda attrs: _rational("nn.sigmoid"),
    "nn.hard_sigmoid": _hard_sigmoid, "nn.hard_swish": lambda attrs: _kernel("hard_swish"),
    "nn.relu": lambda attrs: _kernel("relu")}
_KERNEL_STEPS: dict[str, Callable[[dict, Step], Step]] = {
    "nn.erf": _erf_step, "nn.layer_norm": _layer_norm_step, "nn.resize": _bilinear_step, "nn.softmax": _softmax_step,
    "nn.avg_pool2d": _average_tiles_step}
VECTOR_KERNELS = frozenset(_ELEMENTWISE_KERNELS) | frozenset(_KERNEL_STEPS)
