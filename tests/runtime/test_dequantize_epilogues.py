"""A dequantize's epilogue (`runtime/fusion.py` `_dequantize_epilogues`): the add of a per-channel constant and a
relu, done by the dequantize step (in its compiled form, within its kernel call) while the add and relu pass its
values on; the same bits as the steps one after another, and taken only where nothing else reads what it skips."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.nn_elementwise import add, relu
from rcc.ir.ops.xbar import channels_first_dequantizer, dequantize_terms, dequantizer
from rcc.runtime.compiled_steps import dequantize_step
from rcc.runtime.fusion import _channel_values, pass_on
from rcc.runtime.machine import Machine
from tests.conftest import ROOT
from tests.runtime.test_compiled_steps import _identical, runs_equal_the_traced_one


def _accumulators(dtype: type, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(11)
    acc = rng.integers(-2 ** 23, 2 ** 23, shape).astype(dtype)
    acc[:, 0] = 0   # with a negative scale: −0, which relu keeps
    acc[0, :3] = [2 ** 23 - 1, -(2 ** 23), 1]
    return acc


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("with_addend, with_relu", [(True, False), (False, True), (True, True)])
def test_a_compiled_epilogue_is_the_steps_one_after_another(dtype, with_bias: bool, with_addend: bool,
                                                            with_relu: bool) -> None:
    """Rows and channels first; scales of both signs, one infinite (0 · inf: NaN), addends of both signs with −0,
    0 and values that cancel the dequantized ones: bit for bit, NaN payloads and zero signs included."""
    rng = np.random.default_rng(5)
    acc = _accumulators(dtype, (2 * 36, 12))
    w_scale = (rng.standard_normal(12) * 0.05).astype(np.float32)
    w_scale[0], w_scale[1] = -0.03, np.inf
    bias = rng.standard_normal(12).astype(np.float32) if with_bias else None
    addend = rng.standard_normal(12).astype(np.float32) * 3
    addend[:3] = [-0.0, 0.0, 1e30]

    def then(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if with_addend:
            values = add(values, addend.reshape(shape))
        return relu(values) if with_relu else values
    terms = dequantize_terms(w_scale, bias, 0.0173)
    epilogue = (addend if with_addend else None, with_relu)
    expected = then(dequantizer(w_scale, bias, 0.0173)(acc), (12,))
    assert _identical(dequantize_step(*terms, None, None, *epilogue)([acc])[0], expected)
    first = then(channels_first_dequantizer(w_scale, bias, 0.0173, (2, 6, 6, 12))(acc), (1, 12, 1, 1))
    assert _identical(dequantize_step(*terms, None, (2, 6, 6, 12), *epilogue)([acc])[0], first)


@pytest.mark.parametrize("constant, shape, axis, expected", [
    (np.arange(4, dtype=np.float32), (3, 4), -1, [0, 1, 2, 3]),
    (np.arange(4, dtype=np.float32).reshape(1, 4), (3, 4), -1, [0, 1, 2, 3]),
    (np.float32([2.5]), (3, 4), -1, [2.5] * 4),
    (np.arange(4, dtype=np.float32).reshape(4, 1, 1), (2, 4, 5, 5), 1, [0, 1, 2, 3]),
    (np.arange(3, dtype=np.float32).reshape(3, 1), (3, 4), -1, None),             # varies along the rows
    (np.arange(5, dtype=np.float32), (2, 4, 5, 5), 1, None),                      # along the width
    (np.arange(4, dtype=np.float64), (3, 4), -1, None),                           # not float32
    (np.float32([1, np.nan, 2, 3]), (3, 4), -1, None),                            # not finite
    (np.ones((2, 3, 4), np.float32), (3, 4), -1, None),                           # broadcasts x up
])
def test_an_epilogue_takes_a_finite_float32_constant_per_channel(constant, shape, axis, expected) -> None:
    values = _channel_values(constant, shape, axis)
    assert (values is None) if expected is None else \
        (values.dtype == np.float32 and np.array_equal(values, np.float32(expected)))


@pytest.mark.parametrize("model, fused", [("mlp", 5), ("lenet5", 7), ("resnet_small", 6),
                                          ("transformer_encoder_block", 6), ("gpt_decoder_block", 6)])
def test_a_zoo_models_epilogues_pass_on_and_its_runs_equal_the_traced_one(model: str, fused: int) -> None:
    """mlp: its 3 bias adds and 2 relus; lenet5: its 2 convolutions' relus and its dense layers' 3 bias adds and 2
    relus; resnet_small: the 3 relus that follow a convolution and its classifier's bias add, and the 2 relus after a
    residual add, which that add takes on (`fusion._add_relus`: the add reads two activations, so no dequantize can);
    the transformer blocks: the bias adds of their 6 projections, each after the reshape of its rows [16, M] to
    [1, 16, M].
    Numpy steps, compiled steps and the traced (unfused) run give the same outputs, bit for bit."""
    compiled = compile_model(ROOT / "models" / f"{model}.onnx", precision="int")
    machine = Machine(compiled.program)
    epilogues = [step for step in machine.plan.single if step.run is pass_on and step.instruction.opcode == "vec"
                 and step.instruction.attrs["fn"] in ("nn.add", "nn.relu")]
    assert len(epilogues) == fused
    assert runs_equal_the_traced_one(machine, random_inputs(compiled.graph, 3))
