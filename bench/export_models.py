#!/usr/bin/env python3
"""Export standard torchvision and transformers architectures to ONNX, for `bench/try_models.py`.

Runs in its own virtual environment (torch, torchvision, transformers, onnx, onnxscript), never rcc's:
torch is not an rcc dependency. Every model gets random weights from a fixed seed (no download; the two `_trained`
entries are then trained briefly on synthetic shapes, `trained_exports.py`, and get inputs of that kind), a small
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
    samples: Callable[[int, int], dict[str, np.ndarray]] | None = None  # (seed, count) → inputs, else N(0, 1)


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


TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
TINY_TEXT = {"vocab_size": VOCAB, "max_position_embeddings": 64, **TINY}
TINY_IMAGE = {"image_size": 32, "patch_size": 8, **TINY}
STAGES4 = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}
TOKENS = {"input_ids": VOCAB, "attention_mask": 0}
INPUT_NAMES = {"text": ("input_ids", "attention_mask"), "image": ("pixel_values",),
               "audio": ("input_values",), "features": ("input_features",)}


def hf_model(config: str, model: str, inputs: str = "text", model_settings: dict[str, Any] | None = None,
             **settings: Any) -> Callable[[], Any]:
    """A transformers model built from `config` (a config class name, with `settings`: tiny sizes, eager
    attention) as `model` (a model class name, given `model_settings`; `Class.encoder` for the encoder alone),
    returning its first output (the last hidden state, or the logits of a task model) for the named `inputs`
    (INPUT_NAMES)."""
    def build() -> Any:
        import torch
        import transformers as hf

        class_name, _, part = model.partition(".")
        network = getattr(hf, class_name)(getattr(hf, config)(attn_implementation="eager", **settings),
                                          **(model_settings or {}))
        network = getattr(network, part) if part else network

        class FirstOutput(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = network

            def forward(self, *args: torch.Tensor) -> torch.Tensor:
                return self.model(**dict(zip(INPUT_NAMES[inputs], args)), return_dict=False)[0]

        return FirstOutput()
    return build


def detector(name: str, **kwargs: Any) -> Callable[[], Any]:
    """A torchvision detector with its post-processing, boxes/scores/labels out, for one image."""
    def build() -> Any:
        import torch
        import torchvision.models as tvm

        class Detections(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = tvm.get_model(name, weights=None, weights_backbone=None, **kwargs)

            def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                found = self.model([image[0]])[0]
                return found["boxes"], found["scores"], found["labels"]

        return Detections()
    return build


def optical_flow(name: str) -> Callable[[], Any]:
    """A torchvision optical-flow model (RAFT), its last refinement's flow out, 4 refinement steps."""
    def build() -> Any:
        import torch
        import torchvision.models as tvm

        class LastFlow(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = tvm.get_model(name, weights=None)

            def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
                return self.model(first, second, num_flow_updates=4)[-1]

        return LastFlow()
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


def recalibrated_batchnorm_of(part: str = "") -> Callable[[Any, Spec], None]:
    """`recalibrated_batchnorm` through a detector's `part` (its backbone, or with `part` empty its backbone
    and head: SSDlite's): the detector in training mode wants targets, so the passes go round it."""
    def prepare(model: Any, spec: Spec) -> None:
        detector = model.model
        if part:
            forward = getattr(detector, part)
        else:
            def forward(image: Any) -> Any:
                return detector.head(list(detector.backbone(image).values()))
        recalibrated_batchnorm(model, spec, forward=forward)
    return prepare


def trained(hook_name: str) -> Callable[[Any, Spec], None]:
    """A `trained_exports` hook (a few hundred steps on its synthetic task) as a `prepare`."""
    def prepare(model: Any, spec: Spec) -> None:
        import trained_exports
        getattr(trained_exports, hook_name)(model)
    return prepare


def shape_images(size: int) -> Callable[[int, int], dict[str, np.ndarray]]:
    """Verification images from `trained_exports`' generator (the distribution the trained models learnt)."""
    def samples(seed: int, count: int) -> dict[str, np.ndarray]:
        import trained_exports
        return {"image": trained_exports.sample_images(seed, count, size)}
    return samples


def classifiers(*names: str) -> dict[str, Spec]:
    """torchvision classifiers as they come, on 64×64 images."""
    return {name: Spec(torchvision_model(name), image(64)) for name in names}


MODELS: dict[str, Spec] = {
    **classifiers("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
                  "shufflenet_v2_x1_0", "mnasnet0_5", "regnet_y_400mf", "densenet121", "convnext_tiny"),
    "vit_b_16": Spec(torchvision_model("vit_b_16", image_size=64), image(64), prepare=random_vit_head),
    "swin_t": Spec(torchvision_model("swin_t"), image(64)),
    "fcn_resnet50": Spec(segmentation_model("fcn_resnet50", aux_loss=False), image(64)),
    "deeplabv3_mobilenet_v3_large": Spec(segmentation_model("deeplabv3_mobilenet_v3_large", aux_loss=False),
                                         image(64), prepare=recalibrated_batchnorm),
    "lraspp_mobilenet_v3_large": Spec(segmentation_model("lraspp_mobilenet_v3_large"), image(64)),
    "ssdlite320_mobilenet_v3_large": Spec(detector("ssdlite320_mobilenet_v3_large"), image(96),
                                          prepare=recalibrated_batchnorm_of()),
    # the same two, trained briefly on synthetic shapes (bench/trained_exports.py): not chaotic
    "deeplabv3_mobilenet_v3_large_trained": Spec(segmentation_model("deeplabv3_mobilenet_v3_large", aux_loss=False),
                                                 image(64), prepare=trained("trained_segmenter"),
                                                 samples=shape_images(64)),
    "ssdlite320_mobilenet_v3_large_trained": Spec(detector("ssdlite320_mobilenet_v3_large"), image(96),
                                                  prepare=trained("trained_detector"), samples=shape_images(96)),
    "bert_tiny": Spec(hf_model("BertConfig", "BertModel", **TINY_TEXT), text("input_ids", "attention_mask"),
                      TOKENS, "transformers"),
    "distilbert_tiny": Spec(hf_model("DistilBertConfig", "DistilBertModel", vocab_size=VOCAB, dim=64, n_layers=2,
                                     n_heads=4, hidden_dim=128, max_position_embeddings=64),
                            text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "gpt2_tiny": Spec(hf_model("GPT2Config", "GPT2Model", vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4,
                               n_positions=64, use_cache=False), text("input_ids", "attention_mask"), TOKENS,
                      "transformers"),
    "hf_vit_tiny": Spec(hf_model("ViTConfig", "ViTModel", "image", {"add_pooling_layer": False}, **TINY_IMAGE),
                        {"pixel_values": (1, 3, 32, 32)}, family="transformers"),
}

# A second wave, beyond issue 11's list: more CNN families, 3-D (video) convolutions, optical flow, two-stage
# and anchor-free detectors, decoder-only language models (RMSNorm, rotary embeddings, grouped-query
# attention, ALiBi), encoder-decoder and speech models, and vision transformers with relative positions.
MORE_MODELS: dict[str, Spec] = {
    **classifiers("squeezenet1_1", "alexnet", "resnext50_32x4d", "efficientnet_v2_s", "regnet_x_400mf", "swin_v2_t"),
    "googlenet": Spec(torchvision_model("googlenet", init_weights=True), image(64)),
    "inception_v3": Spec(torchvision_model("inception_v3", init_weights=True), image(96)),
    "maxvit_t": Spec(torchvision_model("maxvit_t"), image(224)),
    "r3d_18": Spec(torchvision_model("r3d_18"), {"video": (1, 3, 8, 32, 32)}),
    "r2plus1d_18": Spec(torchvision_model("r2plus1d_18"), {"video": (1, 3, 8, 32, 32)}),
    "raft_small": Spec(optical_flow("raft_small"), {"first": (1, 3, 128, 128), "second": (1, 3, 128, 128)}),
    "fasterrcnn_mobilenet_v3_large_320_fpn": Spec(detector("fasterrcnn_mobilenet_v3_large_320_fpn"), image(128),
                                                  prepare=recalibrated_batchnorm_of("backbone")),
    "fcos_resnet50_fpn": Spec(detector("fcos_resnet50_fpn", min_size=128, max_size=128), image(128)),
    "llama_tiny": Spec(hf_model("LlamaConfig", "LlamaModel", num_key_value_heads=2, **TINY_TEXT),
                       text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "qwen2_tiny": Spec(hf_model("Qwen2Config", "Qwen2Model", num_key_value_heads=2, **TINY_TEXT),
                       text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "gemma_tiny": Spec(hf_model("GemmaConfig", "GemmaModel", num_key_value_heads=1, head_dim=16, **TINY_TEXT),
                       text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "phi_tiny": Spec(hf_model("PhiConfig", "PhiModel", **TINY_TEXT), text("input_ids", "attention_mask"), TOKENS,
                     "transformers"),
    "gpt_neox_tiny": Spec(hf_model("GPTNeoXConfig", "GPTNeoXModel", **TINY_TEXT), text("input_ids", "attention_mask"),
                          TOKENS, "transformers"),
    "opt_tiny": Spec(hf_model("OPTConfig", "OPTModel", vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                              ffn_dim=128, num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=64),
                     text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "bloom_tiny": Spec(hf_model("BloomConfig", "BloomModel", vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4),
                       text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "roberta_tiny": Spec(hf_model("RobertaConfig", "RobertaModel", **{**TINY_TEXT, "max_position_embeddings": 66}),
                         text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "albert_tiny": Spec(hf_model("AlbertConfig", "AlbertModel", embedding_size=32, **TINY_TEXT),
                        text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "deberta_v2_tiny": Spec(hf_model("DebertaV2Config", "DebertaV2Model", relative_attention=True,
                                     pos_att_type=["p2c", "c2p"], position_buckets=16, **TINY_TEXT),
                            text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "modernbert_tiny": Spec(hf_model("ModernBertConfig", "ModernBertModel", local_attention=8, pad_token_id=0,
                                     bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, **TINY_TEXT),
                            text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "t5_encoder_tiny": Spec(hf_model("T5Config", "T5EncoderModel", vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128,
                                     num_layers=2, num_heads=4), text("input_ids", "attention_mask"), TOKENS,
                            "transformers"),
    "bart_tiny": Spec(hf_model("BartConfig", "BartModel", vocab_size=VOCAB, d_model=64, encoder_layers=2,
                               decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                               encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64),
                      text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "whisper_encoder_tiny": Spec(hf_model("WhisperConfig", "WhisperModel.encoder", "features", vocab_size=VOCAB,
                                          d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                          decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                          num_mel_bins=16, max_source_positions=32, max_target_positions=64,
                                          pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1),
                                 {"input_features": (1, 16, 64)}, family="transformers"),
    "wav2vec2_tiny": Spec(hf_model("Wav2Vec2Config", "Wav2Vec2Model", "audio", conv_dim=(32,) * 7,
                                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, **TINY),
                          {"input_values": (1, 1600)}, family="transformers"),
    "deit_tiny": Spec(hf_model("DeiTConfig", "DeiTModel", "image", **TINY_IMAGE), {"pixel_values": (1, 3, 32, 32)},
                      family="transformers"),
    "beit_tiny": Spec(hf_model("BeitConfig", "BeitModel", "image", use_relative_position_bias=True, **TINY_IMAGE),
                      {"pixel_values": (1, 3, 32, 32)}, family="transformers"),
    "dinov2_tiny": Spec(hf_model("Dinov2Config", "Dinov2Model", "image", **TINY_IMAGE),
                        {"pixel_values": (1, 3, 32, 32)}, family="transformers"),
    "convnextv2_tiny": Spec(hf_model("ConvNextV2Config", "ConvNextV2Model", "image", **STAGES4),
                            {"pixel_values": (1, 3, 64, 64)}, family="transformers"),
    "segformer_tiny": Spec(hf_model("SegformerConfig", "SegformerForSemanticSegmentation", "image",
                                    num_attention_heads=[1, 2, 4, 8], decoder_hidden_size=64, **STAGES4),
                           {"pixel_values": (1, 3, 64, 64)}, family="transformers"),
    "mobilevit_small": Spec(hf_model("MobileViTConfig", "MobileViTModel", "image", image_size=64),
                            {"pixel_values": (1, 3, 64, 64)}, family="transformers", prepare=recalibrated_batchnorm),
    "levit_128s": Spec(hf_model("LevitConfig", "LevitModel", "image", image_size=64),
                       {"pixel_values": (1, 3, 64, 64)}, family="transformers"),
    "poolformer_tiny": Spec(hf_model("PoolFormerConfig", "PoolFormerModel", "image", **STAGES4),
                            {"pixel_values": (1, 3, 64, 64)}, family="transformers"),
    "clip_text_tiny": Spec(hf_model("CLIPTextConfig", "CLIPTextModel", **TINY_TEXT),
                           text("input_ids", "attention_mask"), TOKENS, "transformers"),
    "yolos_tiny": Spec(hf_model("YolosConfig", "YolosModel", "image", num_detection_tokens=10,
                                **{**TINY_IMAGE, "image_size": [32, 32]}), {"pixel_values": (1, 3, 32, 32)},
                       family="transformers"),
}
MODELS.update(MORE_MODELS)


# --------------------------------------------------------------------------
# Inputs and export
# --------------------------------------------------------------------------


def sample_inputs(spec: Spec, seed: int = SEED, samples: int = SAMPLES) -> dict[str, np.ndarray]:
    """`samples` input sets stacked on a leading axis (rcc's `--inputs` takes that as several samples)."""
    if spec.samples is not None:
        return spec.samples(seed, samples)
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
    if spec.samples is not None:   # held-out samples of the same distribution, for try_models to calibrate on
        np.savez(out_dir / f"{name}.calibration.npz", **spec.samples(SEED + 7, 4))
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
