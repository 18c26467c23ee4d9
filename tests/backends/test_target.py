"""The ReRAM target: defaults and derived figures, TOML files, overrides, and validation messages (the
command-line flags are tested in tests/cli/test_target_options.py)."""

from __future__ import annotations

import dataclasses

import pytest

from rcc.backends.target import AUTO, Target, TargetError, parse_xbar
from rcc.ir.errors import RccError


def test_defaults_and_derived_figures() -> None:
    target = Target()
    assert (target.xbar_rows, target.xbar_cols, target.cell_bits, target.dac_bits) == (128, 128, 2, 1)
    assert target.max_column_sum == 128 * 1 * 3 == 384
    assert target.lossless_adc_bits == 9
    assert target.effective_adc_bits == 9 and target.adc_max == 511 and target.adc_is_lossless
    assert target.magnitude_bits == 7 and target.weight_slices == 4 and target.signs == 2
    assert target.input_cycles == 8
    assert target.weights_per_array_row == 32
    assert target.weight_max == 127
    assert target.input_max(signed=True) == 127 and target.input_max(signed=False) == 255
    assert target.max_arrays is None


def test_offset_encoding_keeps_the_sign_bit_in_the_cells() -> None:
    target = Target(encoding="offset")
    assert target.magnitude_bits == 8 and target.weight_slices == 4 and target.signs == 1


def test_narrow_adc_and_chip_budget() -> None:
    target = Target(adc_bits=6, chips=2, dac_bits=2, input_bits=7)
    assert target.effective_adc_bits == 6 and target.adc_max == 63 and not target.adc_is_lossless
    assert target.max_arrays == 2 * 168 * 96
    assert target.input_cycles == 4  # ceil(7 / 2)
    assert target.max_column_sum == 128 * 3 * 3


def test_to_dict_has_fields_and_derived() -> None:
    report = Target().to_dict()
    assert report["xbar_rows"] == 128 and report["adc_bits"] is None
    assert report["derived"]["lossless_adc_bits"] == 9
    assert report["derived"]["input_max_unsigned"] == 255
    assert {field.name for field in dataclasses.fields(Target)} <= report.keys()


def test_target_is_an_rcc_error_and_frozen() -> None:
    assert issubclass(TargetError, RccError)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Target().xbar_rows = 64  # type: ignore[misc]


# ---- TOML ----------------------------------------------------------------------------------------


def test_toml_top_level_with_xbar_shorthand(tmp_path) -> None:
    path = tmp_path / "chip.toml"
    path.write_text('xbar = "128x64"\ncell_bits = 1\nadc_bits = 6\nencoding = "offset"\n')
    target = Target.from_toml(path)
    assert (target.xbar_rows, target.xbar_cols, target.cell_bits, target.adc_bits) == (128, 64, 1, 6)
    assert target.encoding == "offset" and target.weight_slices == 8


def test_toml_target_table(tmp_path) -> None:
    path = tmp_path / "chip.toml"
    path.write_text("[target]\nxbar = 256\nweight_bits = 4\nchips = 3\n")
    target = Target.from_toml(str(path))
    assert (target.xbar_rows, target.xbar_cols, target.weight_bits, target.chips) == (256, 256, 4, 3)


@pytest.mark.parametrize("text, expected", [
    ("colour = 3\n", "unknown key 'colour'"),
    ("[target]\ncolour = 3\n", "unknown key 'target.colour'"),
    ("cell_bits = 1\n[target]\ndac_bits = 1\n", "unknown key 'cell_bits' beside the [target] table"),
    ("target = 3\n", "'target' must be a table"),
    ('xbar = "128x64"\nxbar_rows = 64\n', "give either xbar or xbar_rows"),
    ('xbar = "big"\n', "xbar must be ROWSxCOLS"),
    ("xbar = 1.5\n", "xbar must be a string"),
    ('weight_bits = "8"\n', "--weight-bits must be a positive integer, got '8'"),
    ("array_read_cycles = 0\n", "array_read_cycles must be a positive integer"),
    ("xbar = [\n", "invalid TOML: "),
])
def test_toml_errors_name_the_file_and_key(tmp_path, text, expected) -> None:
    path = tmp_path / "chip.toml"
    path.write_text(text)
    with pytest.raises(TargetError) as info:
        Target.from_toml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_toml_missing_file(tmp_path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(TargetError, match="^" + str(path) + ": no such file$"):
        Target.from_toml(path)


def test_toml_not_utf8(tmp_path) -> None:
    path = tmp_path / "chip.toml"
    path.write_bytes(b"cell_bits = \xff\n")
    with pytest.raises(TargetError, match="invalid TOML"):
        Target.from_toml(path)


# ---- overrides -----------------------------------------------------------------------------------


def test_overrides_skip_none_and_validate() -> None:
    base = Target(adc_bits=6, chips=2)
    assert base.with_overrides(weight_bits=None, chips=None) is base
    changed = base.with_overrides(cell_bits=1, xbar_cols=64)
    assert (changed.cell_bits, changed.xbar_cols, changed.adc_bits) == (1, 64, 6)
    with pytest.raises(TargetError, match="--cell-bits"):
        base.with_overrides(cell_bits=9)


def test_overrides_auto_resets_optional_fields() -> None:
    base = Target(adc_bits=6, chips=2)
    reset = base.with_overrides(adc_bits=AUTO, chips=AUTO)
    assert reset.adc_bits is None and reset.chips is None and reset.adc_is_lossless
    with pytest.raises(TargetError, match="--weight-bits cannot be 'auto'"):
        base.with_overrides(weight_bits=AUTO)
    with pytest.raises(TargetError, match="unknown target option 'colour'"):
        base.with_overrides(colour=3)


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, expected", [
    ({"xbar_rows": 0}, "--xbar rows must be a positive integer"),
    ({"xbar_cols": 5000}, "--xbar columns must be at most 4096"),
    ({"xbar_rows": 8192}, "--xbar rows must be at most 4096"),
    ({"weight_bits": 1}, "--weight-bits must be between 2 and 16"),
    ({"weight_bits": 17}, "--weight-bits must be between 2 and 16"),
    ({"input_bits": 18}, "--input-bits must be between 2 and 17"),
    ({"input_bits": 1, "dac_bits": 1}, "--input-bits must be between 2 and 17"),
    ({"input_bits": 0}, "--input-bits must be a positive integer"),
    ({"cell_bits": 8}, "--cell-bits 8 exceeds the 7 magnitude bits"),
    ({"cell_bits": -1}, "--cell-bits must be a positive integer"),
    ({"dac_bits": 4, "input_bits": 2}, "--dac-bits 4 exceeds --input-bits 2"),
    ({"adc_bits": 0}, "--adc-bits must be a positive integer"),
    ({"adc_bits": 33}, "--adc-bits must be at most 32"),
    ({"encoding": "twos"}, "--encoding must be 'differential' or 'offset'"),
    ({"encoding": 1}, "--encoding must be 'differential' or 'offset'"),
    ({"chips": 0}, "--chips must be a positive integer"),
    ({"chips": True}, "--chips must be a positive integer, got True"),
    ({"weight_bits": 8.0}, "--weight-bits must be a positive integer, got 8.0"),
    ({"xbar_cols": "128"}, "--xbar columns must be a positive integer, got '128'"),
    ({"xbar_cols": 3}, "--xbar columns (3) cannot hold the 4 slices"),
    ({"xbar_rows": 4096, "cell_bits": 7, "dac_bits": 8}, "--xbar rows × --dac-bits × --cell-bits"),
    ({"xbar_rows": 4096, "cell_bits": 7, "dac_bits": 8}, "exactly in float32"),
    ({"arrays_per_tile": 0}, "arrays_per_tile must be a positive integer"),
    ({"tiles_per_chip": False}, "tiles_per_chip must be a positive integer"),
    ({"array_read_cycles": 0}, "array_read_cycles"),
    ({"adc_conversion_cycles": 0}, "adc_conversion_cycles"),
    ({"adcs_per_array": 0}, "adcs_per_array"),
    ({"vector_lanes": 0}, "vector_lanes"),
    ({"vector_op_cycles": 0}, "vector_op_cycles"),
    ({"accumulate_cycles": 0}, "accumulate_cycles"),
])
def test_validation_names_the_option(changes, expected) -> None:
    with pytest.raises(TargetError) as info:
        Target(**changes)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_validation_edges_that_are_allowed() -> None:
    assert Target(weight_bits=2, cell_bits=1).weight_slices == 1
    assert Target(encoding="offset", weight_bits=2, cell_bits=2).weight_slices == 1
    assert Target(xbar_cols=4).weights_per_array_row == 1
    assert Target(adc_bits=32, input_bits=16, dac_bits=16, xbar_rows=1, cell_bits=1).max_column_sum == 65535
    assert Target(xbar_rows=4096, cell_bits=4, dac_bits=2).max_column_sum == 4096 * 3 * 15 < 2**24


# ---- command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("128x64", (128, 64)), ("256", (256, 256)), (" 64X32 ", (64, 32)), ("128×128", (128, 128)),
])
def test_parse_xbar(text, expected) -> None:
    assert parse_xbar(text) == expected


@pytest.mark.parametrize("text", ["", "x", "128x", "128x64x2", "-1x4", "big", "128 by 64"])
def test_parse_xbar_junk_names_the_flag(text) -> None:
    with pytest.raises(TargetError, match="^--xbar must be ROWSxCOLS"):
        parse_xbar(text)
