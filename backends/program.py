"""The program file: what the backend writes and the runtime loads (`.rccp`, versioned).

A program is a list of instructions over named buffers, the constants they read (crossbar weights,
scales, biases), the target it was compiled for, and its inputs and outputs. On disk it is a zip
archive: `program.json` (format, version, target, precision, inputs, outputs, instructions) and one
`.npy` member per constant; a model split for the host (compiler/frontend/host_split.py) adds `host`
to the header (what the host part reads and writes) and its ONNX model as the member `host.onnx`. Zip CRCs catch corruption; truncation breaks the archive; both, a wrong
format name or a newer version are a ProgramError naming the file. Loading reads every member within
the limits of `rcc.ir.limits` and checks the program against `program_schema` before returning it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rcc.ir.files import from_json_value as _from_json, to_json_value, write_output
from rcc.backends.program_schema import PROGRAM_FORMAT, PROGRAM_VERSION, ProgramError, check_header, \
    check_program_semantics
from rcc.ir.limits import regular_file_problem, read_member

__all__ = ["PROGRAM_FORMAT", "PROGRAM_VERSION", "Instruction", "Program", "ProgramError", "load_program",
           "program_bytes", "save_program"]


@dataclass
class Instruction:
    """One machine instruction: `opcode` from the runtime's instruction table, buffers it writes and reads."""

    opcode: str
    dst: list[str]
    src: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    shapes: list[list[int]] = field(default_factory=list)   # of dst
    dtypes: list[str] = field(default_factory=list)         # of dst

    def to_json(self) -> dict[str, Any]:
        return {"op": self.opcode, "dst": self.dst, "src": self.src, "attrs": to_json_value(self.attrs),
                "shapes": self.shapes, "dtypes": self.dtypes}


@dataclass
class Program:
    name: str
    target: dict[str, Any]
    precision: str
    inputs: list[dict[str, Any]]
    outputs: list[str]
    instructions: list[Instruction]
    constants: dict[str, np.ndarray]
    baked_inputs: list[str] = field(default_factory=list)  # model inputs whose default was compiled in
    host: dict[str, Any] | None = None     # the part after a data-dependent node: node, op_type, nodes, inputs,
    host_model: bytes | None = None        # outputs, final_outputs; and its ONNX model, run by onnxruntime
    input_defaults: dict[str, np.ndarray] = field(default_factory=dict)  # inputs' values when not fed

    def header(self) -> dict[str, Any]:
        return {"format": PROGRAM_FORMAT, "version": PROGRAM_VERSION, "name": self.name, "target": self.target,
                "precision": self.precision, "inputs": self.inputs, "outputs": self.outputs,
                "constants": sorted(self.constants), "instructions": [i.to_json() for i in self.instructions],
                "baked_inputs": self.baked_inputs, "input_defaults": sorted(self.input_defaults),
                **({"host": self.host} if self.host is not None else {})}


# Members carry a fixed timestamp, so compiling the same model twice gives the same bytes.
_MEMBER_TIME = (1980, 1, 1, 0, 0, 0)


def program_bytes(program: Program) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo("program.json", _MEMBER_TIME), json.dumps(program.header(), indent=1))
        for folder, arrays in (("constants", program.constants), ("defaults", program.input_defaults)):
            for index, name in enumerate(sorted(arrays)):
                member_info = zipfile.ZipInfo(f"{folder}/{index}.npy", _MEMBER_TIME)
                with archive.open(member_info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), allow_pickle=False)
        if program.host_model is not None:
            archive.writestr(zipfile.ZipInfo("host.onnx", _MEMBER_TIME), program.host_model)
    return buffer.getvalue()


def save_program(program: Program, path: str | os.PathLike) -> None:
    """Write the program (atomically to a regular file: a failure leaves no partial file)."""
    write_output(path, program_bytes(program))


def load_program(path: str | os.PathLike) -> Program:
    """The program at `path`, checked against the schema (`program_schema`) before anything runs it;
    ProgramError (or LimitError) naming the file for anything malformed, oversized or tampered with."""
    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise ProgramError(f"{path}: {problem}")
    try:
        with zipfile.ZipFile(path) as archive:
            header = json.loads(read_member(archive, "program.json", str(path)))
            check_header(header, str(path))
            constants = {name: read_member(archive, f"constants/{index}.npy", f"{path}: constant {name!r}")
                         for index, name in enumerate(header["constants"])}
            host_model = read_member(archive, "host.onnx", f"{path}: host model") if "host" in header else None
            defaults = {name: read_member(archive, f"defaults/{index}.npy", f"{path}: default of input {name!r}")
                        for index, name in enumerate(header.get("input_defaults", []))}
    except ProgramError:
        raise
    except RecursionError:
        raise ProgramError(f"{path}: program.json is nested too deeply") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, ValueError, TypeError, EOFError, OSError,
            NotImplementedError) as err:
        detail = str(err).splitlines()[0][:120] if str(err) else err.__class__.__name__
        raise ProgramError(f"{path}: corrupted or truncated program file ({detail})") from None
    try:
        instructions = [Instruction(i["op"], i["dst"], i["src"], _from_json(i["attrs"]), i["shapes"], i["dtypes"])
                        for i in header["instructions"]]
    except RecursionError:
        raise ProgramError(f"{path}: an instruction's attributes are nested too deeply") from None
    program = Program(header["name"], header["target"], header["precision"], header["inputs"],
                      header["outputs"], instructions, constants, header.get("baked_inputs", []),
                      header.get("host"), host_model, input_defaults=defaults)
    try:
        check_program_semantics(program)
    except ProgramError as err:
        raise ProgramError(f"{path}: {err}") from None
    return program
