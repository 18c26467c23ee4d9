"""The quantized-model ops exported as standard ONNX: onnxruntime runs the export to the same integers as
rcc's semantics (the fuse-qdq fixtures' results, and every op on its own, lookup tables, softmax, the
quantized transposed convolution included)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from rcc.backends.onnx_export import export_onnx
from rcc.ir import interpreter, parse_module
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.nn_quant_tables import float_table, lookup_table, mlas_logistic, mlas_tanh

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


def _values(array: np.ndarray) -> str:
    return ", ".join(repr(v.item()) for v in np.asarray(array).reshape(-1))


def _table_module(dtype: str, zero: int) -> str:
    low = -128 if dtype == "i8" else 0
    table = lookup_table(dtype, 0.05, zero, 0.04, zero // 2, mlas_logistic)
    floats = float_table(dtype, 0.05, zero, mlas_tanh)
    weight = np.random.default_rng(3).integers(-127, 128, (2, 3, 3, 3))
    return f'''module @tables {{
  input %x : f32[1,2,5,5]
  const %s : f32[1] = [0.05]
  const %z : {dtype}[1] = [{zero}]
  const %t : {dtype}[256] = [{_values(table)}]
  const %f : f32[256] = [{_values(floats)}]
  const %w : i8[2,3,3,3] = [{_values(weight)}]
  const %wz : i8[1] = [0]
  const %sc : f32[3] = [0.001, 0.002, 0.0015]
  const %ys : f32[1] = [0.07]
  const %b : f32[3] = [0.5, -0.25, 0.125]
  %xq = nn.quantize_linear(%x, %s, %z) : {dtype}[1,2,5,5]
  %l = nn.qlinear_lookup(%xq, %t) : {dtype}[1,2,5,5]
  %g = nn.qlinear_lookup(%xq, %f) : f32[1,2,5,5]
  %p = nn.qlinear_softmax(%xq) {{axis = 1, x_scale = 0.05, y_scale = 0.00390625, y_zero = {low}, dtype = "{dtype}"}} : {dtype}[1,2,5,5]
  %m = nn.qlinear_mul(%xq, %l) {{a_scale = 0.05, a_zero = {zero}, b_scale = 0.04, b_zero = {zero // 2}, y_scale = 0.03, y_zero = 1, dtype = "{dtype}"}} : {dtype}[1,2,5,5]
  %a = nn.qlinear_add(%xq, %l) {{a_scale = 0.05, a_zero = {zero}, b_scale = 0.04, b_zero = {zero // 2}, y_scale = 0.06, y_zero = -1, dtype = "{dtype}", as_uint8 = true}} : {dtype}[1,2,5,5]
  %acc = nn.conv_transpose_integer(%xq, %w, %z, %wz) {{strides = [2, 2], pads = [1, 1, 1, 1], output_padding = [1, 1]}} : i32[1,3,10,10]
  %y = nn.rescale_quantize(%acc, %sc, %ys, %z, %b) {{axis = 1}} : {dtype}[1,3,10,10]
  output %l, %g, %p, %m, %a, %acc, %y
}}
'''


@pytest.mark.parametrize(("dtype", "zero"), [("u8", 120), ("i8", -6)])
def test_table_and_deconv_quantized_ops_export_to_the_same_values(dtype: str, zero: int) -> None:
    test_quantized_ops_export_to_the_same_integers(_table_module(dtype, zero))
