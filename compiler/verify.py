"""Verification against onnxruntime: run the original model there and compare outputs with metrics.

Metrics per output: `max_abs_err`, `rel_l2` (‖actual − expected‖₂ / ‖expected‖₂), `snr_db`
(10·log10(Σ expected² / Σ error²); None when the error is exactly zero), and `passed` under the
executor's tolerance:
- interpreter (float32, same graph): numpy.allclose(rtol=1e-4, atol=1e-5);
- machine, float precision (ideal analog arithmetic on the real mapping): rel_l2 ≤ 1e-5;
- machine, integer precision: snr_db ≥ 6.02·min(weight_bits, input_bits) − 22 dB, the SNR of ideal
  uniform quantisation of the narrower operand less a margin for the error that accumulates over
  layers (26.2 dB at 8 bits); lossy settings (a narrow ADC) are held to the same bound and reported.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rcc.compiler.frontend.opsets import model_for_onnxruntime
from rcc.ir.errors import RccError
from rcc.ir.inputs import check_finite
from rcc.ir.limits import load_npz

FLOAT_RTOL, FLOAT_ATOL = 1e-4, 1e-5


def onnxruntime_outputs(model_path: str | os.PathLike, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name of the original model run by onnxruntime on the CPU (below opset 7, of the model
    converted to opset 7, which is what rcc compiled)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(model_for_onnxruntime(model_path), options,
                                               providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
        return dict(zip(names, session.run(names, feeds)))
    except Exception as err:  # onnxruntime's errors have no common base class
        raise RccError(f"{model_path}: onnxruntime cannot run the model: {str(err).splitlines()[0][:200]}") from None


@dataclass(frozen=True)
class Tolerance:
    """When an output counts as matching: `allclose` (rtol, atol), `rel_l2` (≤ bound) or `snr` (≥ bound dB)."""

    kind: str
    rtol: float = FLOAT_RTOL
    atol: float = FLOAT_ATOL
    bound: float = 0.0

    def holds(self, metrics: dict[str, Any], close: bool) -> bool:
        if self.kind == "allclose":
            return close
        if self.kind == "rel_l2":
            return metrics["rel_l2"] is not None and metrics["rel_l2"] <= self.bound
        return metrics["snr_db"] is None and metrics["max_abs_err"] == 0 or \
            metrics["snr_db"] is not None and metrics["snr_db"] >= self.bound

    def describe(self) -> str:
        if self.kind == "allclose":
            return f"allclose(rtol={self.rtol:g}, atol={self.atol:g})"
        return f"rel_l2 <= {self.bound:g}" if self.kind == "rel_l2" else f"snr_db >= {self.bound:.1f}"


INTERPRETER_TOLERANCE = Tolerance("allclose")
FLOAT_MACHINE_TOLERANCE = Tolerance("rel_l2", bound=1e-5)


def integer_snr_bound(weight_bits: int, input_bits: int) -> float:
    return 6.02 * min(weight_bits, input_bits) - 22.0


def output_metrics(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance = INTERPRETER_TOLERANCE
                   ) -> dict[str, Any]:
    if actual.shape != expected.shape:
        return {"max_abs_err": None, "rel_l2": None, "snr_db": None, "passed": False,
                "note": f"shape {list(actual.shape)} differs from onnxruntime's {list(expected.shape)}"}
    actual64, expected64 = actual.astype(np.float64), expected.astype(np.float64)
    nan_mismatch = int(np.count_nonzero(np.isnan(actual64) != np.isnan(expected64)))
    inf_mismatch = int(np.count_nonzero(np.isinf(actual64) != np.isinf(expected64)))
    if nan_mismatch or inf_mismatch:
        return {"max_abs_err": None, "rel_l2": None, "snr_db": None, "passed": False,
                "note": f"{nan_mismatch} NaN and {inf_mismatch} Inf values where onnxruntime's differ"}
    both = np.isfinite(expected64)  # NaN/Inf agree in place (and Inf in sign below); compare the rest
    if not np.array_equal(actual64[~both], expected64[~both], equal_nan=True):
        return {"max_abs_err": None, "rel_l2": None, "snr_db": None, "passed": False,
                "note": "Inf values of the opposite sign to onnxruntime's"}
    actual64, expected64 = actual64[both], expected64[both]
    error = actual64 - expected64
    error_energy = float(np.sum(error * error))
    signal_energy = float(np.sum(expected64 * expected64))
    max_abs = float(np.max(np.abs(error))) if error.size else 0.0
    rel_l2 = math.sqrt(error_energy / signal_energy) if signal_energy > 0 else (0.0 if error_energy == 0 else math.inf)
    if error_energy == 0:
        snr = None
    else:
        snr = 10 * math.log10(signal_energy / error_energy) if signal_energy > 0 else -math.inf
    close = bool(np.allclose(actual64, expected64, rtol=tolerance.rtol, atol=tolerance.atol))
    metrics = {"max_abs_err": max_abs, "rel_l2": rel_l2, "snr_db": snr}
    return {**metrics, "passed": tolerance.holds(metrics, close)}


@dataclass
class VerifyResult:
    executor: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(m["passed"] for m in self.outputs.values())

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "executor": self.executor, **self.extra, "outputs": self.outputs}


def compare_outputs(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], executor: str,
                    tolerance: Tolerance = INTERPRETER_TOLERANCE) -> VerifyResult:
    result = VerifyResult(executor, extra={"tolerance": tolerance.describe()})
    for name, reference in expected.items():
        if name not in actual:
            result.outputs[name] = {"max_abs_err": None, "rel_l2": None, "snr_db": None, "passed": False,
                                    "note": "output missing from the compiled model"}
            continue
        result.outputs[name] = output_metrics(np.asarray(actual[name]), reference, tolerance)
    return result


def load_inputs(path: str | os.PathLike, flag: str = "--inputs", allow_nonfinite: bool = False
                ) -> dict[str, np.ndarray]:
    """Arrays by name from an .npz the user gave with `flag`, read within the input limits
    (`rcc.ir.limits`); RccError naming the flag and file when unreadable or (unless `allow_nonfinite`)
    when an array holds NaN/Inf. Shapes and dtypes are checked by whatever runs them (`rcc.ir.inputs`)."""
    arrays = load_npz(path, flag)
    if not allow_nonfinite:
        for key, array in arrays.items():
            check_finite(f"{flag} {path}: array {key!r}", array)
    return arrays
