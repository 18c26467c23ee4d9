"""The pass manager and its context: pipelines as data, option parsing, pass reports, which failures
reach the user as one-line errors and which propagate as bugs, and running any prefix of the default
pipeline on IR text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from rcc.backends.target import Target
from rcc.compiler.driver import Compiled, compile_model
from rcc.compiler.pass_context import PassContext, PruneBudget
from rcc.compiler.pass_manager import DEFAULT_PIPELINE, PassError, default_pipeline, make_pass, parse_pipeline, run_pipeline
from rcc.compiler.passes import PASSES, Pass, register_pass
from rcc.compiler.passes.dce import DeadCodeElimination
from rcc.ir import interpreter, modules_equal, parse_module, print_module
from rcc.ir.core import Module, NameAllocator
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs

FIXTURES = Path(__file__).parent / "fixtures"
LENET = Path(__file__).parents[2] / "models" / "lenet5.onnx"

# A conv + batch norm, a transposed conv, a dead op and a matmul: something for every pass of the default
# pipeline to do.
GRAPH = """
module @every_pass {
  input %x : f32[1,2,4,4]
  const %w : f32[3,2,3,3] = [0.5, -1.0, 0.25, 1.0, 0.0, -0.5, 0.75, 0.5, -0.25, 1.5, -0.75, 0.5, 0.0, 0.25, -1.0, 0.5, 1.0, -0.5, 0.25, 0.75, -1.0, 0.5, 0.0, 1.0, -0.25, 0.5, 0.75, -1.5, 0.25, 0.0, 1.0, -0.5, 0.5, 0.25, -0.75, 1.0, 0.5, -0.25, 0.0, 0.75, -1.0, 0.5, 0.25, 1.0, -0.5, 0.0, 0.5, -1.0, 0.75, 0.25, -0.5, 1.0, 0.0, 0.5]
  const %g : f32[3] = [1.0, 2.0, 0.5]
  const %beta : f32[3] = [0.1, -0.2, 0.3]
  const %mean : f32[3] = [0.0, 0.5, -0.5]
  const %var : f32[3] = [1.0, 2.0, 0.5]
  const %d : f32[3,1,2,2] = [1.0, -1.0, 0.5, 0.25, -0.5, 1.0, 0.75, -0.25, 0.5, 0.5, -1.0, 1.0]
  const %m : f32[16,2] = [1.0, 0.0, 0.5, -0.5, 0.25, 1.0, -1.0, 0.75, 0.0, 0.5, 1.0, -0.25, 0.5, 0.5, -0.75, 1.0, 0.25, 0.0, 1.0, -1.0, 0.5, 0.25, -0.5, 0.0, 0.75, 1.0, -0.25, 0.5, 0.0, -1.0, 1.0, 0.25]
  %c = nn.conv2d(%x, %w) {strides = [1, 1], pads = [1, 1, 1, 1], dilations = [1, 1], group = 1} : f32[1,3,4,4]
  %n = nn.batch_norm(%c, %g, %beta, %mean, %var) {epsilon = 1e-05} : f32[1,3,4,4]
  %r = nn.relu(%n) : f32[1,3,4,4]
  %dead = nn.tanh(%r) : f32[1,3,4,4]
  %u = nn.conv_transpose2d(%r, %d) {strides = [2, 2], pads = [0, 0, 0, 0], dilations = [1, 1], group = 1, output_padding = [0, 0]} : f32[1,1,8,8]
  %f = nn.reshape(%u) {shape = [4, 16]} : f32[4,16]
  %y = nn.matmul(%f, %m) : f32[4,2]
  output %y
}
"""


def fixture_inputs() -> list[Module]:
    modules = []
    for path in sorted(FIXTURES.glob("*.ir")):
        chunks = [c for c in re.split(r"(?m)^(?=module @)", path.read_text()) if c.startswith("module")]
        modules += [parse_module(chunk) for chunk in chunks[::2]]
    return modules


@pytest.mark.parametrize("module", fixture_inputs(), ids=lambda m: m.name)
def test_lowering_and_packing_run_on_every_fixture_with_a_context_target(module: Module) -> None:
    ctx = PassContext(target=Target(xbar_rows=64, xbar_cols=64), precision="float")
    inputs = random_inputs(module, seed=5)
    before = interpreter.run(module, inputs)
    run_pipeline(module, "lower-to-xbar,pack-crossbars", ctx)
    assert [r.name for r in ctx.reports] == ["lower-to-xbar", "pack-crossbars"]
    lowered = {entry["value"] for entry in ctx.reports[0].removed}
    for op in module.ops:
        assert not (op.opname in ("nn.conv2d", "nn.matmul") and op.operands[1].is_constant
                    and op.operands[0].type.dtype == "f32")
        if op.opname == "xbar.mvm" and op.attrs["layer"] in lowered:
            assert (op.attrs["xbar_rows"], op.attrs["xbar_cols"]) == (64, 64)
    after = interpreter.run(module, inputs)
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", range(len(DEFAULT_PIPELINE) + 1))
def test_every_prefix_of_the_default_pipeline_runs_on_ir_text(length: int) -> None:
    module = parse_module(GRAPH)
    inputs = random_inputs(module, seed=2)
    expected = interpreter.run(module, inputs)
    ctx = PassContext(precision="float", prune=PruneBudget(fraction=0.5))
    run_pipeline(module, DEFAULT_PIPELINE[:length], ctx)
    assert [r.name for r in ctx.reports] == [spec.split("{")[0] for spec in DEFAULT_PIPELINE[:length]]
    text = print_module(module, inline_limit=10**6)
    reparsed = parse_module(text)
    assert print_module(reparsed, inline_limit=10**6) == text
    if "prune-crossbars" not in DEFAULT_PIPELINE[:length]:  # pruning is lossy
        np.testing.assert_allclose(interpreter.run(reparsed, inputs)["y"], expected["y"], rtol=1e-4, atol=1e-4)


def test_reports_say_what_each_pass_changed_and_removed() -> None:
    module = parse_module(GRAPH)
    ctx = PassContext(precision="float")
    run_pipeline(module, default_pipeline("zero-insertion"), ctx)
    changed = {r.name: r.changed for r in ctx.reports}
    assert changed["fold-batch-norm"] and changed["deconv-zero-insertion"] and changed["lower-to-xbar"]
    assert not changed["prune-crossbars"] and not changed["remove-identity"]
    first_dce = next(r for r in ctx.reports if r.name == "dce")
    assert {"op": "nn.tanh", "value": "dead"} in first_dce.removed
    assert ctx.report_of("fold-batch-norm").removed == [{"op": "nn.batch_norm", "value": "n", "into": "c"}]
    lowering = ctx.report_of("lower-to-xbar")
    assert lowering.figures["layers"] == 3 and lowering.figures["arrays"] == sum(r["arrays"] for r in lowering.removed)
    assert ctx.graph is not None and all(op.opname.startswith("nn.") for op in ctx.graph.ops)


def test_prune_budget_in_the_context_prunes_and_reports_the_error() -> None:
    module = parse_module(GRAPH)
    ctx = PassContext(target=Target(xbar_rows=4, xbar_cols=8), prune=PruneBudget(fraction=0.5))
    run_pipeline(module, "prune-crossbars", ctx)
    report = ctx.reports[0]
    assert report.changed and report.removed and report.figures["fraction"] == 0.5
    assert report.figures["rel_l2_error"] > 0 and report.figures["samples"] >= 2
    untouched = parse_module(GRAPH)
    run_pipeline(untouched, "prune-crossbars")  # no budget in a default context: nothing to do
    assert modules_equal(untouched, parse_module(GRAPH))


@pytest.mark.parametrize("spec, message", [
    ("prune-crossbars{removed=oops}", "pass 'prune-crossbars' has no option 'removed'"),
    ("dce{nope=1}", "pass 'dce' has no option 'nope'; options: none"),
    ("lower-to-xbar{target=big}", "pass 'lower-to-xbar' has no option 'target'"),
    ("pack-crossbars{mode=sideways}", "option 'mode': 'sideways' is not one of"),
    ("lower-to-xbar{precision=double}", "option 'precision': 'double' is not one of"),
    ("constant-fold{max_elements=lots}", "option 'max_elements': bad value 'lots' (int)"),
    ("pack-crossbars{min_sparsity}", "is not key=value"),
    ("no-such-pass", "unknown pass 'no-such-pass'"),
])
def test_bad_options_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(RccError) as caught:
        parse_pipeline(spec)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_options_are_converted_to_their_types() -> None:
    packer = make_pass("pack-crossbars", {"mode": "compact", "min_sparsity": "0.25", "seed": "3"})
    assert (packer.mode, packer.min_sparsity, packer.seed) == ("compact", 0.25, 3)
    passes = parse_pipeline(["constant-fold{max_elements=8},dce", DeadCodeElimination()])
    assert [p.name for p in passes] == ["constant-fold", "dce", "dce"] and passes[0].max_elements == 8


@dataclass
class _Divide(Pass):
    name = "test-divide"
    by: int = 0

    def run(self, module: Module, ctx: PassContext) -> bool:
        ctx.report.figures["ratio"] = len(module.ops) / self.by
        return False


@dataclass
class _Rename(Pass):
    name = "test-rename"
    suffix: str = "renamed"
    seen: list = field(default_factory=list)  # not an option: only int, float, bool and str fields are

    def run(self, module: Module, ctx: PassContext) -> bool:
        module.outputs[0].name = f"{module.outputs[0].name}.{self.suffix}"
        ctx.report.removed.append({"value": "old name"})
        return True


@pytest.fixture
def test_passes():
    """The test passes registered for one test; the pass table as it was afterwards."""
    table = dict(PASSES)
    register_pass(_Divide)
    register_pass(_Rename)
    yield
    PASSES.clear()
    PASSES.update(table)


def test_an_unexpected_exception_in_a_pass_propagates_as_a_bug(test_passes) -> None:
    module = parse_module(GRAPH)
    with pytest.raises(ZeroDivisionError):
        run_pipeline(module, "test-divide")
    ctx = PassContext()
    run_pipeline(module, "test-divide{by=2}", ctx)
    assert ctx.reports[0].figures["ratio"] == len(module.ops) / 2


def test_a_registered_pass_runs_from_a_spec_and_reports(test_passes) -> None:
    module = parse_module(GRAPH)
    ctx = PassContext()
    run_pipeline(module, ["dce", "test-rename{suffix=out}"], ctx)
    assert module.outputs[0].name == "y.out"
    assert [(r.name, r.changed) for r in ctx.reports] == [("dce", True), ("test-rename", True)]
    with pytest.raises(RccError, match="has no option 'seen'"):
        parse_pipeline("test-rename{seen=1}")
    with pytest.raises(RccError, match="taken"):
        register_pass(type("Clash", (_Rename,), {}))


def test_a_pass_leaving_invalid_ir_is_a_pass_error_naming_it(test_passes) -> None:
    @dataclass
    class _Break(Pass):
        name = "test-break"

        def run(self, module: Module, ctx: PassContext) -> bool:
            module.ops.reverse()  # uses before definitions
            return True

    register_pass(_Break)
    with pytest.raises(PassError, match="pass 'test-break' left invalid IR"):
        run_pipeline(parse_module(GRAPH), "test-break")


def test_context_rejects_unknown_settings() -> None:
    with pytest.raises(RccError, match="--precision"):
        PassContext(precision="double")
    with pytest.raises(RccError, match="--packing"):
        PassContext(packing="tight")
    with pytest.raises(RccError, match="--deconv"):
        PassContext(deconv="magic")


def test_compile_model_runs_the_default_pipeline_and_returns_the_compiled_model() -> None:
    compiled = compile_model(LENET, Target(xbar_rows=64, xbar_cols=64), precision="float")
    assert isinstance(compiled, Compiled)
    assert [r.name for r in compiled.reports] == [spec for spec in default_pipeline("pixelwise")]
    assert all(op.opname.startswith("nn.") for op in compiled.graph.ops)
    assert any(op.opname == "xbar.mvm" for op in compiled.xbar.ops) and compiled.pruning is None
    assert {op.attrs["xbar_rows"] for op in compiled.xbar.ops if op.opname == "xbar.mvm"} == {64}
    with pytest.raises(RccError, match="no lower-to-xbar"):
        compile_model(LENET, pipeline="constant-fold,dce")


def test_one_name_allocator_and_structural_copies() -> None:
    names = NameAllocator({"a", "a.1"})
    assert [names.fresh("a"), names.fresh("a"), names.fresh("b"), names.fresh("b")] == ["a.2", "a.3", "b", "b.1"]
    module = parse_module(GRAPH)
    assert module.fresh_name("c") == "c.1" and module.fresh_name("z") == "z"
    copy = module.copy()
    assert modules_equal(copy, module) and print_module(copy) == print_module(module)
    run_pipeline(copy, "fold-batch-norm,dce")
    assert modules_equal(module, parse_module(GRAPH))  # the original is untouched
