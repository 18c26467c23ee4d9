"""Threads for the device simulation (runtime/devices.py): independent pieces of work (programming one array,
reading one chunk of vectors through one unit) on READ_THREADS threads, and per-thread scratch buffers; and
how many BLAS threads a machine run's GEMMs get (`blas_threads_for`, `blas_limited`).

numpy's ufuncs and BLAS release the GIL, so two threads use two cores; each piece's BLAS call is held to one
thread meanwhile (threadpoolctl), since the pieces are the parallelism. Results come back in task order, so
callers that sum them keep their order and their bits.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numpy as np

READ_THREADS = min(2, os.cpu_count() or 1)   # threads programming arrays and reading (unit, chunk) steps


_WORK = threading.local()


def work_buffer(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """This thread's float32 scratch array `name` of `shape`, reused across calls (a fresh multi-megabyte
    temporary costs a page fault per 4 KiB)."""
    size = math.prod(shape)
    buffers = _WORK.__dict__.setdefault("buffers", {})
    if name not in buffers or buffers[name].size < size:
        buffers[name] = np.empty(size, dtype=np.float32)
    return buffers[name][:size].reshape(shape)


_POOL: dict[str, object] = {}

# OpenBLAS runs a GEMM of at most 4·65536 multiply-accumulates on one thread whatever its setting; up to
# SMALL_GEMM_MACS a second thread saves tens of microseconds at best, while in a machine run, between GEMMs
# separated by vector-unit work, its threads wake, spin and sleep, and on a shared machine wait for a core
# (measured on the zoo with 2 BLAS threads: batches of 4 at 1.1-3.0 ms per inference against 0.17-1.07 ms
# on one thread; single runs up to 1.8x slower).
BLAS_SINGLE_THREAD_MACS = 4 * 65536
SMALL_GEMM_MACS = 1 << 25


def blas_threads_for(largest_gemm_macs: int) -> int | None:
    """The BLAS thread count for a run whose largest GEMM does `largest_gemm_macs` multiply-accumulates: 1 when
    a second thread does not pay, None (BLAS's own setting) when it may, or when BLAS will not use it anyway."""
    return 1 if BLAS_SINGLE_THREAD_MACS < largest_gemm_macs < SMALL_GEMM_MACS else None


def _blas_libraries() -> list:
    if "blas" not in _POOL:
        from threadpoolctl import ThreadpoolController   # 4 ms of start-up: only for runs that set BLAS threads
        _POOL["blas"] = ThreadpoolController()
    return [library for library in _POOL["blas"].lib_controllers if library.user_api == "blas"]


def blas_limited(threads: int | None) -> AbstractContextManager:
    """Within: every BLAS library at most `threads` threads (None: unchanged); each one's setting restored after.
    Costs about a microsecond (threadpoolctl's `limit` takes several)."""
    return nullcontext() if threads is None else _blas_at_most(threads)


@contextmanager
def _blas_at_most(threads: int) -> Iterator[None]:
    changed = []
    for library in _blas_libraries():
        before = library.get_num_threads()
        if before > threads:
            library.set_num_threads(threads)
            changed.append((library, before))
    try:
        yield
    finally:
        for library, before in changed:
            library.set_num_threads(before)


def in_parallel(work, tasks: list[tuple]) -> list:
    """`work(*task)` of every task, in order, on READ_THREADS threads (numpy and BLAS release the GIL), each
    task's matmuls on one BLAS thread, also when the tasks run serially: the tasks are the parallelism, a
    task's matmuls are small blocks that multi-threaded OpenBLAS runs many times slower (measured: a
    [64, 128] × [128, 4096] float32 product at 2.8 GFLOP/s on two threads, 25 on one), and BLAS threads
    that wait for a core on a shared machine spin."""
    _blas_libraries()
    with _POOL["blas"].limit(limits=1, user_api="blas"):
        if len(tasks) < 2 or READ_THREADS < 2:
            return [work(*task) for task in tasks]
        if "threads" not in _POOL:
            from concurrent.futures import ThreadPoolExecutor   # 6 ms of start-up: only for parallel reads
            _POOL["threads"] = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="rcc-read")
        return list(_POOL["threads"].map(lambda task: work(*task), tasks))
