"""Shared cases of the deconvolution passes' tests: random transposed convolutions, and the zoo models
rewritten and checked against onnxruntime."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rcc.compiler.frontend import import_onnx
from rcc.ir.inputs import random_inputs
from rcc.compiler.pass_manager import run_pipeline
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir import Builder, Module, TensorType, Value, interpreter
from tests.conftest import ROOT


@st.composite
def deconv_modules(draw: st.DrawFn) -> Module:
    """A module of one constant-weight nn.conv_transpose2d with random attributes and shapes."""
    group = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    in_per_group = 1 if depthwise else draw(st.integers(1, 2))
    out_per_group = 1 if depthwise else draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    axes = []
    for _ in range(2):
        size, kernel, stride = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
        dilation, extra = draw(st.integers(1, 3)), draw(st.integers(0, stride - 1))
        full = (size - 1) * stride + dilation * (kernel - 1) + extra + 1  # output length before pads crop
        begin = draw(st.integers(0, full - 1))
        end = draw(st.integers(0, full - 1 - begin))
        axes.append((size, kernel, stride, dilation, extra, begin, end))
    sizes, kernels, strides, dilations, output_padding, begins, ends = (list(column) for column in zip(*axes))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    channels = group * in_per_group
    module = Module("deconv")
    x = Value("x", TensorType((batch, channels, *sizes), "f32"))
    module.inputs.append(x)
    builder = Builder(module)
    weight = builder.constant("w", rng.standard_normal((channels, out_per_group, *kernels)).astype(np.float32))
    operands = [x, weight]
    if draw(st.booleans()):
        operands.append(builder.constant("b", rng.standard_normal(group * out_per_group).astype(np.float32)))
    attrs = {"strides": strides, "pads": begins + ends, "dilations": dilations, "group": group,
             "output_padding": output_padding}
    module.outputs.append(builder.op("nn.conv_transpose2d", operands, attrs, name="y"))
    return module


def rewritten_zoo_model(model: str, pass_name: str) -> Module:
    """The zoo model with `pass_name` applied, after checking that it removed every transposed conv and
    that the interpreter still matches onnxruntime on the original model."""
    path = ROOT / "models" / f"{model}.onnx"
    module = import_onnx(path)
    assert any(op.opname == "nn.conv_transpose2d" for op in module.ops)
    run_pipeline(module, [pass_name])
    assert not any(op.opname == "nn.conv_transpose2d" for op in module.ops)
    inputs = random_inputs(module, seed=1)
    expected = onnxruntime_outputs(path, inputs)
    actual = interpreter.run(module, inputs)
    assert actual.keys() == expected.keys()
    for name, reference in expected.items():
        np.testing.assert_allclose(actual[name], reference, rtol=1e-4, atol=1e-5, err_msg=f"{model}: {name}")
    return module
