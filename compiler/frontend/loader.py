"""Reading an ONNX file: load (external data included), check, convert opsets below 7, and fix the graph's
input shapes."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from rcc.compiler.frontend.opsets import upgrade_old_opset
from rcc.ir.errors import RccError

ShapeOverrides = dict[str, tuple[int, ...]]


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """The checked model at `path`; RccError naming the file when it is missing, not ONNX, or invalid."""
    path = Path(path)
    if not path.is_file():
        raise RccError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=True)
    except (DecodeError, RuntimeError, ValueError, OSError) as err:
        raise RccError(f"{path}: not a readable ONNX model ({err.__class__.__name__}: {str(err)[:120]})") from None
    if not model.graph.node and not model.graph.output:
        raise RccError(f"{path}: not an ONNX model (no graph)")
    try:
        onnx.checker.check_model(model if model.ByteSize() < 2**31 - 1 else str(path))
    except (onnx.checker.ValidationError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise RccError(f"{path}: invalid ONNX model: {first_line}") from None
    return upgrade_old_opset(model, str(path))


def parse_input_shapes(specs: list[str] | None) -> ShapeOverrides:
    """`--input-shape NAME=1x3x224x224` options as a dict; RccError naming the option when malformed."""
    overrides: ShapeOverrides = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
        except ValueError:
            shape = (-1,)
        if not sep or not name or any(d < 0 for d in shape):
            raise RccError(f"--input-shape {spec!r}: expected NAME=D1xD2x... with non-negative integers")
        overrides[name] = shape
    return overrides


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are real inputs (not initializers listed as inputs, as old exporters do)."""
    initialized = {init.name for init in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initialized]


def input_shape(info: onnx.ValueInfoProto, overrides: ShapeOverrides, source: str) -> tuple[int, ...]:
    """The static shape of one graph input, from the model or from `--input-shape`."""
    if info.name in overrides:
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
    return tuple(dims)
