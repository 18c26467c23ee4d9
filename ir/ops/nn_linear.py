"""Graph-level ops that carry weights: matmul, 2-D convolution and transposed convolution, batch norm,
and what every other module needs to know about a weighted op: its weight as the matrices crossbars
hold ([G, K, M]) and back, per-output-channel scaling, and its multiply-accumulate count.

Conventions (ONNX's): activations NCHW, conv weights [M, C/group, kh, kw], transposed-conv weights
[C, M/group, kh, kw], `pads` = [h_begin, w_begin, h_end, w_end]. The matrix view of a conv weight is
[G, K, M/G]: per group, rows ordered (c, kh, kw) like `vec.im2col` columns, one column per output
channel; a matmul weight [K, M] is one group.

Float32 products (matmul, conv, transposed conv) accumulate in float64 and round once to float32: each
result is the exact sum rounded (to within float64's error, far below float32's half-unit), so the
interpreter's difference from onnxruntime is onnxruntime's own float32 rounding, not the sum of both
(ResNet-50's logits: rel L2 7e-7 → 4e-7 against onnxruntime, inside allclose(1e-4, 1e-5)).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from rcc.ir.core import Op
from rcc.ir.optable import Attr, broadcast_shapes, define
from rcc.ir.types import TensorType


def conv_weight_matrix(weight: np.ndarray, group: int) -> np.ndarray:
    """A conv weight [M, C/g, *kernel] (any number of kernel axes) as matrices [G, C/g·Πkernel, M/g]."""
    return weight.reshape(group, weight.shape[0] // group, -1).transpose(0, 2, 1)


def conv_weight_from_matrix(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `conv_weight_matrix`: matrices [G, K, M/g] back to a conv weight of `shape`."""
    return matrix.transpose(0, 2, 1).reshape(shape)


def swap_conv_transpose_weight(weight: np.ndarray, group: int) -> np.ndarray:
    """A transposed-conv weight [C, M/g, *kernel] as the conv weight [M, C/g, *kernel] with inputs and
    outputs swapped (kernel not flipped); applied to that conv weight it gives the original back."""
    c, m_per_group, *kernel = weight.shape
    swapped = weight.reshape(group, c // group, m_per_group, *kernel).swapaxes(1, 2)
    return swapped.reshape(group * m_per_group, c // group, *kernel)


def conv_transpose_weight_matrix(weight: np.ndarray, group: int) -> np.ndarray:
    """A transposed-conv weight [C, M/g, *kernel] as the matrices that scatter each input pixel,
    [G, C/g, M/g·Πkernel]: per group, one row per input channel, columns ordered (m, *kernel)."""
    return weight.reshape(group, weight.shape[0] // group, -1)


def flipped_kernel(weight: np.ndarray, group: int) -> np.ndarray:
    """The conv2d weight [M, C/g, kh, kw] equivalent to transposed-conv weight [C, M/g, kh, kw], flipped."""
    return np.ascontiguousarray(swap_conv_transpose_weight(weight, group)[:, :, ::-1, ::-1])


def weight_matrix(op: Op) -> np.ndarray:
    """The constant weight of a nn.conv2d or nn.matmul as the matrices crossbars hold, [G, K, M]."""
    weight = op.operands[1].data
    if op.opname == "nn.matmul":
        return weight[None]
    assert op.opname == "nn.conv2d", op.opname
    return conv_weight_matrix(weight, op.attrs["group"])


def weight_from_matrix(op: Op, matrix: np.ndarray) -> np.ndarray:
    """Inverse of `weight_matrix`: [G, K, M] back to the op's weight layout and dtype."""
    original = op.operands[1].data
    if op.opname == "nn.matmul":
        return matrix[0].astype(original.dtype)
    return conv_weight_from_matrix(matrix, original.shape).astype(original.dtype)


def scale_output_channels(op: Op, weight: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """`weight` (in the layout of `op`'s weight) with output channel m multiplied by factor[m]."""
    if op.opname == "nn.matmul":  # [K, M], channel = column
        return weight * factor.reshape(1, -1)
    group = op.attrs["group"]
    if op.opname == "nn.conv_transpose2d":
        conv = swap_conv_transpose_weight(weight, group)
        return swap_conv_transpose_weight(conv * factor.reshape(-1, *(1,) * (conv.ndim - 1)), group)
    return weight * factor.reshape(-1, *(1,) * (weight.ndim - 1))


def op_macs(op: Op) -> int:
    """Multiply-accumulates a dense implementation of `op` performs (0 for ops without weights)."""
    out = op.results[0].type
    if op.opname == "nn.conv2d":
        weight = op.operands[1].type.shape
        return out.size * weight[1] * weight[2] * weight[3]
    if op.opname == "nn.conv_transpose2d":
        x, weight = op.operands[0].type.shape, op.operands[1].type.shape
        return x[0] * x[2] * x[3] * weight[0] * weight[1] * weight[2] * weight[3]
    if op.opname == "nn.matmul":
        lhs = op.operands[0].type.shape
        return out.size * (lhs[-1] if lhs else 1)
    return 0

_CONV_ATTRS = {
    "strides": Attr("ints", (1, 1)),
    "pads": Attr("ints", (0, 0, 0, 0)),
    "dilations": Attr("ints", (1, 1)),
    "group": Attr("int", 1),
}


def _matmul_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    a, b = types
    if a.dtype != b.dtype:
        raise ValueError(f"operand dtypes differ: {a.dtype} and {b.dtype}")
    return [TensorType(matmul_shape(a.shape, b.shape), a.dtype)]


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """numpy.matmul's result shape, worked out from the shapes alone (1-D operands promoted and the
    added axis dropped, batch axes broadcast); ValueError when they do not multiply."""
    if not a or not b:
        raise ValueError(f"shapes {list(a)} and {list(b)} do not multiply (matmul needs rank ≥ 1)")
    lhs = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    rhs = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if lhs[-1] != rhs[-2]:
        raise ValueError(f"shapes {list(a)} and {list(b)} do not multiply")
    try:
        batch = broadcast_shapes(lhs[:-2], rhs[:-2])
    except ValueError:
        raise ValueError(f"shapes {list(a)} and {list(b)} do not multiply (batch axes)") from None
    return batch + (lhs[-2],) * (len(a) > 1) + (rhs[-1],) * (len(b) > 1)


@define("nn.matmul", operands=("lhs", "rhs"), infer=_matmul_infer, tags=("weighted",))
def matmul(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """numpy.matmul (batch dimensions broadcast, 1-D operands promoted as numpy does); float32 operands are
    multiplied in float64 and rounded once (a sum beyond float32 rounds to ±inf, as in onnxruntime)."""
    with np.errstate(over="ignore", invalid="ignore"):   # IEEE: overflow to ±inf; inf − inf, 0·inf are NaN
        if lhs.dtype == np.float32 and rhs.dtype == np.float32:
            return np.matmul(lhs.astype(np.float64), rhs.astype(np.float64)).astype(np.float32)
        return np.matmul(lhs, rhs)


def _accumulated(*arrays: np.ndarray | None) -> list[np.ndarray | None]:
    """Float32 arrays as float64 (what the products accumulate in), others as they are."""
    return [a.astype(np.float64) if a is not None and a.dtype == np.float32 else a for a in arrays]


def _check_conv_attrs(attrs: dict) -> None:
    if len(attrs["strides"]) != 2 or len(attrs["dilations"]) != 2 or len(attrs["pads"]) != 4:
        raise ValueError("strides and dilations need 2 values, pads 4")
    if min(attrs["strides"]) < 1 or min(attrs["dilations"]) < 1 or min(attrs["pads"]) < 0 or attrs["group"] < 1:
        raise ValueError("strides, dilations and group must be positive, pads non-negative")


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def _conv_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    _check_conv_attrs(attrs)
    x, w = types[0], types[1]
    if x.rank != 4 or w.rank != 4:
        raise ValueError(f"expects 4-D input and weight, got {x} and {w}")
    group = attrs["group"]
    if x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise ValueError(f"input channels {x.shape[1]} do not match weight {list(w.shape)} with group {group}")
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise ValueError(f"bias shape {list(types[2].shape)} is not [{w.shape[0]}]")
    (sh, sw), (dh, dw), p = attrs["strides"], attrs["dilations"], attrs["pads"]
    oh = conv_output_size(x.shape[2], w.shape[2], sh, p[0], p[2], dh)
    ow = conv_output_size(x.shape[3], w.shape[3], sw, p[1], p[3], dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel larger than padded input ({oh}x{ow} output)")
    return [TensorType((x.shape[0], w.shape[0], oh, ow), x.dtype)]


def conv_windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, ...], pads: tuple[int, ...],
                 dilations: tuple[int, ...], pad_value: float = 0.0) -> np.ndarray:
    """Read-only view of x's receptive fields: [N, C, out_h, out_w, kh, kw] (of a padded copy when
    there are pads, else of x itself)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    padded = x
    if any(pads):
        n, c, h, w = x.shape
        padded = np.full((n, c, h + pads[0] + pads[2], w + pads[1] + pads[3]), pad_value, dtype=x.dtype)
        padded[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    oh = conv_output_size(x.shape[2], kh, sh, pads[0], pads[2], dh)
    ow = conv_output_size(x.shape[3], kw, sw, pads[1], pads[3], dw)
    sn, sc, sy, sx = padded.strides
    return strided_view(padded, padded, (x.shape[0], x.shape[1], oh, ow, kh, kw),
                        (sn, sc, sh * sy, sw * sx, dh * sy, dw * sx))


def strided_view(array: np.ndarray, owner: np.ndarray, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of `array`'s memory with `shape` and `strides`, from its first element; `owner` is an
    array starting at the same address (array itself, or the C-contiguous array it is a view of), which
    makes the view a plain ndarray over its buffer, cheaper than numpy's as_strided."""
    if owner.flags.c_contiguous and owner.__array_interface__["data"][0] == array.__array_interface__["data"][0]:
        view = np.ndarray(shape, array.dtype, owner, 0, strides)
        view.flags.writeable = False
        return view
    return as_strided(array, shape, strides, writeable=False)


@define("nn.conv2d", operands=("x", "weight", "bias?"), infer=_conv_infer, attrs=_CONV_ATTRS, tags=("weighted",))
def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *, strides: tuple[int, ...],
           pads: tuple[int, ...], dilations: tuple[int, ...], group: int) -> np.ndarray:
    """2-D cross-correlation as ONNX Conv defines it, computed as grouped im2col matmuls."""
    dtype = x.dtype
    x, weight, bias = _accumulated(x, weight, bias)
    n, _, _, _ = x.shape
    m, c_per_group, kh, kw = weight.shape
    windows = conv_windows(x, (kh, kw), strides, pads, dilations)
    oh, ow = windows.shape[2:4]
    # [group, N*oh*ow, C/g*kh*kw] @ [group, C/g*kh*kw, M/g]
    cols = windows.reshape(n, group, c_per_group, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    cols = cols.reshape(group, n * oh * ow, c_per_group * kh * kw)
    with np.errstate(over="ignore", invalid="ignore"):   # IEEE, as in matmul
        out = np.matmul(cols, conv_weight_matrix(weight, group)).reshape(group, n, oh, ow, m // group)
        out = out.transpose(1, 0, 4, 2, 3).reshape(n, m, oh, ow)
        if bias is not None:
            out = out + bias.reshape(1, m, 1, 1)
        return np.ascontiguousarray(out, dtype=dtype)


def conv_transpose_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                               dilation: int, output_padding: int) -> int:
    return (size - 1) * stride - pad_begin - pad_end + dilation * (kernel - 1) + output_padding + 1


def _conv_transpose_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    _check_conv_attrs(attrs)
    x, w = types[0], types[1]
    if x.rank != 4 or w.rank != 4:
        raise ValueError(f"expects 4-D input and weight, got {x} and {w}")
    group, output_padding = attrs["group"], attrs["output_padding"]
    if x.shape[1] != w.shape[0] or w.shape[0] % group:
        raise ValueError(f"input channels {x.shape[1]} do not match weight {list(w.shape)} with group {group}")
    m = w.shape[1] * group
    if len(types) == 3 and types[2].shape != (m,):
        raise ValueError(f"bias shape {list(types[2].shape)} is not [{m}]")
    if len(output_padding) != 2 or min(output_padding) < 0:
        raise ValueError("output_padding needs 2 non-negative values")
    # ONNX allows output_padding < max(stride, dilation), but onnxruntime (our reference) refuses ≥ stride.
    if any(extra >= stride for extra, stride in zip(output_padding, attrs["strides"])):
        raise ValueError(f"output_padding {list(output_padding)} must be smaller than strides "
                         f"{list(attrs['strides'])} (onnxruntime's limit)")
    (sh, sw), (dh, dw), p = attrs["strides"], attrs["dilations"], attrs["pads"]
    oh = conv_transpose_output_size(x.shape[2], w.shape[2], sh, p[0], p[2], dh, output_padding[0])
    ow = conv_transpose_output_size(x.shape[3], w.shape[3], sw, p[1], p[3], dw, output_padding[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"pads crop the whole output ({oh}x{ow})")
    return [TensorType((x.shape[0], m, oh, ow), x.dtype)]


@define("nn.conv_transpose2d", operands=("x", "weight", "bias?"), infer=_conv_transpose_infer,
        attrs={**_CONV_ATTRS, "output_padding": Attr("ints", (0, 0))}, tags=("weighted",))
def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
                     strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...], group: int,
                     output_padding: tuple[int, ...]) -> np.ndarray:
    """ONNX ConvTranspose: every input pixel scatters x·W into the output (col2im), then pads crop."""
    dtype = x.dtype
    x, weight, bias = _accumulated(x, weight, bias)
    n, c, h, w = x.shape
    _, m_per_group, kh, kw = weight.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh = conv_transpose_output_size(h, kh, sh, pads[0], pads[2], dh, output_padding[0])
    ow = conv_transpose_output_size(w, kw, sw, pads[1], pads[3], dw, output_padding[1])
    # cols[n, g, m/g*kh*kw, h*w] = W_g^T x_g
    kernels = conv_transpose_weight_matrix(weight, group).transpose(0, 2, 1)
    full = np.zeros((n, group * m_per_group, max((h - 1) * sh + dh * (kh - 1) + 1, pads[0] + oh),
                     max((w - 1) * sw + dw * (kw - 1) + 1, pads[1] + ow)), dtype=x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):   # IEEE, as in matmul
        cols = np.matmul(kernels[None], x.reshape(n, group, c // group, h * w))
        cols = cols.reshape(n, group * m_per_group, kh, kw, h, w)
        for i in range(kh):
            for j in range(kw):
                full[:, :, i * dh:i * dh + (h - 1) * sh + 1:sh, j * dw:j * dw + (w - 1) * sw + 1:sw] += cols[:, :, i, j]
        out = full[:, :, pads[0]:pads[0] + oh, pads[1]:pads[1] + ow]
        if bias is not None:
            out = out + bias.reshape(1, -1, 1, 1)
        return np.ascontiguousarray(out, dtype=dtype)


def _batch_norm_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    if x.rank < 2 or any(t.shape != (x.shape[1],) for t in types[1:]):
        raise ValueError(f"scale, bias, mean and var must be [{x.shape[1] if x.rank > 1 else '?'}]")
    return [x]


@define("nn.batch_norm", operands=("x", "scale", "bias", "mean", "var"), infer=_batch_norm_infer,
        attrs={"epsilon": Attr("float", 1e-5)})
def batch_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, *,
               epsilon: float) -> np.ndarray:
    """Inference batch normalisation over axis 1: (x - mean) / sqrt(var + epsilon) * scale + bias. A negative
    var + epsilon gives NaN and a zero one ±inf, as in onnxruntime."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        factor = (scale / np.sqrt(var + x.dtype.type(epsilon))).reshape(shape)
        return ((x - mean.reshape(shape)) * factor + bias.reshape(shape)).astype(x.dtype)
