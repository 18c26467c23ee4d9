"""The state of lowering one ONNX graph: which ONNX tensor is which IR value or known constant.

ONNX tensors whose values are known at compile time (initializers, Constant nodes, anything computed
only from those, and shapes of statically shaped tensors) stay numpy arrays in `constants` and become
IR constants only when an IR op reads them, so folded shape arithmetic leaves no trace in the IR.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rcc.ir.builder import Builder
from rcc.ir.core import Module, Value
from rcc.ir.errors import RccError, UnsupportedError
from rcc.ir.limits import check_tensor_bytes
from rcc.ir.optable import OPS
from rcc.ir.types import DTYPES, TensorType


def node_label(node: onnx.NodeProto, index: int) -> str:
    name = node.name or f"#{index} (output {node.output[0] if node.output else '?'})"
    return f"node {name!r} ({node.op_type})"


class LowerContext:
    """Lowering state for one graph; the lowering rules of ops read and bind tensors through it."""

    def __init__(self, module: Module, opset: int, source: str, allow_nonfinite: bool = False) -> None:
        self.module = module
        self.builder = Builder(module)
        self.opset = opset
        self.source = source
        self.allow_nonfinite = allow_nonfinite  # --allow-nonfinite: NaN/Inf weights and scales are compiled as given
        self.values: dict[str, Value] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.sequences: dict[str, list[Value]] = {}  # sequences of compile-time length, by their elements
        self.used: set[str] = set()  # ONNX tensor names some node or graph output reads
        # float16 models (frontend/float16.py): each float16 tensor's float32 value, the tensors whose producer
        # computed them in float32, every tensor's producing and reading nodes, the graph's outputs
        self.float32_copies: dict[str, str] = {}
        self.float32_results: set[str] = set()
        self.producers: dict[str, onnx.NodeProto] = {}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        self.graph_outputs: set[str] = set()
        self.node: onnx.NodeProto | None = None
        self.label = ""
        self.top_index = 0   # the main graph's node being lowered (an If's, while its branch is)
        self.opsets: list = []
        self.lower_nodes = None   # ((node, index) pairs, where) → lowered in order: an If's taken branch

    # errors
    def error(self, message: str) -> RccError:
        return RccError(f"{self.source}: {self.label}: {message}")

    def unsupported(self, message: str) -> UnsupportedError:
        return UnsupportedError(f"{self.source}: {self.label}: {message}")

    # reading the current node
    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                value = helper.get_attribute_value(attribute)
                if isinstance(value, bytes):
                    return value.decode()
                if isinstance(value, list) and value and isinstance(value[0], bytes):
                    return [v.decode() for v in value]
                return value
        return default

    def has_input(self, index: int) -> bool:
        return len(self.node.input) > index and self.node.input[index] != ""

    def is_constant(self, index: int) -> bool:
        return self.has_input(index) and self.node.input[index] in self.constants

    def constant(self, index: int, what: str) -> np.ndarray:
        """The compile-time value of input `index`; an error naming `what` when it is not known."""
        if not self.has_input(index):
            raise self.error(f"missing input {what}")
        name = self.node.input[index]
        if name not in self.constants:
            raise self.unsupported(f"input {what} ({name!r}) must be a compile-time constant")
        return self.constants[name]

    def optional_constant(self, index: int, what: str) -> np.ndarray | None:
        return self.constant(index, what) if self.has_input(index) else None

    def one_number(self, index: int, what: str) -> int:
        """The compile-time value of input `index` when it holds one number (a scalar or one-element tensor:
        a K, a depth, an axis), as an int; an error naming `what` otherwise."""
        data = self.constant(index, what)
        if data.size != 1 or data.dtype.kind not in "iuf":
            raise self.error(f"input {what} must be one number, got {data.dtype} of shape {list(data.shape)}")
        return int(data.reshape(-1)[0])

    def flag(self, name: str, default: int) -> bool:
        """Attribute `name`, which must be 0 or 1 (`default` when absent)."""
        value = self.attr(name, default)
        if value not in (0, 1):
            raise self.error(f"attribute {name}={value} is not 0 or 1")
        return bool(value)

    def axis(self, raw: int, rank: int) -> int:
        """Axis `raw` of a rank-`rank` tensor made non-negative; an error when it is not one of its axes."""
        axis = int(raw) + rank if int(raw) < 0 else int(raw)
        if not 0 <= axis < rank:
            raise self.error(f"axis {raw} is out of range for rank {rank}")
        return axis

    def input(self, index: int) -> Value:
        """The IR value of input `index` (constants become IR constants on first use)."""
        if not self.has_input(index):
            raise self.error(f"missing input #{index}")
        return self.value_of(self.node.input[index])

    def input_type(self, index: int) -> TensorType:
        name = self.node.input[index]
        if name in self.constants:
            return TensorType.of(self._carried(name))
        return self.value_of(name).type

    def _carried(self, name: str) -> np.ndarray:
        """The constant `name`; UnsupportedError naming it when rcc has no dtype for it (bfloat16, float8...)."""
        data = self.constants[name]
        if data.dtype not in DTYPES.values():
            raise self.unsupported(f"tensor {name!r} has dtype {data.dtype}, which rcc does not carry")
        return data

    def value_of(self, name: str) -> Value:
        if name in self.values:
            return self.values[name]
        if name in self.constants:
            value = self.builder.constant(name, self._carried(name))
            self.values[name] = value
            return value
        if name in self.sequences:
            raise self.unsupported(f"input {name!r} is a sequence where a tensor is expected")
        raise self.error(f"input {name!r} is not produced by any node, initializer or graph input")

    # binding results
    def op(self, opname: str, operands: list[Value], attrs: dict[str, Any] | None = None,
           name: str | None = None) -> Value:
        """Append an IR op for the current node; shape errors name the node."""
        if "weighted" in OPS[opname].tags and len(operands) > 1 and operands[1].is_constant \
                and operands[1].type.dtype != "f32":
            raise self.unsupported(f"weights {operands[1].name!r} are {operands[1].type.dtype}; crossbars are "
                                   f"mapped from f32 weights only")
        try:
            value = self.builder.op(opname, operands, attrs, name=name or f"{self.node.output[0]}.{opname[3:]}")
        except ValueError as err:
            raise self.error(f"{opname}: {err}") from None
        self._check_budget(value)
        return value

    def _check_budget(self, value: Value) -> None:
        """LimitError naming the node when its result, or the receptive-field matrix a convolution is
        computed through, would exceed the tensor budget."""
        where = f"{self.source}: {self.label}"
        check_tensor_bytes(f"{where}: result %{value.name}", value.type.shape, value.type.np_dtype)
        op = value.producer
        if op.opname in ("nn.conv2d", "nn.conv_transpose2d"):
            x, w = op.operands[0].type.shape, op.operands[1].type.shape
            if op.opname == "nn.conv2d":
                rows, cols = value.type.shape[0] * value.type.shape[2] * value.type.shape[3], x[1] * w[2] * w[3]
            else:
                rows, cols = x[0] * x[2] * x[3], value.type.shape[1] * w[2] * w[3]
            check_tensor_bytes(f"{where}: receptive fields of %{value.name}", (rows, cols), value.type.np_dtype)

    def bind(self, index: int, value: Value) -> None:
        """Make `value` the ONNX tensor `output[index]`; an op result takes the ONNX name if it is free."""
        name = self.node.output[index]
        if value.producer is not None and value.name != name and name not in self.builder.taken \
                and self.values.get(value.name) is not value:
            self.builder.taken.discard(value.name)
            value.name = name
            self.builder.taken.add(name)
        self.values[name] = value

    def bind_constant(self, name: str, data: np.ndarray) -> None:
        self.constants[name] = np.asarray(data)

    def refuse_used_outputs(self, first: int, what: str) -> None:
        """UnsupportedError if any output from index `first` on is read; those outputs are not lowered."""
        if any(name in self.used for name in self.node.output[first:] if name):
            raise self.unsupported(what)


def initializer_arrays(graph: onnx.GraphProto, source: str = "<model>") -> dict[str, np.ndarray]:
    """Initializers by name (sparse ones densified), each checked against the tensor budget first."""
    for init in graph.initializer:
        _check_initializer_bytes(source, init.name, init.dims, init.data_type)
    for sparse in graph.sparse_initializer:
        _check_initializer_bytes(source, sparse.values.name, sparse.dims, sparse.values.data_type)
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for sparse in graph.sparse_initializer:
        values = numpy_helper.to_array(sparse.values)
        indices = numpy_helper.to_array(sparse.indices)
        out = np.zeros(tuple(sparse.dims), dtype=values.dtype)
        if indices.ndim == 1:
            out.reshape(-1)[indices] = values
        else:
            out[tuple(indices.T)] = values
        arrays[sparse.values.name] = out
    return arrays


def _check_initializer_bytes(source: str, name: str, dims, data_type: int) -> None:
    try:
        dtype = helper.tensor_dtype_to_np_dtype(data_type)
    except (KeyError, ValueError, TypeError):
        raise RccError(f"{source}: initializer {name!r} has unknown element type {data_type}") from None
    check_tensor_bytes(f"{source}: initializer {name!r}", tuple(dims), dtype)
