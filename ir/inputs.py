"""Seeded random inputs for a module: what `--verify` feeds by default and what calibration samples.

Numpy only, so every layer (the frontend, calibration, lowering, tests) can draw inputs without ONNX.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.core import Module


def random_inputs(module: Module, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for every module input: standard normal floats, small non-negative integers."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for value in module.inputs:
        dtype = value.type.np_dtype
        if dtype.kind == "f":
            inputs[value.name] = rng.standard_normal(value.type.shape).astype(dtype)
        elif dtype.kind == "b":
            inputs[value.name] = rng.integers(0, 2, value.type.shape).astype(dtype)
        else:
            inputs[value.name] = rng.integers(0, 8, value.type.shape).astype(dtype)
    return inputs
