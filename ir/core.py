"""The IR's data structures: values, ops and modules.

A module is a straight-line SSA graph: inputs, named constants (weights, their data kept beside the IR
text in an .npz), ops in topological order, outputs. Values and ops are compared by identity; types
are frozen dataclasses compared by value. Structural equality of two modules is `modules_equal`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from rcc.ir.types import TensorType


class Value:
    """An SSA value: a module input, a constant (with `data`), or the result of one op (`producer`)."""

    __slots__ = ("name", "type", "producer", "data")

    def __init__(self, name: str, type: TensorType, producer: Op | None = None,
                 data: np.ndarray | None = None) -> None:
        self.name = name
        self.type = type
        self.producer = producer
        self.data = data

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return f"Value(%{self.name} : {self.type})"


class Op:
    """One operation: `opname` (e.g. `nn.conv2d`) applied to operand values, giving result values."""

    __slots__ = ("opname", "operands", "results", "attrs")

    def __init__(self, opname: str, operands: list[Value], result_types: list[TensorType],
                 result_names: list[str], attrs: dict[str, Any]) -> None:
        assert len(result_types) == len(result_names)
        self.opname = opname
        self.operands = list(operands)
        self.attrs = dict(attrs)
        self.results = [Value(name, t, producer=self) for name, t in zip(result_names, result_types)]

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.opname} has {len(self.results)} results"
        return self.results[0]

    def __repr__(self) -> str:
        return f"Op({self.opname} -> {', '.join('%' + r.name for r in self.results)})"


class NameAllocator:
    """Hands out names nobody has taken: `base` itself when free, else `base.1`, `base.2`, ...

    The one name allocator of rcc: the frontend, every pass and the ONNX exporter draw names from it."""

    __slots__ = ("taken",)

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.taken = set(taken)

    def fresh(self, base: str) -> str:
        """A name starting with `base` not taken yet; it is taken from now on."""
        name, index = base, 1
        while name in self.taken:
            name, index = f"{base}.{index}", index + 1
        self.taken.add(name)
        return name


class Module:
    """A compiled unit: `inputs`, `constants`, `ops` (topologically ordered) and `outputs`. `baked_inputs`
    names inputs of the source model whose default value (an ONNX initializer of the same name) was compiled
    in as a constant: callers may not feed them (`rcc.ir.inputs.check_inputs`). `input_defaults` holds the
    default value of inputs that have one and stay inputs: a caller who does not feed one gets its default."""

    __slots__ = ("name", "inputs", "constants", "ops", "outputs", "baked_inputs", "input_defaults")

    def __init__(self, name: str) -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.constants: list[Value] = []
        self.ops: list[Op] = []
        self.outputs: list[Value] = []
        self.baked_inputs: list[str] = []
        self.input_defaults: dict[str, np.ndarray] = {}

    def values(self) -> Iterator[Value]:
        """Every value defined in the module, in definition order."""
        yield from self.inputs
        yield from self.constants
        for op in self.ops:
            yield from op.results

    def names(self) -> set[str]:
        return {v.name for v in self.values()}

    def name_allocator(self) -> NameAllocator:
        """An allocator of names no value of the module uses yet (it does not see values added later
        unless they were named through it)."""
        return NameAllocator(self.names())

    def fresh_name(self, base: str) -> str:
        """One value name starting with `base` that no value in the module uses yet."""
        return self.name_allocator().fresh(base)

    def copy(self) -> Module:
        """A structural copy: new values and ops, the same names, types, attributes and constant data
        (shared: passes never mutate constant data)."""
        copied = Module(self.name)
        mapping: dict[int, Value] = {}
        for value in self.inputs:
            mapping[id(value)] = Value(value.name, value.type)
            copied.inputs.append(mapping[id(value)])
        for value in self.constants:
            mapping[id(value)] = Value(value.name, value.type, data=value.data)
            copied.constants.append(mapping[id(value)])
        for op in self.ops:
            new = Op(op.opname, [mapping[id(v)] for v in op.operands], [r.type for r in op.results],
                     [r.name for r in op.results], op.attrs)
            mapping.update((id(old), result) for old, result in zip(op.results, new.results))
            copied.ops.append(new)
        copied.outputs = [mapping[id(v)] for v in self.outputs]
        copied.baked_inputs = list(self.baked_inputs)
        copied.input_defaults = dict(self.input_defaults)
        return copied

    def add_constant(self, name: str, data: np.ndarray) -> Value:
        data = np.asarray(data, order="C")  # ascontiguousarray would make a scalar 1-D
        value = Value(name, TensorType.of(data), data=data)
        self.constants.append(value)
        return value

    def users(self) -> dict[Value, list[Op]]:
        """For each value, the ops that read it (in op order)."""
        users: dict[Value, list[Op]] = {}
        for op in self.ops:
            for operand in op.operands:
                users.setdefault(operand, []).append(op)
        return users

    def replace_uses(self, old: Value, new: Value) -> None:
        """Make every op and output that reads `old` read `new` instead."""
        for op in self.ops:
            op.operands = [new if v is old else v for v in op.operands]
        self.outputs = [new if v is old else v for v in self.outputs]

    def replace_op(self, op: Op, new_ops: list[Op]) -> None:
        """Put `new_ops` where `op` was; readers of op's (single) result read the last new op's instead."""
        position = self.ops.index(op)
        self.ops[position:position + 1] = new_ops
        self.replace_uses(op.result, new_ops[-1].result)

    def drop_unused_constants(self) -> None:
        used = {id(v) for op in self.ops for v in op.operands} | {id(v) for v in self.outputs}
        self.constants = [c for c in self.constants if id(c) in used]

    def __repr__(self) -> str:
        return f"Module(@{self.name}: {len(self.ops)} ops, {len(self.constants)} constants)"


def _attrs_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
            continue
        if type(x) is not type(y) or x != y:
            return False
    return True


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def modules_equal(a: Module, b: Module) -> bool:
    """Structural equality: same names, types, op names, attributes, constant data, wiring, baked inputs and
    input defaults."""
    if a.name != b.name or len(a.ops) != len(b.ops) or a.baked_inputs != b.baked_inputs:
        return False
    if a.input_defaults.keys() != b.input_defaults.keys() or not all(
            _arrays_equal(data, b.input_defaults[name]) for name, data in a.input_defaults.items()):
        return False
    pairs: list[tuple[Value, Value]] = list(zip(a.inputs, b.inputs)) + list(zip(a.constants, b.constants))
    if len(a.inputs) != len(b.inputs) or len(a.constants) != len(b.constants):
        return False
    for op_a, op_b in zip(a.ops, b.ops):
        if op_a.opname != op_b.opname or not _attrs_equal(op_a.attrs, op_b.attrs):
            return False
        if [v.name for v in op_a.operands] != [v.name for v in op_b.operands]:
            return False
        if len(op_a.results) != len(op_b.results):
            return False
        pairs.extend(zip(op_a.results, op_b.results))
    for va, vb in pairs:
        if va.name != vb.name or va.type != vb.type or va.is_constant != vb.is_constant:
            return False
        if va.is_constant and not _arrays_equal(va.data, vb.data):
            return False
    return [v.name for v in a.outputs] == [v.name for v in b.outputs]
