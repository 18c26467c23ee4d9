"""`rcc opt FILE.ir -p PASSES [target flags]`: run passes on IR text and print or write the result. The
target flags, precision, calibration and packing set the pass context, so any prefix of the default
pipeline (lowering and packing included) runs on IR text."""

from __future__ import annotations

import argparse
import sys

from rcc.backends.packing import MODES as PACKING_MODES
from rcc.compiler.commands.common import (Parser, add_calibration_arguments, add_common_arguments, add_target_arguments,
                                          input_files, target_from_args)
from rcc.compiler.commands.precision_options import add_precision_arguments, precision_settings
from rcc.compiler.commands.progress import showing_progress
from rcc.compiler.pass_context import PassContext
from rcc.compiler.pass_manager import run_pipeline
from rcc.ir.errors import RccError
from rcc.ir.inputs import load_inputs
from rcc.ir.files import check_distinct_files, check_output_path
from rcc.ir.parser import load_module
from rcc.ir.printer import print_module, save_module, weights_path



def parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rcc opt", description="Run passes on IR text.")
    parser.add_argument("ir", help="IR text (weights from the .npz beside it)")
    parser.add_argument("-p", "--pipeline", required=True, help="passes to run, comma-separated")
    parser.add_argument("--print-after-all", action="store_true", help="print the IR after each pass")
    parser.add_argument("-o", "--output", help="write the result here (with its .npz) instead of stdout")
    parser.add_argument("--precision", choices=["int", "float"], default="int",
                        help="what lower-to-xbar maps: int (quantised, default) or float")
    add_calibration_arguments(parser)
    add_precision_arguments(parser)
    parser.add_argument("--packing", choices=list(PACKING_MODES), default="best",
                        help="the packing pack-crossbars uses unless its `mode` option says otherwise")
    add_target_arguments(parser)
    add_common_arguments(parser)
    return parser


def opt_command(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    calibration = load_inputs(args.calibrate, "--calibrate") if args.calibrate else None
    target = target_from_args(args)
    ctx = PassContext(target=target, precision=args.precision, calibration=calibration,
                      calibration_method=args.calibration_method, packing=args.packing,
                      **precision_settings(args, target))
    with showing_progress(args):
        if args.output is not None:
            output = check_output_path(args.output, "-o")
            weights_flag = f"-o {output}: its weights file"
            weights = check_output_path(weights_path(output), weights_flag)
            check_distinct_files([("-o", output), (weights_flag, weights)],
                                 input_files(args, ("the input IR", args.ir),
                                             ("the input IR's weights file", weights_path(args.ir))))
        module = load_module(args.ir)
        run_pipeline(module, args.pipeline, ctx, print_after_all=args.print_after_all)
        check_flags_were_read(args, ctx)
        if args.output is not None:
            save_module(module, output)
    if args.output is None and not args.print_after_all:
        sys.stdout.write(print_module(module))
    return 0


def check_flags_were_read(args: argparse.Namespace, ctx: PassContext) -> None:
    """RccError naming a precision flag that no pass of the pipeline read (`-p` without the pass it is for)."""
    readers = {"--layer-input-bits": ("lower-to-xbar", args.layer_input_bits),
               "--layer-weight-bits": ("lower-to-xbar", args.layer_weight_bits),
               "--mixed-precision": ("mixed-precision", args.mixed_precision)}
    for flag, (reader, given) in readers.items():
        if given and ctx.report_of(reader) is None:
            raise RccError(f"{flag}: the pipeline has no {reader} pass, which reads it (add it to -p)")
