"""What every `rcc` command shares: the argument parser that reports mistakes as one line, the options
every command has (`-q`, `--timings`), the target options, output-path checks and the JSON report writer."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rcc.backends.target import ATTENTION_MODES, AUTO, CHIP_PRESETS, ENCODINGS, Auto, Target, parse_xbar
from rcc.compiler.calibrate import METHODS as CALIBRATION_METHODS, PERCENTILE
from rcc.ir.errors import RccError
from rcc.ir.files import check_output_path, json_bytes, write_output


class UsageError(RccError):
    """A command-line usage mistake."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one line naming the command and exit code 2, no usage dump."""

    def error(self, message: str) -> None:
        command = self.prog.removeprefix("rcc").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """`-q` and `--timings`, which every command takes."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only errors and the verdict; no progress display")
    parser.add_argument("--timings", action="store_true", help="print how long each stage and pass took (stderr)")


def _int_or_auto(text: str) -> int | Auto:
    if text.strip().lower() == "auto":
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--target FILE.toml` and the per-option flags; flags override the file."""
    default = Target()
    group = parser.add_argument_group("target", "the ReRAM chip: a TOML file, then flags that override it")
    group.add_argument("--target", metavar="FILE.toml", help="target description (keys are the option names)")
    group.add_argument("--xbar", metavar="ROWSxCOLS",
                       help=f"crossbar size (default: {default.xbar_rows}x{default.xbar_cols})")
    group.add_argument("--weight-bits", type=int, metavar="N",
                       help=f"signed weight width (default: {default.weight_bits})")
    group.add_argument("--input-bits", type=int, metavar="N", help=f"input width (default: {default.input_bits})")
    group.add_argument("--cell-bits", type=int, metavar="N",
                       help=f"bits stored per cell (default: {default.cell_bits})")
    group.add_argument("--dac-bits", type=int, metavar="N",
                       help=f"input bits fed per cycle (default: {default.dac_bits})")
    group.add_argument("--adc-bits", type=_int_or_auto, metavar="N|auto",
                       help="ADC width; narrower than lossless saturates (default: auto, lossless)")
    group.add_argument("--encoding", choices=ENCODINGS,
                       help=f"how weight signs are stored (default: {default.encoding})")
    group.add_argument("--chips", type=_int_or_auto, metavar="N|auto",
                       help="chip budget (default: auto, as many as the model needs)")
    group.add_argument("--attention", choices=ATTENTION_MODES,
                       help=f"where a matmul of two activations runs: the digital vector unit, or crossbars "
                            f"written at run time (default: {default.attention})")


def add_cost_model_argument(parser: argparse.ArgumentParser) -> None:
    """`--cost-model PRESET|FILE.toml`: the component costs a report's `cost` objects use (rcc.backends.chip)."""
    parser.add_argument("--cost-model", default="isaac", metavar="|".join(CHIP_PRESETS) + "|FILE.toml",
                        help="component costs for energy, latency and area (default: isaac)")


def target_from_args(args: argparse.Namespace) -> Target:
    """The target from `--target` (or the defaults), with the flags given on the command line applied."""
    target = Target.from_toml(args.target) if args.target is not None else Target()
    rows, cols = parse_xbar(args.xbar) if args.xbar is not None else (None, None)
    return target.with_overrides(xbar_rows=rows, xbar_cols=cols, weight_bits=args.weight_bits,
                                 input_bits=args.input_bits, cell_bits=args.cell_bits, dac_bits=args.dac_bits,
                                 adc_bits=args.adc_bits, encoding=args.encoding, chips=args.chips,
                                 attention=args.attention)


def optional_output(path: str | None, flag: str) -> Path | None:
    """The checked output path of an optional flag (None when the flag was not given; '' is an error)."""
    return None if path is None else check_output_path(path, flag)


# The file options commands read, by argparse attribute: what `input_files` names them.
_INPUT_FILE_OPTIONS = {"inputs": "--inputs", "data": "--data", "labels": "--labels", "calibrate": "--calibrate",
                       "target": "--target", "device": "--device", "fault_map": "--fault-map",
                       "cost_model": "--cost-model"}


def input_files(args: argparse.Namespace, *named: tuple[str, Any]) -> list[tuple[str, Any]]:
    """The files a command reads, for `check_distinct_files`: the `named` (what, path) pairs (the model, the
    program), then each of the command's file options that was given (a preset name is no file, and is skipped
    there)."""
    options = [(f"the {flag} file", getattr(args, attribute)) for attribute, flag in _INPUT_FILE_OPTIONS.items()
               if getattr(args, attribute, None) is not None]
    return [*named, *options]


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> None:
    """Write a report as JSON (non-finite numbers as {"float": "inf"}, see rcc.ir.files)."""
    write_output(path, json_bytes(report))


def seed(text: str) -> int:
    """A --seed value: an integer numpy's generators accept (0 ≤ seed < 2^63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 2^63 - 1")
    return value


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """`--calibrate FILE.npz` and `--calibration-method`: the inputs activation ranges are measured on, and
    how a range is chosen from them (compiler/calibrate.py)."""
    parser.add_argument("--calibrate", metavar="FILE.npz", help="calibration inputs (default: seeded random)")
    parser.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="max",
                        help="activation ranges: max (default: nothing clipped), percentile (clip at the "
                             f"{PERCENTILE:g}th percentile of |x|) or mse (the clipping that minimises the "
                             "quantisation error)")


def add_nonfinite_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`--allow-nonfinite`: accept NaN/Inf in `what` and propagate them as onnxruntime does."""
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help=f"accept NaN/Inf in {what} and propagate them as onnxruntime does "
                             f"(default: refuse them, naming the tensor)")
