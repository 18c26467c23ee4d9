#!/usr/bin/env python3
"""Transformer exports rewritten by onnxruntime's transformer optimizer, as Hugging Face Optimum's optimization
levels write them (com.microsoft SkipLayerNormalization, BiasGelu, ...), for `bench/try_models.py`.

`onnxruntime.transformers.optimizer` imports torch, so this runs in the export environment (README of bench/:
`export_models.py`), with onnxruntime installed there too:

    /work/venvs/torch/bin/pip install onnxruntime
    /work/venvs/torch/bin/python bench/ort_optimize_exports.py --exports /work/exports --out /work/exports_opt
    python bench/try_models.py --dir /work/exports_opt --out /work/exports_opt/table.txt

Each NAME.onnx of `--exports` listed below becomes NAME_ortopt.onnx (onnxruntime's fusions at opt_level 0: the
graph fusions only, no constant folding of its own), with NAME.inputs.npz copied beside it.
"""

from __future__ import annotations

import argparse
import collections
import shutil
from pathlib import Path

# model → (the optimizer's model_type, attention heads, hidden size) of bench/export_models.py's configurations
MODELS = {"bert_tiny": ("bert", 4, 64), "distilbert_tiny": ("bert", 4, 64), "hf_vit_tiny": ("vit", 4, 64),
          "vit_b_16": ("vit", 12, 768)}


def main() -> int:
    import onnx
    from onnxruntime.transformers import optimizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exports", type=Path, default=Path("/work/exports"))
    parser.add_argument("--out", type=Path, default=Path("/work/exports_opt"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (kind, heads, hidden) in MODELS.items():
        source = args.exports / f"{name}.onnx"
        if not source.exists():
            print(f"{name}: no {source}, skipped")
            continue
        target = args.out / f"{name}_ortopt.onnx"
        optimized = optimizer.optimize_model(str(source), model_type=kind, num_heads=heads, hidden_size=hidden,
                                             opt_level=0, use_gpu=False)
        optimized.save_model_to_file(str(target))
        shutil.copy(args.exports / f"{name}.inputs.npz", args.out / f"{name}_ortopt.inputs.npz")
        ops = collections.Counter(f"{n.domain}." * bool(n.domain) + n.op_type for n in onnx.load(target).graph.node)
        print(f"{name}: {dict(sorted(ops.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
