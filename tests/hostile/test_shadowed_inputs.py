"""ONNX inputs with a default (an initializer of the same name), as onnxruntime has them: used only as run-time
data (an add's operand) such an input stays an input and a fed value overrides its default, on the interpreter,
the machine, `rcc run` and `--verify` (which feeds onnxruntime the same values); used as a weight programmed
into crossbar cells, its default is compiled in and a fed value is refused in one line that says why."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rcc.backends.program import load_program
from rcc.compiler.driver import compile_model
from rcc.compiler.frontend import import_onnx
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir.errors import RccError
from rcc.ir.interpreter import run
from rcc.runtime.machine import Machine
from tests.conftest import LIGHT
from tests.hostile.builders import rewrite_program, save_model, tensor
from tests.hostile.harness import check_refusal, files_under, run_in_process

OFFSET = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
WEIGHT = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
FED_OFFSET = np.array([[-2.0, 3.0, 0.5, 1.5]], dtype=np.float32)


def shadowed_model(path):
    """y = relu((x + s) · W): `s` is a data input with a default, `W` a weight listed as an input (IR 3 style)."""
    nodes = [helper.make_node("Add", ["x", "s"], ["t"]), helper.make_node("MatMul", ["t", "W"], ["u"]),
             helper.make_node("Relu", ["u"], ["y"])]
    return save_model(path, nodes, [tensor("x", [1, 4]), tensor("s", [1, 4]), tensor("W", [4, 3])],
                      [tensor("y", [1, 3])], [numpy_helper.from_array(OFFSET, "s"),
                                              numpy_helper.from_array(WEIGHT, "W")])


def test_a_data_default_stays_an_input_and_a_weight_default_is_compiled_in(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    module = import_onnx(model)
    assert [v.name for v in module.inputs] == ["x", "s"] and module.baked_inputs == ["W"]
    np.testing.assert_array_equal(module.input_defaults["s"], OFFSET)
    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    for feeds in ({"x": x}, {"x": x, "s": FED_OFFSET}):
        offset = feeds.get("s", OFFSET)
        expected = onnxruntime_outputs(model, feeds)["y"]
        np.testing.assert_allclose(expected, np.maximum((x + offset) @ WEIGHT, 0), rtol=1e-5)
        np.testing.assert_allclose(run(module, feeds)["y"], expected, rtol=1e-6)


def test_the_machine_takes_a_fed_value_and_falls_back_to_the_default(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    compiled = compile_model(model)
    assert compiled.program.baked_inputs == ["W"] and list(compiled.program.input_defaults) == ["s"]
    machine = Machine(compiled.program)
    x = np.random.default_rng(1).standard_normal((1, 4)).astype(np.float32)
    unfed, fed = machine.run({"x": x}).outputs["y"], machine.run({"x": x, "s": FED_OFFSET}).outputs["y"]
    np.testing.assert_allclose(unfed, onnxruntime_outputs(model, {"x": x})["y"], rtol=0.05, atol=0.05)
    np.testing.assert_allclose(fed, onnxruntime_outputs(model, {"x": x, "s": FED_OFFSET})["y"], rtol=0.05, atol=0.1)
    assert not np.allclose(unfed, fed, atol=0.5)   # the fed value is used, not the default


def test_verify_feeds_onnxruntime_the_same_values_fed_or_not(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    x = np.random.default_rng(2).standard_normal((1, 4)).astype(np.float32)
    np.savez(tmp_path / "xs.npz", x=x, s=FED_OFFSET)
    outcome = run_in_process([model, "--verify", "-o", tmp_path / "m.rccp", "--quiet"])
    assert outcome.code == 0, outcome.err
    program = load_program(tmp_path / "m.rccp")
    assert program.baked_inputs == ["W"]
    np.testing.assert_array_equal(program.input_defaults["s"], OFFSET)
    outcome = run_in_process([model, "--verify", "--inputs", tmp_path / "xs.npz", "--precision", "float", "-o",
                              tmp_path / "f.rccp", "--quiet"])
    assert outcome.code == 0, outcome.err


def test_rcc_run_uses_the_default_or_the_fed_value_and_refuses_a_fed_weight_in_one_line(tmp_path) -> None:
    model = shadowed_model(tmp_path / "m.onnx")
    assert run_in_process([model, "-o", tmp_path / "m.rccp", "--quiet", "--precision", "float"]).code == 0
    x = np.ones((1, 4), dtype=np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "xs.npz", x=x, s=FED_OFFSET)
    for feeds, name in (({"x": x}, "x.npz"), ({"x": x, "s": FED_OFFSET}, "xs.npz")):
        outcome = run_in_process(["run", tmp_path / "m.rccp", "--inputs", tmp_path / name, "-o", tmp_path / "y.npz",
                                  "--quiet"])
        assert outcome.code == 0, outcome.err
        np.testing.assert_allclose(np.load(tmp_path / "y.npz")["y"], onnxruntime_outputs(model, feeds)["y"],
                                   rtol=1e-5, atol=1e-6)
    np.savez(tmp_path / "xw.npz", x=x, W=np.zeros((4, 3), dtype=np.float32))
    before = files_under(tmp_path)
    outcome = run_in_process(["run", tmp_path / "m.rccp", "--inputs", tmp_path / "xw.npz", "-o", tmp_path / "z.npz"])
    check_refusal(outcome, 2, "input 'W' has a default value")
    assert "crossbar cells" in outcome.err
    assert files_under(tmp_path) == before
    outcome = run_in_process([model, "--verify", "--inputs", tmp_path / "xw.npz", "-o", tmp_path / "v.rccp"])
    check_refusal(outcome, 2, "recompile")


def test_the_interpreter_refuses_a_fed_weight_default(tmp_path) -> None:
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


def test_the_ir_text_keeps_defaults_and_baked_inputs(tmp_path) -> None:
    """`rcc compile --emit ir`, `rcc opt` and save/load: an input's default (inline when small, in the .npz when not) and the
    baked inputs survive the text form, and the reloaded module computes what onnxruntime does."""
    from rcc.compiler.cli import main
    from rcc.ir import load_module, modules_equal, parse_module, print_module, save_module

    model = shadowed_model(tmp_path / "m.onnx")
    module = import_onnx(model)
    text = print_module(module)
    assert "input %s : f32[1,4] default = [0.5, -1.0, 2.0, 0.25]" in text and "baked %W" in text
    assert modules_equal(parse_module(text, {c.name: c.data for c in module.constants}), module)
    external = load_module(save_module(module, tmp_path / "small.ir", inline_limit=2)[0])  # default in the .npz
    assert modules_equal(external, module) and "default\n" in (tmp_path / "small.ir").read_text()
    assert main(["compile", str(model), "--emit", "ir", "-o", str(tmp_path / "graph.ir"), "-q"]) == 0
    assert main(["opt", str(tmp_path / "graph.ir"), "-p", "dce", "-o", str(tmp_path / "opt.ir"), "-q"]) == 0
    reloaded = load_module(tmp_path / "opt.ir")
    assert reloaded.baked_inputs == ["W"] and set(reloaded.input_defaults) == {"s"}
    x = np.random.default_rng(1).standard_normal((1, 4)).astype(np.float32)
    for feeds in ({"x": x}, {"x": x, "s": FED_OFFSET}):
        np.testing.assert_allclose(run(reloaded, feeds)["y"], onnxruntime_outputs(model, feeds)["y"], rtol=1e-5)
