#!/usr/bin/env python3
"""Does onnxruntime pass rcc's float checks against itself? Runs one model in onnxruntime under several
session settings (thread counts, graph-optimisation levels) on the same inputs and compares each with the
setting `--verify` uses as its reference (the defaults: all threads, ORT_ENABLE_ALL) under the interpreter's
check, numpy.allclose(rtol=1e-4, atol=1e-5), and the float machine's, rel L2 ≤ 1e-5.

If onnxruntime fails these against itself on a model, a float result of rcc that fails them by a similar
margin is float32 rounding (a different summation order), not a wrong computation.

    python bench/ort_self_check.py /work/exports/resnet50.onnx
    python bench/ort_self_check.py MODEL.onnx --inputs MODEL.inputs.npz --outputs TENSOR ...  # intermediates too

Inputs: `--inputs` (arrays with a leading samples axis, as `export_models.py` writes), else the file beside
the model with the suffix `.inputs.npz`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

RTOL, ATOL, REL_L2 = 1e-4, 1e-5, 1e-5
LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
SETTINGS = [("all", 0), ("all", 1), ("all", 2), ("basic", 0), ("none", 0), ("none", 1)]  # (level, threads; 0: default)


def session(model: bytes, level: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def compare(actual: np.ndarray, expected: np.ndarray) -> tuple[bool, float, float]:
    """(allclose, max |error|, rel L2) over the finite reference values."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    error = a - e
    norm = float(np.sqrt(np.sum(e * e)))
    rel = float(np.sqrt(np.sum(error * error))) / norm if norm else (0.0 if not error.any() else math.inf)
    return bool(np.allclose(a, e, rtol=RTOL, atol=ATOL)), float(np.max(np.abs(error), initial=0.0)), rel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--inputs", type=Path, help="NAME.inputs.npz (default: beside the model)")
    parser.add_argument("--outputs", nargs="+", default=[], help="intermediate tensors to compare as well")
    args = parser.parse_args(argv)
    proto = onnx.load(str(args.model))
    known = {output.name for output in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=name) for name in args.outputs if name not in known)
    model = proto.SerializeToString()
    data = np.load(args.inputs or args.model.with_suffix(".inputs.npz"))
    samples = [{name: data[name][k] for name in data.files} for k in range(len(data[data.files[0]]))]
    reference = session(model, "all", 0)
    names = [output.name for output in reference.get_outputs()
             if output.name in args.outputs or output.name in known]
    float_names = [n for n in names if reference.run([n], samples[0])[0].dtype.kind == "f"]
    expected = [dict(zip(float_names, reference.run(float_names, s))) for s in samples]
    print(f"{args.model.name}: {len(samples)} samples; reference: ORT_ENABLE_ALL, default threads")
    print(f"{'setting':16s} {'tensor':40s} {'allclose':8s} {'max_abs_err':>11s} {'rel_l2':>9s}  rel_l2<=1e-5")
    for level, threads in SETTINGS:
        other = session(model, level, threads)
        runs = [dict(zip(float_names, other.run(float_names, s))) for s in samples]
        for name in float_names:
            label = f"{level}/{threads or 'default'}"
            if any(r[name].shape != e[name].shape for r, e in zip(runs, expected)):  # detections: data-dependent
                print(f"{label:16s} {name[-40:]:40s} shape differs")
                continue
            close, largest, rel = compare(np.concatenate([r[name].ravel() for r in runs]),
                                          np.concatenate([e[name].ravel() for e in expected]))
            print(f"{label:16s} {name[-40:]:40s} {'pass' if close else 'FAIL':8s} {largest:11.3g} {rel:9.3g}  "
                  f"{'pass' if rel <= REL_L2 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
