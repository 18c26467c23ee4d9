"""Accuracy on real devices: a data set through the machine (device seeds 0…N−1) and through onnxruntime.

    result = evaluate_model("models/trained/digits_mlp.onnx", {"pixels": x}, labels=y,
                            device=load_device("mnsim"), trials=5, fault_aware=True)
    result["accuracy"]["mean"], result["accuracy"]["ci95"], result["accuracy"]["trials"]

The model is compiled once for a batch size (its inputs' leading axis, fixed with an input-shape override:
the model's own batch when it declares a number there, since it cannot run another, else `batch`, 64 by
default, at most the number of samples), calibrated on the data's first samples, and, with `fault_aware`,
mapped around the chip's stuck cells (the `fault-aware` pass). Each trial programs a fresh machine with
device seed `seed + trial` (the chip, i.e. its fault map, stays the same) and runs the data batch by batch,
the trials as tasks on a Dask cluster when a client is given (`rcc eval --trials N` starts a local one);
the last batch is padded by repeating its last sample and the padding dropped. Scores per trial: top-1 and
top-5 accuracy with labels, else top-1 agreement with onnxruntime; output SNR against onnxruntime in dB.
Reported as the mean and the half-width of its 95% interval (Student's t over trials; 0 for one trial).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from scipy import stats

from rcc.backends.device import Device
from rcc.backends.faults import FaultMap
from rcc.backends.program import Program
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model
from rcc.compiler.frontend.loader import declared_inputs, load_onnx
from rcc.compiler.pass_manager import default_pipeline
from rcc.compiler.passes.fault_aware import FaultAware
from rcc.compiler.verify import onnxruntime_outputs, snr_db
from rcc.ir.errors import RccError
from rcc.ir.progress import tracked
from rcc.runtime.devices import chip_faults
from rcc.runtime.machine import Machine

CALIBRATION_BATCHES = 4
DEFAULT_BATCH = 64   # samples per machine run when the model's batch is not static


def summary(values: list[float]) -> dict[str, Any]:
    """{"mean", "ci95", "trials"}: the mean and the half-width of its 95% Student-t interval."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else None
    if len(finite) > 1:
        half = float(stats.t.ppf(0.975, len(finite) - 1) * np.std(finite, ddof=1) / math.sqrt(len(finite)))
    else:
        half = 0.0 if finite else None
    return {"mean": mean, "ci95": half, "trials": values}


def _checked_data(path: str | os.PathLike, data: dict[str, np.ndarray], labels: np.ndarray | None
                  ) -> tuple[list[str], int, int | None]:
    """The model's input names, the number of samples in `data` and the model's static batch (None when it
    has none); RccError naming --data or --labels when they do not fit the model."""
    declared = declared_inputs(load_onnx(path))
    names = list(declared)
    missing = [name for name in names if name not in data]
    if missing:
        raise RccError(f"--data: input {missing[0]!r} of {path} is missing (the file has {', '.join(data) or 'nothing'})")
    counts = {np.asarray(data[name]).shape[0] if np.asarray(data[name]).ndim else 0 for name in names}
    if len(counts) != 1 or 0 in counts:
        raise RccError("--data: every input needs the same number of samples along its first axis")
    samples = counts.pop()
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != samples):
        raise RccError(f"--labels: expected {samples} integer labels, got shape {list(labels.shape)}")
    if labels is not None and labels.dtype.kind not in "iu":
        raise RccError(f"--labels: labels must be integers, got {labels.dtype}")
    return names, samples, _static_batch(path, declared, data)


def _static_batch(path: str | os.PathLike, declared: dict[str, list[int | None] | None],
                  data: dict[str, np.ndarray]) -> int | None:
    """The inputs' leading dim where the model declares it as a number (None: a symbolic batch); RccError
    naming --data when an input's samples do not have the rank and dims the model declares."""
    for name, dims in declared.items():
        shape = np.shape(data[name])
        if dims is not None and (len(shape) != len(dims) or
                                 any(dim is not None and dim != size for dim, size in zip(dims[1:], shape[1:]))):
            text = ", ".join("N" if dim is None else str(dim) for dim in dims)
            raise RccError(f"--data: input {name!r} is {list(shape)} (samples first), but {path} declares it as "
                           f"[{text}]")
    static = {name: dims[0] for name, dims in declared.items() if dims and dims[0]}
    if len(set(static.values())) > 1:
        raise RccError(f"--data: {path}'s inputs have different static batches "
                       f"({', '.join(f'{name}: {dim}' for name, dim in static.items())}); rcc eval runs one batch size")
    return next(iter(static.values()), None)


def _checked_labels(labels: np.ndarray, reference: np.ndarray, output: str) -> np.ndarray:
    """`labels` as int64 class ids; RccError naming the first that is not one of `output`'s classes (as
    many as the reference output has values per sample, which is what a label is scored against)."""
    classes = reference.reshape(reference.shape[0], -1).shape[1]
    outside = np.flatnonzero((labels < 0) | (labels >= classes))   # before the cast: uint64 2^64 - 1 is not -1
    if outside.size:
        raise RccError(f"--labels: label {labels[outside[0]]} at sample {outside[0]} is outside the {classes} "
                       f"classes of output {output!r} (0 to {classes - 1})")
    return labels.astype(np.int64)


def _batches(data: dict[str, np.ndarray], names: list[str], samples: int, batch: int):
    for start in range(0, samples, batch):
        stop = min(start + batch, samples)
        chunk = {}
        for name in names:
            part = np.asarray(data[name][start:stop])
            if stop - start < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - (stop - start), axis=0)])
            chunk[name] = part
        yield start, stop, chunk


def _scores(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    flat, ref = outputs.reshape(outputs.shape[0], -1), reference.reshape(reference.shape[0], -1)
    truth = labels if labels is not None else ref.argmax(axis=1)
    scores = {"accuracy": float((flat.argmax(axis=1) == truth).mean())}
    if labels is not None and flat.shape[1] >= 5:
        top5 = np.argsort(-flat, axis=1)[:, :5]
        scores["top5"] = float((top5 == truth[:, None]).any(axis=1).mean())
    scores["snr_db"] = snr_db(float(np.sum(ref.astype(np.float64) ** 2)),
                              float(np.sum((flat.astype(np.float64) - ref) ** 2)))
    return scores


def run_trial(program: Program, device: Device, seed: int, faults: FaultMap | None,
              batches: list[tuple[int, int, dict[str, np.ndarray]]], output: str, label: str = "trial"
              ) -> np.ndarray:
    """One trial: a machine programmed with device seed `seed` runs every batch; `output` over the samples."""
    machine = Machine(program, device=device, seed=seed, faults=faults)
    return np.concatenate([machine.run(chunk).outputs[output][:stop - start]
                           for start, stop, chunk in tracked(batches, label)])


def evaluate_model(path: str | os.PathLike, data: dict[str, np.ndarray], labels: np.ndarray | None = None,
                   target: Target | None = None, device: Device | None = None, faults: FaultMap | None = None,
                   trials: int = 1, seed: int = 0, batch: int | None = None, fault_aware: bool = False,
                   output: str | None = None, client: Any = None) -> dict[str, Any]:
    """Run `data` (input name → [samples, ...]) through the machine `trials` times and through onnxruntime;
    the report dict described in the module docstring. With a Dask `client` (distributed.Client) the trials
    run as its tasks, with the same seeds and so the same figures."""
    if trials < 1 or (batch is not None and batch < 1):
        raise RccError("--trials and --batch must be at least 1")
    names, samples, static_batch = _checked_data(path, data, labels)
    if static_batch is not None and batch is not None and batch != static_batch:
        raise RccError(f"--batch {batch}: {path} has a static batch of {static_batch}; give --batch {static_batch} "
                       f"or leave --batch out")
    batch = static_batch or min(batch or DEFAULT_BATCH, samples)
    device = device or Device()
    chip = chip_faults(device, faults)
    shapes = {name: (batch, *np.asarray(data[name]).shape[1:]) for name in names}
    batches = list(_batches(data, names, samples, batch))
    calibration_batches = batches[:max(1, min(samples // batch, CALIBRATION_BATCHES))]  # full ones, else the padded
    calibration = {name: np.stack([chunk[name] for _, _, chunk in calibration_batches]) for name in names}
    if fault_aware and chip is None:
        raise RccError("--fault-aware needs stuck cells to map around: give --faults, --fault-map or a device "
                       "with stuck-at rates")
    pipeline = [*default_pipeline(), FaultAware(faults=chip), "dce"] if fault_aware else None
    compiled = compile_model(path, target, input_shapes=shapes, calibration=calibration, pipeline=pipeline)
    output = output or compiled.program.outputs[0]
    if output not in compiled.program.outputs:
        raise RccError(f"--output {output!r}: the model's outputs are {', '.join(compiled.program.outputs)}")
    reference = np.concatenate([onnxruntime_outputs(path, chunk)[output][:stop - start]
                                for start, stop, chunk in batches])
    if labels is not None:
        labels = _checked_labels(labels, reference, output)
    seeds = [seed + trial for trial in range(trials)]
    if client is not None and trials > 1:   # one Dask task per trial; the program and batches sent once
        shared = client.scatter([compiled.program, batches], broadcast=True)
        futures = client.map(run_trial, [shared[0]] * trials, [device] * trials, seeds, [faults] * trials,
                             [shared[1]] * trials, [output] * trials, pure=False)
        outputs = client.gather(futures)
    else:
        outputs = [run_trial(compiled.program, device, trial_seed, faults, batches, output, f"trial {trial}")
                   for trial, trial_seed in enumerate(tracked(seeds, "eval trials"))]
    per_trial = [_scores(result, reference, labels) for result in outputs]
    report = {"model": str(path), "samples": samples, "batch": batch, "trials": trials, "seed": seed,
              "device": device.to_dict(), "fault_aware": fault_aware, "output": output,
              "metric": "top-1 accuracy" if labels is not None else "top-1 agreement with onnxruntime"}
    for key in per_trial[0]:
        report[key] = summary([scores[key] for scores in per_trial])
    if labels is not None:
        report["onnxruntime_accuracy"] = _scores(reference, reference, labels)["accuracy"]
    fault_report = next((r for r in compiled.reports if r.name == "fault-aware"), None)
    if fault_report is not None:
        report["fault_mapping"] = dict(fault_report.figures)
    return report
