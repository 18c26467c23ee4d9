"""The machine's fast paths (issue 16) agree with their slow definitions.

1. The exact product's float32 bound (`_partial_sum_bound`) is at least every Σ|x|·|w|, and layers whose
   partial sums exceed 2^24 (long rows of extreme values, where one float32 GEMM would round) still give
   the int64 product, through the row-chunked GEMMs.
2. A batch of N samples runs as one (each mvm once over all N samples' vectors) and gives the N single
   runs' outputs (bit for bit in integer mode) and N times their counts; a model that fixes its batch is run as given.
3. `rcc run` reports its time per inference and throughput; it imports neither onnx nor lark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir.types import TensorType
from rcc.runtime.crossbar import (FEW_ROWS, LARGE_WEIGHTS, CrossbarGroup, _largest_column_norm, _partial_sum_bound,
                                  grouped_rows)
from rcc.runtime.machine import Machine, batch_inputs
from tests.runtime.test_crossbar_exactness import int64_product, mvm_attrs

MODELS = Path(__file__).resolve().parents[2] / "models"


def _layer(rng: np.random.Generator, k: int, m: int, x: np.ndarray, weights: np.ndarray, **widths) -> CrossbarGroup:
    widths = {"input_bits": 8, **widths}
    attrs = mvm_attrs(rows=128, cols=128, weight_bits=8, input_signed=bool((x < 0).any()), cell_bits=2,
                      dac_bits=1, encoding="differential", groups=weights.shape[0], k=k, m=m, **widths)
    return CrossbarGroup(weights.astype(np.int8), attrs)


@pytest.mark.parametrize("seed", range(4))
def test_partial_sum_bound_covers_every_absolute_sum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-255 if seed % 2 else 0, 256, (2, 7, 300)).astype(np.float32)
    x[rng.random(x.shape) < 0.3 * seed] = 0
    w = rng.integers(-127, 128, (2, 300, 9)).astype(np.float32)
    true = np.matmul(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64)).max()
    bound = _partial_sum_bound(x, seed % 2 == 0, float(np.abs(w).max()), _largest_column_norm(w))
    assert bound >= true


@pytest.mark.parametrize("fill", ["extreme-same-sign", "extreme", "uniform", "sparse"])
def test_long_rows_beyond_float32_stay_exact(fill: str) -> None:
    """K = 1500 rows of inputs up to 255 and weights up to 127: Σ|x|·|w| reaches 4.9e7 > 2^24."""
    rng = np.random.default_rng(16)
    k, m, groups = 1500, 40, 2
    x = rng.integers(0, 256, (5, groups * k))
    w = rng.integers(-127, 128, (groups, k, m))
    if fill == "extreme-same-sign":   # every partial sum is the full bound: float32 alone would round
        x, w = np.full_like(x, 255), np.full_like(w, 127)
    elif fill == "extreme":
        x, w = rng.choice([0, 255], x.shape), rng.choice([-127, 127], w.shape)
    elif fill == "sparse":            # the Cauchy–Schwarz bound holds where the crude one does not
        x[rng.random(x.shape) < 0.97] = 0
    x = x.astype(np.int32)
    layer = _layer(rng, k, m, x, w)
    assert np.array_equal(layer.run(x), int64_product(x, w.astype(np.int8)))
    assert (layer.run(x) == layer.run(x, sliced=True)).all()


def test_chunked_product_splits_only_when_needed() -> None:
    rng = np.random.default_rng(0)
    x = np.full((3, 1500), 255, dtype=np.int32)
    w = np.full((1, 1500, 4), 127)
    layer = _layer(rng, 1500, 4, x, w)
    rows = grouped_rows(x.astype(np.float32), 1)
    assert _partial_sum_bound(rows, True, 127.0, layer._column_norm) >= 2**24   # one GEMM would not be exact
    assert np.array_equal(layer.run(x), np.full((3, 4), 1500 * 255 * 127))


@pytest.mark.parametrize("signed", [True, False])
def test_wide_inputs_take_one_exact_float64_gemm(monkeypatch, signed: bool) -> None:
    """16- and 17-bit inputs (a 16-bit model's codes less their zero point) times int8 weights over 600 rows: sums
    reach 2^32, so no float32 GEMM of the layer is exact; one float64 GEMM is, and gives the int64 product (with
    and without the row order fusion asks for), without the float32 row chunks."""
    rng = np.random.default_rng(17)
    low, high = (-65535, 65535) if signed else (0, 65535)
    x = rng.integers(low, high + 1, (7, 600)).astype(np.int32)
    x[0] = high                                     # the largest sums
    w = rng.integers(-127, 128, (1, 600, 5))
    w[0, :, 0] = 127
    layer = _layer(rng, 600, 5, x, w, input_bits=17 if signed else 16)
    monkeypatch.setattr(layer, "_chunked_product", None)   # would raise if called
    expected = int64_product(x, w.astype(np.int8))
    assert np.abs(expected).max() > 2**31
    assert np.array_equal(layer.run(x, x_range=(low, high)), expected)
    order = rng.permutation(600)
    assert np.array_equal(layer.exact_product((low, high), order)(x[:, order]), expected)


@pytest.mark.parametrize("pixels", [1, 2, 49, FEW_ROWS, FEW_ROWS + 1])
@pytest.mark.parametrize("groups", [1, 2])
def test_few_rows_times_large_weights_run_transposed_and_stay_exact(pixels: int, groups: int) -> None:
    """K·M = 2^20 a group (at LARGE_WEIGHTS): 2 to FEW_ROWS rows run as Wᵀ · xᵀ (its transposed weights kept), one
    row or more than FEW_ROWS as x · W; the same integers as exact products in every case: the prepared GEMM (inputs
    up to 15: proven exact once), the bound proven per call (sparse inputs up to 255, K·255·127 > 2^24), and the
    weights in another row order."""
    rng = np.random.default_rng(pixels)
    k, m = 2048, 512
    w = rng.integers(-127, 128, (groups, k, m))
    small = rng.integers(0, 16, (pixels, groups * k)).astype(np.int32)
    sparse = rng.integers(0, 256, (pixels, groups * k)) * (rng.random((pixels, groups * k)) < 0.02)
    layer = _layer(rng, k, m, small, w)
    assert layer.matrix[0].size == LARGE_WEIGHTS and layer.single_gemm_exact((0, 15))
    def reference(x: np.ndarray) -> np.ndarray:   # float64: every sum below 2048·255·127 < 2^53, exact
        return np.concatenate([x[:, g * k:(g + 1) * k].astype(np.float64) @ w[g].astype(np.float64)
                               for g in range(groups)], axis=1)
    expected = reference(small)
    assert np.array_equal(layer.exact_product((0, 15))(small.astype(np.float32)), expected)
    assert (layer._weight_rows is not None) == (1 < pixels <= FEW_ROWS)
    assert np.array_equal(layer.exact_values(sparse.astype(np.float32), (0, 255)), reference(sparse))
    if groups == 1:
        order = rng.permutation(k)
        assert np.array_equal(layer.exact_product((0, 15), order)(small[:, order].astype(np.float32)), expected)


@pytest.mark.parametrize("precision", ["int", "float"])
def test_a_batch_runs_as_one_and_equals_single_runs(precision: str) -> None:
    compiled = compile_model(MODELS / "lenet5.onnx", precision=precision)
    machine = Machine(compiled.program)
    spec = compiled.program.inputs[0]
    samples = np.random.default_rng(3).standard_normal((3, *spec["shape"][1:])).astype(np.float32)
    singles = [machine.run({spec["name"]: samples[i:i + 1]}) for i in range(3)]
    calls = []
    for group in machine.crossbars.values():
        group.run = (lambda original: lambda x, *a: calls.append(x.shape[0]) or original(x, *a))(group.run)
    batch = machine.run({spec["name"]: samples}, trace=True)
    assert len(calls) == len(machine.crossbars)              # each mvm once for the whole batch
    assert batch.batch == 3 and batch.outputs["logits"].shape == (3, 10)
    single_outputs = np.concatenate([s.outputs["logits"] for s in singles])
    if precision == "int":   # exact arithmetic: bit for bit
        assert np.array_equal(batch.outputs["logits"], single_outputs)
    else:                    # float32 BLAS sums in an order that depends on the call's size: fp32 rounding only
        np.testing.assert_allclose(batch.outputs["logits"], single_outputs, rtol=1e-5, atol=1e-5)
    assert batch.totals.to_json() == {k: 3 * v for k, v in singles[0].totals.to_json().items()}


def test_only_a_leading_one_is_batched() -> None:
    declared = [("x", TensorType((4, 64), "f32"))]
    inputs = {"x": np.zeros((16, 64), np.float32)}
    assert batch_inputs(declared, inputs) == [inputs]       # the model fixes its batch: checked as given
    ones = [("x", TensorType((1, 64), "f32")), ("y", TensorType((1, 2), "f32"))]
    mixed = {"x": np.zeros((2, 64), np.float32), "y": np.zeros((3, 2), np.float32)}
    assert batch_inputs(ones, mixed) == [mixed]             # disagreeing sample counts: not a batch
    empty = {"x": np.zeros((0, 64), np.float32), "y": np.zeros((0, 2), np.float32)}
    assert batch_inputs(ones, empty) == [empty]             # no samples: refused by the input check


def test_counts_are_copies_the_caller_may_change() -> None:
    compiled = compile_model(MODELS / "lenet5.onnx")
    machine = Machine(compiled.program)
    inputs = random_inputs(compiled.graph, seed=0)
    first = machine.run(inputs)
    cycles = first.totals.cycles
    first.totals += first.totals
    first.per_instruction[0].cycles += 7
    again = machine.run(inputs)
    assert again.totals.cycles == cycles and again.per_instruction[0].cycles == first.per_instruction[0].cycles - 7


def test_rcc_run_reports_time_per_inference_for_a_batch(tmp_path, capsys) -> None:
    program = tmp_path / "lenet.rccp"
    assert main([str(MODELS / "lenet5.onnx"), "-q", "-o", str(program)]) == 0
    np.savez(tmp_path / "in.npz", input=np.ones((4, 1, 28, 28), np.float32))
    code = main(["run", str(program), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"),
                 "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0 and "4 inferences in" in out and "ms per inference" in out and "inferences/s" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["batch"] == 4 and report["seconds_per_inference"] * 4 == pytest.approx(report["seconds"])
    assert np.load(tmp_path / "out.npz")["logits"].shape == (4, 10)


def test_rcc_run_imports_only_what_running_needs() -> None:
    """Start-up: running a program needs numpy and the op table, not onnx (compiling), lark (IR text), the
    package metadata (only --version), the thread pools (only runs that use them), the preset and TOML readers
    or the cost model (only --report)."""
    probe = ("import sys; import rcc.compiler.commands.run; "
             "print(sorted(m for m in ('onnx', 'onnxruntime', 'scipy', 'lark', 'importlib.metadata', 'threadpoolctl', "
             "'concurrent.futures', 'importlib.resources', 'secrets', 'tomllib', 'rcc.backends.chip', "
             "'rcc.runtime.cost') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout + done.stderr
