"""Per-layer input widths, `--layer-input-bits LAYER=BITS`, and the `mixed-precision` pass (`--mixed-precision
auto|DB`, `--mixed-precision-widths`), checked on the machine against onnxruntime: the SNR the pass claims is the
one the compiled program gets on the same held-out inputs, with every calibration method, with pruning, with
attention written into crossbars and with widened weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.target import Target
from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.pass_context import PruneBudget
from rcc.compiler.passes.mixed_precision import HELD_OUT_SAMPLES, HELD_OUT_SEED
from rcc.compiler.report import layer_rows, totals
from rcc.compiler.verify import onnxruntime_runner
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs
from rcc.runtime.machine import Machine
from tests.frontend.test_quantized_int4 import _qdq_conv_matmul

MLP = "models/mlp.onnx"
BLOCK = "models/mobilenetv3_block.onnx"  # hard-swish, squeeze-excite: 32.5 dB at 8 bits
ENCODER = "models/transformer_encoder_block.onnx"


def mvm_widths(compiled, kind: str = "input") -> dict[str, int]:
    return {i.attrs["layer"]: i.attrs[f"{kind}_bits"] for i in compiled.program.instructions if i.opcode == "mvm"}


def outlier_model(tmp_path) -> tuple[str, dict[str, np.ndarray]]:
    """x → MatMul → Relu → MatMul whose first weights hold one large entry per column (the rest get few of the
    8-bit levels: weight rounding, not input rounding, limits it), and 8 calibration samples of x."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((64, 32)) * 0.02).astype(np.float32)
    w1[rng.integers(0, 64, 32), np.arange(32)] = 1.0
    w2 = (rng.standard_normal((32, 10)) * 0.2).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "outliers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / "outliers.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return str(path), {"x": rng.standard_normal((8, 1, 64)).astype(np.float32)}


def machine_snr(path: str, compiled, calibration: dict[str, np.ndarray] | None = None) -> float:
    """The worst output's SNR (dB) of the program on the machine against onnxruntime, on the pass's held-out
    inputs (seeded random ones calibration did not see; the first calibration samples when it was given),
    summed over them as the pass sums them."""
    samples = ([random_inputs(compiled.graph, HELD_OUT_SEED + i) for i in range(HELD_OUT_SAMPLES)]
               if calibration is None else
               [{name: array[i] for name, array in calibration.items()} for i in range(HELD_OUT_SAMPLES)])
    reference, machine = onnxruntime_runner(path), Machine(compiled.program)
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for sample in samples:
        expected, actual = reference(sample), machine.run(sample).outputs
        for name in compiled.program.outputs:
            wanted = expected[name].astype(np.float64)
            signal[name] = signal.get(name, 0.0) + float(np.sum(wanted ** 2))
            noise[name] = noise.get(name, 0.0) + float(np.sum((actual[name].astype(np.float64) - wanted) ** 2))
    return min(10 * np.log10(signal[name] / noise[name]) for name in signal)


def test_one_wider_layer_costs_its_input_cycles_and_stays_exact() -> None:
    base = compile_model(MLP)
    wide = compile_model(MLP, layer_input_bits={"fc1": 12})  # the report's name for the mvm fc1.matmul
    widths = mvm_widths(wide)
    assert widths == {**mvm_widths(base), "fc1.matmul": 12} and set(mvm_widths(base).values()) == {8}
    quantize = [i for i in wide.program.instructions if i.opcode == "quantize"]
    assert sorted(i.attrs["bits"] for i in quantize) == sorted(widths.values())
    rows = {r["name"]: r.get("input_bits") for r in layer_rows(wide.program, wide.target) if r["op"] == "xbar.mvm"}
    assert rows == {"fc1": 12, "fc2": 8, "fc3": 8}
    before, after = (totals(layer_rows(c.program, c.target)) for c in (base, wide))
    assert after["macs"] == before["macs"] and after["crossbars"] == before["crossbars"]
    assert after["array_steps"] > before["array_steps"]  # 12 input cycles instead of 8 on that layer
    assert after["bytes_out"] == before["bytes_out"]      # its outputs are no wider
    result = verify_compiled(MLP, wide, samples=2)
    assert result.passed and result.extra["integer_reference_match"]


@pytest.mark.parametrize("path, goal, options", [
    (BLOCK, 38.0, {}),
    (MLP, 38.5, {"calibration_method": "mse"}),            # ranges chosen per width
    (BLOCK, 38.0, {"prune": PruneBudget(fraction=0.3)}),   # pruning error counts: the goal is then missed
    (ENCODER, 34.0, {"target": Target(attention="crossbar")}),
    (ENCODER, 27.0, {"target": Target(attention="crossbar", weight_bits=6)}),   # 0.35 dB off when the attention
], ids=["max", "mse", "pruned", "attention-crossbar", "attention-crossbar-6-bit"])   # was calibrated apart
def test_the_claimed_snr_is_the_programs_on_the_machine(path, goal, options) -> None:
    compiled = compile_model(path, mixed_precision=goal, **options)
    summary = compiled.mixed_precision
    claimed = summary["snr_db"] if summary["reached"] else summary["snr_db_before"]  # missed: nothing widened
    assert abs(machine_snr(path, compiled) - claimed) < 0.1, summary
    if "prune" in options:
        assert not summary["reached"] and summary["widened"] == 0 and summary["reference"] == "original model"
    else:
        assert summary["reached"] and summary["snr_db_before"] < goal <= summary["snr_db"] and summary["widened"]


def test_the_search_reaches_its_goal_with_the_widths_it_reports() -> None:
    compiled = compile_model(BLOCK, mixed_precision=38.0)
    summary = compiled.mixed_precision
    assert 0 < summary["widened"] == len(summary["widened_inputs"]) <= summary["layers"]
    assert {name: bits for name, bits in mvm_widths(compiled).items() if bits != 8} == summary["widened_inputs"]
    assert set(mvm_widths(compiled, "weight").values()) == {8} and not summary["widened_weights"]  # inputs limit it
    assert verify_compiled(BLOCK, compiled, samples=3).passed


def test_the_last_layer_the_search_widened_is_needed() -> None:
    widened = compile_model(BLOCK, mixed_precision=38.0).mixed_precision["widened_in_order"]
    assert {entry["input_bits"] for entry in widened} == {10}  # one width step: the search bisected over its ranking
    fewer = {entry["layer"]: entry["input_bits"] for entry in widened[:-1]}
    assert compile_model(BLOCK, layer_input_bits=fewer, mixed_precision=38.0).mixed_precision["snr_db_before"] < 38.0


def test_layers_the_user_set_keep_their_width() -> None:
    free = compile_model(BLOCK, mixed_precision=36.0).mixed_precision["widened_inputs"]
    layer = next(iter(free))
    compiled = compile_model(BLOCK, layer_input_bits={layer: 6}, mixed_precision=36.0)
    assert mvm_widths(compiled)[layer] == 6 and layer not in compiled.mixed_precision["widened_inputs"]
    assert compiled.mixed_precision["fixed_by_user"] == 1
    assert compiled.mixed_precision["widened"] == len(compiled.mixed_precision["widened_inputs"])


def test_weights_are_widened_where_their_rounding_limits_the_model(tmp_path) -> None:
    path, calibration = outlier_model(tmp_path)
    inputs_only = compile_model(path, calibration=calibration, mixed_precision=40.0, mixed_precision_widths="inputs")
    assert not inputs_only.mixed_precision["reached"] and inputs_only.mixed_precision["widths"] == "input"
    base = compile_model(path, calibration=calibration)
    for widths in ("weights", "both"):
        compiled = compile_model(path, calibration=calibration, mixed_precision=40.0, mixed_precision_widths=widths)
        summary = compiled.mixed_precision
        assert summary["reached"] and summary["widened_weights"], summary
        assert abs(machine_snr(path, compiled, calibration) - summary["snr_db"]) < 0.1, summary
        assert {name: bits for name, bits in mvm_widths(compiled, "weight").items() if bits != 8} == summary[
            "widened_weights"]  # unnamed nodes: the layers are named after their results
        before, after = (totals(layer_rows(c.program, c.target)) for c in (base, compiled))
        assert after["crossbars"] > before["crossbars"]  # wider weights: more weight slices
        result = verify_compiled(path, compiled, samples=2)
        assert result.passed and result.extra["integer_reference_match"]
    assert compile_model(path, calibration=calibration, mixed_precision=40.0,
                         mixed_precision_widths="weights").mixed_precision["widened_inputs"] == {}


def test_weight_widths_the_user_set_or_pruning_cut_are_kept(tmp_path) -> None:
    path, calibration = outlier_model(tmp_path)
    free = compile_model(path, calibration=calibration, mixed_precision=40.0).mixed_precision["widened_weights"]
    layer = next(iter(free))
    compiled = compile_model(path, calibration=calibration, mixed_precision=40.0, layer_weight_bits={layer: 8})
    assert layer not in compiled.mixed_precision["widened_weights"] and compiled.mixed_precision["fixed_by_user"] == 1
    assert mvm_widths(compiled, "weight")[layer] == 8
    pruned = compile_model(path, calibration=calibration, mixed_precision=40.0, prune=PruneBudget(fraction=0.05))
    assert pruned.mixed_precision["widths"] == "input" and not pruned.mixed_precision["widened_weights"]
    assert set(mvm_widths(pruned, "weight").values()) == {8}
    for widths in ("weights", "both"):   # asked for explicitly: refused, not quietly narrowed
        with pytest.raises(RccError, match=f"--mixed-precision-widths {widths}: crossbar-grained pruning cut"):
            compile_model(path, calibration=calibration, mixed_precision=40.0, prune=PruneBudget(fraction=0.05),
                          mixed_precision_widths=widths)


def test_weight_widths_the_arrays_cannot_hold_are_not_tried() -> None:
    """A 4-column array holds the 4 slices of an 8-bit weight in 2-bit cells, not the 5 of a 10-bit one: the search
    widens inputs only (before, it chose a width lower-to-xbar then refused)."""
    target = Target(xbar_rows=128, xbar_cols=4, cell_bits=2)
    compiled = compile_model(MLP, target=target, mixed_precision=40.0)
    assert not compiled.mixed_precision["widened_weights"]
    assert set(mvm_widths(compiled, "weight").values()) == {8}


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


def test_an_output_the_model_zeroes_is_no_crash(tmp_path) -> None:
    """y = h − h: the reference is zero everywhere, and so is the error."""
    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Sub", ["h", "h"], ["y"])],
                              "zero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weights])
    path = tmp_path / "zero.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    summary = compile_model(path, mixed_precision=30.0).mixed_precision
    assert summary["reached"] and summary["widened"] == 0 and summary["snr_db"] == float("inf")


def test_bad_layer_widths_and_goals_are_named(tmp_path) -> None:
    with pytest.raises(RccError, match="no float crossbar layer named 'nope' .the layers: fc1.matmul"):
        compile_model(MLP, layer_input_bits={"nope": 10})
    with pytest.raises(RccError, match="--layer-input-bits fc1=40: the width must be an integer from 2 to 17"):
        compile_model(MLP, layer_input_bits={"fc1": 40})
    with pytest.raises(RccError, match="float precision has no input widths"):
        compile_model(MLP, precision="float", mixed_precision=30.0)
    with pytest.raises(RccError, match="float precision has no input widths"):
        compile_model(MLP, precision="float", layer_input_bits={"fc1": 10})
    quantized = _qdq_conv_matmul(tmp_path, "int4")  # every layer keeps the model's own integers
    with pytest.raises(RccError, match="a quantized model's layers keep the widths of its own integers"):
        compile_model(quantized, mixed_precision=30.0)
    with pytest.raises(RccError, match="no float crossbar layer named 'y'"):
        compile_model(quantized, layer_input_bits={"y": 12})


@pytest.mark.parametrize("flags, message", [
    (["--mixed-precision", "loud"], "--mixed-precision 'loud': give auto or an SNR goal"),
    (["--layer-input-bits", "fc1"], "--layer-input-bits 'fc1': expected LAYER=BITS"),
    (["--layer-input-bits", "fc1=²"], "--layer-input-bits 'fc1=²': expected LAYER=BITS"),
    (["--layer-input-bits", "nope=10"], "no float crossbar layer named 'nope'"),
    (["--mixed-precision", "30", "--mixed-precision-widths", "cells"], "--mixed-precision-widths"),
    (["--mixed-precision-widths", "weights"], "give --mixed-precision too"),
    (["--layer-input-bits", "fc1=10", "--layer-input-bits", "fc1.matmul=12"],
     "--layer-input-bits fc1=10: every layer it names has a longer entry of its own (fc1.matmul)"),
    (["--layer-weight-bits", "fc1=10", "--layer-weight-bits", "fc1.matmul=12"],
     "--layer-weight-bits fc1=10: every layer it names has a longer entry of its own (fc1.matmul)"),
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
    assert "mixed precision: of 5 crossbar layers, widened inputs of" in out and "goal 38.0 dB reached" in out
    assert "SNR on 4 held-out inputs" in out
    written = json.loads(report.read_text())
    assert written["mixed_precision"]["reached"] and written["mixed_precision"]["widened_inputs"]
    assert any(layer.get("input_bits", 8) > 8 for layer in written["layers"])


def test_cli_prints_widened_weights(tmp_path, capsys) -> None:
    path, calibration = outlier_model(tmp_path)
    np.savez(tmp_path / "calibration.npz", **calibration)
    assert main([path, "-o", str(tmp_path / "out.rccp"), "--mixed-precision", "40", "--calibrate",
                 str(tmp_path / "calibration.npz")]) == 0
    out = capsys.readouterr().out
    assert "mixed precision: of 2 crossbar layers, widened weights of" in out and "goal 40.0 dB reached" in out
    assert "SNR on 4 calibration inputs" in out  # the user's sets: not held out
    assert main([path, "-o", str(tmp_path / "out.rccp"), "--mixed-precision", "40", "--mixed-precision-widths",
                 "inputs", "--calibrate", str(tmp_path / "calibration.npz")]) == 0
    assert "MISSED, out of reach of input widths" in capsys.readouterr().out


@pytest.mark.parametrize("passes, flags, message", [
    ("constant-fold", ["--layer-weight-bits", "fc1=10"], "--layer-weight-bits: the pipeline has no lower-to-xbar"),
    ("constant-fold", ["--layer-input-bits", "fc1=10"], "--layer-input-bits: the pipeline has no lower-to-xbar"),
    ("lower-to-xbar", ["--mixed-precision", "30"], "--mixed-precision: the pipeline has no mixed-precision pass"),
    ("mixed-precision,lower-to-xbar", ["--mixed-precision-widths", "inputs"], "give --mixed-precision too"),
])
def test_opt_refuses_precision_flags_its_pipeline_does_not_read(passes, flags, message, tmp_path, capsys) -> None:
    ir, output = tmp_path / "mlp.ir", tmp_path / "out.ir"
    assert main([MLP, "--emit", "ir", "-o", str(ir), "-q"]) == 0
    capsys.readouterr()
    assert main(["opt", str(ir), "-p", passes, *flags, "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not output.exists()
