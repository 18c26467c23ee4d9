"""`rcc eval MODEL.onnx --data X.npz [--labels Y.npy] [--device ...] [--trials N]`: accuracy and output SNR on
real devices, mean ± 95% interval over device seeds (the Python call is rcc.compiler.evaluate)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from rcc.compiler.commands.common import (Parser, add_common_arguments, add_target_arguments, input_files,
                                          optional_output, target_from_args, write_report)
from rcc.compiler.commands.device_options import add_device_arguments, device_from_args
from rcc.compiler.commands.progress import showing_progress
from rcc.compiler.evaluate import DEFAULT_BATCH, evaluate_model
from rcc.ir.inputs import load_inputs
from rcc.ir.errors import RccError
from rcc.ir.files import check_distinct_files
from rcc.ir.limits import load_npy



def parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rcc eval", description="Run a data set through the machine and onnxruntime; report "
                                                 "accuracy and output SNR over device seeds.")
    parser.add_argument("model", help="the ONNX model")
    parser.add_argument("--data", required=True, metavar="X.npz", help="inputs keyed by input name, samples first")
    parser.add_argument("--labels", metavar="Y.npy", help="integer class labels (else: agreement with onnxruntime)")
    parser.add_argument("--trials", type=int, default=1, metavar="N", help="device seeds to run (default 1)")
    parser.add_argument("--batch", type=int, metavar="B",
                        help=f"samples per machine run (default: the model's batch when it is a number, else "
                             f"{DEFAULT_BATCH})")
    parser.add_argument("--output", metavar="NAME", help="the model output to score (default: the first)")
    parser.add_argument("--report", metavar="FILE.json", help="write the figures here (JSON)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="with --trials > 1: the local Dask cluster's worker processes (default: one per core, "
                             "at most one per trial)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the trials on this Dask cluster instead")
    add_device_arguments(parser)
    add_target_arguments(parser)
    add_common_arguments(parser)
    return parser


def load_labels(path: str) -> np.ndarray:
    """The integer class labels of `--labels` as int64, one per sample (evaluate_model checks them against
    the model's classes)."""
    labels = load_npy(path, "--labels")
    if labels.dtype.kind not in "iu":
        raise RccError(f"--labels {path}: labels must be integers, got {labels.dtype}")
    beyond = np.flatnonzero(labels > np.iinfo(np.int64).max)   # uint64 values the cast would wrap to negatives
    if beyond.size:
        raise RccError(f"--labels {path}: label {labels[beyond[0]]} at sample {beyond[0]} is not a class number")
    return labels.astype(np.int64)


def _figure(entry: dict[str, Any], scale: float = 1.0, unit: str = "") -> str:
    if entry["mean"] is None:
        return "n/a"
    mean, half = entry["mean"] * scale, entry["ci95"] * scale
    return f"{mean:.2f}{unit} ± {half:.2f}{unit}" if math.isfinite(mean) else "inf"


@contextmanager
def trial_client(args: argparse.Namespace) -> Iterator[Any]:
    """The Dask client the trials run on (None for a single trial). Dask is imported only then: it takes
    seconds to import."""
    if args.trials <= 1:
        yield None
        return
    from rcc.compiler.sweep import sweep_client

    workers = args.workers or min(args.trials, os.cpu_count() or 1)
    with sweep_client(args.scheduler, workers) as client:
        yield client


def eval_command(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    with showing_progress(args):
        report_path = optional_output(args.report, "--report")
        check_distinct_files([("--report", report_path)], input_files(args, ("the input model", args.model)))
        target = target_from_args(args)
        device, faults = device_from_args(args)
        data = load_inputs(args.data, "--data")
        labels = None if args.labels is None else load_labels(args.labels)
        if args.workers is not None and args.workers < 1:
            raise RccError(f"--workers {args.workers}: at least 1")
        with trial_client(args) as client:
            result = evaluate_model(args.model, data, labels, target, device, faults, trials=args.trials,
                                    seed=args.device_seed, batch=args.batch, fault_aware=args.fault_aware,
                                    output=args.output, client=client)
        if report_path is not None:
            write_report(report_path, result)
    if not args.quiet:
        line = f"{result['metric']}: {_figure(result['accuracy'], 100, '%')}"
        if "top5" in result:
            line += f", top-5 {_figure(result['top5'], 100, '%')}"
        line += f"; output SNR {_figure(result['snr_db'], unit=' dB')}"
        print(f"{args.model}: {result['samples']} samples × {result['trials']} trials on device "
              f"{result['device']['name']!r}{' (fault-aware mapping)' if args.fault_aware else ''}")
        print(line)
        if "onnxruntime_accuracy" in result:
            print(f"onnxruntime (float): {100 * result['onnxruntime_accuracy']:.2f}%")
        if "fault_mapping" in result:
            fm = result["fault_mapping"]
            print(f"faulty cells holding non-zero levels: {fm['faulty_nonzero_before']} → {fm['faulty_nonzero_after']}"
                  f"; fault cost {fm['fault_cost_before']:.0f} → {fm['fault_cost_after']:.0f}")
    return 0
