"""Convolution products without im2col columns: Σ over the kernel's taps of the shifted input pixels × that
tap's weights, for dense stride-1 layers (`TapConvolution`) and depthwise layers of any stride whose kernel has
two or more taps (`DepthwiseTaps`).

Dense layers: the input, channels last and zero-padded ([N, Hp, Wp, C], one copy), is a matrix of N·Hp·Wp
pixel rows; the tap (i, j) of output pixel r reads pixel row r + i·dh·Wp + j·dw, so each tap is one GEMM of a contiguous block
of rows [rows, C] with the tap's weight rows [C, M] (rows c·taps + t of the layer's (c, kh, kw)-ordered
weights), accumulated in float32; the outputs outside the valid (oh, ow) grid are computed and dropped. When
the layer's product is provably one exact float32 GEMM (every partial sum of x·W is an integer below 2^24,
`CrossbarGroup.single_gemm_exact`), every partial sum here is one of them too: the same integers as the im2col
product, bit for bit. It pays from TAP_MIN_CHANNELS channels and TAP_MIN_PIXELS output pixels (measured, one
BLAS thread: 16 channels at 32×32 147 → 95 µs, 8 at 64×64 266 → 169, 32 at 16×16 94 → 77; 3 channels at 32×32
34 → 49 and 6 at 10×10 26 → 57, so those keep im2col), and not on columns small enough for im2col's gather
(`runtime/instructions.py` SMALL_IM2COL_ELEMENTS: 16 channels at 16×16 into 3, 2×2 taps, 25 µs against 13 for
the gather and its GEMM). A pointwise (1×1, unpadded) layer always goes this way: its GEMM reads the input's
pixels as they lie, where im2col would copy them (one sample: Wᵀ · x, channels first). A layer with few outputs
(FEW_OUTPUTS) goes tap by tap in its compiled form (`runtime/compiled_steps.py` dense_taps_step), channels first,
where numpy's calls would be too many and too small.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.ops.nn_linear import conv_output_size
from rcc.runtime.crossbar import CrossbarGroup
from rcc.runtime.instructions import SMALL_IM2COL_ELEMENTS

TAP_MIN_CHANNELS = 8
TAP_MIN_PIXELS = 256
# Up to this many outputs a stride-1 layer's compiled tap-by-tap product beats, or equals, the compiled gather of its
# columns and a GEMM, whatever its channels (measured, one BLAS thread, medians, µs, gather+GEMM → taps: 16 channels
# at 16×16 into 3, 2×2 17 → 8 and 3×3 31 → 14; 32 at 16×16 into 4 58 → 34; 1 at 28×28 into 6, 5×5, 23 → 13; 8 at
# 32×32 into 8 78 → 50; 16 at 16×16 into 8 33 → 33; 64 at 8×8 into 5 32 → 33; but into 16 outputs: 32 at 8×8
# 13 → 26, 3 at 32×32 30 → 48, 6 at 14×14 17 → 31).
FEW_OUTPUTS = 8
DEPTHWISE_MIN_OUTPUTS = 1024   # outputs (N·oh·ow·G·mult) from which a depthwise layer goes tap by tap
CHANNELS_FIRST_PIXELS = 256  # output plane from which a depthwise layer goes channels first
SPREAD_TILINGS = 2           # input shapes whose tiled weights a depthwise layer keeps
SPREAD_ELEMENTS = 1 << 18    # the largest padded input a depthwise layer takes tap by tap (1 MiB of weights a tap)


class TapConvolution:
    """The product of a dense single-group layer with the im2col (stride 1) of an NCHW input, tap by tap."""

    def __init__(self, group: CrossbarGroup, im2col_attrs: dict) -> None:
        assert group.mapping.groups == 1 and tuple(im2col_attrs["strides"]) == (1, 1)
        self.kernel, self.pads, self.dilations = im2col_attrs["kernel"], im2col_attrs["pads"], im2col_attrs["dilations"]
        taps = self.kernel[0] * self.kernel[1]
        self.tap_weights = [np.ascontiguousarray(group.matrix[0][tap::taps]) for tap in range(taps)]
        self.pointwise = taps == 1 and not any(self.pads)   # a 1×1 layer: the input's pixels are its columns
        # a 1×1 layer's weights as rows [M, C]: for one sample, Wᵀ · x [C, H·W] gives the sums channels first
        self.pointwise_rows = np.ascontiguousarray(self.tap_weights[0].T) if self.pointwise else None
        self.outputs = group.mapping.outputs

    def output_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        (kh, kw), (dh, dw), p = self.kernel, self.dilations, self.pads
        return shape[2] + p[0] + p[2] - dh * (kh - 1), shape[3] + p[1] + p[3] - dw * (kw - 1)

    @property
    def few_outputs(self) -> bool:
        """Whether the layer has so few outputs (at most FEW_OUTPUTS, two taps or more) that its compiled product
        (`runtime/compiled_steps.py` dense_taps_step) beats the columns' gather and a GEMM."""
        return not self.pointwise and self.outputs <= FEW_OUTPUTS and self.kernel[0] * self.kernel[1] > 1

    def suits(self, shape: tuple[int, ...]) -> bool:
        """Whether an input of `shape` [N, C, H, W] has channels and output pixels enough for taps to pay (a
        pointwise layer's always do: it reads the input's pixels as they lie, without a copy)."""
        if self.pointwise:
            return True
        oh, ow = self.output_size(shape)
        return shape[1] >= TAP_MIN_CHANNELS and oh * ow >= TAP_MIN_PIXELS and \
            shape[0] * oh * ow * shape[1] * self.kernel[0] * self.kernel[1] > SMALL_IM2COL_ELEMENTS

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x · W [N·oh·ow, M] in float32 for integer x [N, C, H, W] (float32 levels or int32); a 1×1 layer's for one
        sample as the transposed view of the channels-first sums (one GEMM Wᵀ · x, as fast as x's transposed view
        times W, measured; the channels-first dequantize that follows then reads it in order: ResNet-50's 64 into
        256 channels at 56×56, 7.1 ms strided, 0.36 in order)."""
        (kh, kw), (dh, dw), p = self.kernel, self.dilations, self.pads
        n, c, h, w = x.shape
        if self.pointwise and n == 1:   # the sums channels first [M, H·W], as their transposed view
            return np.matmul(self.pointwise_rows, x.astype(np.float32, copy=False).reshape(c, h * w)).T
        if self.pointwise:   # each sample's [C, H·W] read transposed by the GEMM
            pixels = x.astype(np.float32, copy=False).reshape(n, c, h * w).transpose(0, 2, 1)
            return np.matmul(pixels, self.tap_weights[0]).reshape(n * h * w, -1)
        hp, wp = h + p[0] + p[2], w + p[1] + p[3]
        oh, ow = self.output_size(x.shape)
        padded = np.zeros((n, hp, wp, c), dtype=np.float32)
        padded[:, p[0]:p[0] + h, p[1]:p[1] + w] = x.transpose(0, 2, 3, 1)
        pixels = padded.reshape(n * hp * wp, c)
        offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
        rows = n * hp * wp - offsets[-1]     # every valid output pixel is among them
        outputs = self.tap_weights[0].shape[1]
        out = np.zeros((n * hp * wp, outputs), dtype=np.float32)
        total = out[:rows]
        np.matmul(pixels[offsets[0]:offsets[0] + rows], self.tap_weights[0], out=total)
        for offset, weights in zip(offsets[1:], self.tap_weights[1:]):
            total += np.matmul(pixels[offset:offset + rows], weights)
        return out.reshape(n, hp, wp, outputs)[:, :oh, :ow].reshape(n * oh * ow, outputs)


def tap_product_of(group: CrossbarGroup, im2col_attrs: dict) -> TapConvolution | DepthwiseTaps | None:
    """The tap-by-tap product for a layer reading an im2col with these attributes (a dense stride-1 layer, or a
    depthwise one), or None. The caller has checked that the layer's product is one exact float32 GEMM."""
    g = group.mapping
    taps = im2col_attrs["kernel"][0] * im2col_attrs["kernel"][1]
    if g.groups == 1 and tuple(im2col_attrs["strides"]) == (1, 1):
        return TapConvolution(group, im2col_attrs)
    if g.groups > 1 and g.rows == taps > 1:
        return DepthwiseTaps(group, im2col_attrs)
    return None


class DepthwiseTaps:
    """The product of a depthwise layer (one input channel per group, any channel multiplier) with the im2col of an
    NCHW input, tap by tap: per tap one multiply of a contiguous run of zero-padded input pixels with that tap's
    weights, accumulated; the run's outputs outside the valid grid are computed and dropped. The columns come out
    [N·oh·ow, G·mult], group-major as the layer's product orders them. Two layouts, by the output plane:
    - planes of CHANNELS_FIRST_PIXELS or more (any stride): channels first, as the input comes. The padded input
      (each channel repeated `mult` times) is split once into its stride phases (phase (a, b): the pixels at
      rows ≡ a mod sh, columns ≡ b mod sw; at stride 1 the padded input itself), every plane of a phase one
      after another in a flat run; tap (i, j) of output pixel r of a plane reads element r + (i·dh // sh)·PW +
      j·dw // sw of that plane in phase (i·dh mod sh, j·dw mod sw), PW a phase's width. For N = 1 the result
      is the transposed view of the channels-first values (the dequantize that follows reads them so).
    - smaller planes, stride 1: channels last (one transposing copy into the padded [N·Hp·Wp, C·mult] pixel
      rows, as `TapConvolution` reads them); tap (i, j) of pixel row r reads row r + i·dh·Wp + j·dw.
    Each output is a sum of `taps` products, and the layer's product is provably one exact float32 GEMM
    (`CrossbarGroup.single_gemm_exact`: every partial sum an integer below 2^24), so these sums are exact too:
    the same integers, bit for bit. Measured (one BLAS thread, 3×3, medians; im2col and product → taps):
    stride 1: 48 channels at 16×16 95 → 61 µs, 16 at 32×32 131 → 64, 96 at 8×8 51 → 30, 960 at 2×2 67 → 26;
    stride 2: 96 at 32×32 467 → 229, 72 at 32×32 347 → 174, 144 at 16×16 (8×8 outputs) 107 → 127, so strided
    layers with smaller planes keep im2col; 8 channels at 8×8 (512 outputs) 16 → 16: DEPTHWISE_MIN_OUTPUTS."""

    def __init__(self, group: CrossbarGroup, im2col_attrs: dict) -> None:
        g = group.mapping
        assert g.groups > 1 and g.rows == im2col_attrs["kernel"][0] * im2col_attrs["kernel"][1]
        self.kernel, self.pads = im2col_attrs["kernel"], im2col_attrs["pads"]
        self.strides, self.dilations = tuple(im2col_attrs["strides"]), im2col_attrs["dilations"]
        self.multiplier = g.outputs
        # tap t's weights [G·mult, 1], row g·mult + m as the layer's product orders its columns
        self.tap_weights = [np.ascontiguousarray(group.matrix[:, tap, :].reshape(-1, 1)) for tap in range(g.rows)]
        self._spread: dict[tuple[int, int], list[np.ndarray]] = {}

    def output_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw), p = self.kernel, self.strides, self.dilations, self.pads
        return (conv_output_size(shape[2], kh, sh, p[0], p[2], dh), conv_output_size(shape[3], kw, sw, p[1], p[3], dw))

    def phase_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The height and width of one stride phase of the padded input (the padded input at stride 1)."""
        (sh, sw), p = self.strides, self.pads
        return -(-(shape[2] + p[0] + p[2]) // sh), -(-(shape[3] + p[1] + p[3]) // sw)

    def suits(self, shape: tuple[int, ...]) -> bool:
        """Whether an input of `shape` [N, C, H, W] has outputs enough for taps to pay (and, strided, planes
        large enough for the channels-first layout), and a padded input small enough for its tiled weights."""
        oh, ow = self.output_size(shape)
        ph, pw = self.phase_size(shape)
        padded = shape[0] * shape[1] * self.multiplier * ph * self.strides[0] * pw * self.strides[1]
        return shape[0] * shape[1] * self.multiplier * oh * ow >= DEPTHWISE_MIN_OUTPUTS and \
            padded <= SPREAD_ELEMENTS and (self.strides == (1, 1) or oh * ow >= CHANNELS_FIRST_PIXELS)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x · W [N·oh·ow, G·mult] in float32 for integer x [N, C, H, W] (float32 levels or int32)."""
        oh, ow = self.output_size(x.shape)
        if oh * ow >= CHANNELS_FIRST_PIXELS or self.strides != (1, 1):
            return self._channels_first(x, oh, ow)
        return self._channels_last(x, oh, ow)

    def _channels_first(self, x: np.ndarray, oh: int, ow: int) -> np.ndarray:
        (kh, kw), (sh, sw), (dh, dw), p = self.kernel, self.strides, self.dilations, self.pads
        n, c, h, w = x.shape
        channels = c * self.multiplier
        ph, pw = self.phase_size(x.shape)
        padded = np.zeros((n, channels, ph * sh, pw * sw), dtype=np.float32)
        padded[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x if self.multiplier == 1 else np.repeat(x, self.multiplier, 1)
        split = padded.reshape(n * channels, ph, sh, pw, sw)
        taps = [(i * dh % sh, j * dw % sw, i * dh // sh * pw + j * dw // sw) for i in range(kh) for j in range(kw)]
        phases = {(a, b): np.ascontiguousarray(split[:, :, a, :, b]).reshape(-1) for a, b, _ in taps}
        # a tap's run reads past the end of a plane into the next only outside the valid grid
        out = self._accumulate([phases[a, b][offset:] for a, b, offset in taps],
                               n * channels * ph * pw - max(offset for _, _, offset in taps), (n, ph * pw))
        valid = np.ascontiguousarray(out.reshape(n, channels, ph, pw)[:, :, :oh, :ow])
        return valid.reshape(channels, oh * ow).T if n == 1 else \
            valid.transpose(0, 2, 3, 1).reshape(n * oh * ow, channels)

    def _channels_last(self, x: np.ndarray, oh: int, ow: int) -> np.ndarray:
        (kh, kw), (dh, dw), p = self.kernel, self.dilations, self.pads
        n, c, h, w = x.shape
        channels = c * self.multiplier
        hp, wp = h + p[0] + p[2], w + p[1] + p[3]
        padded = np.zeros((n, hp, wp, channels), dtype=np.float32)
        inner = x.transpose(0, 2, 3, 1)
        padded[:, p[0]:p[0] + h, p[1]:p[1] + w] = inner if self.multiplier == 1 else np.repeat(inner, self.multiplier, 3)
        offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
        flat = padded.reshape(-1)
        out = self._accumulate([flat[offset * channels:] for offset in offsets],
                               (n * hp * wp - offsets[-1]) * channels, (n * hp * wp, 1))
        return np.ascontiguousarray(out.reshape(n, hp, wp, channels)[:, :oh, :ow]).reshape(n * oh * ow, channels)

    def _accumulate(self, runs: list[np.ndarray], length: int, tiling: tuple[int, int]) -> np.ndarray:
        """Σ over taps of runs[t][:length] × tap t's weights tiled as `tiling` (channels first: (N, plane), each
        weight repeated over its plane; channels last: (pixels, 1), the weight rows repeated); a flat array of
        the whole tiled size, its first `length` elements the sums."""
        weights = self.spread_weights(tiling)
        size = weights[0].size
        out = np.empty(size, dtype=np.float32)
        total, scratch = out[:length], np.empty(length, dtype=np.float32)
        np.multiply(runs[0][:length], weights[0][:length], out=total)
        for run, tap_weights in zip(runs[1:], weights[1:]):
            total += np.multiply(run[:length], tap_weights[:length], out=scratch)
        return out

    def spread_weights(self, tiling: tuple[int, int]) -> list[np.ndarray]:
        """Each tap's weights tiled as `tiling` over a flat run (np.tile of the [G·mult, 1] column, flattened: a
        multiply with them runs twice as fast as one broadcasting the weights); the last SPREAD_TILINGS kept."""
        if tiling not in self._spread:
            if len(self._spread) >= SPREAD_TILINGS:
                self._spread.pop(next(iter(self._spread)))
            self._spread[tiling] = [np.tile(weights if tiling[1] > 1 else weights.T, tiling).reshape(-1)
                                    for weights in self.tap_weights]
        return self._spread[tiling]
