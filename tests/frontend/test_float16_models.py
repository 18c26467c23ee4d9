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
from rcc.compiler.verify import FLOAT16_TOLERANCE, holds_float16, onnxruntime_runner, output_metrics
from rcc.ir import interpreter
from rcc.ir.errors import RccError, UnsupportedError
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


FLOAT = TensorProto.FLOAT


def _mixed_graph(nodes: list[tuple], outputs: dict[str, int], input_type: int = HALF,
                 extra: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A graph of `nodes` on x [16, 8] (float16 unless `input_type`), with float16 constants one, c, w (small
    integers: exact products), two, tiny and `extra`."""
    rng = np.random.default_rng(4)
    constants = {"one": rng.standard_normal((16, 8)).astype(np.float16), "c": rng.standard_normal((16, 8)).astype(np.float16),
                 "w": rng.integers(-2, 3, (8, 8)).astype(np.float16), "two": np.full((16, 8), 2, np.float16),
                 "tiny": np.full((16, 8), 2.0**-12, np.float16), "shape": np.array([8, 16], np.int64),
                 "index": np.array([[0], [2], [5]], np.int64), "flat": np.array([-1], np.int64), **(extra or {})}
    made = [helper.make_node(op, inputs, [output], **(attrs[0] if attrs else {})) for op, inputs, output, *attrs in nodes]
    graph = helper.make_graph(made, "casts", [helper.make_tensor_value_info("x", input_type, [16, 8])],
                              [helper.make_tensor_value_info(name, kind, None) for name, kind in outputs.items()],
                              [numpy_helper.from_array(value, name) for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


CASTS_AND_CONSTANTS = {  # a review's findings, each differing from onnxruntime in 50 to 512 of the values before
    "a model's Cast to float32 after a float32 node reads the unrounded value":
        ([("Add", ["x", "one"], "a"), ("Cast", ["a"], "a32", {"to": FLOAT}), ("Mul", ["a32", "a32"], "y")],
         {"y": FLOAT}),
    "...and as a graph output": ([("Add", ["x", "one"], "a"), ("Cast", ["a"], "y", {"to": FLOAT})], {"y": FLOAT}),
    "...and to an integer, when only casts read it":
        ([("Add", ["x", "tiny"], "a"), ("Mul", ["a", "two"], "m"), ("Cast", ["m"], "y", {"to": TensorProto.INT64})],
         {"y": TensorProto.INT64}),
    "a float32 to float16 to float32 round trip after a float32 node rounds nothing":
        ([("Add", ["x", "one"], "a"), ("Cast", ["a"], "a32", {"to": FLOAT}), ("Cast", ["a32"], "a16", {"to": HALF}),
          ("Mul", ["a16", "one"], "y")], {"y": HALF}),
    "float32 inputs and outputs around float16 arithmetic (keep_io_types)":
        ([("Cast", ["x"], "h", {"to": HALF}), ("Mul", ["h", "one"], "m"), ("Cast", ["m"], "y", {"to": FLOAT})],
         {"y": FLOAT}, FLOAT),
    "GatherND is a float16 kernel": ([("Add", ["x", "one"], "a"), ("GatherND", ["a", "index"], "g"),
                                      ("Mul", ["g", "g"], "y"), ("Reshape", ["g", "flat"], "r")],
                                     {"y": HALF, "r": HALF}),
    "Size is not: a Reshape read by Size and a MatMul moves to float32":
        ([("Add", ["x", "one"], "a"), ("Reshape", ["a", "shape"], "r"), ("Size", ["r"], "n"),
          ("MatMul", ["w", "r"], "y")], {"y": HALF, "n": TensorProto.INT64}),
    "a Constant node's result is an initializer to onnxruntime":
        ([("Constant", [], "s", {"value": numpy_helper.from_array(np.linspace(0.5, 2, 8).astype(np.float16))}),
          ("LayerNormalization", ["x", "s"], "n"), ("MatMul", ["n", "w"], "y")], {"y": HALF}),
    "a folded float16 node computes in float32": ([("Exp", ["c"], "e"), ("Add", ["c", "one"], "s"),
                                                   ("Mul", ["e", "s"], "p"), ("Mul", ["x", "p"], "y")], {"y": HALF}),
    "a folded LayerNormalization rounds once": ([("LayerNormalization", ["c", "one"], "n"), ("Add", ["x", "n"], "y")],
                                               {"y": HALF}),
    "a tensor named like rcc's float32 copy of another": ([("Add", ["x", "one"], "a"),
                                                           ("Cast", ["x"], "a.f32", {"to": FLOAT}),
                                                           ("Mul", ["a", "one"], "y")], {"y": HALF}),
}


@pytest.mark.parametrize("case", CASTS_AND_CONSTANTS)
def test_casts_and_constants_as_onnxruntime_computes_them(case: str) -> None:
    nodes, outputs, *input_type = CASTS_AND_CONSTANTS[case]
    model = _mixed_graph(nodes, outputs, *input_type)
    dtype = np.float16 if not input_type else np.float32
    x = (np.round(np.random.default_rng(5).standard_normal((16, 8)) * 6) / 2).astype(dtype)   # halves: Cast to
    # an integer truncates x + tiny differently from its float16 rounding at negative ones
    ours = interpreter.run(lower_model(model, "casts"), {"x": x})
    theirs = dict(zip(outputs, unrewritten_onnxruntime(model, {"x": x})))
    for name in outputs:
        assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name]), name


def test_running_sums_scatters_and_grid_sampling_in_float16_bit_for_bit() -> None:
    """CumSum and GridSample have no float16 kernel in onnxruntime (computed in float32, rounded once); the
    scatters have one (ScatterElements' max included: it rounds nothing)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("CumSum", ["x", "axis"], ["running"]),
             helper.make_node("ScatterND", ["running", "rows", "u"], ["put"]),
             helper.make_node("ScatterElements", ["put", "columns", "v"], ["y"], axis=1, reduction="max"),
             helper.make_node("GridSample", ["image", "grid"], ["sampled"]),
             helper.make_node("Relu", ["sampled"], ["z"])]
    constants = [numpy_helper.from_array(np.array(1), "axis"), numpy_helper.from_array(np.array([[0], [2]]), "rows"),
                 numpy_helper.from_array(np.array([[0, 1, 1, 3]] * 3), "columns")]
    shapes = {"x": [3, 4], "u": [2, 4], "v": [3, 4], "image": [1, 2, 4, 5], "grid": [1, 3, 3, 2]}
    graph = helper.make_graph(nodes, "f16", [helper.make_tensor_value_info(n, HALF, s) for n, s in shapes.items()],
                              [helper.make_tensor_value_info(n, HALF, None) for n in ("y", "z")], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {name: (rng.standard_normal(shape) * (100 if name == "x" else 1)).astype(np.float16)
             for name, shape in shapes.items()}
    feeds["grid"] = rng.uniform(-1.2, 1.2, shapes["grid"]).astype(np.float16)
    ours = interpreter.run(lower_model(model, "f16"), feeds)
    for name, theirs in zip(("y", "z"), unrewritten_onnxruntime(model, feeds)):
        assert ours[name].dtype == theirs.dtype == np.float16 and np.array_equal(ours[name], theirs), name


def test_mixed_float16_and_float32_operands_are_refused_as_onnxruntime_refuses_them() -> None:
    model = _mixed_graph([("Add", ["x", "c32"], "y")], {"y": HALF}, extra={"c32": np.ones((16, 8), np.float32)})
    with pytest.raises(RccError, match="operand dtypes differ"):
        lower_model(model, "mixed")


def test_a_refused_output_of_a_float16_node_is_named() -> None:
    model = _mixed_graph([("Add", ["x", "one"], "a"), ("Reshape", ["a", "volume"], "r"),
                          ("MaxPool", ["r"], "d", {"kernel_shape": [2, 2, 2]})],
                         {"d": HALF, "indices": TensorProto.INT64}, extra={"volume": np.array([1, 1, 4, 4, 8], np.int64)})
    model.graph.node[2].output.append("indices")
    with pytest.raises(UnsupportedError, match="Indices output of a 3-D MaxPool"):
        lower_model(model, "maxpool")


def test_a_float16_dropouts_mask_keeps_every_element() -> None:
    model = _mixed_graph([("Add", ["x", "one"], "a"), ("Dropout", ["a"], "d"), ("Not", ["mask"], "y")],
                         {"d": HALF, "y": TensorProto.BOOL})
    model.graph.node[1].output.append("mask")
    feeds = {"x": np.random.default_rng(5).standard_normal((16, 8)).astype(np.float16)}
    ours = interpreter.run(lower_model(model, "dropout"), feeds)
    for name, theirs in zip(("d", "y"), unrewritten_onnxruntime(model, feeds)):
        assert ours[name].dtype == theirs.dtype and np.array_equal(ours[name], theirs), name


def test_the_reference_is_the_unrewritten_model_even_with_intermediates_exposed(tmp_path) -> None:
    """A model with float16 inside (here behind float32 inputs and outputs too) runs in onnxruntime unrewritten,
    and its outputs come from the model as it is: exposing an intermediate float16 tensor moves onnxruntime's
    roundings (the transformer block's output changed in 259 of 512 values)."""
    path = float16_copy(MODELS / "transformer_encoder_block.onnx", tmp_path / "block.onnx")
    assert holds_float16(onnx.load(path).graph) and not holds_float16(onnx.load(MODELS / "transformer_encoder_block.onnx").graph)
    keep_io = _mixed_graph([("Cast", ["x"], "h", {"to": HALF}), ("Mul", ["h", "one"], "y")], {"y": HALF}, FLOAT)
    assert holds_float16(keep_io.graph)
    module = import_onnx(path)
    inputs = {value.name: np.random.default_rng(6).standard_normal(value.type.shape).astype(value.type.np_dtype)
              if value.type.dtype == "f16" else np.ones(value.type.shape, value.type.np_dtype) for value in module.inputs}
    exposed = onnxruntime_runner(path, ["attn_q", "attn_scores", "mlp_gelu"])(inputs)
    assert {"attn_q", "attn_scores", "mlp_gelu"} <= set(exposed)
    assert np.array_equal(exposed["output"], unrewritten_onnxruntime(path, inputs)[0])


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
