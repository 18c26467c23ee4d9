#!/usr/bin/env python3
"""Deterministic builder for rcc's ONNX model zoo.

This script owns the small reference models that live next to it as
``models/<name>.onnx``: their architecture, their (seeded) weights and the
exact bytes written to disk.  Every model is built with ``onnx.helper`` and
numpy only, with a fixed seed per model, fixed opset/IR version and no
timestamps, so regenerating the zoo is byte-for-byte reproducible.

Usage::

    python models/build_zoo.py              # (re)write models/*.onnx
    python models/build_zoo.py --out DIR    # write into DIR instead
    python models/build_zoo.py --check      # exit 1 if checked-in files are stale
    python models/build_zoo.py --blocks --out DIR   # only the issue-11 blocks (BLOCK_BUILDERS)

Tests import this file by path and call :func:`build_all`.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, ValueInfoProto, helper, numpy_helper

PRODUCER_NAME = "rcc-zoo"
OPSET = 17
IR_VERSION = 8
BN_EPSILON = 1e-5
PRUNE_SPARSITY_PERCENT = 92

# One fixed seed per model family. lenet5_pruned deliberately reuses lenet5's.
SEEDS: dict[str, int] = {
    "mlp": 1001,
    "lenet5": 1002,
    "resnet_small": 1003,
    "dcgan_generator": 1004,
    "fcn_segmenter": 1005,
    "unet_small": 1006,
    "subpixel_sr": 1007,
    "subpixel_sr_crd": 1008,
    # Blocks of modern architectures (issue 11), see BLOCK_BUILDERS.
    "transformer_encoder_block": 1009,
    "gpt_decoder_block": 1010,
    "mobilenetv3_block": 1011,
    "bilinear_seg_head": 1012,
    "shufflenet_block": 1013,
}

# A layer is the node it emits plus the initializers it owns.
Layer = tuple[NodeProto, list[TensorProto]]


# --------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------


def he_normal(rng: np.random.Generator, shape: Sequence[int], fan_in: float) -> np.ndarray:
    """Kaiming/He normal init: N(0, 2 / fan_in), as float32."""
    std = math.sqrt(2.0 / fan_in)
    return (rng.standard_normal(tuple(shape)) * std).astype(np.float32)


def small_bias(rng: np.random.Generator, n: int) -> np.ndarray:
    """Small random bias, N(0, 0.02^2)."""
    return (rng.standard_normal(n) * 0.02).astype(np.float32)


def tensor(name: str, value: np.ndarray) -> TensorProto:
    """Wrap a float32 array as a named initializer."""
    return numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name=name)


# --------------------------------------------------------------------------
# Layer builders (each returns the node plus the initializers it needs)
# --------------------------------------------------------------------------


def gemm(rng: np.random.Generator, name: str, x: str, n_in: int, n_out: int, out: str | None = None) -> Layer:
    """Fully connected layer ``x @ W^T + b`` with W stored as [n_out, n_in] (transB=1)."""
    w = tensor(f"{name}.weight", he_normal(rng, (n_out, n_in), fan_in=n_in))
    b = tensor(f"{name}.bias", small_bias(rng, n_out))
    node = helper.make_node("Gemm", [x, w.name, b.name], [out or name], name=name, transB=1)
    return node, [w, b]


def conv(
    rng: np.random.Generator,
    name: str,
    x: str,
    c_in: int,
    c_out: int,
    k: int,
    *,
    stride: int = 1,
    pad: int = 0,
    bias: bool = True,
    out: str | None = None,
    group: int = 1,
) -> Layer:
    """2-D convolution with a square kernel, He-initialised weight [c_out, c_in / group, k, k]."""
    w = tensor(f"{name}.weight", he_normal(rng, (c_out, c_in // group, k, k), fan_in=c_in // group * k * k))
    inits = [w]
    if bias:
        inits.append(tensor(f"{name}.bias", small_bias(rng, c_out)))
    attrs: dict[str, object] = {"group": group} if group != 1 else {}
    node = helper.make_node(
        "Conv",
        [x] + [t.name for t in inits],
        [out or name],
        name=name,
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad] * 4,
        **attrs,
    )
    return node, inits


def conv_transpose(
    rng: np.random.Generator,
    name: str,
    x: str,
    c_in: int,
    c_out: int,
    k: int,
    *,
    stride: int = 1,
    pad: int = 0,
    output_padding: int = 0,
    group: int = 1,
    bias: bool = True,
    fan_in: float | None = None,
    out: str | None = None,
) -> Layer:
    """2-D transposed convolution, weight [c_in, c_out / group, k, k].

    By default each output pixel receives ``(c_in / group) * k^2 / stride^2``
    contributions, which is used as the He fan-in; pass ``fan_in`` to override
    (e.g. for a 1x1 input, where only ``c_in`` terms reach each output).
    """
    if fan_in is None:
        fan_in = (c_in // group) * k * k / (stride * stride)
    w = tensor(f"{name}.weight", he_normal(rng, (c_in, c_out // group, k, k), fan_in=fan_in))
    inits = [w]
    if bias:
        inits.append(tensor(f"{name}.bias", small_bias(rng, c_out)))
    attrs: dict[str, object] = {
        "kernel_shape": [k, k],
        "strides": [stride, stride],
        "pads": [pad] * 4,
    }
    if output_padding:
        attrs["output_padding"] = [output_padding, output_padding]
    if group != 1:
        attrs["group"] = group
    node = helper.make_node("ConvTranspose", [x] + [t.name for t in inits], [out or name], name=name, **attrs)
    return node, inits


def bn(rng: np.random.Generator, name: str, x: str, c: int, out: str | None = None) -> Layer:
    """Inference-mode BatchNormalization with random but well-conditioned statistics."""
    scale = tensor(f"{name}.scale", rng.uniform(0.5, 1.5, c))
    bias = tensor(f"{name}.bias", rng.normal(0.0, 0.1, c))
    mean = tensor(f"{name}.mean", rng.normal(0.0, 0.1, c))
    var = tensor(f"{name}.var", rng.uniform(0.5, 1.5, c))
    inits = [scale, bias, mean, var]
    node = helper.make_node(
        "BatchNormalization",
        [x] + [t.name for t in inits],
        [out or name],
        name=name,
        epsilon=BN_EPSILON,
    )
    return node, inits


def op(op_type: str, name: str, inputs: Sequence[str], out: str | None = None, **attrs: object) -> Layer:
    """A parameter-free node (Relu, Add, MaxPool, ...)."""
    return helper.make_node(op_type, list(inputs), [out or name], name=name, **attrs), []


# --------------------------------------------------------------------------
# Graph assembly
# --------------------------------------------------------------------------


class Net:
    """Accumulates nodes and initializers in topological (insertion) order.

    (A plain class rather than a dataclass so the file can be loaded via
    ``importlib`` without being registered in ``sys.modules``.)
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []

    def add(self, layer: Layer) -> str:
        """Append a layer and return the name of its output tensor."""
        node, inits = layer
        self.nodes.append(node)
        self.initializers.extend(inits)
        return node.output[0]


def net_for(name: str) -> Net:
    return Net(np.random.default_rng(SEEDS[name]))


def value(name: str, shape: Sequence[int]) -> ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def finish(
    name: str,
    net: Net,
    inputs: Sequence[ValueInfoProto],
    outputs: Sequence[ValueInfoProto],
    doc: str,
) -> onnx.ModelProto:
    """Wrap a Net into a ModelProto with the zoo's fixed metadata."""
    graph = helper.make_graph(net.nodes, name, list(inputs), list(outputs), initializer=net.initializers)
    model = helper.make_model(
        graph,
        producer_name=PRODUCER_NAME,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        doc_string=doc,
    )
    return model


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def build_mlp() -> onnx.ModelProto:
    """3-layer MLP classifier on a batch of 4 feature vectors."""
    net = net_for("mlp")
    r = net.rng
    h = net.add(gemm(r, "fc1", "input", 64, 128))
    h = net.add(op("Relu", "relu1", [h]))
    h = net.add(gemm(r, "fc2", h, 128, 64))
    h = net.add(op("Relu", "relu2", [h]))
    h = net.add(gemm(r, "fc3", h, 64, 10))
    net.add(op("Softmax", "softmax", [h], out="probs", axis=1))
    return finish(
        "mlp", net, [value("input", [4, 64])], [value("probs", [4, 10])],
        "MLP 64-128-64-10 with ReLU and Softmax, batch 4.",
    )


def build_lenet5(name: str = "lenet5") -> onnx.ModelProto:
    """Classic LeNet-5 on a 28x28 grey image."""
    net = net_for("lenet5")
    r = net.rng
    h = net.add(conv(r, "conv1", "input", 1, 6, 5, pad=2))
    h = net.add(op("Relu", "relu1", [h]))
    h = net.add(op("MaxPool", "pool1", [h], kernel_shape=[2, 2], strides=[2, 2]))
    h = net.add(conv(r, "conv2", h, 6, 16, 5))
    h = net.add(op("Relu", "relu2", [h]))
    h = net.add(op("AveragePool", "pool2", [h], kernel_shape=[2, 2], strides=[2, 2]))
    h = net.add(op("Flatten", "flatten", [h], axis=1))
    h = net.add(gemm(r, "fc1", h, 400, 120))
    h = net.add(op("Relu", "relu3", [h]))
    h = net.add(gemm(r, "fc2", h, 120, 84))
    h = net.add(op("Relu", "relu4", [h]))
    net.add(gemm(r, "fc3", h, 84, 10, out="logits"))
    return finish(
        name, net, [value("input", [1, 1, 28, 28])], [value("logits", [1, 10])],
        "LeNet-5: conv-relu-maxpool, conv-relu-avgpool, 3 fully connected layers.",
    )


def basic_block(net: Net, prefix: str, x: str, c_in: int, c_out: int, stride: int) -> str:
    """ResNet basic block; adds a 1x1 conv+BN projection when the shape changes."""
    r = net.rng
    h = net.add(conv(r, f"{prefix}_conv1", x, c_in, c_out, 3, stride=stride, pad=1, bias=False))
    h = net.add(bn(r, f"{prefix}_bn1", h, c_out))
    h = net.add(op("Relu", f"{prefix}_relu1", [h]))
    h = net.add(conv(r, f"{prefix}_conv2", h, c_out, c_out, 3, pad=1, bias=False))
    h = net.add(bn(r, f"{prefix}_bn2", h, c_out))
    skip = x
    if stride != 1 or c_in != c_out:
        skip = net.add(conv(r, f"{prefix}_proj", x, c_in, c_out, 1, stride=stride, bias=False))
        skip = net.add(bn(r, f"{prefix}_proj_bn", skip, c_out))
    h = net.add(op("Add", f"{prefix}_add", [h, skip]))
    return net.add(op("Relu", f"{prefix}_relu2", [h]))


def build_resnet_small() -> onnx.ModelProto:
    """Tiny CIFAR-style ResNet: stem + identity block + strided projection block."""
    net = net_for("resnet_small")
    r = net.rng
    h = net.add(conv(r, "conv1", "input", 3, 16, 3, pad=1, bias=False))
    h = net.add(bn(r, "bn1", h, 16))
    h = net.add(op("Relu", "relu1", [h]))
    h = basic_block(net, "block1", h, 16, 16, stride=1)
    h = basic_block(net, "block2", h, 16, 32, stride=2)
    h = net.add(op("GlobalAveragePool", "gap", [h]))
    h = net.add(op("Flatten", "flatten", [h], axis=1))
    net.add(gemm(r, "fc", h, 32, 10, out="logits"))
    return finish(
        "resnet_small", net, [value("input", [1, 3, 32, 32])], [value("logits", [1, 10])],
        "Small ResNet: conv-bn-relu stem, 2 basic blocks (2nd strided with projection), GAP, FC.",
    )


def build_dcgan_generator() -> onnx.ModelProto:
    """DCGAN generator from a 100-d latent to a 3x32x32 image.

    Channel widths are 64-32-16 (half the textbook 128-64-32) so the file
    stays well under 1 MB; the topology and attributes are unchanged.
    """
    net = net_for("dcgan_generator")
    r = net.rng
    # The input is 1x1 spatially, so each output pixel sees only c_in terms.
    h = net.add(conv_transpose(r, "deconv1", "z", 100, 64, 4, bias=False, fan_in=100))
    h = net.add(bn(r, "bn1", h, 64))
    h = net.add(op("Relu", "relu1", [h]))
    h = net.add(conv_transpose(r, "deconv2", h, 64, 32, 4, stride=2, pad=1, bias=False))
    h = net.add(bn(r, "bn2", h, 32))
    h = net.add(op("Relu", "relu2", [h]))
    h = net.add(conv_transpose(r, "deconv3", h, 32, 16, 4, stride=2, pad=1, bias=False))
    h = net.add(bn(r, "bn3", h, 16))
    h = net.add(op("Relu", "relu3", [h]))
    h = net.add(conv_transpose(r, "deconv4", h, 16, 3, 4, stride=2, pad=1, bias=False))
    net.add(op("Tanh", "tanh", [h], out="image"))
    return finish(
        "dcgan_generator", net, [value("z", [1, 100, 1, 1])], [value("image", [1, 3, 32, 32])],
        "DCGAN generator: 4 ConvTranspose layers (k4), BN+ReLU between, Tanh output.",
    )


def build_fcn_segmenter() -> onnx.ModelProto:
    """FCN-style segmenter with skip-connected score heads and learned upsampling.

    Upsampling exercises two ConvTranspose variants: ``up1`` is k3 s2 p1 with
    output_padding 1, ``up2`` is a depthwise (group=5) k4 s2 p1.
    """
    net = net_for("fcn_segmenter")
    r = net.rng
    n_cls = 5
    f1 = net.add(conv(r, "conv1", "input", 3, 16, 3, pad=1))
    f1 = net.add(op("Relu", "relu1", [f1]))  # 16 x 32x32
    f2 = net.add(conv(r, "conv2", f1, 16, 32, 3, stride=2, pad=1))
    f2 = net.add(op("Relu", "relu2", [f2]))  # 32 x 16x16
    f3 = net.add(conv(r, "conv3", f2, 32, 64, 3, stride=2, pad=1))
    f3 = net.add(op("Relu", "relu3", [f3]))  # 64 x 8x8
    s3 = net.add(conv(r, "score3", f3, 64, n_cls, 1))
    s2 = net.add(conv(r, "score2", f2, 32, n_cls, 1))
    s1 = net.add(conv(r, "score1", f1, 16, n_cls, 1))
    h = net.add(conv_transpose(r, "up1", s3, n_cls, n_cls, 3, stride=2, pad=1, output_padding=1))
    h = net.add(op("Add", "fuse2", [h, s2]))
    h = net.add(conv_transpose(r, "up2", h, n_cls, n_cls, 4, stride=2, pad=1, group=n_cls))
    net.add(op("Add", "fuse1", [h, s1], out="scores"))
    return finish(
        "fcn_segmenter", net, [value("input", [1, 3, 32, 32])], [value("scores", [1, n_cls, 32, 32])],
        "FCN segmenter: 3-stage encoder, 1x1 score heads, ConvTranspose upsampling with skip Adds.",
    )


def conv_relu(net: Net, idx: int, x: str, c_in: int, c_out: int) -> str:
    """3x3 same-padded conv followed by ReLU, named conv<idx>/relu<idx>."""
    h = net.add(conv(net.rng, f"conv{idx}", x, c_in, c_out, 3, pad=1))
    return net.add(op("Relu", f"relu{idx}", [h]))


def build_unet_small() -> onnx.ModelProto:
    """Two-level U-Net with Concat skips and a sigmoid mask head."""
    net = net_for("unet_small")
    r = net.rng
    e1 = conv_relu(net, 1, "input", 3, 16)  # 16 x 32x32
    h = net.add(op("MaxPool", "pool1", [e1], kernel_shape=[2, 2], strides=[2, 2]))
    e2 = conv_relu(net, 2, h, 16, 32)  # 32 x 16x16
    h = net.add(op("MaxPool", "pool2", [e2], kernel_shape=[2, 2], strides=[2, 2]))
    h = conv_relu(net, 3, h, 32, 64)  # 64 x 8x8 bottleneck
    h = net.add(conv_transpose(r, "upconv1", h, 64, 32, 2, stride=2))
    h = net.add(op("Concat", "concat1", [h, e2], axis=1))
    h = conv_relu(net, 4, h, 64, 32)
    h = net.add(conv_transpose(r, "upconv2", h, 32, 16, 2, stride=2))
    h = net.add(op("Concat", "concat2", [h, e1], axis=1))
    h = conv_relu(net, 5, h, 32, 16)
    h = net.add(conv(r, "classifier", h, 16, 2, 1))
    net.add(op("Sigmoid", "sigmoid", [h], out="mask"))
    return finish(
        "unet_small", net, [value("input", [1, 3, 32, 32])], [value("mask", [1, 2, 32, 32])],
        "Small U-Net: 2 down/2 up levels, ConvTranspose k2 s2 upsampling, Concat skips, Sigmoid.",
    )


def build_subpixel_sr(name: str = "subpixel_sr", mode: str = "DCR", channels: int = 1) -> onnx.ModelProto:
    """ESPCN-style x3 super-resolution ending in DepthToSpace.

    With a single image channel DCR and CRD produce identical results, so the
    CRD variant uses ``channels=3`` to make the two layouts distinguishable.
    """
    scale = 3
    net = net_for(name)
    r = net.rng
    h = net.add(conv(r, "conv1", "input", channels, 32, 5, pad=2))
    h = net.add(op("Tanh", "tanh1", [h]))
    h = net.add(conv(r, "conv2", h, 32, 16, 3, pad=1))
    h = net.add(op("Tanh", "tanh2", [h]))
    h = net.add(conv(r, "conv3", h, 16, channels * scale * scale, 3, pad=1))
    net.add(op("DepthToSpace", "depth_to_space", [h], out="output", blocksize=scale, mode=mode))
    return finish(
        name, net,
        [value("input", [1, channels, 16, 16])],
        [value("output", [1, channels, 16 * scale, 16 * scale])],
        f"ESPCN-style x{scale} super-resolution, DepthToSpace mode {mode}, {channels} channel(s).",
    )


def prune_mask(w: np.ndarray, percent: int) -> np.ndarray:
    """Boolean keep-mask zeroing exactly ceil(percent% of w.size) smallest-|w| entries.

    A stable argsort breaks ties by flat index, so the pruned count is exact
    even when several entries share the threshold magnitude.
    """
    n_prune = -(-w.size * percent // 100)  # integer ceil, no float rounding
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    keep = np.ones(w.size, dtype=bool)
    keep[order[:n_prune]] = False
    return keep.reshape(w.shape)


def build_lenet5_pruned() -> onnx.ModelProto:
    """LeNet-5 (identical weights to ``lenet5``) with 92% per-tensor magnitude pruning."""
    model = build_lenet5("lenet5_pruned")
    weight_names = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    for init in model.graph.initializer:
        if init.name in weight_names:
            w = numpy_helper.to_array(init)
            pruned = np.where(prune_mask(w, PRUNE_SPARSITY_PERCENT), w, np.float32(0))
            init.CopyFrom(tensor(init.name, pruned))
    model.doc_string = (
        f"LeNet-5 with the same weights as lenet5, Conv/Gemm weights magnitude-pruned to "
        f"{PRUNE_SPARSITY_PERCENT}% zeros per tensor; biases unpruned."
    )
    return model


# --------------------------------------------------------------------------
# Blocks of modern architectures (issue 11, zoo item 5)
#
# Built like the models above, with LayerNormalization, Erf, Gather/Cast/Where on activations, HardSwish,
# HardSigmoid, ReduceMean, Resize linear, Split and Slice; two of them take int64/bool inputs, and
# `model_inputs(name, seed)` gives valid inputs (token ids inside the vocabulary, boolean masks).
#     python models/build_zoo.py --blocks --out DIR    # write only these, with NAME.inputs.npz beside
# --------------------------------------------------------------------------

LN_EPSILON = 1e-5
MASKED_SCORE = -10000.0  # what a masked attention score becomes (BERT's and GPT-2's convention)
BLOCK_SEQUENCE = 16
BLOCK_WIDTH = 32
BLOCK_HEADS = 4
GPT_VOCAB = 64


def const(net: Net, name: str, value: np.ndarray) -> str:
    """Add a constant initializer, keeping its dtype (int64 shapes, bool masks); return its name."""
    net.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
    return name


def linear(net: Net, name: str, x: str, n_in: int, n_out: int) -> str:
    """``x @ W + b`` on the last axis (MatMul then Add, as torch exports nn.Linear on 3-D input)."""
    w = const(net, f"{name}.weight", he_normal(net.rng, (n_in, n_out), fan_in=n_in))
    b = const(net, f"{name}.bias", small_bias(net.rng, n_out))
    h = net.add(op("MatMul", f"{name}_matmul", [x, w]))
    return net.add(op("Add", name, [h, b]))


def layer_norm(net: Net, name: str, x: str, width: int, out: str | None = None) -> str:
    """LayerNormalization over the last axis with random but well-conditioned scale and bias."""
    scale = const(net, f"{name}.scale", net.rng.uniform(0.5, 1.5, width).astype(np.float32))
    bias = const(net, f"{name}.bias", net.rng.normal(0.0, 0.1, width).astype(np.float32))
    return net.add(op("LayerNormalization", name, [x, scale, bias], out, axis=-1, epsilon=LN_EPSILON))


def gelu_erf(net: Net, name: str, x: str) -> str:
    """Exact GELU as torch exports it before opset 20: ``x * 0.5 * (1 + erf(x / sqrt 2))``."""
    sqrt2 = const(net, f"{name}.sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = const(net, f"{name}.one", np.array(1.0, np.float32))
    half = const(net, f"{name}.half", np.array(0.5, np.float32))
    h = net.add(op("Div", f"{name}_div", [x, sqrt2]))
    h = net.add(op("Erf", f"{name}_erf", [h]))
    h = net.add(op("Add", f"{name}_add", [h, one]))
    h = net.add(op("Mul", f"{name}_mul", [x, h]))
    return net.add(op("Mul", name, [h, half]))


def gelu_tanh(net: Net, name: str, x: str) -> str:
    """GPT-2's GELU: ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``, the cube by Pow."""
    three = const(net, f"{name}.three", np.array(3.0, np.float32))
    coeff = const(net, f"{name}.coeff", np.array(0.044715, np.float32))
    root = const(net, f"{name}.root", np.array(math.sqrt(2.0 / math.pi), np.float32))
    one = const(net, f"{name}.one", np.array(1.0, np.float32))
    half = const(net, f"{name}.half", np.array(0.5, np.float32))
    cube = net.add(op("Pow", f"{name}_pow", [x, three]))
    h = net.add(op("Mul", f"{name}_mul_coeff", [cube, coeff]))
    h = net.add(op("Add", f"{name}_add_x", [x, h]))
    h = net.add(op("Mul", f"{name}_mul_root", [h, root]))
    h = net.add(op("Tanh", f"{name}_tanh", [h]))
    h = net.add(op("Add", f"{name}_add_one", [h, one]))
    h = net.add(op("Mul", f"{name}_mul_x", [x, h]))
    return net.add(op("Mul", name, [h, half]))


def attention(net: Net, name: str, x: str, mask_scores: Callable[[str], str]) -> str:
    """Multi-head self-attention on [1, S, D]: Q, K, V projections, heads split by Reshape/Transpose,
    scaled Q·Kᵀ, `mask_scores` applied to the [1, H, S, S] scores, Softmax, ·V, heads merged, output
    projection."""
    seq, width, heads = BLOCK_SEQUENCE, BLOCK_WIDTH, BLOCK_HEADS
    head_width = width // heads
    split_shape = const(net, f"{name}.split_shape", np.array([1, seq, heads, head_width], np.int64))
    merge_shape = const(net, f"{name}.merge_shape", np.array([1, seq, width], np.int64))
    scale = const(net, f"{name}.scale", np.array(1.0 / math.sqrt(head_width), np.float32))
    projected = {}
    for part, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        h = linear(net, f"{name}_{part}", x, width, width)
        h = net.add(op("Reshape", f"{name}_{part}_split", [h, split_shape]))
        projected[part] = net.add(op("Transpose", f"{name}_{part}_heads", [h], perm=perm))
    scores = net.add(op("MatMul", f"{name}_scores", [projected["q"], projected["k"]]))
    scores = net.add(op("Mul", f"{name}_scaled", [scores, scale]))
    scores = mask_scores(scores)
    weights = net.add(op("Softmax", f"{name}_softmax", [scores], axis=-1))
    h = net.add(op("MatMul", f"{name}_context", [weights, projected["v"]]))
    h = net.add(op("Transpose", f"{name}_merge_heads", [h], perm=[0, 2, 1, 3]))
    h = net.add(op("Reshape", f"{name}_merge", [h, merge_shape]))
    return linear(net, f"{name}_out", h, width, width)


def build_transformer_encoder_block() -> onnx.ModelProto:
    """BERT-style post-norm encoder layer: attention with a padding mask, Add & LayerNorm, GELU (Erf) MLP,
    Add & LayerNorm."""
    net = net_for("transformer_encoder_block")
    seq, width = BLOCK_SEQUENCE, BLOCK_WIDTH
    one = const(net, "mask.one", np.array(1.0, np.float32))
    masked = const(net, "mask.masked_score", np.array(MASKED_SCORE, np.float32))
    mask_shape = const(net, "mask.shape", np.array([1, 1, 1, seq], np.int64))
    keep = net.add(op("Cast", "mask_cast", ["mask"], to=TensorProto.FLOAT))
    dropped = net.add(op("Sub", "mask_invert", [one, keep]))
    penalty = net.add(op("Mul", "mask_penalty", [dropped, masked]))
    penalty = net.add(op("Reshape", "mask_broadcast", [penalty, mask_shape]))

    def add_penalty(scores: str) -> str:
        return net.add(op("Add", "attn_masked", [scores, penalty]))

    h = attention(net, "attn", "hidden", add_penalty)
    h = net.add(op("Add", "attn_residual", [h, "hidden"]))
    h = layer_norm(net, "attn_norm", h, width)
    m = linear(net, "mlp_fc1", h, width, 4 * width)
    m = gelu_erf(net, "mlp_gelu", m)
    m = linear(net, "mlp_fc2", m, 4 * width, width)
    m = net.add(op("Add", "mlp_residual", [m, h]))
    layer_norm(net, "mlp_norm", m, width, out="output")
    return finish(
        "transformer_encoder_block", net,
        [value("hidden", [1, seq, width]), helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, seq])],
        [value("output", [1, seq, width])],
        f"Transformer encoder layer (BERT-style, post-norm): {BLOCK_HEADS}-head self-attention with a boolean "
        f"padding mask (Cast, Sub, Mul, Add), Add+LayerNormalization, MLP {width}-{4 * width}-{width} with "
        f"exact GELU (Erf), Add+LayerNormalization. Sequence {seq}, width {width}.",
    )


def build_gpt_decoder_block() -> onnx.ModelProto:
    """GPT-2-style pre-norm decoder layer on token ids: token embedding (Gather) plus learned positions,
    causally masked attention (Where), tanh-GELU (Pow) MLP, final LayerNorm and a language-model head."""
    net = net_for("gpt_decoder_block")
    r = net.rng
    seq, width, vocab = BLOCK_SEQUENCE, BLOCK_WIDTH, GPT_VOCAB
    table = const(net, "wte", (r.standard_normal((vocab, width)) * 0.5).astype(np.float32))
    positions = const(net, "wpe", (r.standard_normal((1, seq, width)) * 0.1).astype(np.float32))
    causal = const(net, "causal_mask", np.tril(np.ones((1, 1, seq, seq), dtype=bool)))
    masked = const(net, "masked_score", np.array(MASKED_SCORE, np.float32))
    x = net.add(op("Gather", "embed_tokens", [table, "tokens"], axis=0))
    x = net.add(op("Add", "embed_positions", [x, positions]))

    def causal_mask(scores: str) -> str:
        return net.add(op("Where", "attn_causal", [causal, scores, masked]))

    h = layer_norm(net, "ln_1", x, width)
    h = attention(net, "attn", h, causal_mask)
    x = net.add(op("Add", "attn_residual", [x, h]))
    h = layer_norm(net, "ln_2", x, width)
    h = linear(net, "mlp_fc", h, width, 4 * width)
    h = gelu_tanh(net, "mlp_gelu", h)
    h = linear(net, "mlp_proj", h, 4 * width, width)
    x = net.add(op("Add", "mlp_residual", [x, h]))
    x = layer_norm(net, "ln_f", x, width)
    head = const(net, "lm_head.weight", he_normal(r, (width, vocab), fan_in=width))
    net.add(op("MatMul", "lm_head", [x, head], out="logits"))
    return finish(
        "gpt_decoder_block", net,
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, seq])],
        [value("logits", [1, seq, vocab])],
        f"GPT-2-style decoder layer: Gather token embedding ({vocab} tokens) + positions, pre-norm "
        f"{BLOCK_HEADS}-head causal attention (Where on a lower-triangular mask), tanh GELU with Pow, final "
        f"LayerNormalization, language-model head. Sequence {seq}, width {width}.",
    )


def hard_swish(net: Net, name: str, x: str) -> str:
    return net.add(op("HardSwish", name, [x]))


def build_mobilenetv3_block() -> onnx.ModelProto:
    """MobileNetV3 inverted residual: 1x1 expand, HardSwish, depthwise 3x3, HardSwish, squeeze-excite
    (ReduceMean, 1x1 reduce, ReLU, 1x1 expand, HardSigmoid, Mul), 1x1 project, residual Add."""
    net = net_for("mobilenetv3_block")
    r = net.rng
    c, expanded, squeezed = 16, 48, 12
    h = net.add(conv(r, "expand", "input", c, expanded, 1, bias=False))
    h = net.add(bn(r, "expand_bn", h, expanded))
    h = hard_swish(net, "expand_hswish", h)
    h = net.add(conv(r, "depthwise", h, expanded, expanded, 3, pad=1, bias=False, group=expanded))
    h = net.add(bn(r, "depthwise_bn", h, expanded))
    h = hard_swish(net, "depthwise_hswish", h)
    s = net.add(op("ReduceMean", "se_squeeze", [h], axes=[2, 3], keepdims=1))
    s = net.add(conv(r, "se_reduce", s, expanded, squeezed, 1))
    s = net.add(op("Relu", "se_relu", [s]))
    s = net.add(conv(r, "se_expand", s, squeezed, expanded, 1))
    s = net.add(op("HardSigmoid", "se_gate", [s], alpha=1.0 / 6.0, beta=0.5))
    h = net.add(op("Mul", "se_scale", [h, s]))
    h = net.add(conv(r, "project", h, expanded, c, 1, bias=False))
    h = net.add(bn(r, "project_bn", h, c))
    net.add(op("Add", "residual", [h, "input"], out="output"))
    return finish(
        "mobilenetv3_block", net, [value("input", [1, c, 16, 16])], [value("output", [1, c, 16, 16])],
        f"MobileNetV3 block: 1x1 {c}->{expanded}, BN, HardSwish, depthwise 3x3, BN, HardSwish, squeeze-excite "
        f"(ReduceMean, 1x1 {expanded}->{squeezed}, ReLU, 1x1, HardSigmoid, Mul), 1x1 {expanded}->{c}, BN, "
        f"residual Add.",
    )


def build_bilinear_seg_head() -> onnx.ModelProto:
    """Segmentation head with bilinear upsampling: 1/4-scale scores Resized x2 (linear, align_corners),
    added to 1/2-scale scores, Resized to the input size (linear, half_pixel, by sizes)."""
    net = net_for("bilinear_seg_head")
    r = net.rng
    n_cls = 4
    f1 = net.add(conv(r, "conv1", "input", 3, 16, 3, stride=2, pad=1))
    f1 = net.add(op("Relu", "relu1", [f1]))  # 16 x 16x16
    f2 = net.add(conv(r, "conv2", f1, 16, 32, 3, stride=2, pad=1))
    f2 = net.add(op("Relu", "relu2", [f2]))  # 32 x 8x8
    coarse = net.add(conv(r, "score_coarse", f2, 32, n_cls, 1))
    fine = net.add(conv(r, "score_fine", f1, 16, n_cls, 1))
    scales = const(net, "up1.scales", np.array([1.0, 1.0, 2.0, 2.0], np.float32))
    sizes = const(net, "up2.sizes", np.array([1, n_cls, 32, 32], np.int64))
    h = net.add(op("Resize", "up1", [coarse, "", scales], mode="linear",
                   coordinate_transformation_mode="align_corners"))
    h = net.add(op("Add", "fuse", [h, fine]))
    net.add(op("Resize", "up2", [h, "", "", sizes], out="scores", mode="linear",
               coordinate_transformation_mode="half_pixel"))
    return finish(
        "bilinear_seg_head", net, [value("input", [1, 3, 32, 32])], [value("scores", [1, n_cls, 32, 32])],
        "Segmentation head: 2 strided convs, 1x1 score heads, Resize linear x2 (align_corners, scales), "
        "skip Add, Resize linear to 32x32 (half_pixel, sizes).",
    )


def shuffle_unit(net: Net, prefix: str, x: str, channels: int, *, by_slice: bool, out: str | None = None) -> str:
    """ShuffleNetV2 unit: halve the channels (Split, or two Slices as torch's dynamo exporter writes
    `chunk`), 1x1-dw3x3-1x1 branch on the second half, Concat, channel shuffle (Reshape, Transpose,
    Reshape)."""
    r = net.rng
    half = channels // 2
    if by_slice:
        axis = const(net, f"{prefix}.axis", np.array([1], np.int64))
        bounds = [const(net, f"{prefix}.bound{i}", np.array([b], np.int64)) for i, b in enumerate((0, half, channels))]
        kept = net.add(op("Slice", f"{prefix}_slice_kept", [x, bounds[0], bounds[1], axis]))
        branch = net.add(op("Slice", f"{prefix}_slice_branch", [x, bounds[1], bounds[2], axis]))
    else:
        split = const(net, f"{prefix}.split", np.array([half, half], np.int64))
        kept, branch = f"{prefix}_split_kept", f"{prefix}_split_branch"
        net.nodes.append(helper.make_node("Split", [x, split], [kept, branch], name=f"{prefix}_split", axis=1))
    h = net.add(conv(r, f"{prefix}_pw1", branch, half, half, 1, bias=False))
    h = net.add(bn(r, f"{prefix}_pw1_bn", h, half))
    h = net.add(op("Relu", f"{prefix}_pw1_relu", [h]))
    h = net.add(conv(r, f"{prefix}_dw", h, half, half, 3, pad=1, bias=False, group=half))
    h = net.add(bn(r, f"{prefix}_dw_bn", h, half))
    h = net.add(conv(r, f"{prefix}_pw2", h, half, half, 1, bias=False))
    h = net.add(bn(r, f"{prefix}_pw2_bn", h, half))
    h = net.add(op("Relu", f"{prefix}_pw2_relu", [h]))
    h = net.add(op("Concat", f"{prefix}_concat", [kept, h], axis=1))
    groups = const(net, f"{prefix}.groups_shape", np.array([1, 2, half, 8, 8], np.int64))
    flat = const(net, f"{prefix}.flat_shape", np.array([1, channels, 8, 8], np.int64))
    h = net.add(op("Reshape", f"{prefix}_shuffle_split", [h, groups]))
    h = net.add(op("Transpose", f"{prefix}_shuffle", [h], perm=[0, 2, 1, 3, 4]))
    return net.add(op("Reshape", f"{prefix}_shuffle_merge", [h, flat], out))


def build_shufflenet_block() -> onnx.ModelProto:
    """Two ShuffleNetV2 units on 32x8x8: the first halves the channels by Split, the second by Slice."""
    net = net_for("shufflenet_block")
    h = shuffle_unit(net, "unit1", "input", 32, by_slice=False)
    shuffle_unit(net, "unit2", h, 32, by_slice=True, out="output")
    return finish(
        "shufflenet_block", net, [value("input", [1, 32, 8, 8])], [value("output", [1, 32, 8, 8])],
        "Two ShuffleNetV2 units (channel split by Split, then by Slice; 1x1, depthwise 3x3, 1x1 branch with "
        "BN/ReLU; Concat; channel shuffle by Reshape-Transpose-Reshape).",
    )


BLOCK_BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "transformer_encoder_block": build_transformer_encoder_block,
    "gpt_decoder_block": build_gpt_decoder_block,
    "mobilenetv3_block": build_mobilenetv3_block,
    "bilinear_seg_head": build_bilinear_seg_head,
    "shufflenet_block": build_shufflenet_block,
}


def model_inputs(name: str, seed: int = 0, samples: int | None = None) -> dict[str, np.ndarray]:
    """Valid inputs of a zoo model or block: floats N(0, 1) (the same the zoo tests draw), token ids in the
    vocabulary, a padding mask whose last quarter is False. With `samples`, that many sets stacked on a new leading axis (rcc's `--inputs`)."""
    model = (BLOCK_BUILDERS.get(name) or BUILDERS[name])()
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for info in model.graph.input:
        shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
        stacked = shape if samples is None else [samples, *shape]
        elem_type = info.type.tensor_type.elem_type
        if elem_type == TensorProto.INT64:
            arrays[info.name] = rng.integers(0, GPT_VOCAB, stacked, dtype=np.int64)
        elif elem_type == TensorProto.BOOL:
            mask = np.ones(stacked, dtype=bool)
            mask[..., shape[-1] - shape[-1] // 4:] = False
            arrays[info.name] = mask
        else:
            arrays[info.name] = rng.standard_normal(stacked).astype(np.float32)
    return arrays


BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp": build_mlp,
    "lenet5": build_lenet5,
    "resnet_small": build_resnet_small,
    "dcgan_generator": build_dcgan_generator,
    "fcn_segmenter": build_fcn_segmenter,
    "unet_small": build_unet_small,
    "subpixel_sr": build_subpixel_sr,
    "subpixel_sr_crd": lambda: build_subpixel_sr("subpixel_sr_crd", mode="CRD", channels=3),
    "lenet5_pruned": build_lenet5_pruned,
}

BUILDERS.update(BLOCK_BUILDERS)  # the blocks are zoo models too (int64/bool inputs: see model_inputs)


def build_all() -> dict[str, onnx.ModelProto]:
    """Build every zoo model, keyed by file stem."""
    return {name: builder() for name, builder in BUILDERS.items()}


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def write_all(out_dir: Path, builders: dict[str, Callable[[], onnx.ModelProto]] | None = None) -> dict[str, Path]:
    """Build, validate and write every model (of `builders`, default BUILDERS) to ``out_dir/<name>.onnx``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, builder in (BUILDERS if builders is None else builders).items():
        model = builder()
        onnx.checker.check_model(model, full_check=True)
        path = out_dir / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        paths[name] = path
    return paths


def check(ref_dir: Path) -> list[str]:
    """Rebuild into a temp dir and list every difference from ``ref_dir``."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_all(Path(tmp))
        for name, path in fresh.items():
            ref = ref_dir / path.name
            if not ref.is_file():
                problems.append(f"missing: {ref}")
            elif ref.read_bytes() != path.read_bytes():
                problems.append(f"differs: {ref}")
        expected = {p.name for p in fresh.values()}
        for stale in sorted(ref_dir.glob("*.onnx")):
            if stale.name not in expected:
                problems.append(f"not built by this script: {stale}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the .onnx files (default: next to this script)")
    parser.add_argument("--check", action="store_true",
                        help="rebuild into a temp dir and exit 1 if any file in --out differs")
    parser.add_argument("--blocks", action="store_true",
                        help="write only the blocks of BLOCK_BUILDERS, each with NAME.inputs.npz (3 input sets "
                             "stacked on a leading axis), into --out, which must then be given")
    args = parser.parse_args(argv)

    if args.blocks:
        if args.out is None:
            parser.error("--blocks needs --out DIR")
        for name, path in write_all(args.out, BLOCK_BUILDERS).items():
            np.savez(args.out / f"{name}.inputs.npz", **model_inputs(name, samples=3))
            print(f"{path}  {path.stat().st_size} bytes")
        return 0
    args.out = args.out or Path(__file__).resolve().parent

    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("zoo is stale; run: python models/build_zoo.py", file=sys.stderr)
            return 1
        print(f"zoo up to date ({len(BUILDERS)} models in {args.out})")
        return 0

    for name, path in write_all(args.out).items():
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
