"""Frontend tests of the logic, reduction and transformer ops: every opset form of the reductions, Mean,
Hardmax, LayerNormalization, Gelu, SiLU and Mish patterns, CumSum's position ids from an attention mask,
scatters of token ids, warping by GridSample, bool mask paths on the machine (float and
integer mode), one-line errors naming the node, and constant folding that falls back to onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.onnx_export import export_onnx
from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from rcc.ir.errors import RccError, UnsupportedError
from tests.backends.test_onnx_export import run_export
from tests.frontend.test_more_ops import _check_against_onnxruntime
from tests.frontend.through_cli import compile_verified

FLOAT = TensorProto.FLOAT


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple], outputs: list[str] | dict[str, tuple],
           opset: int = 17, initializers: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A model of `nodes`; tensors named "best" or "ids" are int64 and "keep_mask" bool, others float;
    output shapes when `outputs` is a dict."""
    shapes = outputs if isinstance(outputs, dict) else dict.fromkeys(outputs)
    types = {"best": TensorProto.INT64, "ids": TensorProto.INT64, "keep_mask": TensorProto.BOOL}
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info(n, types.get(n, FLOAT), s)
                                             for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, types.get(n, FLOAT), shape) for n, shape in shapes.items()],
                              [numpy_helper.from_array(a, n) for n, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("opset", [11, 13, 17, 18])
@pytest.mark.parametrize(("op_type", "axes", "keepdims"), [
    ("ReduceSum", [1], 1), ("ReduceMean", [-1, 1], 0), ("ReduceMax", None, 1), ("ReduceL2", [0, 2], 0),
    ("ReduceLogSumExp", [-2], 1), ("ReduceSumSquare", None, 0)])
def test_reductions_in_every_opset_form(op_type: str, axes: list | None, keepdims: int, opset: int) -> None:
    as_input = opset >= (13 if op_type == "ReduceSum" else 18)
    initializers = {"axes": np.array(axes, np.int64)} if as_input and axes is not None else {}
    inputs = ["x", "axes"] if initializers else ["x"]
    attrs = {"keepdims": keepdims} if as_input or axes is None else {"keepdims": keepdims, "axes": axes}
    node = helper.make_node(op_type, inputs, ["y"], **attrs)
    _check_against_onnxruntime(_model([node], {"x": (2, 3, 4)}, ["y"], opset, initializers))


def test_empty_axes_with_noop_is_an_identity() -> None:
    nodes = [helper.make_node("ReduceSum", ["x", "none"], ["y"], noop_with_empty_axes=1),
             helper.make_node("ReduceMax", ["x"], ["z"], noop_with_empty_axes=0)]
    model = _model(nodes, {"x": (2, 3)}, ["y", "z"], 18, {"none": np.zeros(0, np.int64)})
    assert [op.opname for op in lower_model(model, "ops").ops] == ["nn.identity", "nn.reduce_max"]
    _check_against_onnxruntime(model)


@pytest.mark.parametrize("opset", [8, 13])
def test_mean_is_variadic_and_broadcasts(opset: int) -> None:
    nodes = [helper.make_node("Mean", ["a", "b", "c"], ["m"]), helper.make_node("Mean", ["a"], ["one"])]
    _check_against_onnxruntime(_model(nodes, {"a": (2, 3), "b": (3,), "c": (1, 1)}, ["m", "one"], opset))


@pytest.mark.parametrize(("opset", "axis"), [(11, 1), (11, 0), (13, 0), (13, -2)])
def test_softmax_family_on_any_axis(opset: int, axis: int) -> None:
    nodes = [helper.make_node(op, ["x"], [op.lower()], axis=axis) for op in ("Softmax", "LogSoftmax", "Hardmax")]
    _check_against_onnxruntime(_model(nodes, {"x": (2, 3, 4)}, ["softmax", "logsoftmax", "hardmax"], opset))


def test_layer_norm_gelu_silu_and_mish_patterns() -> None:
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-3),
             helper.make_node("LayerNormalization", ["x", "gamma2"], ["ln2"], axis=1),
             helper.make_node("Gelu", ["ln"], ["gelu"]), helper.make_node("Gelu", ["ln"], ["gelu_tanh"], approximate="tanh"),
             helper.make_node("Sigmoid", ["x"], ["sig"]), helper.make_node("Mul", ["x", "sig"], ["silu"]),
             helper.make_node("Softplus", ["x"], ["sp"]), helper.make_node("Tanh", ["sp"], ["th"]),
             helper.make_node("Mul", ["x", "th"], ["mish_pattern"]), helper.make_node("Mish", ["x"], ["mish"]),
             helper.make_node("HardSwish", ["x"], ["hswish"]),
             helper.make_node("HardSigmoid", ["x"], ["hsig"], alpha=0.25, beta=0.4)]
    weights = {"gamma": rng.standard_normal(4).astype(np.float32), "beta": rng.standard_normal(4).astype(np.float32),
               "gamma2": rng.standard_normal((3, 4)).astype(np.float32)}
    outputs = ["gelu", "gelu_tanh", "ln2", "silu", "mish_pattern", "mish", "hswish", "hsig"]
    _check_against_onnxruntime(_model(nodes, {"x": (2, 3, 4)}, outputs, 20, weights))


def _mask_model() -> onnx.ModelProto:
    """Token ids (int64) and a bool mask input select x → Where(mask, x, −4) → MatMul, gated by bool logic
    on the mask and the product; ArgMax gives int64 indices."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Less", ["x", "threshold"], ["below"]),
             helper.make_node("Equal", ["ids", "pad_id"], ["padding"]),
             helper.make_node("Xor", ["below", "padding"], ["either"]),
             helper.make_node("And", ["either", "keep_mask"], ["mask"]),
             helper.make_node("Where", ["mask", "x", "fill"], ["masked"]),
             helper.make_node("MatMul", ["masked", "w"], ["h"]),
             helper.make_node("Greater", ["h", "zero"], ["positive"]),
             helper.make_node("Not", ["mask"], ["unmasked"]),
             helper.make_node("Cast", ["unmasked"], ["unmasked_f"], to=FLOAT),
             helper.make_node("ReduceMax", ["unmasked_f"], ["count"], axes=[1], keepdims=1),
             helper.make_node("Greater", ["count", "zero"], ["any"]),
             helper.make_node("Or", ["positive", "any"], ["keep"]),
             helper.make_node("Cast", ["keep"], ["gate"], to=FLOAT),
             helper.make_node("Mul", ["h", "gate"], ["y"]),
             helper.make_node("ArgMax", ["h"], ["best"], axis=1)]
    weights = {"threshold": np.array(0.3, np.float32), "fill": np.array(-4.0, np.float32), "pad_id": np.array(0),
               "zero": np.array(0.0, np.float32), "w": rng.standard_normal((8, 6)).astype(np.float32)}
    return _model(nodes, {"x": (4, 8), "ids": (4, 8), "keep_mask": (4, 1)}, {"y": (4, 6), "best": (4, 1)}, 17, weights)


def test_mask_path_exports_and_matches_onnxruntime() -> None:
    _check_against_onnxruntime(_mask_model())


@pytest.mark.parametrize("precision", ["float", "int"])
def test_bool_mask_path_runs_on_the_machine(precision: str, tmp_path: Path) -> None:
    path = tmp_path / "mask.onnx"
    onnx.save(_mask_model(), path)
    program = compile_verified(path, precision, tmp_path)
    vec_fns = {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}
    assert {"nn.less", "nn.equal", "nn.logical_and", "nn.where", "nn.cast", "nn.logical_or", "nn.argmax"} <= vec_fns
    dtypes = {spec["name"]: spec["dtype"] for spec in program.inputs}
    dtypes.update({name: str(array.dtype) for name, array in program.constants.items()})
    for instruction in program.instructions:
        dtypes.update(zip(instruction.dst, instruction.dtypes))
    quantized = [i for i in program.instructions if i.opcode in ("quantize", "dequantize")]
    assert any(i.opcode == "quantize" for i in quantized) == (precision == "int")
    # only the float activation feeding the crossbar is quantised, and only float results are dequantised
    assert all(dtypes[i.src[0]] == "f32" for i in quantized if i.opcode == "quantize")
    assert all(dtypes[name] == "f32" for i in quantized if i.opcode == "dequantize" for name in i.dst)


@pytest.mark.parametrize(("node", "opset", "message"), [
    (helper.make_node("Gelu", ["x"], ["y"], name="act", approximate="erf"), 20,
     "node 'act' (Gelu): attribute approximate='erf' is not 'none' or 'tanh'"),
    (helper.make_node("ReduceMean", ["x"], ["y"], name="pool", axes=[1]), 18,
     "node 'pool' (ReduceMean): attribute axes is not part of ReduceMean-18; axes are its input"),
    (helper.make_node("ReduceMean", ["x"], ["y"], name="pool", axes=[1, -1]), 17,
     "node 'pool' (ReduceMean): axes [1, -1] are out of range or repeated for rank 2"),
    (helper.make_node("ArgMax", ["x"], ["y"], name="pick", axis=2), 13,
     "node 'pick' (ArgMax): axis 2 is out of range for rank 2"),
    (helper.make_node("Cast", ["x"], ["y"], name="text", to=TensorProto.STRING), 13,
     "node 'text' (Cast): cast to STRING, an element type rcc does not carry"),
    (helper.make_node("Cast", ["x"], ["y"], name="narrow", to=TensorProto.FLOAT8E8M0, round_mode="upward"), 24,
     "node 'narrow' (Cast): attribute round_mode='upward' is not one of up, down, nearest"),
    (helper.make_node("Mod", ["x", "x"], ["y"], name="rest"), 18,
     "node 'rest' (Mod): Mod-18 of f32 needs fmod=1 (a float remainder with fmod=0: opset 28)"),
    (helper.make_node("CumSum", ["x", "x"], ["y"], name="running"), 14,
     "node 'running' (CumSum): input axis ('x') must be a compile-time constant"),
    (helper.make_node("CumSum", ["x", "two"], ["y"], name="running"), 14,
     "node 'running' (CumSum): axis 2 is out of range for rank 2"),
    (helper.make_node("CumSum", ["x", "one"], ["y"], name="running", reverse=2), 14,
     "node 'running' (CumSum): attribute reverse=2 is not 0 or 1"),
])
def test_bad_attributes_are_one_line_errors_naming_the_node(node: onnx.NodeProto, opset: int, message: str) -> None:
    with pytest.raises(RccError) as caught:
        lower_model(_model([node], {"x": (2, 2)}, ["y"], opset, {"two": np.array(2), "one": np.array([1])}), "bad.onnx")
    assert str(caught.value) == f"bad.onnx: {message}"


def test_folding_falls_back_to_onnxruntime_where_the_reference_evaluator_fails() -> None:
    """onnx 1.23's reference GatherElements breaks on an axis of 64 or more entries (as in BERT's position ids)."""
    table = np.arange(64, dtype=np.int64).reshape(1, 64) * 3
    index = np.arange(16, dtype=np.int64).reshape(1, 16)[:, ::-1].copy()
    nodes = [helper.make_node("GatherElements", ["table", "index"], ["ids"], axis=1),
             helper.make_node("Cast", ["ids"], ["ids_f"], to=FLOAT), helper.make_node("Add", ["x", "ids_f"], ["y"])]
    model = _model(nodes, {"x": (1, 16)}, ["y"], 17, {"table": table, "index": index})
    module = lower_model(model, "bert.onnx")
    x = np.zeros((1, 16), np.float32)
    np.testing.assert_array_equal(interpreter.run(module, {"x": x})["y"], (table[0, 15::-1] * 1.0)[None])


def test_folding_that_both_evaluators_refuse_names_the_node_and_both() -> None:
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["bad"], name="fold_me"),
             helper.make_node("Add", ["x", "bad"], ["y"])]
    model = _model(nodes, {"x": (2, 3)}, ["y"], 17, {"w": np.ones(6, np.float32), "shape": np.array([4, 2], np.int64)})
    with pytest.raises(RccError) as caught:
        lower_model(model, "broken.onnx")
    text = str(caught.value)
    assert text.startswith("broken.onnx: node 'fold_me' (Reshape): cannot evaluate on constant inputs: onnx's "
                           "reference evaluator: ") and "; onnxruntime: " in text and "\n" not in text


def test_transformer_layer_runs_on_the_machine(tmp_path: Path) -> None:
    """MatMul → LayerNorm → Gelu → MatMul with a residual, ReduceMean pooling and Softmax over axis 1."""
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["ln"], axis=-1),
             helper.make_node("Gelu", ["ln"], ["act"]), helper.make_node("MatMul", ["act", "w2"], ["o"]),
             helper.make_node("Add", ["o", "x"], ["res"]),
             helper.make_node("ReduceMean", ["res", "axes"], ["pooled"], keepdims=0),
             helper.make_node("Softmax", ["res"], ["y"], axis=1)]
    weights = {"w1": rng.standard_normal((8, 16)).astype(np.float32) / 3,
               "w2": rng.standard_normal((16, 8)).astype(np.float32) / 4,
               "gamma": rng.uniform(0.5, 1.5, 16).astype(np.float32), "beta": rng.standard_normal(16).astype(np.float32),
               "axes": np.array([1])}
    path = tmp_path / "layer.onnx"
    onnx.save(_model(nodes, {"x": (1, 5, 8)}, {"y": (1, 5, 8), "pooled": (1, 8)}, 20, weights), path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert {"nn.layer_norm", "nn.gelu", "nn.reduce_mean", "nn.softmax"} <= \
            {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}


def _position_ids_model(opset: int, axis: np.ndarray) -> onnx.ModelProto:
    """RoBERTa's, OPT's and BLOOM's position ids: the running count of unmasked tokens (CumSum of the int64
    attention mask, here the positive ids), masked, offset, looked up in a position table and added to the
    token features before a MatMul; plus an exclusive, reversed running sum of the float features."""
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Greater", ["ids", "zero"], ["unmasked"]),
             helper.make_node("Cast", ["unmasked"], ["mask"], to=TensorProto.INT64),
             helper.make_node("CumSum", ["mask", "axis"], ["count"]),
             helper.make_node("Mul", ["count", "mask"], ["kept"]),
             helper.make_node("Add", ["kept", "offset"], ["positions"]),
             helper.make_node("Gather", ["table", "positions"], ["embedded"]),
             helper.make_node("Add", ["x", "embedded"], ["features"]),
             helper.make_node("CumSum", ["features", "axis"], ["tail"], exclusive=1, reverse=1),
             helper.make_node("MatMul", ["tail", "w"], ["y"])]
    weights = {"axis": axis, "zero": np.array(0, np.int64), "offset": np.array(1, np.int64),
               "table": rng.standard_normal((10, 6)).astype(np.float32), "w": rng.standard_normal((6, 4)).astype(np.float32)}
    return _model(nodes, {"x": (1, 8, 6), "ids": (1, 8)}, {"y": (1, 8, 4)}, opset, weights)


@pytest.mark.parametrize(("opset", "axis"), [(11, np.array(1, np.int64)), (14, np.array([-2], np.int32))])
def test_cumsum_position_ids_run_on_the_machine(opset: int, axis: np.ndarray, tmp_path: Path) -> None:
    model = _position_ids_model(opset, axis)
    if axis.ndim:  # -2 is the token axis of the features; the mask has rank 2, so only the features take it
        model.graph.node[2].input[1] = "mask_axis"
        model.graph.initializer.append(numpy_helper.from_array(np.array(1, np.int64), "mask_axis"))
    _check_against_onnxruntime(model)
    path = tmp_path / "positions.onnx"
    onnx.save(model, path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert "nn.cumsum" in {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}


def test_shifted_token_ids_scatter_on_the_machine(tmp_path: Path) -> None:
    """BART's decoder input: the token ids shifted right by one (ScatterND of ids[:, :-1] into a tensor of
    start tokens), looked up in an embedding table and fed to a MatMul; and a ScatterElements adding the
    features of every token into its id's row (a segment sum)."""
    rng = np.random.default_rng(12)
    nodes = [helper.make_node("Slice", ["ids", "zero", "minus_one", "one"], ["head"]),
             helper.make_node("ScatterND", ["starts", "slots", "head"], ["shifted"]),
             helper.make_node("Gather", ["table", "shifted"], ["embedded"]),
             helper.make_node("ScatterElements", ["rows", "segments", "x"], ["pooled"], axis=0, reduction="add"),
             helper.make_node("MatMul", ["embedded", "w"], ["y"])]
    weights = {"zero": np.array([0]), "minus_one": np.array([-1]), "one": np.array([1]),
               "starts": np.full((1, 8), 2, np.int64), "slots": np.array([[[0, t] for t in range(1, 8)]]),
               "table": rng.standard_normal((300, 6)).astype(np.float32),
               "rows": np.zeros((3, 6), np.float32), "segments": np.array([[0] * 6, [2] * 6, [0] * 6, [1] * 6]),
               "w": rng.standard_normal((6, 4)).astype(np.float32)}
    model = _model(nodes, {"ids": (1, 8), "x": (4, 6)}, {"y": (1, 8, 4), "pooled": (3, 6)}, 18, weights)
    _check_against_onnxruntime(model)
    path = tmp_path / "shifted.onnx"
    onnx.save(model, path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert {"nn.scatter_nd", "nn.scatter_elements"} <= {i.attrs["fn"] for i in program.instructions
                                                            if i.opcode == "vec"}


def test_warping_by_a_computed_flow_on_the_machine(tmp_path: Path) -> None:
    """RAFT's warp: features from a convolution sampled (GridSample, bilinear, zeros) at an identity grid moved
    by a flow that a second convolution computes from the input, then a convolution of the warped features."""
    rng = np.random.default_rng(13)
    ys, xs = np.meshgrid(np.linspace(-1, 1, 6), np.linspace(-1, 1, 6), indexing="ij")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["features"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w_flow"], ["flow"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["flow"], ["flow_last"], perm=[0, 2, 3, 1]),
             helper.make_node("Add", ["identity", "flow_last"], ["grid"]),
             helper.make_node("GridSample", ["features", "grid"], ["warped"], align_corners=1),
             helper.make_node("Conv", ["warped", "w2"], ["y"])]
    weights = {"w1": rng.standard_normal((4, 2, 3, 3)).astype(np.float32) / 3,
               "w_flow": rng.standard_normal((2, 2, 3, 3)).astype(np.float32) / 10,
               "identity": np.stack([xs, ys], axis=-1)[None].astype(np.float32),
               "w2": rng.standard_normal((3, 4, 1, 1)).astype(np.float32)}
    path = tmp_path / "warp.onnx"
    onnx.save(_model(nodes, {"x": (1, 2, 6, 6)}, {"y": (1, 3, 6, 6)}, 16, weights), path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert "nn.grid_sample" in {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}


def test_run_time_math_on_the_machine(tmp_path: Path) -> None:
    """A sinusoidal encoding of run-time positions (a NeRF's or a rotary embedding's Sin and Cos of a MatMul's
    output, of tanh(x), whose range random calibration inputs cover); rounding and remainders of the model's input, an output of their own (of a product, any rounding
    difference of the machine could move a value across an integer); NaN and infinity tests; integer
    bit operations on token ids feeding an embedding look-up."""
    rng = np.random.default_rng(14)
    smooth, steps = ["Sin", "Cos", "Atan", "Sinh", "Asinh"], ["Floor", "Ceil", "Round"]
    nodes = [helper.make_node("Tanh", ["x"], ["squashed"]), helper.make_node("MatMul", ["squashed", "w"], ["h"]),
             *[helper.make_node(op, ["h"], [op.lower()]) for op in smooth],
             *[helper.make_node(op, ["x"], [op.lower()]) for op in steps],
             helper.make_node("Mod", ["x", "three"], ["wrapped"], fmod=1),
             helper.make_node("Concat", [op.lower() for op in smooth], ["encoded"], axis=-1),
             helper.make_node("Concat", [op.lower() for op in steps] + ["wrapped"], ["stepped"], axis=-1),
             helper.make_node("IsInf", ["encoded"], ["infinite"]), helper.make_node("IsNaN", ["encoded"], ["nan"]),
             helper.make_node("Or", ["infinite", "nan"], ["bad"]),
             helper.make_node("Where", ["bad", "zero", "encoded"], ["clean"]),
             helper.make_node("MatMul", ["clean", "w2"], ["y"]),
             helper.make_node("BitwiseAnd", ["ids", "low_bits"], ["masked"]),
             helper.make_node("BitwiseXor", ["masked", "flip"], ["flipped"]),
             helper.make_node("Mod", ["flipped", "eight"], ["row"]),
             helper.make_node("Gather", ["table", "row"], ["best"])]
    weights = {"w": rng.standard_normal((4, 6)).astype(np.float32), "three": np.array(0.75, np.float32),
               "zero": np.array(0.0, np.float32), "w2": rng.standard_normal((30, 5)).astype(np.float32),
               "low_bits": np.array(7), "flip": np.array(5), "eight": np.array(8), "table": np.arange(8) * 10}
    model = _model(nodes, {"x": (3, 4), "ids": (3, 4)}, {"y": (3, 5), "stepped": (3, 16), "best": (3, 4)}, 18, weights)
    _check_against_onnxruntime(model)
    path = tmp_path / "math.onnx"
    onnx.save(model, path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert {"nn.sin", "nn.floor", "nn.mod", "nn.isinf", "nn.bitwise_xor"} <= \
            {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}


@pytest.mark.parametrize(("dtype", "axis", "stash_type"), [(np.float32, -1, 1), (np.float32, 1, 11),
                                                             (np.float64, -1, 1), (np.float16, -1, 1)])
def test_rms_normalization_matches_onnxruntime(dtype: type, axis: int, stash_type: int) -> None:
    """Opset 23's RMSNormalization: bit for bit on rows of up to 8 values, within float rounding beyond."""
    rng = np.random.default_rng(15)
    for length in (7, 64):
        x = (rng.standard_normal((2, 3, length)) * 3).astype(dtype)
        scale = rng.standard_normal(x.shape[axis:] if axis >= 0 else (length,)).astype(dtype)
        node = helper.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=axis, stash_type=stash_type,
                                epsilon=1e-3)
        graph = helper.make_graph([node], "rms", [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(
            x.dtype), x.shape)], [helper.make_empty_tensor_value_info("y")], [numpy_helper.from_array(scale, "scale")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
        ours = interpreter.run(lower_model(model, "rms"), {"x": x})["y"]
        [theirs] = run_export(model, {"x": x}).values()
        if np.prod(x.shape[axis:]) <= 8:   # up to 8 squares: summed in the same order
            np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_allclose(ours, theirs, rtol=1e-3 if dtype == np.float16 else 1e-5, atol=1e-6)
        np.testing.assert_allclose(run_export(export_onnx(lower_model(model, "rms")), {"x": x})["y"], theirs,
                                   rtol=1e-3 if dtype == np.float16 else 1e-5, atol=1e-6)


def test_llm_router_block_on_the_machine(tmp_path: Path) -> None:
    """RMSNormalization and a Swish MLP (opset 24), a mixture-of-experts router's TopK of the token scores with
    its indices one-hot encoded, and a causal Trilu mask."""
    rng = np.random.default_rng(16)
    nodes = [helper.make_node("RMSNormalization", ["x", "gain"], ["normed"]),
             helper.make_node("MatMul", ["normed", "w1"], ["hidden"]), helper.make_node("Swish", ["hidden"], ["act"]),
             helper.make_node("MatMul", ["act", "w2"], ["y"]),
             helper.make_node("TopK", ["scores", "two"], ["top", "experts"], axis=-1),
             helper.make_node("OneHot", ["experts", "four", "off_on"], ["routes"]),
             helper.make_node("ReduceSum", ["routes", "minus_two"], ["load"], keepdims=0),
             helper.make_node("Trilu", ["scores_square"], ["causal"], upper=0),
             helper.make_node("MatMul", ["causal", "top"], ["mixed"])]
    weights = {"gain": rng.uniform(0.5, 1.5, 8).astype(np.float32), "w1": rng.standard_normal((8, 16)).astype(np.float32) / 3,
               "w2": rng.standard_normal((16, 8)).astype(np.float32) / 4, "two": np.array([2]), "four": np.array(4),
               "off_on": np.array([0.0, 1.0], np.float32), "minus_two": np.array([-2])}
    graph = helper.make_graph(nodes, "router", [helper.make_tensor_value_info("x", FLOAT, (5, 8)),
                                                helper.make_tensor_value_info("scores", FLOAT, (5, 4)),
                                                helper.make_tensor_value_info("scores_square", FLOAT, (5, 5))],
                              [helper.make_tensor_value_info(n, FLOAT, shape)
                               for n, shape in (("y", (5, 8)), ("load", (5, 4)), ("mixed", (5, 2)))],
                              [numpy_helper.from_array(a, n) for n, a in weights.items()])
    path = tmp_path / "router.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)]), path)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert {"nn.rms_norm", "nn.top_k_indices", "nn.one_hot", "nn.trilu"} <= \
            {i.attrs["fn"] for i in program.instructions if i.opcode == "vec"}


def test_opset_28_mod_and_shifts_export_and_integer_modulo_by_zero_is_refused() -> None:
    """The export asks for opset 28 where the node needs it (a signed BitShift crashed the export; a float
    remainder with fmod=0 exported a model onnxruntime refused); an integer remainder by zero is refused, as
    onnxruntime refuses it."""
    nodes = [helper.make_node("Mod", ["x", "y"], ["rest"]), helper.make_node("BitShift", ["ids", "shift"], ["best"],
                                                                              direction="RIGHT")]
    model = _model(nodes, {"x": (2, 3), "y": (2, 3), "ids": (2, 3)}, {"rest": (2, 3), "best": (2, 3)}, 28,
                   {"shift": np.array([1, 63, 64])})
    _check_against_onnxruntime(model)
    bad = _model([helper.make_node("Mod", ["ids", "zero"], ["best"])], {"ids": (2, 3)}, {"best": (2, 3)}, 13,
                 {"zero": np.array([1, 0, 2])})
    with pytest.raises(RccError, match="integer modulo by zero"):
        lower_model(bad, "bad.onnx")


def test_rms_normalization_defaults_as_onnxruntime() -> None:
    """An absent epsilon is the float 1e-5f (float64 rows once differed by 1e-8); any stash_type is taken, and
    ignored, as onnxruntime ignores it."""
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((2, 4)) * 1e-3).astype(np.float64)
    for attrs in ({}, {"stash_type": 0}):
        node = helper.make_node("RMSNormalization", ["x", "scale"], ["y"], **attrs)
        graph = helper.make_graph([node], "rms", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, x.shape)],
                                  [helper.make_empty_tensor_value_info("y")],
                                  [numpy_helper.from_array(np.ones(4), "scale")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
        np.testing.assert_array_equal(interpreter.run(lower_model(model, "rms"), {"x": x})["y"],
                                      run_export(model, {"x": x})["y"])


def test_verify_of_a_bool_output_that_changes_with_the_input(tmp_path: Path) -> None:
    """--verify took the top-5 agreement of every 3-D output, negating bool ones (exit 3 on a plain Greater)."""
    path = tmp_path / "greater.onnx"
    onnx.save(_model([helper.make_node("Greater", ["x", "zero"], ["keep_mask"])], {"x": (1, 2, 6)},
                     {"keep_mask": (1, 2, 6)}, 18, {"zero": np.array(0.0, np.float32)}), path)
    compile_verified(path, "float", tmp_path)


@pytest.mark.parametrize("opset", [7, 8, 12, 13])
def test_variadic_sum_min_max_mean_in_every_opset(opset: int) -> None:
    """Before opset 8 the variadic ops take equal shapes; from 8 on they broadcast."""
    shapes = {"a": (2, 3), "b": (2, 3), "c": (2, 3)} if opset < 8 else {"a": (2, 3), "b": (3,), "c": (1, 1)}
    nodes = [helper.make_node(op, ["a", "b", "c"], [op.lower()]) for op in ("Sum", "Min", "Max", "Mean")]
    _check_against_onnxruntime(_model(nodes, shapes, ["sum", "min", "max", "mean"], opset))


def test_remaining_ops_export_and_match_onnxruntime() -> None:
    nodes = [helper.make_node("Erf", ["x"], ["erf"]), helper.make_node("Abs", ["x"], ["magnitude"]),
             helper.make_node("Log", ["magnitude"], ["log"]), helper.make_node("Reciprocal", ["x"], ["reciprocal"]),
             helper.make_node("LessOrEqual", ["x", "y"], ["le"]), helper.make_node("GreaterOrEqual", ["x", "y"], ["ge"]),
             helper.make_node("Or", ["le", "ge"], ["either"]), helper.make_node("CastLike", ["either", "x"], ["both"]),
             helper.make_node("ReduceMin", ["x"], ["min"], axes=[0]), helper.make_node("ReduceProd", ["x"], ["prod"]),
             helper.make_node("ReduceL1", ["x"], ["l1"], axes=[-1], keepdims=0),
             helper.make_node("ReduceLogSum", ["magnitude"], ["logsum"], axes=[1]),
             helper.make_node("ArgMin", ["x"], ["argmin"], axis=1, select_last_index=1),
             helper.make_node("Cast", ["argmin"], ["argmin_f"], to=FLOAT)]
    outputs = ["erf", "log", "reciprocal", "both", "min", "prod", "l1", "logsum", "argmin_f"]
    _check_against_onnxruntime(_model(nodes, {"x": (3, 4), "y": (4,)}, outputs, 15))


@pytest.mark.parametrize("opset", [7, 10, 13])
@pytest.mark.parametrize("training", [False, True])
def test_a_dropouts_mask_is_onnxruntimes(opset: int, training: bool) -> None:
    """Nothing is dropped at inference, or in training mode with a ratio of 0 (opset 12 on): the mask is all True
    from opset 12, and onnxruntime's Dropout-7 to -11 gives zeros (False from opset 10, x's type before)."""
    if training and opset < 12:
        pytest.skip("training mode is an input from opset 12")
    inputs, attrs = (["x", "zero", "train"], {}) if training else (["x"], {"ratio": 0.3} if opset < 12 else {})
    node = helper.make_node("Dropout", inputs, ["y", "mask"], name="drop", **attrs)
    mask_type = TensorProto.FLOAT if opset < 10 else TensorProto.BOOL
    graph = helper.make_graph([node], "dropout", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("mask", mask_type, [2, 3])],
                              [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                               numpy_helper.from_array(np.array(True), "train")] if training else [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    x = np.random.default_rng(opset).standard_normal((2, 3)).astype(np.float32)
    theirs = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})
    ours = interpreter.run(lower_model(model, "dropout.onnx"), {"x": x})
    for name, reference in zip(("y", "mask"), theirs):
        assert ours[name].dtype == reference.dtype and np.array_equal(ours[name], reference), name


def test_dropout_in_training_mode_with_a_ratio_is_refused() -> None:
    node = helper.make_node("Dropout", ["x", "", "train"], ["y"], name="drop")
    model = _model([node], {"x": (2, 2)}, ["y"], 13, {"train": np.array(True)})
    with pytest.raises(UnsupportedError, match=r"^bad.onnx: node 'drop' \(Dropout\): Dropout in training mode"):
        lower_model(model, "bad.onnx")
