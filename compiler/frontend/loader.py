"""Reading an ONNX file: load (external data included, within the limits of `rcc.ir.limits`), check the
opsets and the model, convert opsets below 7, and fix the graph's input shapes (checked against the
tensor budget)."""

from __future__ import annotations

import os
from pathlib import Path

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
    try:
        onnx.checker.check_model(model if model.ByteSize() < 2**31 - 1 else str(path))
    except (onnx.checker.ValidationError, ValueError) as err:
        raise RccError(f"{path}: invalid ONNX model: {one_line(err)}") from None
    return upgrade_old_opset(model, str(path))


def _check_opsets(model: onnx.ModelProto, path: Path) -> None:
    """RccError when the model asks for a default-domain opset newer than the installed onnx defines."""
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise RccError(f"{path}: opset {opset.version} is newer than the installed onnx supports ({newest})")


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Tensors stored beside the model, each within the tensor budget and inside the model's folder."""
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        what = f"{path}: external data of tensor {tensor.name!r} ({info.location})"
        try:
            check_tensor_bytes(what, tuple(tensor.dims),
                               onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        except (KeyError, ValueError, TypeError):
            raise RccError(f"{what}: unsupported element type {tensor.data_type}") from None
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (onnx.checker.ValidationError, ValueError, OSError, RuntimeError) as err:
        raise RccError(f"{path}: cannot load external data: {one_line(err)}") from None


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
        check_tensor_bytes(f"--input-shape {info.name}", overrides[info.name], _elem_dtype(info))
        return overrides[info.name]
    if not info.type.HasField("tensor_type"):
        raise RccError(f"{source}: input {info.name!r} is not a tensor")
    dims = []
    for index, dim in enumerate(info.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            dims.append(dim.dim_value)
        else:
            label = dim.dim_param or f"#{index}"
            raise RccError(f"{source}: input {info.name!r} has dynamic dimension {label!r}; "
                           f"give its shape with --input-shape {info.name}=D1xD2x...")
    check_tensor_bytes(f"{source}: input {info.name!r}", dims, _elem_dtype(info))
    return tuple(dims)


def _elem_dtype(info: onnx.ValueInfoProto) -> str:
    """The input's numpy dtype for sizing (float32 when onnx does not map it; the caller refuses those)."""
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
    except (KeyError, ValueError, TypeError):
        return "float32"
