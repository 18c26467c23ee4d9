"""The target's command-line flags (compiler/commands/common.py): defaults, a TOML file overridden by
flags, and errors that name the flag."""

from __future__ import annotations

import argparse

import pytest

from rcc.backends.target import Target, TargetError
from rcc.compiler.commands.common import add_target_arguments, target_from_args


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_target_arguments(parser)
    return parser.parse_args(argv)


def test_args_default_to_the_default_target() -> None:
    assert target_from_args(_parse([])) == Target()


def test_flags_override_the_file(tmp_path) -> None:
    path = tmp_path / "chip.toml"
    path.write_text('xbar = "64x64"\ncell_bits = 1\nadc_bits = 6\nchips = 4\narray_read_cycles = 50\n')
    target = target_from_args(_parse(["--target", str(path), "--xbar", "128x32", "--cell-bits", "2",
                                      "--adc-bits", "auto", "--chips", "2", "--encoding", "offset"]))
    assert (target.xbar_rows, target.xbar_cols, target.cell_bits) == (128, 32, 2)
    assert target.adc_bits is None and target.chips == 2 and target.encoding == "offset"
    assert target.array_read_cycles == 50


def test_all_flags() -> None:
    target = target_from_args(_parse(["--xbar", "256", "--weight-bits", "6", "--input-bits", "4",
                                      "--cell-bits", "1", "--dac-bits", "2", "--adc-bits", "7",
                                      "--chips", "auto"]))
    assert target == Target(xbar_rows=256, xbar_cols=256, weight_bits=6, input_bits=4, cell_bits=1,
                            dac_bits=2, adc_bits=7)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(TargetError, match="^--dac-bits 4 exceeds --input-bits 2$"):
        target_from_args(_parse(["--input-bits", "2", "--dac-bits", "4"]))
    with pytest.raises(TargetError, match="^--xbar must be"):
        target_from_args(_parse(["--xbar", "wide"]))
    with pytest.raises(TargetError, match="no such file"):
        target_from_args(_parse(["--target", "/nonexistent/chip.toml"]))


@pytest.mark.parametrize("argv, expected", [
    (["--adc-bits", "many"], "argument --adc-bits: expected a whole number or 'auto', got 'many'"),
    (["--chips", "1.5"], "argument --chips: expected a whole number or 'auto'"),
    (["--encoding", "twos"], "argument --encoding: invalid choice"),
    (["--weight-bits", "eight"], "argument --weight-bits: invalid int value"),
])
def test_bad_flag_values_are_argparse_errors(capsys, argv, expected) -> None:
    with pytest.raises(SystemExit):
        _parse(argv)
    assert expected in capsys.readouterr().err
