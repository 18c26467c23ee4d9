"""The zoo's convolutional and fully connected models (`models/build_zoo.py` writes them): MLP, LeNet-5 and its
pruned twin, a small ResNet, a DCGAN generator, an FCN segmenter, a small U-Net and sub-pixel super-resolution
nets, each from `zoo_layers` with its own seed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from zoo_layers import (PRUNE_SPARSITY_PERCENT, Net, bn, conv, conv_transpose, finish, gemm, net_for, op, tensor,
                        value)

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
