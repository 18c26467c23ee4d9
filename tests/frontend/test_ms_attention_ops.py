"""The attention ops onnxruntime's transformer optimizer fuses (com.microsoft Attention, MultiHeadAttention,
EmbedLayerNormalization) against onnxruntime 1.32's CPU kernels, over their mask forms and attributes, in the
interpreter and exported; an encoder block written with them on the machine (integer and float); the one-line
refusals."""

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
B, S, HEADS = 2, 5, 2


def model_of(nodes: list[onnx.NodeProto], fed: dict[str, np.ndarray], constants: dict[str, np.ndarray],
             outputs: dict[str, int], shapes: dict[str, tuple[int, ...]] | None = None) -> onnx.ModelProto:
    """`outputs`: name → element type; their shapes, unless in `shapes`, are left to onnxruntime."""
    graph = helper.make_graph(
        nodes, "ms", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                      for n, a in fed.items()],
        [helper.make_tensor_value_info(n, kind, (shapes or {}).get(n)) for n, kind in outputs.items()],
        [numpy_helper.from_array(a, n) for n, a in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


def floats(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def node_inputs(named: list[tuple[str, np.ndarray | None]]) -> list[str]:
    """Input names with "" for the absent ones, trailing ones dropped."""
    names = [name if array is not None else "" for name, array in named]
    while names and not names[-1]:
        names.pop()
    return names


def mask_of(rng: np.random.Generator, form: str, queries: int, total: int, anywhere: bool) -> np.ndarray | None:
    """An int32 mask of `form`. Unless `anywhere`, key 0 always attends, so no row is masked whole: such a row
    is a softmax of scores shifted by -10000, whose last bits depend on how the sum was rounded."""
    low = 0 if anywhere else 1
    if form == "none":
        return None
    if form in ("ends", "ends+starts", "3B+2"):
        ends = rng.integers(low, total + 2, B)
        extra = {"ends": [], "ends+starts": rng.integers(0, total + 2, B) * anywhere,
                 "3B+2": rng.integers(0, total, 2 * B + 2)}[form]
        return np.concatenate([ends, extra]).astype(np.int32)
    if form == "dummy":
        return rng.integers(0, 2, (B, 1)).astype(np.int32)
    mask = rng.integers(-1, 3, (B, total) if form == "2d" else (B, queries, total)).astype(np.int32)
    if not anywhere:
        mask[..., 0] = 1
    return mask


@PROPERTY
@given(seed=SEEDS, mask=st.sampled_from(["none", "ends", "ends+starts", "3B+2", "2d", "3d", "dummy"]),
       unidirectional=st.booleans(), sizes=st.sampled_from([None, (4, 4, 6), (2, 2, 8)]), bias=st.booleans(),
       attention_bias=st.sampled_from([None, (B, HEADS), (1, HEADS), (B, 1), (1, 1)]), past=st.booleans(),
       scale=st.sampled_from([None, 0.3]), filter_value=st.sampled_from([None, -3.0]))
def test_attention(seed, mask, unidirectional, sizes, bias, attention_bias, past, scale, filter_value) -> None:
    rng = np.random.default_rng(seed)
    past = past and not sizes   # onnxruntime takes past with equal K and V sizes only
    past_length = 3 if past else 0
    total = S + past_length
    width = sum(sizes) if sizes else 12
    fed = {"x": floats(rng, B, S, 6)}
    constants = {"w": floats(rng, 6, width) / 2, "b": floats(rng, width) if bias else None}
    fed_optional = {"m": mask_of(rng, mask, S, total, anywhere=filter_value is not None),
                    "past": floats(rng, 2, B, HEADS, past_length, width // 3 // HEADS) if past else None,
                    "bias": floats(rng, *attention_bias, S, total) if attention_bias and not past else None}
    fed.update({k: v for k, v in fed_optional.items() if v is not None})
    attrs = {"num_heads": HEADS, "unidirectional": int(unidirectional),
             **({"qkv_hidden_sizes": sizes} if sizes else {}), **({"scale": scale} if scale else {}),
             **({"mask_filter_value": filter_value} if filter_value else {})}
    names = node_inputs([("x", 0), ("w", 0), ("b", constants["b"]), ("m", fed_optional["m"]),
                         ("past", fed_optional["past"]), ("bias", fed_optional["bias"])])
    results = ["y", "present"] if past else ["y"]   # onnxruntime needs present with past
    node = helper.make_node("Attention", names, results, domain=MS, **attrs)
    outputs = dict.fromkeys(results, TensorProto.FLOAT)
    check_model(model_of([node], fed, {k: v for k, v in constants.items() if v is not None}, outputs), fed)


@PROPERTY
@given(seed=SEEDS, mask=st.sampled_from(["none", "ends", "3B+2", "2d", "3d"]), unidirectional=st.booleans(),
       split_kv=st.booleans(), bias=st.booleans(), keys=st.sampled_from([S, 3, 7]), past=st.booleans(),
       attention_bias=st.sampled_from([None, (B, HEADS), (1, 1)]), outputs=st.booleans(),
       filter_value=st.sampled_from([None, -3.0]))
def test_multi_head_attention(seed, mask, unidirectional, split_kv, bias, keys, past, attention_bias, outputs,
                              filter_value) -> None:
    """Self and cross attention (keys ≠ S: the kernel's causal mask leaves the last query row whole), key and
    value given as [B, L, D] or split into heads, past keys and values, present and qk outputs."""
    rng = np.random.default_rng(seed)
    past = past and not split_kv
    total = keys + 3 * past
    width = 6
    value_width = width if past or split_kv else 8   # onnxruntime's V heads match K's when split or with a past
    fed = {"q": floats(rng, B, S, width),
           "k": floats(rng, B, HEADS, keys, width // HEADS) if split_kv else floats(rng, B, keys, width),
           "v": floats(rng, B, HEADS, keys, value_width // HEADS) if split_kv else floats(rng, B, keys, value_width)}
    optional = {"bias": floats(rng, 2 * width + value_width) if bias else None,
                "m": mask_of(rng, mask, S, total, anywhere=filter_value is not None),
                "ab": floats(rng, *attention_bias, S, total) if attention_bias else None,
                "pk": floats(rng, B, HEADS, 3, width // HEADS) if past else None,
                "pv": floats(rng, B, HEADS, 3, value_width // HEADS) if past else None}
    fed.update({k: v for k, v in optional.items() if v is not None})
    names = node_inputs([("q", 0), ("k", 0), ("v", 0), *optional.items()])
    results = ["y", "present_key", "present_value", "qk"] if outputs or past else ["y"]
    node = helper.make_node("MultiHeadAttention", names, results, domain=MS, num_heads=HEADS,
                            unidirectional=int(unidirectional),
                            **({"mask_filter_value": filter_value} if filter_value else {}))
    check_model(model_of([node], fed, {}, dict.fromkeys(results, TensorProto.FLOAT)), fed)


@PROPERTY
@given(seed=SEEDS, segments=st.booleans(), mask=st.booleans(), positions=st.sampled_from([None, (B, S), (1, S)]),
       embedding_sum=st.booleans(), epsilon=st.sampled_from([None, 1e-5]))
def test_embed_layer_normalization(seed, segments, mask, positions, embedding_sum, epsilon) -> None:
    rng = np.random.default_rng(seed)
    fed = {"ids": rng.integers(0, 11, (B, S)).astype(np.int32)}
    optional = {"segments": rng.integers(0, 2, (B, S)).astype(np.int32) if segments else None,
                "mask": rng.integers(-1, 3, (B, S)).astype(np.int32) if mask else None,   # counts only the 1s
                "positions": rng.integers(0, 7, positions).astype(np.int32) if positions else None}
    fed.update({k: v for k, v in optional.items() if v is not None})
    constants = {"words": floats(rng, 11, 8), "position_table": floats(rng, 7, 8), "gamma": floats(rng, 8),
                 "beta": floats(rng, 8), **({"segment_table": floats(rng, 2, 8)} if segments else {})}
    names = node_inputs([("ids", 0), ("segments", optional["segments"]), ("words", 0), ("position_table", 0),
                         ("segment_table", optional["segments"]), ("gamma", 0), ("beta", 0),
                         ("mask", optional["mask"]), ("positions", optional["positions"])])
    results = ["y", "mask_index", *(["sum"] if embedding_sum else [])]   # onnxruntime infers no type for y alone
    node = helper.make_node("EmbedLayerNormalization", names, results, domain=MS,
                            **({"epsilon": epsilon} if epsilon else {}))
    kinds = {"y": TensorProto.FLOAT, "mask_index": TensorProto.INT32, "sum": TensorProto.FLOAT}
    check_model(model_of([node], fed, constants, {name: kinds[name] for name in results}), fed)


def encoder_block(tmp_path) -> str:
    """ids, mask → EmbedLayerNormalization → Attention (its mask_index) → MatMul → SkipLayerNormalization →
    Q, K, V MatMuls → MultiHeadAttention (the raw mask, causal) → output."""
    rng = np.random.default_rng(5)
    hidden, vocabulary = 16, 20
    constants = {"words": floats(rng, vocabulary, hidden), "position_table": floats(rng, 8, hidden),
                 "gamma": np.ones(hidden, np.float32), "beta": floats(rng, hidden) / 4,
                 "qkv": floats(rng, hidden, 3 * hidden) / 4, "qkv_bias": floats(rng, 3 * hidden) / 4,
                 "out": floats(rng, hidden, hidden) / 4, "ln_bias": floats(rng, hidden) / 4,
                 **{f"w{part}": floats(rng, hidden, hidden) / 4 for part in "qkv"},
                 "mha_bias": floats(rng, 3 * hidden) / 4}
    nodes = [helper.make_node("EmbedLayerNormalization", ["ids", "", "words", "position_table", "", "gamma", "beta",
                                                          "mask"], ["embedded", "mask_index"], domain=MS),
             helper.make_node("Attention", ["embedded", "qkv", "qkv_bias", "mask_index"], ["attended"], domain=MS,
                              num_heads=2),
             helper.make_node("MatMul", ["attended", "out"], ["projected"]),
             helper.make_node("SkipLayerNormalization", ["projected", "embedded", "gamma", "ln_bias"], ["h"],
                              domain=MS),
             *(helper.make_node("MatMul", ["h", f"w{part}"], [part]) for part in "qkv"),
             helper.make_node("MultiHeadAttention", ["q", "k", "v", "mha_bias", "mask"], ["y"], domain=MS,
                              num_heads=4, unidirectional=1)]
    fed = {"ids": np.zeros((1, 8), np.int32), "mask": np.zeros((1, 8), np.int32)}
    path = tmp_path / "block.onnx"
    onnx.save(model_of(nodes, fed, constants, {"y": TensorProto.FLOAT}, {"y": (1, 8, hidden)}), path)
    return str(path)


@pytest.mark.parametrize("precision", ["int", "float"])
def test_an_encoder_block_of_fused_attention_verifies_on_the_machine(precision, tmp_path) -> None:
    path = encoder_block(tmp_path)
    compiled = compile_model(path, precision=precision)
    assert sum(i.opcode == "mvm" for i in compiled.program.instructions) == 5   # every constant weight on crossbars
    inputs = {"ids": np.array([[3, 1, 4, 1, 5, 9, 2, 6]], np.int32), "mask": np.array([[1, 1, 1, 1, 1, 1, 0, 0]],
                                                                                        np.int32)}
    result = verify_compiled(path, compiled, inputs=inputs)
    assert result.passed, result.outputs


def lowered(node: onnx.NodeProto, fed: dict[str, np.ndarray], constants: dict[str, np.ndarray]) -> None:
    lower_model(model_of([node], fed, constants, {"y": TensorProto.FLOAT}), "m")


def test_forms_the_cpu_kernel_does_not_run_are_refused_in_one_line() -> None:
    rng = np.random.default_rng(0)
    x, weights = {"x": floats(rng, B, S, 6)}, {"w": floats(rng, 6, 12), "b": floats(rng, 12)}
    refusals = [
        (helper.make_node("Attention", ["x", "w", "b", "m"], ["y"], domain=MS, num_heads=HEADS),
         {**x, "m": np.ones((B, 1, S, S), np.int32)}, r"mask of shape \[2, 1, 5, 5\] .* rcc lowers \[B\], \[2B\]"),
        (helper.make_node("Attention", ["x", "w", "b"], ["y"], domain=MS, num_heads=HEADS, do_rotary=1), x,
         "rotary embeddings"),
        (helper.make_node("Attention", ["x", "w", "b", "", "past", "", "past_length"], ["y", "present"], domain=MS,
                          num_heads=HEADS, past_present_share_buffer=1),
         {**x, "past": floats(rng, 2, B, HEADS, 8, 2), "past_length": np.array([3], np.int32)},
         "shared past/present buffer"),
        (helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "", "", "pk", "pv"], ["y"], domain=MS,
                          num_heads=HEADS),
         {"q": floats(rng, B, S, 4), "k": floats(rng, B, S, 4), "v": floats(rng, B, S, 4),
          "pk": floats(rng, B, HEADS, 3, 2), "pv": floats(rng, B, HEADS, 3, 2)}, "without both present outputs"),
        (helper.make_node("MultiHeadAttention", ["qkv"], ["y"], domain=MS, num_heads=HEADS),
         {"qkv": floats(rng, B, S, HEADS, 3, 2)}, "packed QKV or packed KV"),
        (helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "m"], ["y"], domain=MS, num_heads=HEADS),
         {"q": floats(rng, B, S, 4), "k": floats(rng, B, S, 4), "v": floats(rng, B, S, 4),
          "m": np.ones(2 * B, np.int32)}, r"mask of shape \[4\] .* rcc lowers \[B\], \[3B\+2\], \[B, T\]"),
    ]
    for node, fed, message in refusals:
        with pytest.raises(UnsupportedError, match=message) as refused:
            lowered(node, fed, weights)
        assert "\n" not in str(refused.value) and f"({node.op_type})" in str(refused.value)
