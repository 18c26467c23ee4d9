"""Tests of the ONNX exporter: exported graph-level IR runs in onnxruntime like the model it came from.

Every zoo model and four light models are imported, run through the graph pipeline, saved with
`save_onnx` and run by onnxruntime against the original model; the export also imports back into rcc
and the interpreter runs it to the same outputs. A property test builds random chains of the ops whose
export is more than a one-to-one node (windows, negative pads, resize modes, depth/space in both modes,
zero insertion, interleaving) and compares the interpreter with onnxruntime on the export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rcc.backends import onnx_export
from rcc.backends.onnx_export import EXPORTERS, export_onnx, save_onnx
from rcc.compiler.frontend import RULES, lower_model
from rcc.ir.inputs import random_inputs
from rcc.compiler.pass_manager import GRAPH_PIPELINE, run_pipeline
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir import Builder, Module, OPS, RccError, TensorType, Value, interpreter
from rcc.ir.ops.nn_shape import COORDINATE_MODES, NEAREST_MODES, phase_size
from tests.conftest import LIGHT, ZOO
from tests.frontend.test_golden import with_classifier_inputs_exposed, with_random_weights

ort.set_default_logger_severity(3)
LIGHT_MODELS = [p for p in LIGHT if p.stem in ("light_squeezenet", "light_shufflenet", "light_inception_v1",
                                                "light_densenet121")]
RTOL, ATOL = 1e-4, 1e-5


def assert_outputs_close(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], what: str,
                         scaled_atol: float = 0.0) -> None:
    assert set(actual) == set(expected), what
    for name, reference in expected.items():
        atol = ATOL + scaled_atol * float(np.max(np.abs(reference), initial=0.0))
        np.testing.assert_allclose(actual[name], reference, rtol=RTOL, atol=atol, err_msg=f"{what}: {name}")


def run_export(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


# --- whole models --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ZOO + LIGHT_MODELS, ids=lambda p: p.stem)
def test_exported_model_runs_like_the_original(path: Path, tmp_path: Path) -> None:
    original, scaled_atol, name = onnx.load(path), 0.0, path.stem
    if path in LIGHT_MODELS:
        # Shipped light weights are one value per tensor (uniform outputs); random ones give 10^4-scale
        # logits whose float32 sums carry ~1e-5 of the scale as rounding once BN folding reorders them.
        original = with_classifier_inputs_exposed(with_random_weights(original))
        scaled_atol = 1e-5
        onnx.save(original, tmp_path / "original.onnx")
        path = tmp_path / "original.onnx"
    module = run_pipeline(lower_model(original, str(path)), GRAPH_PIPELINE)
    save_onnx(module, tmp_path / "exported.onnx")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "save_onnx left its staging behind"

    exported = onnx.load(tmp_path / "exported.onnx")
    assert [i.name for i in exported.graph.input] == [v.name for v in module.inputs]
    assert [o.name for o in exported.graph.output] == [v.name for v in module.outputs]
    inputs = random_inputs(module, seed=1)
    expected = onnxruntime_outputs(path, inputs)
    assert_outputs_close(onnxruntime_outputs(tmp_path / "exported.onnx", inputs), expected,
                         f"{name} exported", scaled_atol)

    reimported = lower_model(exported, "exported.onnx")
    assert_outputs_close(interpreter.run(reimported, inputs), interpreter.run(module, inputs),
                         f"{name} imported back")


# --- random graphs of the ops with non-trivial exports ----------------------------------------------

SCALES = tuple(float(np.float32(s)) for s in (0.25, 1 / 3, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0))


def _floats(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(-1, 1, shape).astype(np.float32)


def _window(data: st.DataObject, kernel_max: int = 3, pad_below_kernel: bool = False) -> dict[str, list[int]]:
    """kernel, strides, dilations and pads of a 2-D window (pooling wants pads < kernel)."""
    kernel = [data.draw(st.integers(1, kernel_max)) for _ in range(2)]
    pad_max = [k - 1 if pad_below_kernel else 2 for k in kernel]
    return {"kernel": kernel, "strides": [data.draw(st.integers(1, 3)) for _ in range(2)],
            "dilations": [data.draw(st.integers(1, 2)) for _ in range(2)],
            "pads": [data.draw(st.integers(0, pad_max[i % 2])) for i in range(4)]}


def _draw_layer(data: st.DataObject, builder: Builder, x: Value, rng: np.random.Generator) -> Value:
    """One op on `x` with drawn attributes; `assume` drops the rare draw the op's verifier refuses."""
    n, c, h, w = x.type.shape
    kinds = ["conv2d", "max_pool2d", "avg_pool2d", "pad", "resize_nearest", "depth_to_space",
             "space_to_depth", "zero_insert", "interleave"]
    kind = data.draw(st.sampled_from(kinds), label="op")
    operands, attrs = [x], {}
    if kind == "conv2d":
        window = _window(data)
        group = data.draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
        m = group * data.draw(st.integers(1, 3))
        weight = builder.constant("weight", _floats(rng, (m, c // group, *window.pop("kernel"))))
        operands += [weight] + ([builder.constant("bias", _floats(rng, (m,)))] if data.draw(st.booleans()) else [])
        attrs = {**window, "group": group}
    elif kind in ("max_pool2d", "avg_pool2d"):
        attrs = {**_window(data, pad_below_kernel=True), "ceil_mode": data.draw(st.booleans())}
        if kind == "avg_pool2d":
            attrs["count_include_pad"] = data.draw(st.booleans())
    elif kind == "pad":
        begins = [data.draw(st.integers(-(d - 1), 2)) for d in x.type.shape]
        ends = [data.draw(st.integers(-(d - 1 + min(b, 0)), 2)) for d, b in zip(x.type.shape, begins)]
        attrs = {"pads": begins + ends, "value": data.draw(st.floats(-2, 2, width=32))}
    elif kind == "resize_nearest":
        if data.draw(st.booleans(), label="by sizes"):
            sizes = [n, c] + [data.draw(st.integers(1, 10)) for _ in range(2)]
            scales = [out / dim for out, dim in zip(sizes, x.type.shape)]
        else:
            scales = [1.0, 1.0] + [data.draw(st.sampled_from([s for s in SCALES if int(np.float32(s) * np.float32(d))]))
                                   for d in (h, w)]
            sizes = [int(np.float32(s) * np.float32(d)) for s, d in zip(scales, x.type.shape)]
        attrs = {"sizes": sizes, "scales": scales,
                 "coordinate_transformation_mode": data.draw(st.sampled_from(COORDINATE_MODES)),
                 "nearest_mode": data.draw(st.sampled_from(NEAREST_MODES))}
    elif kind == "depth_to_space":
        attrs = {"blocksize": data.draw(st.sampled_from([b for b in (1, 2, 3) if c % (b * b) == 0])),
                 "mode": data.draw(st.sampled_from(["DCR", "CRD"]))}
    elif kind == "space_to_depth":
        attrs = {"blocksize": data.draw(st.sampled_from([b for b in (1, 2, 3) if h % b == 0 and w % b == 0])),
                 "mode": data.draw(st.sampled_from(["DCR", "CRD"]))}
    elif kind == "zero_insert":
        attrs = {"strides": [data.draw(st.integers(1, 3)) for _ in range(2)]}
    else:
        operands, attrs = _interleave_operands(data, builder, x, rng)
    try:
        return builder.op(f"nn.{kind}", operands, attrs, name=kind)
    except ValueError:
        assume(False)
        raise


def _interleave_operands(data: st.DataObject, builder: Builder, x: Value, rng: np.random.Generator
                         ) -> tuple[list[Value], dict]:
    """x as the first phase of an sh×sw interleave; the other phases (some empty) are constants."""
    n, c, h, w = x.type.shape
    sh, sw = (data.draw(st.integers(1, 3)) for _ in range(2))
    height, width = (h - 1) * sh + data.draw(st.integers(1, sh)), (w - 1) * sw + data.draw(st.integers(1, sw))
    phases = [x] + [builder.constant("phase", _floats(rng, (n, c, phase_size(height, sh, rho // sw),
                                                             phase_size(width, sw, rho % sw))))
                    for rho in range(1, sh * sw)]
    return phases, {"strides": [sh, sw], "size": [height, width]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_graphs_export_exactly(data: st.DataObject, seed: int) -> None:
    rng = np.random.default_rng(seed)
    module = Module("random_graph")
    shape = (data.draw(st.integers(1, 2)), data.draw(st.sampled_from([1, 2, 4])), data.draw(st.integers(1, 8)),
             data.draw(st.integers(1, 8)))
    module.inputs.append(Value("x", TensorType(shape)))
    builder, current = Builder(module), module.inputs[0]
    for _ in range(data.draw(st.integers(1, 3), label="layers")):
        current = _draw_layer(data, builder, current, rng)
    module.outputs.append(current)
    exported = export_onnx(module)
    inputs = random_inputs(module, seed)
    expected = interpreter.run(module, inputs)
    # A max-pool window of padding only gives float32's lowest value; a conv after it overflows, and where
    # the overflow lands (+inf or -inf) depends on the summation order, not on the export. Such draws test
    # nothing about exporting; every other draw must be finite and equal.
    assume(all(np.isfinite(array).all() for array in expected.values()))
    assert_outputs_close(run_export(exported, inputs), expected, "export of\n" + str(module.ops))
    # Imported back only when the frontend has a rule for every exported node type.
    if all(node.op_type in RULES for node in exported.graph.node):
        assert_outputs_close(interpreter.run(lower_model(exported, "random"), inputs), expected, "imported back")


# --- single ops the models above do not reach ----------------------------------------------------

def _one_op_module(opname: str, attrs: dict, shape: tuple[int, ...] = (1, 2, 6, 6), dtype: str = "f32",
                   constants: tuple[np.ndarray, ...] = ()) -> Module:
    module = Module("one_op")
    module.inputs.append(Value("x", TensorType(shape, dtype)))
    builder = Builder(module)
    operands = module.inputs + [builder.constant("c", array) for array in constants]
    module.outputs.append(builder.op(opname, operands, attrs, name="y"))
    return module


_RNG = np.random.default_rng(0)
SINGLE_OPS = [
    ("nn.clip", {"min": -0.5}, (1, 2, 6, 6), "f32", ()),
    ("nn.clip", {"max": 0.25}, (1, 2, 6, 6), "f32", ()),
    ("nn.clip", {"min": -2.5, "max": 1e12}, (2, 5), "i32", ()),
    ("nn.leaky_relu", {"alpha": 0.2}, (1, 2, 6, 6), "f32", ()),
    ("nn.prelu", {}, (1, 2, 6, 6), "f32", (_floats(_RNG, (2, 1, 1)),)),
    ("nn.log_softmax", {"axis": 1}, (3, 4), "f32", ()),
    ("nn.softmax", {"axis": 0}, (3, 4), "f32", ()),
    ("nn.sub", {}, (1, 2, 6, 6), "f32", (_floats(_RNG, (6,)),)),
    ("nn.div", {}, (2, 5), "i32", (np.array([3, -2, 5, -7, 1], np.int32),)),
    ("nn.global_max_pool", {}, (1, 2, 6, 6), "f32", ()),
    ("nn.identity", {}, (3,), "f32", ()),
    ("nn.reshape", {"shape": (0, 6)}, (2, 0, 3), "f32", ()),
    ("nn.concat", {"axis": 1}, (1, 2, 6, 6), "f32", (_floats(_RNG, (1, 3, 6, 6)),)),
    ("nn.pad", {"pads": (1, -2, 0, 3), "value": 7.0}, (4, 5), "i32", ()),
    ("nn.max_pool2d", {"kernel": (2, 2), "strides": (2, 2), "pads": (1, 1, 1, 1), "ceil_mode": True},
     (1, 2, 11, 11), "i8", ()),
    ("nn.conv_transpose2d", {"strides": (2, 3), "output_padding": (1, 2), "pads": (1, 0, 0, 1)}, (1, 2, 4, 4),
     "f32", (_floats(_RNG, (2, 3, 3, 2)), _floats(_RNG, (3,)))),
]


@pytest.mark.parametrize(("opname", "attrs", "shape", "dtype", "constants"), SINGLE_OPS,
                         ids=[f"{spec[0]}-{index}" for index, spec in enumerate(SINGLE_OPS)])
def test_single_op_exports_exactly(opname: str, attrs: dict, shape: tuple, dtype: str, constants: tuple) -> None:
    module = _one_op_module(opname, attrs, shape, dtype, constants)
    inputs = random_inputs(module)
    assert_outputs_close(run_export(export_onnx(module), inputs), interpreter.run(module, inputs), opname)


def test_every_graph_level_op_has_an_exporter() -> None:
    assert set(EXPORTERS) == {name for name in OPS if name.startswith("nn.")}


# --- opsets, errors, files -----------------------------------------------------------------------


def test_dilated_average_pooling_raises_the_opset_to_19() -> None:
    plain = _one_op_module("nn.avg_pool2d", {"kernel": [2, 2]})
    dilated = _one_op_module("nn.avg_pool2d", {"kernel": [2, 2], "dilations": [2, 1]})
    assert export_onnx(plain).opset_import[0].version == 17
    assert export_onnx(dilated).opset_import[0].version == 19
    assert export_onnx(plain, opset=18).opset_import[0].version == 18


def test_unsupported_op_is_named() -> None:
    module = _one_op_module("vec.quantize", {"scale": 0.5, "bits": 8, "signed": True})
    with pytest.raises(RccError, match=r"vec\.quantize.*%y"):
        export_onnx(module)


def test_opset_below_13_is_refused() -> None:
    with pytest.raises(RccError, match="opset 12"):
        export_onnx(_one_op_module("nn.relu", {}), opset=12)


def test_large_models_are_saved_with_external_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 1000)
    module = lower_model(onnx.load(next(p for p in ZOO if p.stem == "lenet5")), "lenet5")
    save_onnx(module, tmp_path / "lenet5.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx", "lenet5.onnx.data"]
    inputs = random_inputs(module)
    assert_outputs_close(onnxruntime_outputs(tmp_path / "lenet5.onnx", inputs), interpreter.run(module, inputs),
                         "lenet5 with external data")


def test_save_onnx_into_a_missing_folder_is_an_rcc_error(tmp_path: Path) -> None:
    with pytest.raises(RccError, match="missing"):
        save_onnx(_one_op_module("nn.relu", {}), tmp_path / "missing" / "model.onnx")
