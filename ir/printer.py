"""The printer of the textual IR (grammar in `grammar.lark`) and saving a module as text + .npz."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from rcc.ir.core import Module, Op, Value
from rcc.ir.files import npz_bytes, write_output
from rcc.ir.types import dtype_name, is_narrow, storage_view

INLINE_LIMIT = 16
_BARE_NAME = re.compile(r"[A-Za-z0-9_.]+")


def name_ref(name: str) -> str:
    return "%" + (name if _BARE_NAME.fullmatch(name) else json.dumps(name))


def value_ref(value: Value) -> str:
    return name_ref(value.name)


def format_scalar(item: Any) -> str:
    """One literal: ints bare, floats in their shortest exact form (always with '.', 'e', inf or nan)."""
    if isinstance(item, (bool, np.bool_)):
        return "true" if item else "false"
    if isinstance(item, (int, np.integer)):
        return str(int(item))
    if isinstance(item, np.generic) and is_narrow(dtype_name(item.dtype)):  # exact in a float64 (or int)
        return format_scalar(int(item) if item.dtype.name.startswith(("int", "uint")) else float(item))
    if isinstance(item, np.floating) and item.dtype != np.float64:
        text = str(item)  # numpy prints the shortest text that reads back to the same float32/16
    elif isinstance(item, (float, np.floating)):
        text = repr(float(item))
    else:
        return json.dumps(item)
    return text if any(c in text for c in ".einf") else text + ".0"


def format_attr(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    return format_scalar(value)


def format_op(op: Op) -> str:
    results = ", ".join(value_ref(r) for r in op.results)
    operands = ", ".join(value_ref(v) for v in op.operands)
    attrs = ", ".join(f"{key} = {format_attr(val)}" for key, val in op.attrs.items())
    attrs = f" {{{attrs}}}" if attrs else ""
    types = ", ".join(str(r.type) for r in op.results)
    return f"{results} = {op.opname}({operands}){attrs} : {types}"


def print_module(module: Module, inline_limit: int = INLINE_LIMIT) -> str:
    """The module's text; constants of more than `inline_limit` elements are referenced, not inlined."""
    lines = [f"module @{module.name} {{"]
    for value in module.inputs:
        default = module.input_defaults.get(value.name)
        suffix = "" if default is None else " default" + _inline(default, inline_limit)
        lines.append(f"  input {value_ref(value)} : {value.type}{suffix}")
    if module.baked_inputs:
        lines.append("  baked " + ", ".join(name_ref(name) for name in module.baked_inputs))
    lines += [f"  const {value_ref(c)} : {c.type}{_inline(c.data, inline_limit)}" for c in module.constants]
    lines += [f"  {format_op(op)}" for op in module.ops]
    lines.append("  output " + ", ".join(value_ref(v) for v in module.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _inline(data: np.ndarray, inline_limit: int) -> str:
    """` = [...]` for data of at most `inline_limit` elements (flat, row-major); else nothing (the .npz holds it)."""
    if data.size > inline_limit:
        return ""
    return " = [" + ", ".join(format_scalar(x) for x in data.reshape(-1)) + "]"


def external_arrays(module: Module, inline_limit: int = INLINE_LIMIT) -> dict[str, np.ndarray]:
    """The arrays the text refers to and the .npz holds: large constants and input defaults, by value name."""
    arrays = {c.name: storage_view(c.data) for c in module.constants if c.data.size > inline_limit}
    arrays.update((name, storage_view(data)) for name, data in module.input_defaults.items()
                  if data.size > inline_limit)
    return arrays


def weights_path(ir_path: str | os.PathLike) -> Path:
    """Where the weights of the IR text at `ir_path` live: the same name with `.npz`."""
    return Path(ir_path).with_suffix(".npz")


def save_module(module: Module, path: str | os.PathLike, inline_limit: int = INLINE_LIMIT) -> list[Path]:
    """Write the IR text to `path` and its large constants to the .npz beside it; return files written."""
    path = Path(path)
    text = print_module(module, inline_limit)
    external = external_arrays(module, inline_limit)
    written = []
    if external:
        write_output(weights_path(path), npz_bytes(external))
        written.append(weights_path(path))
    write_output(path, text.encode())
    return [path] + written
