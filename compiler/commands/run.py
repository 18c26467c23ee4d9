"""`rcc run PROGRAM.rccp --inputs IN.npz -o OUT.npz`: execute a compiled program on the machine model (and
its host part, the model after a data-dependent node, on onnxruntime).

Inputs with N samples along a leading axis the program declares as 1 run as one batch; the summary line
and the report give the machine's time per inference and its throughput (wall clock of the run alone:
loading the program and programming the crossbars excluded)."""

from __future__ import annotations

import argparse
import time

from rcc.backends.program import load_program
from rcc.compiler.commands.common import (Parser, add_common_arguments, add_cost_model_argument,
                                          add_nonfinite_argument, input_files, optional_output, write_report)
from rcc.compiler.commands.device_options import add_device_arguments, device_from_args
from rcc.compiler.commands.progress import showing_progress
from rcc.compiler.host_run import HostPart
from rcc.ir.inputs import load_inputs
from rcc.ir.files import check_distinct_files, check_output_path, npz_bytes, write_output
from rcc.ir.types import stand_in
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
        check_distinct_files([("-o", output), ("--report", report)],
                             input_files(args, ("the input program", args.program)))
        device, faults = device_from_args(args)
        chip = None
        if report is not None:   # the cost model's modules: 15 ms of start-up, only for a report
            from rcc.backends.chip import load_chip
            from rcc.runtime.cost import estimate_cost
            chip = load_chip(args.cost_model)
        program = load_program(args.program)
        host = HostPart.of(program)
        machine = Machine(program, device=device, seed=args.device_seed, faults=faults)
        inputs = load_inputs(args.inputs, "--inputs", args.allow_nonfinite)
        start = time.perf_counter()
        result = machine.run(inputs, allow_nonfinite=args.allow_nonfinite)
        seconds = time.perf_counter() - start
        outputs = result.outputs if host is None else host.finish(result.outputs, inputs)
        # numpy files hold no narrow types: a bfloat16/float8 output is written as float32, a 4-bit one as int8
        write_output(output, npz_bytes({name: stand_in(array) for name, array in outputs.items()}))
        if report is not None:
            cost = estimate_cost(program, chip, result.per_instruction).to_json()   # from the machine's counts
            write_report(report, {"program": args.program, "cost_model": args.cost_model,
                                  "totals": {**result.totals.to_json(), "cost": cost["totals"]},
                                  "layers": [{"name": name, "cost": figures} for name, figures in cost["layers"].items()],
                                  "batch": result.batch, "seconds": seconds,
                                  "seconds_per_inference": seconds / result.batch})
    if not args.quiet:
        on_host = "" if host is None else f" (after {program.host['op_type']} {program.host['node']!r}: on the host)"
        print(f"wrote {args.output}: {', '.join(outputs)}{on_host}; {result.totals.cycles:,} cycles, "
              f"{result.totals.mvm_ops:,} array activations, {result.totals.adc_conversions:,} ADC conversions")
        print(f"{result.batch} inference{'s' if result.batch > 1 else ''} in {seconds * 1e3:.1f} ms: "
              f"{seconds * 1e3 / result.batch:.2f} ms per inference, {result.batch / seconds:.1f} inferences/s")
    return 0
