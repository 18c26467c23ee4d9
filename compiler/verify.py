"""Verification against onnxruntime: run the original model there and compare outputs with metrics.

Metrics per output: `max_abs_err`, `rel_l2` (‖actual − expected‖₂ / ‖expected‖₂), `snr_db`
(10·log10(Σ expected² / Σ error²); None when the error is exactly zero), and `passed` under the
executor's tolerance:
- interpreter (float32, same graph): numpy.allclose(rtol=1e-4, atol=1e-5);
- machine, float precision (ideal analog arithmetic on the real mapping): rel_l2 ≤ 1e-5;
- either of those on a float16 output: rel_l2 ≤ 2^-11 (`FLOAT16_TOLERANCE`), against onnxruntime without its graph
  rewrites (`onnxruntime_runner`);
- machine, integer precision: snr_db ≥ 6.02·min(weight_bits, input_bits) − 22 dB (26.2 dB at 8 bits);
  lossy settings (a narrow ADC) are held to the same bound and reported. Beside it every output gets
  `within_input_bound`: its input-dependent SNR against `input_snr_bound(weight_bits, input_bits, depth)`
  (reported; not yet the verdict: 7 of the 9 zoo models fall below it, see README 'Verification').

Over K seeded samples (`sample_metrics`), beside those: `snr_input_db` and `rel_l2_input`, the error
relative to the output's deviation from its mean over the samples (an output that barely moves with the
input cannot pass on its constant part; one that does not move at all is marked `constant_reference`, with
a note), and `top1_agreement`/`top5_agreement` for classifier-shaped outputs ([N, C] or [N, C, 1, …]: the
fraction of rows whose reference arg-max is the machine's arg-max, or among its five largest).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rcc.compiler.frontend.loader import load_onnx
from rcc.compiler.frontend.opsets import model_for_onnxruntime
from rcc.ir.errors import RccError

FLOAT_RTOL, FLOAT_ATOL = 1e-4, 1e-5
DEFAULT_SAMPLES = 4
# A softmax output is judged on its logits when float32's spacing at the largest logit exceeds 1e-3 (logits
# of 16384 and more): rounding alone then moves the probabilities by more than the float tolerance.
LARGE_LOGIT = 2.0**14


# onnxruntime fuses a DequantizeLinear of constant 8- or 4-bit weights and the MatMul or Gemm reading it into
# com.microsoft MatMulNBits, which by default (accuracy level 4) quantizes its float activations to int8 blockwise
# before the product: not the model's computation (an A16W8 transformer block, whose MatMuls read 16-bit activations:
# 34–38 dB from the model's float32 product; 88–99 dB at level 1, float32 activations). The reference runs at level 1.
MATMUL_NBITS_FLOAT32 = ("session.qdq_matmulnbits_accuracy_level", "1")


def reference_options():
    """onnxruntime's session options for a reference run: its defaults but for MatMulNBits' float32 activations."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry(*MATMUL_NBITS_FLOAT32)
    return options


def onnxruntime_runner(model_path: str | os.PathLike, extra_outputs: Sequence[str] = ()
                       ) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function from inputs to outputs by name of the original model run by onnxruntime on the CPU (below
    opset 7, of the model converted to opset 7, which is what rcc compiled); `extra_outputs` names
    intermediate tensors to return as well (exposed as extra graph outputs). A model with float16 tensors runs
    without onnxruntime's graph rewrites: they fold float16 weights in float16 (Conv with BatchNormalization:
    rel L2 4e-4 from its own unrewritten run on a small ResNet) and fuse float16 subgraphs into kernels that
    round elsewhere, so the rewritten run is not the graph's computation; and its outputs come from the model
    as it is, since an exposed float16 tensor changes where onnxruntime rounds (`compiler/frontend/float16.py`)."""
    import onnx
    import onnxruntime

    from rcc.compiler.onnxruntime_narrow import (carried_model, carrier_feeds, exposed_model, exposed_results,
                                                 has_narrow_io, narrow_results)

    options = reference_options()
    try:
        # the model read once: whole to expose tensors, else its graph only (weights stay on disk)
        model = load_onnx(model_path) if extra_outputs else onnx.load(str(model_path), load_external_data=False)
        half = holds_float16(model.graph)
        if any(node.op_type == "DynamicQuantizeLSTM" and node.domain == "com.microsoft" for node in model.graph.node):
            # its kernel quantizes each thread's batch rows on their own (a result that depends on the thread
            # count); rcc computes it as one thread does (compiler/frontend/rules_quant_lstm.py)
            options.intra_op_num_threads = 1
        graph, narrow = model.graph, has_narrow_io(model.graph)   # narrow inputs and outputs go through carriers
        if narrow and not extra_outputs:
            model = load_onnx(model_path)
        if half:
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        sessions, renames = [], {}
        if extra_outputs:
            exposed, renames = exposed_model(carried_model(model) if narrow else model, list(extra_outputs))
            sessions.append(onnxruntime.InferenceSession(exposed.SerializeToString(), options,
                                                         providers=["CPUExecutionProvider"]))
        if half or not extra_outputs:   # the model's own outputs from the model as it is
            source = carried_model(model).SerializeToString() if narrow else model_for_onnxruntime(model_path)
            sessions.append(onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"]))
    except Exception as err:  # onnxruntime's errors have no common base class
        raise RccError(f"{model_path}: onnxruntime cannot run the model: {str(err).splitlines()[0][:200]}") from None

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = {}
        try:
            for session in sessions:   # the model's own session last: its outputs win
                feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
                # inputs with a default (an initializer of the same name) take the value rcc's caller fed
                feeds.update((i.name, inputs[i.name]) for i in session.get_overridable_initializers()
                             if i.name in inputs)
                names = [o.name for o in session.get_outputs()]
                feeds = carrier_feeds(graph, feeds) if narrow else feeds
                results = exposed_results(dict(zip(names, session.run(names, feeds))), renames)
                outputs.update(narrow_results(graph, results))
        except Exception as err:  # as above
            raise RccError(f"{model_path}: onnxruntime cannot run the model: "
                           f"{str(err).splitlines()[0][:200]}") from None
        return outputs
    return run


def holds_float16(graph) -> bool:
    """Whether an ONNX graph has a float16 tensor: an initializer, a declared value, a Constant or a Cast's target."""
    import onnx

    half = onnx.TensorProto.FLOAT16
    return any(tensor.data_type == half for tensor in graph.initializer) or \
        any(info.type.tensor_type.elem_type == half for info in [*graph.input, *graph.output, *graph.value_info]) or \
        any(attribute.i == half if node.op_type == "Cast" else attribute.t.data_type == half
            for node in graph.node if node.op_type in ("Cast", "Constant")
            for attribute in node.attribute if attribute.name in ("to", "value"))


def onnxruntime_outputs(model_path: str | os.PathLike, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name of the original model run by onnxruntime on the CPU."""
    return onnxruntime_runner(model_path)(inputs)


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
# A float16 output under the float checks: relative L2 within float16's unit roundoff, 2^-11, the error of one
# rounding of exact results to float16. A float32 summation order other than onnxruntime's moves a float16
# result across a rounding boundary now and then, by one float16 step (2^-10 relative): allclose(1e-4) fails
# on any such element, rel L2 1e-5 on a few of them.
FLOAT16_TOLERANCE = Tolerance("rel_l2", bound=2.0**-11)


CREST_FACTOR = 4.0  # calibrated range over standard deviation: a tensor's maximum over many elements ≈ 4σ


def integer_snr_bound(weight_bits: int, input_bits: int) -> float:
    return 6.02 * min(weight_bits, input_bits) - 22.0


def snr_db(signal_energy: float, error_energy: float) -> float:
    """10·log10(signal / error) of two energies (sums of squares): inf when the error is zero, −inf when the
    signal is (or the error is infinite and the signal not), NaN when either is NaN or both are infinite."""
    if math.isnan(signal_energy) or math.isnan(error_energy):
        return math.nan
    if error_energy == 0:
        return math.inf
    ratio = signal_energy / error_energy
    if math.isnan(ratio):
        return math.nan
    return 10 * math.log10(ratio) if ratio > 0 else -math.inf


def operand_snr_db(weight_bits: int, input_bits: int) -> float:
    """The SNR (dB) of one operand's rounding: a b-bit quantiser over ±CREST_FACTOR·σ has SNR
    6.02·b + 4.77 − 20·log10(CREST_FACTOR) (40.9 dB at 8 bits), b the narrower width."""
    return 6.02 * min(weight_bits, input_bits) + 10 * math.log10(3) - 20 * math.log10(CREST_FACTOR)


def input_snr_bound(weight_bits: int, input_bits: int, depth: int) -> float:
    """The SNR (dB) integer mode must reach: each of the `depth` crossbar layers on the longest path
    quantises two operands (`operand_snr_db` each), and independent errors add in power: − 10·log10(2·depth)."""
    return operand_snr_db(weight_bits, input_bits) - 10 * math.log10(2 * max(depth, 1))


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
    snr = None if error_energy == 0 else snr_db(signal_energy, error_energy)
    close = bool(np.allclose(actual64, expected64, rtol=tolerance.rtol, atol=tolerance.atol))
    metrics = {"max_abs_err": max_abs, "rel_l2": rel_l2, "snr_db": snr}
    if for_dtype(tolerance, expected.dtype) is not tolerance:
        metrics["note"] = f"float16 output: {FLOAT16_TOLERANCE.describe()} (float16's unit roundoff)"
    return {**metrics, "passed": for_dtype(tolerance, expected.dtype).holds(metrics, close)}


def for_dtype(tolerance: Tolerance, dtype: np.dtype) -> Tolerance:
    """The float checks at a float16 output's resolution (`FLOAT16_TOLERANCE`); `tolerance` otherwise."""
    return FLOAT16_TOLERANCE if dtype == np.float16 and tolerance.kind != "snr" else tolerance


def input_dependent_metrics(actual: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """`snr_input_db` and `rel_l2_input` of stacked samples ([K, ...]): the error against the reference's
    deviation from its mean over the K samples, over the positions finite in every sample."""
    actual64, expected64 = actual.astype(np.float64), expected.astype(np.float64)
    finite = np.isfinite(expected64).all(axis=0) & np.isfinite(actual64).all(axis=0)
    deviation = expected64[:, finite] - expected64[:, finite].mean(axis=0)
    error = actual64[:, finite] - expected64[:, finite]
    spread, error_energy = float(np.sum(deviation * deviation)), float(np.sum(error * error))
    constant = {"constant_reference": True, "note": "the reference output does not change over the samples: "
                "a pass says nothing about the input-dependent part"} if spread == 0 else {}
    if error_energy == 0:
        return {"snr_input_db": None, "rel_l2_input": 0.0, **constant}
    if spread == 0:
        return {"snr_input_db": -math.inf, "rel_l2_input": math.inf, **constant}
    return {"snr_input_db": snr_db(spread, error_energy), "rel_l2_input": math.sqrt(error_energy / spread)}


def top_k_agreement(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """For classifier-shaped stacked samples ([K, N, C] or [K, N, C, 1, ...], C ≥ 2): the fraction of rows
    whose reference arg-max is the machine's arg-max (`top1_agreement`) or among its five largest
    (`top5_agreement`, when C > 5); {} for other shapes and for integer and bool outputs (masks, indices)."""
    if actual.ndim < 3 or actual.shape[2] < 2 or math.prod(actual.shape[3:]) != 1 or actual.dtype.kind != "f":
        return {}
    classes = actual.shape[2]
    actual_rows, expected_rows = actual.reshape(-1, classes), expected.reshape(-1, classes)
    reference_top1 = np.argmax(expected_rows, axis=1)
    agreement = {"top1_agreement": float(np.mean(np.argmax(actual_rows, axis=1) == reference_top1))}
    if classes > 5:
        top5 = np.argsort(-actual_rows, axis=1, kind="stable")[:, :5]
        agreement["top5_agreement"] = float(np.mean((top5 == reference_top1[:, None]).any(axis=1)))
    return agreement


def sample_metrics(actual: list[np.ndarray], expected: list[np.ndarray], tolerance: Tolerance = INTERPRETER_TOLERANCE
                   ) -> dict[str, Any]:
    """`output_metrics` over all K samples together, with the input-dependent SNR and top-k agreement;
    `passed` under `tolerance`. An output whose shape depends on the values (NonZero, detections on the host)
    is compared sample by sample, each its own shape, then all its values together."""
    if len({np.shape(array) for array in (*actual, *expected)}) > 1:
        return _ragged_metrics(actual, expected, tolerance)
    stacked_actual, stacked_expected = np.stack(actual), np.stack(expected)
    metrics = output_metrics(stacked_actual, stacked_expected, tolerance)
    if metrics["rel_l2"] is None:  # shapes or NaN/Inf disagree: nothing more to measure
        return {**metrics, "snr_input_db": None, "rel_l2_input": None}
    dependent = (input_dependent_metrics(stacked_actual, stacked_expected) if len(actual) > 1 else
                 {"snr_input_db": None, "rel_l2_input": None})
    metrics = {**metrics, **dependent, **top_k_agreement(stacked_actual, stacked_expected)}
    close = bool(np.allclose(stacked_actual, stacked_expected, rtol=tolerance.rtol, atol=tolerance.atol,
                             equal_nan=True))
    return {**metrics, "passed": for_dtype(tolerance, stacked_expected.dtype).holds(metrics, close)}


def _ragged_metrics(actual: list[np.ndarray], expected: list[np.ndarray], tolerance: Tolerance) -> dict[str, Any]:
    """`output_metrics` of samples whose shapes differ: the first sample whose shape differs from onnxruntime's
    fails the output; else every sample's values together (no input-dependent SNR: the samples do not align)."""
    for index, (run, reference) in enumerate(zip(actual, expected)):
        if np.shape(run) != np.shape(reference):
            metrics = output_metrics(np.asarray(run), np.asarray(reference), tolerance)
            return {**metrics, "note": f"sample {index}: {metrics['note']}", "snr_input_db": None,
                    "rel_l2_input": None}
    flat_actual = np.concatenate([np.asarray(run).reshape(-1) for run in actual])
    flat_expected = np.concatenate([np.asarray(reference).reshape(-1) for reference in expected])
    return {**output_metrics(flat_actual, flat_expected, tolerance), "snr_input_db": None, "rel_l2_input": None}


def judge_on_logits(metrics: dict[str, Any], actual: list[np.ndarray], expected: list[np.ndarray],
                    tolerance: Tolerance) -> None:
    """When the reference logits of a softmax output (stacked samples) reach LARGE_LOGIT, add their metrics
    as `logits`, say so in `note`, and let them decide `passed`."""
    reference = np.stack(expected).astype(np.float64)
    largest = float(np.max(np.abs(reference[np.isfinite(reference)]), initial=0.0))
    if largest < LARGE_LOGIT:
        return
    metrics["logits"] = sample_metrics(actual, expected, tolerance)
    metrics["note"] = (f"softmax of logits up to {largest:.3g}: float rounding alone changes its output, "
                       f"so it is judged on its logits")
    metrics["passed"] = metrics["logits"]["passed"]


def mark_input_bound(result: "VerifyResult", weight_bits: int, input_bits: int, depth: int) -> None:
    """Record `input_snr_bound` and the depth in `result.extra`, and `within_input_bound` per output
    (None when the input-dependent SNR was not measured: one input set, or outputs that disagree)."""
    bound = input_snr_bound(weight_bits, input_bits, depth)
    result.extra.update(crossbar_depth=depth, snr_input_bound=bound)
    for metrics in result.outputs.values():
        if metrics.get("rel_l2_input") is None:
            metrics["within_input_bound"] = None
        else:
            snr = metrics["snr_input_db"]
            metrics["within_input_bound"] = metrics["rel_l2_input"] == 0 or snr is not None and snr >= bound


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


def compare_outputs(actual: dict[str, np.ndarray] | list[dict[str, np.ndarray]],
                    expected: dict[str, np.ndarray] | list[dict[str, np.ndarray]], executor: str,
                    tolerance: Tolerance = INTERPRETER_TOLERANCE) -> VerifyResult:
    """Metrics per output of one run (dicts) or of K samples (lists of dicts, `sample_metrics`)."""
    actual_samples = actual if isinstance(actual, list) else [actual]
    expected_samples = expected if isinstance(expected, list) else [expected]
    result = VerifyResult(executor, extra={"tolerance": tolerance.describe(), "samples": len(expected_samples)})
    for name in expected_samples[0]:
        if any(name not in sample for sample in actual_samples):
            result.outputs[name] = {"max_abs_err": None, "rel_l2": None, "snr_db": None, "passed": False,
                                    "note": "output missing from the compiled model"}
            continue
        runs = [np.asarray(sample[name]) for sample in actual_samples]
        references = [sample[name] for sample in expected_samples]
        result.outputs[name] = (sample_metrics(runs, references, tolerance) if isinstance(expected, list)
                                else output_metrics(runs[0], references[0], tolerance))
    return result


