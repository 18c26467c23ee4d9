"""The data files and seeds the device, calibration and eval options take: each malformed one exits 2 with
one line naming the option (and the file), never a traceback, and leaves no file behind.

Seeds (`--device-seed`, `--fault-seed`, a device file's `fault_seed`) are numpy seeds, 0 ≤ seed < 2^63;
`--fault-map` is read like every input file (a regular file, bounded); `.npy` headers that numpy lets out as
other exception types, or with shapes of bools or negative sizes, are malformed archives; calibration and
`--verify --inputs` sets need at least one sample and the same count for every input; `rcc eval` keeps a
model's static batch and refuses labels outside the scored output's classes.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

from rcc.backends.device import Device, DeviceError
from rcc.backends.faults import load_fault_map
from rcc.compiler.evaluate import evaluate_model
from rcc.ir.errors import RccError
from rcc.ir.limits import load_npz, read_npy
from tests.hostile import builders
from tests.hostile.harness import check_refusal, files_under, run_in_process, run_subprocess

X = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 1, 4)   # three samples of the MLP's x[1, 4]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> tuple[Path, Path]:
    """The hostile corpus's MLP, y[1, 3] = relu(x[1, 4] · W + b), and its compiled program."""
    folder = tmp_path_factory.mktemp("data_contract")
    program, _ = builders.compiled_mlp(folder)
    return folder / "mlp.onnx", program


def refused(argv: list, folder: Path, fragment: str, code: int = 2, subprocess: bool = False) -> str:
    """Run rcc; check the one-line refusal naming `fragment` and that nothing was written to `folder`."""
    before = files_under(folder)
    outcome = run_subprocess(argv) if subprocess else run_in_process(argv)
    check_refusal(outcome, code, fragment)
    assert files_under(folder) == before, f"left behind: {sorted(files_under(folder) - before)}"
    return outcome.err


def raw_npy(header: str, data: bytes = bytes(64)) -> bytes:
    """A version 1.0 `.npy` file whose header dict is `header` verbatim."""
    text = header.encode()
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


UNTERMINATED = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), "
BAD_HEADERS = {
    "unterminated": UNTERMINATED,                                           # numpy: tokenize.TokenError
    "bool_shape": "{'descr': '<f4', 'fortran_order': False, 'shape': (True, 4), }",   # TypeError in reshape
    "negative_shape": "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }",
    "unhashable_key": "{[]: 1}",                                            # TypeError from literal_eval
}


def npz_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def dynamic_mlp(path: Path) -> Path:
    """y[N, 3] = x[N, 4] · W: three classes, a batch axis the data fixes."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "W")
    return builders.save_model(path, [helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")],
                               [builders.tensor("x", ["N", 4])], [builders.tensor("y", ["N", 3])], [weight])


# ---- finding 3: seeds ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, fragment", [
    (["--device", "reram", "--device-seed", "-1"], "--device-seed"),
    (["--faults", "0.01,0.01", "--fault-seed", "-5"], "--fault-seed"),
    (["--device", "reram", "--device-seed", str(2**63)], "--device-seed"),
], ids=["device_seed", "fault_seed", "device_seed_2^63"])
def test_negative_or_huge_seed_flags_are_refused(mlp, tmp_path, flags, fragment) -> None:
    model, program = mlp
    refused([model, "--verify", "-o", tmp_path / "m.rccp", *flags], tmp_path, fragment)
    builders.mlp_inputs(tmp_path / "in.npz")
    refused(["run", program, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "o.npz", *flags], tmp_path, fragment)


def test_negative_fault_seed_in_a_device_file_is_refused(mlp, tmp_path) -> None:
    (tmp_path / "dev.toml").write_text("stuck_off_rate = 0.01\nfault_seed = -1\n")
    refused([mlp[0], "--verify", "--device", tmp_path / "dev.toml", "-o", tmp_path / "m.rccp"], tmp_path,
            "'fault_seed'")
    with pytest.raises(DeviceError, match="fault_seed"):
        Device(fault_seed=-1)
    assert Device(fault_seed=2**63 - 1).fault_seed == 2**63 - 1


# ---- finding 4: --fault-map ---------------------------------------------------------------------------

def test_fault_map_entry_beyond_int64_is_refused(mlp, tmp_path) -> None:
    model, program = mlp
    (tmp_path / "faults.csv").write_text("array,row,column,state\n0,0,99999999999999999999,off\n")
    builders.mlp_inputs(tmp_path / "in.npz")
    err = refused(["run", program, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "o.npz", "--fault-map",
                   tmp_path / "faults.csv"], tmp_path, "--fault-map")
    assert "entry 1" in err and "out of range" in err


@pytest.mark.parametrize("kind", ["dev_zero", "fifo"])
def test_fault_map_that_is_not_a_regular_file_is_refused_unread(mlp, tmp_path, kind) -> None:
    path = Path("/dev/zero")
    if kind == "fifo":
        path = tmp_path / "faults.fifo"
        os.mkfifo(path)
    refused([mlp[0], "--verify", "--fault-map", path, "-o", tmp_path / "m.rccp"], tmp_path, "not a regular file",
            subprocess=True)   # the old reader never returned (and /dev/zero grew memory without bound)


def test_fault_map_over_the_text_limit_is_refused(mlp, tmp_path, monkeypatch) -> None:
    (tmp_path / "faults.csv").write_text("array,row,column,state\n" + "0,0,0,off\n" * 1000)
    monkeypatch.setenv("RCC_MAX_TEXT_BYTES", "4096")
    refused([mlp[0], "--verify", "--fault-map", tmp_path / "faults.csv", "-o", tmp_path / "m.rccp"], tmp_path,
            "RCC_MAX_TEXT_BYTES")


def test_fault_map_saved_with_a_byte_order_mark_reads(tmp_path) -> None:
    (tmp_path / "faults.csv").write_bytes(b"\xef\xbb\xbfarray,row,column,state\r\n0,1,2,on\r\n")
    np.testing.assert_array_equal(load_fault_map(tmp_path / "faults.csv").cells, [[0, 1, 2, 2]])


# ---- finding 5: malformed .npy headers ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_malformed_npy_header_is_a_value_error(name) -> None:
    with pytest.raises(ValueError, match="header"):
        read_npy(io.BytesIO(raw_npy(BAD_HEADERS[name])), 64, "x")


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_malformed_npy_header_in_an_npz_is_refused(mlp, tmp_path, name) -> None:
    model, program = mlp
    path = npz_of(tmp_path / "bad.npz", {"x.npy": raw_npy(BAD_HEADERS[name])})
    refused(["run", program, "--inputs", path, "-o", tmp_path / "o.npz"], tmp_path, "not a readable .npz archive")
    refused([model, "--calibrate", path, "-o", tmp_path / "m.rccp"], tmp_path, f"--calibrate {path}")
    refused([model, "--verify", "--inputs", path, "-o", tmp_path / "m.rccp"], tmp_path, f"--inputs {path}")


def test_corrupted_deflate_member_is_refused(tmp_path) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.random.default_rng(0).standard_normal((100, 100)))
    with zipfile.ZipFile(tmp_path / "x.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", buffer.getvalue())
    data = bytearray((tmp_path / "x.npz").read_bytes())
    data[80:100] = b"\xff" * 20                                          # zlib.error, not a BadZipFile
    (tmp_path / "x.npz").write_bytes(bytes(data))
    with pytest.raises(RccError, match="not a readable .npz archive"):
        load_npz(tmp_path / "x.npz", "--inputs")


@pytest.mark.parametrize("kind, fragment", [
    ("unterminated", "not a readable .npy array"),
    ("bool_shape", "not a readable .npy array"),
    ("dev_zero", "is not a regular file"),
    ("npz", "a zip (.npz) archive"),
    ("float", "must be integers"),
])
def test_unusable_labels_file_is_refused(tmp_path, kind, fragment) -> None:
    model = dynamic_mlp(tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=X[:, 0])
    labels = tmp_path / "labels.npy"
    if kind == "dev_zero":
        labels = Path("/dev/zero")
    elif kind == "npz":
        np.savez(tmp_path / "labels.npz", y=np.zeros(3, np.int64))
        labels = tmp_path / "labels.npz"
    elif kind == "float":
        np.save(labels, np.zeros(3))
    else:
        header = BAD_HEADERS[kind].replace("'<f4'", "'<i8'").replace("(1, 4)", "(3,)").replace("(True, 4)", "(True,)")
        labels.write_bytes(raw_npy(header))
    refused(["eval", model, "--data", tmp_path / "x.npz", "--labels", labels, "--report", tmp_path / "r.json"],
            tmp_path, f"--labels {labels}: {fragment}" if kind != "float" else fragment)


# ---- findings 6 and 12: calibration and --verify sample sets -------------------------------------------

@pytest.mark.parametrize("flag", ["--calibrate", "--inputs"])
def test_empty_samples_axis_is_refused(mlp, tmp_path, flag) -> None:
    np.savez(tmp_path / "zero.npz", x=np.zeros((0, 1, 4), np.float32))
    err = refused([mlp[0], "--verify", flag, tmp_path / "zero.npz", "-o", tmp_path / "m.rccp"], tmp_path,
                  f"{flag} {tmp_path / 'zero.npz'}")
    assert "input 'x' has 0 samples" in err


@pytest.mark.parametrize("flag", ["--calibrate", "--inputs"])
def test_different_sample_counts_are_named(tmp_path, flag) -> None:
    nodes = [helper.make_node("MatMul", ["a", "W"], ["h"], name="fc"), helper.make_node("Add", ["h", "b"], ["y"])]
    inputs = [builders.tensor("a", [1, 4]), builders.tensor("b", [1, 3])]
    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    model = builders.save_model(tmp_path / "two.onnx", nodes, inputs, [builders.tensor("y", [1, 3])], [weight])
    np.savez(tmp_path / "sets.npz", a=np.ones((3, 1, 4), np.float32), b=np.ones((5, 1, 3), np.float32))
    err = refused([model, "--verify", flag, tmp_path / "sets.npz", "-o", tmp_path / "m.rccp"], tmp_path,
                  f"{flag} {tmp_path / 'sets.npz'}")
    assert "different sample counts (a: 3, b: 5)" in err


def test_calibration_sets_of_one_sample_count_still_compile(mlp, tmp_path) -> None:
    np.savez(tmp_path / "cal.npz", x=X)
    outcome = run_in_process([mlp[0], "--calibrate", tmp_path / "cal.npz", "-o", tmp_path / "m.rccp", "-q"])
    assert outcome.code == 0, outcome.err


# ---- finding 14: labels outside the classes -------------------------------------------------------------

@pytest.mark.parametrize("label, dtype, problem", [
    (99, np.int64, "is outside the 3 classes of output 'y'"),
    (-1, np.int64, "is outside the 3 classes of output 'y'"),
    (3, np.int8, "is outside the 3 classes of output 'y'"),
    (2**64 - 1, np.uint64, "is not a class number"),        # not wrapped to -1 by a cast
])
def test_labels_outside_the_classes_are_refused(tmp_path, label, dtype, problem) -> None:
    model = dynamic_mlp(tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=X[:, 0])
    np.save(tmp_path / "y.npy", np.array([0, label, 1], dtype))
    err = refused(["eval", model, "--data", tmp_path / "x.npz", "--labels", tmp_path / "y.npy", "--report",
                   tmp_path / "r.json"], tmp_path, "--labels")
    assert f"label {label} at sample 1 {problem}" in err


def test_evaluate_model_refuses_labels_outside_the_classes(tmp_path) -> None:
    model = dynamic_mlp(tmp_path / "m.onnx")
    with pytest.raises(RccError, match=r"label 18446744073709551615 at sample 0 is outside the 3 classes"):
        evaluate_model(model, {"x": X[:, 0]}, np.array([2**64 - 1, 0, 0], np.uint64))


def test_labels_within_the_classes_are_scored(tmp_path) -> None:
    model = dynamic_mlp(tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=X[:, 0])
    np.save(tmp_path / "y.npy", np.array([0, 2, 1], np.uint8))
    outcome = run_in_process(["eval", model, "--data", tmp_path / "x.npz", "--labels", tmp_path / "y.npy",
                              "--report", tmp_path / "r.json", "-q"])
    assert outcome.code == 0, outcome.err
    assert json.loads((tmp_path / "r.json").read_text())["samples"] == 3


# ---- finding 11: eval and a model's static batch --------------------------------------------------------

def test_eval_runs_a_static_batch_model_on_any_number_of_samples(mlp, tmp_path) -> None:
    """The MLP's batch is a static 1: eval runs it one sample at a time whatever the data's count."""
    np.savez(tmp_path / "x.npz", x=X[:, 0])
    outcome = run_in_process(["eval", mlp[0], "--data", tmp_path / "x.npz", "--report", tmp_path / "r.json", "-q"])
    assert outcome.code == 0, outcome.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 3 and report["batch"] == 1 and report["accuracy"]["mean"] == 1.0


def test_eval_pads_the_last_batch_of_a_static_batch_model(tmp_path) -> None:
    """A static batch of 4 and 6 samples (models/mlp.onnx's case): two batches, the second padded."""
    weight = numpy_helper.from_array(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32), "W")
    model = builders.save_model(tmp_path / "m4.onnx", [helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")],
                                [builders.tensor("x", [4, 4])], [builders.tensor("y", [4, 3])], [weight])
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32))
    outcome = run_in_process(["eval", model, "--data", tmp_path / "x.npz", "--report", tmp_path / "r.json", "-q"])
    assert outcome.code == 0, outcome.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 6 and report["batch"] == 4
    refused(["eval", model, "--data", tmp_path / "x.npz", "--batch", 8], tmp_path, "--batch 8")


def test_eval_refuses_data_that_does_not_fit_the_declared_input(mlp, tmp_path) -> None:
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 5), np.float32))
    err = refused(["eval", mlp[0], "--data", tmp_path / "x.npz"], tmp_path, "--data")
    assert "input 'x' is [3, 5]" in err and "[1, 4]" in err
