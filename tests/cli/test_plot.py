"""`compiler.plot`: one PNG per sparse (or packed) crossbar layer, utilisation figures that agree with
a direct count of every array's cells, and the `--plot` folder's errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rcc.backends.mapping import array_blocks, block_occupancy, cell_codes, tile_occupancy, weight_levels
from rcc.backends.target import Target
from rcc.compiler.driver import Compiled, compile_model
from rcc.compiler.plot import plot_sparse_layers
from rcc.ir.errors import RccError
from tests.conftest import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL_TARGET = Target(xbar_rows=32, xbar_cols=32)


@pytest.fixture(scope="module")
def pruned() -> Compiled:
    return compile_model(ROOT / "models" / "lenet5_pruned.onnx", target=SMALL_TARGET, packing="best")


def mvms(compiled: Compiled) -> list:
    return [instruction for instruction in compiled.program.instructions if instruction.opcode == "mvm"]


def test_a_png_per_sparse_layer(pruned, tmp_path) -> None:
    directory = tmp_path / "plots"  # created: only its parent must exist
    paths = plot_sparse_layers(pruned.program, directory)
    layers = [instruction.attrs["layer"] for instruction in mvms(pruned)]  # every lenet5_pruned layer is 92% zeros
    assert [path.name for path in paths] == [f"{layer}.png" for layer in layers]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and 20_000 < len(data) < 2_000_000, path
    assert sorted(directory.iterdir()) == sorted(paths)  # no temporary file left behind


def test_a_dense_model_gets_no_plots(tmp_path) -> None:
    compiled = compile_model(ROOT / "models" / "lenet5.onnx", target=SMALL_TARGET, packing="best")
    assert all(len(instruction.src) == 2 for instruction in mvms(compiled))  # nothing packed
    assert plot_sparse_layers(compiled.program, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def counted_occupancy(weights: np.ndarray, attrs: dict, row_map=None, col_map=None) -> np.ndarray:
    """Every array's utilisation counted directly from its block's cell levels (the table look-up's
    independent reference)."""
    cells = attrs["xbar_rows"] * attrs["xbar_cols"]
    occupancy = []
    for group, rows, cols in array_blocks(weights.shape, attrs, row_map, col_map):
        block = weights[group][np.ix_(rows, cols)]
        for level in weight_levels(block, attrs["weight_bits"], attrs["cell_bits"], attrs["weight_slices"],
                                   attrs["encoding"]):
            occupancy.append(np.count_nonzero(level) / cells)
    return np.array(occupancy)


@pytest.mark.parametrize("precision", ["int", "float"])
def test_utilisation_matches_the_mapping(precision) -> None:
    compiled = compile_model(ROOT / "models" / "lenet5_pruned.onnx", target=SMALL_TARGET, packing="best",
                               precision=precision)
    for instruction in mvms(compiled):
        weights = compiled.program.constants[instruction.src[1]]
        maps = [compiled.program.constants[name] for name in instruction.src[2:]]
        codes, table = cell_codes(weights, instruction.attrs)
        dense = np.moveaxis(tile_occupancy(codes, table, instruction.attrs), 0, -1).reshape(-1)
        packed = block_occupancy(codes, table, instruction.attrs, *maps) if maps else dense
        assert packed.size == instruction.attrs["arrays"]
        assert np.isclose(packed.sum(), dense.sum())  # packing moves non-zero cells, never drops them
        if precision == "int":
            np.testing.assert_allclose(dense, counted_occupancy(weights, instruction.attrs))
            np.testing.assert_allclose(packed, counted_occupancy(weights, instruction.attrs, *maps))


def test_layer_names_become_safe_file_names(pruned, tmp_path) -> None:
    conv1 = next(instruction for instruction in mvms(pruned) if instruction.attrs["layer"] == "conv1")
    renamed = replace(conv1, attrs={**conv1.attrs, "layer": "../stage 1/conv:1"})
    twin = replace(renamed, src=[renamed.src[0], "copy", *renamed.src[2:]])   # its own arrays, the same name
    constants = {**pruned.program.constants, "copy": pruned.program.constants[conv1.src[1]]}
    paths = plot_sparse_layers(replace(pruned.program, instructions=[renamed, twin], constants=constants), tmp_path)
    assert [path.name for path in paths] == ["_stage_1_conv_1.png", "_stage_1_conv_1_2.png"]
    assert all(path.parent == tmp_path for path in paths)


def test_a_missing_parent_folder_names_the_flag(pruned, tmp_path) -> None:
    with pytest.raises(RccError, match="--plot"):
        plot_sparse_layers(pruned.program, tmp_path / "missing" / "plots")
    (tmp_path / "file").write_text("")
    with pytest.raises(RccError, match="--plot"):
        plot_sparse_layers(pruned.program, tmp_path / "file")
