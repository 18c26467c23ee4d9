"""`rcc run PROGRAM.rccp --inputs IN.npz -o OUT.npz`: execute a compiled program on the machine model (and
its host part, the model after a data-dependent node, on onnxruntime)."""

from __future__ import annotations

import argparse

from rcc.backends.chip import load_chip
from rcc.backends.program import load_program
from rcc.compiler.commands.common import (Parser, add_common_arguments, add_cost_model_argument,
                                          add_nonfinite_argument, optional_output, write_report)
from rcc.compiler.commands.device_options import add_device_arguments, device_from_args
from rcc.compiler.commands.progress import showing_progress
from rcc.compiler.host_run import HostPart
from rcc.compiler.verify import load_inputs
from rcc.ir.files import check_output_path, npz_bytes, write_output
from rcc.runtime.cost import estimate_cost
from rcc.runtime.machine import Machine



def parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rcc run", description="Execute a compiled program on the machine model.")
    parser.add_argument("program", help="the program (.rccp)")
    parser.add_argument("--inputs", required=True, help="inputs as an .npz keyed by input name")
    parser.add_argument("-o", "--output", required=True, help="write the outputs here (.npz)")
    parser.add_argument("--report", help="write the machine's counts and the cost of the run here (JSON)")
    add_cost_model_argument(parser)
    add_nonfinite_argument(parser, "the inputs")
    add_device_arguments(parser, mapping=False)
    add_common_arguments(parser)
    return parser


def run_command(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    with showing_progress(args):
        output = check_output_path(args.output, "-o")
        report = optional_output(args.report, "--report")
        device, faults = device_from_args(args)
        chip = load_chip(args.cost_model) if report is not None else None
        program = load_program(args.program)
        host = HostPart.of(program)
        inputs = load_inputs(args.inputs, "--inputs", args.allow_nonfinite)
        result = Machine(program, device=device, seed=args.device_seed, faults=faults).run(
            inputs, allow_nonfinite=args.allow_nonfinite)
        outputs = result.outputs if host is None else host.finish(result.outputs, inputs)
        write_output(output, npz_bytes(outputs))
        if report is not None:
            cost = estimate_cost(program, chip, result.per_instruction).to_json()   # from the machine's counts
            write_report(report, {"program": args.program, "cost_model": args.cost_model,
                                  "totals": {**result.totals.to_json(), "cost": cost["totals"]},
                                  "layers": [{"name": name, "cost": figures} for name, figures in cost["layers"].items()]})
    if not args.quiet:
        on_host = "" if host is None else f" (after {program.host['op_type']} {program.host['node']!r}: on the host)"
        print(f"wrote {args.output}: {', '.join(outputs)}{on_host}; {result.totals.cycles:,} cycles, "
              f"{result.totals.mvm_ops:,} array activations, {result.totals.adc_conversions:,} ADC conversions")
    return 0
