#!/usr/bin/env python3
"""How much a model amplifies a small perturbation of its input, measured in onnxruntime alone (no rcc).

Every input set of `NAME.inputs.npz` (else 3 seeded N(0, 1) sets) is run clean and with white Gaussian
noise added to each float input at a given SNR (default 60 and 40 dB); the output SNR (clean output
against perturbed, summed over the sets) shows the model's noise gain. A model whose output SNR is far
below its input SNR amplifies noise: integer quantisation, which adds noise at about 40 dB per 8-bit
tensor, cannot then reach the verification bound (26.2 dB at 8 bits) on any machine; onnxruntime's own
int8 quantisation misses it too (bench/ort_int8_baseline.py). Random-weight exports can sit in such a
chaotic regime where trained weights would not.

    python bench/noise_gain.py /work/exports_m11/all/deeplabv3_mobilenet_v3_large.onnx
    python bench/noise_gain.py MODEL.onnx --tensors /model/Squeeze_1_output_0   # intermediate tensors too
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rcc.compiler.frontend.loader import declared_inputs, load_onnx
from rcc.compiler.noise_gain import output_snrs
from rcc.compiler.verify import onnxruntime_runner


def input_sets(path: Path) -> list[dict[str, np.ndarray]]:
    stacked = path.with_suffix(".inputs.npz")
    if stacked.is_file():
        arrays = dict(np.load(stacked))
        return [{name: array[index] for name, array in arrays.items()}
                for index in range(next(iter(arrays.values())).shape[0])]
    rng = np.random.default_rng(0)
    shapes = {name: [d or 1 for d in dims or []] for name, dims in declared_inputs(load_onnx(path)).items()}
    return [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()} for _ in range(3)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--snr", type=float, nargs="+", default=[60.0, 40.0], help="input SNRs in dB (default 60 40)")
    parser.add_argument("--tensors", nargs="*", default=[], help="intermediate tensors to measure as well")
    args = parser.parse_args(argv)
    print(f"{'model':32s} {'output':40s} " + " ".join(f"in {snr:g} dB".rjust(10) for snr in args.snr))
    for path in args.models:
        run = onnxruntime_runner(path, extra_outputs=args.tensors)
        sets = input_sets(path)
        figures = [output_snrs(run, sets, snr, seed=0) for snr in args.snr]
        for name in figures[0]:
            print(f"{path.stem:32s} {name[:40]:40s} " + " ".join(f"{f[name]:10.1f}" for f in figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
