"""Loading and lowering an ONNX model: each malformed model or option exits 2 with one line naming the file
and the tensor, node or option, leaves no file behind, and never surfaces as a traceback; a broken invariant of
rcc (IR the frontend or a pass built failing the verifier) is exit 3 with its traceback, never bad input.

Initializer data must be exactly the size its dims need (onnx.checker refuses too little, not too much);
external-data offsets and lengths are non-negative integers; Gemm's alpha and beta are finite unless
--allow-nonfinite; `--input-shape` sets only the dimensions the model leaves symbolic; a graph input may be
a graph output; a model without outputs, or with nothing before its first data-dependent node, has nothing to
put on crossbars and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from rcc.backends.program import load_program
from rcc.compiler import frontend
from rcc.compiler.pass_manager import PassError, run_pipeline
from rcc.compiler.passes import PASSES, Pass, register_pass
from rcc.ir import parse_module
from rcc.ir.core import Value
from rcc.ir.errors import RccError, VerifyError
from rcc.ir.types import TensorType
from tests.hostile import builders
from tests.hostile.harness import check_refusal, files_under, run_in_process

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def refused(argv: list, folder: Path, fragment: str) -> str:
    """Run rcc in-process; check the one-line exit-2 refusal naming `fragment` and that nothing was written."""
    before = files_under(folder)
    outcome = run_in_process(argv)
    check_refusal(outcome, 2, fragment)
    assert files_under(folder) == before, f"left behind: {sorted(files_under(folder) - before)}"
    return outcome.err


def internal_error(argv: list, folder: Path, fragment: str) -> None:
    """Run rcc in-process; check exit 3 with the traceback (naming `fragment`) and that nothing was written."""
    before = files_under(folder)
    outcome = run_in_process(argv)
    assert outcome.code == 3, f"exit {outcome.code}, expected 3; stderr: {outcome.err[-600:]}"
    assert "Traceback" in outcome.err and fragment in outcome.err and "internal error" in outcome.err
    assert files_under(folder) == before, f"left behind: {sorted(files_under(folder) - before)}"


def matmul_model(path: Path, weight, x_shape: tuple = (1, 4)) -> Path:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")]
    return builders.save_model(path, nodes, [builders.tensor("x", list(x_shape))],
                               [builders.tensor("y", [x_shape[0], 3])], [weight])


def external_weight(location: str, offset: str, length: str | None, shape: tuple = (4, 3)):
    weight = numpy_helper.from_array(np.ones(shape, np.float32), "W")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is None:
            continue
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return weight


def commands(model: Path, folder: Path) -> dict[str, list]:
    """The commands that load an ONNX model's weights."""
    return {"compile": [model, "-o", folder / "m.rccp"],
            "prune": ["prune", model, "--sparsity", "0.5", "-o", folder / "p.onnx"]}


# ---- initializer data of the wrong size -----------------------------------------------------------------

def _raw_data_too_long():
    weight = numpy_helper.from_array(W, "W")
    weight.raw_data += bytes(8)
    return weight, "initializer 'W' holds 56 bytes of data, its float32[4, 3] dims need 48"


def _float_data_too_long():
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], W.ravel().tolist())
    weight.float_data.extend([1.0, 2.0])
    return weight, "initializer 'W' holds 14 values in float_data, its float32[4, 3] dims need 12"


@pytest.mark.parametrize("command", ["compile", "prune"])
@pytest.mark.parametrize("make", [_raw_data_too_long, _float_data_too_long], ids=lambda make: make.__name__[1:])
def test_initializer_data_longer_than_its_dims_is_refused(command, make, tmp_path) -> None:
    weight, message = make()
    model = matmul_model(tmp_path / "m.onnx", weight)
    refused(commands(model, tmp_path)[command], tmp_path, f"m.onnx: {message}")


@pytest.mark.parametrize("command", ["compile", "prune"])
def test_external_data_longer_than_its_dims_is_refused_before_reading(command, tmp_path) -> None:
    (tmp_path / "w.bin").write_bytes(np.ones(12, np.float32).tobytes())
    model = matmul_model(tmp_path / "m.onnx", external_weight("w.bin", "0", "48", shape=(2, 3)), x_shape=(1, 2))
    refused(commands(model, tmp_path)[command], tmp_path,
            "m.onnx: external data of tensor 'W' (w.bin): length is 48 bytes, its float32[2, 3] dims need 24")


@pytest.mark.parametrize("command", ["compile", "prune"])
@pytest.mark.parametrize("offset, length", [("-8", "48"), ("abc", "48"), ("0", "-48"), ("0", "4.5e1")])
def test_external_data_offset_and_length_must_be_non_negative_integers(command, offset, length, tmp_path) -> None:
    (tmp_path / "w.bin").write_bytes(np.ones(12, np.float32).tobytes())
    model = matmul_model(tmp_path / "m.onnx", external_weight("w.bin", offset, length))
    refused(commands(model, tmp_path)[command], tmp_path,
            f"m.onnx: cannot load external data of tensor 'W': offset and length must be non-negative integers, "
            f"got offset {offset!r}, length {length!r}")


@pytest.mark.parametrize("command", ["compile", "prune"])
def test_external_data_without_a_length_is_measured_before_reading(command, tmp_path, monkeypatch) -> None:
    """No length: onnx reads to the end of the file, however large; the file's size is checked first."""
    (tmp_path / "w.bin").write_bytes(bytes(8) + np.ones(1000, np.float32).tobytes())
    model = matmul_model(tmp_path / "m.onnx", external_weight("w.bin", "8", None))
    read = []
    monkeypatch.setattr(external_data_helper, "load_external_data_for_model", lambda *a: read.append(a))
    refused(commands(model, tmp_path)[command], tmp_path,
            "m.onnx: external data of tensor 'W' (w.bin): holds 4000 bytes from offset 8 to its end (no length "
            "given), its float32[4, 3] dims need 48")
    assert not read


@pytest.mark.parametrize("length", ["48", None])
def test_external_data_of_the_right_length_loads(length, tmp_path) -> None:
    (tmp_path / "w.bin").write_bytes(bytes(8) + W.tobytes())
    model = matmul_model(tmp_path / "m.onnx", external_weight("w.bin", "8", length))
    outcome = run_in_process([model, "-o", tmp_path / "m.rccp", "--verify", "-q"])
    assert outcome.code == 0, outcome.err


# ---- Gemm's alpha and beta ---------------------------------------------------------------------------------

def gemm_model(path: Path, with_bias: bool, **scales) -> Path:
    inputs = ["x", "W", "C"] if with_bias else ["x", "W"]
    initializers = [numpy_helper.from_array(W, "W")]
    initializers += [numpy_helper.from_array(np.ones(3, np.float32), "C")] if with_bias else []
    nodes = [helper.make_node("Gemm", inputs, ["y"], name="gm", **scales)]
    return builders.save_model(path, nodes, [builders.tensor("x", [1, 4])], [builders.tensor("y", [1, 3])],
                               initializers)


@pytest.mark.parametrize("attribute, value", [("alpha", float("nan")), ("alpha", float("inf")),
                                              ("beta", float("-inf")), ("beta", float("nan"))])
def test_a_non_finite_gemm_scale_is_refused_like_a_non_finite_weight(attribute, value, tmp_path) -> None:
    model = gemm_model(tmp_path / "m.onnx", with_bias=True, **{attribute: value})
    refused([model, "-o", tmp_path / "m.rccp", "--verify"], tmp_path,
            f"m.onnx: node 'gm' (Gemm): attribute {attribute} is {value}; pass --allow-nonfinite")


def test_a_non_finite_gemm_scale_compiles_with_allow_nonfinite(tmp_path) -> None:
    model = gemm_model(tmp_path / "m.onnx", with_bias=True, alpha=float("inf"))
    outcome = run_in_process([model, "-o", tmp_path / "m.rccp", "--allow-nonfinite", "-q"])
    assert outcome.code == 0, outcome.err


def test_beta_without_c_scales_nothing_and_is_not_refused(tmp_path) -> None:
    model = gemm_model(tmp_path / "m.onnx", with_bias=False, beta=float("nan"))
    outcome = run_in_process([model, "-o", tmp_path / "m.rccp", "--verify"])
    assert outcome.code == 0 and "PASSED" in outcome.out, outcome.err


# ---- --input-shape against the declared shape ------------------------------------------------------------

def symbolic_model(path: Path) -> Path:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="act")]
    return builders.save_model(path, nodes, [builders.tensor("x", ["N", 4])], [builders.tensor("y", ["N", 4])])


@pytest.mark.parametrize("spec", ["x=2x3x4", "x=2x5", "x="])
def test_input_shape_keeps_the_declared_rank_and_static_dimensions(spec, tmp_path) -> None:
    model = symbolic_model(tmp_path / "dyn.onnx")
    refused([model, "--input-shape", spec, "-o", tmp_path / "m.rccp"], tmp_path,
            f"--input-shape {spec}: {model} declares input 'x' as [N, 4]; only its symbolic dimensions can be set")


def test_input_shape_sets_the_symbolic_dimensions(tmp_path) -> None:
    outcome = run_in_process([symbolic_model(tmp_path / "dyn.onnx"), "--input-shape", "x=3x4", "--verify",
                              "-o", tmp_path / "m.rccp", "-q"])
    assert outcome.code == 0, outcome.err
    assert load_program(tmp_path / "m.rccp").inputs[0]["shape"] == [3, 4]


# ---- valid models the frontend used to break ---------------------------------------------------------------

def test_a_graph_input_that_is_also_a_graph_output_compiles_under_its_own_name(tmp_path) -> None:
    model = builders.save_model(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"], name="act")],
                                [builders.tensor("x", [1, 4])], [builders.tensor("y", [1, 4]),
                                                                 builders.tensor("x", [1, 4])])
    outcome = run_in_process([model, "-o", tmp_path / "m.rccp", "--verify"])
    assert outcome.code == 0 and "PASSED" in outcome.out, outcome.err
    assert load_program(tmp_path / "m.rccp").outputs == ["y", "x"]
    x = np.array([[1, -2, 3, 0]], np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    outcome = run_in_process(["run", tmp_path / "m.rccp", "--inputs", tmp_path / "in.npz", "-o", tmp_path / "o.npz"])
    assert outcome.code == 0, outcome.err
    results = np.load(tmp_path / "o.npz")
    np.testing.assert_array_equal(results["x"], x)
    np.testing.assert_array_equal(results["y"], np.maximum(x, 0))


def _nonzero_first(path: Path) -> Path:
    return builders.save_model(path, [helper.make_node("NonZero", ["x"], ["y"], name="nz")],
                               [builders.tensor("x", [1, 4])], [builders.tensor("y", [2, "n"], TensorProto.INT64)])


def _if_first(path: Path) -> Path:
    then_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="then_relu")], "then", [],
                                   [builders.tensor("t", [1, 4])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="else_neg")], "else", [],
                                   [builders.tensor("e", [1, 4])])
    node = helper.make_node("If", ["c"], ["y"], name="ifnode", then_branch=then_graph, else_branch=else_graph)
    inputs = [builders.tensor("x", [1, 4]), builders.tensor("c", [], TensorProto.BOOL)]
    return builders.save_model(path, [node], inputs, [builders.tensor("y", [1, 4])])


def _dead_node_then_nonzero(path: Path) -> Path:
    nodes = [helper.make_node("Relu", ["x"], ["unused"], name="act"),
             helper.make_node("NonZero", ["x"], ["y"], name="nz")]
    return builders.save_model(path, nodes, [builders.tensor("x", [1, 4])],
                               [builders.tensor("y", [2, "n"], TensorProto.INT64)])


@pytest.mark.parametrize("make, node", [(_nonzero_first, "node 'nz' (NonZero)"), (_if_first, "node 'ifnode' (If)"),
                                        (_dead_node_then_nonzero, "node 'nz' (NonZero)")],
                         ids=["nonzero_first", "if_first", "dead_node_then_nonzero"])
def test_a_model_with_nothing_before_its_first_data_dependent_node_is_refused(make, node, tmp_path) -> None:
    message = refused([make(tmp_path / "m.onnx"), "-o", tmp_path / "m.rccp"], tmp_path,
                      f"m.onnx: {node}: its output shape depends on tensor values")
    assert "nothing would run on the crossbars" in message


def test_a_graph_without_outputs_is_refused_as_bad_input(tmp_path) -> None:
    model = builders.save_model(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"], name="act")],
                                [builders.tensor("x", [1, 4])], [])
    refused([model, "-o", tmp_path / "m.rccp"], tmp_path, "m.onnx: the graph has no outputs")


# ---- who broke the IR: rcc (exit 3) or the user (exit 2) ----------------------------------------------------

def test_invalid_ir_from_the_frontend_is_an_internal_error(tmp_path, monkeypatch) -> None:
    bind_outputs = frontend._bind_outputs

    def binding_an_undefined_output(ctx, model) -> None:
        bind_outputs(ctx, model)
        ctx.module.outputs.append(Value("ghost", TensorType((1,), "f32")))

    monkeypatch.setattr(frontend, "_bind_outputs", binding_an_undefined_output)
    model = builders.mlp_model(tmp_path / "m.onnx")
    internal_error([model, "-o", tmp_path / "m.rccp"], tmp_path, "m.onnx: the frontend produced invalid IR")


VALID_IR = """module @m {
  input %x : f32[2]
  %y = nn.relu(%x) : f32[2]
  %z = nn.tanh(%y) : f32[2]
  output %z
}
"""


@pytest.fixture
def breaking_pass():
    """A pass that leaves uses before definitions, registered for one test."""
    @dataclass
    class _Break(Pass):
        name = "test-break-order"

        def run(self, module, ctx) -> bool:
            module.ops.reverse()
            return True

    table = dict(PASSES)
    register_pass(_Break)
    yield _Break.name
    PASSES.clear()
    PASSES.update(table)


def test_a_pass_leaving_invalid_ir_is_an_internal_error(breaking_pass, tmp_path) -> None:
    (tmp_path / "m.ir").write_text(VALID_IR)
    internal_error(["opt", tmp_path / "m.ir", "-p", breaking_pass, "-o", tmp_path / "out.ir"], tmp_path,
                   f"pass '{breaking_pass}' left invalid IR")
    with pytest.raises(PassError) as raised:
        run_pipeline(parse_module(VALID_IR), breaking_pass)
    assert not isinstance(raised.value, RccError)


def test_invalid_ir_the_user_wrote_stays_bad_input(tmp_path) -> None:
    (tmp_path / "m.ir").write_text(VALID_IR.replace("%z = nn.tanh(%y) : f32[2]", "%z = nn.tanh(%y) : f32[3]"))
    refused(["opt", tmp_path / "m.ir", "-p", "dce", "-o", tmp_path / "out.ir"], tmp_path, "%z = nn.tanh")


def test_a_module_invalid_before_the_first_pass_is_the_callers_verify_error() -> None:
    module = parse_module(VALID_IR)
    module.ops.reverse()
    with pytest.raises(VerifyError, match="reads %y before it is defined") as raised:
        run_pipeline(module, "dce")
    assert not isinstance(raised.value, PassError)
