"""ONNX inputs with a default (an initializer of the same name): rcc compiles the default in, verifies against
onnxruntime running on its default too, and refuses a fed value in one line instead of silently ignoring it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rcc.backends.program import load_program
from rcc.compiler.frontend import import_onnx
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir.errors import RccError
from rcc.ir.interpreter import run
from tests.conftest import LIGHT
from tests.hostile.builders import rewrite_program, save_model, tensor
from tests.hostile.harness import check_refusal, files_under, run_in_process

OFFSET = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
WEIGHT = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def shadowed_model(path):
    """y = relu((x + s) · W): `s` is a data input with a default, `W` a weight listed as an input (IR 3 style)."""
    nodes = [helper.make_node("Add", ["x", "s"], ["t"]), helper.make_node("MatMul", ["t", "W"], ["u"]),
             helper.make_node("Relu", ["u"], ["y"])]
    return save_model(path, nodes, [tensor("x", [1, 4]), tensor("s", [1, 4]), tensor("W", [4, 3])],
                      [tensor("y", [1, 3])], [numpy_helper.from_array(OFFSET, "s"),
                                              numpy_helper.from_array(WEIGHT, "W")])


def test_defaults_are_compiled_in_and_verify_against_onnxruntime_on_its_default(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    module = import_onnx(model)
    assert [v.name for v in module.inputs] == ["x"] and module.baked_inputs == ["s", "W"]
    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    expected = onnxruntime_outputs(model, {"x": x})["y"]
    np.testing.assert_allclose(run(module, {"x": x})["y"], np.maximum((x + OFFSET) @ WEIGHT, 0), rtol=1e-6)
    np.testing.assert_allclose(run(module, {"x": x})["y"], expected, rtol=1e-6)
    outcome = run_in_process([model, "--verify", "-o", tmp_path / "m.rccp", "--quiet"])
    assert outcome.code == 0, outcome.err
    assert load_program(tmp_path / "m.rccp").baked_inputs == ["s", "W"]


def test_rcc_run_uses_the_default_and_refuses_a_fed_one_in_one_line(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    assert run_in_process([model, "-o", tmp_path / "m.rccp", "--quiet"]).code == 0
    x = np.ones((1, 4), dtype=np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    assert run_in_process(["run", tmp_path / "m.rccp", "--inputs", tmp_path / "x.npz", "-o", tmp_path / "y.npz",
                           "--quiet"]).code == 0
    expected = onnxruntime_outputs(model, {"x": x})["y"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["y"], expected, rtol=0.05, atol=0.05)
    np.savez(tmp_path / "xs.npz", x=x, s=np.zeros((1, 4), dtype=np.float32))
    before = files_under(tmp_path)
    outcome = run_in_process(["run", tmp_path / "m.rccp", "--inputs", tmp_path / "xs.npz", "-o", tmp_path / "z.npz"])
    check_refusal(outcome, 2, "input 's' has a default value")
    assert files_under(tmp_path) == before
    outcome = run_in_process([model, "--verify", "--inputs", tmp_path / "xs.npz", "-o", tmp_path / "v.rccp"])
    check_refusal(outcome, 2, "recompile")


def test_the_interpreter_refuses_a_fed_default(tmp_path) -> None:
    module = import_onnx(shadowed_model(tmp_path / "m.onnx"))
    x = np.ones((1, 4), dtype=np.float32)
    try:
        run(module, {"x": x, "W": WEIGHT})
    except RccError as err:
        assert "'W'" in str(err)
    else:
        raise AssertionError("a fed default was ignored")


def test_version_2_programs_without_baked_inputs_still_load(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    assert run_in_process([model, "-o", tmp_path / "m.rccp", "--quiet"]).code == 0

    def drop_field(header):
        del header["baked_inputs"]
        return header

    older = rewrite_program(tmp_path / "m.rccp", tmp_path / "old.rccp", edit_header=drop_field)
    assert load_program(older).baked_inputs == []


def test_a_malformed_baked_inputs_field_is_refused(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    assert run_in_process([model, "-o", tmp_path / "m.rccp", "--quiet"]).code == 0

    def corrupt(header):
        header["baked_inputs"] = [3]
        return header

    bad = rewrite_program(tmp_path / "m.rccp", tmp_path / "bad.rccp", edit_header=corrupt)
    np.savez(tmp_path / "x.npz", x=np.ones((1, 4), dtype=np.float32))
    outcome = run_in_process(["run", bad, "--inputs", tmp_path / "x.npz", "-o", tmp_path / "y.npz"])
    check_refusal(outcome, 2, "baked_inputs")


def test_a_light_model_lists_every_weight_as_an_input_and_keeps_them_constants() -> None:
    path = next(p for p in LIGHT if p.stem == "light_squeezenet")
    graph = onnx.load(str(path)).graph
    module = import_onnx(path)
    assert sorted(module.baked_inputs) == sorted(i.name for i in graph.initializer if i.name in
                                                 {g.name for g in graph.input})
    assert len(module.baked_inputs) > 10 and [v.name for v in module.inputs] == ["data_0"]
    assert not any(v.name in module.baked_inputs for v in module.inputs)
