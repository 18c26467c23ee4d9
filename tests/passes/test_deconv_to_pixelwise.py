"""`deconv-to-pixelwise` on random transposed convolutions, the zoo's deconvolution models, a 1-D
ConvTranspose and the ONNX conformance cases.

The property test draws over the ConvTranspose attribute space onnxruntime accepts (output_padding <
stride): strides 1–4 and kernels 1–5 per axis (stride above the kernel leaves phases without taps),
dilations 1–3 (gcd(d, s) > 1 empties whole residues), asymmetric pads that may exceed d·(k−1), groups and
depthwise, bias on and off, batch 1–2, H ≠ W. The interpreter runs the module before and after the pass
on the same inputs; the results must agree and no phase conv may stride.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.frontend import import_onnx, lower_model
from rcc.ir.inputs import random_inputs
from rcc.compiler.pass_manager import run_pipeline
from rcc.compiler.passes.deconv_to_pixelwise import phase_macs, single_pixel_taps
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir import OPS, Builder, Module, TensorType, UnsupportedError, Value, interpreter
from tests.conformance import frozen_model, selected_cases
from tests.passes.deconv_cases import deconv_modules, rewritten_zoo_model

PASS = "deconv-to-pixelwise"


def assert_pixelwise(module: Module) -> None:
    assert not any(op.opname == "nn.conv_transpose2d" for op in module.ops)
    phases = [op for op in module.ops if op.opname == "nn.conv2d" and ".phase" in op.result.name]
    assert all(tuple(op.attrs["strides"]) == (1, 1) for op in phases)


@settings(max_examples=300, deadline=None)
@given(module=deconv_modules(), seed=st.integers(0, 2**16))
def test_phases_compute_the_transposed_convolution(module: Module, seed: int) -> None:
    inputs = random_inputs(module, seed=seed)
    before = interpreter.run(module, inputs)
    deconv = module.ops[0]
    macs = phase_macs(deconv)
    single_pixel = single_pixel_taps(deconv) is not None
    run_pipeline(module, [PASS])
    assert_pixelwise(module)
    assert [v.name for v in module.outputs] == ["y"]
    assert module.ops[-1].opname == ("nn.reshape" if single_pixel else "nn.interleave")
    if single_pixel:   # one dense layer: a 1×1 conv over the one pixel, no padding
        (conv,) = [op for op in module.ops if op.opname == "nn.conv2d"]
        assert conv.operands[1].type.shape[2:] == (1, 1) and not any(conv.attrs["pads"])
    # phase_macs counts exactly what the phase convs (or the dense layer) compute
    conv_macs = sum(op.result.type.size * np.prod(op.operands[1].type.shape[1:]) for op in module.ops
                    if op.opname == "nn.conv2d")
    assert conv_macs == macs
    after = interpreter.run(module, inputs)
    np.testing.assert_allclose(after["y"], before["y"], rtol=1e-4, atol=1e-5)


def test_k4_s2_phases_take_a_quarter_of_the_kernel() -> None:
    module = Module("dcgan_layer")
    x = Value("x", TensorType((1, 8, 4, 4), "f32"))
    module.inputs.append(x)
    builder = Builder(module)
    weight = builder.constant("w", np.ones((8, 4, 4, 4), np.float32))
    module.outputs.append(builder.op("nn.conv_transpose2d", [x, weight], {"strides": [2, 2], "pads": [1, 1, 1, 1]},
                                     name="y"))
    zero_inserted_macs = 4 * 8 * 8 * 8 * 4 * 4  # [1,4,8,8] outputs, each over 8 channels × 4×4 taps
    assert phase_macs(module.ops[0]) * 4 == zero_inserted_macs
    run_pipeline(module, [PASS])
    convs = [op for op in module.ops if op.opname == "nn.conv2d"]
    assert [op.attrs["pads"] for op in convs] == [(1, 1, 0, 0), (1, 0, 0, 1), (0, 1, 1, 0), (0, 0, 1, 1)]
    assert all(op.operands[1].type.shape == (4, 8, 2, 2) for op in convs)


def test_interleave_scatters_phases_of_unequal_size() -> None:
    y = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    phases = [y[:, :, row::2, col::3] for row in range(2) for col in range(3)]
    attrs = {"strides": (2, 3), "size": (5, 7)}
    assert OPS["nn.interleave"].infer([TensorType(p.shape) for p in phases], attrs) == [TensorType(y.shape)]
    (out,) = OPS["nn.interleave"].run(phases, attrs)
    np.testing.assert_array_equal(out, y)
    with pytest.raises(ValueError, match="phase 0,1"):
        OPS["nn.interleave"].infer([TensorType(phases[0].shape)] * 6, attrs)
    with pytest.raises(ValueError, match="6 phases"):
        OPS["nn.interleave"].infer([TensorType(p.shape) for p in phases[:4]], attrs)


@pytest.mark.parametrize("model", ["dcgan_generator", "fcn_segmenter", "unet_small"])
def test_zoo_deconvolutions_match_onnxruntime(model: str) -> None:
    module = rewritten_zoo_model(model, PASS)
    assert_pixelwise(module)


def test_1d_conv_transpose_matches_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((2, 3, 5)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[3], pads=[2, 1], dilations=[2],
                            output_padding=[1])
    graph = helper.make_graph([node], "deconv1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 22])], [weight, bias])
    path = tmp_path / "deconv1d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    module = import_onnx(path)
    run_pipeline(module, [PASS])
    assert_pixelwise(module)
    inputs = random_inputs(module, seed=2)
    np.testing.assert_allclose(interpreter.run(module, inputs)["y"], onnxruntime_outputs(path, inputs)["y"],
                               rtol=1e-4, atol=1e-5)


def constant_weights(case) -> tuple[onnx.ModelProto, list[int]]:
    """The conformance case's model frozen, with the ConvTranspose weight and bias inputs made initializers."""
    return frozen_model(case, {"ConvTranspose": 1})


@pytest.mark.parametrize("case", [c for c in selected_cases() if c.name.startswith("test_convtranspose")],
                         ids=lambda c: c.name)
def test_conformance_conv_transpose(case) -> None:
    model, keep = constant_weights(case)
    try:
        module = lower_model(model, case.name)
    except UnsupportedError as err:
        pytest.skip(str(err))
    run_pipeline(module, [PASS])
    assert_pixelwise(module)
    inputs, expected = case.data_sets[0]
    feeds = {model.graph.input[i].name: np.asarray(inputs[keep[i]]) for i in range(len(keep))}
    actual = interpreter.run(module, feeds)
    for info, reference in zip(case.model.graph.output, expected):
        np.testing.assert_allclose(actual[info.name], reference, rtol=max(case.rtol, 1e-4), atol=max(case.atol, 1e-5),
                                   err_msg=f"{case.name}: output {info.name}")


@pytest.mark.parametrize("group, w_zero_per_channel", [(1, False), (1, True), (2, True), (3, False)])
def test_one_pixel_integer_deconvolution_is_one_exact_dense_layer(group: int, w_zero_per_channel: bool) -> None:
    """nn.conv_transpose_integer on a 1×1 input (k3×2, pads cropping one row): one 1×1 nn.conv_integer with
    the weight zero points repeated per output pixel and tiled per group, bit for bit the same integers."""
    rng = np.random.default_rng(group)
    out_per_group = 2
    module = Module("latent")
    x = Value("x", TensorType((2, 2 * group, 1, 1), "u8"))
    module.inputs.append(x)
    builder = Builder(module)
    weight = builder.constant("w", rng.integers(-128, 128, (2 * group, out_per_group, 3, 2)).astype(np.int8))
    x_zero = builder.constant("x_zero", np.array(7, np.uint8))
    w_zero = builder.constant("w_zero", (rng.integers(-5, 6, out_per_group) if w_zero_per_channel else
                                         np.array([3])).astype(np.int8))
    attrs = {"strides": [2, 2], "pads": [1, 0, 0, 0], "group": group}
    module.outputs.append(builder.op("nn.conv_transpose_integer", [x, weight, x_zero, w_zero], attrs, name="y"))
    assert single_pixel_taps(module.ops[0]) == ([1, 2], [0, 1])
    inputs = {"x": rng.integers(0, 256, (2, 2 * group, 1, 1)).astype(np.uint8)}
    before = interpreter.run(module, inputs)["y"]
    run_pipeline(module, [PASS])
    assert [op.opname for op in module.ops] == ["nn.conv_integer", "nn.reshape"]
    np.testing.assert_array_equal(interpreter.run(module, inputs)["y"], before)


@pytest.mark.parametrize("attrs", [{"dilations": [2, 1]}, {"strides": [2, 2], "output_padding": [1, 0]}])
def test_one_pixel_with_outputs_no_tap_reads_keeps_the_phases(attrs: dict) -> None:
    """A dilated kernel's gaps, or output padding past the end pad, leave output pixels that no tap
    reads: those stay bias-only phases, not all-zero crossbar columns."""
    module = Module("gaps")
    x = Value("x", TensorType((1, 3, 1, 1), "f32"))
    module.inputs.append(x)
    builder = Builder(module)
    weight = builder.constant("w", np.random.default_rng(0).standard_normal((3, 2, 2, 2)).astype(np.float32))
    module.outputs.append(builder.op("nn.conv_transpose2d", [x, weight], attrs, name="y"))
    assert single_pixel_taps(module.ops[0]) is None
    inputs = random_inputs(module, seed=0)
    before = interpreter.run(module, inputs)["y"]
    run_pipeline(module, [PASS])
    assert module.ops[-1].opname == "nn.interleave"
    np.testing.assert_allclose(interpreter.run(module, inputs)["y"], before, rtol=1e-6, atol=1e-6)
