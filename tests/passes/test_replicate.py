"""The allocation strategies of `replicate` (greedy balance, dynamic programming, the ISAAC-style baseline)
against brute force on small cases and on VGG-16- and ResNet-18-shaped stage lists, and the pass's options."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from rcc.backends.target import Target
from rcc.compiler.driver import compile_model
from rcc.compiler.pass_manager import run_pipeline
from rcc.compiler.replication import (Stage, arrays_used, best_allocation, dp, greedy, isaac, schedule_key,
                                      uniform)
from rcc.ir import parse_module
from rcc.ir.errors import RccError
from tests.conftest import ROOT


def brute_force(stages: list[Stage], budget: int) -> tuple[float, float]:
    best = None
    for copies in itertools.product(*[s.useful_copies() for s in stages]):
        if arrays_used(stages, list(copies)) <= budget:
            key = schedule_key(stages, list(copies))
            best = key if best is None or key < best else best
    return best


def random_stages(rng: random.Random) -> list[Stage]:
    return [Stage(rng.randint(1, 40), float(rng.randint(1, 5)), rng.randint(1, 4)) for _ in range(rng.randint(1, 4))]


def test_greedy_reaches_the_least_bottleneck_and_dp_the_best_schedule_on_small_cases() -> None:
    rng = random.Random(0)
    for _ in range(60):
        stages = random_stages(rng)
        budget = arrays_used(stages, [1] * len(stages)) + rng.randint(0, 30)
        optimum = brute_force(stages, budget)
        for strategy in (greedy, dp):
            copies = strategy(stages, budget)
            assert arrays_used(stages, copies) <= budget
        assert schedule_key(stages, greedy(stages, budget))[0] == optimum[0]
        assert schedule_key(stages, dp(stages, budget)) == optimum   # budgets under DP_UNITS: exact
        assert schedule_key(stages, isaac(stages, budget))[0] >= optimum[0]


def shaped(layers: list[tuple[int, int, int]], rows: int = 128, cols: int = 32) -> list[Stage]:
    """Stages of convolutions (output side, input channels × kernel², output channels) on 128×128 arrays
    holding 32 outputs of 8-bit weights (4 slices of 2 bits), differential pairs, one step per vector."""
    return [Stage(side * side, 1.0, 2 * -(-k // rows) * -(-m // cols)) for side, k, m in layers]


VGG16 = shaped([(224, 27, 64), (224, 576, 64), (112, 576, 128), (112, 1152, 128), (56, 1152, 256),
                (56, 2304, 256), (56, 2304, 256), (28, 2304, 512), (28, 4608, 512), (28, 4608, 512),
                (14, 4608, 512), (14, 4608, 512), (14, 4608, 512), (1, 25088, 4096), (1, 4096, 4096),
                (1, 4096, 1000)])
RESNET18 = shaped([(112, 147, 64)] + [(56, 576, 64)] * 4 + [(28, 576, 128)] + [(28, 1152, 128)] * 3 +
                  [(14, 1152, 256)] + [(14, 2304, 256)] * 3 + [(7, 2304, 512)] + [(7, 4608, 512)] * 3 +
                  [(1, 512, 1000)])


@pytest.mark.parametrize("stages", [VGG16, RESNET18], ids=["vgg16", "resnet18"])
def test_four_times_the_arrays_gives_three_times_the_throughput_and_beats_isaac(stages) -> None:
    budget = 4 * arrays_used(stages, [1] * len(stages))
    strategy, copies, keys = best_allocation(stages, budget)
    assert arrays_used(stages, copies) <= budget and set(keys) == {"greedy", "dp"}
    single = schedule_key(stages, [1] * len(stages))[0]
    assert single / schedule_key(stages, copies)[0] >= 3
    assert schedule_key(stages, copies)[0] <= schedule_key(stages, isaac(stages, budget))[0]


def test_uniform_copies_stop_at_the_vectors() -> None:
    assert uniform([Stage(5, 1.0, 2), Stage(1, 1.0, 2)], 3) == [3, 1]
    assert Stage(10, 1.0, 1).useful_copies() == [1, 2, 3, 4, 5, 10]


@pytest.mark.slow
def test_pass_options_are_checked_and_a_budget_is_respected() -> None:
    resnet = ROOT / "models" / "resnet_small.onnx"
    with pytest.raises(RccError, match="--replicate 'many'"):
        compile_model(resnet, replicate="many")
    with pytest.raises(RccError, match="--replicate 4: 90 arrays needed; the target has 48"):
        compile_model(resnet, Target(chips=1, tiles_per_chip=1, arrays_per_tile=48), replicate="4")
    compiled = compile_model(resnet, Target(chips=1, tiles_per_chip=1, arrays_per_tile=48), replicate="auto")
    report = next(r for r in compiled.reports if r.name == "replicate")
    assert report.name == "replicate" and report.figures["strategy"] in ("greedy", "dp")
    assert report.figures["arrays"] <= 48 and max(report.figures["copies"].values()) > 1


def test_a_budget_of_one_layer_gives_one_phase_per_layer() -> None:
    source = (Path(__file__).parent / "fixtures" / "replicate.ir").read_text()
    module = parse_module(re.split(r"(?m)^(?=module @)", source)[1])
    run_pipeline(module, "replicate{copies=auto;arrays=2}")
    assert [(op.attrs["phase"], op.attrs["first_array"], op.attrs["copies"]) for op in module.ops] == \
        [(0, 0, 1), (1, 0, 1)]
