"""MaxPool's Indices output (`nn.max_pool2d_indices`) against onnxruntime: random 1-D and 2-D geometries (kernel,
strides, pads, dilations, ceil mode, storage order), float32 with ties, NaNs and −inf, and int8; on the machine;
and exported back to ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from rcc.backends.onnx_export import export_onnx
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import lower_model
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir import interpreter
from rcc.ir.errors import RccError

TYPES = {np.float32: TensorProto.FLOAT, np.int8: TensorProto.INT8}


def _model(shape: tuple[int, ...], dtype: type, attrs: dict) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y", "indices"], name="pool", **attrs)
    graph = helper.make_graph([node], "argmax", [helper.make_tensor_value_info("x", TYPES[dtype], shape)],
                              [helper.make_tensor_value_info("y", TYPES[dtype], None),
                               helper.make_tensor_value_info("indices", TensorProto.INT64, None)])
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def _input(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if dtype is np.int8:
        return rng.integers(-128, 128, shape).astype(np.int8)   # ties and the lowest value
    x = rng.integers(-3, 4, shape).astype(np.float32)   # ties
    x.reshape(-1)[rng.random(x.size) < 0.1] = np.nan
    x.reshape(-1)[rng.random(x.size) < 0.1] = -np.inf
    return x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), spatial=st.sampled_from([1, 2]), dtype=st.sampled_from([np.float32, np.int8]))
def test_indices_match_onnxruntime(data: st.DataObject, spatial: int, dtype: type, tmp_path: Path) -> None:
    kernel = [data.draw(st.integers(1, 3)) for _ in range(spatial)]
    sizes = [data.draw(st.integers(k, 7)) for k in kernel]
    attrs = {"kernel_shape": kernel, "strides": [data.draw(st.integers(1, 3)) for _ in range(spatial)],
             "dilations": [data.draw(st.integers(1, 2)) for _ in range(spatial)],
             "pads": [data.draw(st.integers(0, k - 1)) for k in kernel * 2],
             "ceil_mode": data.draw(st.integers(0, 1)), "storage_order": data.draw(st.integers(0, 1))}
    assume(all(size + attrs["pads"][i] + attrs["pads"][i + spatial] >= attrs["dilations"][i] * (k - 1) + 1
               for i, (size, k) in enumerate(zip(sizes, kernel))))
    shape = (2, 3, *sizes)
    model = _model(shape, dtype, attrs)
    path = tmp_path / "argmax.onnx"
    onnx.save(model, path)
    x = _input(np.random.default_rng(data.draw(st.integers(0, 2**16))), shape, dtype)
    try:
        expected = onnxruntime_outputs(path, {"x": x})
    except RccError:
        assume(False)   # a geometry onnxruntime refuses
    actual = interpreter.run(lower_model(model, "argmax.onnx"), {"x": x})
    np.testing.assert_array_equal(actual["indices"], expected["indices"], err_msg=str(attrs))
    np.testing.assert_array_equal(actual["y"], expected["y"], err_msg=str(attrs))


@pytest.mark.parametrize("precision", ["float", "int"])
def test_indices_verify_on_the_machine_and_export(precision: str, tmp_path: Path) -> None:
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 0, 0, 1], "storage_order": 1}
    path = tmp_path / "argmax.onnx"
    onnx.save(_model((1, 4, 7, 6), np.float32, attrs), path)
    compiled = compile_model(path, precision=precision)
    result = verify_compiled(path, compiled)
    assert result.passed and set(result.outputs) == {"y", "indices"}, result.outputs
    exported = tmp_path / "exported.onnx"
    onnx.save(export_onnx(compiled.graph), exported)
    x = np.random.default_rng(0).standard_normal((1, 4, 7, 6)).astype(np.float32)
    if precision == "float":
        np.testing.assert_array_equal(onnxruntime_outputs(exported, {"x": x})["indices"],
                                      onnxruntime_outputs(path, {"x": x})["indices"])


def test_a_3d_maxpools_indices_are_named_unsupported() -> None:
    model = _model((1, 1, 4, 4, 4), np.float32, {"kernel_shape": [2, 2, 2]})
    with pytest.raises(RccError, match="Indices output of a 3-D MaxPool"):
        lower_model(model, "argmax.onnx")
