"""The transformer ops onnxruntime's transformer optimizer writes (com.microsoft SkipLayerNormalization,
SkipSimplifiedLayerNormalization, BiasGelu, FastGelu, Gelu, QuickGelu, FusedMatMul; SimplifiedLayerNormalization)
against onnxruntime, in the interpreter and exported; an encoder block written with them on the machine (integer
and float); the one-line refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import lower_model
from rcc.ir.errors import UnsupportedError
from tests.frontend.test_index_ops import PROPERTY, SEEDS, check_model

MS = "com.microsoft"


def model_of(nodes: list[onnx.NodeProto], fed: dict[str, np.ndarray], constants: dict[str, np.ndarray],
             outputs: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "ms", [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in fed.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs.items()],
        [numpy_helper.from_array(a, n) for n, a in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


def floats(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@PROPERTY
@given(seed=SEEDS, simplified=st.booleans(), bias=st.booleans(), beta=st.booleans(), sum_output=st.booleans(),
       broadcast_skip=st.booleans())
def test_skip_layer_normalization(seed, simplified, bias, beta, sum_output, broadcast_skip) -> None:
    rng = np.random.default_rng(seed)
    x = floats(rng, 2, 5, 8)
    fed = {"x": x, "skip": floats(rng, *((5, 8) if broadcast_skip else (2, 5, 8)))}
    constants = {"gamma": floats(rng, 8)}
    names = ["x", "skip", "gamma"]
    if not simplified:
        constants["beta"] = floats(rng, 8)
        names.append("beta" if beta else "")
    if bias:
        constants["bias"] = floats(rng, 8)
        names.append("bias")
    while not names[-1]:
        names.pop()
    op = "SkipSimplifiedLayerNormalization" if simplified else "SkipLayerNormalization"
    outputs = ["y", "", "", "sum"] if sum_output else ["y"]
    node = helper.make_node(op, names, outputs, domain=MS, epsilon=1e-5)
    shapes = {"y": x.shape, **({"sum": x.shape} if sum_output else {})}
    check_model(model_of([node], fed, {k: v for k, v in constants.items() if k in names}, shapes), fed)


@PROPERTY
@given(seed=SEEDS, op=st.sampled_from(["BiasGelu", "FastGelu", "Gelu", "QuickGelu", "FastGelu-nobias"]),
       scale=st.sampled_from([0.1, 1.0, 6.0]))
def test_gelu_family(seed, op, scale) -> None:
    rng = np.random.default_rng(seed)
    fed = {"x": floats(rng, 3, 16) * np.float32(scale)}
    constants = {"bias": floats(rng, 16)} if op in ("BiasGelu", "FastGelu") else {}
    attrs = {"alpha": float(rng.uniform(0.5, 2.0))} if op == "QuickGelu" else {}
    node = helper.make_node(op.split("-")[0], ["x", *constants], ["y"], domain=MS, **attrs)
    check_model(model_of([node], fed, constants, {"y": (3, 16)}), fed)


@PROPERTY
@given(seed=SEEDS, trans_a=st.booleans(), trans_b=st.booleans(), alpha=st.sampled_from([1.0, 0.125, -2.0]),
       constant_b=st.booleans(), batched=st.booleans())
def test_fused_matmul(seed, trans_a, trans_b, alpha, constant_b, batched) -> None:
    rng = np.random.default_rng(seed)
    lead = (2,) if batched else ()
    a = floats(rng, *lead, *((6, 4) if trans_a else (4, 6)))
    b = floats(rng, *((5, 6) if trans_b else (6, 5))) if constant_b else \
        floats(rng, *lead, *((5, 6) if trans_b else (6, 5)))
    fed = {"a": a} if constant_b else {"a": a, "b": b}
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain=MS, alpha=alpha, transA=int(trans_a),
                            transB=int(trans_b))
    check_model(model_of([node], fed, {"b": b} if constant_b else {}, {"y": (*lead, 4, 5)}), fed)


def test_simplified_layer_normalization() -> None:
    rng = np.random.default_rng(0)
    fed = {"x": floats(rng, 2, 3, 8)}
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y"], axis=-1, epsilon=1e-6)
    check_model(model_of([node], fed, {"gamma": floats(rng, 8)}, {"y": (2, 3, 8)}), fed)


def encoder_block(tmp_path) -> str:
    """x → FusedMatMul (constant W, transB) → BiasGelu → MatMul → SkipLayerNormalization(skip = x, bias)."""
    rng = np.random.default_rng(3)
    constants = {"w1": floats(rng, 64, 32) / 6, "b1": floats(rng, 64), "w2": floats(rng, 64, 32) / 8,
                 "gamma": floats(rng, 32), "beta": floats(rng, 32), "b2": floats(rng, 32)}
    nodes = [helper.make_node("FusedMatMul", ["x", "w1"], ["h"], domain=MS, transB=1),
             helper.make_node("BiasGelu", ["h", "b1"], ["g"], domain=MS),
             helper.make_node("MatMul", ["g", "w2"], ["m"]),
             helper.make_node("SkipLayerNormalization", ["m", "x", "gamma", "beta", "b2"], ["y"], domain=MS)]
    path = tmp_path / "block.onnx"
    onnx.save(model_of(nodes, {"x": floats(rng, 1, 16, 32)}, constants, {"y": (1, 16, 32)}), path)
    return str(path)


@pytest.mark.parametrize("precision", ["int", "float"])
def test_an_optimized_encoder_block_verifies_on_the_machine(precision, tmp_path) -> None:
    path = encoder_block(tmp_path)
    compiled = compile_model(path, precision=precision)
    assert sum(i.opcode == "mvm" for i in compiled.program.instructions) == 2   # both weights on crossbars
    result = verify_compiled(path, compiled)
    assert result.passed, result.outputs


def test_statistics_outputs_and_batch_transposes_are_refused_in_one_line() -> None:
    rng = np.random.default_rng(0)
    fed = {"x": floats(rng, 2, 8), "skip": floats(rng, 2, 8)}
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["y", "mean"], domain=MS)
    model = model_of([node], fed, {"gamma": floats(rng, 8), "beta": floats(rng, 8)}, {"y": (2, 8), "mean": (2, 1)})
    with pytest.raises(UnsupportedError, match="mean and inverse standard deviation outputs"):
        lower_model(model, "m")
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain=MS, transBatchA=1)
    model = model_of([node], {"a": floats(rng, 2, 3, 4), "b": floats(rng, 2, 4, 5)}, {}, {"y": (2, 3, 5)})
    with pytest.raises(UnsupportedError, match="transBatchA=1"):
        lower_model(model, "m")
