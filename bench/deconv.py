"""Benchmark: RED's pixel-wise deconvolution against zero insertion, on GAN and FCN decoders.

Three models built here with onnx.helper and seeded numpy (random weights, not trained):
- DCGAN generator (Radford et al. 2016): nz 100, ngf 64, 64×64×3 image; ConvTranspose 100→512 k4 s1 p0,
  then 512→256→128→64→3 k4 s2 p1, BatchNorm+ReLU between, Tanh out;
- FCN-8s decoder (Long et al. 2015): 1×1 score layers on fc7 (7×7), pool4 (14×14) and pool3 (28×28), 21
  classes, upscore2 and upscore_pool4 (k4 s2 p1) with skip Adds, upscore8 (k16 s8 p4, 28×28 → 224×224);
- FCN-32s upscore: one ConvTranspose 21→21 k64 s32 p16, 7×7 → 224×224.

Each is compiled with `--deconv zero-insertion` and `--deconv pixelwise` (integer mode, default target)
and every program is verified once on the machine against onnxruntime (SNR and the integer reference
match), so the figures come from programs shown to compute the model. The exception is FCN-32s's
zero-insertion program: its im2col alone would hold 50176 × 86016 float32 (17 GB) and integer
calibration evaluates it, so for FCN-32s both lowerings are compiled in float mode, whose crossbar
layout and counts of MACs and array passes are those of integer mode (the bench checks this on the
pixel-wise program, which it also verifies in both modes); the zero-insertion program is not run.
Integer mode adds quantise ops (cycles) to float mode's program, so for FCN-32s the bench also prints
a lower bound of the integer-mode speedup: zero insertion's float cycles over pixel-wise's integer ones.

Per transposed-conv layer it prints MACs, MACs on inserted zeros, array passes (`mvm_ops`: one array,
one input bit-slice, one vector), cycles and crossbars under each lowering, and the ratios; then the
whole-model cycles, RED's published ranges and the arithmetic one can check by hand.

    python bench/deconv.py            # all three models (about 30 s)
    python bench/deconv.py --quick    # skip FCN-32s
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import Compiled, compile_model, verify_compiled
from rcc.compiler.report import layer_rows, totals

LOWERINGS = ("zero-insertion", "pixelwise")
CLASSES = 21

RED_PUBLISHED = """RED's published results (simulated against prior ReRAM deconvolution accelerators):
  DATE 2019 (Fan et al.): 3.69x-31.15x speedup, 8%-88.36% less energy
  TCAD 2020 (extended):   4.0x-56.16x speedup, 1.05x-18.17x energy efficiency (GAN and FCN models)
Checkable arithmetic: when s divides k the pixel-wise form does 1/s^2 of the MACs of zero insertion:
  k4 s2 (DCGAN, FCN-8s upscore2/pool4): 4x;  k16 s8 (FCN-8s upscore8): 64x;  k64 s32 (FCN-32s): 1024x.
Array passes fall by the same s^2 when a phase's kernel (C/g * (k/s)^2 rows) fills whole arrays, and by
the ratio of row tiles otherwise. rcc does not model energy; ADC conversions, the largest share of an
ISAAC-style chip's power, are shown as a proxy."""


# ---------------------------------------------------------------------------------------------------
# Models


class GraphBuilder:
    """Nodes and seeded random initializers of one ONNX graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def tensor(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_transpose(self, x: str, name: str, channels: int, out_channels: int, kernel: int, stride: int,
                       pad: int, bias: bool = True) -> str:
        fan_in = channels * kernel * kernel / (stride * stride)  # inputs reaching one output
        weight = self.rng.standard_normal((channels, out_channels, kernel, kernel)) * math.sqrt(2 / fan_in)
        inputs = [x, self.tensor(f"{name}.weight", weight)]
        if bias:
            inputs.append(self.tensor(f"{name}.bias", 0.1 * self.rng.standard_normal(out_channels)))
        self.nodes.append(helper.make_node("ConvTranspose", inputs, [name], name=name, kernel_shape=[kernel, kernel],
                                           strides=[stride, stride], pads=[pad] * 4))
        return name

    def score(self, x: str, name: str, channels: int) -> str:
        weight = self.rng.standard_normal((CLASSES, channels, 1, 1)) * math.sqrt(2 / channels)
        bias = 0.1 * self.rng.standard_normal(CLASSES)
        self.nodes.append(helper.make_node("Conv", [x, self.tensor(f"{name}.weight", weight),
                                                    self.tensor(f"{name}.bias", bias)], [name], name=name))
        return name

    def batch_norm_relu(self, x: str, name: str, channels: int) -> str:
        parameters = [self.tensor(f"{name}.scale", 1 + 0.1 * self.rng.standard_normal(channels)),
                      self.tensor(f"{name}.bias", 0.1 * self.rng.standard_normal(channels)),
                      self.tensor(f"{name}.mean", 0.1 * self.rng.standard_normal(channels)),
                      self.tensor(f"{name}.var", self.rng.uniform(0.5, 1.5, channels))]
        self.nodes.append(helper.make_node("BatchNormalization", [x, *parameters], [name], name=name))
        self.nodes.append(helper.make_node("Relu", [name], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    def add(self, a: str, b: str, name: str) -> str:
        self.nodes.append(helper.make_node("Add", [a, b], [name], name=name))
        return name

    def model(self, name: str, inputs: dict[str, list[int]], output: str, shape: list[int]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model, full_check=True)
        return model


def dcgan_generator() -> onnx.ModelProto:
    builder = GraphBuilder(seed=64)
    x = builder.conv_transpose("z", "deconv1", 100, 512, kernel=4, stride=1, pad=0, bias=False)
    widths = [512, 256, 128, 64]
    for index, (channels, out_channels) in enumerate(zip(widths, widths[1:] + [3]), start=2):
        x = builder.batch_norm_relu(x, f"bn{index - 1}", channels)
        x = builder.conv_transpose(x, f"deconv{index}", channels, out_channels, kernel=4, stride=2, pad=1,
                                   bias=False)
    builder.nodes.append(helper.make_node("Tanh", [x], ["image"], name="tanh"))
    return builder.model("dcgan_generator", {"z": [1, 100, 1, 1]}, "image", [1, 3, 64, 64])


def fcn8s_decoder() -> onnx.ModelProto:
    builder = GraphBuilder(seed=8)
    x = builder.conv_transpose(builder.score("fc7", "score_fr", 4096), "upscore2", CLASSES, CLASSES, 4, 2, 1,
                               bias=False)
    x = builder.add(x, builder.score("pool4", "score_pool4", 512), "fuse_pool4")
    x = builder.conv_transpose(x, "upscore_pool4", CLASSES, CLASSES, 4, 2, 1, bias=False)
    x = builder.add(x, builder.score("pool3", "score_pool3", 256), "fuse_pool3")
    x = builder.conv_transpose(x, "upscore8", CLASSES, CLASSES, 16, 8, 4, bias=False)
    inputs = {"fc7": [1, 4096, 7, 7], "pool4": [1, 512, 14, 14], "pool3": [1, 256, 28, 28]}
    return builder.model("fcn8s_decoder", inputs, x, [1, CLASSES, 224, 224])


def fcn32s_upscore() -> onnx.ModelProto:
    builder = GraphBuilder(seed=32)
    x = builder.conv_transpose("score_fr", "upscore", CLASSES, CLASSES, 64, 32, 16, bias=False)
    return builder.model("fcn32s_upscore", {"score_fr": [1, CLASSES, 7, 7]}, x, [1, CLASSES, 224, 224])


# name → (builder, label, precision of the comparison)
MODELS: dict[str, tuple[Callable[[], onnx.ModelProto], str, str]] = {
    "dcgan": (dcgan_generator, "DCGAN generator (nz 100, ngf 64, 1x1 -> 64x64)", "int"),
    "fcn8s": (fcn8s_decoder, "FCN-8s decoder (21 classes, 7x7 -> 224x224)", "int"),
    "fcn32s": (fcn32s_upscore, "FCN-32s upscore (21 classes, k64 s32 p16, 7x7 -> 224x224)", "float"),
}


# ---------------------------------------------------------------------------------------------------
# Measuring


def onnx_names(model: onnx.ModelProto) -> dict[str, str]:
    """Layer name → the ConvTranspose node it came from: a BatchNormalization right after a transposed
    conv is folded into it, and the layer carries the BatchNormalization's result name."""
    names = {node.output[0]: node.name for node in model.graph.node if node.op_type == "ConvTranspose"}
    for node in model.graph.node:
        if node.op_type == "BatchNormalization" and node.input[0] in names:
            names[node.output[0]] = names.pop(node.input[0])
    return names


def deconv_layers(compiled: Compiled) -> dict[str, str]:
    """Layer name → description of every transposed conv, read off the pixel-wise graph: each one ends in
    an nn.interleave named after it, fed by its phase convs."""
    layers = {}
    for op in compiled.graph.ops:
        if op.opname != "nn.interleave":
            continue
        phase = op.operands[0].producer
        out_channels, channels = phase.operands[1].type.shape[:2] if phase.opname == "nn.conv2d" else ("?", "?")
        sh, sw = op.attrs["strides"]
        layers[op.result.name] = (f"s{sh}, {sh * sw} phase{'s' if sh * sw > 1 else ''}, {channels}->{out_channels}, "
                                  f"{'x'.join(map(str, op.operands[0].type.shape[2:]))}/phase -> "
                                  f"{'x'.join(map(str, op.result.type.shape[2:]))}")
    return layers


def kernel_of(compiled: Compiled, layer: str) -> str:
    """`k4`, read off the zero-insertion graph's conv (its kernel is the whole transposed-conv kernel)."""
    conv = next(op for op in compiled.graph.ops if op.opname == "nn.conv2d" and op.result.name == layer)
    kh, kw = conv.operands[1].type.shape[2:]
    return f"k{kh}" if kh == kw else f"k{kh}x{kw}"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "-"


def human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def verification_line(path: Path, compiled: Compiled, lowering: str, static_cycles: int) -> str:
    start = time.perf_counter()
    result = verify_compiled(path, compiled, seed=0)
    seconds = time.perf_counter() - start
    metrics = next(iter(result.outputs.values()))
    if compiled.precision == "int":
        quality = (f"SNR {metrics['snr_db']:.1f} dB (bound {result.extra['tolerance']}), integer reference "
                   f"match {result.extra['integer_reference_match']}")
    else:
        quality = f"rel L2 {metrics['rel_l2']:.2e} ({result.extra['tolerance']})"
    cycles = result.extra["counts"]["cycles"]
    assert cycles == static_cycles, (lowering, cycles, static_cycles)  # the machine counts what the report says
    verdict = "PASS" if result.passed else "FAIL"
    return f"  machine [{lowering}, {compiled.precision}]: {verdict}  {quality}  ({seconds:.1f} s)"


def measure(name: str, directory: Path) -> tuple[list[str], dict[str, float]]:
    """The model's table lines and its whole-model ratios."""
    build, label, precision = MODELS[name]
    path = directory / f"{name}.onnx"
    model = build()
    onnx.save(model, path)
    node_names = onnx_names(model)
    compiled = {lowering: compile_model(path, precision=precision, deconv=lowering) for lowering in LOWERINGS}
    rows = {lowering: {row["name"]: row for row in layer_rows(c.program, c.target)} for lowering, c in compiled.items()}
    layers = deconv_layers(compiled["pixelwise"])
    lines = [f"== {label}  [{precision} mode, default target: 128x128 arrays, 8-bit weights/inputs]",
             f"{'layer':<14} {'lowering':<15} {'MACs':>9} {'zero-MACs':>9} {'passes':>9} {'cycles':>9} "
             f"{'xbars':>6} | {'MACs':>6} {'passes':>7} {'cycles':>7}"]
    for layer, description in layers.items():
        shown = node_names.get(layer, layer) + (f" (as {layer})" if node_names.get(layer, layer) != layer else "")
        lines.append(f"{shown}: {kernel_of(compiled['zero-insertion'], layer)} {description}")
        for lowering in LOWERINGS:
            row = rows[lowering][layer]
            speedups = ""
            if lowering == "pixelwise":
                zero = rows["zero-insertion"][layer]
                speedups = (f" | {ratio(zero['macs'], row['macs']):>6} {ratio(zero['mvm_ops'], row['mvm_ops']):>7} "
                            f"{ratio(zero['cycles'], row['cycles']):>7}")
            lines.append(f"{'':<14} {lowering:<15} {human(row['macs']):>9} {human(row['zero_macs']):>9} "
                         f"{human(row['mvm_ops']):>9} {human(row['cycles']):>9} {row['crossbars']:>6}{speedups}")
    whole = {lowering: totals(list(rows[lowering].values())) for lowering in LOWERINGS}
    zero, pixel = whole["zero-insertion"], whole["pixelwise"]
    speedup = {"cycles": zero["cycles"] / pixel["cycles"], "adc": zero["adc_conversions"] / pixel["adc_conversions"]}
    lines.append(f"whole model: cycles {human(zero['cycles'])} -> {human(pixel['cycles'])} = "
                 f"{speedup['cycles']:.2f}x speedup; MACs {ratio(zero['macs'], pixel['macs'])}; ADC conversions "
                 f"(energy proxy) {speedup['adc']:.2f}x fewer; crossbars {zero['crossbars']} -> {pixel['crossbars']}")
    for lowering in LOWERINGS:
        if name == "fcn32s" and lowering == "zero-insertion":
            lines.append("  machine [zero-insertion]: not run (its im2col would hold 50176 x 86016 float32, 17 GB)")
            continue
        lines.append(verification_line(path, compiled[lowering], lowering, whole[lowering]["cycles"]))
    if precision == "float":  # the integer pixel-wise program: same crossbars and passes, and it verifies
        integer = compile_model(path, precision="int", deconv="pixelwise")
        integer_rows = {row["name"]: row for row in layer_rows(integer.program, integer.target)}
        for layer in layers:
            for key in ("macs", "zero_macs", "mvm_ops", "crossbars"):
                assert integer_rows[layer][key] == rows["pixelwise"][layer][key], (layer, key)
        integer_cycles = totals(list(integer_rows.values()))["cycles"]
        lines.append(verification_line(path, integer, "pixelwise", integer_cycles))
        # Integer mode adds quantise ops to float mode's program and nothing else, so zero insertion's
        # float cycles bound its integer cycles from below.
        speedup["int_at_least"] = zero["cycles"] / integer_cycles
        lines.append(f"integer mode: pixel-wise {human(integer_cycles)} cycles, so the speedup is at least "
                     f"{speedup['int_at_least']:.2f}x (zero insertion's float cycles bound its integer ones)")
    return lines, speedup


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip FCN-32s")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="run only these models")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.models or [name for name in MODELS if not (args.quick and name == "fcn32s")]
    speedups = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            start = time.perf_counter()
            lines, speedups[name] = measure(name, Path(directory))
            print("\n".join(lines) + f"\n({time.perf_counter() - start:.0f} s)\n", flush=True)
    print("Whole-model speedup of pixel-wise over zero insertion in rcc (cycles; ADC conversions as energy proxy):")
    for name, speedup in speedups.items():
        bound = f"   (integer mode: >= {speedup['int_at_least']:.2f}x)" if "int_at_least" in speedup else ""
        print(f"  {MODELS[name][1]:<60} {speedup['cycles']:8.2f}x   ADC {speedup['adc']:7.2f}x{bound}")
    print()
    print(RED_PUBLISHED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
