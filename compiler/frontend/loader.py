"""Reading an ONNX file: load (external data included, within the limits of `rcc.ir.limits`), check the
opsets, the model and the size of each initializer's data, convert opsets below 7, and fix the graph's
input shapes (checked against the model's declared shapes and the tensor budget)."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from rcc.compiler.frontend.opsets import upgrade_old_opset
from rcc.ir.errors import RccError, one_line
from rcc.ir.limits import check_tensor_bytes, regular_file_problem

ShapeOverrides = dict[str, tuple[int, ...]]


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """The checked model at `path`; RccError naming the file when it is missing, not ONNX, or invalid."""
    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise RccError(f"{path}: {problem}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as err:
        raise RccError(f"{path}: not a readable ONNX model ({err.__class__.__name__}: {one_line(err)})") from None
    _check_opsets(model, path)
    _load_external_data(model, path)
    if not model.graph.node and not model.graph.output:
        raise RccError(f"{path}: not an ONNX model (no graph)")
    try:   # full_check: strict type and shape inference, so a node of a type its schema does not take is refused
        onnx.checker.check_model(model if model.ByteSize() < 2**31 - 1 else str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as err:
        raise RccError(f"{path}: invalid ONNX model: {one_line(err)}") from None
    _check_initializer_data(model, path)
    return upgrade_old_opset(model, str(path))


def _check_opsets(model: onnx.ModelProto, path: Path) -> None:
    """RccError when the model asks for a default-domain opset newer than the installed onnx defines."""
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise RccError(f"{path}: opset {opset.version} is newer than the installed onnx supports ({newest})")


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Tensors stored beside the model, each within the tensor budget, inside the model's folder, and (when
    the entry gives a length) exactly as long as its dims need, checked before anything is read."""
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = _external_data_info(tensor, path)
        what = f"{path}: external data of tensor {tensor.name!r} ({info.location})"
        dtype = _element_dtype(tensor)
        if dtype is None:
            raise RccError(f"{what}: unsupported element type {tensor.data_type}")
        check_tensor_bytes(what, tuple(tensor.dims), dtype)
        needed = _raw_bytes_needed(tensor)
        if info.length is not None and info.length != needed:
            raise RccError(f"{what}: length is {info.length} bytes, its {_typed_dims(tensor)} dims need {needed}")
        if info.length is None:   # onnx reads to the end of the file: check what that is before it does
            available = _bytes_after(path.parent / info.location, info.offset or 0)
            if available is not None and available != needed:
                raise RccError(f"{what}: holds {available} bytes from offset {info.offset or 0} to its end (no "
                               f"length given), its {_typed_dims(tensor)} dims need {needed}")
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (onnx.checker.ValidationError, ValueError, OSError, RuntimeError) as err:
        raise RccError(f"{path}: cannot load external data: {one_line(err)}") from None


def _bytes_after(location: Path, offset: int) -> int | None:
    """The bytes a regular file holds past `offset`, or None when it is not one (onnx's loader reports it)."""
    try:
        status = location.stat()
    except OSError:
        return None
    return max(0, status.st_size - offset) if stat.S_ISREG(status.st_mode) else None


def _external_data_info(tensor: onnx.TensorProto, path: Path) -> external_data_helper.ExternalDataInfo:
    """The tensor's external-data entry; RccError naming the tensor when its offset or length is not a
    non-negative integer (onnx raises ValueError for those)."""
    try:
        return external_data_helper.ExternalDataInfo(tensor)
    except ValueError:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        given = ", ".join(f"{key} {entries[key]!r}" for key in ("offset", "length") if key in entries)
        raise RccError(f"{path}: cannot load external data of tensor {tensor.name!r}: offset and length must be "
                       f"non-negative integers, got {given}") from None


# Element types whose raw_data onnx packs below a byte: bits per element.
_PACKED_BITS = {getattr(onnx.TensorProto, name): bits for name, bits in (
    ("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2), ("FLOAT6E2M3", 6), ("FLOAT6E3M2", 6))
    if hasattr(onnx.TensorProto, name)}


def _element_dtype(tensor: onnx.TensorProto) -> np.dtype | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, ValueError, TypeError):
        return None


def _typed_dims(tensor: onnx.TensorProto) -> str:
    dtype = _element_dtype(tensor)
    return f"{dtype.name if dtype is not None else tensor.data_type}{list(tensor.dims)}"


def _raw_bytes_needed(tensor: onnx.TensorProto) -> int | None:
    """The bytes of raw data the tensor's dims need (sub-byte types packed), or None for an element type onnx
    does not map (refused where the tensor is converted)."""
    dtype = _element_dtype(tensor)
    if dtype is None:
        return None
    bits = _PACKED_BITS.get(tensor.data_type, 8 * dtype.itemsize)
    return -(-math.prod(tensor.dims) * bits // 8)


def _stored_size_problem(tensor: onnx.TensorProto) -> str | None:
    """How the tensor's stored data disagrees in size with its dims, or None when it agrees (or rcc cannot
    tell: a packed type in int32_data, an unknown type)."""
    dtype = _element_dtype(tensor)
    if tensor.HasField("raw_data"):
        held, needed, unit = len(tensor.raw_data), _raw_bytes_needed(tensor), "bytes of data"
    elif tensor.data_type in _PACKED_BITS or dtype is None:
        return None
    else:
        field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
        parts = 2 if dtype.kind == "c" else 1  # complex values are stored as (real, imaginary) pairs
        held, needed, unit = len(getattr(tensor, field)), parts * math.prod(tensor.dims), f"values in {field}"
    if needed is None or held == needed:
        return None
    return f"holds {held} {unit}, its {_typed_dims(tensor)} dims need {needed}"


def _check_initializer_data(model: onnx.ModelProto, path: Path) -> None:
    """RccError naming the initializer whose stored data is not the size its dims need: onnx.checker refuses
    too little data but accepts too much, which numpy_helper.to_array (and onnxruntime) then cannot use."""
    for init in model.graph.initializer:
        problem = _stored_size_problem(init)
        if problem:
            raise RccError(f"{path}: initializer {init.name!r} {problem}")


def parse_input_shapes(specs: list[str] | None) -> ShapeOverrides:
    """`--input-shape NAME=1x3x224x224` options as a dict; RccError naming the option when malformed."""
    overrides: ShapeOverrides = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
        except ValueError:
            shape = (-1,)
        if not sep or not name or any(d <= 0 for d in shape):
            raise RccError(f"--input-shape {spec!r}: expected NAME=D1xD2x... with positive integers "
                           f"(an empty tensor has nothing to compute)")
        overrides[name] = shape
    return overrides


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are real inputs (not initializers listed as inputs, as old exporters do)."""
    initialized = {init.name for init in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initialized]


def shadowed_inputs(model: onnx.ModelProto) -> list[str]:
    """The graph inputs with an initializer of the same name: inputs with a default value the caller may
    override in onnxruntime."""
    initialized = {init.name for init in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name in initialized]


# Operand positions that take run-time data (activations) whatever their value: an input with a default used
# only in these stays an input (a fed value overrides the default, as in onnxruntime). Any other use (a
# weight that is programmed into crossbar cells, a shape, pads, scales, normalisation statistics) needs the
# value at compile time, so the default is compiled in and feeding the input is refused.
_EVERY_OPERAND = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sum", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "ThresholdedRelu", "Shrink", "Sign", "Neg", "Abs", "Exp", "Sqrt", "Softmax",
    "LogSoftmax", "Identity", "Concat"})
_FIRST_OPERAND = frozenset({
    "Conv", "ConvTranspose", "MatMul", "Gemm", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
    "Flatten", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Clip", "PRelu", "Pad", "Resize", "Upsample", "LRN", "Dropout", "DepthToSpace",
    "SpaceToDepth"})


def declared_inputs(model: onnx.ModelProto) -> dict[str, list[int | None] | None]:
    """Each graph input (initializers excluded) with its declared dims, None where symbolic; None for an input
    declared without a shape."""
    initializers = {t.name for t in model.graph.initializer}
    return {info.name: [dim.dim_value if _is_static(dim) else None for dim in info.type.tensor_type.shape.dim]
            if info.type.tensor_type.HasField("shape") else None
            for info in model.graph.input if info.name not in initializers}


def overridable_inputs(model: onnx.ModelProto) -> list[str]:
    """The shadowed inputs (`shadowed_inputs`) whose every use takes run-time data: they stay graph inputs
    with the initializer as their default. The others are compiled in as constants (`Module.baked_inputs`)."""
    data_uses: dict[str, bool] = {}
    for node in model.graph.node:
        domain_ok = node.domain in ("", "ai.onnx")
        for position, name in enumerate(node.input):
            data = domain_ok and (node.op_type in _EVERY_OPERAND or position == 0 and node.op_type in _FIRST_OPERAND)
            data_uses[name] = data_uses.get(name, True) and data
    outputs = {o.name for o in model.graph.output}
    return [name for name in shadowed_inputs(model) if data_uses.get(name, False) and name not in outputs]


def input_shape(info: onnx.ValueInfoProto, overrides: ShapeOverrides, source: str) -> tuple[int, ...]:
    """The static shape of one graph input, from the model or from `--input-shape`."""
    if info.name in overrides:
        _check_override(info, overrides[info.name], source)
        check_tensor_bytes(f"--input-shape {info.name}", overrides[info.name], _elem_dtype(info))
        return overrides[info.name]
    if not info.type.HasField("tensor_type"):
        raise RccError(f"{source}: input {info.name!r} is not a tensor")
    dims = []
    for index, dim in enumerate(info.type.tensor_type.shape.dim):
        if _is_static(dim):
            dims.append(dim.dim_value)
        else:
            label = dim.dim_param or f"#{index}"
            raise RccError(f"{source}: input {info.name!r} has dynamic dimension {label!r}; "
                           f"give its shape with --input-shape {info.name}=D1xD2x...")
    check_tensor_bytes(f"{source}: input {info.name!r}", dims, _elem_dtype(info))
    return tuple(dims)


def _check_override(info: onnx.ValueInfoProto, shape: tuple[int, ...], source: str) -> None:
    """RccError naming the option when `--input-shape` changes the rank or a static dimension the model
    declares (onnxruntime refuses such an input); symbolic dimensions, and every dimension of an input
    declared without a shape, are the option's to set."""
    if not info.type.tensor_type.HasField("shape"):
        return
    declared = info.type.tensor_type.shape.dim
    if len(shape) == len(declared) and all(size == dim.dim_value for dim, size in zip(declared, shape)
                                           if _is_static(dim)):
        return
    declared_text = ", ".join(str(dim.dim_value) if _is_static(dim) else dim.dim_param or "?" for dim in declared)
    raise RccError(f"--input-shape {info.name}={'x'.join(map(str, shape))}: {source} declares input {info.name!r} "
                   f"as [{declared_text}]; only its symbolic dimensions can be set")


def _is_static(dim: onnx.TensorShapeProto.Dimension) -> bool:
    return dim.HasField("dim_value") and dim.dim_value >= 0


def _elem_dtype(info: onnx.ValueInfoProto) -> str:
    """The input's numpy dtype for sizing (float32 when onnx does not map it; the caller refuses those)."""
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
    except (KeyError, ValueError, TypeError):
        return "float32"
