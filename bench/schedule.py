"""Benchmark: throughput and latency under rcc's schedule (`--replicate auto`, layer and row pipelining)
at several array budgets, against rcc's own baseline (one copy of every layer, layers one after another,
one inference at a time) and an ISAAC-style baseline (every layer balanced against the last one, which
keeps one copy; layer pipeline), every figure measured in one run from `estimate_cost(program,
load_chip("isaac"))` on programs compiled here (integer mode, 128×128 arrays, dense tiling, seeded
random weights: the schedule does not depend on their values).

Models: VGG-16-, ResNet-18- and ResNet-50-shaped (CIFAR-sized, 32×32 inputs: VGG-16 as bench/cost.py
builds it; ResNet-18 with basic blocks [2, 2, 2, 2] and ResNet-50 with bottleneck blocks [3, 4, 6, 3],
widths 64…512, stride-2 convolutions with 1×1 projections, global average pooling, FC 10) and the zoo.
Budgets are multiples of the arrays one copy of the model needs. For the zoo models the machine also
runs the 4× program and its outputs are checked identical to the unreplicated program's.

    python bench/schedule.py            # everything (a few minutes)
    python bench/schedule.py --quick    # the zoo and ResNet-18 only, fewer budgets
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from cost import Builder, vgg16_pruned  # bench/ is the script's folder
from rcc.backends.chip import load_chip
from rcc.backends.emit import emit_program
from rcc.compiler.driver import compile_model
from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.replicate import Replicate
from rcc.ir.inputs import random_inputs
from rcc.runtime.cost import estimate_cost
from rcc.runtime.machine import Machine

REPO = Path(__file__).resolve().parent.parent
CHIP = load_chip("isaac")
BUDGETS = (1, 2, 4, 8, 16)
PUBLISHED = ("PIMCOMP (DAC 2023) vs PUMA's compiler: 1.6x throughput, 2.4x lower latency; CIM-MLC (ASPLOS 2024): "
             "its duplication and multi-level pipelining vs a layer-by-layer baseline; ISAAC (ISCA 2016) "
             "replicates early layers to balance its pipeline")


# ---- models ------------------------------------------------------------------------------------------

class ResNetBuilder(Builder):
    """bench/cost.py's builder with strided convolutions, residual additions and the classifier head."""

    def strided(self, x: str, name: str, channels: int, out_channels: int, kernel: int, stride: int,
                relu: bool = True) -> str:
        out = self.conv(x, name, channels, out_channels, kernel, kernel // 2, relu=False)
        self.nodes[-1].attribute.append(helper.make_attribute("strides", [stride, stride]))
        return self.relu(out) if relu else out

    def residual(self, x: str, shortcut: str, name: str) -> str:
        return self.relu(self.add(x, shortcut, name))

    def head(self, x: str, channels: int) -> str:
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
        self.nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
        return self.dense("flat", "fc", channels, 10, 0.0)


def resnet(name: str, blocks: list[int], bottleneck: bool) -> onnx.ModelProto:
    builder = ResNetBuilder(seed=len(name) + sum(blocks))
    x, channels = builder.strided("image", "conv1", 3, 64, 3, 1), 64
    for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        out_channels = 4 * width if bottleneck else width
        for block in range(count):
            stride = 2 if stage > 1 and block == 0 else 1
            prefix = f"s{stage}b{block}"
            shortcut = x if stride == 1 and channels == out_channels else \
                builder.strided(x, f"{prefix}_proj", channels, out_channels, 1, stride, relu=False)
            if bottleneck:
                y = builder.strided(x, f"{prefix}_a", channels, width, 1, 1)
                y = builder.strided(y, f"{prefix}_b", width, width, 3, stride)
                y = builder.strided(y, f"{prefix}_c", width, out_channels, 1, 1, relu=False)
            else:
                y = builder.strided(x, f"{prefix}_a", channels, width, 3, stride)
                y = builder.strided(y, f"{prefix}_b", width, width, 3, 1, relu=False)
            x, channels = builder.residual(y, shortcut, f"{prefix}_add"), out_channels
    return builder.model(name, {"image": [1, 3, 32, 32]}, builder.head(x, channels), [1, 10])


# ---- measurement -------------------------------------------------------------------------------------

def scheduled(compiled, replicate: str, pipelining: str, strategy: str = "best", arrays: int | None = None):
    """The compiled model's program under another schedule (the `replicate` pass rerun on a copy)."""
    module = copy.deepcopy(compiled.xbar)
    ctx = PassContext(target=compiled.target, precision=compiled.precision, replicate=replicate,
                      pipelining=pipelining)
    ctx.begin("replicate")
    Replicate(strategy=strategy, arrays=arrays).run(module, ctx)
    return emit_program(module, compiled.target, compiled.precision), ctx.report.figures


def single_arrays(program) -> int:
    return sum(i.attrs["arrays"] for i in program.instructions if i.opcode == "mvm")


def measure(name: str, path: Path, budgets: tuple[int, ...], check_machine: bool) -> list[list[str]]:
    started = time.time()
    compiled = compile_model(path, packing="dense")
    base = estimate_cost(compiled.program, CHIP)
    piped = estimate_cost(scheduled(compiled, "none", "layer")[0], CHIP)
    single = single_arrays(compiled.program)
    rows = []
    for factor in budgets:
        budget = factor * single
        auto, figures = scheduled(compiled, "auto", "layer", arrays=budget)
        isaac, _ = scheduled(compiled, "auto", "layer", "isaac", budget)
        rowwise, _ = scheduled(compiled, "auto", "row", arrays=budget)
        auto_cost, isaac_cost, row_cost = (estimate_cost(p, CHIP) for p in (auto, isaac, rowwise))
        same = ""
        if check_machine and factor == 4:
            inputs = random_inputs(compiled.graph, 0)
            expected, actual = Machine(compiled.program).run(inputs), Machine(auto).run(inputs)
            same = "yes" if all(np.array_equal(expected.outputs[k], actual.outputs[k]) for k in expected.outputs) \
                else "NO"
        inf_s = [1e9 / c.interval_ns for c in (base, piped, isaac_cost, auto_cost)]
        rows.append([name, f"{factor}x", f"{budget:,}", *(f"{f:.4g}" for f in inf_s), f"{inf_s[3] / inf_s[0]:.2f}",
                     f"{inf_s[3] / inf_s[1]:.2f}", f"{inf_s[3] / inf_s[2]:.2f}", f"{base.latency_ns / 1e3:.4g}",
                     f"{auto_cost.latency_ns / 1e3:.4g}", f"{row_cost.latency_ns / 1e3:.4g}",
                     f"{base.latency_ns / row_cost.latency_ns:.2f}", figures["strategy"], same])
    print(f"  {name}: {single:,} arrays for one copy, {time.time() - started:.1f} s", file=sys.stderr)
    return rows


HEADERS = ["model", "budget", "arrays", "seq inf/s", "pipe inf/s", "isaac inf/s", "auto inf/s", "auto/seq",
           "auto/pipe", "auto/isaac",
           "seq lat us", "auto lat us", "row lat us", "seq/row lat", "strategy", "same out"]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [HEADERS, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true")
    quick = args.parse_args(argv).quick
    budgets = (1, 4, 16) if quick else BUDGETS
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        shaped = {"resnet18": lambda: resnet("resnet18", [2, 2, 2, 2], False)}
        if not quick:
            shaped = {"vgg16": vgg16_pruned, **shaped, "resnet50": lambda: resnet("resnet50", [3, 4, 6, 3], True)}
        for name, build in shaped.items():
            path = Path(folder) / f"{name}.onnx"
            onnx.save(build(), path)
            rows += measure(name, path, budgets, check_machine=False)
        for path in sorted((REPO / "models").glob("*.onnx")):
            rows += measure(path.stem, path, budgets, check_machine=True)
    print(table(rows))
    print(f"\nseq: one copy, layers one after another, one inference at a time; pipe: one copy, layer "
          f"pipeline; isaac: balanced against the "
          f"last layer, layer pipeline; auto: --replicate auto (better of greedy and DP), layer pipeline; "
          f"row: auto with --pipelining row.\nPublished: {PUBLISHED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
