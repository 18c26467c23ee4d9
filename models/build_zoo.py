#!/usr/bin/env python3
"""Deterministic builder for rcc's ONNX model zoo.

This script owns the small reference models that live next to it as
``models/<name>.onnx``: their architecture, their (seeded) weights and the
exact bytes written to disk.  Every model is built with ``onnx.helper`` and
numpy only, with a fixed seed per model, fixed opset/IR version and no
timestamps, so regenerating the zoo is byte-for-byte reproducible.

Usage::

    python models/build_zoo.py              # (re)write models/*.onnx
    python models/build_zoo.py --out DIR    # write into DIR instead
    python models/build_zoo.py --check      # exit 1 if checked-in files are stale
    python models/build_zoo.py --blocks --out DIR   # only the issue-11 blocks (BLOCK_BUILDERS)

The models are built in ``zoo_cnns.py`` and ``zoo_blocks.py`` from the layers of ``zoo_layers.py``; this
file registers them, draws valid inputs (:func:`model_inputs`), writes and checks the files. Tests import
this file by path and call :func:`build_all`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

sys.path.insert(0, str(Path(__file__).resolve().parent))   # its siblings, also when loaded by path (the tests)
from zoo_blocks import BLOCK_BUILDERS, BLOCK_SEQUENCE, GPT_VOCAB  # noqa: E402,F401 (the zoo's API)
from zoo_cnns import (build_dcgan_generator, build_fcn_segmenter, build_lenet5, build_lenet5_pruned,  # noqa: E402
                      build_mlp, build_resnet_small, build_subpixel_sr, build_unet_small)


def model_inputs(name: str, seed: int = 0, samples: int | None = None) -> dict[str, np.ndarray]:
    """Valid inputs of a zoo model or block: floats N(0, 1) (the same the zoo tests draw), token ids in the
    vocabulary, a padding mask whose last quarter is False. With `samples`, that many sets stacked on a new leading axis (rcc's `--inputs`)."""
    model = (BLOCK_BUILDERS.get(name) or BUILDERS[name])()
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for info in model.graph.input:
        shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
        stacked = shape if samples is None else [samples, *shape]
        elem_type = info.type.tensor_type.elem_type
        if elem_type == TensorProto.INT64:
            arrays[info.name] = rng.integers(0, GPT_VOCAB, stacked, dtype=np.int64)
        elif elem_type == TensorProto.BOOL:
            mask = np.ones(stacked, dtype=bool)
            mask[..., shape[-1] - shape[-1] // 4:] = False
            arrays[info.name] = mask
        else:
            arrays[info.name] = rng.standard_normal(stacked).astype(np.float32)
    return arrays


BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp": build_mlp,
    "lenet5": build_lenet5,
    "resnet_small": build_resnet_small,
    "dcgan_generator": build_dcgan_generator,
    "fcn_segmenter": build_fcn_segmenter,
    "unet_small": build_unet_small,
    "subpixel_sr": build_subpixel_sr,
    "subpixel_sr_crd": lambda: build_subpixel_sr("subpixel_sr_crd", mode="CRD", channels=3),
    "lenet5_pruned": build_lenet5_pruned,
}

BUILDERS.update(BLOCK_BUILDERS)  # the blocks are zoo models too (int64/bool inputs: see model_inputs)


def build_all() -> dict[str, onnx.ModelProto]:
    """Build every zoo model, keyed by file stem."""
    return {name: builder() for name, builder in BUILDERS.items()}


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def write_all(out_dir: Path, builders: dict[str, Callable[[], onnx.ModelProto]] | None = None) -> dict[str, Path]:
    """Build, validate and write every model (of `builders`, default BUILDERS) to ``out_dir/<name>.onnx``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, builder in (BUILDERS if builders is None else builders).items():
        model = builder()
        onnx.checker.check_model(model, full_check=True)
        path = out_dir / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        paths[name] = path
    return paths


def check(ref_dir: Path) -> list[str]:
    """Rebuild into a temp dir and list every difference from ``ref_dir``."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_all(Path(tmp))
        for name, path in fresh.items():
            ref = ref_dir / path.name
            if not ref.is_file():
                problems.append(f"missing: {ref}")
            elif ref.read_bytes() != path.read_bytes():
                problems.append(f"differs: {ref}")
        expected = {p.name for p in fresh.values()}
        for stale in sorted(ref_dir.glob("*.onnx")):
            if stale.name not in expected:
                problems.append(f"not built by this script: {stale}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the .onnx files (default: next to this script)")
    parser.add_argument("--check", action="store_true",
                        help="rebuild into a temp dir and exit 1 if any file in --out differs")
    parser.add_argument("--blocks", action="store_true",
                        help="write only the blocks of BLOCK_BUILDERS, each with NAME.inputs.npz (3 input sets "
                             "stacked on a leading axis), into --out, which must then be given")
    args = parser.parse_args(argv)

    if args.blocks:
        if args.out is None:
            parser.error("--blocks needs --out DIR")
        for name, path in write_all(args.out, BLOCK_BUILDERS).items():
            np.savez(args.out / f"{name}.inputs.npz", **model_inputs(name, samples=3))
            print(f"{path}  {path.stat().st_size} bytes")
        return 0
    args.out = args.out or Path(__file__).resolve().parent

    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("zoo is stale; run: python models/build_zoo.py", file=sys.stderr)
            return 1
        print(f"zoo up to date ({len(BUILDERS)} models in {args.out})")
        return 0

    for name, path in write_all(args.out).items():
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
