"""How many BLAS threads a machine run gets (runtime/threads.py): one while the largest GEMM is too small for a
second thread to pay, BLAS's own setting otherwise, and the setting restored after the run."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.runtime import threads
from rcc.runtime.machine import Machine
from tests.conftest import ROOT


def _blas_threads() -> int:
    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)


def test_the_thread_count_follows_the_largest_gemm() -> None:
    assert threads.blas_threads_for(1000) is None                     # BLAS runs it on one thread anyway
    assert threads.blas_threads_for(threads.BLAS_SINGLE_THREAD_MACS + 1) == 1
    assert threads.blas_threads_for(threads.SMALL_GEMM_MACS - 1) == 1
    assert threads.blas_threads_for(threads.SMALL_GEMM_MACS) is None


def test_a_small_model_runs_its_gemms_on_one_blas_thread_and_restores_the_setting(monkeypatch) -> None:
    with threadpool_limits(2, user_api="blas"):
        if _blas_threads() < 2:
            pytest.skip("BLAS has a single thread here")
        compiled = compile_model(ROOT / "models" / "lenet5.onnx", precision="int")
        machine = Machine(compiled.program)
        seen = []
        layer = next(name for name, group in machine.crossbars.items())
        group = machine.crossbars[layer]
        original = group.run

        def observed(*args, **kwargs):
            seen.append(_blas_threads())
            return original(*args, **kwargs)
        monkeypatch.setattr(group, "run", observed)   # a traced run reads the crossbars through `run`
        inputs = random_inputs(compiled.graph, 0)
        monkeypatch.setattr(threads, "BLAS_SINGLE_THREAD_MACS", 0)   # lenet5's GEMMs count as mid-sized
        expected = machine.run(inputs, trace=True).outputs
        assert seen == [1] and _blas_threads() == 2
        monkeypatch.setattr(threads, "SMALL_GEMM_MACS", 1)           # ... and now as large
        got = machine.run(inputs, trace=True).outputs
        assert seen == [1, 2] and _blas_threads() == 2
        for name, value in expected.items():
            assert np.array_equal(got[name], value)
