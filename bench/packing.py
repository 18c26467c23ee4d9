"""Benchmark: sparsity-driven crossbar packing (`backends/packing.py`), arrays and seconds per mode.

Three tables, every packing checked with `check_packing`:
(a) planted block-sparse matrices with secretly permuted rows and columns, whose optimum is known;
(b) i.i.d. random 1024×1024 masks at 4%, 8% and 25% density with square R×L arrays, R = L in
    {16, 32, 64, 128}, against the lower bound ⌈nnz / (R·L)⌉;
(c) the zoo's Conv/Gemm weights (conv [M, C, kh, kw] read as [C·kh·kw, M]; Gemm as [inputs, outputs])
    magnitude-pruned to 75%, 90% and 95% zeros, summed per model, and a 25088×4096 fc6-shaped random
    Gaussian matrix magnitude-pruned to 4% density; R = L in {32, 128}.

`best win` names the candidate of `best_candidates` that `best` returned. Times are medians over
`--repeats` runs (one run each by default), in seconds.

    python bench/packing.py              # everything (a few minutes)
    python bench/packing.py --quick      # leave out the fc6-shaped matrix
    python bench/packing.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rcc.backends.packing import (MODES, best_candidates, check_packing, lower_bound, pack,  # noqa: E402
                              planted_mask)

PLANTED = [  # K, M, R, L, planted blocks, density inside a block
    (256, 256, 32, 32, 6, 0.5),
    (512, 384, 64, 32, 7, 0.3),
    (300, 200, 16, 24, 8, 0.4),
    (1024, 1024, 128, 128, 6, 0.2),
    (1000, 700, 32, 16, 20, 0.15),
    (4096, 2048, 128, 64, 24, 0.1),
]
RANDOM_DENSITIES = (0.04, 0.08, 0.25)
RANDOM_ARRAYS = (16, 32, 64, 128)
ZOO_SPARSITIES = (0.75, 0.90, 0.95)
ZOO_ARRAYS = (32, 128)
FC6_SHAPE, FC6_DENSITY = (25088, 4096), 0.04


@dataclass
class Measured:
    """Arrays per mode and median seconds per mode for one mask (or a sum of masks)."""

    lower: int = 0
    arrays: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MODES[1:], 0.0))
    winners: list[str] = field(default_factory=list)

    def add(self, other: "Measured") -> None:
        self.lower += other.lower
        for key in self.arrays:
            self.arrays[key] += other.arrays[key]
        for key in self.seconds:
            self.seconds[key] += other.seconds[key]
        self.winners += other.winners

    @property
    def saving(self) -> float:
        """best's saving against dense, in %."""
        return 100.0 * (1 - self.arrays["best"] / self.arrays["dense"]) if self.arrays["dense"] else 0.0


def best_and_winner(mask: np.ndarray, rows: int, cols: int) -> tuple[list, str]:
    """What `pack(mode="best")` returns, with the name of the candidate it came from."""
    found = [c for c in best_candidates(mask, rows, cols) if c.blocks is not None]
    winner = min(found, key=lambda c: len(c.blocks))
    return winner.blocks, winner.name


def measure(mask: np.ndarray, rows: int, cols: int, repeats: int) -> Measured:
    result = Measured(lower=lower_bound(mask, rows, cols))
    result.arrays["dense"] = len(pack(mask, rows, cols, "dense"))
    for mode in ("compact", "kmeans", "best"):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            if mode == "best":
                blocks, winner = best_and_winner(mask, rows, cols)
            else:
                blocks = pack(mask, rows, cols, mode)
            samples.append(time.perf_counter() - start)
        check_packing(mask, blocks, rows, cols)
        result.arrays[mode], result.seconds[mode] = len(blocks), statistics.median(samples)
    result.winners.append(winner)
    return result


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    cells = [tuple(f"{c:.2f}" if isinstance(c, float) else str(c) for c in row) for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def magnitude_mask(weights: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` largest-magnitude weights (ties broken by position)."""
    flat = np.abs(weights).ravel()
    mask = np.zeros(flat.size, dtype=bool)
    if keep > 0:
        mask[np.argpartition(-flat, keep - 1)[:keep]] = True
    return mask.reshape(weights.shape)


def zoo_layers(path: Path) -> list[np.ndarray]:
    """Each Conv/Gemm weight initializer of a model as [inputs, outputs]."""
    model = onnx.load(str(path))
    inits = {init.name: init for init in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.input[1] not in inits:
            continue
        weights = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if node.op_type == "Conv":
            layers.append(weights.reshape(weights.shape[0], -1).T)
        else:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            layers.append(weights.T if trans_b else weights)
    return layers


def planted_table(repeats: int) -> list[tuple[bool, bool]]:
    rows, verdicts = [], []
    for K, M, R, L, n_blocks, density in PLANTED:
        mask, optimum = planted_mask(K, M, R, L, n_blocks, density, seed=1)
        m = measure(mask, R, L, repeats)
        verdicts.append((m.arrays["best"] == optimum, m.arrays["best"] <= m.arrays["kmeans"]))
        rows.append((f"{K}x{M}", f"{R}x{L}", density, *m.arrays.values(), optimum, m.winners[0],
                     m.seconds["kmeans"], m.seconds["best"]))
    print_table("(a) planted block-sparse matrices (rows and columns permuted)",
                ("W", "RxL", "inside", *MODES, "optimum", "best win",
                 "kmeans s", "best s"), rows)
    return verdicts


def random_table(repeats: int) -> list[tuple[float, int, Measured]]:
    rows, found = [], []
    rng = np.random.default_rng(0)
    for density in RANDOM_DENSITIES:
        mask = rng.random((1024, 1024)) < density
        for size in RANDOM_ARRAYS:
            m = measure(mask, size, size, repeats)
            found.append((density, size, m))
            rows.append((f"{density:.0%}", f"{size}x{size}", *m.arrays.values(), m.lower, f"{m.saving:.1f}",
                         m.winners[0], *m.seconds.values()))
    print_table("(b) i.i.d. random 1024x1024 masks",
                ("density", "RxL", *MODES, "lower", "best vs dense %", "best win", "compact s", "kmeans s",
                 "best s"), rows)
    return found


def real_table(repeats: int, quick: bool) -> list[tuple[str, int, Measured]]:
    rows, found = [], []
    for path in sorted((REPO / "models").glob("*.onnx")):
        layers = zoo_layers(path)
        if not layers:
            continue
        for sparsity in ZOO_SPARSITIES:
            masks = [magnitude_mask(w, round((1 - sparsity) * w.size)) for w in layers]
            for size in ZOO_ARRAYS:
                total = Measured()
                for mask in masks:
                    total.add(measure(mask, size, size, repeats))
                found.append((path.stem, size, total))
                winners = sorted(set(total.winners), key=total.winners.index)
                rows.append((path.stem, len(layers), f"{sparsity:.0%}", f"{size}x{size}",
                             *total.arrays.values(), total.lower, f"{total.saving:.1f}", ",".join(winners),
                             total.seconds["kmeans"], total.seconds["best"]))
    if not quick:
        rng = np.random.default_rng(6)
        weights = rng.standard_normal(FC6_SHAPE, dtype=np.float32)
        mask = magnitude_mask(weights, round(FC6_DENSITY * weights.size))
        del weights
        for size in ZOO_ARRAYS:
            m = measure(mask, size, size, repeats)
            found.append(("fc6", size, m))
            rows.append(("fc6 25088x4096", 1, f"{1 - FC6_DENSITY:.0%}", f"{size}x{size}", *m.arrays.values(),
                         m.lower, f"{m.saving:.1f}", m.winners[0], m.seconds["kmeans"], m.seconds["best"]))
    print_table("(c) magnitude-pruned layers (zoo: sums over each model's Conv/Gemm layers)",
                ("model", "layers", "sparsity", "RxL", *MODES, "lower",
                 "best vs dense %", "best wins", "kmeans s", "best s"), rows)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out the fc6-shaped 25088x4096 matrix")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cell (the median is printed)")
    args = parser.parse_args(argv)
    planted = planted_table(args.repeats)
    random = random_table(args.repeats)
    real = real_table(args.repeats, args.quick)
    every = [m for *_, m in random] + [m for *_, m in real]
    print("\nsummary")
    print(f"  best finds the planted optimum: {sum(hit for hit, _ in planted)}/{len(planted)}")
    not_worse = sum(ok for _, ok in planted) + sum(m.arrays["best"] <= m.arrays["kmeans"] for m in every)
    print(f"  best <= kmeans: {not_worse}/{len(planted) + len(every)} rows; best < kmeans strictly in "
          f"{sum(m.arrays['best'] < m.arrays['kmeans'] for m in every)}/{len(every)} random and real rows")
    for density, size, m in random:
        if (density, size) == (0.04, 32):
            print(f"  4% random, 32x32: best {m.arrays['best']} arrays vs dense {m.arrays['dense']} "
                  f"({m.saving:.1f}% fewer), compact {m.arrays['compact']}, kmeans {m.arrays['kmeans']}")
    for name, size, m in real:
        if name == "fc6":
            print(f"  fc6 {size}x{size}: best {m.seconds['best']:.1f} s, kmeans {m.seconds['kmeans']:.1f} s, "
                  f"compact {m.seconds['compact']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
