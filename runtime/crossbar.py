"""The crossbar arrays of one `mvm` instruction: programmed conductance levels, bit-serial inputs, ADCs.

Integer mode, per array and per input bit-slice (`dac_bits` bits of the input at a time, `input_cycles`
of them): every column sums row_input × cell_level; the ADC converts that sum v and saturates:
ADC(v) = min(v, A) with A = 2^adc_bits − 1; shift-and-add merges the weight slices (2^(cell_bits·s))
and the input slices (2^(dac_bits·k)); the row tiles' partial sums and the sign arrays are merged
digitally. Signed inputs enter the arrays in offset binary (x + 2^(B−1), B = input_bits), signed
weights as a differential pair (|w⁺| and |w⁻| on two arrays) or with an offset (w + 2^(b−1) on one
array); the offsets are removed digitally with exact correction terms.

How the machine computes that, exactly and fast: since ADC(v) = v − max(v − A, 0), the shift-and-add
of the converted sums equals the shift-and-add of the raw sums, which is the exact integer product x·W
(the offsets' corrections make it so), minus the shift-and-add of the saturation excess max(v − A, 0).
So the layer's result is
    exact product (one float32 GEMM when every partial sum BLAS can form is an integer below 2^24: any
    such sum is at most Σ_i |x_i|·|w_ij| ≤ min(‖x‖₁·max|w|, ‖x‖₂·max_j ‖w_j‖₂), norms bounded with their
    float32 round-off; else float32 GEMMs over row chunks that each meet the bound, summed in float64,
    exact below 2^53: the same multiply-adds as one GEMM)
  − Σ over arrays, input slices and columns of sign · 2^(dac_bits·k) · 2^(cell_bits·s) · max(v − A, 0),
and the excess is computed only where it can be non-zero: for the (sign array, weight slice) column
blocks holding a column whose largest possible sum (2^dac_bits − 1)·Σ_rows level exceeds A, and for
(vector, array, input slice) triples whose active input total times the largest cell level exceeds A.
Per array, the column sums of both sign arrays' blocks are float32 matmuls of small integers, each sum
≤ P = the largest (2^dac_bits−1)·Σ_rows level ≤ xbar_rows·(2^dac_bits−1)·(2^cell_bits−1) < 2^24 (the target
refuses larger); consecutive input slices share one matmul as the digits of its inputs in base B (the power of
two above P), as many as keep every sum, P·Σ_j B^j, below 2^24, so exact (read_kernels.packed_input_slices:
three 1-bit slices a matmul for 128-row arrays of 2-bit cells with random weights); the excesses merge over
digits and blocks into the vectors' rows in one compiled pass (read_kernels.add_packed_excess). With a
lossless ADC nothing can exceed A and the result is the exact product. Tests compare this with a naive slice-by-slice simulation and with an int64 reference.

A batch's vectors arrive stacked ([N·P, K]); every vector's result depends on that vector alone.

Float mode: ideal analog arrays (an analog sum has no rounding): the product summed in float64 and rounded
once to float32, as the interpreter's matmul and conv round it, so the float machine differs from
onnxruntime by onnxruntime's own rounding.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.backends.mapping import CrossbarMapping, array_blocks, weight_levels

EXCESS_CHUNK_ELEMENTS = 1 << 22   # bound on the saturation's packed slices and column sums of one chunk (elements)
# The ideal arrays' saturation runs on both threads from this many column sums a slice (vectors × saturable columns)
# and this many vectors: with fewer, halves of a layer's vectors make BLAS calls too small (measured in turns in one
# process, 6-bit ADC, 2 BLAS threads, seconds a run: VGG-19 serially 24.7, 26.7, 21.9, on both threads 20.3, 24.2,
# 19.9; ResNet-50, whose layers past its first stage have at most 784 vectors, 4.5-5.3 either way, but 5.3-6.3
# with every layer split).
PARALLEL_EXCESS = 1 << 20
PARALLEL_VECTORS = 2048
DENSE_PACKED_ELEMENTS = 1 << 22   # a packed layer's blocks run as one dense GEMM up to this size (32 MiB float64)
_EXACT_FLOAT64 = 2.0 ** 53
# Inputs wider than this many bits take one float64 GEMM (`exact_values`) rather than float32 row chunks: at
# 16 bits the chunks' bound (‖x‖₂·‖w‖₂ < 2^24) holds a few dozen rows (a 16-bit ResNet-small's products, one
# thread: 12.4 ms a run in chunks, 1.7 ms in float64); at 8 bits one chunk or two hold the layer.
WIDE_INPUT_BITS = 12
EXACT_FLOAT32 = 2.0 ** 24  # float32 holds every integer below it
# OpenBLAS multiplies few rows by a large weight matrix [K, M] up to twice as fast as the transposed product Wᵀ · xᵀ
# from a row-major copy of Wᵀ (measured, one thread, ms, x · W against Wᵀ · xᵀ: K 4608, M 512: 4 rows 3.8 → 1.1, 49
# rows 6.0 → 4.0, 400 rows 22.7 → 20.6; K 1024, M 2048, 49 rows 5.6 → 3.4; K 25088, M 4096, 4 rows 165 → 83; equal
# or worse below 2^20 weights: K 2304, M 256, 49 rows 0.88 both; K 576, M 64, 196 rows 0.17 → 0.22). That copy is
# kept for the layers it serves, up to 2^23 weights a group (32 MiB: not VGG's classifier, whose copy would be 400).
FEW_ROWS = 512
LARGE_WEIGHTS = 1 << 20
LARGEST_COPIED_WEIGHTS = 1 << 23


def contiguous(indices: np.ndarray) -> slice | np.ndarray:
    """`indices` as a slice when they are a run of consecutive integers (a view, not a gather), else as they are."""
    if indices.size and indices[-1] - indices[0] + 1 == indices.size and np.all(np.diff(indices) == 1):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def grouped_rows(x: np.ndarray, groups: int) -> np.ndarray:
    """x [P, G·K] as [G, P, K]."""
    return x.reshape(x.shape[0], groups, -1).transpose(1, 0, 2)


def ungrouped(out: np.ndarray) -> np.ndarray:
    """[G, P, M] as [P, G·M]."""
    return out.transpose(1, 0, 2).reshape(out.shape[1], -1)


def _roundoff_factor(terms: int) -> float:
    """1/(1 − γ) with γ = n·u/(1 − n·u), n = terms + 1, u = 2^−24: a float32 sum s' of `terms` nonnegative
    terms, each itself rounded once, satisfies s ≤ s'·factor whatever the order of addition (Higham,
    Accuracy and Stability of Numerical Algorithms, §3.1). Infinite when the bound does not hold."""
    nu = (terms + 1) * 2.0 ** -24
    return math.inf if nu >= 0.5 else 1.0 / (1.0 - nu / (1.0 - nu))


def _largest_column_norm(matrix: np.ndarray) -> float:
    """An upper bound on max over groups and columns of ‖w_j‖₂ for float32 weights [G, K, M]."""
    squares = np.einsum("gkm,gkm->gm", matrix, matrix).max(initial=0)
    return math.sqrt(float(squares) * _roundoff_factor(matrix.shape[1]))


def _partial_sum_bound(rows: np.ndarray, nonnegative: bool, weight_max: float, column_norm: float) -> float:
    """An upper bound on |Σ_{i∈S} x_pi·w_ij| over every vector p, column j and subset S of the rows [G, P, k],
    so on every partial sum a GEMM can form in any order: Σ_i |x_pi|·|w_ij| is at most ‖x_p‖₁·max|w|
    (Hölder) and ‖x_p‖₂·‖w_j‖₂ (Cauchy–Schwarz); the norms, summed in float32, are inflated by their
    round-off factor, and the result by 2^−20 for the final roundings. The second is skipped when the
    first already proves a GEMM exact (below 2^24)."""
    magnitudes = rows if nonnegative else np.abs(rows)
    factor = _roundoff_factor(rows.shape[2])
    l1 = float(np.matmul(magnitudes, np.ones(rows.shape[2], dtype=np.float32)).max(initial=0)) * factor
    if l1 * weight_max * (1.0 + 2.0 ** -20) < EXACT_FLOAT32:   # enough to prove one GEMM exact
        return l1 * weight_max * (1.0 + 2.0 ** -20)
    l2 = math.sqrt(float(np.einsum("gpk,gpk->gp", rows, rows).max(initial=0)) * factor)
    return min(l1 * weight_max, l2 * column_norm) * (1.0 + 2.0 ** -20)


def _value_range(x: np.ndarray, x_range: tuple[int, int] | None) -> tuple[int, int]:
    """(the lowest of x's values and 0, the largest magnitude among them): from `x_range` when it is
    given, else from the data."""
    low, high = x_range if x_range is not None else (int(x.min(initial=0)), int(x.max(initial=0)))
    low = min(low, 0)
    return low, max(abs(low), abs(high))


class CrossbarGroup:
    """The arrays holding one layer's weights [G, K, M], and their execution. A packed layer comes with
    `row_map`/`col_map`: each array block's input rows (gathered from x) and outputs (scattered back)."""

    def __init__(self, weights: np.ndarray, attrs: dict, row_map: np.ndarray | None = None,
                 col_map: np.ndarray | None = None) -> None:
        self.weights = weights
        self.attrs = attrs
        self.integer = weights.dtype.kind == "i"
        self.mapping = CrossbarMapping.of(attrs, weights.shape)
        self.blocks = None if row_map is None else array_blocks(weights.shape, attrs, row_map, col_map)
        self.adc_max = self.mapping.adc_max
        self.adc_lossless = self.mapping.adc_lossless
        # programmed once: integers in float32 (exact), float weights widened to float64 (the analog sum's)
        self.matrix = weights.astype(np.float32 if self.integer else np.float64, copy=False)
        self.weight_max = float(max(abs(int(weights.max(initial=0))), abs(int(weights.min(initial=0))))) \
            if self.integer else 0.0
        self._column_norm = _largest_column_norm(self.matrix) if self.integer else 0.0
        self._tiles: list[SaturableTile] | None = None   # the sliced path's cells, built on its first run
        self._block_weights: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None  # packed: built on first run
        self._packed_dense: tuple[np.ndarray, np.ndarray, float] | None = None   # packed, integer: the blocks as one matrix
        self._reordered_matrix: tuple[np.ndarray, np.ndarray] | None = None   # (row order, matrix), `exact_values`
        self._weight_rows: tuple[np.ndarray, np.ndarray] | None = None   # (matrix, its Wᵀ), `_matrix_product`
        self._wide_weights: tuple[np.ndarray, np.ndarray] | None = None   # (matrix, it in float64), `exact_values`

    def tiles(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(group, rows, outputs) of every array (pair): the packed blocks, or the dense row tiles (a dense
        row tile's column tiles are taken together: a column's sum never crosses arrays)."""
        if self.blocks is not None:
            return self.blocks
        g = self.mapping
        return [(group, np.arange(start, min(start + g.xbar_rows, g.rows)), np.arange(g.outputs))
                for group in range(g.groups) for start in range(0, g.rows, g.xbar_rows)]

    # ----- execution
    def run(self, x: np.ndarray, sliced: bool | None = None, x_range: tuple[int, int] | None = None) -> np.ndarray:
        """The layer's accumulators [P, G·M]: int64 in integer mode, float32 in float mode.
        `sliced` forces (True) or skips (False) the saturation analysis; by default it runs when the
        ADC is not lossless. `x_range` (low, high), when the caller knows it (a quantized input), bounds
        x's values and spares the exactness test a pass over x."""
        if not self.integer:   # ideal analog sums, rounded as IEEE does (±inf beyond float32), as onnxruntime
            with np.errstate(over="ignore", invalid="ignore"):
                if self.blocks is not None:
                    return self._block_product(x, x_range)
                return ungrouped(np.matmul(grouped_rows(x.astype(np.float64), self.mapping.groups), self.matrix)
                                 ).astype(np.float32)
        if self.blocks is not None:
            exact = self._block_product(x, x_range)
        else:
            exact = self.exact_values(x, x_range).astype(np.int64, copy=False)
        if (not self.adc_lossless) if sliced is None else sliced:
            exact -= self._saturation_excess(x)
        return exact

    def _block_product(self, x: np.ndarray, x_range: tuple[int, int] | None) -> np.ndarray:
        """Σ over blocks of x[:, rows] · W[rows, outputs], scattered onto the outputs: exact per block in
        float32 when rows·max|x|·max|w| < 2^24 (else float64), summed in float64."""
        g = self.mapping
        x_max = float(_value_range(x, x_range)[1]) if self.integer else 0.0
        self._gather_blocks()
        dense_product = self._dense_sum_product(x_max)
        if dense_product is not None:
            return dense_product(x).astype(np.int64)
        exact32 = g.xbar_rows * x_max * self.weight_max < EXACT_FLOAT32
        dtype = np.float32 if self.integer and exact32 else np.float64
        total = np.zeros((x.shape[0], g.groups * g.outputs), dtype=np.float64)
        inputs = x.astype(dtype)
        for rows, cols, block in self._block_weights:
            total[:, cols] += np.matmul(inputs[:, rows], block.astype(dtype, copy=False))
        return total.astype(np.int64) if self.integer else total.astype(np.float32)

    def _gather_blocks(self) -> None:
        """A packed layer's blocks' cells, gathered at first use (they are programmed once), and in integer mode
        their dense sum (`_blocks_as_dense`)."""
        if self._block_weights is None:
            g = self.mapping
            self._block_weights = [(group * g.rows + rows, group * g.outputs + cols,
                                    self.matrix[group][np.ix_(rows, cols)]) for group, rows, cols in self.blocks]
            self._packed_dense = self._blocks_as_dense() if self.integer else None

    def _blocks_as_dense(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Integer mode: the packed blocks' cells added into one [G·K, G·M] matrix and its largest magnitude, when
        it holds at most DENSE_PACKED_ELEMENTS (float64, and in float32); x · it is Σ over blocks of x[:, rows] ·
        block, scattered (the same integers when the GEMM is exact). None for a larger one."""
        g = self.mapping
        if g.groups * g.rows * g.groups * g.outputs > DENSE_PACKED_ELEMENTS:
            return None
        dense = np.zeros((g.groups * g.rows, g.groups * g.outputs), dtype=np.float64)
        for rows, cols, block in self._block_weights:
            np.add.at(dense, np.ix_(rows, cols), block)
        return dense, dense.astype(np.float32), float(np.abs(dense).max(initial=0))

    def exact_values(self, x: np.ndarray, x_range: tuple[int, int] | None = None,
                     row_order: np.ndarray | None = None) -> np.ndarray:
        """x · W exactly for integer x (int32, or integer values held in float32), as float32, float64 or int64
        integers: one float32 GEMM when every partial sum BLAS can form is an integer below 2^24
        (`_partial_sum_bound`); else float32 GEMMs over row chunks that each meet that bound, summed in
        float64 (the same multiply-adds as one GEMM), or for inputs of WIDE_INPUT_BITS bits or more one float64
        GEMM; float64 or int64 when a single product needs it.
        `row_order` (one group) gives x's columns as rows of W in another order (the same sums, so the
        same integers); its reordered weights are kept."""
        g = self.mapping
        x_low, x_max = _value_range(x, x_range)
        term_max = float(x_max) * self.weight_max
        if g.rows * term_max >= _EXACT_FLOAT64 or term_max >= EXACT_FLOAT32:
            weights = self.weights if row_order is None else self.weights[:, row_order]
            if g.rows * term_max >= _EXACT_FLOAT64:
                return ungrouped(np.matmul(grouped_rows(x.astype(np.int64), g.groups), weights.astype(np.int64)))
            # a single product needs more than float32's 24 bits
            return ungrouped(np.matmul(grouped_rows(x.astype(np.float64), g.groups), weights.astype(np.float64)))
        matrix = self.matrix if row_order is None else self._reordered(row_order)
        if g.rows * term_max >= EXACT_FLOAT32 and x_max >= 2 ** WIDE_INPUT_BITS:   # exact below 2^53 (above)
            if self._wide_weights is None or self._wide_weights[0] is not matrix:   # converted once, not per call
                self._wide_weights = (matrix, matrix.astype(np.float64))
            return ungrouped(np.matmul(grouped_rows(x.astype(np.float64), g.groups), self._wide_weights[1]))
        rows = grouped_rows(x.astype(np.float32, copy=False), g.groups)
        if g.rows * term_max < EXACT_FLOAT32:
            return ungrouped(self._matrix_product(rows, matrix))
        return ungrouped(self._chunked_product(rows, matrix, x_low >= 0))

    def exact_product(self, x_range: tuple[int, int], row_order: np.ndarray | None = None):
        """`exact_values(x, x_range, row_order)` prepared for inputs known to lie in `x_range`: when that range
        proves one float32 GEMM exact (rows·max|x|·max|w| < 2^24), the GEMM alone (the same float32 product,
        without re-deciding per call); else `exact_values`. A packed layer: `_packed_exact_product`."""
        g = self.mapping
        if self.blocks is not None:   # its blocks' rows are the layer's: no row order (fusion asks for none)
            assert row_order is None, "a packed layer's product takes its rows in the layer's order"
            return self._packed_exact_product(x_range)
        if not self.single_gemm_exact(x_range):
            return lambda x: self.exact_values(x, x_range, row_order)
        matrix = self.matrix_in_order(row_order)
        if LARGE_WEIGHTS <= matrix[0].size <= LARGEST_COPIED_WEIGHTS:
            return lambda x: ungrouped(self._matrix_product(grouped_rows(x.astype(np.float32, copy=False), g.groups),
                                                            matrix))
        if g.groups == 1:
            weights = matrix[0]
            return lambda x: np.matmul(x.astype(np.float32, copy=False), weights)
        return lambda x: ungrouped(np.matmul(grouped_rows(x.astype(np.float32, copy=False), g.groups), matrix))

    def _matrix_product(self, rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """rows [G, P, K] (float32) · `matrix` [G, K, M] (the layer's float32 weights, or those reordered), one GEMM a
        group: for few rows and large weights (at most FEW_ROWS; LARGE_WEIGHTS to LARGEST_COPIED_WEIGHTS a group) as
        the transposed view of Wᵀ · rowsᵀ (the same products and sums, so the same integers where the caller proved
        the GEMM exact); that Wᵀ is kept (for the one matrix a layer uses)."""
        if not 1 < rows.shape[1] <= FEW_ROWS or not LARGE_WEIGHTS <= matrix[0].size <= LARGEST_COPIED_WEIGHTS:
            return np.matmul(rows, matrix)
        if self._weight_rows is None or self._weight_rows[0] is not matrix:
            self._weight_rows = (matrix, np.ascontiguousarray(matrix.transpose(0, 2, 1)))
        return np.matmul(self._weight_rows[1], rows.transpose(0, 2, 1)).transpose(0, 2, 1)

    def _packed_exact_product(self, x_range: tuple[int, int]):
        """A packed integer layer's `exact_product`: the same decision `_block_product` takes per call, taken once.
        For x in `x_range`, x · the blocks' dense sum is one float32 GEMM when rows·max|x|·max|w| < 2^24, one float64
        GEMM below 2^53 (every partial sum an exact integer: the blocks' sum); else the blocks one by one."""
        self._gather_blocks()
        dense_product = self._dense_sum_product(float(_value_range(None, x_range)[1]))
        return dense_product or (lambda x: self._block_product(x, x_range))

    def _dense_sum_product(self, x_max: float):
        """x · the packed blocks' dense sum for integer x up to `x_max` in magnitude, when that GEMM is exact (every
        partial sum an integer below 2^24 in float32, else below 2^53 in float64: the blocks' sum); else None."""
        if self._packed_dense is None:
            return None
        dense, dense32, dense_max = self._packed_dense
        bound = dense.shape[0] * x_max * dense_max
        if bound < EXACT_FLOAT32:
            return lambda x: np.matmul(x.astype(np.float32, copy=False), dense32)
        if bound < _EXACT_FLOAT64:
            return lambda x: np.matmul(x.astype(np.float64, copy=False), dense)
        return None

    def single_gemm_exact(self, x_range: tuple[int, int]) -> bool:
        """Whether, for every x in `x_range`, x · W is one exact float32 GEMM of the layer's weight matrix (a dense
        layer): rows·max|x|·max|w| < 2^24 bounds every partial sum, in any order and over any subset of the rows."""
        return self.blocks is None and \
            self.mapping.rows * float(_value_range(None, x_range)[1]) * self.weight_max < EXACT_FLOAT32

    def matrix_in_order(self, row_order: np.ndarray | None) -> np.ndarray:
        """The weights [G, K, M] (float32 for an integer layer), their rows in `row_order` if given."""
        return self.matrix if row_order is None else self._reordered(row_order)

    def _reordered(self, row_order: np.ndarray) -> np.ndarray:
        """The float32 weights with their rows in `row_order` (kept: the first order asked for)."""
        if self._reordered_matrix is None or (self._reordered_matrix[0] is not row_order and
                                              not np.array_equal(self._reordered_matrix[0], row_order)):
            self._reordered_matrix = (row_order, np.ascontiguousarray(self.matrix[:, row_order]))
        return self._reordered_matrix[1]

    def exact_without_saturation(self, sliced: bool | None = None) -> bool:
        """Whether `run(x, sliced)` is `exact_product`'s values (as integers): an ideal integer layer, dense or
        packed, with no ADC saturation to subtract."""
        saturates = (not self.adc_lossless) if sliced is None else sliced
        return type(self) is CrossbarGroup and self.integer and not saturates

    def _chunked_product(self, rows: np.ndarray, matrix: np.ndarray, nonnegative: bool) -> np.ndarray:
        """rows [G, P, k] · matrix [G, k, M] (rows of the layer's weights) exactly: one float32 GEMM when its
        partial sums are bounded below 2^24, else the sum (in float64, exact below 2^53) of the products of
        row chunks, each bounded in turn (the layer's max|w| and column norms bound any chunk's): chunks of
        at most 2^24 / (max|x|·max|w|) rows need no check. The recursion ends: a single row's products are
        below 2^24 (the caller checked)."""
        k = rows.shape[2]
        bound = _partial_sum_bound(rows, nonnegative, self.weight_max, self._column_norm)
        if bound < EXACT_FLOAT32 or k == 1:
            return self._matrix_product(rows, matrix)
        term_max = float(np.abs(rows).max(initial=0)) * self.weight_max
        safe_rows = int((EXACT_FLOAT32 - 1) // term_max)     # ≥ 1: the caller checked one product
        step = max(safe_rows, math.ceil(k / math.ceil(bound / EXACT_FLOAT32)))
        total = np.zeros((rows.shape[0], rows.shape[1], matrix.shape[2]), dtype=np.float64)
        for start in range(0, k, step):
            chunk, weights = rows[:, :, start:start + step], matrix[:, start:start + step]
            total += np.matmul(chunk, weights) if step <= safe_rows else \
                self._chunked_product(chunk, weights, nonnegative)
        return total

    def _saturation_excess(self, x: np.ndarray) -> np.ndarray:
        """Σ sign · 2^(dac·k) · 2^(cell·s) · max(v − A, 0) per vector and output [P, G·M], over arrays. Per array
        (pair) the column sums of a few input slices k are one float32 matmul of the slices' bits [P, rows], packed
        as digits (`SaturableTile`), with both sign arrays' saturable columns side by side; vectors whose active
        inputs cannot reach A in any of those slices are skipped. A layer of PARALLEL_EXCESS column sums a slice and
        PARALLEL_VECTORS vectors or more reads the two halves of its vectors on both threads (`threads.in_parallel`),
        each into its own rows; each vector's terms are added in the same order either way, integers in float64."""
        from rcc.runtime.threads import in_parallel

        g, vectors = self.mapping, x.shape[0]
        excess = np.zeros((vectors, g.groups * g.outputs), dtype=np.float64)
        tiles = self._saturable_tiles()
        if vectors < PARALLEL_VECTORS or vectors * sum(tile.levels.shape[1] for tile in tiles) < PARALLEL_EXCESS:
            self._excess_rows(x, tiles, excess)
        else:
            half = -(-vectors // 2)
            in_parallel(self._excess_rows, [(x[:half], tiles, excess[:half]), (x[half:], tiles, excess[half:])])
        return np.rint(excess).astype(np.int64)

    def _excess_rows(self, x: np.ndarray, tiles: list[SaturableTile], excess: np.ndarray) -> None:
        """`_saturation_excess`'s terms of the vectors x, added into their rows of `excess`, array by array: per
        chunk of vectors, the bit-slices of each tile's reads (`per_read` input cycles packed in one float32) for
        the vectors that can saturate in them, each read's column sums one GEMM."""
        from rcc.runtime.read_kernels import add_packed_excess, packed_input_slices   # numba's import takes most
        from rcc.runtime.threads import work_buffer                                  # of a second: sliced runs only

        g = self.mapping
        for tile in tiles:
            columns = tile.group * g.rows + tile.rows
            reads = len(tile.read_weights)
            tile_excess = np.zeros((x.shape[0], tile.cols.size), dtype=np.float64)
            step = max(1, EXCESS_CHUNK_ELEMENTS // max(reads * columns.size, tile.levels.shape[1]))
            for start in range(0, x.shape[0], step):
                chunk = x[start:start + step]
                packed = work_buffer("packed slices", (reads, chunk.shape[0], columns.size))
                chosen = np.empty((reads, chunk.shape[0]), dtype=np.int64)
                counts = np.empty(reads, dtype=np.int64)
                packed_input_slices(chunk, columns, g.input_offset, g.dac_bits, g.input_cycles, tile.per_read,
                                    tile.base, tile.largest_level, self.adc_max, packed, chosen, counts)
                for read in range(reads):
                    kept = int(counts[read])
                    if kept:
                        sums = np.matmul(packed[read, :kept], tile.levels,     # exact: integers below 2^24
                                         out=work_buffer("column sums", (kept, tile.levels.shape[1])))
                        add_packed_excess(sums, self.adc_max, tile.block_weights, tile.read_weights[read],
                                          tile.base_bits, chosen[read, :kept] + start, tile_excess)
            excess[:, contiguous(tile.group * g.outputs + tile.cols)] += tile_excess

    def _saturable_tiles(self) -> list[SaturableTile]:
        """Every array (pair)'s saturable columns, built when the sliced path first runs and kept (they are
        the programmed cells)."""
        if self._tiles is None:
            g = self.mapping
            self._tiles = []
            for group, rows, cols in self.tiles():
                levels = weight_levels(self.weights[group][np.ix_(rows, cols)], g.weight_bits, g.cell_bits,
                                       g.weight_slices, g.encoding)     # per sign array [S, rows, outputs]
                tile = SaturableTile.of(group, rows, cols, levels, g, self.adc_max)
                if tile is not None:
                    self._tiles.append(tile)
        return self._tiles


class SaturableTile:
    """One array (pair)'s column blocks (one per sign array and weight slice) holding a column whose sum can
    exceed the ADC's range A: their cell levels [rows, blocks·outputs] (float32; column b·outputs + i), and
    the shift-and-add weight of each block, sign · 2^(cell·s). A block's other columns never exceed A, so
    their excess is zero: computing it keeps the merge a plain sum over blocks.
    A read packs `per_read` consecutive input cycles into one GEMM, cycle j's bit-slice times B^j (B = `base`, the
    power of two above the largest sum P any column can form in one cycle): the column sums are then
    Σ_j B^j · sum_j, digits in base B, every partial sum at most P · Σ_j B^j, kept below 2^24 (exact in float32).
    `read_weights`: per read, its cycles' shift-and-add weights 2^(dac·k)."""

    def __init__(self, group: int, rows: np.ndarray, cols: np.ndarray, levels: np.ndarray,
                 block_weights: np.ndarray, peak: int, mapping: CrossbarMapping) -> None:
        self.group, self.rows, self.cols = group, rows, cols
        self.levels, self.block_weights = levels, block_weights
        self.largest_level = int(levels.max(initial=0))
        self.base_bits = peak.bit_length()
        self.base = 1 << self.base_bits
        cycles = mapping.input_cycles
        self.per_read = 1
        while self.per_read < cycles and peak * (self.base ** (self.per_read + 1) - 1) // (self.base - 1) \
                < EXACT_FLOAT32:
            self.per_read += 1
        self.read_weights = [2.0 ** (mapping.dac_bits * np.arange(first, min(first + self.per_read, cycles)))
                             for first in range(0, cycles, self.per_read)]

    @classmethod
    def of(cls, group: int, rows: np.ndarray, cols: np.ndarray, levels: list[np.ndarray], mapping: CrossbarMapping,
           adc_max: int) -> SaturableTile | None:
        """The tile's saturable blocks, from the cell levels of each sign array [S, rows, outputs]; None when
        no column can exceed A."""
        blocks = np.concatenate(levels)                                       # [signs·S, rows, outputs]
        peak = ((1 << mapping.dac_bits) - 1) * blocks.sum(axis=1, dtype=np.int64)   # [signs·S, outputs]
        kept = np.flatnonzero((peak > adc_max).any(axis=1))
        if kept.size == 0:
            return None
        slice_weights = 2.0 ** (mapping.cell_bits * np.arange(mapping.weight_slices))
        block_weights = np.concatenate([sign * slice_weights for sign in (1.0, -1.0)[:len(levels)]])[kept]
        cells = blocks[kept].transpose(1, 0, 2).reshape(rows.size, -1).astype(np.float32)
        return cls(group, rows, cols, cells, block_weights, int(peak[kept].max()), mapping)
