#!/usr/bin/env python3
"""onnxruntime's own int8 quantization of an exported model, measured the way rcc's integer mode is (issue 11).

The yardstick for rcc's 8-bit integer mode on the exports it fails (`bench/try_models.py`): for each model,
`onnxruntime.quantization.quantize_static` (QDQ, per-channel int8 weights, uint8 or int8 activations) is
calibrated on the seeded random inputs rcc's own calibration draws (`calibration_samples` on the imported
module: the same seeds, count and distribution), then the float model and the quantized model run in
onnxruntime on the input sets of `NAME.inputs.npz` (the ones try_models.py verifies with). Per output it
prints the SNR and input-dependent SNR (dB) from `rcc.compiler.verify.sample_metrics`, the definitions rcc's
verification uses, beside rcc's integer-mode machine figures for the same model and inputs: read from
try_models.py's JSON (`--rcc-table`), or measured (`--rcc-live`: `compile_model` + `verify_compiled(...,
executor="machine")`).

A model whose tail is data-dependent (SSDlite's post-processing) is cut where rcc cuts it
(`driver.lower_for_chip`): both onnxruntime runs use the prefix rcc puts on the chip, and the outputs compared are
the float tensors handed to the host.

For each quantized model it also counts which node types onnxruntime left in float (a node none of whose
float inputs comes from a DequantizeLinear) and how many tensors it quantizes.

    python bench/ort_int8_baseline.py /work/exports/mobilenet_v3_small.onnx
    nice -n 10 python bench/ort_int8_baseline.py /work/exports/{efficientnet_b0,mobilenet_v3_large}.onnx \\
        --methods minmax percentile entropy --out /tmp/ort_int8.txt
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)

from rcc.compiler.calibrate import calibration_samples, default_sample_count
from rcc.compiler.driver import lower_for_chip
from rcc.compiler.frontend.loader import load_onnx
from rcc.compiler.verify import sample_metrics

DEFAULT_RCC_TABLE = Path("/work/exports_m11/table_models.json")
METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}
# activation type and whether its range is symmetric (zero point 0, as rcc's signed activations are)
ACTIVATIONS = {"uint8": (QuantType.QUInt8, False), "int8": (QuantType.QInt8, False), "int8sym": (QuantType.QInt8, True)}
# what onnxruntime quantizes: every op its QDQ quantizer knows, or only the ops rcc puts on crossbars
SCOPES = {"all": None, "crossbar": ["Conv", "Gemm", "MatMul"]}
STATIC_SOURCES = {"Constant", "Shape", "Size"}  # static shapes: known before the model runs
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


ENTROPY_BINS = 2048  # histogram bins for entropy calibration (TensorRT's; see `entropy_bins`)


@contextlib.contextmanager
def entropy_bins(bins: int) -> Any:
    """Entropy calibration with `bins` histogram bins. quantize_static passes no bin count to the entropy
    calibrator, which then keeps 128 histogram bins for 128 quantized bins: a single candidate threshold, the
    full range, so "entropy" is MinMax (the scales come out identical). This wraps the calibrator factory
    quantize_static calls to pass `num_bins`."""
    quantize_module = importlib.import_module("onnxruntime.quantization.quantize")  # the package re-exports a
    original = quantize_module.create_calibrator                                    # function of that name

    def create_calibrator(*args: Any, calibrate_method: Any = None, extra_options: Any = None, **kwargs: Any) -> Any:
        options = dict(extra_options or {})
        if calibrate_method == CalibrationMethod.Entropy:
            options.setdefault("num_bins", bins)
        return original(*args, calibrate_method=calibrate_method, extra_options=options, **kwargs)

    quantize_module.create_calibrator = create_calibrator
    try:
        yield
    finally:
        quantize_module.create_calibrator = original


class Samples(CalibrationDataReader):
    """rcc's calibration samples, one feed at a time, for onnxruntime's calibrator."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def session(model: str | Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def run_all(model: str | Path, feeds: list[dict[str, np.ndarray]], names: list[str]) -> list[dict[str, np.ndarray]]:
    runner = session(model)
    wanted = {i.name for i in runner.get_inputs()}
    return [dict(zip(names, runner.run(names, {k: v for k, v in feed.items() if k in wanted}))) for feed in feeds]


def float_outputs(model: onnx.ModelProto) -> list[str]:
    """The graph outputs with a floating-point element type (the ones an SNR means something for)."""
    return [o.name for o in model.graph.output if o.type.tensor_type.elem_type in FLOAT_TYPES]


def left_in_float(quantized: onnx.ModelProto) -> dict[str, Any]:
    """Node types run on a float activation that no DequantizeLinear produced (onnxruntime leaves them in
    float), node types all of whose activations are dequantized, and the number of QuantizeLinear nodes on
    activations. Constants, and what is computed from constants and static shapes only (biases passed
    through Identity, shape arithmetic), are not activations."""
    constant = {init.name for init in quantized.graph.initializer} | {""}
    producer: dict[str, str] = {}
    floating: collections.Counter[str] = collections.Counter()
    quantized_nodes: collections.Counter[str] = collections.Counter()
    activation_quantizers = 0
    for node in quantized.graph.node:  # topological order
        producer.update((out, node.op_type) for out in node.output)
        if node.op_type in STATIC_SOURCES or all(name in constant for name in node.input):
            constant.update(node.output)
            continue
        if node.op_type == "QuantizeLinear":
            activation_quantizers += 1
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        sources = {producer.get(name, "graph input") for name in node.input if name not in constant}
        (quantized_nodes if sources == {"DequantizeLinear"} else floating)[node.op_type] += 1
    return {"float_ops": dict(floating.most_common()), "quantized_ops": dict(quantized_nodes.most_common()),
            "activation_quantizers": activation_quantizers}


def quantize_and_compare(float_path: Path, quantized_path: Path, config: tuple[str, str, str],
                         calibration: list[dict[str, np.ndarray]], feeds: list[dict[str, np.ndarray]],
                         expected: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Quantize the float model as `config` (scope, activations, method) says, run it on `feeds`, and
    measure each output against `expected` (the float model's)."""
    scope, activation, method = config
    activation_type, symmetric = ACTIVATIONS[activation]
    started = time.perf_counter()
    try:
        with entropy_bins(ENTROPY_BINS), contextlib.redirect_stdout(sys.stderr):  # the calibrators print
            quantize_static(str(float_path), str(quantized_path), Samples(calibration), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=SCOPES[scope], per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=activation_type, calibrate_method=METHODS[method],
                            extra_options={"ActivationSymmetric": symmetric})
        actual = run_all(quantized_path, feeds, list(expected[0]))
    except Exception as error:  # noqa: BLE001 (onnxruntime's errors share no base class: report it, go on)
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    metrics = {name: sample_metrics([a[name] for a in actual], [e[name] for e in expected]) for name in expected[0]}
    return {"seconds": round(time.perf_counter() - started, 1), "outputs": metrics,
            **left_in_float(onnx.load(str(quantized_path)))}


def rcc_figures(path: Path, table: Path | None, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """rcc's integer-mode machine metrics per output: from try_models.py's JSON when it holds this model with
    the same inputs file, else measured."""
    if table is not None and table.is_file():
        entry = json.loads(table.read_text()).get(path.stem, {})
        same_inputs = entry.get("inputs") == path.with_suffix(".inputs.npz").name
        same_model = entry.get("path") and Path(entry["path"]).read_bytes() == path.read_bytes()
        verify = entry.get("machine_int", {}).get("verify")
        if verify and same_inputs and same_model:
            return {"source": f"{table} (same model bytes, same inputs file)", "outputs": verify["outputs"]}
    from rcc.compiler.driver import compile_model, verify_compiled  # noqa: PLC0415 (only when measuring)

    compiled = compile_model(path, precision="int")
    outcome = verify_compiled(path, compiled, executor="machine", inputs=inputs).to_json()
    return {"source": "measured (compile_model + verify_compiled, machine)", "outputs": outcome["outputs"]}


def baseline(path: Path, methods: list[str], activations: list[str], scopes: list[str], samples: int | None,
             table: Path | None) -> dict[str, Any]:
    """Every (scope, activation type, calibration method) of one model, with rcc's figures beside them."""
    model = load_onnx(path)
    module, split = lower_for_chip(model, str(path), None, False)   # the prefix rcc compiles (Ifs on shapes taken)
    chip_part = split.prefix if split else model
    count = default_sample_count(module) if samples is None else samples
    calibration = calibration_samples(module, samples=count)
    inputs = dict(np.load(path.with_suffix(".inputs.npz")))
    feeds = calibration_samples(module, inputs, flag="inputs.npz")
    names = float_outputs(chip_part)
    result: dict[str, Any] = {"calibration_samples": count, "input_sets": len(feeds), "outputs": names,
                              "host_split": split.info["node"] if split else None, "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        onnx.save(chip_part, str(float_path))
        expected = run_all(float_path, feeds, names)
        for config in itertools.product(scopes, activations, methods):
            quantized_path = Path(tmp) / f"{'_'.join(config)}.onnx"
            result["configs"][" ".join(config)] = quantize_and_compare(float_path, quantized_path, config,
                                                                       calibration, feeds, expected)
            print(f"  {path.stem} {' '.join(config)}: {result['configs'][' '.join(config)].get('seconds')} s",
                  file=sys.stderr, flush=True)
    result["rcc"] = rcc_figures(path, table, inputs)
    return result


def db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def rcc_output(outputs: dict[str, Any], name: str) -> dict[str, Any]:
    """rcc's metrics for output `name` (a tensor handed to the host is labelled 'NAME (to host)')."""
    return outputs.get(name) or outputs.get(f"{name} (to host)") or {}


def table(results: dict[str, dict[str, Any]]) -> str:
    header = ("model", "output", "config", "SNR", "input SNR", "rcc int SNR", "rcc input SNR")
    rows = []
    for model, result in results.items():
        for name in result["outputs"]:
            ours = rcc_output(result["rcc"]["outputs"], name)
            rcc_cells = (db(ours.get("snr_db")), db(ours.get("snr_input_db")))
            for config, figures in result["configs"].items():
                if "error" in figures:
                    rows.append((model, name, config, "error", figures["error"][:40], *rcc_cells))
                    continue
                metrics = figures["outputs"][name]
                rows.append((model, name, config, db(metrics["snr_db"]), db(metrics["snr_input_db"]), *rcc_cells))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    for model, result in results.items():
        lines.append(f"{model}: calibrated on {result['calibration_samples']} rcc calibration samples, "
                     f"measured on {result['input_sets']} input sets; rcc figures: {result['rcc']['source']}"
                     + (f"; cut for the host before {result['host_split']}" if result["host_split"] else ""))
        for scope in dict.fromkeys(config.split()[0] for config in result["configs"]):
            first = next((f for c, f in result["configs"].items() if c.startswith(scope) and "error" not in f), None)
            if first is not None:
                lines.append(f"  {scope}: onnxruntime quantizes {first['activation_quantizers']} activation tensors; "
                             f"nodes on dequantized inputs: {first['quantized_ops']}; left in float: "
                             f"{first['float_ops']}")
    return "\n".join(lines)


def save(results: dict[str, dict[str, Any]], out: Path | None, text: str | None = None) -> None:
    """The results to `out`'s .json sibling, and the table to `out` once there is one."""
    if out is None:
        return
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    if text is not None:
        out.write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="NAME.onnx files with NAME.inputs.npz beside them")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=["minmax"])
    parser.add_argument("--activations", nargs="+", choices=list(ACTIVATIONS), default=["uint8", "int8"],
                        help="int8sym: int8 with a symmetric range (zero point 0), as rcc quantizes signed tensors")
    parser.add_argument("--scopes", nargs="+", choices=list(SCOPES), default=["all"],
                        help="all: every op onnxruntime's QDQ quantizer knows; crossbar: only Conv/Gemm/MatMul, "
                             "the ops rcc quantizes")
    parser.add_argument("--samples", type=int, help="calibration samples (default: rcc's default_sample_count)")
    parser.add_argument("--rcc-table", type=Path, default=DEFAULT_RCC_TABLE,
                        help=f"try_models.py JSON with rcc's figures (default {DEFAULT_RCC_TABLE})")
    parser.add_argument("--rcc-live", action="store_true", help="measure rcc's figures instead of reading them")
    parser.add_argument("--out", type=Path, help="write the table here and the results to its .json sibling")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice to pre-process, once per model
    missing = [p for p in args.models if not p.is_file() or not p.with_suffix(".inputs.npz").is_file()]
    if missing:
        print(f"{missing[0]}: no such model, or no {missing[0].with_suffix('.inputs.npz').name} beside it",
              file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    for path in args.models:
        results[path.stem] = baseline(path, args.methods, args.activations, args.scopes, args.samples,
                                      None if args.rcc_live else args.rcc_table)
        save(results, args.out)  # what is done so far
    text = table(results)
    save(results, args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
