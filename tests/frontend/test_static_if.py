"""An If whose condition is known at compile time (a shape check, as Silero VAD's export has) takes its branch
on the chip; an If on a run-time value, also one inside a taken branch, sends the model from there to the host."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.program import load_program
from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model
from tests.hostile.builders import save_model, tensor


def shape_check(prefix: str, x: str, axis: int, size: int) -> tuple[list, str]:
    """Nodes computing Equal(Shape(x)[axis], size), and the condition's name."""
    constants = [helper.make_node("Constant", [], [f"{prefix}.axis"], value=numpy_helper.from_array(np.array(axis))),
                 helper.make_node("Constant", [], [f"{prefix}.size"], value=numpy_helper.from_array(np.array(size)))]
    return constants + [helper.make_node("Shape", [x], [f"{prefix}.shape"]),
                        helper.make_node("Gather", [f"{prefix}.shape", f"{prefix}.axis"], [f"{prefix}.dim"]),
                        helper.make_node("Equal", [f"{prefix}.dim", f"{prefix}.size"], [f"{prefix}.cond"])], \
        f"{prefix}.cond"


def branch(name: str, nodes: list, output: str, initializers: list | None = None):
    return helper.make_graph(nodes, name, [], [tensor(output, [1, 3])], initializer=initializers or [])


def if_model(tmp_path: Path, inner_condition: str | None = None) -> Path:
    """x [1, 4] → If(x has 4 columns): then MatMul by a branch weight (+ a nested If when `inner_condition`
    names its condition: a shape check, or the input `flag`), else Neg of another product."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "then.w")
    nested = []
    if inner_condition is not None:
        check, condition = shape_check("inner", "x", 0, 1) if inner_condition == "shape" else ([], "flag")
        nested = check + [helper.make_node(
            "If", [condition], ["then.y"], name="inner_if",
            then_branch=branch("inner_then", [helper.make_node("Relu", ["then.p"], ["inner.r"])], "inner.r"),
            else_branch=branch("inner_else", [helper.make_node("Neg", ["then.p"], ["inner.n"])], "inner.n"))]
    then_nodes = [helper.make_node("MatMul", ["x", "then.w"], ["then.p" if nested else "then.y"])] + nested
    else_nodes = [helper.make_node("MatMul", ["x", "w"], ["else.p"]), helper.make_node("Neg", ["else.p"], ["else.y"])]
    check, condition = shape_check("outer", "x", 1, 4)
    nodes = check + [helper.make_node("If", [condition], ["y"], name="shape_if",
                                      then_branch=branch("then", then_nodes, "then.y", [weight]),
                                      else_branch=branch("else", else_nodes, "else.y")),
                     helper.make_node("Sigmoid", ["y"], ["out"])]
    inputs = [tensor("x", [1, 4])] + ([tensor("flag", [], TensorProto.BOOL)] if inner_condition == "flag" else [])
    return save_model(tmp_path / "if.onnx", nodes, inputs, [tensor("out", [1, 3])],
                      [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")])


@pytest.mark.parametrize("inner", [None, "shape"])
def test_an_if_on_shapes_takes_its_branch_on_the_chip(tmp_path: Path, inner: str | None) -> None:
    path = if_model(tmp_path, inner)
    for precision in ("float", "int"):
        output = tmp_path / f"if.{precision}.rccp"
        assert main([str(path), "--precision", precision, "--verify", "-q", "-o", str(output)]) == 0
        program = load_program(output)
        assert program.host is None
        [mvm] = [i for i in program.instructions if i.opcode == "mvm"]
        assert mvm.dst[0].startswith("then.")   # the taken branch's weight is on the crossbars


def test_an_if_on_a_run_time_value_inside_a_taken_branch_goes_to_the_host_from_the_outer_if(tmp_path: Path) -> None:
    path = if_model(tmp_path, "flag")
    compiled = compile_model(path, precision="int")
    assert compiled.program.host["node"] == "shape_if"   # the main graph's If holding the data-dependent one
    samples = tmp_path / "samples.npz"
    rng = np.random.default_rng(1)
    np.savez(samples, x=rng.standard_normal((2, 1, 4)).astype(np.float32), flag=np.array([True, False]))
    assert main([str(path), "--verify", "--inputs", str(samples), "-q", "-o", str(tmp_path / "if.rccp")]) == 0


def test_a_nonfinite_branch_weight_is_refused_naming_it(tmp_path: Path, capsys) -> None:
    path = if_model(tmp_path)
    import onnx
    model = onnx.load(path)
    then_graph = next(a.g for a in model.graph.node[-2].attribute if a.name == "then_branch")
    then_graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((4, 3), np.inf, np.float32), "then.w"))
    onnx.save(model, path)
    assert main([str(path), "-q", "-o", str(tmp_path / "bad.rccp")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "initializer 'then.w'" in error and "then_branch" in error
    assert not (tmp_path / "bad.rccp").exists()


def test_a_taken_branch_rcc_cannot_compile_sends_its_if_to_the_host(tmp_path: Path) -> None:
    """A NonZero (data-dependent) in the branch of an If on shapes: the If runs on the host whole, as before
    rcc took such branches; lowered alone, the message names the node inside the branch and the If."""
    check, condition = shape_check("outer", "x", 1, 4)
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w")
    nonzero = [helper.make_graph([helper.make_node("NonZero", ["p"], [f"{side}.nz"])], side, [],
                                 [tensor(f"{side}.nz", [2, None], TensorProto.INT64)]) for side in ("then", "else")]
    nodes = check + [helper.make_node("MatMul", ["x", "w"], ["p"], name="matmul"),
                     helper.make_node("If", [condition], ["nz"], name="shape_if", then_branch=nonzero[0],
                                      else_branch=nonzero[1])]
    path = save_model(tmp_path / "nz.onnx", nodes, [tensor("x", [1, 4])], [tensor("nz", [2, None], TensorProto.INT64)],
                      [weight])
    compiled = compile_model(path, precision="float")
    assert compiled.program.host["node"] == "shape_if"
    assert main([str(path), "--precision", "float", "--verify", "-q", "-o", str(tmp_path / "nz.rccp")]) == 0
    import onnx
    from rcc.compiler.frontend import lower_model
    from rcc.ir.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match=r"node '#0 \(output then.nz\)' \(NonZero\) in node 'shape_if' \(If\)'s "
                                               r"then_branch: unsupported op NonZero \(so the If runs on the host\)"):
        lower_model(onnx.load(path), "nz.onnx")
