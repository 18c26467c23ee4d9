"""The parser fills what a fixture leaves out: constant defaults from the op table, and an `xbar.mvm`'s
derived attributes (groups, slices, tiles, arrays; a lossless ADC) from its weights' shape and widths.
Printing states every attribute, and print → parse → print gives the same text for every pass fixture."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rcc.backends.mapping import CrossbarMapping
from rcc.ir import IRParseError, VerifyError, modules_equal, parse_module, print_module

FIXTURES = Path(__file__).resolve().parents[1] / "passes" / "fixtures"

SHORT_MVM = """module @m {
  input %x : i32[3,20]
  const %w : i8[2,10,6]
  %acc = xbar.mvm(%x, %w) {layer = "acc", xbar_rows = 4, xbar_cols = 8, weight_bits = 4, input_bits = 6, input_signed = true, cell_bits = 1, dac_bits = 2, encoding = "differential"} : i64[3,12]
  output %acc
}
"""


def weights() -> dict:
    return {"w": np.arange(120, dtype=np.int8).reshape(2, 10, 6) % 15 - 7}


def test_essential_mvm_attributes_parse_with_the_rest_filled() -> None:
    op = parse_module(SHORT_MVM, weights()).ops[0]
    mapping = CrossbarMapping.of(op.attrs, (2, 10, 6))
    # 4 bits → 3 magnitude slices of 1 bit; 8 // 3 = 2 outputs per array; ⌈10/4⌉ = 3 by ⌈6/2⌉ = 3 tiles
    assert {key: op.attrs[key] for key in ("groups", "weight_slices", "row_tiles", "col_tiles", "arrays")} == \
        {"groups": 2, "weight_slices": 3, "row_tiles": 3, "col_tiles": 3, "arrays": 2 * 3 * 3 * 2}
    assert op.attrs["adc_bits"] == (4 * 3 * 1).bit_length() and mapping.adc_lossless
    assert (op.attrs["first_array"], op.attrs["zero_macs"], op.attrs["packing"]) == (0, 0, "dense")
    assert {key: op.attrs[key] for key in mapping.attrs()} == mapping.attrs()


def test_a_stated_narrow_adc_is_kept_and_a_wrong_derived_attribute_refused() -> None:
    narrow = SHORT_MVM.replace('encoding = "differential"', 'encoding = "differential", adc_bits = 2')
    assert parse_module(narrow, weights()).ops[0].attrs["adc_bits"] == 2
    wrong = SHORT_MVM.replace('encoding = "differential"', 'encoding = "differential", row_tiles = 2')
    with pytest.raises(VerifyError, match="row_tiles = 2 .*expected 3"):
        parse_module(wrong, weights())


def test_a_missing_essential_attribute_or_impossible_width_is_named() -> None:
    with pytest.raises(IRParseError, match="missing attribute 'cell_bits'"):
        parse_module(SHORT_MVM.replace("cell_bits = 1, ", ""), weights())
    with pytest.raises(IRParseError, match="xbar.mvm: array sizes and bit widths must be positive"):
        parse_module(SHORT_MVM.replace("cell_bits = 1", "cell_bits = 0"), weights())
    with pytest.raises(IRParseError, match="8 columns cannot hold the 0 slices of one 1-bit differential"):
        parse_module(SHORT_MVM.replace("weight_bits = 4", "weight_bits = 1"), weights())


def test_short_and_full_text_parse_to_the_same_module_and_printing_round_trips() -> None:
    short = parse_module(SHORT_MVM, weights())
    full_text = print_module(short)
    assert "row_tiles = 3" in full_text and "covered_outputs = 0" in full_text
    full = parse_module(full_text, weights())
    assert modules_equal(short, full)
    assert print_module(full) == full_text


def fixture_modules() -> list:
    modules = []
    for path in sorted(FIXTURES.glob("*.ir")):
        chunks = [c for c in re.split(r"(?m)^(?=module @)", path.read_text()) if c.startswith("module")]
        modules += [pytest.param(chunk, id=f"{path.stem}:{index}") for index, chunk in enumerate(chunks)]
    return modules


@pytest.mark.parametrize("text", fixture_modules())
def test_every_fixture_round_trips(text: str) -> None:
    module = parse_module(text)
    printed = print_module(module)
    again = parse_module(printed)
    assert print_module(again) == printed
    assert modules_equal(module, again)
