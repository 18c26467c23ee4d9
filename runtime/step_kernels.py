"""The machine's hot steps compiled with numba: one pass where numpy makes several, the same values bit for bit.

A small model's run is tens of steps on a few thousand elements, where each numpy call costs about a
microsecond whatever its size: a quantize is three calls, a dequantize four, onnxruntime's rational tanh and
logistic about forty (their fused multiply-adds in float64, rounded to float32 after each). Here each is one
loop over the elements doing the same IEEE operations in the same order (no fast-math, so no contraction into
fused multiply-adds and no reassociation; float32 operations on float32 operands, float64 where numpy widens):
- `levels`: quantize's integers in float32, rint(float32(x · 1/scale)) clipped to the range (NaN kept);
- `dequantize_rows`, `dequantize_channels_first`: float32(float64(acc) · scale[m] (+ bias[m])), the latter
  writing [M, pixels] per sample from accumulators [N·pixels, M]; then, where the plan fused them, a constant's
  float32 addition and relu (`runtime/fusion.py` dequantize epilogues); `transpose_tiles`: [N, Q, M] as [N, M, Q]
  tile by tile (for a large layer's values channels first: numpy's transposed copy misses the cache on each read);
- `tanh`, `logistic`: MLAS's rational approximations as `ir/ops/nn_quant_tables.py` computes them;
- `erf_near`, `erf_far_terms`, `erf_far_finish`: erf's float64 polynomials, below 2 in magnitude and beyond, where
  numpy computes the exponential (its own exp: the same float64 values as numpy's erf, which a libm's might not be);
- `hard_swish`, `hard_sigmoid`, `relu`: the float32 expressions of `ir/ops/nn_transcendental.py` and `relu`'s clip;
- `depthwise`, `dense_taps`: a depthwise layer's, or a stride-1 layer's with few channels, exact product from its
  quantized input, without im2col columns;
- `layer_norm`: its float64 means by numpy's pairwise summation (`pairwise_sum`, the order its add.reduce
  takes over a contiguous row); `softmax_shift`, `softmax_normalize`: softmax around numpy's own exp (its
  float32 row sums pairwise too);
- `bilinear`: onnxruntime's bilinear resize, four float32 products summed left to right;
- `average_tiles`: average pooling whose windows tile the input, float64 sums in tap order;
- `code_columns`: an im2col of uint8 codes, taps first (the columns of an integer-GEMM layer);
- `gather_cells`: an im2col as one gather, by a flat index prepared per input shape (numpy's take is half as fast).
(A kernel whose sums may meet two NaNs hands the step back to numpy: which payload survives depends on operand
order, which LLVM may commute.)
(`runtime/numba_jit.py`: no fast-math, IEEE division, cached on disk where numba can write.)

Importing numba and loading these from its disk cache takes 0.2-0.5 s (compiling them, the first time ever, about
2 s), so `runtime/plan.py` switches a `Machine` to them only once its runs have taken a second in all:
a few inferences (`rcc run`, `--verify`) never import numba. Each step falls back to its numpy callable for
operands the kernel does not take (another dtype, a non-contiguous array).
Tests compare every kernel with its numpy function on random, boundary and special values.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rcc.runtime.numba_jit import jit


@numba.njit(inline="always")
def _fma32(a, b, c):
    return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


@numba.njit(inline="always")
def _clamped(v, low, high):
    """v within [low, high]; NaN passes, −0 stays −0 (as ndarray.clip)."""
    v = low if v < low else v
    return high if v > high else v


@jit
def levels(x, inverse, low, high, out):
    """out = clip(rint(float32(x · inverse)), low, high) over flat float32 arrays; NaN stays NaN."""
    for i in range(x.size):
        out[i] = _clamped(np.rint(x[i] * inverse), low, high)


@jit
def dequantize_rows(acc, scale, bias, with_bias, addend, with_addend, relu, out):
    """out[p, m] = float32(float64(acc[p, m]) · scale[m] (+ bias[m])), then (+ addend[m]), then (relu)."""
    for p in range(acc.shape[0]):
        for m in range(acc.shape[1]):
            wide = np.float64(acc[p, m]) * scale[m]
            if with_bias:
                wide = wide + bias[m]
            out[p, m] = np.float32(wide)
    if with_addend or relu:
        zero = np.float32(0.0)
        for p in range(out.shape[0]):
            for m in range(out.shape[1]):
                out[p, m] = _epilogue(out[p, m], addend[m] if with_addend else zero, with_addend, relu)


@jit
def dequantize_channels_first(acc, scale, bias, with_bias, addend, with_addend, relu, out):
    """out[n, m, q] = float32(float64(acc[n·Q + q, m]) · scale[m] (+ bias[m])), then (+ addend[m]), then (relu), for
    out [N, M, Q]."""
    pixels = out.shape[2]
    for n in range(out.shape[0]):
        for m in range(out.shape[1]):
            for q in range(pixels):
                wide = np.float64(acc[n * pixels + q, m]) * scale[m]
                if with_bias:
                    wide = wide + bias[m]
                out[n, m, q] = np.float32(wide)
    if with_addend or relu:
        zero = np.float32(0.0)
        for n in range(out.shape[0]):
            for m in range(out.shape[1]):
                shift = addend[m] if with_addend else zero
                for q in range(pixels):
                    out[n, m, q] = _epilogue(out[n, m, q], shift, with_addend, relu)


@jit
def small_layer(x, inverse, low, high, weights, scale, bias, with_bias, addend, with_addend, relu, out):
    """A small layer's quantize → exact product → dequantize in one call: `levels` of x [P, K], their product with
    the integer-valued float32 weights [K, M] summed in float32 (exact: every partial sum an integer below 2^24,
    `CrossbarGroup.single_gemm_exact`, in any order), then `dequantize_rows` into out [P, M]."""
    rows, depth = x.shape
    acc = np.zeros((rows, weights.shape[1]), np.float32)
    for p in range(rows):
        for k in range(depth):
            level = _clamped(np.rint(x[p, k] * inverse), low, high)
            for m in range(weights.shape[1]):
                acc[p, m] += level * weights[k, m]
    dequantize_rows(acc, scale, bias, with_bias, addend, with_addend, relu, out)


@numba.njit(inline="always")
def _epilogue(value, shift, with_addend, relu):
    """A dequantized float32 value, + shift in float32, then relu's clip (−0 and NaN kept), as the add and relu steps
    compute them: a second pass over the output, which keeps the dequantize's own loop as fast as alone."""
    if with_addend:
        value = value + shift
    if relu:
        value = _clamped(value, np.float32(0.0), np.float32(np.inf))
    return value


# Eigen's odd rational approximations, p(v²)·v / q(v²) on v clamped to ±bound, by Horner's rule with float32
# fused multiply-adds (float64 products and sums, rounded to float32), written out: a loop over the coefficients
# would keep the loop over elements from being vectorised. The coefficients (float32, numerator's then
# denominator's, highest power first) are arguments, not globals: numba's disk cache would keep stale constants.


@jit
def tanh(x, coefficients, out):
    """MLAS's tanh: `coefficients` are `nn_quant_tables`' 7 numerator and 4 denominator ones."""
    T0, T1, T2, T3, T4, T5, T6, TQ0, TQ1, TQ2, TQ3 = coefficients
    bound = np.float32(9.0)
    for i in range(x.size):
        v = _clamped(x[i], -bound, bound)
        s = v * v
        p = _fma32(_fma32(_fma32(_fma32(_fma32(_fma32(T0, s, T1), s, T2), s, T3), s, T4), s, T5), s, T6)
        q = _fma32(_fma32(_fma32(TQ0, s, TQ1), s, TQ2), s, TQ3)
        out[i] = (p * v) / q


@jit
def logistic(x, coefficients, out):
    """MLAS's logistic: `coefficients` are `nn_quant_tables`' 5 numerator and 6 denominator ones."""
    L0, L1, L2, L3, L4, LQ0, LQ1, LQ2, LQ3, LQ4, LQ5 = coefficients
    bound, half, zero = np.float32(18.0), np.float32(0.5), np.float32(0.0)
    for i in range(x.size):
        v = _clamped(x[i], -bound, bound)
        s = v * v
        p = _fma32(_fma32(_fma32(_fma32(L0, s, L1), s, L2), s, L3), s, L4)
        q = _fma32(_fma32(_fma32(_fma32(_fma32(LQ0, s, LQ1), s, LQ2), s, LQ3), s, LQ4), s, LQ5)
        value = (p * v) / q + half
        out[i] = zero if value < zero else value


@jit
def erf_near(x, coefficients, out, far):
    """out[i] = float32(x·P(min(|x|, 2)²/2 − 1)) in float64 (P's 17 float64 `coefficients`, highest power first; a
    NaN x gives itself, sign and payload kept, as numpy's product does on short arrays: its SIMD loop on long ones
    drops a negative NaN's sign); the indices of the elements with |x| ≥ 2, whose values numpy computes
    (`erf_far`), in far[:count]; returns the count."""
    E0, E1, E2, E3, E4, E5, E6, E7, E8, E9, E10, E11, E12, E13, E14, E15, E16 = coefficients
    count = 0
    for i in range(x.size):   # no stores but out[i]: vectorised
        wide = np.float64(x[i])
        near = abs(wide)
        if near >= 2.0:
            count += 1
            near = 2.0
        t = near * near * 0.5 - 1.0
        acc = E0 * t + E1   # Horner's rule written out (a loop would keep this one from being vectorised)
        acc = acc * t + E2
        acc = acc * t + E3
        acc = acc * t + E4
        acc = acc * t + E5
        acc = acc * t + E6
        acc = acc * t + E7
        acc = acc * t + E8
        acc = acc * t + E9
        acc = acc * t + E10
        acc = acc * t + E11
        acc = acc * t + E12
        acc = acc * t + E13
        acc = acc * t + E14
        acc = acc * t + E15
        acc = acc * t + E16
        out[i] = np.float32(wide if wide != wide else wide * acc)
    if count:
        found = 0
        for i in range(x.size):
            if abs(x[i]) >= 2.0:
                far[found] = i
                found += 1
    return count


@jit
def hard_swish(x, out):
    sixth, half, zero, one = np.float32(1 / 6), np.float32(0.5), np.float32(0.0), np.float32(1.0)
    for i in range(x.size):
        out[i] = x[i] * _clamped(x[i] * sixth + half, zero, one)


@jit
def add_relu(a, b, out):
    """(a + b).clip(0, inf) over flat float32 arrays: the add's float32 sum, then relu's clip (−0 and NaN kept)."""
    zero, infinity = np.float32(0.0), np.float32(np.inf)
    for i in range(a.size):
        out[i] = _clamped(a[i] + b[i], zero, infinity)


@jit
def relu(x, out):
    """x.clip(0, inf): −0 and NaN kept."""
    zero, infinity = np.float32(0.0), np.float32(np.inf)
    for i in range(x.size):
        out[i] = _clamped(x[i], zero, infinity)


@jit
def hard_sigmoid(x, alpha, beta, out):
    zero, one = np.float32(0.0), np.float32(1.0)
    for i in range(x.size):
        out[i] = _clamped(x[i] * alpha + beta, zero, one)


@jit
def depthwise(x, weights, multiplier, kernel, strides, dilations, pads, out):
    """A depthwise layer's exact product, channels first: out[n, g·mult + k, oy, ox] = Σ over taps (i, j) of
    weights[g·mult + k, i·kw + j] · x[n, g, oy·sh + i·dh − top, ox·sw + j·dw − left], taps outside the input
    reading the padding's zeros, for integer-valued float32 x [N, G, H, W], weights [G·mult, kh·kw] and
    out [N, G·mult, oh, ow]. Every partial sum is an integer below 2^24 (the caller's `single_gemm_exact`), so the
    sums are exact in any order. At stride 1 each channel is copied once into a zero-padded plane and each tap
    adds one long contiguous run of it (the padded width's extra columns computed and dropped: long vectorised
    loops); strided layers loop over each tap's valid rows."""
    (kh, kw), (sh, sw), (dh, dw), (top, left) = kernel, strides, dilations, pads
    height, width = x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    if sh == 1 and sw == 1:
        padded_width = ow + dw * (kw - 1)
        padded_height = oh + dh * (kh - 1)
        padded = np.zeros((padded_height, padded_width), np.float32)
        length = (oh - 1) * padded_width + ow
        total = np.empty(oh * padded_width, np.float32)
    for n in range(out.shape[0]):
        for channel in range(out.shape[1]):
            source = x[n, channel // multiplier]
            plane = out[n, channel]
            if sh == 1 and sw == 1:
                for y in range(height):   # the input inside the padding (rows and columns beyond stay zero)
                    if 0 <= y + top < padded_height:
                        for col in range(width):
                            if 0 <= col + left < padded_width:
                                padded[y + top, col + left] = source[y, col]
                flat = padded.reshape(-1)
                total[:] = 0
                for i in range(kh):
                    for j in range(kw):
                        weight = weights[channel, i * kw + j]
                        run = flat[i * dh * padded_width + j * dw:]
                        for k in range(length):
                            total[k] += weight * run[k]
                for oy in range(oh):
                    for ox in range(ow):
                        plane[oy, ox] = total[oy * padded_width + ox]
                continue
            plane[:, :] = 0
            for i in range(kh):
                for j in range(kw):
                    weight = weights[channel, i * kw + j]
                    dy, dx = i * dh - top, j * dw - left
                    y0, y1 = max(0, -(dy // sh)), min(oh, (height - 1 - dy) // sh + 1)
                    x0, x1 = max(0, -(dx // sw)), min(ow, (width - 1 - dx) // sw + 1)
                    if x1 <= x0:
                        continue
                    for oy in range(y0, y1):
                        target = plane[oy, x0:x1]
                        run = source[oy * sh + dy, x0 * sw + dx:(x1 - 1) * sw + dx + 1:sw]
                        for k in range(target.size):
                            target[k] += weight * run[k]


@jit
def dense_taps(x, weights, kernel, dilations, pads, out):
    """A dense stride-1 layer's exact product, channels first: out[n, m, oy, ox] = Σ over channels c and taps (i, j)
    of weights[m, c·kh·kw + i·kw + j] · x[n, c, oy + i·dh − top, ox + j·dw − left], taps outside the input reading
    the padding's zeros, for integer-valued float32 x [N, C, H, W], weights [M, C·kh·kw] and out [N, M, oh, ow].
    Every partial sum is an integer below 2^24 (the caller's `single_gemm_exact`), so the sums are exact in any
    order. Each channel is copied once into a zero-padded plane, and each (tap, output) adds one long contiguous
    run of it (the padded width's extra columns computed and dropped), as `depthwise` does at stride 1: C·taps·M
    vectorised loops, which beat the columns' gather and a GEMM when C·M is small."""
    (kh, kw), (dh, dw), (top, left) = kernel, dilations, pads
    height, width = x.shape[2], x.shape[3]
    outputs, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    padded_width, padded_height = ow + dw * (kw - 1), oh + dh * (kh - 1)
    padded = np.zeros((padded_height, padded_width), np.float32)
    flat = padded.reshape(-1)
    length = (oh - 1) * padded_width + ow
    total = np.empty((outputs, oh * padded_width), np.float32)
    taps = kh * kw
    for n in range(out.shape[0]):
        total[:, :] = 0
        for channel in range(x.shape[1]):
            source = x[n, channel]
            for y in range(height):   # the input inside the padding (rows and columns beyond stay zero)
                if 0 <= y + top < padded_height:
                    for col in range(width):
                        if 0 <= col + left < padded_width:
                            padded[y + top, col + left] = source[y, col]
            for i in range(kh):
                for j in range(kw):
                    run = flat[i * dh * padded_width + j * dw:]
                    for m in range(outputs):
                        weight = weights[m, channel * taps + i * kw + j]
                        sums = total[m]
                        for k in range(length):
                            sums[k] += weight * run[k]
        for m in range(outputs):
            for oy in range(oh):
                for ox in range(ow):
                    out[n, m, oy, ox] = total[m, oy * padded_width + ox]


@jit
def erf_far_terms(x, far, coefficients, argument, tail):
    """For the elements x[far[k]] with |x| ≥ 2 (`erf_near`'s), as `ir.ops.nn_transcendental.erf_far` computes
    them in float64: a = min(|x|, 6), argument[k] = −a·a (numpy takes its exp) and tail[k] = Q((a − 4)/2), Q's
    float64 `coefficients` highest power first."""
    for k in range(far.size):
        a = min(abs(np.float64(x[far[k]])), 6.0)
        argument[k] = -a * a
        t = (a - 4.0) * 0.5
        acc = coefficients[0]
        for c in range(1, coefficients.size):
            acc = acc * t + coefficients[c]
        tail[k] = acc


@jit
def erf_far_finish(x, far, exponential, tail, out):
    """out[far[k]] = float32(copysign(1 − exponential[k]·tail[k], x[far[k]]))."""
    for k in range(far.size):
        out[far[k]] = np.float32(math.copysign(1.0 - exponential[k] * tail[k], np.float64(x[far[k]])))


@jit
def _block_sum(values, start, n, zero):
    """numpy's pairwise sum of at most 128 values (in their type, `zero`'s): a plain loop from 0 below 8; else
    eight running sums (i ≡ k mod 8) combined as ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), then the
    remainder one by one."""
    if n < 8:
        total = zero
        for i in range(start, start + n):
            total += values[i]
        return total
    s0, s1, s2, s3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    s4, s5, s6, s7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i, blocks_end = start + 8, start + n - n % 8
    while i < blocks_end:
        s0 += values[i]
        s1 += values[i + 1]
        s2 += values[i + 2]
        s3 += values[i + 3]
        s4 += values[i + 4]
        s5 += values[i + 5]
        s6 += values[i + 6]
        s7 += values[i + 7]
        i += 8
    total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    while i < start + n:
        total += values[i]
        i += 1
    return total


@jit
def pairwise_sum(values, start, n, zero):
    """Σ values[start:start + n] (float64 or float32, `zero`'s type) in numpy's pairwise order, as its add.reduce
    sums a contiguous row from its identity: up to 128 values one block (`_block_sum`); beyond, the two halves
    (the first a multiple of 8 long) summed apart and added. The halving tree is walked with a stack (numba
    cannot cache a recursive function)."""
    if n <= 128:
        return zero + _block_sum(values, start, n, zero)
    starts, lengths = np.empty(64, np.int64), np.empty(64, np.int64)
    lefts, left_done = np.full(64, zero), np.zeros(64, np.bool_)
    depth, starts[0], lengths[0] = 0, start, n
    while True:
        if lengths[depth] > 128:   # descend into the left half
            half = lengths[depth] // 2
            half -= half % 8
            left_done[depth] = False
            depth += 1
            starts[depth], lengths[depth] = starts[depth - 1], half
            continue
        total = _block_sum(values, starts[depth], lengths[depth], zero)
        while depth > 0:   # hand the finished half to its parent
            depth -= 1
            if not left_done[depth]:   # the left half: keep it, go on with the right one
                left_done[depth], lefts[depth] = True, total
                half = lengths[depth] // 2
                half -= half % 8
                depth += 1
                starts[depth], lengths[depth] = starts[depth - 1] + half, lengths[depth - 1] - half
                break
            total = lefts[depth] + total
        else:
            return zero + total


@jit
def layer_norm(x, scale, bias, with_bias, epsilon, out):
    """`ir/ops/nn_norm.py` layer_norm over the rows of x [rows, count] (float32, stash_type f32): the mean and
    variance of each row in float64 (numpy's pairwise sums, from its identity 0) rounded to float32, the
    centred row divided by float32 sqrt(variance + epsilon), times scale[j] (plus bias[j]). False (out
    unfinished) when a row's sum is NaN: which of two NaNs a sum keeps depends on operand order, which LLVM
    may commute."""
    rows, count = x.shape
    wide = np.empty(count)
    for r in range(rows):
        for j in range(count):
            wide[j] = np.float64(x[r, j])
        total = pairwise_sum(wide, 0, count, 0.0)
        if total != total:
            return False
        mean = np.float32(total / count)
        for j in range(count):
            centered = x[r, j] - mean
            out[r, j] = centered
            wide[j] = np.float64(centered * centered)
        variance = np.float32(pairwise_sum(wide, 0, count, 0.0) / count)
        deviation = np.sqrt(variance + epsilon)
        for j in range(count):
            y = (out[r, j] / deviation) * scale[j]
            out[r, j] = y + bias[j] if with_bias else y
    return True


@jit
def bilinear(pixels, indices, weights, out):
    """onnxruntime's bilinear resize (`ir/ops/nn_resize.py` onnxruntime_bilinear) of pixels [rows, H·W] into
    out [rows, P]: ((x[i0]·w0 + x[i1]·w1) + x[i2]·w2) + x[i3]·w3 per output p, in float32 left to right. False
    (out unfinished) at a NaN output: which of two NaNs a sum keeps depends on operand order, which LLVM may
    commute."""
    for r in range(pixels.shape[0]):
        for p in range(indices.shape[1]):
            total = pixels[r, indices[0, p]] * weights[0, p]
            total += pixels[r, indices[1, p]] * weights[1, p]
            total += pixels[r, indices[2, p]] * weights[2, p]
            total += pixels[r, indices[3, p]] * weights[3, p]
            if total != total:
                return False
            out[r, p] = total
    return True




@jit
def softmax_shift(x, out):
    """out[r] = x[r] − max(x[r]) over the rows of x [rows, n] (float32), the first step of `ir/ops/nn_elementwise.py`
    softmax; False (out unfinished) when a row holds a NaN, whose payload numpy's maximum picks its own way."""
    for r in range(x.shape[0]):
        top = x[r, 0]
        for j in range(x.shape[1]):
            value = x[r, j]
            if value != value:
                return False
            if value > top:
                top = value
        for j in range(x.shape[1]):
            out[r, j] = x[r, j] - top
    return True


@jit
def softmax_normalize(exponentials):
    """exponentials[r] /= Σ exponentials[r] (numpy's float32 pairwise sum from 0) over the rows, in place."""
    for r in range(exponentials.shape[0]):
        total = pairwise_sum(exponentials[r], 0, exponentials.shape[1], np.float32(0))
        for j in range(exponentials.shape[1]):
            exponentials[r, j] /= total


@jit
def average_tiles(x, kh, kw, out):
    """`ir/ops/nn_pool.py` avg_pool2d where the windows tile x [N, C, H, W] (no pads or dilation, strides equal
    to the kernel): each window's values summed in float64 in row-major tap order from its first, divided by
    kh·kw, rounded to float32. False (out unfinished) at a NaN sum, whose payload depends on operand order."""
    count = np.float64(kh * kw)
    for b in range(out.shape[0]):
        for ch in range(out.shape[1]):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    total = np.float64(x[b, ch, i * kh, j * kw])
                    for tap in range(1, kh * kw):
                        total += np.float64(x[b, ch, i * kh + tap // kw, j * kw + tap % kw])
                    if total != total:
                        return False
                    out[b, ch, i, j] = np.float32(total / count)
    return True


@jit
def gather_cells(x, sources, out):
    """out[i] = x[sources[i]] over flat arrays, 0 where sources[i] is x.size (a padding cell): `ir/ops/xbar.py`
    im2col through its `im2col_sources` index."""
    size = x.size
    for i in range(sources.size):
        cell = sources[i]
        out[i] = x[cell] if cell < size else 0


@jit
def code_columns(padded, kernel, strides, dilations, out):
    """im2col's columns, taps first (`ir.ops.xbar.taps_first_order`), from its input's codes channels last and
    padded (uint8 [N, Hp, Wp, C]): out [N·oh·ow, kh·kw·C] holds each output pixel's row, a run of kw·C codes a
    kernel row (undilated width), else of C a tap. (Slices of known extent: an index computed per element keeps
    numba from vectorising the copy, 3-5x slower.)"""
    n, hp, wp, c = padded.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    for s in range(n):
        for oy in range(oh):
            for i in range(kh):
                line = padded[s, oy * sh + i * dh].reshape(-1)
                for ox in range(ow):
                    row = (s * oh + oy) * ow + ox
                    if dw == 1:
                        target = out[row, i * kw * c:(i + 1) * kw * c]
                        source = line[ox * sw * c:(ox * sw + kw) * c]
                        for e in range(kw * c):
                            target[e] = source[e]
                        continue
                    for j in range(kw):
                        target = out[row, (i * kw + j) * c:(i * kw + j + 1) * c]
                        source = line[(ox * sw + j * dw) * c:(ox * sw + j * dw + 1) * c]
                        for e in range(c):
                            target[e] = source[e]


TILE = 32   # transpose_tiles' tile side: a 32 x 32 float32 tile is 4 KiB, read and written within L1


@jit
def transpose_tiles(x, out):
    """out[n, m, q] = x[n, q, m], TILE x TILE tiles at a time, each written row by row: numpy's transposed copy
    reads a column of x per row of out, which for [3136, 256] or [12544, 64] misses the cache on every element
    (5-7 ms against 1-2 here, measured)."""
    pixels, channels = x.shape[1], x.shape[2]
    for n in range(x.shape[0]):
        for q0 in range(0, pixels, TILE):
            q1 = min(q0 + TILE, pixels)
            for m0 in range(0, channels, TILE):
                for m in range(m0, min(m0 + TILE, channels)):
                    for q in range(q0, q1):
                        out[n, m, q] = x[n, q, m]
