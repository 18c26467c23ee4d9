"""A model with a data-dependent node (conv → NonZero, and → Reshape/TopK/Gather after it) compiles: the conv
runs on the machine, the rest on the host (onnxruntime); `--verify` checks the whole model against
onnxruntime on the original; the program carries the host model, so `rcc run PROGRAM` works alone; a
tampered host record or model is a one-line error."""

from __future__ import annotations

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
from rcc.compiler.verify import INTERPRETER_TOLERANCE, _ragged_metrics
from tests.hostile.builders import rewrite_program, save_model, tensor


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
    outputs = [tensor("nz", [4, None], TensorProto.INT64), tensor("g", [1, 1, 3])]
    return str(save_model(path / "split.onnx", nodes, [tensor("x", [1, 3, 4, 4])], outputs, inits))


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

    def unknown_input(header: dict) -> dict:
        header["host"]["inputs"] = ["nowhere"]
        return header

    rewrite_program(tmp_path / "good.rccp", tmp_path / "record.rccp", edit_header=unknown_input)
    with pytest.raises(ProgramError, match="host part reads or returns 'nowhere'"):
        load_program(tmp_path / "record.rccp")
    rewrite_program(tmp_path / "good.rccp", tmp_path / "model.rccp", edit_members=lambda m: m.update(
        {"host.onnx": b"not onnx"}))
    with pytest.raises(ProgramError, match="host model cannot be loaded"):
        HostPart(load_program(tmp_path / "model.rccp"))
    rewrite_program(tmp_path / "good.rccp", tmp_path / "missing.rccp", edit_members=lambda m: m.pop("host.onnx"))
    with pytest.raises(ProgramError, match="corrupted or truncated"):
        load_program(tmp_path / "missing.rccp")


def test_a_crossing_tensor_shaped_by_computed_shapes_still_splits(tmp_path) -> None:
    """SSDlite: the tensor before NonZero is reshaped by Shape → Gather → Concat, which onnx's shape inference
    leaves symbolic; rcc folds those shapes, so the split compiles and verifies the whole model."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0], np.int64), "first"),
             numpy_helper.from_array(np.array([-1], np.int64), "rest")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Shape", ["y"], ["y_shape"]),
             helper.make_node("Gather", ["y_shape", "first"], ["batch"], axis=0),
             helper.make_node("Concat", ["batch", "rest"], ["flat_shape"], axis=0),
             helper.make_node("Reshape", ["y", "flat_shape"], ["flat"], name="flatten"),
             helper.make_node("NonZero", ["flat"], ["nz"], name="nonzero")]
    path = str(save_model(tmp_path / "computed.onnx", nodes, [tensor("x", [1, 3, 4, 4])],
                          [tensor("nz", [2, None], TensorProto.INT64)], inits))
    split = split_for_host(onnx.load(path))
    assert split.info["inputs"] == ["flat"]
    compiled = compile_model(path, precision="float")
    assert [value.type.shape for value in compiled.graph.outputs] == [(1, 64)]
    assert verify_compiled(path, compiled, samples=2).passed


def test_an_output_whose_shape_changes_per_sample_verifies(tmp_path) -> None:
    """NonZero after a Relu keeps a different count of entries in each sample: compared sample by sample
    (np.stack of the samples crashed --verify with exit 3)."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("NonZero", ["r"], ["idx"], name="nz")]
    path = str(save_model(tmp_path / "ragged.onnx", nodes, [tensor("x", [2, 8])],
                          [tensor("idx", [2, None], TensorProto.INT64), tensor("r", [2, 8])], [weight]))
    compiled = compile_model(path)
    result = verify_compiled(path, compiled, samples=4)
    assert result.passed and result.outputs["idx"]["rel_l2"] == 0
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    counts = {session.run(["idx"], {"x": np.random.default_rng(seed).standard_normal((2, 8)).astype(np.float32)})[0]
              .shape[1] for seed in range(4)}
    assert len(counts) > 1   # the samples' shapes do differ
    shifted = _ragged_metrics([np.zeros((2, 3)), np.zeros((2, 4))], [np.zeros((2, 3)), np.zeros((2, 5))], INTERPRETER_TOLERANCE)
    assert not shifted["passed"] and shifted["note"].startswith("sample 1: shape [2, 4] differs")


def test_stacked_samples_of_a_scalar_input_reach_the_host_as_arrays(tmp_path) -> None:
    """Samples given with a leading axis (`--inputs`, `--calibrate`) split into per-sample sets whose 0-d
    inputs stay arrays: the host's onnxruntime session refused a numpy scalar (a traceback, exit 3)."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")]
    then_branch = helper.make_graph([helper.make_node("Relu", ["y"], ["r"])], "then", [], [tensor("r", [1, 4, 4, 4])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["y"], ["n"])], "else", [], [tensor("n", [1, 4, 4, 4])])
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("If", ["flag"], ["out"], then_branch=then_branch, else_branch=else_branch, name="if")]
    path = save_model(tmp_path / "if.onnx", nodes, [tensor("x", [1, 3, 4, 4]), tensor("flag", [], TensorProto.BOOL)],
                      [tensor("out", [1, 4, 4, 4])], inits)
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=rng.normal(size=(2, 1, 3, 4, 4)).astype(np.float32), flag=np.array([True, False]))
    assert main([str(path), "--verify", "--inputs", str(samples), "--calibrate", str(samples), "-q",
                 "-o", str(tmp_path / "if.rccp")]) == 0


def test_localize_compares_the_tensors_handed_to_the_host(model, tmp_path, capsys) -> None:
    """The program's outputs of a split model are intermediate tensors of the ONNX model: --localize asks
    onnxruntime for them too (it raised a KeyError, exit 3)."""
    report = tmp_path / "report.json"
    assert main([model, "--verify", "--localize", "-q", "-o", str(tmp_path / "s.rccp"), "--report", str(report)]) == 0
    import json
    verify = json.loads(report.read_text())["verify"]
    tensors = {row["tensor"]: row for row in verify["localization"]["tensors"]}
    assert tensors["y"]["passed"] and tensors["y"]["op"] == "Conv"
