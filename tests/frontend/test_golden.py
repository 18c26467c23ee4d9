"""Golden tests: the interpreter matches onnxruntime on every zoo model and on the onnx package's nine
real-architecture light models, before and after the graph pipeline, at batch 1 and batch 2.

The light models build every weight with ConstantOfShape (one value per tensor), which makes their
outputs uniform; the test also runs them with those weights replaced by seeded random ones
(He-scaled kernels, 1-D parameters in [0.5, 1.5] so batch-norm variances stay positive), and exposes
the inputs of every Softmax and Gemm as extra outputs, so the comparison has teeth.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from rcc.compiler.frontend import lower_model
from rcc.ir.inputs import random_inputs
from rcc.compiler.frontend.loader import load_onnx
from rcc.compiler.pass_manager import GRAPH_PIPELINE, run_pipeline
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir import interpreter
from tests.conftest import LIGHT, ZOO, light_params


def with_classifier_inputs_exposed(model: onnx.ModelProto) -> onnx.ModelProto:
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    types = {v.name: v.type for v in lower_model(model, "exposing softmax inputs").values()}
    outputs = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        if node.op_type in ("Softmax", "Gemm") and node.input[0] not in outputs:
            shape = types[node.input[0]].shape
            exposed.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, shape))
    return exposed


def with_random_weights(model: onnx.ModelProto, seed: int = 0, max_elements: int = 1 << 22) -> onnx.ModelProto:
    """ConstantOfShape nodes fed by an initializer become random initializers of that shape, up to
    `max_elements` per tensor (the huge fully connected layers of VGG/AlexNet keep their constant, which
    keeps the test fast; their inputs are exposed as outputs instead)."""
    rng = np.random.default_rng(seed)
    randomised = onnx.ModelProto()
    randomised.CopyFrom(model)
    randomised.ir_version = max(randomised.ir_version, 4)  # from IR 4 on, initializers need not be inputs
    graph = randomised.graph
    shapes = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        shape = tuple(int(d) for d in shapes.get(node.input[0] if node.input else "", ()))
        if node.op_type != "ConstantOfShape" or not shape or np.prod(shape) > max_elements:
            kept.append(node)
            continue
        if len(shape) >= 2:
            data = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        else:
            data = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        graph.initializer.append(onnx.numpy_helper.from_array(data, node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    return randomised


# A softmax output is compared only where float32 can resolve its logits: one unit in the last place
# of the largest logit must stay below 0.01 (a 1% change of the softmax). The shipped light SqueezeNet's
# logits are near 6.7e9, where one float32 step is 512: summing in another order than onnxruntime's
# moves its softmax from 0.06 to 0.001, so its logits are compared instead.
LOGIT_RESOLUTION = 1e-2


def ill_conditioned_softmax_outputs(model: onnx.ModelProto, outputs: dict[str, np.ndarray]) -> set[str]:
    """Softmax outputs whose logits are also among `outputs` and too large for float32 to resolve."""
    found = set()
    for node in model.graph.node:
        if node.op_type == "Softmax" and node.output[0] in outputs and node.input[0] in outputs:
            peak = np.float32(np.max(np.abs(outputs[node.input[0]])))
            if np.spacing(peak) > LOGIT_RESOLUTION:
                found.add(node.output[0])
    return found


def assert_matches_onnxruntime(model: onnx.ModelProto, tmp_path, batch_dims: dict | None = None,
                               degenerate_ok: bool = False, scaled_atol: float = 0.0) -> None:
    """rtol 1e-4, atol 1e-5, plus `scaled_atol` × max|reference| where outputs cancel deep sums."""
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    module = lower_model(load_onnx(path), str(path), batch_dims)
    inputs = random_inputs(module, seed=1)
    expected = onnxruntime_outputs(path, inputs)
    before = interpreter.run(module, inputs)
    run_pipeline(module, GRAPH_PIPELINE)
    after = interpreter.run(module, inputs)
    unresolvable = ill_conditioned_softmax_outputs(model, expected)
    for name, reference in expected.items():
        if name in unresolvable:
            continue  # its logits are an output too, and are compared instead
        assert degenerate_ok or reference.std() > 0, f"{name} is degenerate"
        atol = 1e-5 + scaled_atol * float(np.max(np.abs(reference)))
        np.testing.assert_allclose(before[name], reference, rtol=1e-4, atol=atol, err_msg=f"{name} before passes")
        np.testing.assert_allclose(after[name], reference, rtol=1e-4, atol=atol, err_msg=f"{name} after passes")


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_interpreter_matches_onnxruntime_on_the_zoo(path, tmp_path) -> None:
    assert_matches_onnxruntime(onnx.load(path), tmp_path)


@pytest.mark.parametrize("path", light_params())
def test_interpreter_matches_onnxruntime_on_light_models(path, tmp_path) -> None:
    model = onnx.load(path)
    for variant in ("as_shipped", "random"):
        (tmp_path / variant).mkdir()
    assert_matches_onnxruntime(with_classifier_inputs_exposed(model), tmp_path / "as_shipped", degenerate_ok=True)
    # Random weights make 10^4-scale logits from long float32 sums whose order differs from
    # onnxruntime's; an element that cancels to ~100 then carries ~1e-6 of the scale as rounding.
    assert_matches_onnxruntime(with_classifier_inputs_exposed(with_random_weights(model)), tmp_path / "random",
                               scaled_atol=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "resnet_small", "dcgan_generator", "unet_small", "mlp"])
def test_batch_of_two_through_a_dynamic_dimension(name, tmp_path) -> None:
    model = onnx.load(next(p for p in ZOO if p.stem == name))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    shape[0] = 2 if name != "mlp" else 3
    overrides = {model.graph.input[0].name: tuple(shape)}
    assert_matches_onnxruntime(model, tmp_path, overrides)


def test_zoo_and_light_models_are_all_present() -> None:
    assert len(ZOO) >= 8
    assert {p.stem for p in LIGHT} >= {"light_bvlc_alexnet", "light_densenet121", "light_inception_v1",
                                        "light_inception_v2", "light_resnet50", "light_shufflenet",
                                        "light_squeezenet", "light_vgg19", "light_zfnet512"}
