"""`rcc prune`: magnitude pruning of zoo models, unstructured and crossbar-grained; the pruned models stay
valid ONNX, reach the asked sparsity exactly (or by whole array-sized blocks), and compile to fewer
crossbars once packed."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.target import Target
from rcc.compiler import cli
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.commands.prune import prune_command
from rcc.compiler.prune_model import crossbar_view, prune_onnx
from tests.conftest import ROOT

MODELS = {name: ROOT / "models" / f"{name}.onnx" for name in ("lenet5", "resnet_small", "dcgan_generator")}
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@pytest.fixture
def run_cli(capsys):
    """`rcc prune ...` through `rcc.compiler.cli.main`."""

    def run(*args: object) -> tuple[int, str, str]:
        code = cli.main(["prune", *map(str, args)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_prune_is_a_cli_command() -> None:
    assert cli.COMMANDS["prune"].function() is prune_command


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_and_others(model: onnx.ModelProto) -> tuple[dict[str, tuple[onnx.NodeProto, np.ndarray]],
                                                          dict[str, np.ndarray]]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = {n.input[1]: (n, inits[n.input[1]]) for n in model.graph.node
               if n.op_type in WEIGHT_OPS and n.input[1] in inits}
    return weights, {name: array for name, array in inits.items() if name not in weights}


def independent_view(node: onnx.NodeProto, weight: np.ndarray) -> np.ndarray:
    """[G, K, M] written out separately from the module under test."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        return (weight.T if attrs.get("transB", 0) else weight)[None]
    groups = attrs.get("group", 1)
    taps = math.prod(weight.shape[2:])
    if node.op_type == "Conv":  # [M, C/g, kh, kw] → [G, C/g·kh·kw, M/g], as lower-to-xbar does
        return weight.reshape(groups, weight.shape[0] // groups, -1).transpose(0, 2, 1)
    c, m_per_group = weight.shape[:2]  # ConvTranspose [C, M/g, kh, kw]
    return (weight.reshape(groups, c // groups, m_per_group, taps).transpose(0, 1, 3, 2)
            .reshape(groups, c // groups * taps, m_per_group))


def run_onnxruntime(path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
             for i in session.get_inputs()}
    return session.run(None, feeds)


def check_valid_and_runs(original: Path, pruned: Path) -> None:
    onnx.checker.check_model(onnx.load(str(pruned)), full_check=True)
    before, after = run_onnxruntime(original), run_onnxruntime(pruned)
    assert [a.shape for a in after] == [b.shape for b in before]
    assert all(np.isfinite(a).all() for a in after)


@pytest.mark.parametrize("sparsity", ["0.9", "0.37"])
@pytest.mark.parametrize("name", list(MODELS))
def test_unstructured_zero_count_is_exact_and_smallest_first(name, sparsity, tmp_path, run_cli) -> None:
    source, output = MODELS[name], tmp_path / "pruned.onnx"
    before_digest = digest(source)
    code, out, err = run_cli(source, "--sparsity", sparsity, "-o", output)
    assert code == 0, err
    assert digest(source) == before_digest and f"wrote {output}" in out
    check_valid_and_runs(source, output)
    weights, others = weights_and_others(onnx.load(str(source)))
    pruned_weights, pruned_others = weights_and_others(onnx.load(str(output)))
    assert weights and pruned_weights.keys() == weights.keys()
    for name_, (_, weight) in weights.items():
        pruned = pruned_weights[name_][1]
        assert pruned.shape == weight.shape and pruned.dtype == weight.dtype
        assert np.count_nonzero(pruned == 0) == math.ceil(Fraction(sparsity) * weight.size), name_
        kept = pruned != 0
        np.testing.assert_array_equal(pruned[kept], weight[kept])
        assert np.abs(weight[~kept]).max() <= np.abs(weight[kept]).min()
        assert name_ in out
    assert pruned_others.keys() == others.keys()
    for name_, array in others.items():  # biases and everything else untouched
        np.testing.assert_array_equal(pruned_others[name_], array)


@pytest.mark.parametrize("xbar", [None, "32x32"])
@pytest.mark.parametrize("name", list(MODELS))
def test_crossbar_pruning_removes_whole_blocks(name, xbar, tmp_path, run_cli) -> None:
    source, output, sparsity = MODELS[name], tmp_path / "pruned.onnx", 0.6
    target = Target() if xbar is None else Target(xbar_rows=32, xbar_cols=32)
    flags = [] if xbar is None else ["--xbar", xbar]
    code, out, err = run_cli(source, "--sparsity", sparsity, "--structured", "crossbar", *flags, "-o", output)
    assert code == 0, err
    check_valid_and_runs(source, output)
    weights, others = weights_and_others(onnx.load(str(source)))
    pruned_weights, pruned_others = weights_and_others(onnx.load(str(output)))
    rows, cols = target.xbar_rows, target.xbar_cols // target.weight_slices
    for name_, (node, weight) in weights.items():
        pruned = pruned_weights[name_][1]
        assert np.count_nonzero(pruned == 0) >= sparsity * weight.size, name_
        view, pruned_view = independent_view(node, weight), independent_view(node, pruned)
        zero_blocks = total_blocks = 0
        for g in range(view.shape[0]):
            for r in range(0, view.shape[1], rows):
                for c in range(0, view.shape[2], cols):
                    block = pruned_view[g, r:r + rows, c:c + cols]
                    total_blocks += 1
                    if np.any(block == 0):  # the zoo has no zero weights: a zero means the block is gone
                        assert not block.any(), (name_, g, r, c)
                        zero_blocks += 1
                    else:
                        np.testing.assert_array_equal(block, view[g, r:r + rows, c:c + cols])
        [line] = [line.split() for line in out.splitlines() if line.split()[:1] == [name_]]
        assert line[-1] == f"{zero_blocks}/{total_blocks}", name_
    for name_, array in others.items():
        np.testing.assert_array_equal(pruned_others[name_], array)


def matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_ties_break_by_flat_index_and_the_input_model_is_untouched() -> None:
    weight = np.ones((10, 10), np.float32)
    model = matmul_model(weight)
    serialized = model.SerializeToString()
    pruned, rows = prune_onnx(model, 0.9)
    assert model.SerializeToString() == serialized
    result = numpy_helper.to_array(pruned.graph.initializer[0]).ravel()
    assert np.count_nonzero(result == 0) == 90 and not result[:90].any() and result[90:].all()
    assert rows == [{"node": "mm", "op_type": "MatMul", "tensor": "w", "shape": [10, 10], "size": 100,
                     "sparsity_before": 0.0, "sparsity_after": 0.9, "blocks_removed": None, "blocks_total": None}]
    unchanged, _ = prune_onnx(model, 0.0, "crossbar")
    assert unchanged.SerializeToString() == serialized


def test_crossbar_blocks_are_taken_least_salient_first() -> None:
    weight = np.full((64, 16), 5.0, np.float32)  # a 4×8-output array span is 4 rows × 2 outputs
    weight[4:8, 2:4] = 0.5
    weight[60:64, 14:16] = 0.1
    target = Target(xbar_rows=4, xbar_cols=8)
    assert target.weights_per_array_row == 2
    pruned, [row] = prune_onnx(matmul_model(weight), 15 / 1024, "crossbar", target)
    result = numpy_helper.to_array(pruned.graph.initializer[0])
    expected = weight.copy()
    expected[4:8, 2:4] = expected[60:64, 14:16] = 0
    np.testing.assert_array_equal(result, expected)
    assert (row["blocks_removed"], row["blocks_total"]) == (2, 128) and row["sparsity_after"] == 16 / 1024


@pytest.mark.parametrize("op_type, shape, attrs", [
    ("Conv", (6, 2, 3, 3), {"group": 2}), ("ConvTranspose", (4, 3, 2, 2), {"group": 2}),
    ("Conv", (8, 4, 3), {}), ("Gemm", (5, 7), {"transB": 1}), ("Gemm", (7, 5), {}),
    ("MatMul", (2, 7, 5), {}), ("MatMul", (7,), {}),
])
def test_crossbar_view_round_trips(op_type, shape, attrs) -> None:
    weight = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    node = helper.make_node(op_type, ["x", "w"], ["y"], **attrs)
    view, restore = crossbar_view(weight, node, "n")
    np.testing.assert_array_equal(restore(view.copy()), weight)
    if op_type in ("Conv", "ConvTranspose", "Gemm"):
        np.testing.assert_array_equal(view, independent_view(node, weight))


@pytest.mark.parametrize("args, names", [
    (["--sparsity", "1.5"], "--sparsity"), (["--sparsity", "-0.1"], "--sparsity"),
    (["--sparsity", "nan"], "--sparsity"), (["--sparsity", "0.5", "--structured", "rows"], "--structured"),
    (["--sparsity", "0.5", "--xbar", "0x4"], "--xbar"),
])
def test_bad_options_exit_2_with_one_line_and_no_output(args, names, tmp_path, run_cli) -> None:
    output = tmp_path / "out.onnx"
    code, out, err = run_cli(MODELS["lenet5"], *args, "-o", output)
    assert code == 2 and names in err and len(err.strip().splitlines()) == 1
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_missing_model_and_missing_directory(tmp_path, run_cli) -> None:
    output = tmp_path / "out.onnx"
    code, _, err = run_cli(tmp_path / "absent.onnx", "--sparsity", "0.5", "-o", output)
    assert code == 2 and "absent.onnx: no such file" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(MODELS["lenet5"], "--sparsity", "0.5", "-o", tmp_path / "nowhere" / "out.onnx")
    assert code == 2 and err.startswith("rcc: error: -o ") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def crossbars(compiled) -> int:
    return sum(op.attrs["arrays"] for op in compiled.xbar.ops if op.opname == "xbar.mvm")


@pytest.mark.parametrize("structured", ["none", "crossbar"])
def test_pruned_lenet_compiles_verifies_and_packs_into_fewer_crossbars(structured, tmp_path) -> None:
    output = tmp_path / "lenet5_pruned.onnx"
    assert prune_command([str(MODELS["lenet5"]), "--sparsity", "0.9", "--structured", structured,
                          "--xbar", "32x32", "-o", str(output)]) == 0
    compiled = compile_model(output)
    result = verify_compiled(output, compiled)
    assert result.passed and result.extra["integer_reference_match"]
    small = Target(xbar_rows=32, xbar_cols=32)
    packed, dense = compile_model(output, small, packing="best"), compile_model(output, small, packing="dense")
    assert crossbars(packed) < crossbars(dense)
