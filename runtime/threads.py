"""Threads for the device simulation (runtime/devices.py): independent pieces of work (programming one array,
reading one chunk of vectors through one unit) on READ_THREADS threads, and per-thread scratch buffers.

numpy's ufuncs and BLAS release the GIL, so two threads use two cores; each piece's BLAS call is held to one
thread meanwhile (threadpoolctl), since the pieces are the parallelism. Results come back in task order, so
callers that sum them keep their order and their bits.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

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


def in_parallel(work, tasks: list[tuple]) -> list:
    """`work(*task)` of every task, in order, on READ_THREADS threads (numpy and BLAS release the GIL), each
    task's matmuls on one BLAS thread, also when the tasks run serially: the tasks are the parallelism, a
    task's matmuls are small blocks that multi-threaded OpenBLAS runs many times slower (measured: a
    [64, 128] × [128, 4096] float32 product at 2.8 GFLOP/s on two threads, 25 on one), and BLAS threads
    that wait for a core on a shared machine spin."""
    if not _POOL:
        _POOL["blas"] = ThreadpoolController()
    with _POOL["blas"].limit(limits=1, user_api="blas"):
        if len(tasks) < 2 or READ_THREADS < 2:
            return [work(*task) for task in tasks]
        if "threads" not in _POOL:
            _POOL["threads"] = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="rcc-read")
        return list(_POOL["threads"].map(lambda task: work(*task), tasks))
