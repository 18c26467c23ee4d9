"""Float16 models (compiler/frontend/float16.py): computed as onnxruntime's CPU provider computes them, in float32
between float16 roundings, so the interpreter matches onnxruntime bit for bit where the float32 summation order
does; they compile to crossbars (float16 weights, exact in float32) and verify in the interpreter and on the
machine, integer and float. Before, every float16 model was refused ("weights are f16")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.float16_models import float16_copy
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import import_onnx, lower_model
from rcc.compiler.verify import FLOAT16_TOLERANCE, output_metrics
from rcc.ir import interpreter
from tests.test_models_zoo import MODELS_DIR as MODELS

HALF = TensorProto.FLOAT16


def unrewritten_onnxruntime(model: onnx.ModelProto | Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, inputs)


@pytest.mark.parametrize("name", ["lenet5", "resnet_small", "mlp"])
def test_float16_zoo_models_match_onnxruntime_bit_for_bit(name: str, tmp_path) -> None:
    """Convolutions, batch norms, pooling, Flatten (moved to float32 as onnxruntime moves it), Gemm and softmax:
    the same float32 regions and roundings, so the same float16 outputs."""
    path = float16_copy(MODELS / f"{name}.onnx", tmp_path / f"{name}.f16.onnx")
    module = import_onnx(path)
    rng = np.random.default_rng(3)
    for _ in range(3):
        inputs = {value.name: rng.standard_normal(value.type.shape).astype(np.float16) for value in module.inputs}
        ours = list(interpreter.run(module, inputs).values())
        assert all(np.array_equal(a, b) for a, b in zip(ours, unrewritten_onnxruntime(path, inputs)))


@pytest.mark.parametrize("name", ["resnet_small", "transformer_encoder_block", "mobilenetv3_block"])
@pytest.mark.parametrize("mode", [("interpreter", "int"), ("machine", "float"), ("machine", "int")])
def test_float16_zoo_models_verify_everywhere(name: str, mode: tuple[str, str], tmp_path) -> None:
    executor, precision = mode
    path = float16_copy(MODELS / f"{name}.onnx", tmp_path / f"{name}.f16.onnx")
    compiled = compile_model(path, precision=precision)
    result = verify_compiled(path, compiled, executor=executor)
    assert result.passed, result.outputs
    if executor == "interpreter" or precision == "float":
        assert all(metrics["rel_l2"] < FLOAT16_TOLERANCE.bound / 4 for metrics in result.outputs.values())


def _graph(nodes: list[tuple], outputs: tuple[str, ...] = ("y",)) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    # small integer weights: the products' float32 sums are exact, so only where values are rounded to float16
    # can make a difference
    half = {"one": np.ones((2, 8)), "w": rng.integers(-2, 3, (8, 8)), "w2": rng.integers(-2, 3, (2, 4)),
            "s": rng.uniform(0.5, 2, 8), "b": rng.standard_normal(8), "c": rng.standard_normal((2, 8))}
    initializers = [numpy_helper.from_array(value.astype(np.float16), name) for name, value in half.items()]
    initializers.append(numpy_helper.from_array(np.array([2, 8], np.int64), "shape"))
    made = [helper.make_node(op, inputs, [output], name=output, **(attrs[0] if attrs else {}))
            for op, inputs, output, *attrs in nodes]
    graph = helper.make_graph(made, "regions", [helper.make_tensor_value_info("x", HALF, [2, 8])],
                              [helper.make_tensor_value_info(name, HALF, None) for name in outputs], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


REGIONS = {  # which float16 kernels onnxruntime 1.32 moves into the float32 region around them
    "LayerNormalization between an Add and a MatMul (moved)":
        [("Add", ["x", "one"], "a"), ("LayerNormalization", ["a", "s", "b"], "n"), ("MatMul", ["n", "w"], "y")],
    "LayerNormalization of a graph input (kept)": [("LayerNormalization", ["x", "s", "b"], "n"), ("MatMul", ["n", "w"], "y")],
    "Reshape between an Add and a MatMul (moved)":
        [("Add", ["x", "one"], "a"), ("Reshape", ["a", "shape"], "r"), ("MatMul", ["r", "w"], "y")],
    "Reshape then Transpose (both kept: rounded)":
        [("Add", ["x", "one"], "a"), ("Reshape", ["a", "shape"], "r"), ("Transpose", ["r"], "t"),
         ("MatMul", ["t", "w2"], "y")],
    "Concat of a result and a constant (moved)":
        [("Add", ["x", "one"], "a"), ("Concat", ["a", "c"], "k", {"axis": 0}), ("MatMul", ["k", "w"], "y")],
    "Concat of a result and a graph input (moved)":
        [("Add", ["x", "one"], "a"), ("Concat", ["a", "x"], "k", {"axis": 0}), ("MatMul", ["k", "w"], "y")],
}


@pytest.mark.parametrize("case", REGIONS)
def test_float32_regions_are_onnxruntimes(case: str) -> None:
    """A float16 kernel whose neighbours run in float32 is moved into float32 (no rounding at its input) only as
    onnxruntime moves it; rounding anywhere else shows as differing float16 outputs on these values."""
    model = _graph(REGIONS[case])
    x = (np.random.default_rng(1).standard_normal((2, 8)) * 3 + 0.3).astype(np.float16)
    [ours] = interpreter.run(lower_model(model, "regions"), {"x": x}).values()
    [theirs] = unrewritten_onnxruntime(model, {"x": x})
    assert ours.dtype == np.float16 and np.array_equal(ours, theirs)


def test_a_float16_output_is_held_to_float16s_resolution() -> None:
    """One float16 step on some elements passes; an error of a float16 rounding everywhere does not."""
    reference = np.random.default_rng(2).standard_normal(4096).astype(np.float16)
    flipped = reference.copy()
    flipped[::100] = np.nextafter(flipped[::100], np.float16(np.inf))
    assert not np.array_equal(flipped, reference)
    assert output_metrics(flipped, reference)["passed"] and "float16 output" in output_metrics(flipped, reference)["note"]
    coarse = (reference.astype(np.float32) * (1 + 2.0**-9)).astype(np.float16)
    assert not output_metrics(coarse, reference)["passed"]
    assert not output_metrics(flipped.astype(np.float32), reference.astype(np.float32))["passed"]  # float32: allclose
