"""The command line as a whole: `--help` names every command, `--version`, each command's `--help`, exit
code 3 with a traceback for a bug, `--timings`, and a progress display only on a terminal, never with -q."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest

import rcc
from rcc.compiler import driver
from rcc.compiler.cli import COMMANDS, main
from rcc.compiler.commands.progress import showing_progress
from rcc.backends.chip import load_chip
from rcc.compiler.report import build_report
from rcc.ir.errors import RccError
from rcc.ir.progress import stage, tracked
from tests.conftest import ROOT

LENET = ROOT / "models" / "lenet5.onnx"


def test_help_names_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert set(COMMANDS) == {"compile", "run", "opt", "prune", "sweep", "eval"}
    for name in COMMANDS:
        assert any(line.split()[:1] == [name] and len(line.split()) > 2 for line in out.splitlines()), name
    assert "exit codes" in out


@pytest.mark.parametrize("command", ["compile", "run", "opt", "prune", "sweep", "eval"])
def test_each_command_has_help(capsys, command) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rcc") and "-q, --quiet" in out and "--timings" in out


def test_version_names_rcc_and_its_runtimes(capsys) -> None:
    assert main(["--version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"rcc {rcc.__version__}", f"onnx {version('onnx')}", f"onnxruntime {version('onnxruntime')}",
                     f"numpy {version('numpy')}"]


def test_no_arguments_is_a_usage_error(capsys) -> None:
    assert main([]) == 2 and "rcc --help" in capsys.readouterr().err


def test_compile_is_the_default_and_can_be_named(tmp_path, capsys) -> None:
    assert main(["compile", str(LENET), "-q", "-o", str(tmp_path / "a.rccp")]) == 0
    assert main([str(LENET), "-q", "-o", str(tmp_path / "b.rccp")]) == 0
    assert (tmp_path / "a.rccp").read_bytes() == (tmp_path / "b.rccp").read_bytes()


def test_an_internal_error_is_exit_3_with_its_traceback(tmp_path, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ValueError("an invariant broke")

    monkeypatch.setattr(driver, "compile_model", broken)
    assert main([str(LENET), "-o", str(tmp_path / "l.rccp")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: an invariant broke" in err and "internal error" in err
    assert "please report it" in err and list(tmp_path.iterdir()) == []


def test_a_user_error_is_exit_2_without_traceback(tmp_path, capsys, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise RccError("model.onnx: node 'x' is wrong")

    monkeypatch.setattr(driver, "compile_model", refuse)
    assert main([str(LENET), "-o", str(tmp_path / "l.rccp")]) == 2
    assert capsys.readouterr().err == "rcc: error: model.onnx: node 'x' is wrong\n"


def test_timings_list_the_stages_and_passes(tmp_path, capsys) -> None:
    assert main([str(LENET), "-q", "--timings", "--verify", "-o", str(tmp_path / "l.rccp")]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == "timings:"
    names = [line.rsplit(None, 2)[0].strip() for line in lines[1:]]
    for name in ("compile", "import", "pass constant-fold", "pass lower-to-xbar", "calibrate", "pass pack-crossbars",
                 "verify", "machine run", "write"):
        assert name in names
    assert all(line.endswith(" s") for line in lines[1:])
    assert "timings" not in captured.out


def test_quiet_and_piped_runs_print_nothing_extra(tmp_path, capsys) -> None:
    assert main([str(LENET), "-q", "-o", str(tmp_path / "l.rccp")]) == 0
    assert capsys.readouterr() == ("", "")
    assert main([str(LENET), "-o", str(tmp_path / "l.rccp")]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.splitlines()[-1] == f"wrote {tmp_path / 'l.rccp'}"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _options(**values) -> argparse.Namespace:
    return argparse.Namespace(**{"quiet": False, "timings": False, **values})


def test_progress_shows_on_a_terminal_only_and_not_with_quiet() -> None:
    def work() -> None:
        with stage("calibrate-ish"):
            for _ in tracked(range(3), "machine run"):
                pass

    terminal = Terminal()
    with showing_progress(_options(), terminal):
        work()
    assert "calibrate-ish" in terminal.getvalue()
    for stream, options in [(Terminal(), _options(quiet=True)), (Terminal(), _options(print_after_all=True)),
                            (io.StringIO(), _options())]:
        with showing_progress(options, stream):
            work()
        assert stream.getvalue() == ""


def test_build_report_is_a_python_call(tmp_path) -> None:
    compiled = driver.compile_model(LENET)
    result = driver.verify_compiled(LENET, compiled)
    report = build_report(compiled, result, {"model": "lenet5.onnx"})
    assert report["model"] == "lenet5.onnx" and report["precision"] == "int" and report["verify"]["passed"]
    assert report["totals"]["crossbars"] == sum(layer["crossbars"] for layer in report["layers"]) > 0
    assert "verify" not in build_report(compiled)
    main([str(LENET), "-q", "--report", str(tmp_path / "r.json"), "-o", str(tmp_path / "l.rccp")])
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["totals"] == build_report(compiled, chip=load_chip("isaac"))["totals"]  # the CLI's default
    assert written["totals"]["cost"]["energy_pj"] > 0
    assert np.isclose(written["totals"]["utilization"], report["totals"]["utilization"])


@pytest.mark.parametrize("argv, loaded", [(["--help"], []), (["--version"], ["importlib.metadata"])])
def test_help_and_version_load_no_heavy_module(argv, loaded) -> None:
    """Start-up: `rcc --help` and `--version` import neither numpy nor onnx (a command's module and the IR
    are imported only when a command runs); only --version reads the package metadata."""
    probe = ("import sys; from rcc.compiler.cli import main; code = main(%r); "
             "print(code, sorted(m for m in ('numpy', 'onnx', 'onnxruntime', 'scipy', 'lark', 'importlib.metadata') "
             "if m in sys.modules))" % argv)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == f"0 {loaded}", done.stdout + done.stderr


def test_opt_runs_lowering_and_packing_for_a_target_given_by_flags(tmp_path, capsys) -> None:
    """`rcc opt` sets the pass context from the target flags, so lowering and packing run on IR text."""
    fixture = (ROOT / "tests" / "passes" / "fixtures" / "lower-to-xbar.ir").read_text()
    source = tmp_path / "mm.ir"
    source.write_text(fixture[fixture.index("module"):fixture.index("module", fixture.index("module") + 1)])
    assert main(["opt", str(source), "-p", "lower-to-xbar,pack-crossbars", "--xbar", "64x64"]) == 0
    out = capsys.readouterr().out
    assert "xbar.mvm" in out and "xbar_rows = 64" in out and "xbar_cols = 64" in out
    assert main(["opt", str(source), "-p", "lower-to-xbar{target=big}"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
