"""The `rcc` command line: picks the command, prints `--help` and `--version`, and maps what happened
to the exit code. The commands themselves live in compiler/commands/, one module each.

    rcc [compile] MODEL.onnx [options]       (compile is the default command)
    rcc run PROGRAM.rccp --inputs IN.npz -o OUT.npz
    rcc opt FILE.ir -p PASS,PASS [-o OUT.ir]
    rcc prune MODEL.onnx --sparsity S -o OUT.onnx
    rcc sweep MODEL.onnx [MODEL ...] --grid KEY=VALUES ... -o RESULTS.parquet

Exit codes: 0 success, 1 verification outside tolerance, 2 bad input or usage (one line on stderr),
3 internal error (a bug: the traceback and a request to report it), 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import rcc
from rcc.compiler.commands import COMMANDS

EXIT_INTERNAL_ERROR = 3
VERSIONED_DEPENDENCIES = ("onnx", "onnxruntime", "numpy")


def help_text() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rcc [COMMAND] ARGS... [options]", "",
             "rcc compiles ONNX models for ReRAM crossbar accelerators and runs them on a bit-accurate machine model.",
             "", "commands:"]
    lines += [f"  {name.ljust(width)}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "`rcc MODEL.onnx ...` is `rcc compile MODEL.onnx ...`; `rcc COMMAND --help` lists a command's "
                  "options.",
              "", "options:", "  -h, --help  show this help", "  --version   show the versions of rcc, onnx, "
                                                                  "onnxruntime and numpy",
              "", "exit codes: 0 success, 1 verification outside tolerance, 2 bad input or usage, 3 internal error"]
    return "\n".join(lines)


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version   # 30 ms of start-up: only for --version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return "\n".join([f"rcc {rcc.__version__}"] + [f"{name} {installed(name)}" for name in VERSIONED_DEPENDENCIES])


def dispatch(argv: list[str]) -> int:
    from rcc.compiler.commands.common import UsageError

    if not argv:
        raise UsageError("give a model (rcc MODEL.onnx) or a command; `rcc --help` lists them")
    if argv[0] in COMMANDS:
        return COMMANDS[argv[0]].function()(argv[1:])
    return COMMANDS["compile"].function()(argv)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Within: no numpy floating-point warnings and no Python warnings from the libraries (unless `python -W`
    asks for them). They are not messages for rcc's users: results carry inf and NaN as onnxruntime's do, and
    what matters (non-finite weights, inputs and outputs, verification, malformed files) rcc says in its own line."""
    import numpy as np

    with np.errstate(all="ignore"), warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter("ignore")
        yield


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(help_text())
        return 0
    if argv[:1] == ["--version"]:
        print(version_text())
        return 0
    # Everything past here imports the IR (numpy, lark) and a command's module; --help and --version above
    # stay fast by not doing so.
    from rcc.ir.errors import RccError

    try:
        with quiet_libraries():
            return dispatch(argv)
    except RccError as err:
        print(f"rcc: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("rcc: interrupted", file=sys.stderr)
        return 130
    except SystemExit as done:  # argparse's --help
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    except Exception:
        traceback.print_exc()
        print(f"rcc: internal error: this is a bug in rcc {rcc.__version__}; please report it to the rcc developers "
              f"with the command you ran and the traceback above", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
