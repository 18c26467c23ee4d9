"""Lowering of com.microsoft DynamicQuantizeLSTM (onnxruntime's `quantize_dynamic` of an LSTM): an LSTM whose W
[D, input, 4H] and R [D, H, 4H] are int8 or uint8 with scales and zero points per direction or per gate column
(inputs 8–11), unrolled by `rules_recurrent.py` as LSTM is.

Each product is onnxruntime's: the float operand (the whole input sequence for W, each step's hidden state for R)
is quantized at run time as DynamicQuantizeLinear quantizes (`rules_quant_dynamic.dynamically_quantized`), the
integer product (exact, crossbars) is scaled by float32(a_scale · w_scale) per column, and the recurrent product is
added to the input projection before the peepholes and biases, as onnxruntime accumulates its GEMM into it. The
input projection's range spans the steps up to the longest sequence (the rows onnxruntime projects); the
recurrent product reads the previous step's output row when the node writes Y (zeros past a sequence's end).

onnxruntime (1.32) quantizes each thread's share of the batch rows on its own when it splits the batch (more than
4 rows, or 2 or more with a hidden size up to 256), so its result depends on its thread count; rcc computes what
one thread computes (the whole batch's range), and `--verify` runs the reference on one thread for such models.
Weight zero points must be zero, as onnxruntime requires.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import MS_DOMAIN, rule
from rcc.compiler.frontend.rules_quant_dynamic import dynamically_quantized
from rcc.compiler.frontend.rules_recurrent import Recurrence, lower_recurrent
from rcc.ir.core import Value

_PARAMETERS = {"W": (8, 9), "R": (10, 11)}   # matrix → (scale input, zero point input)


class QuantizedWeights:
    """DynamicQuantizeLSTM's int8/uint8 W and R, and the scaled integer products that read them."""

    kind = "LSTM"

    def __init__(self, ctx: LowerContext) -> None:
        self.ctx = ctx
        self.constants: dict[str, tuple[Value, Value, Value]] = {}   # suffix → (weights, zero point, scale)

    def matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """W and R as LSTM holds them ([D, 4H, input], [D, 4H, H]), still integers."""
        ctx, matrices = self.ctx, []
        for what, index in (("W", 1), ("R", 2)):
            array = ctx.constant(index, what)
            if array.dtype not in (np.int8, np.uint8) or array.ndim != 3:
                raise ctx.error(f"{what} must be a 3-D int8 or uint8 constant, got {array.dtype}{list(array.shape)}")
            matrices.append(np.transpose(array, (0, 2, 1)))
        return matrices[0], matrices[1]

    def _parameters(self, rec: Recurrence, matrix: str, direction: int, columns: int, dtype: np.dtype
                    ) -> tuple[np.ndarray, np.ndarray]:
        """One direction's scale (float32) and zero point (the weights' dtype): one value, or one per column."""
        scale_index, zero_index = _PARAMETERS[matrix]
        scale = self.ctx.constant(scale_index, f"{matrix}_scale")
        zero = self.ctx.optional_constant(zero_index, f"{matrix}_zero_point")
        zero = np.zeros(scale.shape, dtype) if zero is None else zero
        directions = rec.directions
        if scale.dtype != np.float32 or scale.shape not in ((directions,), (directions, columns)) \
                or zero.shape != scale.shape or zero.dtype != dtype:
            raise self.ctx.error(f"{matrix}_scale {scale.dtype}{list(scale.shape)} and {matrix}_zero_point "
                                 f"{zero.dtype}{list(zero.shape)} must be float32 and {np.dtype(dtype)} of shape "
                                 f"[{directions}] or [{directions}, {columns}]")
        if np.any(zero != 0):
            raise self.ctx.error(f"{matrix}_zero_point must be zero (onnxruntime refuses others), got "
                                 f"{zero.reshape(-1)[:4].tolist()}")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise self.ctx.error(f"{matrix}_scale must be positive and finite, got {scale.reshape(-1)[:4].tolist()}")
        return scale[direction], zero[direction]

    def _range(self, rec: Recurrence, h: Value, suffix: str) -> Value | None:
        """The rows whose range quantizes the input projection: onnxruntime projects only the steps up to the
        longest sequence (a reverse direction's reversed steps are the same rows); None for all of them."""
        if suffix[0] != "W" or rec.lengths is None or rec.lengths.max() == rec.steps:
            return None
        rows = int(rec.lengths.max()) * rec.batch
        return rec.op("nn.slice", [h], {"starts": (0, 0), "steps": (1, 1), "sizes": (rows, h.type.shape[1])},
                      f"{suffix}.range")

    def product(self, rec: Recurrence, h: Value, suffix: str) -> Value:
        """float32(integer product of h's run-time codes and the matrix named by `suffix`) · (a_scale · w_scale)."""
        if suffix not in self.constants:
            matrix, direction = suffix[0], int(suffix[1:])
            weights = (rec.w if matrix == "W" else rec.r)[direction].T   # [input or H, 4H]
            scale, zero = self._parameters(rec, matrix, direction, weights.shape[1], weights.dtype)
            builder = self.ctx.builder
            self.constants[suffix] = (builder.constant(f"{rec.name}.{suffix}.q", np.ascontiguousarray(weights)),
                                      builder.constant(f"{rec.name}.{suffix}.zero", zero),
                                      builder.constant(f"{rec.name}.{suffix}.scale", scale))
        weights, zero, scale = self.constants[suffix]
        codes, h_scale, h_zero = dynamically_quantized(self.ctx, h, self._range(rec, h, suffix))
        acc = rec.op("nn.matmul_integer", [codes, weights, h_zero, zero], suffix=f"{suffix}.acc")
        multiplier = rec.op("nn.mul", [h_scale, scale], suffix=f"{suffix}.scales")
        return rec.op("nn.mul", [rec.op("nn.cast", [acc], {"to": "f32"}, f"{suffix}.f32"), multiplier], suffix=suffix)


@rule("DynamicQuantizeLSTM", domain=MS_DOMAIN)
def lower_dynamic_quantize_lstm(ctx: LowerContext) -> None:
    if ctx.attr("layout") is not None:
        raise ctx.error("DynamicQuantizeLSTM has no layout attribute (onnxruntime refuses the model)")
    lower_recurrent(ctx, QuantizedWeights(ctx))
