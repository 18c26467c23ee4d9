"""Transposed convolutions through the whole path: ONNX → graph IR → deconvolution lowering → crossbars →
program → machine, against onnxruntime, and what RED's pixel-wise mapping saves over zero insertion.

- The ONNX conformance ConvTranspose cases (1-D and 2-D) run on the machine with both lowerings, in float
  mode against the cases' expected outputs and in integer mode through `verify_compiled`.
- A property test draws one-node ConvTranspose models over the attribute space onnxruntime accepts; the
  pixel-wise graph exported back to ONNX, and the machine running its program, both equal onnxruntime on
  the original model, and no crossbar of that program spends a MAC on an inserted zero.
- Accounting (static counts of the report, which the machine's counters equal): when s divides k the
  pixel-wise form executes exactly 1/s² of zero insertion's MACs (DCGAN k4 s2: 4×; FCN-8s upscore8
  k16 s8: 64×); its array passes fall by the ratio of row tiles, which is s² when a phase's kernel fills
  whole arrays; and its cycles fall.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.onnx_export import save_onnx
from rcc.backends.target import Target
from rcc.compiler.driver import DECONV_PASSES, Compiled, compile_model, verify_compiled
from rcc.compiler.frontend import import_onnx
from rcc.ir.inputs import random_inputs
from rcc.compiler.report import layer_rows
from rcc.compiler.verify import onnxruntime_outputs, output_metrics
from rcc.ir.core import Op
from rcc.ir.errors import RccError
from rcc.runtime.machine import Machine
from tests.conformance import selected_cases
from tests.passes.test_deconv_to_pixelwise import constant_weights

MODELS = Path(__file__).resolve().parents[2] / "models"
RTOL, ATOL = 1e-4, 1e-5
FLOAT_REL_L2 = 1e-5
LOWERINGS = tuple(DECONV_PASSES)  # pixelwise, zero-insertion
XBAR_ROWS = Target().xbar_rows


def spatial_rank(case) -> int:
    return len(case.model.graph.input[0].type.tensor_type.shape.dim) - 2


CONFORMANCE = [c for c in selected_cases() if c.name.startswith("test_convtranspose") and spatial_rank(c) <= 2]


def saved_case(case, directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The case's model with W and B as initializers, saved; and its data inputs by name."""
    model, keep = constant_weights(case)
    path = directory / f"{case.name}.onnx"
    onnx.save(model, path)
    inputs = case.data_sets[0][0]
    return path, {model.graph.input[i].name: np.asarray(inputs[keep[i]]) for i in range(len(keep))}


def test_conformance_selection_covers_1d_and_2d() -> None:
    assert {spatial_rank(c) for c in CONFORMANCE} == {1, 2}
    assert len(CONFORMANCE) >= 10


@pytest.mark.parametrize("deconv", LOWERINGS)
@pytest.mark.parametrize("case", CONFORMANCE, ids=lambda c: c.name)
def test_conformance_case_runs_on_the_machine(case, deconv: str, tmp_path: Path) -> None:
    path, feeds = saved_case(case, tmp_path)
    compiled = compile_model(path, precision="float", deconv=deconv)
    outputs = Machine(compiled.program).run(feeds).outputs
    expected = case.data_sets[0][1]
    for info, reference in zip(case.model.graph.output, expected):
        np.testing.assert_allclose(outputs[info.name], reference, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{case.name} ({deconv}): output {info.name}")
    # Integer mode, calibrated on the case's own input: its ramps (0..8, 0..19) lie far outside the
    # standard-normal samples the default calibration draws, and would clip.
    integer = compile_model(path, precision="int", deconv=deconv, calibration=feeds)
    result = verify_compiled(path, integer, inputs=feeds)
    assert result.passed, result.to_json()
    assert result.extra["integer_reference_match"] is True


# ---------------------------------------------------------------------------------------------------
# Property: one-node ConvTranspose models over the attribute space


@st.composite
def conv_transpose_models(draw: st.DrawFn) -> onnx.ModelProto:
    """A one-node ConvTranspose model (weights and bias as initializers), 1-D or 2-D, random attributes."""
    rank = draw(st.sampled_from([1, 2]))
    group = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    in_per_group = 1 if depthwise else draw(st.integers(1, 2))
    out_per_group = 1 if depthwise else draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    sizes, kernels, strides, dilations, output_padding, begins, ends, out_sizes = ([] for _ in range(8))
    for _ in range(rank):
        size, kernel, stride = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
        dilation, extra = draw(st.integers(1, 3)), draw(st.integers(0, stride - 1))
        full = (size - 1) * stride + dilation * (kernel - 1) + extra + 1  # output length before pads crop
        begin = draw(st.integers(0, full - 1))
        end = draw(st.integers(0, full - 1 - begin))
        for column, value in zip((sizes, kernels, strides, dilations, output_padding, begins, ends),
                                 (size, kernel, stride, dilation, extra, begin, end)):
            column.append(value)
        out_sizes.append(full - begin - end)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    channels, out_channels = group * in_per_group, group * out_per_group
    initializers = [numpy_helper.from_array(
        rng.standard_normal((channels, out_per_group, *kernels)).astype(np.float32), "w")]
    if draw(st.booleans()):
        initializers.append(numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "b"))
    node = helper.make_node("ConvTranspose", ["x", *(t.name for t in initializers)], ["y"], name="up",
                            kernel_shape=kernels, strides=strides, dilations=dilations, pads=begins + ends,
                            output_padding=output_padding, group=group)
    graph = helper.make_graph(
        [node], "deconv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, *sizes])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, out_channels, *out_sizes])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def assert_machine_matches(actual: np.ndarray, expected: np.ndarray, context: str) -> None:
    """Float mode: rel L2 ≤ 1e-5 (the driver's bound) or, for outputs near zero, allclose 1e-4/1e-5."""
    metrics = output_metrics(actual, expected)
    close = np.allclose(actual, expected, rtol=RTOL, atol=ATOL)
    assert close or (metrics["rel_l2"] is not None and metrics["rel_l2"] <= FLOAT_REL_L2), (context, metrics)


def assert_zero_free(compiled: Compiled) -> None:
    """(iii) no transposed conv left, every phase conv stride-1 (a one-pixel input's dense layer unpadded);
    (iv) no MAC on an inserted zero."""
    assert not any(op.opname == "nn.conv_transpose2d" for op in compiled.graph.ops)
    convs = [op for op in compiled.graph.ops if op.opname == "nn.conv2d"]
    assert all(".phase" in op.result.name or op.result.name.endswith(".dense") for op in convs), \
        [op.result.name for op in convs]
    assert all(not any(op.attrs["pads"]) for op in convs if op.result.name.endswith(".dense"))
    assert all(tuple(op.attrs["strides"]) == (1, 1) for op in convs)
    assert all(row["zero_macs"] == 0 for row in layer_rows(compiled.program, compiled.target))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=conv_transpose_models(), seed=st.integers(0, 2**16))
def test_pixelwise_program_computes_the_transposed_convolution(model: onnx.ModelProto, seed: int,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("deconv")
    original, rewritten = directory / "original.onnx", directory / "pixelwise.onnx"
    onnx.save(model, original)
    inputs = random_inputs(import_onnx(original), seed)
    try:
        expected = onnxruntime_outputs(original, inputs)["y"]
    except RccError:
        reject()  # outside what onnxruntime accepts
    compiled = compile_model(original, precision="float", deconv="pixelwise")
    context = helper.printable_node(model.graph.node[0])
    save_onnx(compiled.graph, rewritten)
    np.testing.assert_allclose(onnxruntime_outputs(rewritten, inputs)["y"], expected, rtol=RTOL, atol=ATOL,
                               err_msg=context)
    assert_machine_matches(Machine(compiled.program).run(inputs).outputs["y"], expected, context)
    assert_zero_free(compiled)


# ---------------------------------------------------------------------------------------------------
# Accounting: pixel-wise against zero insertion


def deconv_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Per transposed-conv layer (integer mode, default target): its report row under each lowering, its
    phase convs (pixel-wise graph) and its one conv over the zero-inserted input (zero-insertion graph)."""
    compiled = {deconv: compile_model(path, deconv=deconv) for deconv in LOWERINGS}
    rows = {deconv: {row["name"]: row for row in layer_rows(c.program, c.target)} for deconv, c in compiled.items()}
    phases: dict[str, list] = {}
    for op in compiled["pixelwise"].graph.ops:
        if op.opname == "nn.conv2d" and ".phase" in op.result.name:
            phases.setdefault(op.result.name.split(".phase")[0], []).append(op)
    zero_inserted = {op.result.name: op for op in compiled["zero-insertion"].graph.ops if op.opname == "nn.conv2d"}
    return {layer: {"pixelwise": rows["pixelwise"][layer], "zero-insertion": rows["zero-insertion"][layer],
                    "phases": convs, "conv": zero_inserted[layer]} for layer, convs in phases.items()}


def row_tiles(conv: Op) -> int:
    """Arrays stacked along the rows for one conv's unrolled kernel (C/g·kh·kw rows)."""
    return math.ceil(math.prod(conv.operands[1].type.shape[1:]) / XBAR_ROWS)


def assert_savings(layer: str, entry: dict[str, Any], factor: int) -> None:
    zero_inserted, pixelwise = entry["zero-insertion"], entry["pixelwise"]
    assert len(entry["phases"]) == factor, layer
    assert zero_inserted["macs"] == factor * pixelwise["macs"], (layer, zero_inserted, pixelwise)
    assert zero_inserted["zero_macs"] > 0 and pixelwise["zero_macs"] == 0, layer
    # Every output pixel takes one pass of its phase's arrays instead of one of the whole kernel's.
    tiles = row_tiles(entry["conv"]), row_tiles(entry["phases"][0])
    assert all(row_tiles(op) == tiles[1] for op in entry["phases"])
    assert zero_inserted["mvm_ops"] * tiles[1] == pixelwise["mvm_ops"] * tiles[0], (layer, tiles)
    assert zero_inserted["cycles"] > pixelwise["cycles"], layer
    print(f"{layer}: MACs {zero_inserted['macs'] / pixelwise['macs']:g}x, array passes "
          f"{zero_inserted['mvm_ops'] / pixelwise['mvm_ops']:g}x, "
          f"cycles {zero_inserted['cycles'] / pixelwise['cycles']:.2f}x")


def test_dcgan_k4_s2_layers_do_a_quarter_of_the_macs() -> None:
    layers = deconv_rows(MODELS / "dcgan_generator.onnx")
    strided = {layer: entry for layer, entry in layers.items() if len(entry["phases"]) > 1}
    assert sorted(strided) == ["bn2", "bn3", "deconv4"]  # deconv2, deconv3 carry their folded BatchNorm's name
    for layer, entry in strided.items():
        assert entry["conv"].operands[1].type.shape[2:] == (4, 4)
        assert_savings(layer, entry, 4)
    # k4 s2 phase kernels of 64 and 32 channels fill whole 128-row arrays: passes fall by s² = 4 too
    for layer in ("bn2", "bn3"):
        assert strided[layer]["zero-insertion"]["mvm_ops"] == 4 * strided[layer]["pixelwise"]["mvm_ops"]


def upscore8_model(channels: int) -> onnx.ModelProto:
    """FCN-8s's upscore8 alone: ConvTranspose k16 s8 p4, 4×4 → 32×32."""
    rng = np.random.default_rng(8)
    weight = numpy_helper.from_array(rng.standard_normal((channels, channels, 16, 16)).astype(np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="upscore8", kernel_shape=[16, 16],
                            strides=[8, 8], pads=[4, 4, 4, 4])
    graph = helper.make_graph([node], "upscore8",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 32, 32])],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("channels", [4, 32])  # 32: each phase's 32·2·2 = 128 rows fill one array exactly
def test_fcn_upscore8_does_a_64th_of_the_macs(channels: int, tmp_path: Path) -> None:
    path = tmp_path / "upscore8.onnx"
    onnx.save(upscore8_model(channels), path)
    layers = deconv_rows(path)
    assert list(layers) == ["y"]
    assert_savings("y", layers["y"], 64)
    if channels == 32:
        assert layers["y"]["zero-insertion"]["mvm_ops"] == 64 * layers["y"]["pixelwise"]["mvm_ops"]
