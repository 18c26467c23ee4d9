"""The hostile-input corpus: every class of issue 10 as generated cases.

A case is a function of (folder, base) returning a `Case`: the argv, the exit code and a fragment of
the one stderr line the contract expects, and whether it must run in a subprocess under a memory limit.
`base` holds files shared by the cases (a compiled program, its inputs, its model).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.hostile import builders as b


@dataclass
class Case:
    argv: list
    code: int = 2
    fragment: str = ""
    subprocess: bool = False
    env: dict = field(default_factory=dict)
    expect_files: tuple = ()  # files a successful case writes


@dataclass
class Base:
    folder: Path
    model: Path
    program: Path
    inputs: Path


CASES: dict[str, tuple[str, Callable[[Path, Base], Case]]] = {}  # id → (class, builder)


def case(klass: str):
    def register(fn):
        CASES[fn.__name__] = (klass, fn)
        return fn
    return register


def _run(program: Path, base: Base, folder: Path, *extra) -> list:
    return ["run", program, "--inputs", base.inputs, "-o", folder / "out.npz", *extra]


def _tampered(folder: Path, base: Base, edit_header=None, edit_members=None) -> Path:
    return b.rewrite_program(base.program, folder / "t.rccp", edit_header, edit_members)


def _instruction(header: dict, opcode: str) -> dict:
    return next(i for i in header["instructions"] if i["op"] == opcode)


def _edit_instruction(opcode: str, **changes) -> Callable[[dict], dict]:
    def edit(header: dict) -> dict:
        instruction = _instruction(header, opcode)
        for key, value in changes.items():
            if key in instruction:
                instruction[key] = value
            else:
                instruction["attrs"][key] = value
        return header
    return edit


# ---- 2. bounded input ---------------------------------------------------------------------------

@case("bounded input")
def program_zip_bomb(folder: Path, base: Base) -> Case:
    with zipfile.ZipFile(base.program) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    bomb = [(info, data) if info.filename != "constants/0.npy" else b.deflate_bomb_member(info.filename, 3 * 2**29)
            for info, data in members]
    path = b.write_raw_zip(folder / "bomb.rccp", bomb)
    return Case(_run(path, base, folder), fragment="zip bomb", subprocess=True)


@case("bounded input")
def inputs_zip_bomb(folder: Path, base: Base) -> Case:
    path = b.write_raw_zip(folder / "bomb.npz", [b.deflate_bomb_member("x.npy", 3 * 2**29)])
    return Case(_run(base.program, base, folder)[:2] + ["--inputs", path, "-o", folder / "o.npz"],
                fragment="zip bomb", subprocess=True)


@case("bounded input")
def npy_header_declares_a_trillion(folder: Path, base: Base) -> Case:
    path = folder / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b.lying_npy_header((10**6, 10**6)))
    return Case(["run", base.program, "--inputs", path, "-o", folder / "o.npz"], fragment="budget", subprocess=True)


@case("bounded input")
def npy_header_larger_than_its_data(folder: Path, base: Base) -> Case:
    path = folder / "short.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b.lying_npy_header((1, 4000)))
    return Case(["run", base.program, "--inputs", path, "-o", folder / "o.npz"], fragment="only")


@case("bounded input")
def target_is_dev_zero(folder: Path, base: Base) -> Case:
    return Case([base.model, "--target", "/dev/zero", "-o", folder / "m.rccp"], fragment="not a regular file",
                subprocess=True)


@case("bounded input")
def opt_reads_dev_zero(folder: Path, base: Base) -> Case:
    return Case(["opt", "/dev/zero", "-p", "dce"], fragment="not a regular file", subprocess=True)


@case("bounded input")
def ir_text_over_the_text_limit(folder: Path, base: Base) -> Case:
    path = folder / "big.ir"
    body = "module @m {\n  input %x : f32[2]\n  %y = nn.relu(%x) : f32[2]\n  output %y\n}\n"
    path.write_text("// padding\n" * 2000 + body)
    return Case(["opt", path, "-p", "dce"], fragment="RCC_MAX_TEXT_BYTES", env={"RCC_MAX_TEXT_BYTES": "4096"})


@case("bounded input")
def ir_attributes_nested_3000_deep(folder: Path, base: Base) -> Case:
    path = folder / "deep.ir"
    path.write_text("module @m {\n  input %x : f32[2]\n  %y = nn.relu(%x) {alpha = " + "[" * 3000 + "]" * 3000
                    + "} : f32[2]\n  output %y\n}\n")
    return Case(["opt", path, "-p", "dce"], fragment="nested too deeply")


@case("bounded input")
def program_json_nested_200000_deep(folder: Path, base: Base) -> Case:
    def edit_members(members):
        members["program.json"] = members["program.json"][:-1] + b', "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    return Case(_run(_tampered(folder, base, edit_members=edit_members), base, folder), fragment="nested too deeply")


@case("bounded input")
def model_is_a_directory(folder: Path, base: Base) -> Case:
    (folder / "dir.onnx").mkdir()
    return Case([folder / "dir.onnx", "-o", folder / "m.rccp"], fragment="is a directory")


@case("bounded input")
def model_is_dev_zero(folder: Path, base: Base) -> Case:
    return Case(["/dev/zero", "-o", folder / "m.rccp"], fragment="not a regular file")


# ---- 3. shape rules never compute data ---------------------------------------------------------------

@case("symbolic shapes")
def onnx_matmul_of_two_4096_wide_inputs(folder: Path, base: Base) -> Case:
    path = b.save_model(folder / "mm.onnx", [helper.make_node("MatMul", ["a", "c"], ["y"], name="mm")],
                        [b.tensor("a", [4096, 4096]), b.tensor("c", [4096, 4096])], [b.tensor("y", [4096, 4096])])
    return Case([path, "--emit", "ir", "-o", folder / "mm.ir", "-q"], code=0, expect_files=("mm.ir",),
                subprocess=True)  # the old shape rule hung in C code, which SIGALRM cannot interrupt


@case("symbolic shapes")
def ir_matmul_of_two_4096_wide_inputs(folder: Path, base: Base) -> Case:
    path = folder / "mm.ir"
    path.write_text("module @m {\n  input %a : f32[4096,4096]\n  input %b : f32[4096,4096]\n"
                    "  %y = nn.matmul(%a, %b) : f32[4096,4096]\n  output %y\n}\n")
    return Case(["opt", path, "-p", "dce,constant-fold", "-o", folder / "out.ir"], code=0,
                expect_files=("out.ir",), subprocess=True)


@case("symbolic shapes")
def input_shape_needs_37_gib(folder: Path, base: Base) -> Case:
    path = b.save_model(folder / "dyn.onnx", [helper.make_node("Relu", ["input"], ["y"], name="act")],
                        [b.tensor("input", [1, 1, "H", "W"])], [b.tensor("y", [1, 1, "H", "W"])])
    return Case([path, "--input-shape", "input=1x1x100000x100000", "-o", folder / "m.rccp"],
                fragment="--input-shape input", subprocess=True)


@case("symbolic shapes")
def declared_input_needs_37_gib(folder: Path, base: Base) -> Case:
    path = b.save_model(folder / "big.onnx", [helper.make_node("Relu", ["x"], ["y"], name="act")],
                        [b.tensor("x", [100000, 100000])], [b.tensor("y", [100000, 100000])])
    return Case([path, "-o", folder / "m.rccp"], fragment="input 'x'", subprocess=True)


@case("symbolic shapes")
def node_result_needs_2_gib(folder: Path, base: Base) -> Case:
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 0, 64512], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["x", "pads"], ["t"], name="pad_wide"),
             helper.make_node("Relu", ["t"], ["y"], name="act")]
    path = b.save_model(folder / "pad.onnx", nodes, [b.tensor("x", [1, 1, 8192, 1024])],
                        [b.tensor("y", [1, 1, 8192, 65536])], [pads])
    return Case([path, "-o", folder / "m.rccp"], fragment="node 'pad_wide'", subprocess=True)


@case("symbolic shapes")
def folded_constant_of_a_trillion(folder: Path, base: Base) -> Case:
    shape = numpy_helper.from_array(np.array([10**6, 10**6], np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"], name="fill"),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    path = b.save_model(folder / "fill.onnx", nodes, [b.tensor("x", [1, 1])], [b.tensor("y", [10**6, 10**6])],
                        [shape])
    return Case([path, "-o", folder / "m.rccp"], fragment="node 'fill'", subprocess=True)


@case("symbolic shapes")
def verify_conv_on_a_4000x4000_image(folder: Path, base: Base) -> Case:
    path = b.conv_model(folder / "conv.onnx", [1, 3, 4000, 4000])
    return Case([path, "--verify", "-o", folder / "m.rccp"], fragment="receptive fields", subprocess=True)


# ---- 4. programs validated on load ---------------------------------------------------------------

def _program_case(fragment: str, edit_header=None, edit_members=None):
    def build(folder: Path, base: Base) -> Case:
        return Case(_run(_tampered(folder, base, edit_header, edit_members), base, folder), fragment=fragment)
    return build


def _set(key: str, value):
    def edit(header):
        header[key] = value
        return header
    return edit


def _target(key: str, value):
    def edit(header):
        header["target"][key] = value
        return header
    return edit


def _drop_attr(opcode: str, key: str):
    def edit(header):
        del _instruction(header, opcode)["attrs"][key]
        return header
    return edit


def _replace_constant(index: int, array: np.ndarray):
    def edit(members):
        members[f"constants/{index}.npy"] = b.npy_bytes(array)
    return edit


def _header(base: Base) -> dict:
    with zipfile.ZipFile(base.program) as archive:
        return json.loads(archive.read("program.json"))


def _weights_index(header: dict) -> int:
    return header["constants"].index(_instruction(header, "mvm")["src"][1])


PROGRAM_TAMPERING = {
    "mvm_adc_bits_negative": ("adc-bits", _edit_instruction("mvm", adc_bits=-3)),
    "mvm_xbar_rows_zero": ("xbar", _edit_instruction("mvm", xbar_rows=0)),
    "version_true": ("version true", _set("version", True)),
    "version_negative": ("version -7", _set("version", -7)),
    "version_string": ("not a positive integer", _set("version", "1")),
    "version_old": ("written by an older rcc", _set("version", 1)),
    "quantize_bits_200": ("bits", _edit_instruction("quantize", bits=200)),
    "quantize_scale_zero": ("scale", _edit_instruction("quantize", scale=0.0)),
    "quantize_missing_scale": ("missing attribute 'scale'", _drop_attr("quantize", "scale")),
    "vec_unknown_function": ("not a vector-unit function", _edit_instruction("vec", fn="nn.no_such_op")),
    "header_is_a_list": ("not an object", lambda header: [header]),
    "target_not_a_table": ("'target'", _set("target", 5)),
    "target_zero_dac_bits": ("dac-bits", _target("dac_bits", 0)),
    "unknown_opcode": ("unknown opcode", _edit_instruction("mvm", op="fma")),
    "dequantize_declares_huge_shape": ("budget", _edit_instruction("dequantize", shapes=[[100000, 100000]])),
    "dequantize_declares_wrong_shape": ("declares", _edit_instruction("dequantize", shapes=[[2, 3]])),
    "mvm_declares_wrong_shape": ("declares", _edit_instruction("mvm", shapes=[[1, 7]])),
    "reads_before_write": ("before anything writes it", _edit_instruction("mvm", src=["nothing", "x"])),
    "input_dtype_unknown": ("input", lambda h: {**h, "inputs": [{**h["inputs"][0], "dtype": "f128"}]}),
    "output_never_stored": ("stored exactly once", lambda h: {**h, "outputs": h["outputs"] + ["ghost"]}),
}
for _name, (_fragment, _edit) in PROGRAM_TAMPERING.items():
    CASES[_name] = ("validated programs", _program_case(_fragment, _edit))


@case("validated programs")
def mvm_weights_float64(folder: Path, base: Base) -> Case:
    header = _header(base)
    index = _weights_index(header)
    weights = np.ones(_instruction(header, "mvm")["attrs"]["weights_shape"], np.float64)
    return _program_case("f64", edit_members=_replace_constant(index, weights))(folder, base)


@case("validated programs")
def mvm_weights_of_rank_2(folder: Path, base: Base) -> Case:
    header = _header(base)
    index = _weights_index(header)
    return _program_case("weights", edit_members=_replace_constant(index, np.ones((4, 3), np.int8)))(folder, base)


@case("validated programs")
def mvm_weights_out_of_range(folder: Path, base: Base) -> Case:
    header = _header(base)
    index = _weights_index(header)
    weights = np.full(_instruction(header, "mvm")["attrs"]["weights_shape"], 127, np.int16)
    weights[0, 0, 0] = 30000
    return _program_case("exceed", edit_members=_replace_constant(index, weights))(folder, base)


@case("validated programs")
def dequantize_bias_of_wrong_shape(folder: Path, base: Base) -> Case:
    header = _header(base)
    bias = _instruction(header, "dequantize")["src"][-1]
    index = header["constants"].index(bias)
    return _program_case("dequantize", edit_members=_replace_constant(index, np.ones(5, np.float32)))(folder, base)


@case("ONNX semantics")
def opset_99_model(folder: Path, base: Base) -> Case:
    path = b.save_model(folder / "op99.onnx", [helper.make_node("Relu", ["x"], ["y"], name="act")],
                        [b.tensor("x", [1, 4])], [b.tensor("y", [1, 4])], opset=99)
    return Case([path, "-o", folder / "m.rccp"], fragment="opset 99")


# ---- 5. exit codes -------------------------------------------------------------------------------

@case("exit codes")
def seed_negative(folder: Path, base: Base) -> Case:
    return Case([base.model, "--verify", "--seed", "-1", "-o", folder / "m.rccp"], fragment="--seed")


@case("exit codes")
def plain_npy_as_inputs(folder: Path, base: Base) -> Case:
    np.save(folder / "x.npy", np.zeros((1, 4), np.float32))
    return Case(["run", base.program, "--inputs", folder / "x.npy", "-o", folder / "o.npz"], fragment="plain .npy")


@case("exit codes")
def plain_npy_as_calibration(folder: Path, base: Base) -> Case:
    np.save(folder / "x.npy", np.zeros((1, 4), np.float32))
    return Case([base.model, "--calibrate", folder / "x.npy", "-o", folder / "m.rccp"], fragment="plain .npy")


@case("exit codes")
def zero_batch_at_run_time(folder: Path, base: Base) -> Case:
    np.savez(folder / "empty.npz", x=np.zeros((0, 4), np.float32))
    return Case(["run", base.program, "--inputs", folder / "empty.npz", "-o", folder / "o.npz"],
                fragment="input 'x'")


@case("exit codes")
def string_array_as_calibration(folder: Path, base: Base) -> Case:
    np.savez(folder / "s.npz", x=np.array([["a", "b", "c", "d"]]))
    return Case([base.model, "--calibrate", folder / "s.npz", "-o", folder / "m.rccp"], fragment="--calibrate")


# ---- 6. numerics -----------------------------------------------------------------------------------

@case("numerics")
def nan_weights(folder: Path, base: Base) -> Case:
    weight = np.ones((4, 3), np.float32)
    weight[2, 1] = np.nan
    path = b.mlp_model(folder / "nan.onnx", weight=weight)
    return Case([path, "--verify", "--executor", "interpreter", "-o", folder / "m.rccp"], fragment="initializer 'W'")


@case("numerics")
def nan_input_to_run(folder: Path, base: Base) -> Case:
    path = b.mlp_inputs(folder / "nan.npz", float("nan"))
    return Case(["run", base.program, "--inputs", path, "-o", folder / "o.npz"], fragment="array 'x'")


@case("numerics")
def inf_input_to_verify(folder: Path, base: Base) -> Case:
    path = b.mlp_inputs(folder / "inf.npz", float("inf"))
    return Case([base.model, "--verify", "--inputs", path, "-o", folder / "m.rccp"], fragment="NaN/Inf")


@case("numerics")
def all_nan_calibration(folder: Path, base: Base) -> Case:
    np.savez(folder / "cal.npz", x=np.full((4, 1, 4), np.nan, np.float32))
    return Case([base.model, "--calibrate", folder / "cal.npz", "-o", folder / "m.rccp"], fragment="--calibrate")


# ---- 7. ONNX semantics ------------------------------------------------------------------------------

def _external_model(folder: Path, location: str) -> Path:
    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", "48")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")]
    return b.save_model(folder / "ext.onnx", nodes, [b.tensor("x", [1, 4])], [b.tensor("y", [1, 3])], [weight])


@case("ONNX semantics")
def external_data_missing(folder: Path, base: Base) -> Case:
    return Case([_external_model(folder, "weights.bin"), "-o", folder / "m.rccp"], fragment="external data")


@case("ONNX semantics")
def external_data_absolute_path(folder: Path, base: Base) -> Case:
    return Case([_external_model(folder, "/etc/passwd"), "-o", folder / "m.rccp"], fragment="external data")


@case("ONNX semantics")
def external_data_outside_the_folder(folder: Path, base: Base) -> Case:
    return Case([_external_model(folder, "../../outside.bin"), "-o", folder / "m.rccp"], fragment="external data")


@case("ONNX semantics")
def invalid_node_is_named(folder: Path, base: Base) -> Case:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="the_bad_relu", foo=3)]
    path = b.save_model(folder / "bad.onnx", nodes, [b.tensor("x", [1, 4])], [b.tensor("y", [1, 4])])
    return Case([path, "-o", folder / "m.rccp"], fragment="the_bad_relu")


def _weights_of_dtype(dtype: type) -> Callable[[Path, Base], Case]:
    def build(folder: Path, base: Base) -> Case:
        path = b.mlp_model(folder / "weights.onnx", weight_dtype=dtype)
        return Case([path, "-o", folder / "m.rccp"], fragment="node 'fc'")
    return build


for _dtype in (np.float64, np.int32):   # float16 models compile (tests/frontend/test_float16_models.py)
    CASES[f"{np.dtype(_dtype).name}_weights"] = ("ONNX semantics", _weights_of_dtype(_dtype))


@case("unclear errors")
def toml_unknown_key(folder: Path, base: Base) -> Case:
    path = folder / "chip.toml"
    path.write_text("xbar = \"128x128\"\nflux_capacitor = 3\n")
    return Case([base.model, "--target", path, "-o", folder / "m.rccp"], fragment="flux_capacitor")
