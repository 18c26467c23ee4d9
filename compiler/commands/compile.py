"""`rcc [compile] MODEL.onnx`: compile a model, optionally verify it, write the program (or IR, or ONNX),
the report and plots, and print the per-layer summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rcc.backends.chip import load_chip
from rcc.backends.onnx_export import save_onnx
from rcc.backends.packing import MODES as PACKING_MODES
from rcc.backends.program import save_program
from rcc.compiler import driver
from rcc.compiler.commands.common import (Parser, add_calibration_arguments, add_common_arguments,
                                          add_cost_model_argument, add_nonfinite_argument, add_target_arguments,
                                          input_files,
                                          optional_output, seed, target_from_args, write_report)
from rcc.compiler.commands.device_options import add_device_arguments, device_from_args
from rcc.compiler.commands.precision_options import add_precision_arguments, precision_settings
from rcc.compiler.commands.progress import showing_progress
from rcc.compiler.frontend.loader import parse_input_shapes
from rcc.compiler.frontend.opsets import conversion_note
from rcc.compiler.localize import Localization, localize
from rcc.compiler.pass_manager import GRAPH_PIPELINE, default_pipeline
from rcc.compiler.report import build_report
from rcc.compiler.schedule_report import format_schedule, is_scheduled
from rcc.compiler.summary import format_table
from rcc.compiler.verify import DEFAULT_SAMPLES, VerifyResult
from rcc.ir.inputs import load_inputs
from rcc.ir.errors import RccError
from rcc.ir.files import check_distinct_files, check_output_folder, check_output_path
from rcc.ir.printer import save_module, weights_path
from rcc.ir.progress import stage

EMIT_SUFFIX = {"program": ".rccp", "ir": ".ir", "xbar": ".xbar.ir", "onnx": ".rcc.onnx"}
EXECUTOR_CHOICES = ("machine", "interpreter")


def sample_count(text: str) -> int:
    """A --samples value: an integer from 2 to 1000 (the input-dependent SNR needs the output's spread)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 2 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is not between 2 and 1000")
    return value


def parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rcc compile", usage="rcc [compile] MODEL.onnx [options]",
                    description="Compile an ONNX model for a ReRAM crossbar accelerator.")
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
    add_calibration_arguments(parser)
    add_precision_arguments(parser)
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
    parser.add_argument("--replicate", default="none", metavar="none|auto|N",
                        help="copies of each layer's weights: none (default), auto (balance the pipeline within "
                             "the --chips budget) or N for every layer")
    parser.add_argument("--pipelining", choices=["none", "layer", "row"], default="none",
                        help="how layers overlap: none (default, one after another), layer (a pipeline of "
                             "layers) or row (a layer starts when its first input rows exist)")
    add_target_arguments(parser)
    add_cost_model_argument(parser)
    parser.add_argument("--verify", action="store_true", help="run against onnxruntime and compare")
    add_device_arguments(parser, mapping=False)
    parser.add_argument("--localize", action="store_true",
                        help="with --verify: compare every intermediate tensor with onnxruntime's, name the first "
                             "outside tolerance and split its layer's error by source")
    parser.add_argument("--executor", choices=list(EXECUTOR_CHOICES), default="machine",
                        help="what runs the compiled model for --verify (default: machine)")
    parser.add_argument("--inputs", help="inputs for --verify as an .npz keyed by input name")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random inputs for --verify")
    parser.add_argument("--samples", type=sample_count, default=DEFAULT_SAMPLES, metavar="K",
                        help=f"input sets --verify runs (default {DEFAULT_SAMPLES}, at least 2): --inputs or seed, "
                             "then seeds seed+1, ...; the input-dependent SNR is measured over them")
    add_nonfinite_argument(parser, "weights, inputs and calibration data")
    parser.add_argument("--report", help="write the machine-readable report (JSON) here")
    add_common_arguments(parser)
    return parser


def format_program_layers(rows: list[dict[str, Any]], total: dict[str, Any]) -> str:
    def utilization(value) -> str:
        return "" if value is None else f"{100 * value:.1f}%"

    table = [[r["name"], r["op"], r["unit"], r["crossbars"], utilization(r["utilization"]), r["macs"], r["cycles"],
              *_cost_cells(r)] for r in rows]
    table.append(["total", f"{len(rows)} layers", "", total["crossbars"], utilization(total["utilization"]),
                  total["macs"], total["cycles"], *_cost_cells(total)])
    cost_headers = ["energy_nj", "latency_us"] if "cost" in total else []
    return format_table(["layer", "op", "unit", "crossbars", "utilization", "macs", "cycles", *cost_headers], table)


def _cost_cells(row: dict[str, Any]) -> list[float]:
    """Energy (nJ) and latency (µs) of a row with a `cost` object, to four significant digits."""
    if "cost" not in row:
        return []
    return [float(f"{row['cost']['energy_pj'] / 1e3:.4g}"), float(f"{row['cost']['latency_ns'] / 1e3:.4g}")]


def _format_metric(value: Any, digits: str) -> str:
    """An error figure: "exact" for a true zero error, "n/a" when it was not measured (None)."""
    if value is None:
        return "n/a"
    return "exact" if value == 0 else format(value, digits)


def _format_snr(snr: Any, error: Any) -> str:
    """An SNR in dB: "inf" when `error` (the matching error figure) is a true zero, "n/a" when not measured."""
    if snr is None:
        return "inf" if error == 0 else "n/a"
    return format(snr, ".1f")


def _format_agreement(metrics: dict[str, Any]) -> str:
    return "/".join(f"{100 * metrics[k]:.0f}%" for k in ("top1_agreement", "top5_agreement") if k in metrics)


def print_verify(result: VerifyResult) -> None:
    rows = [[name, _format_metric(m["max_abs_err"], ".3g"), _format_metric(m["rel_l2"], ".3g"),
             _format_snr(m["snr_db"], m["max_abs_err"]), _format_snr(m.get("snr_input_db"), m.get("rel_l2_input")),
             {True: "ok", False: "below"}.get(m.get("within_input_bound"), ""), _format_agreement(m),
             "ok" if m["passed"] else "FAIL"] for name, m in result.outputs.items()]
    print(format_table(["output", "max_abs_err", "rel_l2", "snr_db", "snr_input_db", "input bound", "top1/top5",
                        "within tolerance"], rows))
    for name, metrics in result.outputs.items():
        if "note" in metrics:
            print(f"{name}: {metrics['note']}")
    verdict = "PASSED" if result.passed else "FAILED"
    extra = result.extra
    details = [f"precision {extra['precision']}"] if "precision" in extra else []
    if "device" in extra:
        details.append(f"device {extra['device']}")
    if "integer_reference_match" in extra:
        details.append(f"integer reference match: {'yes' if extra['integer_reference_match'] else 'NO'}")
    if "tolerance" in extra:
        details.append(f"tolerance: {extra['tolerance']}")
    if "bit_exact" in extra:
        details.append(bit_exact_line(extra))
    if "samples" in extra:
        details.append(f"{extra['samples']} samples")
    if "snr_input_bound" in extra:
        details.append(f"input-dependent bound snr_input_db >= {extra['snr_input_bound']:.1f} "
                       f"(depth {extra['crossbar_depth']}), reported only")
    suffix = f" ({'; '.join(details)})" if details else ""
    print(f"verify ({result.executor} vs onnxruntime): {verdict}{suffix}")
    if extra.get("noise_probe"):
        print(noise_probe_line(extra["noise_probe"]))


def noise_probe_line(probe: dict) -> str:
    """What the failed integer verification's noise probe (compiler/driver.py `noise_probe`) says about the model."""
    if "skipped" in probe:
        return f"noise probe: skipped, {probe['skipped']}"
    figures = probe["output_snr_db"]
    level, bound = probe["input_snr_db"], probe["bound_db"]
    said = f"noise probe: onnxruntime alone, its float inputs perturbed at one operand's rounding level ({level:.1f} dB),"
    diverged = [name for name, snr in figures.items() if snr == "diverged"]
    if diverged:
        return f"{said} drives {diverged[0]} to infinity: the model amplifies noise without bound"
    measured = {name: snr for name, snr in figures.items() if isinstance(snr, (int, float))}
    if not measured:
        unmoved = [name for name, snr in figures.items() if snr == "not moved"]
        return f"{said} moves no output" if unmoved else "noise probe: no float output could be compared element-wise"
    name = min(measured, key=measured.get)
    snr = measured[name]
    said += f" gives {name} at {snr:.1f} dB"
    if snr < bound:
        return (f"{said}, below the {bound:.1f} dB bound: the model amplifies noise by {level - snr:.1f} dB, "
                "so rounding its inputs alone at these widths would miss the bound, on any machine")
    return f"{said} (gain {level - snr:.1f} dB): the model does not explain the miss; --localize shows where it arises"


def bit_exact_line(extra: dict) -> str:
    """A quantized model's bit-exact verdict: outputs, then the quantized boundaries compared."""
    outputs = "yes" if extra["bit_exact"] else f"NO ({extra['differing']} output elements differ)"
    boundaries = f"{extra['boundaries_compared']} boundaries"
    if extra["differing_boundaries"]:
        boundaries += f", first differing {extra['first_differing_boundary']}"
    elif extra["boundaries_compared"]:
        boundaries += " all equal"
    if extra.get("float_kernel_boundary"):
        boundaries += " (a float-kernel boundary: onnxruntime runs that group in float32, rcc exactly)"
    return f"bit-exact vs onnxruntime: {outputs}; {boundaries}"


def print_localization(localization: Localization) -> None:
    rows = [[t["tensor"], t["op"], _format_metric(t["max_abs_err"], ".3g"), _format_metric(t["rel_l2"], ".3g"),
             _format_snr(t["snr_db"], t["max_abs_err"]), "ok" if t["passed"] else "FAIL"] for t in localization.tensors]
    print(format_table(["tensor", "onnx op", "max_abs_err", "rel_l2", "snr_db", "within tolerance"], rows))
    if localization.first is None:
        print(f"localize: every tensor within {localization.tolerance}")
        return
    print(f"localize: first tensor outside {localization.tolerance}: {localization.first}")
    attribution = localization.attribution
    if attribution is None:
        return
    sources = ", ".join(f"{name} {figures['rel_l2']:.3g}" if figures is not None else f"{name} not modelled"
                        for name, figures in attribution["sources"].items())
    against = attribution.get("against", "float output")
    print(f"layer {attribution['layer']}: rel L2 {attribution['rel_l2']:.3g} against its {against}; by source: "
          f"{sources}; {attribution['clipped_inputs']} inputs clipped")
    for array in attribution["saturated_arrays"]:
        columns = array["columns"]
        shown = ", ".join(map(str, columns[:8])) + (f", … ({len(columns)} in all)" if len(columns) > 8 else "")
        print(f"  ADC saturated on array {array['array']} (group {array['group']}, weight rows "
              f"{array['rows'][0]}–{array['rows'][1]}): output columns {shown}")


def _checked_outputs(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None]:
    """The output, report and plot paths, each checked before any work starts (and none an input or
    another output)."""
    output = check_output_path(args.output if args.output is not None
                               else Path(args.model).with_suffix(EMIT_SUFFIX[args.emit]), "-o")
    outputs = [("-o", output)]
    if args.emit in ("ir", "xbar"):  # large constants go to the .npz beside the text
        weights_flag = f"-o {output}: its weights file"
        outputs.append((weights_flag, check_output_path(weights_path(output), weights_flag)))
    report = optional_output(args.report, "--report")
    outputs.append(("--report", report))
    check_distinct_files(outputs, input_files(args, ("the input model", args.model)))
    plot = None if args.plot is None else check_output_folder(args.plot, "--plot")
    return output, report, plot


def _write_output(compiled: driver.Compiled, emit: str, output: Path) -> list[Path]:
    if emit == "ir":
        return save_module(compiled.graph, output)
    if emit == "xbar":
        return save_module(compiled.xbar, output)
    if emit == "onnx":
        save_onnx(compiled.graph, output)
        return [output]
    save_program(compiled.program, output)
    return [output]


def compile_command(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    with showing_progress(args):
        return _compile(args)


def mixed_precision_line(summary: dict) -> str:
    """One line on what `--mixed-precision` chose and measured."""
    held_out = f"on {summary['samples']} {'held-out' if summary['held_out'] else 'calibration'} inputs"
    kinds = {"input": "inputs", "weight": "weights"}
    if not summary["reached"]:
        return (f"mixed precision: goal {summary['goal_db']:.1f} dB MISSED, out of reach of "
                f"{' and '.join(summary['widths'].split('+'))} widths: SNR {held_out} "
                f"{summary['snr_db_before']:.1f} dB, {summary['snr_db']:.1f} dB with every free one at 16 bits (or the "
                f"widest the arrays hold); "
                f"nothing widened")
    chosen = []
    for kind in ("input", "weight"):
        counts: dict[int, int] = {}
        for bits in summary[f"widened_{kind}s"].values():
            counts[bits] = counts.get(bits, 0) + 1
        if counts:
            chosen.append(f"{kinds[kind]} of " + ", ".join(f"{count} at {bits} bits"
                                                           for bits, count in sorted(counts.items())))
    return (f"mixed precision: of {summary['layers']} crossbar layers, widened {'; '.join(chosen) or 'none'} "
            f"(other widths unchanged); "
            f"SNR {held_out} {summary['snr_db_before']:.1f} -> {summary['snr_db']:.1f} dB, goal "
            f"{summary['goal_db']:.1f} dB reached")


def _compile(args: argparse.Namespace) -> int:
    target = target_from_args(args)
    chip = load_chip(args.cost_model)
    shapes = parse_input_shapes(args.input_shape)
    inputs = load_inputs(args.inputs, "--inputs", args.allow_nonfinite) if args.inputs else None
    calibration = load_inputs(args.calibrate, "--calibrate", args.allow_nonfinite) if args.calibrate else None
    output, report_path, plot_folder = _checked_outputs(args)
    prune = driver.PruneBudget.parse(args.prune_budget) if args.prune_budget else None
    if args.localize and not args.verify:
        raise RccError("--localize needs --verify")
    device_flags = [flag for flag, value in (("--device", args.device), ("--time", args.time), ("--faults", args.faults),
                                             ("--fault-map", args.fault_map)) if value is not None]
    if device_flags and not args.verify:
        raise RccError(f"{device_flags[0]} acts on the machine run of --verify (or use rcc run / rcc eval)")
    device, faults = device_from_args(args)
    with stage("compile"):
        compiled = driver.compile_model(args.model, target, args.precision, shapes,
                                        default_pipeline(args.deconv, args.pipeline), calibration,
                                        args.print_after_all, args.deconv, args.packing, prune,
                                        replicate=args.replicate, pipelining=args.pipelining,
                                        allow_nonfinite=args.allow_nonfinite,
                                        calibration_method=args.calibration_method,
                                        **precision_settings(args, target))
    result = localization = None
    if args.verify:
        with stage("verify"):
            result = driver.verify_compiled(args.model, compiled, args.executor, inputs, args.seed,
                                            args.allow_nonfinite, args.samples, device, args.device_seed, faults)
        if args.localize:
            with stage("localize"):
                localization = localize(args.model, compiled, inputs, args.seed, device, args.device_seed, faults)
            result.extra["localization"] = localization.to_json()
    report = build_report(compiled, result, {"model": str(args.model), "deconv": args.deconv,
                                             "packing": args.packing, "cost_model": args.cost_model,
                                             "replicate": args.replicate, "pipelining": args.pipelining}, chip)
    converted = conversion_note(args.model)
    if converted:
        report["converted"] = converted
    with stage("write"):
        written = _write_output(compiled, args.emit, output)
        if plot_folder is not None:
            from rcc.compiler.plot import plot_energy_breakdown, plot_sparse_layers  # matplotlib only when asked
            from rcc.compiler.schedule_report import plot_pipeline

            written += plot_sparse_layers(compiled.program, plot_folder)
            written.append(plot_energy_breakdown(report, plot_folder))
            written.append(plot_pipeline(report, plot_folder))
        if report_path is not None:
            write_report(report_path, report)
    if not args.quiet:
        if converted:
            print(f"{args.model}: {converted}")
        print(format_program_layers(report["layers"], report["totals"]))
        if "host" in report:
            host = report["host"]
            print(f"host: {host['nodes']} nodes from {host['op_type']} {host['node']!r} onward run on onnxruntime "
                  f"(data-dependent shapes), reading {', '.join(host['inputs'])}")
        if is_scheduled(report["totals"]["cost"], report["layers"]):
            print(format_schedule(report))
        if compiled.pruning is not None:
            p = compiled.pruning
            removed = sum(layer["removed_blocks"] for layer in p["layers"])
            print(f"pruned {removed} array blocks ({p['fraction']:.0%} of each layer's); output error "
                  f"rel L2 {p['rel_l2_error']:.3g} against onnxruntime on {p['samples']} calibration inputs")
        if compiled.mixed_precision is not None:
            print(mixed_precision_line(compiled.mixed_precision))
        print("wrote " + ", ".join(str(p) for p in written))
    if result is not None:
        print_verify(result)
    if localization is not None:
        print_localization(localization)
    return 0 if result is None or result.passed else 1
