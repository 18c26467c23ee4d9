"""The quantized-model ops exported as standard ONNX: onnxruntime runs the export to the same integers as
rcc's semantics (the fuse-qdq fixtures' results, and every op on its own)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from rcc.backends.onnx_export import export_onnx
from rcc.ir import interpreter, parse_module
from rcc.ir.inputs import random_inputs

FIXTURE = Path(__file__).resolve().parent.parent / "passes" / "fixtures" / "fuse-qdq.ir"
FUSED = [chunk for index, chunk in enumerate(re.split(r"(?m)^(?=module @)", FIXTURE.read_text())[1:]) if index % 2]

POOL = '''module @pool {
  input %x : f32[1,2,5,5]
  const %s : f32[1] = [0.05]
  const %z : DT[1] = [ZERO]
  %xq = nn.quantize_linear(%x, %s, %z) : DT[1,2,5,5]
  %g = nn.qlinear_global_avg_pool(%xq) {a_scale = 0.05, a_zero = ZERO, y_scale = 0.02, y_zero = 3, dtype = "DT"} : DT[1,2,1,1]
  %p = nn.qlinear_avg_pool2d(%xq) {kernel = [2, 2], strides = [2, 2], pads = [1, 1, 0, 0], a_scale = 0.05, a_zero = ZERO, y_scale = 0.025, y_zero = -1, dtype = "DT"} : DT[1,2,3,3]
  output %g, %p
}
'''


@pytest.mark.parametrize("text", FUSED + [POOL.replace("DT", "i8").replace("ZERO", "-4"),
                                          POOL.replace("DT", "u8").replace("ZERO", "9").replace("-1", "1"),
                                          POOL.replace("DT", "u8").replace("ZERO", "0").replace("-1", "1").replace(
                                              "pads = [1, 1, 0, 0]", "pads = [1, 1, 0, 0], dilations = [2, 1], "
                                                                     "ceil_mode = true")])
def test_quantized_ops_export_to_the_same_integers(text: str) -> None:
    module = parse_module(text)
    model = export_onnx(module)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for seed in range(3):
        inputs = {name: value * 3 for name, value in random_inputs(module, seed).items()}
        expected = interpreter.run(module, inputs)
        actual = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
        for name, value in expected.items():
            assert actual[name].dtype == value.dtype and np.array_equal(actual[name], value), name
