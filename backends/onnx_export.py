"""The ONNX exporter of graph-level IR: `export_onnx(module)` gives a model onnxruntime runs and Netron opens.

Each `nn.*` op has one small function in `EXPORTERS` that appends the ONNX node(s) computing it; the last
node writes the op's result under the result's name, helper values get fresh names derived from it.
Constants become initializers; inputs, outputs and every op result keep their names, dtypes and shapes
(results as value_info). Ops without an exporter (`xbar.*`, `vec.*`) are an UnsupportedError: the ONNX
export is for graph-level IR.

Where ONNX or onnxruntime lacks what the IR op means, the function emits an equivalent subgraph instead:
SpaceToDepth in CRD mode, Resize with tf_half_pixel_for_nn (gone from ONNX since opset 13) or with scales
onnxruntime would not reproduce, ceil-mode pooling whose last window onnxruntime drops (ONNX's shape
inference keeps it), zero insertion and interleaving.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rcc.backends.onnx_export_more import MORE_EXPORTERS, NARROW_OPSETS
from rcc.ir.core import Module, Op, Value
from rcc.ir.errors import RccError, UnsupportedError
from rcc.ir.files import write_output
from rcc.ir.ops.nn_resize import interpolation_matrices
from rcc.ir.ops.nn_shape import nearest_source_indices

MIN_OPSET = 13  # Softmax over one axis, Pad/Clip/Resize bounds as inputs
EXTERNAL_DATA_BYTES = int(1.8e9)  # protobuf refuses messages over 2 GB


class GraphEmitter:
    """The nodes, initializers and opset of the graph being built; hands out names no value uses."""

    def __init__(self, module: Module, opset: int) -> None:
        self.names = module.name_allocator()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.opset = opset

    def fresh(self, base: str) -> str:
        return self.names.fresh(base)

    def require_opset(self, version: int) -> None:
        self.opset = max(self.opset, version)

    def constant(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, base: str, values: Any) -> str:
        return self.constant(base, np.asarray(values, dtype=np.int64).reshape(-1))

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        """Append a node named after its output; `output` "conv1/" asks for a fresh helper name "conv1.pad"."""
        if output.endswith("/"):
            output = self.fresh(output[:-1] + "." + op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    # Helpers of several exporters; `out` ending in "/" asks for a fresh helper name.

    def reshape(self, x: str, shape: tuple[int, ...], out: str) -> str:
        if 0 in shape:  # a literal 0 would otherwise copy the input's dimension
            self.require_opset(14)
            return self.node("Reshape", [x, self.ints(out.rstrip("/") + ".shape", shape)], out, allowzero=1)
        return self.node("Reshape", [x, self.ints(out.rstrip("/") + ".shape", shape)], out)

    def pad(self, x: str, pads: list[int], value: float, dtype: np.dtype, out: str) -> str:
        """Constant Pad; onnxruntime crops on negative pads (opset ≥ 11), so they need no Slice."""
        base = out.rstrip("/")
        return self.node("Pad", [x, self.ints(base + ".pads", pads),
                                 self.constant(base + ".value", np.asarray(value).astype(dtype))], out, mode="constant")



Exporter = Callable[[GraphEmitter, Op], None]


def _names(op: Op) -> list[str]:
    return [v.name for v in op.operands]


def _same(op_type: str, **fixed: Any) -> Exporter:
    """An op that is one ONNX node of the same operands, with the IR attributes renamed or dropped."""

    def export(emitter: GraphEmitter, op: Op) -> None:
        emitter.node(op_type, _names(op), op.result.name, **{key: op.attrs[attr] for key, attr in fixed.items()})

    return export


def _scatter(op_type: str, **fixed: Any) -> Exporter:
    """A scatter: its reduction attribute written only when it reduces (opset 16 on; max and min 18 on)."""
    plain = _same(op_type, **fixed)

    def export(emitter: GraphEmitter, op: Op) -> None:
        reduction = op.attrs["reduction"]
        if reduction == "none":
            plain(emitter, op)
            return
        emitter.require_opset(18 if reduction in ("max", "min") else 16)
        emitter.node(op_type, _names(op), op.result.name, reduction=reduction,
                     **{key: op.attrs[attr] for key, attr in fixed.items()})

    return export


def _conv_attrs(op: Op) -> dict[str, Any]:
    return {"kernel_shape": list(op.operands[1].type.shape[2:]), "strides": list(op.attrs["strides"]),
            "pads": list(op.attrs["pads"]), "dilations": list(op.attrs["dilations"]), "group": op.attrs["group"]}


def _conv2d(emitter: GraphEmitter, op: Op) -> None:
    emitter.node("Conv", _names(op), op.result.name, **_conv_attrs(op))


def _conv_transpose2d(emitter: GraphEmitter, op: Op) -> None:
    emitter.node("ConvTranspose", _names(op), op.result.name, output_padding=list(op.attrs["output_padding"]),
                 **_conv_attrs(op))


def _clip(emitter: GraphEmitter, op: Op) -> None:
    x = op.operands[0]
    dtype = x.type.np_dtype
    bounds = []
    for key in ("min", "max"):
        bound = op.attrs[key]
        if math.isinf(bound):
            bounds.append("")  # an omitted bound: the dtype's whole range
            continue
        if dtype.kind in "iu":  # as in the IR: truncated, and outside the dtype's range that range's end
            info = np.iinfo(dtype)
            bound = min(max(int(bound), info.min), info.max)
        bounds.append(emitter.constant(f"{op.result.name}.{key}", np.asarray(bound).astype(dtype)))
    while bounds and not bounds[-1]:
        bounds.pop()
    emitter.node("Clip", [x.name] + bounds, op.result.name)


def _onnx_pool_length(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                      ceil_mode: bool) -> int:
    """Pooling output length by ONNX's shape inference, which keeps a ceil-mode window starting past the input."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def _direct_pool(op: Op) -> bool:
    """Whether ONNX's pooling takes the IR op's windows as they are: pads below the kernel and the same output
    size (onnxruntime refuses larger pads, and ONNX's shape inference keeps ceil-mode windows the IR drops)."""
    kernel, strides, dilations, pads = (op.attrs[key] for key in ("kernel", "strides", "dilations", "pads"))
    sizes, lengths = op.operands[0].type.shape[2:], op.result.type.shape[2:]
    return all(_onnx_pool_length(sizes[i], kernel[i], strides[i], pads[i], pads[i + 2], dilations[i],
                                 op.attrs["ceil_mode"]) == lengths[i] and max(pads[i], pads[i + 2]) < kernel[i]
               for i in range(2))


def _pool(emitter: GraphEmitter, op: Op, op_type: str) -> None:
    x, result = op.operands[0], op.result
    kernel, strides, dilations, pads = (op.attrs[key] for key in ("kernel", "strides", "dilations", "pads"))
    sizes, lengths = x.type.shape[2:], result.type.shape[2:]
    attrs: dict[str, Any] = {"kernel_shape": list(kernel), "strides": list(strides)}
    if dilations != (1, 1):
        attrs["dilations"] = list(dilations)
        if op_type == "AveragePool":
            emitter.require_opset(19)  # AveragePool takes dilations from opset 19 on
    if op_type == "AveragePool":
        attrs["count_include_pad"] = int(op.attrs["count_include_pad"])
    if _direct_pool(op):
        emitter.node(op_type, [x.name], result.name, pads=list(pads), ceil_mode=int(op.attrs["ceil_mode"]), **attrs)
        return
    # onnxruntime drops a ceil-mode window that starts past the input and its begin padding, where ONNX's shape
    # inference keeps it (their shapes would disagree), and refuses pads ≥ kernel: pad (or crop) the input to
    # exactly the span the windows cover and pool in floor mode instead.
    spans = [(lengths[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 for i in range(2)]
    ends = [spans[i] - sizes[i] - pads[i] for i in range(2)]
    dtype = x.type.np_dtype
    if op_type == "MaxPool":  # onnxruntime pads max pooling with the lowest finite value, as the IR does
        lowest = np.finfo(dtype).min if dtype.kind == "f" else np.iinfo(dtype).min
        padded = emitter.pad(x.name, [0, 0, pads[0], pads[1], 0, 0, *ends], lowest, dtype, result.name + "/")
        emitter.node(op_type, [padded], result.name, **attrs)
        return
    # Every window now lies inside the padded input, so AveragePool divides by kh·kw; rescale by kh·kw / count,
    # count being the IR's divisor: input cells, and explicit pads when they count, never the ceil-mode extra.
    padded = emitter.pad(x.name, [0, 0, pads[0], pads[1], 0, 0, *ends], 0.0, dtype, result.name + "/")
    pooled = emitter.node(op_type, [padded], result.name + "/", **attrs)
    counted = [[float(op.attrs["count_include_pad"])] * pads[i] + [1.0] * sizes[i] +
               [float(op.attrs["count_include_pad"])] * pads[i + 2] + [0.0] * spans[i] for i in range(2)]
    counts = [np.array([sum(counted[i][j * strides[i] + t * dilations[i]] for t in range(kernel[i]))
                        for j in range(lengths[i])]) for i in range(2)]
    factor = kernel[0] * kernel[1] / np.maximum(np.outer(counts[0], counts[1]), 1.0)
    emitter.node("Mul", [pooled, emitter.constant(result.name + ".count_scale",
                                                  factor.astype(dtype).reshape(1, 1, *lengths))], result.name)


def _max_pool2d(emitter: GraphEmitter, op: Op) -> None:
    if op.attrs["select"] == "first_greater":   # onnxruntime selects so in MaxPool with its Indices output
        _max_pool_with_indices(emitter, op, [op.result.name, emitter.fresh(op.result.name + ".indices")], 0)
        return
    _pool(emitter, op, "MaxPool")


def _avg_pool2d(emitter: GraphEmitter, op: Op) -> None:
    _pool(emitter, op, "AveragePool")


def _max_pool2d_indices(emitter: GraphEmitter, op: Op) -> None:
    """MaxPool's Indices output (its values under a fresh name)."""
    _max_pool_with_indices(emitter, op, [emitter.fresh(op.result.name + ".values"), op.result.name],
                           op.attrs["storage_order"])


def _max_pool_with_indices(emitter: GraphEmitter, op: Op, outputs: list[str], storage_order: int) -> None:
    """A MaxPool node with both outputs. Only where MaxPool takes the windows as they are: padding or cropping the
    input first, as `_pool` does otherwise, would move the indices."""
    if not _direct_pool(op):
        raise UnsupportedError(f"ONNX export: {op.opname} (result %{op.result.name}) has pads or a ceil-mode size "
                               f"ONNX's MaxPool does not take, and its indices would move with explicit padding")
    attrs = {key: list(op.attrs[name]) for key, name in (("kernel_shape", "kernel"), ("strides", "strides"),
                                                          ("pads", "pads"), ("dilations", "dilations"))}
    emitter.nodes.append(helper.make_node("MaxPool", [op.operands[0].name], outputs, name=op.result.name,
                                          ceil_mode=int(op.attrs["ceil_mode"]), storage_order=storage_order, **attrs))


def _lrn(emitter: GraphEmitter, op: Op) -> None:
    emitter.node("LRN", _names(op), op.result.name, **op.attrs)


def _reshape(emitter: GraphEmitter, op: Op) -> None:
    emitter.reshape(op.operands[0].name, op.attrs["shape"], op.result.name)


def _pad(emitter: GraphEmitter, op: Op) -> None:
    x, mode = op.operands[0], op.attrs["mode"]
    if mode == "constant":
        emitter.pad(x.name, list(op.attrs["pads"]), op.attrs["value"], x.type.np_dtype, op.result.name)
        return
    if mode == "wrap":
        emitter.require_opset(19)  # Pad takes mode wrap from opset 19 on
    emitter.node("Pad", [x.name, emitter.ints(op.result.name + ".pads", op.attrs["pads"])], op.result.name, mode=mode)


def _group_norm(emitter: GraphEmitter, op: Op) -> None:
    emitter.require_opset(21)  # GroupNormalization takes scale and bias per channel from opset 21 on
    emitter.node("GroupNormalization", _names(op), op.result.name, num_groups=op.attrs["num_groups"],
                 epsilon=op.attrs["epsilon"])


def _space_to_depth(emitter: GraphEmitter, op: Op) -> None:
    x, block = op.operands[0], op.attrs["blocksize"]
    if op.attrs["mode"] == "DCR":
        emitter.node("SpaceToDepth", [x.name], op.result.name, blocksize=block)
        return
    # onnxruntime's SpaceToDepth has no mode; CRD keeps each channel's block together
    n, c, h, w = x.type.shape
    base = op.result.name + "/"
    blocks = emitter.reshape(x.name, (n, c, h // block, block, w // block, block), base)
    moved = emitter.node("Transpose", [blocks], base, perm=[0, 1, 3, 5, 2, 4])
    emitter.reshape(moved, op.result.type.shape, op.result.name)


def _resize_nearest(emitter: GraphEmitter, op: Op) -> None:
    x, result = op.operands[0], op.result
    sizes, scales = op.attrs["sizes"], op.attrs["scales"]
    coordinate_mode, nearest_mode = op.attrs["coordinate_transformation_mode"], op.attrs["nearest_mode"]
    f32 = np.float32
    # onnxruntime derives float32 scales from `sizes`, or sizes as floor(scale · size) from `scales`
    by_sizes = all(f32(scale) == f32(size) / f32(dim) for scale, size, dim in zip(scales, sizes, x.type.shape))
    by_scales = all(int(f32(scale) * f32(dim)) == size for scale, size, dim in zip(scales, sizes, x.type.shape))
    if coordinate_mode != "tf_half_pixel_for_nn" and (by_sizes or by_scales):
        if coordinate_mode == "half_pixel_symmetric":
            emitter.require_opset(19)
        inputs = [x.name, "", "", emitter.ints(result.name + ".sizes", sizes)] if by_sizes else \
            [x.name, "", emitter.constant(result.name + ".scales", np.array(scales, f32))]
        emitter.node("Resize", inputs, result.name, mode="nearest",
                     coordinate_transformation_mode=coordinate_mode, nearest_mode=nearest_mode)
        return
    # Otherwise gather the IR's own source indices along every axis that changes.
    current = x.name
    changed = [axis for axis, (size, scale) in enumerate(zip(sizes, scales))
               if tuple(sizes) != x.type.shape and (size != x.type.shape[axis] or f32(scale) != 1)]
    for position, axis in enumerate(changed):
        index = nearest_source_indices(x.type.shape[axis], sizes[axis], scales[axis], coordinate_mode, nearest_mode)
        out = result.name if position == len(changed) - 1 else result.name + "/"
        current = emitter.node("Gather", [current, emitter.ints(f"{result.name}.index{axis}", index)], out, axis=axis)
    if not changed:
        emitter.node("Identity", [current], result.name)


def _zero_insert(emitter: GraphEmitter, op: Op) -> None:
    """[N,C,H,W] → [N,C,H,1,W,1], pad each unit axis by stride − 1 at its end, merge, crop the trailing zeros.

    Cropping is a negative Pad rather than a Slice, so the export imports back into rcc."""
    x, result = op.operands[0], op.result
    (n, c, h, w), (sh, sw) = x.type.shape, op.attrs["strides"]
    if (sh, sw) == (1, 1):
        emitter.node("Identity", [x.name], result.name)
        return
    base = result.name + "/"
    spread = emitter.reshape(x.name, (n, c, h, 1, w, 1), base)
    padded = emitter.pad(spread, [0] * 6 + [0, 0, 0, sh - 1, 0, sw - 1], 0.0, x.type.np_dtype, base)
    merged = emitter.reshape(padded, (n, c, h * sh, w * sw), base)
    emitter.pad(merged, [0, 0, 0, 0, 0, 0, 1 - sh, 1 - sw], 0.0, x.type.np_dtype, result.name)


def _interleave(emitter: GraphEmitter, op: Op) -> None:
    """Phases [N,M,Hρ,Wρ] (row-major ρ = (ρh, ρw)) padded to [N,M,⌈H/sh⌉,⌈W/sw⌉], stacked on the channel
    axis as [N,sh,sw,M,·,·], moved to [N,M,·,sh,·,sw], merged and cropped to [H, W] by a negative Pad."""
    result = op.result
    (sh, sw), (height, width) = op.attrs["strides"], op.attrs["size"]
    n, m = result.type.shape[:2]
    rows, cols = -(-height // sh), -(-width // sw)
    base = result.name + "/"
    phases = []
    for phase in op.operands:
        extra_rows, extra_cols = rows - phase.type.shape[2], cols - phase.type.shape[3]
        phases.append(phase.name if (extra_rows, extra_cols) == (0, 0) else
                      emitter.pad(phase.name, [0, 0, 0, 0, 0, 0, extra_rows, extra_cols], 0.0,
                                  phase.type.np_dtype, base))
    stacked = emitter.node("Concat", phases, base, axis=1)
    blocks = emitter.reshape(stacked, (n, sh, sw, m, rows, cols), base)
    moved = emitter.node("Transpose", [blocks], base, perm=[0, 3, 4, 1, 5, 2])
    if (rows * sh, cols * sw) == (height, width):
        emitter.reshape(moved, result.type.shape, result.name)
    else:
        merged = emitter.reshape(moved, (n, m, rows * sh, cols * sw), base)
        emitter.pad(merged, [0, 0, 0, 0, 0, 0, height - rows * sh, width - cols * sw], 0.0,
                    result.type.np_dtype, result.name)


EXPORTERS: dict[str, Exporter] = {
    "nn.conv2d": _conv2d,
    "nn.conv_transpose2d": _conv_transpose2d,
    "nn.matmul": _same("MatMul"),
    "nn.add": _same("Add"),
    "nn.sub": _same("Sub"),
    "nn.mul": _same("Mul"),
    "nn.div": _same("Div"),
    "nn.relu": _same("Relu"),
    "nn.sigmoid": _same("Sigmoid"),
    "nn.tanh": _same("Tanh"),
    "nn.leaky_relu": _same("LeakyRelu", alpha="alpha"),
    "nn.prelu": _same("PRelu"),
    "nn.clip": _clip,
    "nn.elu": _same("Elu", alpha="alpha"),
    "nn.selu": _same("Selu", alpha="alpha", gamma="gamma"),
    "nn.celu": _same("Celu", alpha="alpha"),
    "nn.softplus": _same("Softplus"),
    "nn.softsign": _same("Softsign"),
    "nn.thresholded_relu": _same("ThresholdedRelu", alpha="alpha"),
    "nn.shrink": _same("Shrink", bias="bias", lambd="lambd"),
    "nn.sign": _same("Sign"),
    "nn.neg": _same("Neg"),
    "nn.abs": _same("Abs"),
    "nn.exp": _same("Exp"),
    "nn.sqrt": _same("Sqrt"),
    "nn.pow": _same("Pow"),
    "nn.minimum": _same("Min"),
    "nn.maximum": _same("Max"),
    "nn.instance_norm": _same("InstanceNormalization", epsilon="epsilon"),
    "nn.group_norm": _group_norm,
    "nn.softmax": _same("Softmax", axis="axis"),
    "nn.log_softmax": _same("LogSoftmax", axis="axis"),
    "nn.identity": _same("Identity"),
    "nn.batch_norm": _same("BatchNormalization", epsilon="epsilon"),
    "nn.reshape": _reshape,
    "nn.transpose": _same("Transpose", perm="perm"),
    "nn.concat": _same("Concat", axis="axis"),
    "nn.pad": _pad,
    "nn.max_pool2d": _max_pool2d,
    "nn.avg_pool2d": _avg_pool2d,
    "nn.max_pool2d_indices": _max_pool2d_indices,
    "nn.global_avg_pool": _same("GlobalAveragePool"),
    "nn.global_max_pool": _same("GlobalMaxPool"),
    "nn.lrn": _lrn,
    "nn.depth_to_space": _same("DepthToSpace", blocksize="blocksize", mode="mode"),
    "nn.space_to_depth": _space_to_depth,
    "nn.resize_nearest": _resize_nearest,
    "nn.zero_insert": _zero_insert,
    "nn.interleave": _interleave,
}
EXPORTERS.update(MORE_EXPORTERS)


def _value_info(value: Value) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(value.name, helper.np_dtype_to_tensor_dtype(value.type.np_dtype),
                                         list(value.type.shape))


def _build(module: Module, opset: int) -> onnx.ModelProto:
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise RccError(f"ONNX export: opset {opset} is outside {MIN_OPSET}..{onnx.defs.onnx_opset_version()}")
    emitter = GraphEmitter(module, opset)
    values = [*module.inputs, *module.constants, *(r for op in module.ops for r in op.results)]
    emitter.require_opset(max((NARROW_OPSETS.get(v.type.dtype, 1) for v in values), default=1))
    emitter.initializers.extend(numpy_helper.from_array(c.data, c.name) for c in module.constants)
    for op in module.ops:
        export = EXPORTERS.get(op.opname)
        if export is None:
            results = ", ".join("%" + r.name for r in op.results)
            raise UnsupportedError(f"ONNX export: {op.opname} (result {results}) has no ONNX form; "
                                   f"--emit onnx takes graph-level (nn.*) IR")
        export(emitter, op)
    output_ids = {id(v) for v in module.outputs}
    intermediates = [r for op in module.ops for r in op.results if id(r) not in output_ids]
    graph = helper.make_graph(emitter.nodes, module.name, [_value_info(v) for v in module.inputs],
                              [_value_info(v) for v in module.outputs], emitter.initializers,
                              value_info=[_value_info(v) for v in intermediates])
    opset_imports = [helper.make_opsetid("", emitter.opset)]
    return helper.make_model(graph, opset_imports=opset_imports, producer_name="rcc",
                             ir_version=helper.find_min_ir_version_for(opset_imports))


def export_onnx(module: Module, opset: int = 17) -> onnx.ModelProto:
    """An ONNX model computing `module` (graph-level IR) at `opset`, raised where an op needs a newer one.

    UnsupportedError names the first op that has no ONNX form. The model passes onnx's full check (for
    models too large to check in memory, `save_onnx` checks the written file).
    """
    model = _build(module, opset)
    if model.ByteSize() <= EXTERNAL_DATA_BYTES:
        onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(module: Module, path: str | os.PathLike, opset: int = 17) -> None:
    """Export `module` to `path` (through rcc.ir.files' writer: atomically, or directly to a special file).

    A model over 1.8 GB keeps its tensors in `<path>.data` next to it (ONNX external data): both are
    written into a folder beside `path`, checked, then renamed into place.
    """
    target = Path(path)
    model = export_onnx(module, opset)
    external = model.ByteSize() > EXTERNAL_DATA_BYTES
    if not external:
        write_output(target, model.SerializeToString())
        return
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as err:
        raise RccError(f"{target}: cannot write the ONNX model ({err.strerror})") from None
    try:
        staged_model = staging / target.name
        data_name = target.name + ".data"
        onnx.save_model(model, staged_model, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name)
        onnx.checker.check_model(staged_model, full_check=True)
        os.replace(staging / data_name, target.parent / data_name)
        os.replace(staged_model, target)
    except OSError as err:
        raise RccError(f"{target}: cannot write the ONNX model ({err.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- indexing and interpolating resize (rcc.ir.ops.nn_index, nn_resize) ---

def _slice(emitter: GraphEmitter, op: Op) -> None:
    x, base = op.operands[0], op.result.name
    starts, steps, sizes = op.attrs["starts"], op.attrs["steps"], op.attrs["sizes"]
    # a backward slice ending before index 0 needs an end ONNX reads as "before the first element"
    ends = [start + size * step if start + size * step >= 0 else -dim - 1
            for start, step, size, dim in zip(starts, steps, sizes, x.type.shape)]
    emitter.node("Slice", [x.name, emitter.ints(base + ".starts", starts), emitter.ints(base + ".ends", ends),
                           emitter.ints(base + ".axes", range(len(starts))), emitter.ints(base + ".steps", steps)],
                 base)


def _with_shape_input(op_type: str, attr: str) -> Exporter:
    """An op whose static attribute `attr` is ONNX's second input (Expand's shape, Tile's repeats)."""

    def export(emitter: GraphEmitter, op: Op) -> None:
        base = op.result.name
        emitter.node(op_type, [op.operands[0].name, emitter.ints(f"{base}.{attr}", op.attrs[attr])], base)

    return export


def _resize(emitter: GraphEmitter, op: Op) -> None:
    x, result, attrs = op.operands[0], op.result, op.attrs
    f32 = np.float32
    sizes, scales = attrs["sizes"], attrs["scales"]
    by_scales = all(int(f32(scale) * f32(dim)) == size for scale, size, dim in zip(scales, sizes, x.type.shape))
    by_sizes = all(f32(scale) == f32(size) / f32(dim) for scale, size, dim in zip(scales, sizes, x.type.shape))
    if not (by_scales or by_sizes):
        _resize_by_matrices(emitter, op)
        return
    if attrs["antialias"]:
        emitter.require_opset(18)
    if attrs["coordinate_transformation_mode"] == "half_pixel_symmetric":
        emitter.require_opset(19)
    base = result.name
    roi = emitter.constant(base + ".roi", np.array(attrs["roi"], f32)) if attrs["roi"] else ""
    # sizes when they give the scales (onnx's shape inference and onnxruntime may round scales · size apart)
    inputs = [x.name, roi, "", emitter.ints(base + ".sizes", sizes)] if by_sizes else \
        [x.name, roi, emitter.constant(base + ".scales", np.array(scales, f32))]
    extra = {"antialias": 1} if attrs["antialias"] else {}
    emitter.node("Resize", inputs, base, mode=attrs["mode"],
                 coordinate_transformation_mode=attrs["coordinate_transformation_mode"],
                 cubic_coeff_a=attrs["cubic_coeff_a"], exclude_outside=int(attrs["exclude_outside"]),
                 extrapolation_value=attrs["extrapolation_value"], **extra)


def _grid_sample(emitter: GraphEmitter, op: Op) -> None:
    """GridSample-20, whose mode names are rcc's (GridSample-16's bilinear and bicubic are invalid in a model
    that another op takes to opset 20)."""
    emitter.require_opset(20)
    emitter.node("GridSample", _names(op), op.result.name, mode=op.attrs["mode"], padding_mode=op.attrs["padding_mode"],
                 align_corners=int(op.attrs["align_corners"]))


def _resize_by_matrices(emitter: GraphEmitter, op: Op) -> None:
    """Resize as one MatMul per changing axis with the IR's own interpolation matrix (for scales and sizes
    onnxruntime would not derive from one another, as keep_aspect_ratio_policy gives)."""
    x, result = op.operands[0], op.result
    rank, current, base = x.type.rank, x.name, result.name + "/"
    matrices, outside = interpolation_matrices(x.type.shape, op.attrs)
    for axis, weights in matrices:
        perm = [a for a in range(rank) if a != axis] + [axis]
        moved = emitter.node("Transpose", [current], base, perm=perm)
        matrix = emitter.constant(f"{result.name}.weights{axis}", weights.T.astype(x.type.np_dtype))
        product = emitter.node("MatMul", [moved, matrix], base)
        current = emitter.node("Transpose", [product], base, perm=[int(p) for p in np.argsort(perm)])
    if outside.any():
        fill = emitter.constant(result.name + ".extrapolation",
                                np.asarray(op.attrs["extrapolation_value"], x.type.np_dtype))
        emitter.node("Where", [emitter.constant(result.name + ".outside", outside), fill, current], result.name)
    else:
        emitter.node("Identity", [current], result.name)


EXPORTERS.update({
    "nn.slice": _slice,
    "nn.gather": _same("Gather", axis="axis"),
    "nn.gather_elements": _same("GatherElements", axis="axis"),
    "nn.gather_nd": _same("GatherND", batch_dims="batch_dims"),
    "nn.scatter_nd": _scatter("ScatterND"),
    "nn.scatter_elements": _scatter("ScatterElements", axis="axis"),
    "nn.expand": _with_shape_input("Expand", "shape"),
    "nn.tile": _with_shape_input("Tile", "repeats"),
    "nn.resize": _resize,
    "nn.grid_sample": _grid_sample,
})
from rcc.backends.onnx_export_quant import QUANT_EXPORTERS  # noqa: E402  (the quantized-model ops)

EXPORTERS.update(QUANT_EXPORTERS)
from rcc.backends.onnx_export_quant_deconv import DECONV_EXPORTERS  # noqa: E402  (quantized ConvTranspose)

EXPORTERS.update(DECONV_EXPORTERS)
