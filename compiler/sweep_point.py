"""One sweep point, evaluated: compile a model with the point's settings, verify it against onnxruntime,
cost it, and return one flat results row. This is the task a Dask worker runs; it is also the Python API
for a single point, so a sweep's rows equal the same points run one by one:

    model = SweepModel.load("models/mlp.onnx")
    row = evaluate_point(model, {"xbar": "64x64", "adc_bits": 6})
    row["status"], row["energy_pj"], row["snr_db"]

A point whose settings or compilation fail gives a row with `status` "failed" and the error's first line
in `error`; the sweep goes on. The model travels as bytes (`SweepModel`), written once per worker process
to a temporary file that onnxruntime and the frontend read. With a data set (`SweepData`, `rcc sweep
--data`), the row also has the point's accuracy on its device keys, measured by `evaluate_model`:

    row = evaluate_point(model, {"adc_bits": 4, "device": "mnsim"}, data=SweepData.load("x.npz", "y.npy"))
    row["accuracy"], row["accuracy_ci95"], row["top5"]
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rcc.backends.chip import load_chip
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.evaluate import evaluate_model
from rcc.compiler.frontend.loader import declared_inputs, load_onnx
from rcc.compiler.report import layer_rows, totals
from rcc.compiler.sweep_space import Point, point_id, point_settings
from rcc.compiler.verify import VerifyResult
from rcc.ir.errors import RccError
from rcc.runtime.cost import estimate_cost

FIGURE_COLUMNS = ("crossbars", "crossbars_dense", "utilization", "macs", "cycles", "energy_pj", "latency_ns",
                  "throughput_inf_s", "area_mm2", "power_mw", "tops_per_w", "snr_db", "rel_l2", "max_abs_err",
                  "verify_passed")
ACCURACY_COLUMNS = ("accuracy", "accuracy_ci95", "top5")  # with --data; top5 with labels and ≥ 5 classes
TIMING_COLUMNS = ("seconds",)  # measured, so they differ between runs of the same point


@dataclass(frozen=True)
class SweepModel:
    """A model as a sweep ships it: its name (the file's stem), its bytes and their digest."""

    name: str
    data: bytes
    digest: str

    @staticmethod
    def load(path: str | os.PathLike) -> SweepModel:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise RccError(f"{path}: cannot read the model: {err.strerror or err}") from None
        return SweepModel(Path(path).stem, data, hashlib.sha256(data).hexdigest())

    def local_path(self) -> Path:
        """The model as a file in this process's temporary folder, written on first use."""
        path = _model_folder() / f"{self.digest[:24]}.onnx"
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(self.data)
            partial.replace(path)
        return path

    def declared_inputs(self) -> dict[str, list[int | None] | None]:
        """The model's graph inputs with their declared dims (the loader's `declared_inputs`), read once per process."""
        if self.digest not in _DECLARED:
            _DECLARED[self.digest] = declared_inputs(load_onnx(self.local_path()))
        return _DECLARED[self.digest]


@dataclass(frozen=True)
class SweepData:
    """A data set as a sweep ships it: inputs (name → [samples, ...]), optional labels, the trials (device
    seeds) each point's accuracy averages over, and a digest that makes results of other data distinct."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    trials: int = 1
    digest: str = ""

    @staticmethod
    def of(inputs: dict[str, np.ndarray], labels: np.ndarray | None = None, trials: int = 1) -> SweepData:
        digest = hashlib.sha256(str(trials).encode())
        for name in sorted(inputs):
            digest.update(name.encode() + np.ascontiguousarray(inputs[name]).tobytes())
        if labels is not None:
            digest.update(b"labels" + np.ascontiguousarray(labels).tobytes())
        return SweepData(inputs, labels, trials, digest.hexdigest())


_FOLDER: list[Path] = []
_DECLARED: dict[str, dict[str, list[int | None] | None]] = {}   # model digest → its declared inputs


def _model_folder() -> Path:
    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="rcc-sweep-")))
    return _FOLDER[0]


def _verify_figures(result: VerifyResult) -> dict[str, Any]:
    """The worst output's figures: the lowest SNR (inf when exact), the largest errors, whether all passed."""
    outputs = list(result.outputs.values())

    def snr(metrics: dict[str, Any]) -> float:
        if metrics["snr_db"] is not None:
            return metrics["snr_db"]
        return math.inf if metrics["max_abs_err"] == 0 else -math.inf

    return {"snr_db": min(map(snr, outputs)),
            "rel_l2": max(math.inf if m["rel_l2"] is None else m["rel_l2"] for m in outputs),
            "max_abs_err": max(math.inf if m["max_abs_err"] is None else m["max_abs_err"] for m in outputs),
            "verify_passed": result.passed}


def accuracy_figures(model: SweepModel, point: Point, data: SweepData) -> dict[str, Any]:
    """`evaluate_model` on `data` with the point's target and device keys: accuracy (mean over the trials),
    the half-width of its 95% interval and, where it applies, top-5 accuracy."""
    settings = point_settings(point)
    result = evaluate_model(model.local_path(), data.inputs, data.labels, settings.target, settings.device,
                            trials=data.trials, seed=settings.device_seed, fault_aware=settings.fault_aware)
    figures = {"accuracy": result["accuracy"]["mean"], "accuracy_ci95": result["accuracy"]["ci95"]}
    if "top5" in result:
        figures["top5"] = result["top5"]["mean"]
    return figures


def point_figures(model: SweepModel, point: Point, verify: bool = True, data: SweepData | None = None
                  ) -> dict[str, Any]:
    """Compile, cost, (with `verify`) verify and (with `data`) measure the accuracy of one point; RccError
    when the point cannot be compiled."""
    settings = point_settings(point)
    path = model.local_path()
    options = dict(settings.compile_options)
    if data is not None:  # one sample of the data set fixes the shapes a symbolic batch axis leaves open
        declared = model.declared_inputs()
        options["input_shapes"] = {name: (1, *np.shape(values)[1:]) for name, values in data.inputs.items()
                                   if not (declared.get(name) and declared[name][0])}
    compiled = compile_model(path, settings.target, **options)
    rows = layer_rows(compiled.program, compiled.target)
    total = totals(rows)
    cost = estimate_cost(compiled.program, load_chip(settings.cost_model)).to_json()["totals"]
    figures = {key: total[key] for key in ("crossbars", "crossbars_dense", "utilization", "macs", "cycles")}
    figures.update({key: cost[key] for key in ("energy_pj", "latency_ns", "throughput_inf_s", "area_mm2",
                                               "power_mw", "tops_per_w")})
    if verify:
        figures.update(_verify_figures(verify_compiled(path, compiled, seed=settings.seed)))
    if data is not None:
        figures.update(accuracy_figures(model, point, data))
    return figures


def evaluate_point(model: SweepModel, point: Point, verify: bool = True, data: SweepData | None = None
                   ) -> dict[str, Any]:
    """One results row: `point_id`, `model`, the point's options, `status`, `error`, the figures
    (`FIGURE_COLUMNS`, and `ACCURACY_COLUMNS` with `data`; None when the point failed) and the `seconds` it
    took. Never raises for a point's own failure, whether a user error or a bug: the row records it and the
    sweep goes on."""
    started = time.perf_counter()
    row: dict[str, Any] = {"point_id": point_id(model.digest, point, data and data.digest), "model": model.name,
                           **point}
    figures: dict[str, Any] = {}
    try:
        figures = point_figures(model, point, verify, data)
        row.update(status="ok", error=None)
    except Exception as err:  # a sweep records every failing point, bugs included, and carries on
        kind = "" if isinstance(err, RccError) else f"{type(err).__name__}: "  # a bug names its exception
        message = (kind + str(err)).strip() or type(err).__name__
        row.update(status="failed", error=message.splitlines()[0][:500])
    row.update({column: figures.get(column) for column in FIGURE_COLUMNS})
    if data is not None:
        row.update({column: figures.get(column) for column in ACCURACY_COLUMNS
                    if column in figures or data.labels is not None})
    if not verify:
        for column in ("snr_db", "rel_l2", "max_abs_err", "verify_passed"):
            row.pop(column)
    row["seconds"] = time.perf_counter() - started
    return row
