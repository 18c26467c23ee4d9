"""Running `rcc` on one hostile input and checking the contract: the exact exit code, one line on
stderr (no traceback), no file left behind, and bounded time and memory.

In-process runs (`rcc.compiler.cli.main`) are fast and bounded in time by SIGALRM; a run whose danger
is memory goes to a subprocess with an address-space limit instead (`RLIMIT_AS`).
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rcc.compiler.cli import main

SECONDS_PER_CASE = 10
SUBPROCESS_SECONDS = 30  # includes starting python and importing onnx/onnxruntime on a shared machine
MEMORY_PER_CASE = 2**30


class CaseTimeout(Exception):
    pass


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def _alarm(signum, frame):
    raise CaseTimeout(f"case ran past {SECONDS_PER_CASE} s")


def run_in_process(argv: list[str]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS_PER_CASE)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(code, out.getvalue(), err.getvalue())


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_PER_CASE, MEMORY_PER_CASE))


def run_subprocess(argv: list[str], env: dict[str, str] | None = None) -> Outcome:
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "rcc", *[str(a) for a in argv]], capture_output=True,
                            text=True, timeout=SUBPROCESS_SECONDS, preexec_fn=_limit_memory, env=environment)
    return Outcome(result.returncode, result.stdout, result.stderr)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def check_refusal(outcome: Outcome, code: int, fragment: str) -> None:
    """The contract for bad input: exit `code`, exactly one stderr line naming the problem, no traceback."""
    lines = outcome.err.strip().splitlines()
    assert outcome.code == code, f"exit {outcome.code}, expected {code}; stderr: {outcome.err[-600:]}"
    assert len(lines) == 1 and lines[0].startswith("rcc: error: "), f"stderr is not one line: {outcome.err[-600:]}"
    assert "Traceback" not in outcome.err
    assert fragment.lower() in lines[0].lower(), f"{fragment!r} not in {lines[0]!r}"
