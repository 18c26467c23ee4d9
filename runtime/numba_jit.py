"""numba's compiler as rcc's kernels use it (`runtime/read_kernels.py`, `runtime/step_kernels.py`).

`jit`: nopython, no GIL held, IEEE arithmetic as numpy's (no fast-math: no fused multiply-adds, no reassociation),
and numba's numpy error model (a division is IEEE's, with no zero check, which would keep loops from being
vectorised). Compiled kernels are cached on disk when numba finds a place to write them (beside the module, else
in the user's cache folder); where it finds none (a read-only install run by a user without a writable home) it
raises at decoration, and the kernel is compiled anew in each process instead.
"""

from __future__ import annotations

import numba


def jit(function):
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy")(function)
    except RuntimeError:   # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, error_model="numpy")(function)
