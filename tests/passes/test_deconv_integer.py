"""`deconv-to-pixelwise` on a quantized model's `nn.conv_transpose_integer`: stride-1 `nn.conv_integer`
phases (padding = the input's zero point, per-output-channel weight zero points) give the exact int32
transposed convolution, over the attribute space of the float property test."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rcc.compiler.pass_manager import run_pipeline
from rcc.ir import Builder, Module, TensorType, Value, interpreter
from tests.passes.deconv_cases import deconv_modules


def integer_twin(module: Module, signed: bool, seed: int) -> tuple[Module, dict[str, np.ndarray]]:
    """The drawn float deconvolution's shapes and attributes as an integer one, with its inputs."""
    deconv = module.ops[0]
    rng = np.random.default_rng(seed)
    dtype, low, high = (np.int8, -128, 127) if signed else (np.uint8, 0, 255)
    twin = Module("deconv_integer")
    x = Value("x", TensorType(deconv.operands[0].type.shape, "i8" if signed else "u8"))
    twin.inputs.append(x)
    builder = Builder(twin)
    w_shape = deconv.operands[1].type.shape
    operands = [x, builder.constant("w", rng.integers(-127, 128, w_shape).astype(np.int8)),
                builder.constant("x_zero", np.array(rng.integers(low, high + 1), dtype)),
                builder.constant("w_zero", rng.integers(-3, 4, w_shape[1]).astype(np.int8))]
    twin.outputs.append(builder.op("nn.conv_transpose_integer", operands, deconv.attrs, name="y"))
    return twin, {"x": rng.integers(low, high + 1, x.type.shape).astype(dtype)}


@settings(max_examples=150, deadline=None)
@given(module=deconv_modules(), signed=st.booleans(), seed=st.integers(0, 2**16))
def test_integer_phases_compute_the_exact_transposed_convolution(module: Module, signed: bool, seed: int) -> None:
    twin, inputs = integer_twin(module, signed, seed)
    before = interpreter.run(twin, inputs)["y"]
    run_pipeline(twin, ["deconv-to-pixelwise"])
    assert not any(op.opname == "nn.conv_transpose_integer" for op in twin.ops)
    phases = [op for op in twin.ops if op.opname == "nn.conv_integer"]
    assert all(tuple(op.attrs["strides"]) == (1, 1) for op in phases)
    after = interpreter.run(twin, inputs)["y"]
    assert after.dtype == np.int32 and np.array_equal(after, before)
