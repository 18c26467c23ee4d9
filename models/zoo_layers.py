"""The zoo's building blocks (rcc's model zoo, `models/build_zoo.py`): fixed seeds and metadata, seeded weight
initialisers, the ONNX layers the zoo's models are made of, and `Net`, which gathers nodes and initializers in
order. Every model built from them is byte-for-byte reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
