"""`--calibration-method max|percentile|mse` (compiler/calibrate.py): on calibration data with a few outliers,
the percentile range verifies against onnxruntime with a clearly higher SNR than the max range, which spends
the 8 bits on the outliers; the MSE-optimal range keeps those outliers (their clipping error outweighs the
rounding error they cause), so it stays near max; the default stays `max`."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import rcc.compiler.calibrate as calibrate
from rcc.compiler.calibrate import clipping_magnitude
from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import import_onnx
from rcc.compiler.pass_context import PassContext
from rcc.ir.errors import RccError
from tests.hostile.builders import save_model, tensor

WIDTH = 2048


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    """y = relu(x[1, 2048] · W1[2048, 16]) · W2[16, 8]."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.normal(0, WIDTH ** -0.5, (WIDTH, 16)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.25, (16, 8)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    path = tmp_path_factory.mktemp("calibration") / "outliers.onnx"
    return str(save_model(path, nodes, [tensor("x", [1, WIDTH])], [tensor("y", [1, 8])], inits))


def calibration_data() -> dict[str, np.ndarray]:
    """16 samples of N(0, 1) in which 4 of the 32768 values are outliers of magnitude 40."""
    x = np.random.default_rng(9).standard_normal((16, 1, WIDTH)).astype(np.float32)
    x.reshape(-1)[[7, 5000, 20000, 31000]] = [40, -40, 40, -40]
    return {"x": x}


def verified_snr(model: str, method: str | None) -> float:
    settings = {} if method is None else {"calibration_method": method}
    compiled = compile_model(model, calibration=calibration_data(), **settings)
    result = verify_compiled(model, compiled, samples=3)  # N(0, 1) inputs, no outliers
    return result.outputs["y"]["snr_db"]


def test_clipping_the_outliers_raises_the_snr_against_onnxruntime(model) -> None:
    snr = {method: verified_snr(model, method) for method in ("max", "percentile", "mse")}
    assert verified_snr(model, None) == snr["max"]  # the default is unchanged
    assert snr["percentile"] > snr["max"] + 4 and abs(snr["mse"] - snr["max"]) < 1, snr


def test_the_clipping_magnitudes() -> None:
    values = np.abs(np.random.default_rng(2).standard_normal(100_000))
    percentile = clipping_magnitude(values, "percentile", 8, signed=True)
    assert 3.5 < percentile < 4.5  # the 99.99th percentile of |N(0, 1)| is 3.89
    mse = clipping_magnitude(values, "mse", 8, signed=True)
    assert 2.5 < mse < values.max()  # 8-bit MSE-optimal clipping of a Gaussian is near 4 sigma
    heavy = np.abs(np.random.default_rng(9).standard_t(3, 32768))
    assert clipping_magnitude(heavy, "mse", 8, signed=True) < 0.9 * heavy.max()
    assert clipping_magnitude(values, "mse", 2, signed=True) < mse  # fewer levels: clip harder
    assert clipping_magnitude(np.zeros(10), "mse", 8, signed=False) == 0.0


def test_an_unknown_method_is_a_one_line_error(model, capsys) -> None:
    with pytest.raises(RccError, match="--calibration-method 'kl'"):
        PassContext(calibration_method="kl")
    assert main([model, "--calibration-method", "kl"]) == 2
    assert "--calibration-method" in capsys.readouterr().err


def test_one_calibration_pass_serves_every_width(model, monkeypatch) -> None:
    """Layers at different input widths (`--layer-input-bits`, mixed precision) are calibrated by one pass over
    the samples, each clipped at its own width as a pass at that width alone would clip it."""
    module = import_onnx(model)
    sources = {op: op.operands[0] for op in module.ops if op.opname == "nn.matmul"}
    ctx = PassContext(calibration_method="mse", calibration=calibration_data())
    evaluated = []
    original = calibrate.evaluate
    monkeypatch.setattr(calibrate, "evaluate", lambda *args: evaluated.append(1) or original(*args))
    first, second = sources
    together = ctx.layer_ranges(module, sources, {first: 4, second: 10})
    assert len(evaluated) == 16   # one pass over the 16 samples
    assert together[first] == ctx.activation_ranges(module, [sources[first]], 4)[sources[first]]
    assert together[second] == ctx.activation_ranges(module, [sources[second]], 10)[sources[second]]
    assert together[first] != ctx.activation_ranges(module, [sources[first]], 10)[sources[first]]  # mse: by width
