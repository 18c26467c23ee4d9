"""The inner loops of reading crossbars bit-slice by bit-slice, compiled with numba (rcc.runtime.devices owns the
device model, rcc.runtime.crossbar the ideal arrays' saturation; the column sums between them are BLAS GEMMs):
- `input_slices`: the DAC side, a chunk's inputs as bit-slices (one row per vector and input cycle) and each
  row's read-noise spread (∝ √Σ bit²), in one pass where numpy takes four;
- `read_out`: the ADC side of one block of reads: per read r = vector·cycles + k and column c, the analog sum
  plus its read noise (normals[r, c]·spread[r]), rounded and clipped to [0, A] by the ADC, then shifted and
  added over the input slices k into the vector's column total. One pass where numpy takes five (the noise's
  multiply and add, rint, the range check or clip, the shift-and-add): measured about six times faster on a
  256 × 256 block, where numpy's passes took a third of the noisy machine's time beside the block's GEMM.
- `add_excess`: the ideal arrays' ADC saturation of one input slice: the columns' excess over the ADC's range,
  merged over weight slices and sign arrays and added into the vectors' rows, in one pass where numpy took
  four (subtract, maximum, the merge, a two-axis fancy-indexed add: 40% of a 6-bit-ADC ResNet-50's time).
Results are bit for bit numpy's (IEEE float32 arithmetic, no fast-math, so no fused multiply-add).

Importing numba takes most of a second, so its callers import this module only when they first read slices
(device cells, or an ADC narrower than lossless).
"""

from __future__ import annotations

import numpy as np

from rcc.runtime.numba_jit import jit


@jit
def read_out(analog: np.ndarray, normals: np.ndarray, spread: np.ndarray, adc_max: np.float32,
             cycle_weights: np.ndarray, merged: np.ndarray) -> None:
    """merged[v, c] = Σ_k cycle_weights[k]·clip(rint(analog[r, c] + normals[r, c]·spread[r]), 0, adc_max) with
    r = v·cycles + k, for analog [vectors·cycles, columns]; without read noise `normals` is empty [0, 0]."""
    cycles = cycle_weights.size
    noisy = normals.size > 0
    zero = np.float32(0.0)
    for v in range(analog.shape[0] // cycles):
        total = merged[v]
        total[:] = 0
        for k in range(cycles):
            r = v * cycles + k
            weight = cycle_weights[k]
            row = analog[r]
            if noisy:
                scale = spread[r]
                noise = normals[r]
                for c in range(row.size):
                    total[c] += weight * min(max(np.rint(row[c] + noise[c] * scale), zero), adc_max)
            else:
                for c in range(row.size):
                    total[c] += weight * min(max(np.rint(row[c]), zero), adc_max)


@jit
def input_slices(chunk: np.ndarray, dac_bits: int, cycles: int, bits: np.ndarray, spread: np.ndarray,
                 spread_scale: np.float32) -> None:
    """bits[v·cycles + k, i] = (chunk[v, i] >> dac_bits·k) & (2^dac_bits − 1) for the chunk's rows i (bits' last
    columns, beyond the chunk's, are left as they are), and, when `spread` is not empty,
    spread[r] = spread_scale·√Σ_i bits[r, i]² in float32."""
    mask = (1 << dac_bits) - 1
    rows = chunk.shape[1]
    noisy = spread.size > 0
    for v in range(chunk.shape[0]):
        values = chunk[v]
        for k in range(cycles):
            r = v * cycles + k
            shift = dac_bits * k
            out = bits[r]
            squares = 0        # an integer sum: vectorised without reassociating float additions
            for i in range(rows):
                bit = (values[i] >> shift) & mask
                out[i] = bit
                squares += bit * bit
            if noisy:
                spread[r] = np.float32(np.sqrt(np.float32(squares))) * spread_scale


@jit
def add_excess(sums: np.ndarray, adc_max: np.float32, block_weights: np.ndarray, scale: float, rows: np.ndarray,
               excess: np.ndarray) -> None:
    """The ideal arrays' ADC saturation (rcc.runtime.crossbar): excess[rows[r], i] += scale · Σ_b block_weights[b] ·
    max(sums[r, b·n + i] − adc_max, 0) for column sums [R, B·n] of B column blocks of n outputs. Every term is an
    integer times a power of two, so the float64 sums are exact in any order (below 2^53)."""
    outputs = excess.shape[1]
    for r in range(sums.shape[0]):
        target = excess[rows[r]]
        for b in range(block_weights.size):
            weight = block_weights[b] * scale
            base = b * outputs
            for i in range(outputs):
                over = sums[r, base + i] - adc_max
                if over > 0:
                    target[i] += weight * over
