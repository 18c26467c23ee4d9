"""Per-layer input widths: `--layer-input-bits LAYER=BITS` and the `mixed-precision` pass
(`--mixed-precision auto|DB`), checked on the machine against onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.passes.mixed_precision import HELD_OUT_SAMPLES, HELD_OUT_SEED
from rcc.compiler.report import layer_rows, totals
from rcc.compiler.verify import onnxruntime_runner
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs
from rcc.runtime.machine import Machine

MLP = "models/mlp.onnx"
BLOCK = "models/mobilenetv3_block.onnx"  # hard-swish, squeeze-excite: 32.5 dB at 8 bits


def mvm_widths(compiled) -> dict[str, int]:
    return {i.attrs["layer"]: i.attrs["input_bits"] for i in compiled.program.instructions if i.opcode == "mvm"}


def test_one_wider_layer_costs_its_input_cycles_and_stays_exact() -> None:
    base = compile_model(MLP)
    layer = next(iter(mvm_widths(base)))
    wide = compile_model(MLP, layer_input_bits={layer: 12})
    widths = mvm_widths(wide)
    assert widths[layer] == 12 and all(bits == 8 for name, bits in widths.items() if name != layer)
    quantize = [i for i in wide.program.instructions if i.opcode == "quantize"]
    assert sorted(i.attrs["bits"] for i in quantize) == sorted(widths.values())
    rows = {(r["op"], r.get("input_bits")) for r in layer_rows(wide.program, wide.target)}
    assert ("xbar.mvm", 12) in rows and ("xbar.mvm", 8) in rows
    before, after = (totals(layer_rows(c.program, c.target)) for c in (base, wide))
    assert after["macs"] == before["macs"] and after["crossbars"] == before["crossbars"]
    assert after["array_steps"] > before["array_steps"]  # 12 input cycles instead of 8 on that layer
    result = verify_compiled(MLP, wide, samples=2)
    assert result.passed and result.extra["integer_reference_match"]


def test_the_search_reaches_its_goal_and_the_machine_reproduces_the_figure() -> None:
    base = compile_model(BLOCK)
    compiled = compile_model(BLOCK, mixed_precision=38.0)
    summary = compiled.mixed_precision
    assert summary["reached"] and summary["snr_db_before"] < 38.0 <= summary["snr_db"]
    assert 0 < summary["widened"] == len(summary["widened_layers"]) <= summary["layers"]
    assert {name: bits for name, bits in mvm_widths(compiled).items() if bits != 8} == summary["widened_layers"]
    # the SNR the pass claims, measured again: the program on the machine against onnxruntime, on the same
    # held-out inputs (seeded random ones calibration did not see)
    samples = [random_inputs(compiled.graph, HELD_OUT_SEED + i) for i in range(HELD_OUT_SAMPLES)]
    reference = onnxruntime_runner(BLOCK)
    machine, narrow = Machine(compiled.program), Machine(base.program)
    for label, runner, claimed in (("mixed", machine, summary["snr_db"]), ("8-bit", narrow, summary["snr_db_before"])):
        signal = noise = 0.0
        for sample in samples:
            expected = next(iter(reference(sample).values())).astype(np.float64)
            actual = next(iter(runner.run(sample).outputs.values())).astype(np.float64)
            signal += float(np.sum(expected ** 2))
            noise += float(np.sum((actual - expected) ** 2))
        assert abs(10 * np.log10(signal / noise) - claimed) < 0.1, label
    assert verify_compiled(BLOCK, compiled, samples=3).passed


def test_the_last_layer_the_search_widened_is_needed() -> None:
    widened = compile_model(BLOCK, mixed_precision=38.0).mixed_precision["widened_layers"]
    assert set(widened.values()) == {10}  # one width step: the search bisected over its ranking
    fewer = dict(list(widened.items())[:-1])  # in the order the search chose them
    assert compile_model(BLOCK, layer_input_bits=fewer, mixed_precision=38.0).mixed_precision["snr_db_before"] < 38.0


def test_a_goal_already_met_or_out_of_reach_widens_nothing() -> None:
    met = compile_model(MLP, mixed_precision=20.0).mixed_precision
    assert met["reached"] and met["widened"] == 0 and met["snr_db"] == met["snr_db_before"] >= 20.0
    missed = compile_model(MLP, mixed_precision=90.0)
    summary = missed.mixed_precision
    assert not summary["reached"] and summary["widened"] == 0
    assert summary["snr_db_before"] < summary["snr_db"] < 90.0  # the widest setting helped, but not enough
    assert set(mvm_widths(missed).values()) == {8}


def test_without_a_goal_nothing_changes() -> None:
    compiled = compile_model(MLP)
    assert compiled.mixed_precision is None and set(mvm_widths(compiled).values()) == {8}


def test_bad_layer_widths_are_named() -> None:
    with pytest.raises(RccError, match="no crossbar layer named 'nope'"):
        compile_model(MLP, layer_input_bits={"nope": 10})
    with pytest.raises(RccError, match="--layer-input-bits fc1=40"):
        compile_model(MLP, layer_input_bits={"fc1": 40})


@pytest.mark.parametrize("flags, message", [
    (["--mixed-precision", "loud"], "--mixed-precision 'loud': give auto or an SNR goal"),
    (["--layer-input-bits", "fc1"], "--layer-input-bits 'fc1': expected LAYER=BITS"),
    (["--layer-input-bits", "nope=10"], "no crossbar layer named 'nope'"),
])
def test_cli_refuses_bad_precision_flags(flags, message, tmp_path, capsys) -> None:
    output = tmp_path / "out.rccp"
    assert main([MLP, "-o", str(output), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_cli_prints_and_reports_the_choice(tmp_path, capsys) -> None:
    report = tmp_path / "report.json"
    assert main([BLOCK, "-o", str(tmp_path / "out.rccp"), "--mixed-precision", "38", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "mixed precision: of 5 crossbar layers, widened" in out and "goal 38.0 dB reached" in out
    written = json.loads(report.read_text())
    assert written["mixed_precision"]["reached"] and written["mixed_precision"]["widened_layers"]
    assert any(layer.get("input_bits", 8) > 8 for layer in written["layers"])
