"""The `rcc` command line as a user meets it: outputs, reports, exit codes, and one-line errors that
leave no output file behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.cli import main
from tests.conftest import ROOT

LENET = ROOT / "models" / "lenet5.onnx"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_verify_with_the_interpreter_writes_ir_and_report(tmp_path, capsys) -> None:
    code, out, err = run_cli(capsys, LENET, "--verify", "--executor", "interpreter", "--emit", "ir",
                             "-o", tmp_path / "l.ir", "--report", tmp_path / "r.json", "--seed", "7")
    assert code == 0, err
    assert "verify (interpreter vs onnxruntime): PASSED" in out and "conv1" in out
    report = json.loads((tmp_path / "r.json").read_text())
    verify = report["verify"]
    assert verify["passed"] is True and verify["executor"] == "interpreter"
    metrics = verify["outputs"]["logits"]
    assert set(metrics) >= {"max_abs_err", "rel_l2", "snr_db"} and metrics["rel_l2"] < 1e-5
    assert report["totals"]["macs"] == sum(layer["macs"] for layer in report["layers"]) > 0
    assert (tmp_path / "l.ir").exists() and (tmp_path / "l.npz").exists()


@pytest.mark.parametrize("precision", ["int", "float"])
def test_machine_verify_report_and_run(precision, tmp_path, capsys) -> None:
    program, report_path = tmp_path / "lenet.rccp", tmp_path / "r.json"
    code, out, err = run_cli(capsys, LENET, "--verify", "--precision", precision, "-o", program,
                             "--report", report_path)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    verify = report["verify"]
    assert verify["passed"] and verify["executor"] == "machine" and verify["precision"] == precision
    if precision == "int":
        assert verify["integer_reference_match"] is True and verify["outputs"]["logits"]["snr_db"] >= 30
    else:
        assert verify["outputs"]["logits"]["rel_l2"] <= 1e-5
    for key in ("crossbars", "utilization", "macs", "mvm_ops", "adc_conversions", "cycles"):
        assert report["totals"][key] > 0 and all(key in layer for layer in report["layers"])
    assert report["totals"]["cycles"] == verify["counts"]["cycles"]
    np.savez(tmp_path / "in.npz", input=np.ones((1, 1, 28, 28), np.float32))
    code, out, err = run_cli(capsys, "run", program, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "out.npz")
    assert code == 0, err
    assert np.load(tmp_path / "out.npz")["logits"].shape == (1, 10)


def test_narrow_adc_is_reported_not_hidden(tmp_path, capsys) -> None:
    code, out, _ = run_cli(capsys, ROOT / "models" / "mlp.onnx", "--verify", "--adc-bits", "4", "-o",
                           tmp_path / "m.rccp", "--report", tmp_path / "r.json")
    verify = json.loads((tmp_path / "r.json").read_text())["verify"]
    assert code == 1 and "FAILED" in out and verify["integer_reference_match"] is False
    assert verify["adc_lossless"] is False


def test_inputs_file_is_used(tmp_path, capsys) -> None:
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "in.npz", input=rng.standard_normal((1, 1, 28, 28)).astype(np.float32))
    code, out, _ = run_cli(capsys, LENET, "--verify", "--inputs", tmp_path / "in.npz", "-o", tmp_path / "l.rccp")
    assert code == 0 and "PASSED" in out
    np.savez(tmp_path / "bad.npz", input=np.zeros((2, 2), np.float32))
    code, _, err = run_cli(capsys, LENET, "--verify", "--inputs", tmp_path / "bad.npz", "-o", tmp_path / "m.rccp")
    assert code == 2 and "input 'input'" in err and not (tmp_path / "m.rccp").exists()


def test_opt_runs_passes_and_prints_after_each(tmp_path, capsys) -> None:
    code, _, _ = run_cli(capsys, ROOT / "models" / "resnet_small.onnx", "-p", "constant-fold", "--emit", "ir",
                         "-o", tmp_path / "r.ir")
    assert code == 0
    code, out, _ = run_cli(capsys, "opt", tmp_path / "r.ir", "-p", "fold-batch-norm,dce", "--print-after-all")
    assert code == 0
    assert "// ----- IR after fold-batch-norm -----" in out and "// ----- IR after dce -----" in out
    assert "nn.batch_norm" not in out.split("IR after dce -----")[1]


def _unsupported_model(path: Path) -> None:
    node = helper.make_node("Det", ["x"], ["y"], name="the_determinant")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _dynamic_model(path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _bad_input(kind: str, tmp_path: Path) -> list[str]:
    model = tmp_path / "model.onnx"
    if kind == "missing file":
        return [str(tmp_path / "absent.onnx")]
    if kind == "not onnx":
        model.write_text("this is not a model\n")
    elif kind == "truncated onnx":
        model.write_bytes(LENET.read_bytes()[:5000])
    elif kind == "unsupported op":
        _unsupported_model(model)
    elif kind == "dynamic dimension":
        _dynamic_model(model)
    elif kind == "bad flag":
        return [str(LENET), "--frobnicate"]
    elif kind == "bad input shape":
        return [str(LENET), "--input-shape", "input=1xAx3"]
    elif kind == "zero batch input shape":
        return [str(LENET), "--input-shape", "input=0x1x28x28"]
    elif kind == "unknown pass":
        return [str(LENET), "-p", "constant-fold,no-such-pass"]
    elif kind == "bad target flag":
        return [str(LENET), "--cell-bits", "9"]
    elif kind == "bad target file":
        (tmp_path / "t.toml").write_text("xbar_rows = 64\nsparkle = 3\n")
        return [str(LENET), "--target", str(tmp_path / "t.toml")]
    elif kind == "over the crossbar budget":
        (tmp_path / "small.toml").write_text("chips = 1\ntiles_per_chip = 1\narrays_per_tile = 4\n")  # a layer needs 6
        return [str(ROOT / "models" / "resnet_small.onnx"), "--target", str(tmp_path / "small.toml")]
    elif kind == "truncated program":
        program = tmp_path / "p.rccp"
        assert main([str(LENET), "-q", "-o", str(program)]) == 0
        program.write_bytes(program.read_bytes()[:3000])
        np.savez(tmp_path / "in.npz", input=np.ones((1, 1, 28, 28), np.float32))
        return ["run", str(program), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]
    elif kind == "corrupted program":
        program = tmp_path / "p.rccp"
        assert main([str(LENET), "-q", "-o", str(program)]) == 0
        data = bytearray(program.read_bytes())
        data[len(data) // 2] ^= 0xFF
        program.write_bytes(bytes(data))
        np.savez(tmp_path / "in.npz", input=np.ones((1, 1, 28, 28), np.float32))
        return ["run", str(program), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]
    elif kind == "malformed ir":
        (tmp_path / "m.ir").write_text("module @m {\n  input %x : f32[2]\n  %y = nn.relu(%x : f32[2]\n  output %y\n}\n")
        return ["opt", str(tmp_path / "m.ir"), "-p", "dce", "-o", str(tmp_path / "out.ir")]
    return [str(model)]


EXPECTED = {
    "missing file": "absent.onnx: no such file",
    "not onnx": "model.onnx: not a readable ONNX model",
    "truncated onnx": "model.onnx: not a readable ONNX model",
    "unsupported op": "node 'the_determinant' (Det): unsupported op Det",
    "dynamic dimension": "input 'x' has dynamic dimension 'batch'; give its shape with --input-shape x=",
    "bad flag": "unrecognized arguments: --frobnicate",
    "bad input shape": "--input-shape 'input=1xAx3'",
    "zero batch input shape": "--input-shape 'input=0x1x28x28': expected NAME=D1xD2x... with positive integers",
    "unknown pass": "unknown pass 'no-such-pass'",
    "bad target flag": "--cell-bits",
    "bad target file": "sparkle",
    "over the crossbar budget": "crossbar arrays; the target has",
    "truncated program": "p.rccp: corrupted or truncated program file",
    "corrupted program": "p.rccp: corrupted or truncated program file",
    "malformed ir": "m.ir:3:19: syntax error: unexpected ':'",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_bad_input_is_one_line_exit_2_and_no_output(kind, tmp_path, capsys) -> None:
    args = _bad_input(kind, tmp_path)
    capsys.readouterr()
    before = set(tmp_path.iterdir())
    output_args = [] if args[0] in ("opt", "run") else ["-o", str(tmp_path / "out.ir"), "--report",
                                                         str(tmp_path / "r.json")]
    code, out, err = run_cli(capsys, *args, *output_args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rcc: error: ") and EXPECTED[kind] in lines[0], err
    assert set(tmp_path.iterdir()) == before, "an output file was left behind"


def test_dynamic_dimension_with_input_shape_works(tmp_path, capsys) -> None:
    _dynamic_model(tmp_path / "d.onnx")
    code, out, err = run_cli(capsys, tmp_path / "d.onnx", "--input-shape", "x=3x4", "--verify", "-o",
                             tmp_path / "d.rccp")
    assert code == 0 and "PASSED" in out, err


def test_console_script_prints_no_traceback(tmp_path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"\x08\x07garbage")
    done = subprocess.run([sys.executable, "-m", "rcc", str(tmp_path / "x.onnx")], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize(("op_type", "opset", "dtype", "attrs", "extra"), [
    ("TopK", 10, TensorProto.INT32, {}, {"k": np.array([2])}),          # integer TopK from opset 11 on
    ("CumSum", 11, TensorProto.FLOAT16, {}, {"axis": np.array(0)}),     # float16 CumSum from opset 14 on
    ("Swish", 24, TensorProto.INT32, {}, {}),                           # Swish is float only
    ("ScatterND", 18, TensorProto.FLOAT, {}, {"indices": np.array([[1]], np.int32), "updates": np.ones(1, np.float32)}),
])
def test_an_ill_typed_node_is_refused_as_onnxruntime_refuses_it(op_type: str, opset: int, dtype: int, attrs: dict,
                                                                 extra: dict, tmp_path, capsys) -> None:
    """onnx's strict type check runs on load: a node whose input type its schema does not take is one line, exit
    2, naming the node (rcc computed these, and onnxruntime refuses them as invalid models)."""
    outputs = ["y", "indices_out"] if op_type == "TopK" else ["y"]
    node = helper.make_node(op_type, ["x", *extra], outputs, name="odd", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, [4])],
                              [helper.make_tensor_value_info("y", dtype, [2 if op_type == "TopK" else 4])],
                              [numpy_helper.from_array(array, name) for name, array in extra.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "odd.onnx"
    onnx.save(model, path)
    with pytest.raises(Exception):
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    code, out, err = run_cli(capsys, path, "-o", tmp_path / "out.rccp")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid ONNX model" in err and op_type in err, err
    assert not (tmp_path / "out.rccp").exists()
