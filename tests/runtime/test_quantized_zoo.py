"""The zoo quantized by onnxruntime's own `quantize_static` (QDQ; per-tensor and per-channel int8 weights;
uint8 and int8 activations; int4/uint4 weights on a few; calibrated on seeded inputs): rcc maps the model's
integers and the machine (lossless ADC) gives onnxruntime's outputs bit for bit, lookup-table kernels
(QLinearSoftmax, QLinearSigmoid, QLinearConcat), ConvTranspose groups (float in onnxruntime, exact on rcc's
crossbars), float Add/Mul/Resize groups and a float Tanh tail included. The transformer, GPT, MobileNetV3,
ShuffleNet and bilinear-segmentation blocks are all bit-exact in every configuration.

Where onnxruntime runs a Conv or ConvTranspose group as a float32 kernel (a ConvTranspose; a Conv whose
int8 activations its int8 → uint8 rewrite left of two dtypes) its sum can round a value lying within
float32 error of a tie of y_scale to the other side: verify names that boundary and its kernel, and every
differing element there is such a value (`float_kernel_ties.py`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from rcc.compiler.driver import (compile_model, input_samples, onnxruntime_runner, rcc_quantized_layers,
                                 verify_compiled, with_extra_stores)
from rcc.runtime.machine import Machine
from tests.conftest import ROOT
from tests.runtime.float_kernel_ties import float_kernel_node, tie_margins, within_float32_of_a_tie
from tests.test_models_zoo import zoo

CONFIGS = {"per-tensor-u8": (False, QuantType.QUInt8, QuantType.QInt8),
           "per-channel-u8": (True, QuantType.QUInt8, QuantType.QInt8),
           "per-tensor-i8": (False, QuantType.QInt8, QuantType.QInt8),
           "per-channel-i8": (True, QuantType.QInt8, QuantType.QInt8),
           "per-channel-int4-u8": (True, QuantType.QUInt8, QuantType.QInt4),
           "per-tensor-uint4-i8": (False, QuantType.QInt8, QuantType.QUInt4),
           "per-tensor-int4-u8": (False, QuantType.QUInt8, QuantType.QInt4),
           "per-channel-i16": (True, QuantType.QInt16, QuantType.QInt8),
           "per-tensor-u16": (False, QuantType.QUInt16, QuantType.QInt8)}
EIGHT_BIT = ("per-tensor-u8", "per-channel-u8", "per-tensor-i8", "per-channel-i8")
BLOCKS = ("transformer_encoder_block", "gpt_decoder_block", "mobilenetv3_block", "bilinear_seg_head",
          "shufflenet_block")
EXACT = [(name, config) for name in ("lenet5", "lenet5_pruned", "resnet_small", "subpixel_sr", "subpixel_sr_crd",
                                     "mlp", "dcgan_generator") for config in EIGHT_BIT] \
    + [("fcn_segmenter", config) for config in ("per-tensor-u8", "per-channel-u8", "per-tensor-i8")] \
    + [("unet_small", config) for config in ("per-tensor-u8", "per-tensor-i8")] \
    + [(name, config) for name in ("lenet5", "resnet_small", "mlp") for config in ("per-channel-int4-u8",
                                                                                  "per-tensor-uint4-i8")]
EXACT_BLOCKS = [(name, config) for name in BLOCKS for config in EIGHT_BIT]
# onnxruntime's float32 kernel rounds a value within float32 error of a tie to the other side
FLOAT_KERNEL = [("unet_small", "per-channel-u8", "ConvTranspose"), ("unet_small", "per-channel-i8", "ConvTranspose"),
                ("fcn_segmenter", "per-channel-i8", "Conv"), ("dcgan_generator", "per-tensor-int4-u8", "ConvTranspose")]


# 16-bit activations (A16W8): onnxruntime runs every product group as a float32 kernel
WIDE = [(name, config) for name in ("lenet5", "resnet_small", "mlp", "unet_small", "transformer_encoder_block")
        for config in ("per-channel-i16", "per-tensor-u16")]


class SeededReader(CalibrationDataReader):
    """Four seeded input sets: standard normal floats, or for a model with token ids or a mask the zoo's own
    valid inputs (`zoo.model_inputs`)."""

    def __init__(self, path: str, name: str = "", samples: int = 4) -> None:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        if any(i.type != "tensor(float)" for i in session.get_inputs()):
            self.feeds = iter([zoo.model_inputs(name, seed=seed) for seed in range(samples)])
            return
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
            per_channel, activations, weights = CONFIGS[config]
            path = folder / f"{name}.{config}.onnx"
            logging.getLogger().setLevel(logging.ERROR)  # quantize_static warns about every non-pre-processed axis
            quantize_static(str(prepared), str(path), SeededReader(str(prepared), name), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=activations, weight_type=weights)
            made[name, config] = path
        return made[name, config]

    return make


def assert_bit_exact(path: Path, config: str) -> dict:
    compiled = compile_model(path)
    assert any(op.opname in ("nn.requantize", "nn.rescale_quantize") for op in compiled.graph.ops)
    assert not any(op.opname in ("nn.conv2d", "nn.conv_transpose2d", "nn.softmax", "nn.sigmoid", "nn.tanh")
                   or op.opname == "nn.matmul" and any(v.is_constant for v in op.operands)
                   for op in compiled.graph.ops), "a float layer with weights is left"
    result = verify_compiled(path, compiled, samples=2)
    extra = result.extra
    assert extra["adc_lossless"] and extra["integer_reference_match"]
    assert extra["bit_exact"] and extra["differing"] == 0 and result.passed, extra
    assert extra["boundaries_compared"] > 0
    if config.endswith("u8"):  # int8 boundaries exposed as outputs escape onnxruntime's int8 → uint8 rewrite
        assert extra["boundaries_bit_exact"], extra["differing_boundaries"]
    return extra


@pytest.mark.parametrize(("name", "config"), EXACT, ids=[f"{name}-{config}" for name, config in EXACT])
def test_quantized_zoo_model_is_bit_exact_on_the_machine(quantized_zoo, name, config) -> None:
    extra = assert_bit_exact(quantized_zoo(name, config), config)
    if "int4" in config or "uint4" in config:  # onnxruntime runs 4-bit Conv/Gemm as float kernels
        assert {"Conv", "Gemm"} & set(extra["float_kernels"].values()), extra["float_kernels"]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "config"), EXACT_BLOCKS, ids=[f"{name}-{config}" for name, config in EXACT_BLOCKS])
def test_quantized_zoo_block_is_bit_exact_on_the_machine(quantized_zoo, name, config) -> None:
    """The transformer and GPT blocks' int8 Add/Mul groups that onnxruntime keeps in float (its int8 → uint8
    rewrite leaves their activations of two dtypes) and the bilinear head's float Resize are bit-exact too."""
    extra = assert_bit_exact(quantized_zoo(name, config), config)
    if name == "bilinear_seg_head":
        assert "Resize" in extra["float_kernels"].values()


@pytest.mark.parametrize(("name", "config", "kernel"), FLOAT_KERNEL)
def test_a_float_kernel_boundary_is_named_and_differs_only_at_float32_ties(quantized_zoo, name, config,
                                                                          kernel) -> None:
    """onnxruntime's float32 Conv/ConvTranspose differs from the exact value only where that value lies within
    float32 rounding of a tie of y_scale: each differing element at the first differing boundary is one."""
    path = quantized_zoo(name, config)
    compiled = compile_model(path)
    result = verify_compiled(path, compiled, samples=2)
    extra = result.extra
    boundary = extra["float_kernel_boundary"]
    assert not extra["bit_exact"] and not result.passed and boundary == extra["first_differing_boundary"]
    assert extra["float_kernels"][boundary] == kernel
    assert float32_ties(path, compiled, boundary) == extra["float_kernel_boundaries"][boundary] > 0


def float32_ties(path: Path, compiled, boundary: str) -> int:
    """How many elements of `boundary` (a Conv or ConvTranspose group's QuantizeLinear) the machine computes
    otherwise than onnxruntime on 2 inputs, each asserted to differ by one step and to lie within float32 error of
    a tie of y_scale, on onnxruntime's own integers for the group's input."""
    model = onnx.load(path)
    producers = {out: node for node in model.graph.node for out in node.output}
    integers = producers[float_kernel_node(model, boundary).input[0]].input[0]
    program, _ = with_extra_stores(compiled.program, [boundary])
    reference = onnxruntime_runner(path, [boundary, integers])
    ties = 0
    for feeds in input_samples(compiled.graph, None, 0, 2):
        expected = reference(feeds)
        actual = Machine(program).run(feeds).outputs[boundary]
        value, margin = tie_margins(model, boundary, expected)
        for index in map(tuple, np.argwhere(actual != expected[boundary])):
            assert within_float32_of_a_tie(value[index], margin[index]), (value[index], margin[index])
            assert abs(int(actual[index]) - int(expected[boundary][index])) == 1
            ties += 1
    return ties


@pytest.mark.parametrize(("name", "config"), WIDE, ids=[f"{name}-{config}" for name, config in WIDE])
def test_a_16_bit_activation_model_runs_on_its_own_integers_and_parts_from_onnxruntime_only_at_ties(
        quantized_zoo, name, config) -> None:
    """A16W8 (`quantize_static` with QInt16/QUInt16 activations): every product runs on crossbars with the model's
    own 16-bit codes less their zero point (16 or 17 input bits) and 8-bit weights, nothing is re-quantised by rcc,
    and verify holds the first boundary where machine and onnxruntime part to one step; where that is a Conv, every
    differing element there is a float32 tie of onnxruntime's float kernel."""
    path = quantized_zoo(name, config)
    compiled = compile_model(path)
    mvms = [i for i in compiled.program.instructions if i.opcode == "mvm"]
    assert mvms and all(i.attrs["input_bits"] in (16, 17) and i.attrs["weight_bits"] <= 8 for i in mvms)
    assert not rcc_quantized_layers(compiled)
    result = verify_compiled(path, compiled, samples=2)
    extra = result.extra
    assert result.passed and extra["adc_lossless"] and extra["integer_reference_match"], result.outputs
    assert extra["wide_boundaries"] == extra["boundaries_compared"] > 0
    assert "the first differing boundary within one step of onnxruntime's: yes" in extra["tolerance"], extra
    boundary = extra["first_differing_boundary"]
    if boundary is not None and boundary in extra["float_kernels"] and extra["float_kernels"][boundary] == "Conv":
        assert float32_ties(path, compiled, boundary) == extra["differing_boundaries"][boundary]
