"""The `rcc` command line. Every action is a Python call in `compiler.driver`; this file only parses
options, prints, and maps errors to exit codes: 0 success, 1 verification outside tolerance, 2 bad input.

    rcc MODEL.onnx [--emit ir] [-o PATH] [--verify] [--executor interpreter] [--report FILE.json]
    rcc opt FILE.ir -p PASS,PASS [--print-after-all] [-o OUT.ir]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rcc.backends.onnx_export import save_onnx
from rcc.backends.packing import MODES as PACKING_MODES
from rcc.backends.program import load_program, save_program
from rcc.backends.target import add_target_arguments, target_from_args
from rcc.compiler import driver, prune_model
from rcc.compiler.frontend.loader import parse_input_shapes
from rcc.compiler.pass_manager import GRAPH_PIPELINE, run_pipeline
from rcc.compiler.report import layer_rows, totals
from rcc.compiler.summary import format_table
from rcc.compiler.verify import load_inputs
from rcc.ir.errors import RccError
from rcc.ir.parser import load_module
from rcc.ir.printer import write_atomically, npz_bytes, print_module, save_module
from rcc.runtime.machine import Machine

EMIT_SUFFIX = {"program": ".rccp", "ir": ".ir", "xbar": ".xbar.ir", "onnx": ".rcc.onnx"}
EXECUTOR_CHOICES = ("machine", "interpreter")


class UsageError(RccError):
    """A command-line usage mistake."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        command = self.prog.removeprefix("rcc").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def _compile_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rcc", description="Compile an ONNX model for a ReRAM crossbar accelerator.")
    parser.add_argument("model", help="the ONNX model")
    parser.add_argument("-o", "--output", help="where to write the result (default: beside the model)")
    parser.add_argument("--emit", choices=list(EMIT_SUFFIX), default="program",
                        help="what to write: the program (default), graph-level IR, crossbar-level IR, or the "
                             "graph-level IR as ONNX (rewrites included)")
    parser.add_argument("-p", "--pipeline", default=",".join(GRAPH_PIPELINE), help="graph passes, comma-separated")
    parser.add_argument("--print-after-all", action="store_true", help="print the IR after each pass")
    parser.add_argument("--input-shape", action="append", metavar="NAME=D1xD2...",
                        help="static shape for an input with dynamic dimensions (repeatable)")
    parser.add_argument("--precision", choices=["int", "float"], default="int",
                        help="int: quantised, bit-accurate (default); float: ideal analog arithmetic")
    parser.add_argument("--calibrate", metavar="FILE.npz", help="calibration inputs (default: seeded random)")
    parser.add_argument("--packing", choices=list(PACKING_MODES), default="best",
                        help="how sparse layers are packed onto arrays (default: best; dense = plain tiling)")
    parser.add_argument("--prune-budget", metavar="FRACTION|error=MAX",
                        help="crossbar-grained pruning (lossy, off by default): remove this fraction of each "
                             "layer's least salient array blocks, or as many as keep the output error "
                             "(rel L2 vs onnxruntime on calibration inputs) within MAX")
    parser.add_argument("--plot", metavar="DIR", help="write a PNG per sparse layer: array occupancy before and "
                                                      "after packing")
    parser.add_argument("--deconv", choices=list(driver.DECONV_PASSES), default="pixelwise",
                        help="how transposed convolutions are lowered (default: pixelwise, zero-free)")
    add_target_arguments(parser)
    parser.add_argument("--verify", action="store_true", help="run against onnxruntime and compare")
    parser.add_argument("--executor", choices=list(EXECUTOR_CHOICES), default="machine",
                        help="what runs the compiled model for --verify (default: machine)")
    parser.add_argument("--inputs", help="inputs for --verify as an .npz keyed by input name")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs for --verify")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="accept NaN/Inf in weights, inputs and calibration data and propagate them as "
                             "onnxruntime does (default: refuse them, naming the tensor)")
    parser.add_argument("--report", help="write the machine-readable report (JSON) here")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors and the verdict")
    return parser


def _opt_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rcc opt", description="Run passes on IR text.")
    parser.add_argument("ir", help="IR text (weights from the .npz beside it)")
    parser.add_argument("-p", "--pipeline", required=True, help="passes to run, comma-separated")
    parser.add_argument("--print-after-all", action="store_true", help="print the IR after each pass")
    parser.add_argument("-o", "--output", help="write the result here (with its .npz) instead of stdout")
    return parser


def _run_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rcc run", description="Execute a compiled program on the machine model.")
    parser.add_argument("program", help="the program (.rccp)")
    parser.add_argument("--inputs", required=True, help="inputs as an .npz keyed by input name")
    parser.add_argument("-o", "--output", required=True, help="write the outputs here (.npz)")
    parser.add_argument("--report", help="write the machine's counts here (JSON)")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="accept NaN/Inf inputs and propagate them as onnxruntime does")
    return parser


def _seed(text: str) -> int:
    """A --seed value: an integer numpy's generators accept (0 ≤ seed < 2^63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 2^63 - 1")
    return value


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value


def write_report(path: str, report: dict[str, Any]) -> None:
    target = Path(path)
    if not target.parent.exists():
        raise RccError(f"--report {path}: directory {target.parent} does not exist")
    write_atomically(target, (json.dumps(_json_number(report), indent=2) + "\n").encode())


def _format_metric(value: Any, digits: str) -> str:
    return "exact" if value is None else format(value, digits)


def format_program_layers(rows: list[dict[str, Any]], total: dict[str, Any]) -> str:
    def utilization(value) -> str:
        return "" if value is None else f"{100 * value:.1f}%"

    table = [[r["name"], r["op"], r["crossbars"], utilization(r["utilization"]), r["macs"], r["cycles"]] for r in rows]
    table.append(["total", f"{len(rows)} layers", total["crossbars"], utilization(total["utilization"]),
                  total["macs"], total["cycles"]])
    return format_table(["layer", "op", "crossbars", "utilization", "macs", "cycles"], table)


def print_verify(result) -> None:
    rows = [[name, _format_metric(m["max_abs_err"], ".3g"), _format_metric(m["rel_l2"], ".3g"),
             "inf" if m["snr_db"] is None and m["max_abs_err"] == 0 else _format_metric(m["snr_db"], ".1f"),
             "ok" if m["passed"] else "FAIL"] for name, m in result.outputs.items()]
    print(format_table(["output", "max_abs_err", "rel_l2", "snr_db", "within tolerance"], rows))
    verdict = "PASSED" if result.passed else "FAILED"
    extra = result.extra
    details = [f"precision {extra['precision']}"] if "precision" in extra else []
    if "integer_reference_match" in extra:
        details.append(f"integer reference match: {'yes' if extra['integer_reference_match'] else 'NO'}")
    if "tolerance" in extra:
        details.append(f"tolerance: {extra['tolerance']}")
    suffix = f" ({'; '.join(details)})" if details else ""
    print(f"verify ({result.executor} vs onnxruntime): {verdict}{suffix}")


def _check_output_dir(path: Path, flag: str) -> None:
    if not path.parent.exists():
        raise RccError(f"{flag} {path}: directory {path.parent} does not exist")


def compile_command(argv: list[str]) -> int:
    args = _compile_parser().parse_args(argv)
    target = target_from_args(args)
    shapes = parse_input_shapes(args.input_shape)
    inputs = load_inputs(args.inputs, "--inputs", args.allow_nonfinite) if args.inputs else None
    calibration = load_inputs(args.calibrate, "--calibrate", args.allow_nonfinite) if args.calibrate else None
    output = Path(args.output) if args.output else Path(args.model).with_suffix(EMIT_SUFFIX[args.emit])
    _check_output_dir(output, "-o")
    if args.report:
        _check_output_dir(Path(args.report), "--report")
    prune = driver.PruneBudget.parse(args.prune_budget) if args.prune_budget else None
    compiled = driver.compile_program(args.model, target, args.precision, shapes, args.pipeline, calibration,
                                      args.print_after_all, args.deconv, args.packing, prune, args.allow_nonfinite)
    rows = layer_rows(compiled.program, target)
    report: dict[str, Any] = {"model": str(args.model), "target": target.to_dict(), "precision": args.precision,
                              "deconv": args.deconv, "packing": args.packing,
                              "totals": totals(rows), "layers": rows}
    if compiled.pruning is not None:
        report["pruning"] = compiled.pruning
    result = None
    if args.verify:
        result = driver.verify_compiled(args.model, compiled, args.executor, inputs, args.seed, args.allow_nonfinite)
        report["verify"] = result.to_json()
    written = _write_output(compiled, args.emit, output)
    if args.plot:
        from rcc.compiler.plot import plot_sparse_layers  # matplotlib loads only when pictures are asked for

        written += plot_sparse_layers(compiled.program, Path(args.plot))
    if args.report:
        write_report(args.report, report)
    if not args.quiet:
        print(format_program_layers(rows, report["totals"]))
        if compiled.pruning is not None:
            p = compiled.pruning
            removed = sum(layer["removed_blocks"] for layer in p["layers"])
            print(f"pruned {removed} array blocks ({p['fraction']:.0%} of each layer's); output error "
                  f"rel L2 {p['rel_l2_error']:.3g} against onnxruntime on {p['samples']} calibration inputs")
        print("wrote " + ", ".join(str(p) for p in written))
    if result is not None:
        print_verify(result)
        return 0 if result.passed else 1
    return 0


def _write_output(compiled, emit: str, output: Path) -> list[Path]:
    if emit == "ir":
        return save_module(compiled.graph, output)
    if emit == "xbar":
        return save_module(compiled.xbar, output)
    if emit == "onnx":
        save_onnx(compiled.graph, output)
        return [output]
    save_program(compiled.program, output)
    return [output]


def run_command(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    _check_output_dir(Path(args.output), "-o")
    program = load_program(args.program)
    result = Machine(program).run(load_inputs(args.inputs, "--inputs", args.allow_nonfinite),
                                  allow_nonfinite=args.allow_nonfinite)
    write_atomically(Path(args.output), npz_bytes(result.outputs))
    if args.report:
        write_report(args.report, {"program": args.program, "totals": result.totals.to_json()})
    print(f"wrote {args.output}: {', '.join(result.outputs)}; {result.totals.cycles:,} cycles, "
          f"{result.totals.mvm_ops:,} array activations, {result.totals.adc_conversions:,} ADC conversions")
    return 0


def opt_command(argv: list[str]) -> int:
    args = _opt_parser().parse_args(argv)
    if args.output:
        _check_output_dir(Path(args.output), "-o")
    module = load_module(args.ir)
    run_pipeline(module, args.pipeline, print_after_all=args.print_after_all)
    if args.output:
        save_module(module, args.output)
    elif not args.print_after_all:
        sys.stdout.write(print_module(module))
    return 0


COMMANDS = {"opt": opt_command, "run": run_command, "prune": prune_model.prune_command}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return compile_command(argv)
    except RccError as err:
        print(f"rcc: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("rcc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
