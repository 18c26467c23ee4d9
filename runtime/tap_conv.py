"""A stride-1 convolution's crossbar product without its im2col columns: Σ over the kernel's taps of the
shifted input pixels × that tap's weight rows.

The input, channels last and zero-padded ([N, Hp, Wp, C], one copy), is a matrix of N·Hp·Wp pixel rows; the
tap (i, j) of output pixel r reads pixel row r + i·dh·Wp + j·dw, so each tap is one GEMM of a contiguous block
of rows [rows, C] with the tap's weight rows [C, M] (rows c·taps + t of the layer's (c, kh, kw)-ordered
weights), accumulated in float32; the outputs outside the valid (oh, ow) grid are computed and dropped. When
the layer's product is provably one exact float32 GEMM (every partial sum of x·W is an integer below 2^24,
`CrossbarGroup.single_gemm_exact`), every partial sum here is one of them too: the same integers as the im2col
product, bit for bit. It pays from TAP_MIN_CHANNELS channels and TAP_MIN_PIXELS output pixels (measured, one
BLAS thread: 16 channels at 32×32 147 → 95 µs, 8 at 64×64 266 → 169, 32 at 16×16 94 → 77; 3 channels at 32×32
34 → 49 and 6 at 10×10 26 → 57, so those keep im2col).
"""

from __future__ import annotations

import numpy as np

from rcc.runtime.crossbar import CrossbarGroup

TAP_MIN_CHANNELS = 8
TAP_MIN_PIXELS = 256


class TapConvolution:
    """The product of a dense single-group layer with the im2col (stride 1) of an NCHW input, tap by tap."""

    def __init__(self, group: CrossbarGroup, im2col_attrs: dict) -> None:
        assert group.mapping.groups == 1 and tuple(im2col_attrs["strides"]) == (1, 1)
        self.kernel, self.pads, self.dilations = im2col_attrs["kernel"], im2col_attrs["pads"], im2col_attrs["dilations"]
        taps = self.kernel[0] * self.kernel[1]
        self.tap_weights = [np.ascontiguousarray(group.matrix[0][tap::taps]) for tap in range(taps)]

    def suits(self, shape: tuple[int, ...]) -> bool:
        """Whether an input of `shape` [N, C, H, W] has channels and output pixels enough for taps to pay."""
        (kh, kw), (dh, dw), p = self.kernel, self.dilations, self.pads
        pixels = (shape[2] + p[0] + p[2] - dh * (kh - 1)) * (shape[3] + p[1] + p[3] - dw * (kw - 1))
        return shape[1] >= TAP_MIN_CHANNELS and pixels >= TAP_MIN_PIXELS

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x · W [N·oh·ow, M] in float32 for integer x [N, C, H, W] (float32 levels or int32)."""
        (kh, kw), (dh, dw), p = self.kernel, self.dilations, self.pads
        n, c, h, w = x.shape
        hp, wp = h + p[0] + p[2], w + p[1] + p[3]
        oh, ow = hp - dh * (kh - 1), wp - dw * (kw - 1)
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
