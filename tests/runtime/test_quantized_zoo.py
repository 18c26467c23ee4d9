"""The zoo quantized by onnxruntime's own `quantize_static` (QDQ; per-tensor and per-channel int8 weights;
uint8 and int8 activations; calibrated on seeded normal inputs): rcc maps the model's integers and the
machine (lossless ADC) gives onnxruntime's outputs bit for bit, lookup-table kernels (QLinearSoftmax,
QLinearSigmoid, QLinearConcat), ConvTranspose groups (float in onnxruntime, exact on rcc's crossbars) and
a float Tanh tail included. Where onnxruntime's float ConvTranspose rounds a value that lies within float32
rounding of a tie to the other side, verify names that float-kernel boundary; where onnxruntime leaves a
Conv group in float (int8 activations, per-channel FCN), verify reports the model not bit-exact."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from rcc.compiler.driver import compile_model, input_samples, onnxruntime_runner, verify_compiled, with_extra_stores
from rcc.ir import interpreter
from rcc.runtime.machine import Machine
from tests.conftest import ROOT

CONFIGS = {"per-tensor-u8": (False, QuantType.QUInt8), "per-channel-u8": (True, QuantType.QUInt8),
           "per-tensor-i8": (False, QuantType.QInt8), "per-channel-i8": (True, QuantType.QInt8)}
EXACT = [(name, config) for name in ("lenet5", "lenet5_pruned", "resnet_small", "subpixel_sr", "subpixel_sr_crd",
                                     "mlp", "dcgan_generator") for config in CONFIGS] \
    + [("fcn_segmenter", config) for config in ("per-tensor-u8", "per-channel-u8", "per-tensor-i8")] \
    + [("unet_small", config) for config in ("per-tensor-u8", "per-tensor-i8")]
FLOAT_KERNEL = [("unet_small", "per-channel-u8")]  # onnxruntime's float ConvTranspose rounds one tie otherwise
FLOAT_CONV = [("fcn_segmenter", "per-channel-i8")]  # onnxruntime keeps three Conv groups in float32


class SeededReader(CalibrationDataReader):
    """Four seeded standard-normal input sets."""

    def __init__(self, path: str, samples: int = 4) -> None:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        self.feeds = iter([{i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}
                           for _ in range(samples)])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


@pytest.fixture(scope="session")
def quantized_zoo(tmp_path_factory):
    """model name, config → the QDQ model's path, made once per session on first use."""
    folder = tmp_path_factory.mktemp("quantized_zoo")
    made: dict[tuple[str, str], Path] = {}

    def make(name: str, config: str) -> Path:
        if (name, config) not in made:
            prepared = folder / f"{name}.pre.onnx"
            if not prepared.exists():
                quant_pre_process(str(ROOT / "models" / f"{name}.onnx"), str(prepared), skip_symbolic_shape=True)
            per_channel, activations = CONFIGS[config]
            path = folder / f"{name}.{config}.onnx"
            logging.getLogger().setLevel(logging.ERROR)  # quantize_static warns about every non-pre-processed axis
            quantize_static(str(prepared), str(path), SeededReader(str(prepared)), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=activations, weight_type=QuantType.QInt8)
            made[name, config] = path
        return made[name, config]

    return make


@pytest.mark.parametrize(("name", "config"), EXACT, ids=[f"{name}-{config}" for name, config in EXACT])
def test_quantized_zoo_model_is_bit_exact_on_the_machine(quantized_zoo, name, config) -> None:
    path = quantized_zoo(name, config)
    compiled = compile_model(path)
    assert any(op.opname in ("nn.requantize", "nn.rescale_quantize") for op in compiled.graph.ops)
    assert not any(op.opname in ("nn.conv2d", "nn.matmul", "nn.conv_transpose2d", "nn.softmax", "nn.sigmoid",
                                 "nn.tanh") for op in compiled.graph.ops), "a float layer is left"
    result = verify_compiled(path, compiled, samples=2)
    extra = result.extra
    assert extra["adc_lossless"] and extra["integer_reference_match"]
    assert extra["bit_exact"] and extra["differing"] == 0 and result.passed, extra
    assert extra["boundaries_compared"] > 0
    if config.endswith("u8"):  # int8 boundaries exposed as outputs escape onnxruntime's int8 → uint8 rewrite
        assert extra["boundaries_bit_exact"], extra["differing_boundaries"]


@pytest.mark.parametrize(("name", "config"), FLOAT_KERNEL)
def test_a_float_kernel_boundary_is_named_and_is_a_float32_tie(quantized_zoo, name, config) -> None:
    """onnxruntime's float ConvTranspose differs from the exact value only where that value lies within
    float32 rounding of a tie of y_scale: each differing element at the first differing boundary is one."""
    path = quantized_zoo(name, config)
    compiled = compile_model(path)
    result = verify_compiled(path, compiled, samples=2)
    extra = result.extra
    boundary = extra["float_kernel_boundary"]
    assert not extra["bit_exact"] and not result.passed and boundary == extra["first_differing_boundary"]
    assert 0 < extra["float_kernel_boundaries"][boundary] <= 2
    rescale = next(op for op in compiled.graph.ops if op.result.name == boundary)
    program, _ = with_extra_stores(compiled.program, [boundary])
    reference = onnxruntime_runner(path, [boundary])
    ties = 0
    for feeds in input_samples(compiled.graph, None, 0, 2):
        actual, expected = Machine(program).run(feeds).outputs[boundary], reference(feeds)[boundary]
        acc = interpreter.evaluate(compiled.graph, feeds)[rescale.operands[0]].astype(np.float64)
        scale, y_scale, _, bias = (v.data.astype(np.float64).reshape(-1) for v in rescale.operands[1:])
        exact = (acc * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)) / y_scale[0]
        for index in map(tuple, np.argwhere(actual != expected)):
            assert abs(abs(exact[index] - np.floor(exact[index])) - 0.5) < 1e-6, exact[index]
            assert abs(int(actual[index]) - int(expected[index])) == 1
            ties += 1
    assert ties == extra["float_kernel_boundaries"][boundary]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "config"), FLOAT_CONV)
def test_a_conv_onnxruntime_leaves_in_float_is_reported_not_bit_exact(quantized_zoo, name, config) -> None:
    path = quantized_zoo(name, config)
    result = verify_compiled(path, compile_model(path), samples=2)
    extra = result.extra
    assert extra["bit_exact"] is (extra["differing"] == 0)
    assert not extra["bit_exact"] and not result.passed and extra["first_differing_boundary"] is not None
