"""A hypothesis-driven fuzzer over program and IR mutations, with a fixed budget of examples.

Every mutation of a valid program (an attribute, a record field, a header field set to an arbitrary
JSON value) either loads and runs, or is refused with an RccError; likewise every mutation of valid IR
text either parses, verifies, passes `dce,constant-fold` and runs in the interpreter, or is an RccError.
Any other exception is a bug the contract forbids (exit 3).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rcc.backends.program import load_program
from rcc.compiler.frontend import import_onnx
from rcc.ir.inputs import random_inputs
from rcc.compiler.pass_manager import run_pipeline
from rcc.ir.errors import RccError
from rcc.ir.interpreter import run as interpret
from rcc.ir.limits import tensor_bytes
from rcc.ir.parser import parse_module
from rcc.ir.printer import print_module
from rcc.runtime.machine import Machine
from tests.hostile import builders

EXAMPLES = int(os.environ.get("RCC_FUZZ_EXAMPLES", "150"))
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 300),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                         st.sampled_from(["nn.relu", "nn.matmul", "xbar.mvm", "vec.quantize", "f64", "i8", "x"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=3)), max_leaves=8)


@pytest.fixture(scope="module")
def program_files() -> tuple[Path, dict, dict]:
    folder = Path(tempfile.mkdtemp(prefix="rcc-fuzz-"))
    path, _ = builders.compiled_mlp(folder)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return folder, members, {"x": np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4)}


def _mutate(header: dict, choice: int, key_choice: int, value) -> None:
    """Set one field to `value`: an instruction's attribute or record field, or a header field."""
    instructions = header["instructions"]
    if choice % 3 == 2:
        keys = sorted(header)
        header[keys[key_choice % len(keys)]] = value
        return
    record = instructions[choice % len(instructions)]
    target = record["attrs"] if choice % 3 == 0 and record["attrs"] else record
    keys = sorted(target)
    target[keys[key_choice % len(keys)]] = value


constant_edits = st.one_of(st.none(), st.tuples(st.integers(0, 10), st.sampled_from(["<f4", "<f8", "|i1", "<i2", "<i8",
                                                                                    "|b1", "<f2", "<u4"]),
                                                st.lists(st.integers(0, 5), max_size=4), st.integers(-300, 300)))


def _replacement_constant(edit) -> bytes:
    _, dtype, shape, fill = edit
    return builders.npy_bytes(np.full(shape, fill).astype(dtype))


@FUZZ_SETTINGS
@given(choice=st.integers(0, 10**6), key_choice=st.integers(0, 10**6), value=json_values, constant=constant_edits)
def test_mutated_programs_load_and_run_or_are_refused(program_files, choice, key_choice, value, constant) -> None:
    folder, members, inputs = program_files
    header = json.loads(members["program.json"])
    members = dict(members)
    if constant is None:
        _mutate(header, choice, key_choice, value)
    else:
        members[f"constants/{constant[0] % len(header['constants'])}.npy"] = _replacement_constant(constant)
    path = folder / "mutated.rccp"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, json.dumps(header) if name == "program.json" else data)
    try:
        Machine(load_program(path)).run(inputs)
    except RccError:
        pass



@pytest.fixture(scope="module")
def ir_text() -> str:
    folder = Path(tempfile.mkdtemp(prefix="rcc-fuzz-ir-"))
    model = builders.conv_model(folder / "conv.onnx", [1, 2, 6, 6])
    module = import_onnx(model)
    return print_module(module, inline_limit=10**6)


_NUMBER = re.compile(r"(?<![\w.%@])-?\d+(?![\w.])")


@FUZZ_SETTINGS
@given(position=st.integers(0, 10**6), replacement=st.integers(-3, 40), edit=st.sampled_from(["number", "drop_line",
                                                                                               "swap_lines"]))
def test_mutated_ir_parses_and_runs_or_is_refused(ir_text, position, replacement, edit) -> None:
    text = ir_text
    if edit == "number":
        numbers = list(_NUMBER.finditer(text))
        match = numbers[position % len(numbers)]
        text = text[:match.start()] + str(replacement) + text[match.end():]
    else:
        lines = text.splitlines()
        index = 1 + position % (len(lines) - 2)
        if edit == "drop_line":
            del lines[index]
        else:
            lines[index], lines[index + 1] = lines[index + 1], lines[index]
        text = "\n".join(lines) + "\n"
    try:
        module = parse_module(text)
        run_pipeline(module, "dce,constant-fold")
        if all(tensor_bytes(v.type.shape, v.type.dtype) < 2**20 for op in module.ops for v in op.results):
            interpret(module, random_inputs(module))
    except RccError:
        pass
