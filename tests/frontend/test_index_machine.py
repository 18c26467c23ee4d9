"""Indexing and resizing ops on the machine: small models with crossbar layers compiled and verified against
onnxruntime in float and integer mode (the new ops run on the vector unit), and token ids out of range fed
by the user refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from rcc.backends.target import Target
from rcc.compiler.cli import main
from tests.frontend.through_cli import compile_verified


def _save(path: Path, nodes: list, inputs: list, output: tuple, weights: dict[str, np.ndarray],
          opset: int = 18) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, [helper.make_tensor_value_info(output[0], 1, output[1])],
                              [numpy_helper.from_array(a, n) for n, a in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9), path)
    return path


def _ints(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


@pytest.fixture
def embedding_model(tmp_path: Path) -> Path:
    """Token ids → embedding look-up → Slice → MatMul (crossbars) → Split → Add → Expand → Tile."""
    rng = np.random.default_rng(0)
    weights = {"table": rng.standard_normal((12, 8)).astype(np.float32),
               "w": rng.standard_normal((8, 4)).astype(np.float32),
               "starts": _ints(1), "ends": _ints(2**63 - 1), "axes": _ints(1), "shape": _ints(2, 1, 1),
               "repeats": _ints(1, 1, 2)}
    nodes = [helper.make_node("Gather", ["table", "tokens"], ["embedded"]),
             helper.make_node("Slice", ["embedded", "starts", "ends", "axes"], ["tail"]),
             helper.make_node("MatMul", ["tail", "w"], ["projected"]),
             helper.make_node("Split", ["projected"], ["left", "right"], axis=2, num_outputs=2),
             helper.make_node("Add", ["left", "right"], ["summed"]),
             helper.make_node("Expand", ["summed", "shape"], ["expanded"]),
             helper.make_node("Tile", ["expanded", "repeats"], ["y"])]
    tokens = helper.make_tensor_value_info("tokens", onnx.TensorProto.INT64, (1, 5))
    return _save(tmp_path / "embedding.onnx", nodes, [tokens], ("y", (2, 4, 4)), weights)


def test_embedding_lookup_and_indexing_verify_on_the_machine(embedding_model: Path, tmp_path: Path) -> None:
    for precision in ("float", "int"):
        program = compile_verified(embedding_model, precision, tmp_path)
        gathers = [i for i in program.instructions if i.opcode == "vec" and i.attrs["fn"] == "nn.gather"]
        assert gathers and gathers[0].src[0] in program.constants  # the table is held by the vector unit
        assert sum(i.opcode == "mvm" for i in program.instructions) == 1


def test_report_counts_the_embedding_table_in_vector_memory(embedding_model: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    assert main([str(embedding_model), "-q", "-o", str(tmp_path / "e.rccp"), "--report", str(report)]) == 0
    layers = json.loads(report.read_text())["layers"]
    [gather] = [row for row in layers if row["op"] == "nn.gather"]
    assert gather["vector_memory_bytes"] == 12 * 8 * 4  # the f32 table
    assert json.loads(report.read_text())["totals"]["vector_memory_bytes"] >= gather["vector_memory_bytes"]
    # a look-up costs the rows it copies (5 tokens × 8), not the table it reads from (12 × 8)
    assert gather["vec_ops"] == math.ceil(5 * 8 / Target().vector_lanes) < math.ceil(12 * 8 / Target().vector_lanes)


def test_token_id_out_of_range_is_a_one_line_error(embedding_model: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    inputs = tmp_path / "tokens.npz"
    np.savez(inputs, tokens=np.array([[0, 1, 12, 3, 4]], np.int64))
    code = main([str(embedding_model), "--verify", "--inputs", str(inputs), "-q", "-o", str(tmp_path / "e.rccp")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "nn.gather: index 12 is out of range for an axis of 12" in err


def test_bilinear_upsampling_head_verifies_on_the_machine(tmp_path: Path) -> None:
    """Conv (crossbars) → Resize linear ×2 (half_pixel) → Conv → Resize cubic to a size (align_corners)."""
    rng = np.random.default_rng(1)
    weights = {"w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
               "w2": rng.standard_normal((2, 4, 1, 1)).astype(np.float32) * 0.5,
               "scales": np.array([1, 1, 2, 2], np.float32), "sizes": _ints(1, 2, 11, 13)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Resize", ["r1", "", "scales"], ["up"], mode="linear"),
             helper.make_node("Conv", ["up", "w2"], ["c2"]),
             helper.make_node("Resize", ["c2", "", "", "sizes"], ["y"], mode="cubic",
                              coordinate_transformation_mode="align_corners")]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 3, 5, 6))
    path = _save(tmp_path / "head.onnx", nodes, [x], ("y", (1, 2, 11, 13)), weights)
    for precision in ("float", "int"):
        program = compile_verified(path, precision, tmp_path)
        assert [i.attrs["fn"] for i in program.instructions if i.opcode == "vec" and i.attrs["fn"] == "nn.resize"]
