"""The error contract where the audit found it broken: an output naming an input or another output is
refused before any work (`rcc m.onnx -o m.onnx`); `rcc sweep`'s options and `--scheduler` fail in one line
(no Dask crash, no traceback printed later by a half-built client); and numpy's floating-point warnings
never reach stderr: IEEE arithmetic that onnxruntime also does runs quietly, and device options far
outside a physical range are refused in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import onnx
from onnx import helper, numpy_helper

from rcc.compiler import driver
from rcc.ir.files import OutputPathError, check_distinct_files
from rcc.ir.ops import nn_linear, nn_norm
from rcc.ir.ops.xbar_write import quantize_by_scale, weight_scales
from tests.conftest import ROOT
from tests.hostile.builders import compiled_mlp, mlp_inputs, mlp_model, save_model, tensor
from tests.hostile.harness import SUBPROCESS_SECONDS, check_refusal, files_under, run_in_process, run_subprocess

MLP = ROOT / "models" / "mlp.onnx"


def _refused_untouched(argv: list, folder: Path, code: int, fragment: str) -> None:
    """`argv` is refused in one line and every file under `folder` keeps its bytes (none added)."""
    before = {path: path.read_bytes() for path in files_under(folder) if path.is_file()}
    check_refusal(run_in_process(argv), code, fragment)
    assert {path: path.read_bytes() for path in files_under(folder) if path.is_file()} == before


@pytest.fixture
def no_compile(monkeypatch) -> None:
    """Compiling must never be reached: the outputs are checked first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command started work before checking its outputs")

    monkeypatch.setattr(driver, "compile_model", refuse)


# --- finding 9: an output may not be an input or another output

def test_compile_output_is_not_the_model_or_the_report(tmp_path, no_compile) -> None:
    model = mlp_model(tmp_path / "m.onnx")
    inputs = mlp_inputs(tmp_path / "in.npz")
    _refused_untouched([model, "-q", "-o", model], tmp_path, 2, f"-o {model}: is the input model")
    _refused_untouched([model, "-q", "-o", tmp_path / "p.rccp", "--report", tmp_path / "p.rccp"], tmp_path, 2,
                       f"--report {tmp_path / 'p.rccp'}: same file as -o")
    _refused_untouched([model, "-q", "--emit", "ir", "-o", tmp_path / "w.npz"], tmp_path, 2,
                       f"-o {tmp_path / 'w.npz'}: its weights file {tmp_path / 'w.npz'}: same file as -o")
    _refused_untouched([model, "-q", "--emit", "ir", "-o", tmp_path / "in.ir", "--verify", "--inputs", inputs],
                       tmp_path, 2, f"its weights file {inputs}: is the --inputs file")
    _refused_untouched([model, "-q", "--report", inputs, "--verify", "--inputs", inputs], tmp_path, 2,
                       f"--report {inputs}: is the --inputs file")


def test_links_and_spellings_of_one_file_are_the_same_file(tmp_path, monkeypatch, no_compile) -> None:
    model = mlp_model(tmp_path / "m.onnx")
    (tmp_path / "sub").mkdir()
    os.symlink(model, tmp_path / "link.rccp")
    os.link(model, tmp_path / "hard.rccp")
    monkeypatch.chdir(tmp_path)
    _refused_untouched([model, "-o", "link.rccp"], tmp_path, 2, "-o link.rccp: is the input model")
    _refused_untouched([model, "-o", "hard.rccp"], tmp_path, 2, "-o hard.rccp: is the input model")
    _refused_untouched(["m.onnx", "-o", "sub/../m.onnx"], tmp_path, 2, "-o sub/../m.onnx: is the input model")
    _refused_untouched([model, "-o", "sub/p.rccp", "--report", "sub/../sub/p.rccp"], tmp_path, 2,
                       "--report sub/../sub/p.rccp: same file as -o")   # neither exists yet


def test_run_prune_and_opt_outputs_are_not_their_inputs(tmp_path) -> None:
    program, _ = compiled_mlp(tmp_path)
    model, inputs = tmp_path / "mlp.onnx", mlp_inputs(tmp_path / "in.npz")
    run = ["run", program, "--inputs", inputs, "-q"]
    _refused_untouched([*run, "-o", program], tmp_path, 2, f"-o {program}: is the input program")
    _refused_untouched([*run, "-o", inputs], tmp_path, 2, f"-o {inputs}: is the --inputs file")
    _refused_untouched([*run, "-o", tmp_path / "o.npz", "--report", tmp_path / "o.npz"], tmp_path, 2,
                       f"--report {tmp_path / 'o.npz'}: same file as -o")
    _refused_untouched(["prune", model, "--sparsity", "0.5", "-o", model], tmp_path, 2,
                       f"-o {model}: is the input model")
    ir = tmp_path / "a.ir"
    assert run_in_process([MLP, "-q", "--emit", "ir", "-o", ir]).code == 0
    assert (tmp_path / "a.npz").exists()   # its weights
    opt = ["opt", ir, "-p", "dce", "-q"]
    _refused_untouched([*opt, "-o", ir], tmp_path, 2, f"-o {ir}: is the input IR")
    _refused_untouched([*opt, "-o", tmp_path / "a.txt"], tmp_path, 2,
                       f"its weights file {tmp_path / 'a.npz'}: is the input IR's weights file")
    assert run_in_process([*opt, "-o", tmp_path / "b.ir"]).code == 0   # elsewhere: fine


def test_eval_report_is_not_an_input(tmp_path) -> None:
    data = mlp_inputs(tmp_path / "data.npz")
    _refused_untouched(["eval", MLP, "--data", data, "--report", data, "-q"], tmp_path, 2,
                       f"--report {data}: is the --data file")


def test_sweep_results_are_not_an_input(tmp_path) -> None:
    os.symlink(MLP, tmp_path / "r.csv")
    check_refusal(run_in_process(["sweep", MLP, "-o", tmp_path / "r.csv", "--grid", "adc_bits=4", "-q"]), 2,
                  f"-o {tmp_path / 'r.csv'}: is the input model")


def test_special_files_may_be_named_twice(tmp_path) -> None:
    outcome = run_in_process([mlp_model(tmp_path / "m.onnx"), "-q", "-o", "/dev/null", "--report", "/dev/null"])
    assert outcome.code == 0 and outcome.err == "", outcome.err
    check_distinct_files([("-o", "/dev/null"), ("--report", "/dev/null")], [("the input model", "/dev/null")])


def test_check_distinct_files_skips_missing_inputs_and_compares_unwritten_outputs(tmp_path) -> None:
    check_distinct_files([("-o", tmp_path / "m.onnx")], [("the input model", tmp_path / "m.onnx")])  # no model yet
    with pytest.raises(OutputPathError, match="--report .*: same file as -o$"):
        check_distinct_files([("-o", tmp_path / "x.json"), ("--report", tmp_path / "." / "x.json")])
    os.symlink("loop", tmp_path / "loop")   # a symlink loop is compared, not followed forever
    with pytest.raises(OutputPathError, match="same file as -o"):
        check_distinct_files([("-o", tmp_path / "loop"), ("--report", tmp_path / "loop")])


# --- finding 7: sweep options that crashed Dask, and a grid too large to list

@pytest.mark.parametrize("argv, message", [
    (["--timeout", "nan"], "--timeout must be positive and finite, got nan"),
    (["--timeout", "inf"], "--timeout must be positive and finite, got inf"),
    (["--connect-timeout", "nan", "--scheduler", "tcp://127.0.0.1:9"], "--connect-timeout must be positive and finite"),
    (["--connect-timeout", "inf", "--scheduler", "tcp://127.0.0.1:9"], "--connect-timeout must be positive and finite"),
    (["--grid", "adc_bits=1:1000000000000"],
     "--grid adc_bits=1:1000000000000: 1,000,000,000,000 values, over the limit of 100,000 per key"),
    (["--grid", "adc_bits=1:1" + "0" * 40], "values, over the limit of 100,000 per key"),
    (["--grid", "adc_bits=1:60000,70000:130000"], "120,001 values, over the limit of 100,000 per key"),
    (["--grid", "xbar_rows=1:2000", "--grid", "xbar_cols=1:2000"],
     "--grid: 4,000,000 points (2,000 xbar_rows × 2,000 xbar_cols), over the limit of 1,000,000"),
])
def test_sweep_options_are_one_line(argv, message, tmp_path) -> None:
    check_refusal(run_in_process(["sweep", MLP, "-o", tmp_path / "r.csv", "-q", *argv]), 2, message)
    assert list(tmp_path.iterdir()) == []


# --- finding 13: a malformed --scheduler, and a service there that is not a Dask scheduler

@pytest.mark.parametrize("address", ["not a url", "tcp://host", "tcp://:8786", "tcp://host:99999",
                                     "http://localhost:8787", "inproc://x"])
def test_malformed_scheduler_address_is_one_line(address, tmp_path) -> None:
    check_refusal(run_in_process(["sweep", MLP, "-o", tmp_path / "r.csv", "-q", "--scheduler", address]), 2,
                  f"--scheduler {address!r}: not a Dask scheduler address (tcp://HOST:PORT)")


def _http_server() -> tuple[int, threading.Event]:
    """A port answering every connection as an HTTP server would (like a Dask dashboard's)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        with listener:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                with connection:
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], stop


@pytest.mark.parametrize("command", ["sweep", "eval"])
def test_a_service_that_is_not_dask_is_one_line_and_nothing_follows(command, tmp_path) -> None:
    """Its reply read as a Dask frame length is an exabyte (a MemoryError); the half-built client is closed at
    once, so no "Exception ignored in Client.__del__" traceback follows (it came 20 s later, at exit)."""
    port, stop = _http_server()
    np.savez(tmp_path / "data.npz", input=np.zeros((4, 64), np.float32))
    extra = ["-o", tmp_path / "r.csv", "--grid", "adc_bits=4"] if command == "sweep" else \
        ["--data", tmp_path / "data.npz", "--trials", "2"]
    try:
        result = subprocess.run([sys.executable, "-m", "rcc", command, str(MLP), *map(str, extra), "-q",
                                 "--scheduler", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True,
                                timeout=SUBPROCESS_SECONDS)
    finally:
        stop.set()
    assert result.returncode == 2, result.stderr[-800:]
    assert result.stderr.splitlines() == [f"rcc: error: --scheduler tcp://127.0.0.1:{port}: what answers there is "
                                          f"not a Dask scheduler (MemoryError)"], result.stderr[-800:]


# --- finding 15: no numpy warnings on stderr

def _quiet_run(argv: list) -> tuple[int, str]:
    """(exit code, stderr) of an in-process run, failing on any numpy RuntimeWarning it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = run_in_process(argv)
    raised = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not raised, raised
    return outcome.code, outcome.err


def _batch_norm_model(path: Path) -> Path:
    """y = BatchNormalization(x) with var = -1 and epsilon 0: NaN everywhere, in onnxruntime too."""
    ones = [numpy_helper.from_array(np.ones(2, np.float32), name) for name in ("s", "b", "m")]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", epsilon=0.0)]
    return save_model(path, nodes, [tensor("x", [1, 2, 4, 4])], [tensor("y", [1, 2, 4, 4])],
                      [*ones, numpy_helper.from_array(-np.ones(2, np.float32), "v")])


def test_batch_norm_of_negative_variance_is_nan_quietly(tmp_path) -> None:
    code, err = _quiet_run([_batch_norm_model(tmp_path / "bn.onnx"), "-q", "-o", tmp_path / "p.rccp",
                            "--verify"])
    assert code == 0 and "RuntimeWarning" not in err, err


def test_conv_then_batch_norm_of_negative_variance_is_not_folded(tmp_path) -> None:
    """Folding a variance of −1 would give NaN weights after the NaN-weight refusal had run (and a warning); the
    normalisation stays a vector op after the crossbar layer, NaN where onnxruntime's is."""
    rng = np.random.default_rng(0)
    constants = {"w": rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "s": np.ones(2, np.float32),
                 "b": np.ones(2, np.float32), "m": np.ones(2, np.float32), "v": np.array([-1, 1], np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], name="bn", epsilon=0.0)]
    model = save_model(tmp_path / "conv_bn.onnx", nodes, [tensor("x", [1, 2, 4, 4])], [tensor("y", [1, 2, 4, 4])],
                       [numpy_helper.from_array(array, name) for name, array in constants.items()])
    code, err = _quiet_run([model, "-q", "-o", tmp_path / "p.rccp", "--verify"])
    assert code == 0 and "RuntimeWarning" not in err, err


def test_float_overflow_is_inf_quietly_as_in_onnxruntime(tmp_path) -> None:
    """Products beyond float32 round to inf in the interpreter, the float machine and `rcc run`."""
    big = np.full((4, 3), 3e38, np.float32)
    model = mlp_model(tmp_path / "big.onnx", big, np.zeros(3, np.float32))
    np.savez(tmp_path / "x.npz", x=np.full((1, 4), 3e38, np.float32))
    for executor in ("machine", "interpreter"):
        code, err = _quiet_run([model, "-q", "-o", tmp_path / "p.rccp", "--precision", "float", "--verify",
                                "--executor", executor, "--inputs", tmp_path / "x.npz"])
        assert code == 0, err
    code, err = _quiet_run(["run", tmp_path / "p.rccp", "--inputs", tmp_path / "x.npz", "-o", tmp_path / "o.npz"])
    assert code == 0 and np.isposinf(np.load(tmp_path / "o.npz")["y"]).all(), err


@pytest.mark.parametrize("device, fragment", [
    ("read_noise = 1e300", "read_noise"),
    ("g_max = 1e-320\nread_noise = 0.1", "g_max"),
    ("adc_offset = 1e300", "adc_offset"),
    ('programming_noise = "constant"\nprogramming_sigma = 1e300', "programming"),
    ('drift = "pcm"\ntime_s = 3600\nwire_resistance = 1e300\nread_noise = 0.01', "wire_resistance"),
])
def test_device_options_far_out_of_range_are_refused(device, fragment, tmp_path) -> None:
    toml = tmp_path / "device.toml"
    toml.write_text(device + "\n")
    argv = [MLP, "-q", "-o", tmp_path / "p.rccp", "--verify", "--device", toml]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = run_in_process(argv)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    check_refusal(outcome, 2, fragment)
    assert not (tmp_path / "p.rccp").exists()


def test_a_time_of_1e300_years_is_refused(tmp_path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = run_in_process([MLP, "-q", "-o", tmp_path / "p.rccp", "--verify", "--device", "pcm-aihwkit",
                                  "--time", "1e300y"])
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    check_refusal(outcome, 2, "time")
    assert not (tmp_path / "p.rccp").exists()


def test_ops_compute_ieee_results_without_warnings() -> None:
    x = np.ones((1, 2, 4, 4), np.float32)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(nn_linear.batch_norm(x, ones, zeros, zeros, -ones, epsilon=0.0)).all()
        assert np.isposinf(nn_linear.batch_norm(x, ones, zeros, zeros, zeros, epsilon=0.0)).all()
        assert np.isnan(nn_norm.instance_norm(x, ones, zeros, epsilon=-1.0)).all()
        assert np.isnan(nn_norm.group_norm(x, ones, zeros, num_groups=1, epsilon=0.0)).all()   # 0 / 0
        assert np.isnan(nn_norm.layer_norm(x, np.ones((4, 4), np.float32), axis=2, epsilon=-1.0,
                                           stash_type="f32")).all()
        huge = np.full((1, 2, 1, 1), 3e38, np.float32)
        assert np.isposinf(nn_linear.matmul(np.full((1, 4), 3e38, np.float32), np.full((4, 3), 3e38, np.float32))).all()
        assert np.isposinf(nn_linear.conv2d(huge, np.full((2, 2, 1, 1), 3e38, np.float32), strides=(1, 1),
                                            pads=(0, 0, 0, 0), dilations=(1, 1), group=1)).all()
        assert np.isposinf(nn_linear.conv_transpose2d(huge, np.full((2, 2, 1, 1), 3e38, np.float32), strides=(1, 1),
                                                      pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
                                                      output_padding=(0, 0))).all()
        weights = np.array([[[np.nan, 1.0], [np.inf, 2.0]]], np.float32)
        assert quantize_by_scale(weights, weight_scales(weights, 8), 8).dtype == np.int8


def test_library_warnings_stay_off_stderr(tmp_path) -> None:
    """onnx warns about an unknown external-data key (twice) on stderr; the CLI's one-line contract has no room
    for library warnings (a fresh process: pytest's own warning capture would hide them)."""
    np.arange(12, dtype=np.float32).tofile(tmp_path / "w.bin")
    weight = onnx.TensorProto(name="W", data_type=onnx.TensorProto.FLOAT, dims=[4, 3],
                              data_location=onnx.TensorProto.EXTERNAL)
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", "48"), ("colour", "blue")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    model = save_model(tmp_path / "m.onnx", [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                       [tensor("x", [2, 4])], [tensor("y", [2, 3])], [weight])
    outcome = run_subprocess([str(model), "-q", "-o", str(tmp_path / "p.rccp")])
    assert outcome.code == 0 and outcome.err == "", outcome.err
