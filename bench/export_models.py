#!/usr/bin/env python3
"""Export standard torchvision and transformers architectures to ONNX, for `bench/try_models.py`.

Runs in its own virtual environment (torch, torchvision, transformers, onnx, onnxscript), never rcc's:
torch is not an rcc dependency. Every model gets random weights from a fixed seed (no download), a small
input where the architecture allows it (the point is the architecture, not the size) and is exported by
torch's dynamo exporter at opset 18, or, when that fails, by the TorchScript exporter at opset 17.

For each model NAME the output folder gets `NAME.onnx`, `NAME.inputs.npz` (3 seeded input sets stacked
on a leading sample axis: images N(0, 1), token ids in the vocabulary, attention masks of ones with the
last quarter padded out) and a line in `manifest.json` (exporter, opset, input shapes, parameter count,
seconds, or the error that stopped it).

    /work/venvs/torch/bin/python bench/export_models.py                 # every model into /work/exports
    /work/venvs/torch/bin/python bench/export_models.py --out DIR --models resnet18 bert_tiny
    /work/venvs/torch/bin/python bench/export_models.py --list

Each model is exported in a child process (`--timeout` seconds), so one crash or hang only loses that
model. The files are never committed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path("/work/exports")
SAMPLES = 3
SEED = 0
SEQUENCE = 16  # tokens per sequence for the text models
VOCAB = 512
ERROR_CHARS = 200


@dataclass(frozen=True)
class Spec:
    """One architecture: how to build it (seeded, random weights) and what it is fed."""

    build: Callable[[], Any]
    inputs: dict[str, tuple[int, ...]]  # input name → shape; dtype from `token_inputs`
    token_inputs: dict[str, int] = field(default_factory=dict)  # int64 input name → vocabulary size (0: mask)
    family: str = "torchvision"
    prepare: Callable[[Any, "Spec"], None] | None = None  # fixes a random-weight model before export


def image(size: int) -> dict[str, tuple[int, ...]]:
    return {"image": (1, 3, size, size)}


def text(*names: str) -> dict[str, tuple[int, ...]]:
    return {name: (1, SEQUENCE) for name in names}


# --------------------------------------------------------------------------
# Builders: imported lazily so `--list` and the parent process need no torch
# --------------------------------------------------------------------------


def torchvision_model(name: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import torchvision.models as tvm
        return tvm.get_model(name, weights=None, **kwargs)
    return build


def segmentation_model(name: str, **kwargs: Any) -> Callable[[], Any]:
    """A torchvision segmentation model, its dict output reduced to the `out` tensor."""
    def build() -> Any:
        import torch
        import torchvision.models as tvm

        class OutOnly(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = tvm.get_model(name, weights=None, weights_backbone=None, **kwargs)

            def forward(self, image: torch.Tensor) -> torch.Tensor:
                return self.model(image)["out"]

        return OutOnly()
    return build


def ssdlite() -> Any:
    """SSDlite320-MobileNetV3: the whole detector with its post-processing, boxes/scores/labels out."""
    import torch
    import torchvision.models as tvm

    class Detections(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = tvm.get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            found = self.model([image[0]])[0]
            return found["boxes"], found["scores"], found["labels"]

    return Detections()


def hf_model(kind: str) -> Callable[[], Any]:
    """A transformers model in a tiny configuration (2 layers, hidden 64, 4 heads), eager attention,
    returning its last hidden state."""
    def build() -> Any:
        import torch
        import transformers as hf

        small = {"attn_implementation": "eager"}
        if kind == "bert":
            config = hf.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128, max_position_embeddings=64, **small)
            model = hf.BertModel(config)
        elif kind == "distilbert":
            config = hf.DistilBertConfig(vocab_size=VOCAB, dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                                         max_position_embeddings=64, **small)
            model = hf.DistilBertModel(config)
        elif kind == "gpt2":
            config = hf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                   use_cache=False, **small)
            model = hf.GPT2Model(config)
        else:
            config = hf.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128, **small)
            model = hf.ViTModel(config, add_pooling_layer=False)

        class LastHidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: torch.Tensor) -> torch.Tensor:
                names = ("pixel_values",) if kind == "vit" else ("input_ids", "attention_mask")
                return self.model(**dict(zip(names, args)), return_dict=False)[0]

        return LastHidden()
    return build


def random_vit_head(model: Any, spec: Spec) -> None:
    """torchvision zero-initialises ViT's classifier head: every output would be 0 whatever the input, and a
    verification of it proves nothing. Give it random weights (std 0.02, as its other linear layers)."""
    import torch
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)


def recalibrated_batchnorm(model: Any, spec: Spec, batches: int = 4,
                           forward: Callable[[Any], Any] | None = None) -> None:
    """With random weights and the default batch-norm statistics (mean 0, variance 1) the MobileNetV3
    backbone's activations shrink to 1e-10: DeepLabV3's output is its last convolution's bias and SSDlite's
    detections are the same for every input. Recompute the statistics on N(0, 1) images (training-mode
    passes through `forward`, by default the model; cumulative averages), as a trained network's are, so
    every layer sees unit-scale activations."""
    import torch
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    generator = torch.Generator().manual_seed(SEED + 1)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            (forward or model)(*(torch.randn((8, *shape[1:]), generator=generator) for shape in spec.inputs.values()))
    model.eval()


def recalibrated_detector(model: Any, spec: Spec) -> None:
    """`recalibrated_batchnorm` through SSDlite's backbone and head (the detector in training mode wants targets)."""
    detector = model.model
    recalibrated_batchnorm(model, spec, forward=lambda image: detector.head(list(detector.backbone(image).values())))


MODELS: dict[str, Spec] = {
    "resnet18": Spec(torchvision_model("resnet18"), image(64)),
    "resnet50": Spec(torchvision_model("resnet50"), image(64)),
    "mobilenet_v2": Spec(torchvision_model("mobilenet_v2"), image(64)),
    "mobilenet_v3_small": Spec(torchvision_model("mobilenet_v3_small"), image(64)),
    "mobilenet_v3_large": Spec(torchvision_model("mobilenet_v3_large"), image(64)),
    "efficientnet_b0": Spec(torchvision_model("efficientnet_b0"), image(64)),
    "shufflenet_v2_x1_0": Spec(torchvision_model("shufflenet_v2_x1_0"), image(64)),
    "mnasnet0_5": Spec(torchvision_model("mnasnet0_5"), image(64)),
    "regnet_y_400mf": Spec(torchvision_model("regnet_y_400mf"), image(64)),
    "densenet121": Spec(torchvision_model("densenet121"), image(64)),
    "convnext_tiny": Spec(torchvision_model("convnext_tiny"), image(64)),
    "vit_b_16": Spec(torchvision_model("vit_b_16", image_size=64), image(64), prepare=random_vit_head),
    "swin_t": Spec(torchvision_model("swin_t"), image(64)),
    "fcn_resnet50": Spec(segmentation_model("fcn_resnet50", aux_loss=False), image(64)),
    "deeplabv3_mobilenet_v3_large": Spec(segmentation_model("deeplabv3_mobilenet_v3_large", aux_loss=False),
                                         image(64), prepare=recalibrated_batchnorm),
    "lraspp_mobilenet_v3_large": Spec(segmentation_model("lraspp_mobilenet_v3_large"), image(64)),
    "ssdlite320_mobilenet_v3_large": Spec(ssdlite, image(96), prepare=recalibrated_detector),
    "bert_tiny": Spec(hf_model("bert"), text("input_ids", "attention_mask"),
                      {"input_ids": VOCAB, "attention_mask": 0}, "transformers"),
    "distilbert_tiny": Spec(hf_model("distilbert"), text("input_ids", "attention_mask"),
                            {"input_ids": VOCAB, "attention_mask": 0}, "transformers"),
    "gpt2_tiny": Spec(hf_model("gpt2"), text("input_ids", "attention_mask"),
                      {"input_ids": VOCAB, "attention_mask": 0}, "transformers"),
    "hf_vit_tiny": Spec(hf_model("vit"), {"pixel_values": (1, 3, 32, 32)}, family="transformers"),
}


# --------------------------------------------------------------------------
# Inputs and export
# --------------------------------------------------------------------------


def sample_inputs(spec: Spec, seed: int = SEED, samples: int = SAMPLES) -> dict[str, np.ndarray]:
    """`samples` input sets stacked on a leading axis (rcc's `--inputs` takes that as several samples)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for name, shape in spec.inputs.items():
        stacked = (samples, *shape)
        if name not in spec.token_inputs:
            arrays[name] = rng.standard_normal(stacked).astype(np.float32)
        elif spec.token_inputs[name]:
            arrays[name] = rng.integers(0, spec.token_inputs[name], stacked, dtype=np.int64)
        else:  # attention mask: the last quarter of every sequence is padding
            mask = np.ones(stacked, dtype=np.int64)
            mask[..., shape[-1] - shape[-1] // 4:] = 0
            arrays[name] = mask
    return arrays


def first_line(error: BaseException) -> str:
    """`Type: first line of the message` (at most ERROR_CHARS of it), without the terminal colours torch's
    exporter puts in it."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line[:ERROR_CHARS]}{'...' if len(line) > ERROR_CHARS else ''}"


def export_one(name: str, out_dir: Path, exporter: str) -> dict[str, Any]:
    """Build `name` with seeded random weights and export it; the manifest entry."""
    import torch

    spec = MODELS[name]
    torch.manual_seed(SEED)
    model = spec.build().eval()
    if spec.prepare is not None:
        spec.prepare(model, spec)
    inputs = sample_inputs(spec)
    args = tuple(torch.from_numpy(array[0]) for array in inputs.values())
    path = out_dir / f"{name}.onnx"
    entry: dict[str, Any] = {"family": spec.family, "inputs": {k: list(v.shape[1:]) for k, v in inputs.items()},
                             "parameters": sum(p.numel() for p in model.parameters())}
    errors = []
    for kind in (("dynamo", "torchscript") if exporter == "auto" else (exporter,)):
        try:
            with torch.no_grad():
                if kind == "dynamo":
                    program = torch.onnx.export(model, args, dynamo=True, opset_version=18,
                                                input_names=list(inputs), external_data=False)
                    program.save(str(path))
                else:
                    torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17,
                                      input_names=list(inputs), do_constant_folding=True)
            entry.update(exporter=kind, opset=18 if kind == "dynamo" else 17)
            break
        except Exception as error:  # noqa: BLE001  (record why, try the other exporter)
            errors.append(f"{kind}: {first_line(error)}" + (f" (cause: {first_line(error.__cause__)})"
                                                              if error.__cause__ is not None else ""))
            path.unlink(missing_ok=True)
    else:
        entry["error"] = "; ".join(errors)
        return entry
    if errors:
        entry["fallback_because"] = errors[0]
    np.savez(out_dir / f"{name}.inputs.npz", **inputs)
    import onnx
    model_proto = onnx.load(str(path))
    entry["onnx_ops"] = sorted({node.op_type for node in model_proto.graph.node})
    entry["bytes"] = path.stat().st_size
    return entry


def child(name: str, out_dir: Path, exporter: str) -> int:
    """Export one model and print its manifest entry as the last line of stdout."""
    started = time.perf_counter()
    try:
        entry = export_one(name, out_dir, exporter)
    except Exception as error:  # noqa: BLE001  (the parent records it and goes on)
        traceback.print_exc()
        entry = {"error": first_line(error)}
    entry["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(entry))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="only these (default: all)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per model (default 900)")
    parser.add_argument("--list", action="store_true", help="print the model names and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(MODELS))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child(args.child, args.out, args.exporter)

    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for name in args.models or list(MODELS):
        command = [sys.executable, __file__, "--child", name, "--out", str(args.out), "--exporter", args.exporter]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            lines = done.stdout.strip().splitlines()
            entry = json.loads(lines[-1]) if lines else {"error": f"exit {done.returncode}: "
                                                                  f"{done.stderr.strip().splitlines()[-1:]}"}
        except subprocess.TimeoutExpired:
            entry = {"error": f"timed out after {args.timeout:g} s"}
        manifest[name] = entry
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        status = entry.get("error") or f"{entry['exporter']} opset {entry['opset']}, {entry['bytes'] / 1e6:.1f} MB"
        print(f"{name:32s} {status}", flush=True)
    failed = [name for name in args.models or MODELS if "error" in manifest[name]]
    print(f"{len(args.models or MODELS) - len(failed)} exported, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
