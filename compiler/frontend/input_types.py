"""Which graph inputs rcc takes: dense tensors of an element type the IR carries (numbers and bool).

Strings, sequences, maps, optionals and sparse tensors are refused with one line naming the input and
its type, in ONNX's own words: `tensor(string)`, `sequence(tensor(int64))`, `map(string, tensor(float))`.
"""

from __future__ import annotations

import onnx

from rcc.ir.errors import UnsupportedError
from rcc.ir.types import DTYPES, dtype_name


def _element_name(elem_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"


def type_text(type_proto: onnx.TypeProto) -> str:
    """An ONNX type as ONNX writes it in operator signatures: `tensor(float)`, `sequence(tensor(int64))`."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({_element_name(type_proto.tensor_type.elem_type)})"
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({_element_name(type_proto.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"sequence({type_text(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({type_text(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        return f"map({_element_name(type_proto.map_type.key_type)}, {type_text(type_proto.map_type.value_type)})"
    return "no type"


def input_dtype(info: onnx.ValueInfoProto, source: str) -> str:
    """The IR dtype of graph input `info`; UnsupportedError naming the input and its type otherwise."""
    if info.type.WhichOneof("value") == "tensor_type":
        try:
            return dtype_name(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))
        except (KeyError, ValueError, TypeError):
            pass
    raise UnsupportedError(f"{source}: input {info.name!r} has type {type_text(info.type)}; "
                           f"rcc takes tensors of {', '.join(DTYPES)}")
