"""LayerNormalization's optional Mean and InvStdDev outputs (ONNX's function body, in the stash type: float, as
ONNX's type constraint on them allows no other of rcc's) against onnxruntime, in the interpreter and on the
machine (float and integer mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import import_onnx
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir import interpreter
from rcc.ir.inputs import random_inputs

def _model(path: Path, axis: int, outputs: tuple[str, ...]) -> Path:
    """x [2, 3, 8] → LayerNormalization producing Y and, where named in `outputs` (the graph's outputs), Mean
    and InvStdDev."""
    rng = np.random.default_rng(axis % 3)
    shape = (2, 3, 8)
    normalized = shape[axis % 3:]
    weights = [numpy_helper.from_array(rng.uniform(0.5, 2, normalized).astype(np.float32), "scale"),
               numpy_helper.from_array(rng.standard_normal(normalized).astype(np.float32), "bias")]
    produced = ["y", *(name if name in outputs else "" for name in ("mean", "inv_std"))]
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], produced, axis=axis, epsilon=1e-3)
    shapes = {"y": shape, "mean": shape[:axis % 3] + (1,) * (3 - axis % 3)}
    shapes["inv_std"] = shapes["mean"]
    graph = helper.make_graph([node], "moments", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name])
                               for name in outputs], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("outputs", [("y", "mean", "inv_std"), ("mean",), ("inv_std", "y")])
def test_mean_and_inv_std_dev_match_onnxruntime(axis: int, outputs: tuple[str, ...], tmp_path: Path) -> None:
    path = _model(tmp_path / "moments.onnx", axis, outputs)
    module = import_onnx(path)
    for seed in range(3):
        inputs = random_inputs(module, seed=seed)
        expected, actual = onnxruntime_outputs(path, inputs), interpreter.run(module, inputs)
        assert actual.keys() == expected.keys() == set(outputs)
        for name, reference in expected.items():
            assert actual[name].dtype == reference.dtype, name
            np.testing.assert_allclose(actual[name], reference, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("precision", ["float", "int"])
def test_mean_and_inv_std_dev_verify_on_the_machine(precision: str, tmp_path: Path) -> None:
    path = _model(tmp_path / "moments.onnx", -1, ("y", "mean", "inv_std"))
    result = verify_compiled(path, compile_model(path, precision=precision))
    assert result.passed, result.outputs
    assert set(result.outputs) == {"y", "mean", "inv_std"}
