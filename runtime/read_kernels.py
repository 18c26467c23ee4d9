"""The inner loops of reading crossbars bit-slice by bit-slice, compiled with numba (rcc.runtime.devices owns the
device model, rcc.runtime.crossbar the ideal arrays' saturation; the column sums between them are BLAS GEMMs):
- `input_slices`: the DAC side, a chunk's inputs as bit-slices (one row per vector and input cycle) and each
  row's read-noise spread (∝ √Σ bit²), in one pass where numpy takes four;
- `read_out`: the ADC side of one block of reads: per read r = vector·cycles + k and column c, the analog sum
  plus its read noise (normals[r, c]·spread[r]), rounded and clipped to [0, A] by the ADC, then shifted and
  added over the input slices k into the vector's column total. One pass where numpy takes five (the noise's
  multiply and add, rint, the range check or clip, the shift-and-add): measured about six times faster on a
  256 × 256 block, where numpy's passes took a third of the noisy machine's time beside the block's GEMM.
- `packed_input_slices` and `add_packed_excess`: the ideal arrays' ADC saturation (rcc.runtime.crossbar), a few
  input slices per GEMM: the inputs' bit-slices of consecutive cycles packed as the digits of one float32 per
  row (base B, a power of two above any column's sum), only the vectors whose active inputs can exceed the
  ADC's range kept, in one pass over the inputs where numpy took five (gather, shift and mask, convert, the
  activity test, the kept rows' copy: half a 6-bit-ADC VGG-19's time beside its GEMMs); then the GEMM's sums
  split back into their digits, the columns' excess over the range merged over weight slices, sign arrays
  and input slices and added into the vectors' rows, in one pass where numpy took four.
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
def packed_input_slices(x: np.ndarray, columns: np.ndarray, offset: int, dac_bits: int, cycles: int, per_read: int,
                        base: int, largest_level: int, adc_max: int, packed: np.ndarray, chosen: np.ndarray,
                        counts: np.ndarray) -> None:
    """For reads r of `per_read` consecutive input cycles (the last one may have fewer): packed[r, n] =
    Σ_j B^j · ((x[v, columns] + offset) >> dac_bits·(r·per_read + j)) & (2^dac_bits − 1) for the vectors v with
    an active cycle in the read (one whose bits sum, times `largest_level`, exceeds `adc_max`), n counting them
    (counts[r] of them, chosen[r, n] = v). packed [reads, ≥ vectors, columns] float32, exact when the caller
    keeps (2^dac_bits − 1)·Σ_j B^j below 2^24; the inputs plus `offset` fit in int32."""
    mask = np.int32((1 << dac_bits) - 1)
    values = np.empty(columns.size, dtype=np.int32)
    counts[:] = 0
    for v in range(x.shape[0]):
        for i in range(columns.size):
            values[i] = np.int32(x[v, columns[i]] + offset)
        for r in range(counts.size):
            row = packed[r, counts[r]]
            active = False
            digit_weight = np.float32(1.0)
            for k in range(r * per_read, min((r + 1) * per_read, cycles)):
                shift = np.int32(dac_bits * k)
                bits = 0
                if k == r * per_read:
                    for i in range(columns.size):
                        bit = (values[i] >> shift) & mask
                        bits += bit
                        row[i] = np.float32(bit)
                else:
                    for i in range(columns.size):
                        bit = (values[i] >> shift) & mask
                        bits += bit
                        row[i] += np.float32(bit) * digit_weight
                active = active or bits * largest_level > adc_max
                digit_weight *= np.float32(base)
            if active:
                chosen[r, counts[r]] = v
                counts[r] += 1


@jit
def add_packed_excess(sums: np.ndarray, adc_max: int, block_weights: np.ndarray, cycle_weights: np.ndarray,
                      base_bits: int, rows: np.ndarray, excess: np.ndarray) -> None:
    """excess[rows[r], i] += Σ_b Σ_j block_weights[b] · cycle_weights[j] · max(d_j − adc_max, 0) for column sums
    [R, B·n] of B column blocks of n outputs, each sum's digits d_j in base 2^base_bits the sums of its read's
    input cycles j. The sums are integers below 2^24 (exact as int32); adc_max + 1 is a power of two below the
    base, so a sum whose digits all fit in adc_max's bits (one AND with the other bits of every digit) has no
    excess. Every term is an integer times a power of two, so the float64 sums are exact in any order (below
    2^53)."""
    outputs = excess.shape[1]
    digits = cycle_weights.size
    digit_mask = np.int32((1 << base_bits) - 1)
    beyond_range = 0
    for j in range(digits):
        beyond_range |= (digit_mask & ~np.int32(adc_max)) << (base_bits * j)
    beyond_range = np.int32(beyond_range)
    for r in range(sums.shape[0]):
        target = excess[rows[r]]
        for b in range(block_weights.size):
            start = b * outputs
            for i in range(outputs):
                packed = np.int32(sums[r, start + i])
                if packed & beyond_range == 0:
                    continue
                for j in range(digits):
                    over = ((packed >> np.int32(base_bits * j)) & digit_mask) - adc_max
                    if over > 0:
                        target[i] += block_weights[b] * cycle_weights[j] * over
