"""ONNX's narrow element types (bfloat16, float8, float4, int4/uint4, int2/uint2): casts to and from them, float8 and
2-bit quantization against onnxruntime (through carrier casts, since its Python API takes no such arrays), in the
interpreter and exported; a narrow graph input and output on the machine; the IR text and weights file with narrow
constants; the one-line refusal of arithmetic on them."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.onnx_export import export_onnx
from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import lower_model
from rcc.compiler.onnxruntime_narrow import carried_model, carrier_feeds, narrow_results
from rcc.ir import interpreter
from rcc.ir.errors import RccError, UnsupportedError
from rcc.ir.inputs import check_inputs
from rcc.ir.parser import parse_module
from rcc.ir.printer import external_arrays, print_module
from rcc.ir.types import TensorType
from tests.frontend.test_index_ops import PROPERTY, SEEDS

# ONNX element type → (IR dtype, carrier element type); float4 has no onnxruntime Cast to compare with
NARROW = {TensorProto.BFLOAT16: ("bf16", TensorProto.FLOAT), TensorProto.FLOAT8E4M3FN: ("f8e4m3fn", TensorProto.FLOAT),
          TensorProto.FLOAT8E4M3FNUZ: ("f8e4m3fnuz", TensorProto.FLOAT),
          TensorProto.FLOAT8E5M2: ("f8e5m2", TensorProto.FLOAT), TensorProto.FLOAT8E5M2FNUZ: ("f8e5m2fnuz", TensorProto.FLOAT),
          TensorProto.FLOAT8E8M0: ("f8e8m0", TensorProto.FLOAT), TensorProto.INT4: ("i4", TensorProto.INT8),
          TensorProto.UINT4: ("u4", TensorProto.UINT8), TensorProto.INT2: ("i2", TensorProto.INT8),
          TensorProto.UINT2: ("u2", TensorProto.UINT8)}
SOURCES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.DOUBLE: np.float64,
           TensorProto.INT32: np.int32}
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 0.5, 1.5, 2.5, -2.5, 447, 464, 465, 480, 495, 496, 57344, 61440,
            65536, 2.0**127, 1.5 * 2.0**-127, 1e9, -7.5, 8.5, 1 + 2.0**-8 + 2.0**-30]


def _model(nodes, inputs, outputs, initializers=(), opset: int = 25) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "narrow", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 11
    return model


def _onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(carried_model(model).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return narrow_results(model.graph, dict(zip(names, session.run(names, carrier_feeds(model.graph, feeds)))))


def _same_bits(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal values, NaN where NaN, and the same sign of zero."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (what, actual.dtype, expected.dtype)
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    same = (a == e) & (np.signbit(a) == np.signbit(e)) | np.isnan(a) & np.isnan(e)
    assert same.all(), f"{what}: {list(zip(a[~same][:5], e[~same][:5]))}"


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """Interpreter and exported IR equal onnxruntime bit for bit; the IR text round-trips."""
    expected = _onnxruntime(model, feeds)
    module = lower_model(model, "narrow")
    text = print_module(module)
    assert print_module(parse_module(text, {c.name: c.data for c in module.constants})) == text
    actual = interpreter.run(module, feeds)
    exported = _onnxruntime(export_onnx(module), feeds)
    for name, reference in expected.items():
        _same_bits(actual[name], reference, f"interpreter {name}")
        _same_bits(exported[name], reference, f"export {name}")


def _values(rng: np.random.Generator, dtype: type) -> np.ndarray:
    scales = rng.choice([1e-3, 1.0, 30.0, 500.0, 7e4], 40)
    data = np.concatenate([np.array(SPECIALS), rng.standard_normal(40) * scales])
    if np.dtype(dtype).kind == "i":   # and integers that float32 rounds before bfloat16 does (2^25 + 2^17 + 1)
        wide = [2**25 + 2**17 + 1, -(2**25 + 2**17 + 1), 2**31 - 1, -(2**31), 16777217, 255, -256]
        return np.concatenate([wide, np.round(rng.standard_normal(60) * 40)]).astype(dtype)
    with np.errstate(over="ignore"):
        return data.astype(dtype)


@PROPERTY
@given(seed=SEEDS, target=st.sampled_from(sorted(NARROW)), source=st.sampled_from(sorted(SOURCES)),
       saturate=st.sampled_from([None, 0, 1]), round_mode=st.sampled_from([None, "up", "down", "nearest"]))
def test_casts_to_narrow_types_match_onnxruntime(seed, target, source, saturate, round_mode) -> None:
    dtype, carrier = NARROW[target]
    attrs = {}
    if saturate is not None and dtype.startswith("f8"):
        attrs["saturate"] = saturate
    if round_mode is not None and dtype == "f8e8m0":
        attrs["round_mode"] = round_mode
    x = _values(np.random.default_rng(seed), SOURCES[source])
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=target, **attrs)],
                   [helper.make_tensor_value_info("x", source, x.shape)], [helper.make_tensor_value_info("y", target, x.shape)])
    _check(model, {"x": x})


@PROPERTY
@given(seed=SEEDS, source=st.sampled_from(sorted(NARROW)),
       target=st.sampled_from([TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT32, TensorProto.BFLOAT16,
                               TensorProto.FLOAT8E4M3FN, TensorProto.INT4, TensorProto.BOOL]))
def test_casts_from_narrow_graph_inputs_match_onnxruntime(seed, source, target) -> None:
    dtype, _ = NARROW[source]
    if dtype == "f8e8m0" and target == TensorProto.INT32:   # 2^127 into int32: each CPU's own overflow
        target = TensorProto.FLOAT
    x = _values(np.random.default_rng(seed), np.float32).astype(TensorType((), dtype).np_dtype) if dtype[0] in "bf" \
        else np.random.default_rng(seed).integers(-2, 2, 30).astype(TensorType((), dtype).np_dtype)
    moved = dtype != "f8e8m0"   # onnxruntime has no Transpose of float8 e8m0
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=target)] +
                   [helper.make_node("Transpose", ["x"], ["moved"])] * moved,
                   [helper.make_tensor_value_info("x", source, x.shape)],
                   [helper.make_tensor_value_info("y", target, x.shape)] +
                   [helper.make_tensor_value_info("moved", source, x.shape)] * moved)
    _check(model, {"x": x})


def _qdq_model(x_shape, scale, zero, target: int, **attrs) -> onnx.ModelProto:
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], **{k: v for k, v in attrs.items()
                                                                                   if k != "saturate"})]
    initializers = [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(zero, "zero")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                  [helper.make_tensor_value_info("q", target, x_shape), helper.make_tensor_value_info("y", TensorProto.FLOAT, x_shape)],
                  initializers, opset=25 if target in (TensorProto.INT2, TensorProto.UINT2) else 21)


@PROPERTY
@given(seed=SEEDS, target=st.sampled_from([TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
                                           TensorProto.FLOAT8E5M2FNUZ, TensorProto.INT2, TensorProto.UINT2,
                                           TensorProto.INT4]),
       form=st.sampled_from(["tensor", "axis", "blocked"]), saturate=st.sampled_from([None, 0]))
def test_float8_and_two_bit_quantization_match_onnxruntime(seed, target, form, saturate) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 4, 6)) * rng.choice([0.1, 10, 1e4], (2, 4, 6))).astype(np.float32)
    if form == "blocked" and target in (TensorProto.INT2, TensorProto.UINT2):
        form = "axis"   # onnxruntime takes no blocked scale for 2-bit types
    shape = {"tensor": (), "axis": (4,), "blocked": (2, 4, 3)}[form]
    scale = rng.uniform(0.05, 2.0, shape).astype(np.float32)
    dtype = TensorType((), NARROW[target][0]).np_dtype
    integer = NARROW[target][0][0] in "iu"
    zero = (rng.integers(-1, 2, shape) if integer and NARROW[target][0][0] == "i" else
            rng.integers(0, 2, shape) if integer else np.zeros(shape)).astype(dtype)
    attrs = {"axis": 1} if form == "axis" else {"axis": 2, "block_size": 2} if form == "blocked" else {}
    if saturate is not None and not integer:
        attrs["saturate"] = saturate
    _check(_qdq_model(x.shape, scale, zero, target, **attrs), {"x": x})


def test_a_non_zero_float8_zero_point_is_refused_in_one_line() -> None:
    model = _qdq_model((3,), np.float32(0.5), np.array(2, ml_dtypes.float8_e4m3fn), TensorProto.FLOAT8E4M3FN)
    with pytest.raises(UnsupportedError, match="non-zero f8e4m3fn zero point: onnxruntime ignores it"):
        lower_model(model, "fp8.onnx")


def test_arithmetic_on_a_narrow_type_is_refused_naming_the_node() -> None:
    info = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [4])
    model = _model([helper.make_node("Add", ["x", "x"], ["y"], name="sum")], [info],
                   [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [4])])
    with pytest.raises(UnsupportedError) as caught:
        lower_model(model, "bf16.onnx")
    assert str(caught.value).startswith("bf16.onnx: node 'sum' (Add): bf16 tensor 'x': onnxruntime has no Add kernel "
                                        "for this type (it casts, quantizes and dequantizes it, and moves it with Concat")


@pytest.mark.parametrize(("element", "moved"), [(TensorProto.BFLOAT16, True), (TensorProto.FLOAT8E4M3FN, False),
                                                 (TensorProto.INT4, False)])
def test_data_movement_is_taken_where_onnxruntime_has_the_kernel(element: int, moved: bool) -> None:
    """Concat of bfloat16 runs in onnxruntime; of float8 and int4 its type check refuses it, and so does rcc."""
    info = helper.make_tensor_value_info("x", element, [2])
    model = _model([helper.make_node("Concat", ["x", "x"], ["y"], name="join", axis=0)], [info],
                   [helper.make_tensor_value_info("y", element, [4])])
    if moved:
        assert [v.type.dtype for v in lower_model(model, "join.onnx").outputs] == ["bf16"]
    else:
        with pytest.raises(UnsupportedError, match="node 'join' \\(Concat\\): .* onnxruntime has no Concat kernel"):
            lower_model(model, "join.onnx")


def test_a_folded_cast_of_a_constant_converts_as_onnxruntime() -> None:
    """A Cast of an initializer folds with rcc's conversion: 9.0 → int4 is −7 as in onnxruntime (0 in onnx's
    reference evaluator), float8 e4m3fn without saturation gives 448 for 480."""
    nodes = [helper.make_node("Cast", ["c"], ["narrow"], to=TensorProto.INT4),
             helper.make_node("Cast", ["narrow"], ["wide"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["c"], ["f8"], to=TensorProto.FLOAT8E4M3FN, saturate=0),
             helper.make_node("Cast", ["f8"], ["f8wide"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "wide"], ["y"]), helper.make_node("Add", ["x", "f8wide"], ["z"])]
    constant = numpy_helper.from_array(np.array([9.0, 2.5, -2.5, 0.5, 480.0], np.float32), "c")
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
                   [helper.make_tensor_value_info(n, TensorProto.FLOAT, [5]) for n in ("y", "z")], [constant])
    feeds = {"x": np.zeros(5, np.float32)}
    actual = interpreter.run(lower_model(model, "fold.onnx"), feeds)
    for name, reference in _onnxruntime(model, feeds).items():
        _same_bits(actual[name], reference, name)
    np.testing.assert_array_equal(actual["y"], [-7, 3, -3, 1, 0])


def test_a_string_constant_is_still_refused_in_one_line() -> None:
    words = numpy_helper.from_array(np.array(["a", "b"], dtype=object), "words")
    model = _model([helper.make_node("Where", ["c", "words", "words"], ["y"], name="pick")],
                   [helper.make_tensor_value_info("c", TensorProto.BOOL, [2])],
                   [helper.make_tensor_value_info("y", TensorProto.STRING, [2])], [words])
    with pytest.raises(UnsupportedError, match="node 'pick' \\(Where\\)"):
        lower_model(model, "words.onnx")


def test_an_int4_quantized_graph_output_keeps_its_declared_type() -> None:
    model = _qdq_model((5,), np.float32(0.25), np.array(1, ml_dtypes.int4), TensorProto.INT4)
    module = lower_model(model, "int4.onnx")
    assert {v.name: v.type.dtype for v in module.outputs} == {"q": "i4", "y": "f32"}


@pytest.mark.parametrize("dtype", ["bf16", "f8e4m3fn", "f8e8m0", "f4e2m1", "i4", "u2"])
def test_narrow_constants_round_trip_through_the_text_and_the_weights_file(dtype: str) -> None:
    rng = np.random.default_rng(1)
    np_dtype = TensorType((), dtype).np_dtype
    small = rng.standard_normal(3).astype(np.float32).astype(np_dtype) if dtype[0] in "bf" else \
        np.array([1, 0, 1]).astype(np_dtype)
    large = np.resize(small, 100)
    text = (f"module @m {{\n  input %x : {dtype}[100]\n  const %a : {dtype}[3] = "
            f"[{', '.join(str(float(v) if dtype[0] in 'bf' else int(v)) for v in small)}]\n"
            f"  const %b : {dtype}[100]\n  %c = nn.concat(%a, %b, %x) {{axis = 0}} : {dtype}[203]\n  output %c\n}}\n")
    module = parse_module(text, {"b": large.view(f"u{np_dtype.itemsize}")})
    stored = external_arrays(module, 16)
    assert stored["b"].dtype == np.dtype(f"u{np_dtype.itemsize}")
    again = parse_module(print_module(module, 16), stored)
    assert print_module(again, 16) == print_module(module, 16)
    result = interpreter.run(again, {"x": large})["c"]
    _same_bits(result, np.concatenate([small, large, large]), dtype)


def test_narrow_inputs_given_in_a_wider_dtype_are_taken_only_when_exact() -> None:
    declared = [("x", TensorType((3,), "bf16"))]
    checked = check_inputs(declared, {"x": np.array([1.5, -2.0, 0.25], np.float32)})
    assert checked["x"].dtype == ml_dtypes.bfloat16
    with pytest.raises(RccError, match=r"input .x.: 1.0001\d* at \[1\] is not a bf16 value"):
        check_inputs(declared, {"x": np.array([1.5, 1.0001, 0.25], np.float32)})


@pytest.mark.parametrize("precision", ["int", "float"])
def test_a_bfloat16_convolution_verifies_on_the_machine(tmp_path, precision: str) -> None:
    w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["xf", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Cast", ["r"], ["y"], to=TensorProto.BFLOAT16)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 3, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [1, 8, 8, 8])], [numpy_helper.from_array(w, "w")],
                   opset=17)
    path = tmp_path / "bf16.onnx"
    onnx.save(model, path)
    compiled = compile_model(path, precision=precision)
    result = verify_compiled(path, compiled)
    assert result.passed, result
    assert [value.type.dtype for value in compiled.graph.inputs] == ["bf16"]


def test_the_cli_localizes_through_narrow_tensors_and_writes_narrow_outputs_as_float32(tmp_path) -> None:
    """`--verify --localize` exposes a bfloat16 intermediate through a Cast (onnxruntime's Python API gives no
    bfloat16 arrays); `rcc run` writes a bfloat16 output as float32 and an input given back as an output too."""
    w = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["xf", "w"], ["m"]), helper.make_node("Cast", ["m"], ["narrow"], to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["narrow"], ["wide"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["wide", "v"], ["y"]), helper.make_node("Cast", ["y"], ["z"], to=TensorProto.BFLOAT16)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 4])],
                   [helper.make_tensor_value_info("z", TensorProto.BFLOAT16, [2, 3]),
                    helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 4])],
                   [numpy_helper.from_array(w, "w"),
                    numpy_helper.from_array(np.random.default_rng(3).standard_normal((6, 3)).astype(np.float32), "v")],
                   opset=17)
    path, program, inputs, outputs = (tmp_path / name for name in ("bf16.onnx", "bf16.rccp", "in.npz", "out.npz"))
    onnx.save(model, path)
    assert main([str(path), "--precision", "float", "--verify", "--localize", "-q", "-o", str(program)]) == 0
    values = np.array([[1.5, -2, 0.25, 3], [0.5, 1, -1, 2]], np.float32)
    np.savez(inputs, x=values)
    assert main(["run", str(program), "--inputs", str(inputs), "-o", str(outputs)]) == 0
    written = np.load(outputs)
    assert written["z"].dtype == np.float32 and written["x"].dtype == np.float32
    np.testing.assert_array_equal(written["x"], values)
    assert np.all(written["z"].astype(ml_dtypes.bfloat16).astype(np.float32) == written["z"])   # bfloat16 values
