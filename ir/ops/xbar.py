"""Crossbar-level (`xbar.`) and vector-unit (`vec.`) ops: the IR after lowering for a ReRAM target.

    %cols = vec.im2col(%x) {...}                       : f32[P,K]   receptive fields as rows
    %xq   = vec.quantize(%cols) {scale, bits, signed}  : i32[P,K]   activations to input_bits integers
    %acc  = xbar.mvm(%xq, %wq) {mapping...}            : i64[P,M]   integer matrix-vector products
    %y    = vec.dequantize(%acc, %w_scale, %bias) {input_scale} : f32[P,M]

`xbar.mvm` carries its whole mapping as attributes (array size, bit widths, tiles, slices, arrays, the
index of its first array). `xbar.mvm`s that read the same weights (and packing maps) in one reprogramming phase
run on the same arrays, programmed once, one after another (`array_owner_ops`: a recurrent layer's steps all
read R). Its semantics here are the ideal product (what a lossless ADC gives); the
machine model in `runtime/` executes the same op bit-accurately. Every other graph-level op without
weights runs on the digital vector unit unchanged.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.core import Op
from rcc.ir.ops.nn_linear import _check_conv_attrs, conv_output_size, strided_view
from rcc.ir import xbar_figures
from rcc.ir.optable import DERIVED, Attr, define
from rcc.ir.types import TensorType

_EXACT_FLOAT64 = 2.0 ** 53
_DEQUANTIZE_BLOCK = 1 << 15   # float64 elements dequantized at a time


def arrays_key(op: Op, phase: int | None = None) -> tuple:
    """What an `xbar.mvm`'s arrays hold and when: its phase (`phase`, else its attribute) and the names of its weights
    and maps. mvms with equal keys run on the same arrays."""
    return (op.attrs.get("phase", 0) if phase is None else phase, *(v.name for v in op.operands[1:]))


def array_owner_ops(ops: list[Op]) -> dict[Op, Op]:
    """Each `xbar.mvm` of `ops` that runs on an earlier one's arrays (the same weights and maps, in the same
    `phase`), mapped to that earlier one."""
    first: dict[tuple, Op] = {}
    owners = {}
    for op in ops:
        if op.opname == "xbar.mvm":
            owner = first.setdefault(arrays_key(op), op)
            if owner is not op:
                owners[op] = owner
    return owners


def _im2col_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    if x.rank != 4 or len(attrs["kernel"]) != 2:
        raise ValueError(f"expects a 4-D input and a 2-D kernel, got {x}")
    _check_conv_attrs({**attrs, "group": 1})
    (kh, kw), (sh, sw), (dh, dw), p = attrs["kernel"], attrs["strides"], attrs["dilations"], attrs["pads"]
    oh = conv_output_size(x.shape[2], kh, sh, p[0], p[2], dh)
    ow = conv_output_size(x.shape[3], kw, sw, p[1], p[3], dw)
    if oh < 1 or ow < 1:
        raise ValueError("kernel larger than padded input")
    return [TensorType((x.shape[0] * oh * ow, x.shape[1] * kh * kw), x.dtype)]


@define("vec.im2col", operands=("x",), infer=_im2col_infer,
        attrs={"kernel": Attr("ints"), "strides": Attr("ints", (1, 1)), "pads": Attr("ints", (0, 0, 0, 0)),
               "dilations": Attr("ints", (1, 1))})
def im2col(x: np.ndarray, *, kernel, strides, pads, dilations) -> np.ndarray:
    """Receptive fields as rows [N·OH·OW, C·kh·kw] (row order n, oh, ow; column order c, kh, kw)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    n, c = x.shape[:2]
    oh = conv_output_size(x.shape[2], kh, sh, pads[0], pads[2], dh)
    ow = conv_output_size(x.shape[3], kw, sw, pads[1], pads[3], dw)
    # from a channels-last padded input (x itself, viewed, without pads): one strided copy per kernel tap,
    # far faster than copying the 6-D transposed window view, unless the taps are many and the channels
    # few (each tap's copy then moves c-element runs): then the one window view in a single copy
    padded = padded_channels_last(x, pads)
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    if 4 * c < kh * kw:
        s0, s1, s2, s3 = padded.strides
        cols[...] = strided_view(padded, x if padded.base is x else padded, cols.shape,
                                 (s0, sh * s1, sw * s2, s3, dh * s1, dw * s2))
        return cols.reshape(n * oh * ow, c * kh * kw)
    _copy_taps(padded, cols.transpose(4, 5, 0, 1, 2, 3), kernel, strides, dilations)
    return cols.reshape(n * oh * ow, c * kh * kw)


def im2col_taps_first(x: np.ndarray, kernel, strides, pads, dilations) -> np.ndarray:
    """`im2col`'s rows with their columns in (kh, kw, c) order, each tap's channels contiguous (a faster
    copy when channels are many); a layer reading them takes its weight rows in the same order
    (`taps_first_order`)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    n, c = x.shape[:2]
    oh = conv_output_size(x.shape[2], kh, sh, pads[0], pads[2], dh)
    ow = conv_output_size(x.shape[3], kw, sw, pads[1], pads[3], dw)
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    padded = padded_channels_last(x, pads)
    if dw == 1 and padded.strides[2] == c * padded.itemsize and (c == 1 or padded.strides[3] == padded.itemsize):
        _copy_tap_rows(padded, cols, strides, dh)
    else:
        _copy_taps(padded, cols.transpose(3, 4, 0, 1, 2, 5), kernel, strides, dilations)
    return cols.reshape(n * oh * ow, kh * kw * c)


def _copy_tap_rows(padded: np.ndarray, cols: np.ndarray, strides, dh: int) -> None:
    """`cols` [N, OH, OW, kh, kw, C] from the channels-last padded input, one kernel row at a time: without dilation
    along the width, and with each pixel's channels contiguous and pixels side by side (the padded copy; an unpadded
    input's view only with one channel), the kw pixels a window row reads are one run, so each kernel row is one
    strided copy of kw·C-element runs (ResNet-50's 64 channels at 56×56, 3×3: 1.4–1.8 ms against 2.1–3.1 for the
    nine tap copies of C-element runs, medians of 20, in turns)."""
    n, oh, ow, kh, kw, c = cols.shape
    (sh, sw), (s0, s1, s2, _) = strides, padded.strides
    rows = cols.reshape(n, oh, ow, kh, kw * c)
    for i in range(kh):
        start = padded[:, i * dh:]
        rows[:, :, :, i] = strided_view(start, padded if i == 0 else start, (n, oh, ow, kw * c),
                                        (s0, sh * s1, sw * s2, padded.itemsize))


def im2col_sources(shape: tuple[int, ...], kernel, strides, pads, dilations) -> np.ndarray:
    """For an input of `shape`, the flat index into x (x.size for a padding zero) of every element of
    `im2col(x, ...)`: im2col as one gather, `np.take(append(x.ravel(), 0), sources)` (faster than its copies
    when the channels are few and the taps many)."""
    size = int(np.prod(shape))
    positions = np.arange(1, size + 1, dtype=np.int64).reshape(shape)   # padding reads 0, so index −1
    sources = im2col(positions, kernel=kernel, strides=strides, pads=pads, dilations=dilations) - 1
    sources[sources < 0] = size
    return sources


def taps_first_order(channels: int, taps: int) -> np.ndarray:
    """Row r of the (kh, kw, c)-ordered columns is row order[r] of im2col's (c, kh, kw) order."""
    return np.arange(channels * taps).reshape(channels, taps).T.reshape(-1)


def _copy_taps(padded: np.ndarray, taps: np.ndarray, kernel, strides, dilations) -> None:
    """Copy each kernel tap's pixels [N, OH, OW, C] from the channels-last padded input into `taps[i, j]`."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    oh, ow = taps.shape[3:5]
    for i in range(kh):
        for j in range(kw):
            taps[i, j] = padded[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]


def padded_channels_last(x: np.ndarray, pads) -> np.ndarray:
    """x [N, C, H, W] as [N, H + pads, W + pads, C] with zeros around (a view of x when the pads are 0)."""
    nhwc = x.transpose(0, 2, 3, 1)
    if not any(pads):
        return nhwc
    n, h, w, c = nhwc.shape
    padded = np.zeros((n, h + pads[0] + pads[2], w + pads[1] + pads[3], c), dtype=x.dtype)
    padded[:, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = nhwc
    return padded


def _quantize_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if types[0].dtype not in ("f32", "f64") or not 1 <= attrs["bits"] <= 16 or not attrs["scale"] > 0:
        raise ValueError("quantizes float tensors to 1..16 bits with a positive scale")
    return [TensorType(types[0].shape, "i32")]


def quantize_limits(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of quantized activations: symmetric when signed, [0, 2^bits − 1] otherwise."""
    high = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    return (-high if signed else 0), high


@define("vec.quantize", operands=("x",), infer=_quantize_infer,
        attrs={"scale": Attr("float"), "bits": Attr("int"), "signed": Attr("bool")})
def quantize(x: np.ndarray, *, scale: float, bits: int, signed: bool) -> np.ndarray:
    """round(x · (1/scale)) in float32 (half to even), saturated to the range of `bits` (symmetric if signed)."""
    return quantized_levels(x, scale, bits, signed).astype(np.int32)


def quantized_levels(x: np.ndarray, scale: float, bits: int, signed: bool) -> np.ndarray:
    """`quantize`'s integers, held in float32 (exact: at most 16 bits)."""
    return quantizer(scale, bits, signed)(x)


def quantizer(scale: float, bits: int, signed: bool):
    """`quantized_levels` with its attributes fixed (prepared once per step: its float32 constants cost a
    microsecond a call): x → its integers in float32."""
    inverse, low, high = quantizer_constants(scale, bits, signed)

    def levels(x: np.ndarray) -> np.ndarray:
        scaled = np.multiply(x, inverse, dtype=np.float32)
        np.rint(scaled, out=scaled)
        return scaled.clip(low, high, out=scaled)   # one vectorised pass; NaN stays NaN
    return levels


def quantizer_constants(scale: float, bits: int, signed: bool) -> tuple[np.float32, np.float32, np.float32]:
    """The float32 1/scale and integer range that `quantizer` computes with."""
    low, high = (np.float32(limit) for limit in quantize_limits(bits, signed))
    return np.float32(1.0 / scale), low, high


def _dequantize_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    acc, w_scale = types[0], types[1]
    if acc.rank != 2 or w_scale.shape != (acc.shape[1],) or any(t.shape != (acc.shape[1],) for t in types[2:]):
        raise ValueError(f"expects accumulators [P, M] with scales and bias [M], got {', '.join(map(str, types))}")
    return [TensorType(acc.shape, "f32")]


@define("vec.dequantize", operands=("acc", "w_scale", "bias?"), infer=_dequantize_infer,
        attrs={"input_scale": Attr("float", 1.0)})
def dequantize(acc: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None = None, *,
               input_scale: float) -> np.ndarray:
    """acc · input_scale · w_scale[m] (+ bias[m]) in float64, rounded once to float32."""
    return dequantizer(w_scale, bias, input_scale)(acc)


def dequantizer(w_scale: np.ndarray, bias: np.ndarray | None, input_scale: float):
    """`dequantize` with its scales and bias fixed (prepared once when they are constants): acc → float32."""
    scale, bias = dequantize_terms(w_scale, bias, input_scale)

    def run(acc: np.ndarray) -> np.ndarray:
        step = max(1, _DEQUANTIZE_BLOCK // max(1, acc.shape[1]))   # rows whose float64 temporaries stay in cache
        if acc.shape[0] <= step:   # one block: the same float64 arithmetic, fewer calls
            wide = acc.astype(np.float64)
            wide *= scale
            if bias is not None:
                wide += bias
            return wide.astype(np.float32)
        out = np.empty(acc.shape, dtype=np.float32)
        wide = np.empty((min(step, acc.shape[0]), acc.shape[1]), dtype=np.float64)
        for start in range(0, acc.shape[0], step):
            part = wide[:min(step, acc.shape[0] - start)]
            np.multiply(acc[start:start + step], scale, out=part)
            if bias is None:
                out[start:start + step] = part
            else:   # the float64 sum, rounded once as it is stored
                np.add(part, bias, out=out[start:start + step])
        return out
    return run


def channels_first_dequantizer(w_scale: np.ndarray, bias: np.ndarray | None, input_scale: float,
                               shape: tuple[int, int, int, int]):
    """`dequantize` of accumulators [N·H·W, M] whose values then go channels first: acc → float32 [N, M, H, W]
    (`shape` is [N, H, W, M] of one sample or batch: N follows from the accumulators' rows), the float64 arithmetic
    per element as `dequantize` does it, the transposition done in the widening copy."""
    scale, bias = dequantize_terms(w_scale, bias, input_scale)
    _, h, w, m = shape
    scale = scale[:, None]
    bias = None if bias is None else bias[:, None]

    def run(acc: np.ndarray) -> np.ndarray:
        n = acc.shape[0] // (h * w)
        wide = np.empty((n, m, h * w), dtype=np.float64)
        wide[...] = acc.reshape(n, h * w, m).transpose(0, 2, 1)
        wide *= scale
        if bias is not None:
            wide += bias
        return wide.astype(np.float32).reshape(n, m, h, w)
    return run


def dequantize_terms(w_scale: np.ndarray, bias: np.ndarray | None, input_scale: float
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """The float64 per-output scale input_scale·w_scale[m] and bias[m] of a dequantize."""
    return input_scale * w_scale.astype(np.float64), None if bias is None else bias.astype(np.float64, copy=False)


# Attributes a fixture may leave out: DERIVED ones follow from the weights' shape and the widths (adc_bits
# defaults to the lossless width; the others must equal their derivation), the rest have constant defaults.
_MVM_ATTRS = {
    "layer": Attr("str"),
    "xbar_rows": Attr("int"), "xbar_cols": Attr("int"),
    "weight_bits": Attr("int"), "input_bits": Attr("int"), "input_signed": Attr("bool"),
    "cell_bits": Attr("int"), "dac_bits": Attr("int"), "adc_bits": Attr("int", DERIVED), "encoding": Attr("str"),
    "groups": Attr("int", DERIVED), "row_tiles": Attr("int", DERIVED), "col_tiles": Attr("int", DERIVED),
    "weight_slices": Attr("int", DERIVED), "arrays": Attr("int", DERIVED), "first_array": Attr("int", 0),
    "zero_macs": Attr("int", 0),  # MACs on zeros inserted between input pixels (a deconvolution's baseline)
    # packing (`pack-crossbars`): the mode, the dense tiling's array count, and the packed blocks' figures
    "packing": Attr("str", "dense"), "dense_arrays": Attr("int", 0),
    "block_outputs": Attr("int", 0), "max_block_outputs": Attr("int", 0), "covered_outputs": Attr("int", 0),
    # schedule (`replicate`, runtime/schedule.py): copies of the weights, each copy's first array and the
    # input vectors it serves (copies + 1 bounds; empty: all), the reprogramming phase, and the overlap
    # with the layer before (`pipeline` none|layer|row; `lead`: fraction of it that must finish first)
    "copies": Attr("int", 1), "copy_arrays": Attr("ints", ()), "copy_rows": Attr("ints", ()),
    "phase": Attr("int", 0), "pipeline": Attr("str", "none"), "lead": Attr("float", 1.0),
    # fault repair (`fault-aware` with target spare_columns): (array of the layer, column) pairs, flattened, whose
    # cells are replaced by a spare column of the same array
    "spare_columns": Attr("ints", ()),
}


def _mvm_derive(types: list[TensorType], attrs: dict) -> dict:
    """The DERIVED attributes of an `xbar.mvm` with these operand types and widths."""
    weights = types[1]
    if weights.rank != 3 or any(t.rank != 2 for t in types[2:]):
        raise ValueError(f"expects weights [G, K, M] and row_map/col_map [blocks, ...], "
                         f"got {', '.join(map(str, types))}")
    if min(attrs[key] for key in ("xbar_rows", "xbar_cols", "weight_bits", "cell_bits", "dac_bits")) < 1:
        raise ValueError("array sizes and bit widths must be positive")
    groups, k, m = weights.shape
    slices = xbar_figures.weight_slices(attrs["weight_bits"], attrs["cell_bits"], attrs["encoding"])
    if not 1 <= slices <= attrs["xbar_cols"]:
        raise ValueError(f"{attrs['xbar_cols']} columns cannot hold the {slices} slices of one "
                         f"{attrs['weight_bits']}-bit {attrs['encoding']} weight")
    row_tiles, col_tiles, tiles = xbar_figures.dense_tiling(groups, k, m, attrs["xbar_rows"], attrs["xbar_cols"],
                                                            slices)
    blocks = types[2].shape[0] if len(types) > 2 else tiles
    return {"groups": groups, "weight_slices": slices, "row_tiles": row_tiles, "col_tiles": col_tiles,
            "arrays": xbar_figures.array_count(blocks, attrs["encoding"]),
            "adc_bits": xbar_figures.lossless_adc_bits(attrs["xbar_rows"], attrs["dac_bits"], attrs["cell_bits"])}


def _mvm_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, w = types[:2]
    if x.rank != 2 or w.rank != 3 or x.shape[1] != w.shape[0] * w.shape[1] or w.shape[0] != attrs["groups"]:
        raise ValueError(f"expects x [P, G·K] and weights [G, K, M] with G = groups, got {x} and {w}")
    integer = x.dtype == "i32" and w.dtype in ("i8", "i16")
    if not integer and not (x.dtype == "f32" and w.dtype == "f32"):
        raise ValueError(f"operands must be i32 × i8/i16 (integer mode) or f32 × f32 (float mode), got {x}, {w}")
    if attrs["encoding"] not in ("differential", "offset"):
        raise ValueError(f"encoding must be differential or offset, got {attrs['encoding']!r}")
    groups, m = w.shape[0], w.shape[2]
    rows, cols, slices = attrs["xbar_rows"], attrs["xbar_cols"], attrs["weight_slices"]
    if len(types) == 3:
        raise ValueError("row_map and col_map come together")
    if rows < 1 or cols < 1 or groups < 1:
        raise ValueError(f"xbar_rows, xbar_cols and groups must be positive, got {rows}, {cols}, {groups}")
    if slices < 1 or cols < slices:
        raise ValueError(f"{cols} columns cannot hold the {slices} slices of one weight")
    if len(types) == 4:
        row_map, col_map = types[2:]
        if row_map.dtype != "i64" or col_map.dtype != "i64" or row_map.rank != 2 or col_map.rank != 2 \
                or row_map.shape != (col_map.shape[0], rows) or col_map.shape[1] != cols // slices:
            raise ValueError(f"row_map and col_map must be i64 [blocks, {rows}] and [blocks, {cols // slices}]")
    derived = _mvm_derive(types, attrs)
    for key in ("groups", "weight_slices", "row_tiles", "col_tiles", "arrays"):  # adc_bits may be narrower
        if attrs[key] != derived[key]:
            raise ValueError(f"{key} = {attrs[key]} does not match the weights' shape and the widths "
                             f"(expected {derived[key]})")
    return [TensorType((x.shape[0], groups * m), "i64" if integer else "f32")]


def exact_grouped_product(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact integer x [P, G·K] × w [G, K, M] → [P, G·M] int64; float64 BLAS when the bound proves it
    exact (K · max|x| · max|w| < 2^53), int64 arithmetic otherwise."""
    groups, k, m = w.shape
    xg = x.reshape(x.shape[0], groups, k).transpose(1, 0, 2)
    bound = float(k) * float(np.abs(x).max(initial=0)) * float(np.abs(w.astype(np.int64)).max(initial=0))
    dtype = np.float64 if bound < _EXACT_FLOAT64 else np.int64
    out = np.matmul(xg.astype(dtype), w.astype(dtype))  # [G, P, M]
    return out.transpose(1, 0, 2).reshape(x.shape[0], groups * m).astype(np.int64)


@define("xbar.mvm", operands=("x", "weights", "row_map?", "col_map?"), infer=_mvm_infer, attrs=_MVM_ATTRS,
        tags=("weighted",), derive=_mvm_derive)
def mvm(x: np.ndarray, weights: np.ndarray, row_map: np.ndarray | None = None, col_map: np.ndarray | None = None,
        **mapping) -> np.ndarray:
    """Ideal grouped product x · W: exact integers in integer mode, float64-accumulated in float mode.
    A packed mapping (`row_map`/`col_map`: per array block, the global input rows and outputs it holds,
    −1 padded) computes the same product, which is what the machine's blocks must reproduce."""
    if x.dtype == np.int32:
        return exact_grouped_product(x, weights)
    groups, k, m = weights.shape
    xg = x.reshape(x.shape[0], groups, k).transpose(1, 0, 2).astype(np.float64)
    out = np.matmul(xg, weights.astype(np.float64)).transpose(1, 0, 2).reshape(x.shape[0], groups * m)
    return out.astype(np.float32)
