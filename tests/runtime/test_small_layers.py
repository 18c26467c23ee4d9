"""A small layer's quantize → product → dequantize as one step (`runtime/fusion.py` _small_layers,
`compiled_steps.small_layer_step`, `step_kernels.small_layer`), and the uint8 columns of an integer-GEMM layer's
im2col (`compiled_steps.code_columns_step`, `step_kernels.code_columns`): the same bits as the steps they stand for."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.xbar import im2col_taps_first, quantizer_constants
from rcc.runtime import compiled_steps
from rcc.runtime.compiled_steps import SMALL_LAYER_MACS, code_columns_step, small_layer_step
from rcc.runtime.fusion import pass_on
from rcc.runtime.machine import Machine
from rcc.runtime.step_kernels import dequantize_rows, levels
from tests.conftest import ROOT
from tests.runtime.test_compiled_steps import _identical, runs_equal_the_traced_one


def _layer(rows: int, depth: int, outputs: int, seed: int):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, depth)) * 3).astype(np.float32)
    x[0, :4] = [0.5, -0.5, 1.5, 1e9]   # rint's ties to even, and a value clipped to the range
    weights = rng.integers(-128, 128, (depth, outputs)).astype(np.float32)
    return x, weights, rng


@pytest.mark.parametrize("rows, depth, outputs", [(4, 64, 128), (1, 48, 12), (16, 32, 32), (3, 7, 5)])
@pytest.mark.parametrize("with_bias, with_addend, relu", [(False, False, False), (True, False, True),
                                                          (True, True, True), (False, True, False)])
def test_the_one_kernel_is_the_three_kernels_one_after_another(rows, depth, outputs, with_bias, with_addend,
                                                               relu) -> None:
    """Levels (8-bit signed: every partial sum below 2^24), their product summed in float32, the dequantize with
    its epilogue: bit for bit the levels kernel, numpy's float32 GEMM and the dequantize kernel, zero signs
    included."""
    x, weights, rng = _layer(rows, depth, outputs, seed=rows + depth)
    inverse, low, high = quantizer_constants(0.05, 8, True)
    scale = rng.standard_normal(outputs) * 1e-3
    bias = rng.standard_normal(outputs) if with_bias else np.zeros(0)
    addend = rng.standard_normal(outputs).astype(np.float32) if with_addend else np.zeros(0, np.float32)
    terms = (scale, bias, with_bias, addend, with_addend, relu)
    quantized = np.empty_like(x)
    levels(x.reshape(-1), inverse, low, high, quantized.reshape(-1))
    expected = np.empty((rows, outputs), np.float32)
    dequantize_rows(quantized @ weights, *terms, expected)
    from rcc.runtime.step_kernels import small_layer
    out = np.empty((rows, outputs), np.float32)
    small_layer(x, inverse, low, high, weights, *terms, out)
    assert _identical(out, expected)


def test_the_step_calls_the_kernel_up_to_its_size_and_the_steps_beyond() -> None:
    """`small_layer_step`: one kernel call for products of up to SMALL_LAYER_MACS multiply-accumulates, else its
    three steps in turn (which it calls for other operands too: a 3-d input); the same values either way."""
    calls = []

    def counted(name, step):
        def run(operands):
            calls.append(name)
            return step(operands)
        run.__dict__.update(step.__dict__)   # levels_constants, rows_terms
        return run
    depth, outputs = 64, 128
    x, weights, _ = _layer(SMALL_LAYER_MACS // (depth * outputs) + 1, depth, outputs, seed=3)
    inverse, low, high = quantizer_constants(0.05, 8, True)

    def quantize(operands):
        out = np.empty_like(operands[0])
        levels(operands[0].reshape(-1), inverse, low, high, out.reshape(-1))
        return [out]
    quantize.levels_constants = (inverse, low, high)
    terms = (np.full(outputs, 0.01), np.zeros(0), False, np.zeros(0, np.float32), False, True)

    def dequantize(operands):
        out = np.empty(operands[0].shape, np.float32)
        dequantize_rows(operands[0], *terms, out)
        return [out]
    dequantize.rows_terms = terms
    step = small_layer_step(weights, counted("quantize", quantize), counted("product", lambda ops: [ops[0] @ ops[1]]),
                            counted("dequantize", dequantize), [])
    small, large = x[:SMALL_LAYER_MACS // (depth * outputs)], x
    assert small.shape[0] * depth * outputs == SMALL_LAYER_MACS
    one = step([small, weights])[0]
    assert calls == []
    assert _identical(one, dequantize([quantize([small])[0] @ weights])[0])
    calls.clear()
    many = step([large, weights])[0]
    assert calls == ["quantize", "product", "dequantize"]
    assert _identical(many[:small.shape[0]], one)


@pytest.mark.parametrize("largest", [SMALL_LAYER_MACS, 1])
def test_mlp_runs_its_layers_as_three_steps_and_equals_the_traced_run(largest: int, monkeypatch) -> None:
    """mlp's 3 layers each one step (their quantizes and dequantizes pass on), in numpy and compiled (one kernel call
    each; with the kernel's size lowered, their three steps in turn): the traced run's outputs, bit for bit."""
    monkeypatch.setattr(compiled_steps, "SMALL_LAYER_MACS", largest)
    compiled = compile_model(ROOT / "models" / "mlp.onnx", precision="int")
    machine = Machine(compiled.program)
    single = machine.plan.single
    layers = [step for step in single if step.instruction.opcode == "mvm" and "layer_chain" in step.run.__qualname__]
    assert len(layers) == 3
    assert all(step.run is pass_on for step in single if step.instruction.opcode in ("quantize", "dequantize"))
    assert runs_equal_the_traced_one(machine, random_inputs(compiled.graph, 5))


@pytest.mark.parametrize("shape, kernel, strides, pads, dilations", [
    ((1, 16, 32, 32), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 5, 9, 11), (3, 2), (2, 1), (0, 1, 2, 0), (1, 2)),
    ((1, 64, 14, 14), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((3, 1, 7, 7), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    ((1, 8, 6, 6), (3, 3), (1, 1), (0, 0, 0, 0), (2, 2))])
@pytest.mark.parametrize("dtype, offset", [(np.float32, 0), (np.uint8, 0), (np.int32, 0), (np.float32, 128),
                                           (np.int32, 128)])
def test_uint8_columns_are_the_taps_first_im2col_of_the_codes(shape, kernel, strides, pads, dilations, dtype,
                                                               offset) -> None:
    """Any geometry (strides, dilations, uneven padding, several samples), float32 levels, uint8 codes or int32
    in [0, 255], or signed levels in [−128, 127] offset by 128: `im2col_taps_first` of the values (padding level 0)
    plus the offset, as uint8; also from a non-contiguous input."""
    low = -offset
    x = np.random.default_rng(sum(shape)).integers(low, low + 256, shape).astype(dtype)
    step = code_columns_step({"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations}, offset)
    columns = step([x])[0]
    expected = (im2col_taps_first(x.astype(np.int64), kernel, strides, pads, dilations) + offset).astype(np.uint8)
    assert columns.dtype == np.uint8 and np.array_equal(columns, expected)
    assert np.array_equal(step([np.asfortranarray(x)])[0], expected)
