"""The program schema: what a loadable program is, checked before the machine touches it.

Two checks, both raising ProgramError (one line, exit 2) naming the program and the instruction:
- `check_header(header, where)`: the JSON structure of `program.json` (format, integer version,
  field types, instruction records);
- `check_program_semantics(program)`: every instruction's opcode, operand and result counts,
  attributes and their ranges (the IR op table's own rules), result shapes and dtypes equal to what
  the op's shape rule infers from the operands, buffers written once and read after they are
  written, crossbar mappings consistent with a valid target, every buffer within the tensor budget.
The machine runs only programs that pass both, so no tampered file can crash it or run with
nonsense settings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rcc.backends.target import Target, TargetError
from rcc.ir.errors import RccError
from rcc.ir.limits import LimitError, check_tensor_bytes
from rcc.ir.optable import OPS, normalize_attrs
from rcc.ir.types import DTYPES, TensorType

PROGRAM_FORMAT = "rcc-program"
PROGRAM_VERSION = 2  # 2: every mvm states its schedule (copies, arrays, rows, phase, pipelining)
PRECISIONS = ("int", "float")
# opcode → the IR op whose table entry defines its attributes and shape rule (None: checked here)
OPCODE_OPS = {"load": None, "store": None, "im2col": "vec.im2col", "quantize": "vec.quantize", "mvm": "xbar.mvm",
              "dequantize": "vec.dequantize", "vec": None, "write_mvm": "xbar.write_mvm"}
_MVM_TARGET_FIELDS = ("xbar_rows", "xbar_cols", "weight_bits", "input_bits", "cell_bits", "dac_bits", "adc_bits",
                      "encoding")


class ProgramError(RccError):
    """A program file that cannot be loaded; the message names the file."""


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON's true is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(is_int(d) and d >= 0 for d in value)


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_header(header: Any, where: str) -> None:
    """ProgramError unless `header` has the structure of a `program.json` this rcc reads."""
    if not isinstance(header, dict):
        raise ProgramError(f"{where}: program.json is not an object")
    if header.get("format") != PROGRAM_FORMAT:
        raise ProgramError(f"{where}: not an rcc program (format {header.get('format')!r})")
    version = header.get("version")
    if not is_int(version) or version < 1:
        raise ProgramError(f"{where}: program version {version!r} is not a positive integer")
    if version > PROGRAM_VERSION:
        raise ProgramError(f"{where}: program version {version} is newer than this rcc reads "
                           f"(up to {PROGRAM_VERSION})")
    if version < PROGRAM_VERSION:
        raise ProgramError(f"{where}: program version {version} was written by an older rcc, before "
                           f"programs carried their schedule; compile the model again")
    expected = {"name": str, "target": dict, "precision": str, "inputs": list, "outputs": list,
                "constants": list, "instructions": list}
    for key, kind in expected.items():
        if not isinstance(header.get(key), kind):
            raise ProgramError(f"{where}: field {key!r} must be a {kind.__name__}, got {header.get(key)!r:.60}")
    if header["precision"] not in PRECISIONS:
        raise ProgramError(f"{where}: precision {header['precision']!r:.40} is not one of {', '.join(PRECISIONS)}")
    for spec in header["inputs"]:
        if not (isinstance(spec, dict) and set(spec) == {"name", "shape", "dtype"} and isinstance(spec["name"], str)
                and _is_shape(spec["shape"]) and spec["dtype"] in DTYPES):
            raise ProgramError(f"{where}: input {spec!r:.80} is not {{name, shape, dtype}}")
    for optional in ("baked_inputs", "input_defaults"):  # optional: version-2 programs before them load without
        if not _is_names(header.get(optional, [])):
            raise ProgramError(f"{where}: field {optional!r} must be a list of names")
    if len(set(header.get("input_defaults", []))) != len(header.get("input_defaults", [])):
        raise ProgramError(f"{where}: an input default is listed twice")
    if not _is_names(header["outputs"]) or not _is_names(header["constants"]):
        raise ProgramError(f"{where}: outputs and constants must be lists of names")
    _check_host(header, where)
    if len(set(header["constants"])) != len(header["constants"]):
        raise ProgramError(f"{where}: a constant is listed twice")
    for index, record in enumerate(header["instructions"]):
        if not (isinstance(record, dict) and set(record) == {"op", "dst", "src", "attrs", "shapes", "dtypes"}
                and isinstance(record["op"], str) and _is_names(record["dst"]) and _is_names(record["src"])
                and isinstance(record["attrs"], dict) and isinstance(record["shapes"], list)
                and all(_is_shape(s) for s in record["shapes"]) and _is_names(record["dtypes"])):
            raise ProgramError(f"{where}: instruction {index} is not an {{op, dst, src, attrs, shapes, dtypes}} "
                               f"record of the right types")


_HOST_KEYS = {"node": str, "op_type": str, "nodes": int, "inputs": list, "outputs": list, "final_outputs": list}


def _check_host(header: dict[str, Any], where: str) -> None:
    """The optional `host` record: its fields, and names that the machine part or the model's inputs give
    (host inputs) and that the host or the machine part give (final outputs)."""
    if "host" not in header:
        return
    host = header["host"]
    if not (isinstance(host, dict) and set(host) == set(_HOST_KEYS)
            and all(isinstance(host[key], kind) and (kind is not list or _is_names(host[key]))
                    for key, kind in _HOST_KEYS.items()) and is_int(host["nodes"])):
        raise ProgramError(f"{where}: field 'host' must be {{{', '.join(_HOST_KEYS)}}} of the right types")
    given = set(header["outputs"]) | {spec.get("name") for spec in header["inputs"] if isinstance(spec, dict)}
    unknown = next((name for name in host["inputs"] if name not in given), None)
    unknown = unknown or next((name for name in host["final_outputs"]
                               if name not in set(host["outputs"]) | set(header["outputs"])), None)
    if unknown is not None:
        raise ProgramError(f"{where}: the host part reads or returns {unknown!r:.60}, which nothing produces")
# Attributes that programs written before them lack; the machine reads them with their op-table default.
_ADDED_LATER = frozenset({"spare_columns"})


def check_program_semantics(program) -> None:
    """ProgramError unless every instruction of `program` (a backends.program.Program) is well formed."""
    where = f"program {program.name!r}"
    _check_target(program.target, where)
    types: dict[str, TensorType] = {}
    for name, array in program.constants.items():
        if not isinstance(array, np.ndarray) or array.dtype not in DTYPES.values():
            raise ProgramError(f"{where}: constant {name!r} is not an array of a dtype rcc carries")
        types[name] = TensorType.of(array)
    inputs = {spec["name"]: TensorType(tuple(spec["shape"]), spec["dtype"]) for spec in program.inputs}
    for name, type_ in inputs.items():
        _check_budget(f"{where}: input {name!r}", type_)
    for name, array in program.input_defaults.items():
        if name not in inputs or not isinstance(array, np.ndarray) or array.dtype not in DTYPES.values() \
                or TensorType.of(array) != inputs[name]:
            raise ProgramError(f"{where}: the default of {name!r} is not a value of one of its inputs' type")
    stored: list[str] = []
    for index, instruction in enumerate(program.instructions):
        label = f"{where}: instruction {index} ({instruction.opcode})"
        _check_instruction(program, instruction, label, types, inputs)
        if instruction.opcode == "store":
            stored.append(instruction.attrs["output"])
    if sorted(stored) != sorted(program.outputs) or len(set(stored)) != len(stored):
        raise ProgramError(f"{where}: outputs {program.outputs!r:.80} are not each stored exactly once")


def _check_target(target: dict[str, Any], where: str) -> Target:
    fields = {k: v for k, v in target.items() if k in Target.__dataclass_fields__}
    try:
        return Target(**fields)
    except (TargetError, TypeError) as err:
        raise ProgramError(f"{where}: invalid target ({err})") from None


def _check_budget(label: str, type_: TensorType) -> None:
    try:
        check_tensor_bytes(label, type_.shape, type_.dtype)
    except LimitError as err:
        raise ProgramError(str(err)) from None


def _declared_types(instruction, label: str) -> list[TensorType]:
    if len(instruction.shapes) != len(instruction.dst) or len(instruction.dtypes) != len(instruction.dst):
        raise ProgramError(f"{label}: needs one shape and one dtype per result")
    if any(dtype not in DTYPES for dtype in instruction.dtypes):
        raise ProgramError(f"{label}: unknown result dtype in {instruction.dtypes!r:.60}")
    declared = [TensorType(tuple(shape), dtype) for shape, dtype in zip(instruction.shapes, instruction.dtypes)]
    for name, type_ in zip(instruction.dst, declared):
        _check_budget(f"{label}: result {name!r}", type_)
    return declared


def _check_instruction(program, instruction, label: str, types: dict[str, TensorType],
                       inputs: dict[str, TensorType]) -> None:
    if instruction.opcode not in OPCODE_OPS:
        raise ProgramError(f"{label}: unknown opcode")
    for name in instruction.src:
        if name not in types:
            raise ProgramError(f"{label}: reads {name!r} before anything writes it")
    for name in instruction.dst:
        if name in types:
            raise ProgramError(f"{label}: writes {name!r}, which is already written")
    operand_types = [types[name] for name in instruction.src]
    declared = _declared_types(instruction, label)
    if instruction.opcode == "load":
        if len(instruction.dst) != 1 or instruction.src or instruction.attrs \
                or inputs.get(instruction.dst[0]) != declared[0]:
            raise ProgramError(f"{label}: must write one declared input with its declared shape and dtype")
    elif instruction.opcode == "store":
        if len(instruction.src) != 1 or instruction.dst or set(instruction.attrs) != {"output"} \
                or instruction.attrs["output"] not in program.outputs:
            raise ProgramError(f"{label}: must read one buffer and name a declared output")
    else:
        inferred = _inferred_types(program, instruction, label, operand_types)
        if inferred != declared:
            raise ProgramError(f"{label}: declares {', '.join(map(str, declared)) or 'no results'}, but its "
                               f"operands give {', '.join(map(str, inferred))}")
    types.update(zip(instruction.dst, declared))


def _inferred_types(program, instruction, label: str, operand_types: list[TensorType]) -> list[TensorType]:
    attrs = dict(instruction.attrs)
    if instruction.opcode == "vec":
        if set(attrs) != {"fn", "attrs"} or not isinstance(attrs["fn"], str) or not isinstance(attrs["attrs"], dict):
            raise ProgramError(f"{label}: attributes must be {{fn, attrs}}")
        opname, attrs = attrs["fn"], attrs["attrs"]
        if opname not in OPS or opname.startswith("xbar.") or opname in OPCODE_OPS.values():
            raise ProgramError(f"{label}: {opname!r:.40} is not a vector-unit function")
    else:
        opname = OPCODE_OPS[instruction.opcode]
    if instruction.opcode == "mvm":
        _check_mvm(program, instruction, label, operand_types)
        attrs.pop("weights_shape", None)
    elif instruction.opcode == "write_mvm":
        _check_crossbar_settings(instruction.attrs, label)
    opdef = OPS[opname]
    missing = sorted(set(opdef.attrs) - set(attrs) - _ADDED_LATER) if instruction.opcode != "vec" else []
    if missing:  # the machine reads a dedicated instruction's attributes as written: no defaults
        raise ProgramError(f"{label}: missing attribute {missing[0]!r}")
    if not opdef.operand_count_ok(len(operand_types)) or len(instruction.dst) != opdef.results:
        raise ProgramError(f"{label}: {opname} takes {', '.join(opdef.operands)} and gives {opdef.results} result(s)")
    try:
        normalized = normalize_attrs(opdef, attrs)
        _check_finite(normalized)
        return opdef.infer(operand_types, normalized)
    except (ValueError, TypeError, KeyError, ZeroDivisionError, OverflowError) as err:
        raise ProgramError(f"{label}: {opname}: {err}") from None


def _check_finite(attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) and key not in ("min", "max") for v in values):
            raise ValueError(f"attribute {key!r} is not finite")


def _check_mvm(program, instruction, label: str, operand_types: list[TensorType]) -> None:
    """The crossbar mapping: a valid target's bits, weights that are constants of the declared shape and
    within the weight range, block maps that index real rows and outputs, arrays on the target."""
    attrs = instruction.attrs
    if len(instruction.src) not in (2, 4) or any(name not in program.constants for name in instruction.src[1:]):
        raise ProgramError(f"{label}: reads activations, then weights (and row/col maps) held as constants")
    target = _check_crossbar_settings(attrs, label)
    weights = program.constants[instruction.src[1]]
    if attrs.get("weights_shape") != list(weights.shape):
        raise ProgramError(f"{label}: weights_shape {attrs.get('weights_shape')!r:.40} is not the weights' "
                           f"{list(weights.shape)}")
    if weights.dtype.kind == "i" and weights.size and \
            max(-int(weights.min()), int(weights.max())) > target.weight_max:   # no int64 copy: peak memory
        raise ProgramError(f"{label}: weights exceed ±{target.weight_max} ({target.weight_bits}-bit)")
    if len(instruction.src) == 4 and weights.ndim == 3:
        row_map, col_map = (program.constants[name] for name in instruction.src[2:])
        if not _blocks_in_their_groups(row_map, col_map, weights.shape):
            raise ProgramError(f"{label}: row_map/col_map index rows or outputs the weights do not have")


def _blocks_in_their_groups(row_map: np.ndarray, col_map: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether every block (a row of each map, −1 padding) holds rows and outputs of one group of weights [G, K, M]:
    rows g·K + r and outputs g·M + c (the layer's numbering, as `backends.mapping.array_blocks` reads them), g the
    group of its first output."""
    groups, k, m = shape
    if row_map.ndim != 2 or col_map.ndim != 2 or len(row_map) != len(col_map):
        return False
    for rows, cols in zip(row_map, col_map):
        if rows.size and rows.min() < -1 or cols.size and cols.min() < -1:
            return False
        rows, cols = rows[rows >= 0], cols[cols >= 0]
        group = int(cols[0]) // m if cols.size else 0
        if group >= groups or rows.size and (rows.min() < group * k or rows.max() >= (group + 1) * k) or \
                cols.size and cols.max() >= (group + 1) * m:
            return False
    return True


def _check_crossbar_settings(attrs: dict, label: str) -> Target:
    """The widths of an `mvm` or `write_mvm`: integers forming a valid target, slices and arrays in range."""
    if not all(is_int(attrs.get(k)) for k in ("groups", "row_tiles", "col_tiles", "weight_slices", "arrays",
                                               "first_array")):
        raise ProgramError(f"{label}: groups, tiles, slices and arrays must be integers")
    try:
        target = Target(**{k: attrs.get(k) for k in _MVM_TARGET_FIELDS})
    except (TargetError, TypeError) as err:
        raise ProgramError(f"{label}: crossbar settings: {err}") from None
    if attrs["adc_bits"] is None or attrs["weight_slices"] != target.weight_slices or attrs["arrays"] < 1 \
            or attrs["first_array"] < 0:
        raise ProgramError(f"{label}: adc_bits, weight_slices ({target.weight_slices} for these bits), "
                           f"arrays (≥ 1) or first_array (≥ 0) out of range")
    return target
