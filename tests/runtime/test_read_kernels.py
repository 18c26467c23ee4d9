"""The compiled read loops (rcc.runtime.read_kernels) against numpy's formulation of the same arithmetic, bit for
bit: ties, values below zero and above the ADC's range, with and without read noise, float32 and float64 sums."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.runtime.read_kernels import input_slices, read_out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("noisy", [False, True])
def test_read_out_is_numpys_noise_rint_clip_and_shift_add(dtype, noisy):
    rng = np.random.default_rng(5)
    vectors, cycles, columns, adc_max = 9, 8, 37, np.float32(63)
    analog = rng.uniform(-3, 70, size=(vectors * cycles, columns)).astype(np.float32)
    analog[::3, ::2] = np.floor(analog[::3, ::2]) + 0.5           # exact ties: round half to even
    normals = rng.standard_normal(analog.shape).astype(np.float32) if noisy else np.zeros((0, 0), np.float32)
    spread = rng.uniform(0, 2, size=analog.shape[0]).astype(np.float32) if noisy else np.zeros(0, np.float32)
    weights = (2.0 ** np.arange(cycles)).astype(dtype)
    merged = np.full((vectors, columns), np.nan, dtype=dtype)
    read_out(analog, normals, spread, adc_max, weights, merged)
    noisy_analog = analog + normals * spread[:, None] if noisy else analog
    codes = np.clip(np.rint(noisy_analog), 0, adc_max)
    expected = np.matmul(weights, codes.reshape(vectors, cycles, columns).astype(dtype))
    assert np.array_equal(merged, expected)


@pytest.mark.parametrize("dac_bits, dtype", [(1, np.uint8), (2, np.uint8), (1, np.uint16), (3, np.uint16)])
def test_input_slices_are_the_shifted_masked_inputs_and_their_spread(dac_bits, dtype):
    rng = np.random.default_rng(2)
    input_bits = 8 if dtype == np.uint8 else 12
    cycles = -(-input_bits // dac_bits)
    chunk = rng.integers(0, 2 ** input_bits, size=(6, 21)).astype(dtype)
    bits = np.full((6 * cycles, 22), 7.0, dtype=np.float32)                 # a last column left untouched
    spread = np.empty(6 * cycles, dtype=np.float32)
    input_slices(chunk, dac_bits, cycles, bits, spread, np.float32(0.3))
    shifts = dac_bits * np.arange(cycles)
    expected = ((chunk[:, None, :].astype(np.int64) >> shifts[None, :, None]) & (2 ** dac_bits - 1)).reshape(-1, 21)
    assert np.array_equal(bits[:, :21], expected) and np.all(bits[:, 21] == 7.0)
    squares = np.einsum("ij,ij->i", expected.astype(np.float32), expected.astype(np.float32))
    assert np.array_equal(spread, np.sqrt(squares) * np.float32(0.3))
