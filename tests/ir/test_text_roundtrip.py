"""The textual IR round-trips: print → parse → print is identical and parse(print(m)) equals m, for the
IR of every zoo and light model, before and after the graph pipeline, through files and in memory."""

from __future__ import annotations

import pytest

from rcc.compiler.frontend import import_onnx
from rcc.compiler.pass_manager import GRAPH_PIPELINE, run_pipeline
from rcc.ir import load_module, modules_equal, parse_module, print_module, save_module
from tests.conftest import LARGE_LIGHT, LIGHT, ZOO, light_params

SMALL_LIGHT = [p for p in LIGHT if p.stem not in LARGE_LIGHT]


def assert_round_trips(module, tmp_path) -> None:
    text = print_module(module)
    weights = {**{c.name: c.data for c in module.constants}, **module.input_defaults}
    parsed = parse_module(text, weights)
    assert print_module(parsed) == text
    assert modules_equal(parsed, module)
    written = save_module(module, tmp_path / "module.ir")
    loaded = load_module(written[0])
    assert print_module(loaded) == text
    assert modules_equal(loaded, module)


@pytest.mark.parametrize("path", ZOO + SMALL_LIGHT, ids=lambda p: p.stem)
def test_model_ir_round_trips(path, tmp_path) -> None:
    module = import_onnx(path)
    assert_round_trips(module, tmp_path)
    run_pipeline(module, GRAPH_PIPELINE)
    (tmp_path / "after").mkdir()
    assert_round_trips(module, tmp_path / "after")


@pytest.mark.parametrize("path", light_params([p for p in LIGHT if p not in SMALL_LIGHT]))
def test_large_model_text_round_trips(path) -> None:
    """The three 60–140 M-weight models: text and structure in memory (no .npz written)."""
    module = import_onnx(path)
    text = print_module(module)
    parsed = parse_module(text, {c.name: c.data for c in module.constants})
    assert print_module(parsed) == text and modules_equal(parsed, module)
