"""Benchmark: energy and latency per inference (rcc's cost model, ISAAC preset) beside the published claims
of the two techniques rcc is built around, and ISAAC's own aggregates reproduced from its Table I.

Measured in one run, every figure from `estimate_cost(program, load_chip("isaac"))` on programs compiled
here (integer mode, seeded random weights, not trained):

1. Sparse mapping (Lin et al., ASP-DAC 2019): dense tiling vs packed (`--packing best`) vs packed + 20% of
   each layer's array blocks pruned (`--prune-budget 0.2`), on `models/lenet5_pruned.onnx` and on a
   VGG-16-shaped model built here (CIFAR-sized: 13 3×3 convs 64…512 and FC 512-512-10, every weight
   magnitude-pruned to 92.5% zeros, Lin et al.'s VGG-16 sparsity), 64×64 arrays (Lin et al.'s VGG-16
   setting). `repl. inf/s` is a derived figure: the pipeline's throughput with the model replicated as
   often as it fits in one ISAAC chip's arrays (ISAAC balances its pipeline by replication).
2. Deconvolution (RED, Fan et al.): `--deconv zero-insertion` vs `--deconv pixelwise` on the DCGAN
   generator and FCN-8s decoder of bench/deconv.py, an SNGAN-style generator (Miyato et al. 2018, standard
   CNN: z 128 → 4×4×512, three ConvTranspose k4 s2 p1 512→256→128→64, Conv 3×3 → 3, Tanh) and an
   FSRCNN-style ×3 super-resolution net (Dong et al. 2016: Conv 5×5 1→56, 1×1 56→12, 4× 3×3 12→12,
   1×1 12→56, ConvTranspose 9×9 s3 p3 56→1; 32×32 → 96×96), default 128×128 target.
3. ISAAC (ISCA 2016) Table I aggregates and Table IV peak efficiency of ISAAC-CE (16-bit weights and
   inputs, offset encoding, 8-bit ADC) against the published figures.

`on-chip` energy leaves out the off-chip link (HyperTransport, 1.6 nJ per byte), which moves the same
bytes under both mappings. For one program per section the machine runs it and the cost from its
counters is checked equal to the static one.

    python bench/cost.py            # everything (a few minutes)
    python bench/cost.py --quick    # LeNet-5 and DCGAN only, plus the ISAAC table
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from deconv import GraphBuilder, dcgan_generator, fcn8s_decoder  # bench/ is the script's folder
from rcc.backends.chip import load_chip
from rcc.backends.cost_model import peak
from rcc.backends.target import Target
from rcc.compiler.driver import PruneBudget, compile_model
from rcc.runtime.cost import Cost, estimate_cost
from rcc.runtime.machine import Machine

REPO = Path(__file__).resolve().parent.parent
CHIP = load_chip("isaac")
SPARSE_TARGET = Target(xbar_rows=64, xbar_cols=64)
VGG_SPARSITY = 0.925

LIN_PUBLISHED = ("Lin et al. (ASP-DAC 2019), sparse mapping + crossbar pruning vs a dense mapping (PRIME): "
                 "3-5x energy efficiency, 2.5-6x speedup")
RED_PUBLISHED = ("RED (Fan et al.) vs zero-insertion deconvolution: DATE 2019 3.69-31.15x speedup, 8%-88.36% "
                 "energy saving;\n  TCAD 2020 4.0-56.16x speedup, 1.05-18.17x energy efficiency (GAN and FCN)")
ISAAC_PUBLISHED = {"tile power (mW)": 330.0, "tile area (mm2)": 0.372, "chip power (W)": 65.8,
                   "chip area (mm2)": 85.4, "CE peak (GOPs/s/mm2)": 478.95, "PE peak (GOPs/W)": 627.5}
ISAAC_CE = Target(weight_bits=16, input_bits=16, cell_bits=2, dac_bits=1, adc_bits=8, encoding="offset")


# ---- models ------------------------------------------------------------------------------------------

class Builder(GraphBuilder):
    """bench/deconv.py's builder with plain convolutions, pooling and fully connected layers."""

    def conv(self, x: str, name: str, channels: int, out_channels: int, kernel: int, pad: int,
             relu: bool = True, sparsity: float = 0.0) -> str:
        weight = self.rng.standard_normal((out_channels, channels, kernel, kernel)) * math.sqrt(2 / (channels * kernel ** 2))
        inputs = [x, self.tensor(f"{name}.weight", pruned(weight, sparsity)),
                  self.tensor(f"{name}.bias", 0.1 * self.rng.standard_normal(out_channels))]
        self.nodes.append(helper.make_node("Conv", inputs, [name], name=name, kernel_shape=[kernel, kernel],
                                           pads=[pad] * 4))
        return self.relu(name) if relu else name

    def relu(self, x: str) -> str:
        self.nodes.append(helper.make_node("Relu", [x], [f"{x}.relu"], name=f"{x}.relu"))
        return f"{x}.relu"

    def max_pool(self, x: str, name: str) -> str:
        self.nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[2, 2], strides=[2, 2]))
        return name

    def dense(self, x: str, name: str, inputs: int, outputs: int, sparsity: float) -> str:
        weight = self.rng.standard_normal((outputs, inputs)) * math.sqrt(2 / inputs)
        self.nodes.append(helper.make_node("Gemm", [x, self.tensor(f"{name}.weight", pruned(weight, sparsity)),
                                                    self.tensor(f"{name}.bias", np.zeros(outputs))],
                                           [name], name=name, transB=1))
        return name


def pruned(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """`weight` with its smallest-magnitude `sparsity` fraction set to zero."""
    if sparsity <= 0:
        return weight
    keep = weight.size - math.ceil(sparsity * weight.size)
    threshold = np.sort(np.abs(weight).ravel())[::-1][keep - 1] if keep else np.inf
    return np.where(np.abs(weight) >= threshold, weight, 0.0)


def vgg16_pruned() -> onnx.ModelProto:
    builder = Builder(seed=16)
    x, channels = "image", 3
    for block, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for index in range(1, convs + 1):
            x = builder.conv(x, f"conv{block}_{index}", channels, width, 3, 1, sparsity=VGG_SPARSITY)
            channels = width
        x = builder.max_pool(x, f"pool{block}")
    builder.nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten"))
    x = builder.relu(builder.dense("flat", "fc6", 512, 512, VGG_SPARSITY))
    x = builder.relu(builder.dense(x, "fc7", 512, 512, VGG_SPARSITY))
    x = builder.dense(x, "fc8", 512, 10, VGG_SPARSITY)
    return builder.model("vgg16_pruned", {"image": [1, 3, 32, 32]}, x, [1, 10])


def sngan_generator() -> onnx.ModelProto:
    builder = Builder(seed=128)
    x = builder.conv_transpose("z", "linear", 128, 512, kernel=4, stride=1, pad=0, bias=False)  # z → 4×4×512
    for index, (channels, out_channels) in enumerate([(512, 256), (256, 128), (128, 64)], start=1):
        x = builder.batch_norm_relu(x, f"bn{index}", channels)
        x = builder.conv_transpose(x, f"deconv{index}", channels, out_channels, kernel=4, stride=2, pad=1,
                                   bias=False)
    x = builder.batch_norm_relu(x, "bn4", 64)
    x = builder.conv(x, "to_rgb", 64, 3, 3, 1, relu=False)
    builder.nodes.append(helper.make_node("Tanh", [x], ["image"], name="tanh"))
    return builder.model("sngan_generator", {"z": [1, 128, 1, 1]}, "image", [1, 3, 32, 32])


def fsrcnn() -> onnx.ModelProto:
    builder = Builder(seed=3)
    x = builder.conv("low_res", "extract", 1, 56, 5, 2)
    x = builder.conv(x, "shrink", 56, 12, 1, 0)
    for index in range(1, 5):
        x = builder.conv(x, f"map{index}", 12, 12, 3, 1)
    x = builder.conv(x, "expand", 12, 56, 1, 0)
    x = builder.conv_transpose(x, "upscale", 56, 1, kernel=9, stride=3, pad=3)
    return builder.model("fsrcnn", {"low_res": [1, 1, 32, 32]}, x, [1, 1, 96, 96])


# ---- measuring ---------------------------------------------------------------------------------------

def figures(cost: Cost, arrays: int) -> dict[str, float]:
    chip_arrays = CHIP.arrays_per_tile * CHIP.tiles_per_chip
    replicas = max(1, chip_arrays // max(arrays, 1))
    return {"arrays": arrays, "energy": cost.energy_pj, "on_chip": cost.energy_pj - cost.energy_breakdown_pj["offchip"],
            "latency": cost.latency_ns, "throughput": 1e9 / cost.bottleneck_ns,
            "replicated": replicas * 1e9 / cost.bottleneck_ns, "adcs": cost.energy_breakdown_pj["adcs"]}


def arrays_of(program) -> int:
    return sum(i.attrs["arrays"] for i in program.instructions if i.opcode == "mvm")


def machine_agrees(program) -> str:
    inputs = {spec["name"]: np.random.default_rng(0).standard_normal(spec["shape"]).astype(np.float32)
              for spec in program.inputs}
    start = time.perf_counter()
    run = Machine(program).run(inputs)
    same = estimate_cost(program, CHIP, run.per_instruction).to_json() == estimate_cost(program, CHIP).to_json()
    assert same, program.name
    return f"  machine run of {program.name}: cost from its counters equals the static estimate ({time.perf_counter() - start:.1f} s)"


def row(label: str, f: dict[str, float], base: dict[str, float] | None) -> str:
    text = (f"  {label:<22} {f['arrays']:>7} {f['energy'] / 1e6:>10.4g} {f['on_chip'] / 1e6:>10.4g} "
            f"{f['latency'] / 1e3:>10.4g} {f['throughput']:>10.4g} {f['replicated']:>11.4g}")
    if base is not None:
        text += (f" | {base['energy'] / f['energy']:>6.2f}x {base['on_chip'] / f['on_chip']:>6.2f}x "
                 f"{base['latency'] / f['latency']:>6.2f}x {f['replicated'] / base['replicated']:>6.2f}x")
    return text


HEADER = (f"  {'':<22} {'arrays':>7} {'energy uJ':>10} {'on-chip uJ':>10} {'latency us':>10} {'inf/s':>10} "
          f"{'repl. inf/s':>11} | {'energy':>7} {'on-chip':>7} {'latency':>7} {'repl.':>7}")


def sparse_section(directory: Path, quick: bool) -> list[str]:
    lines = ["== 1. Sparse mapping: dense tiling vs packed vs packed + pruned (ISAAC preset, 64x64 arrays, "
             "8-bit weights/inputs)", HEADER.replace("| ", "| gain vs dense: ")]
    models = {"lenet5_pruned": REPO / "models" / "lenet5_pruned.onnx"}
    if not quick:
        path = directory / "vgg16_pruned.onnx"
        onnx.save(vgg16_pruned(), path)
        models["vgg16_pruned (92.5%)"] = path
    checked = None
    for label, path in models.items():
        start = time.perf_counter()
        modes = {"dense": dict(packing="dense"), "packed": dict(packing="best"),
                 "packed + pruned 20%": dict(packing="best", prune=PruneBudget(fraction=0.2))}
        results = {}
        for mode, options in modes.items():
            program = compile_model(path, SPARSE_TARGET, **options).program
            checked = checked or program
            results[mode] = figures(estimate_cost(program, CHIP), arrays_of(program))
        lines.append(f" {label}  ({time.perf_counter() - start:.0f} s)")
        for mode, result in results.items():
            lines.append(row(mode, result, None if mode == "dense" else results["dense"]))
    lines.append(machine_agrees(checked))
    lines.append("  published: " + LIN_PUBLISHED)
    return lines


def deconv_section(directory: Path, quick: bool) -> list[str]:
    lines = ["== 2. Deconvolution: zero insertion vs pixel-wise (ISAAC preset, default 128x128 target)",
             HEADER.replace("| ", "| gain of pixel-wise: ")]
    builders = {"DCGAN generator": dcgan_generator, "FCN-8s decoder": fcn8s_decoder,
                "SNGAN-style generator": sngan_generator, "FSRCNN x3 (SR)": fsrcnn}
    if quick:
        builders = {"DCGAN generator": dcgan_generator}
    checked = None
    for label, build in builders.items():
        start = time.perf_counter()
        path = directory / f"{build.__name__}.onnx"
        onnx.save(build(), path)
        results = {}
        for lowering in ("zero-insertion", "pixelwise"):
            program = compile_model(path, deconv=lowering).program
            checked = program if lowering == "pixelwise" and checked is None else checked
            results[lowering] = figures(estimate_cost(program, CHIP), arrays_of(program))
        lines.append(f" {label}  ({time.perf_counter() - start:.0f} s)")
        for lowering, result in results.items():
            lines.append(row(lowering, result, None if lowering == "zero-insertion" else results["zero-insertion"]))
        saving = 1 - results["pixelwise"]["energy"] / results["zero-insertion"]["energy"]
        lines.append(f"  {'':<22} energy saving {saving:.1%}")
    lines.append(machine_agrees(checked))
    lines.append("  published: " + RED_PUBLISHED)
    return lines


def isaac_section() -> list[str]:
    figures_ce = peak(CHIP, ISAAC_CE)
    measured = {"tile power (mW)": CHIP.tile_power_mw(), "tile area (mm2)": CHIP.tile_area_mm2(),
                "chip power (W)": CHIP.chip_power_mw() / 1e3, "chip area (mm2)": CHIP.chip_area_mm2(),
                "CE peak (GOPs/s/mm2)": figures_ce.tops_per_mm2 * 1e3, "PE peak (GOPs/W)": figures_ce.tops_per_w * 1e3}
    lines = ["== 3. ISAAC (ISCA 2016) reproduced from its Table I components (preset isaac; ISAAC-CE for the peak)",
             f"  {'figure':<22} {'rcc':>10} {'published':>10} {'diff':>7}"]
    for key, published in ISAAC_PUBLISHED.items():
        lines.append(f"  {key:<22} {measured[key]:>10.4g} {published:>10.4g} {measured[key] / published - 1:>+7.2%}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="LeNet-5 and DCGAN only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for section in (sparse_section(Path(folder), args.quick), deconv_section(Path(folder), args.quick),
                        isaac_section()):
            print("\n".join(section) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
