"""The zoo's blocks of modern architectures (issue 11; `models/build_zoo.py` writes them): a transformer
encoder block, a GPT-style decoder block with embeddings, a MobileNetV3 block, a bilinear segmentation head and
ShuffleNet units, each from `zoo_layers` with its own seed.
"""

from __future__ import annotations

from collections.abc import Callable

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from zoo_layers import Net, bn, conv, finish, he_normal, net_for, op, small_bias, value

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
