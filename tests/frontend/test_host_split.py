"""A model with a data-dependent node (conv → NonZero, and → Reshape/TopK/Gather after it) compiles: the conv
runs on the machine, the rest on the host (onnxruntime); `--verify` checks the whole model against
onnxruntime on the original; the program carries the host model, so `rcc run PROGRAM` works alone; a
tampered host record or model is a one-line error."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.program import ProgramError, load_program, save_program
from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend.host_split import split_for_host
from rcc.compiler.host_run import HostPart
from rcc.compiler.report import build_report


def split_model(path) -> str:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0.5, -0.25, 0.1, 0.3], np.float32), "b"),
             numpy_helper.from_array(np.array([1, 64], np.int64), "shape"),
             numpy_helper.from_array(np.array([3], np.int64), "k")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("NonZero", ["y"], ["nz"], name="nonzero"),
             helper.make_node("Reshape", ["y", "shape"], ["flat"], name="flatten"),
             helper.make_node("TopK", ["flat", "k"], ["vals", "idx"], name="topk"),
             helper.make_node("Gather", ["flat", "idx"], ["g"], axis=1, name="gather")]
    graph = helper.make_graph(nodes, "host_split", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("nz", TensorProto.INT64, [4, None]),
                               helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path / "split.onnx")
    return str(path / "split.onnx")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return split_model(tmp_path_factory.mktemp("host"))


def test_the_split_is_at_the_first_data_dependent_node(model) -> None:
    split = split_for_host(onnx.load(model))
    assert split.info["node"] == "nonzero" and split.info["nodes"] == 4 and split.info["inputs"] == ["y"]
    assert [value.name for value in split.prefix.graph.output] == ["y"]
    assert split_for_host(helper.make_model(helper.make_graph([], "empty", [], []))) is None


@pytest.mark.parametrize("precision", ["int", "float"])
def test_machine_and_host_verify_the_whole_model(model, precision) -> None:
    compiled = compile_model(model, precision=precision)
    assert compiled.program.host["final_outputs"] == ["nz", "g"]
    assert [i.opcode for i in compiled.program.instructions].count("mvm") == 1
    result = verify_compiled(model, compiled, samples=2)
    assert result.passed and set(result.outputs) == {"nz", "g"}
    assert verify_compiled(model, compiled, executor="interpreter", samples=2).passed
    report = build_report(compiled)
    assert report["host"]["op_type"] == "NonZero" and report["host"]["runs_on"] == "onnxruntime"


def test_rcc_run_runs_both_parts_from_the_program_alone(model, tmp_path, capsys) -> None:
    program = tmp_path / "split.rccp"
    assert main([model, "-o", str(program), "--precision", "float"]) == 0
    assert "host: 4 nodes from NonZero 'nonzero'" in capsys.readouterr().out
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", str(program), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 0
    outputs = np.load(tmp_path / "out.npz")
    expected = onnxruntime.InferenceSession(model).run(["nz", "g"], {"x": x})
    np.testing.assert_array_equal(outputs["nz"], expected[0])
    np.testing.assert_allclose(outputs["g"], expected[1], rtol=1e-5)


def test_a_tampered_host_part_is_a_program_error(model, tmp_path) -> None:
    compiled = compile_model(model, precision="float")
    save_program(compiled.program, tmp_path / "good.rccp")
    with zipfile.ZipFile(tmp_path / "good.rccp") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["program.json"])
    header["host"]["inputs"] = ["nowhere"]
    _write(tmp_path / "record.rccp", {**members, "program.json": json.dumps(header).encode()})
    with pytest.raises(ProgramError, match="host part reads or returns 'nowhere'"):
        load_program(tmp_path / "record.rccp")
    _write(tmp_path / "model.rccp", {**members, "host.onnx": b"not onnx"})
    with pytest.raises(ProgramError, match="host model cannot be loaded"):
        HostPart(load_program(tmp_path / "model.rccp"))
    _write(tmp_path / "missing.rccp", {name: data for name, data in members.items() if name != "host.onnx"})
    with pytest.raises(ProgramError, match="corrupted or truncated"):
        load_program(tmp_path / "missing.rccp")


def _write(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
