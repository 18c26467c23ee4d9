"""A dequantize whose values go channels first (`runtime/fusion.py` `_dequantize_channels_first`) at every size: in
one strided pass when small, as rows then transposed when large (numpy's transposed copy, or tile by tile,
`step_kernels.transpose_tiles`); the same bits as the dequantize, reshape and transpose one after another."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.nn_elementwise import add, relu
from rcc.ir.ops.xbar import dequantize_terms, dequantizer
from rcc.runtime import compiled_steps
from rcc.runtime.compiled_steps import dequantize_step
from rcc.runtime.fusion import pass_on
from rcc.runtime.machine import Machine
from rcc.runtime.step_kernels import transpose_tiles
from tests.runtime.test_compiled_steps import _identical
from tests.runtime.test_dequantize_epilogues import _accumulators


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 31, 33), (2, 64, 32), (3, 100, 7), (1, 3136, 256)])
def test_transpose_tiles_is_numpys_transpose(shape: tuple[int, int, int]) -> None:
    """Tiles that fit the shape exactly, partial tiles on either side, a stacked batch; NaN payloads and −0 copied."""
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    x.view(np.uint32).reshape(-1)[:3] = [0x80000000, 0x7FC01234, 0x7F800000]   # −0, a NaN with a payload, inf
    out = np.empty((shape[0], shape[2], shape[1]), np.float32)
    transpose_tiles(x, out)
    assert _identical(out, np.ascontiguousarray(x.transpose(0, 2, 1)))


@pytest.mark.parametrize("strided, tiled", [(1 << 17, 1 << 19), (0, 1 << 19), (0, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("epilogue", [False, True])
def test_a_channels_first_dequantize_is_the_steps_one_after_another_in_each_regime(
        monkeypatch, strided: int, tiled: int, dtype, epilogue: bool) -> None:
    """Strided in one pass; rows then numpy's transposed copy; rows then tiles (the thresholds lowered to take each
    regime on a small layer of 2 samples, 10 x 9 pixels, 40 channels), with and without an addend and relu."""
    monkeypatch.setattr(compiled_steps, "STRIDED_CHANNELS_FIRST", strided)
    monkeypatch.setattr(compiled_steps, "TILED_TRANSPOSE_ELEMENTS", tiled)
    rng = np.random.default_rng(8)
    acc = _accumulators(dtype, (2 * 90, 40))
    w_scale = (rng.standard_normal(40) * 0.05).astype(np.float32)
    w_scale[1] = np.inf   # 0 · inf: NaN
    bias = rng.standard_normal(40).astype(np.float32)
    addend = (rng.standard_normal(40) * 3).astype(np.float32) if epilogue else None
    values = dequantizer(w_scale, bias, 0.0173)(acc)
    if epilogue:
        values = relu(add(values, addend))
    expected = np.ascontiguousarray(values.reshape(2, 10, 9, 40).transpose(0, 3, 1, 2))
    step = dequantize_step(*dequantize_terms(w_scale, bias, 0.0173), None, (1, 10, 9, 40), addend, epilogue)
    assert _identical(step([acc])[0], expected)


def _conv_relu(path, channels: int, side: int) -> None:
    rng = np.random.default_rng(channels)
    weight = numpy_helper.from_array((rng.standard_normal((channels, 3, 3, 3)) * 0.2).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "conv_relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, side, side])], [weight, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("channels, side", [(16, 96), (64, 96)])
def test_a_large_layers_transpose_passes_on_and_its_runs_equal_the_traced_one(tmp_path, channels: int,
                                                                             side: int) -> None:
    """16 x 96 x 96 (beyond the strided pass: rows, then numpy's copy) and 64 x 96 x 96 (rows, then tiles): the
    reshape and transpose pass on; numpy steps, compiled steps and the traced (unfused) run agree bit for bit."""
    _conv_relu(tmp_path / "m.onnx", channels, side)
    compiled = compile_model(tmp_path / "m.onnx", precision="int")
    machine = Machine(compiled.program)
    passed = [step.instruction.attrs["fn"] for step in machine.plan.single if step.run is pass_on and
              step.instruction.opcode == "vec"]
    assert "nn.transpose" in passed and "nn.reshape" in passed
    inputs = random_inputs(compiled.graph, 4)
    traced = machine.run(inputs, trace=True).outputs
    for compile_after in (float("inf"), 0.0):
        machine.plan.compile_after_seconds = compile_after
        for _ in range(2):
            assert _identical(np.asarray(machine.run(inputs).outputs["y"]), np.asarray(traced["y"]))
    assert machine.plan.steps_compiled
