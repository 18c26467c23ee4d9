"""Inputs of a module or a program: the one input checker, and seeded random inputs.

The interpreter (`ir.interpreter`), the machine (`runtime.machine`) and the CLI's input files
(`load_inputs`) all call `check_inputs`, so a missing input, a wrong shape or dtype, or a
NaN/Inf value is worded the same way wherever it is caught. `random_inputs` is what `--verify` feeds by
default and what calibration samples; numpy only, so every layer can draw inputs without ONNX.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import numpy as np

from rcc.ir.core import Module
from rcc.ir.errors import RccError
from rcc.ir.limits import load_npz
from rcc.ir.types import TensorType, is_narrow, is_narrow_float, narrow_integer_range

NONFINITE_HINT = "pass --allow-nonfinite to propagate NaN/Inf as onnxruntime does"


def check_inputs(declared: Iterable[tuple[str, TensorType]], inputs: Mapping[str, np.ndarray],
                 allow_nonfinite: bool = True, baked: Iterable[str] = (),
                 defaults: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The declared inputs from `inputs` as arrays, an input not fed taking its value from `defaults` when it
    has one; RccError naming the first input that is missing, of the wrong shape or dtype, or (unless
    `allow_nonfinite`) holding NaN or Inf, or that is one of the `baked` inputs (ONNX inputs with a default
    that rcc compiled in as a weight: feeding one would be silently ignored)."""
    for name in baked:
        if name in inputs:
            raise RccError(f"input {name!r} has a default value (an initializer of the same name) that rcc compiled "
                           f"in as a constant (a weight programmed into crossbar cells or a compile-time shape, "
                           f"which a fed value cannot change); drop it from the inputs, or change the initializer "
                           f"and recompile")
    checked = {}
    if defaults:
        inputs = {**defaults, **inputs}
    for name, type_ in declared:
        if name not in inputs:
            raise RccError(f"input {name!r} is missing (expected {type_})")
        array = np.asarray(inputs[name])
        if is_narrow(type_.dtype) and array.dtype != type_.np_dtype and array.shape == type_.shape:
            array = _exactly_narrowed(name, array, type_)
        if array.shape != type_.shape or array.dtype != type_.np_dtype:
            raise RccError(f"input {name!r} is {array.dtype}{list(array.shape)}, expected {type_}")
        if not allow_nonfinite:
            check_finite(f"input {name!r}", array)
        checked[name] = array
    return checked


def _exactly_narrowed(name: str, array: np.ndarray, type_: TensorType) -> np.ndarray:
    """A narrow-typed input given in a wider dtype (numpy files hold no narrow types: float32 for bfloat16 and
    float8, int8 for int4), as the narrow type when every value is exactly one of its values; else as it is,
    for the dtype check to refuse, or an RccError naming the first value the type does not hold."""
    if array.dtype.kind not in "fiu":
        return array
    narrowed = array.astype(type_.np_dtype)
    back = narrowed.astype(array.dtype)
    same = (back == array) | (np.isnan(back) & np.isnan(array) if array.dtype.kind == "f" else False)
    if not np.all(same):
        first = [int(i) for i in np.argwhere(~same)[0]]
        raise RccError(f"input {name!r}: {array[tuple(first)]} at {first} is not a {type_.dtype} value "
                       f"(expected {type_}, or {array.dtype} values it holds exactly)")
    return narrowed


def check_finite(what: str, array: np.ndarray, hint: str = NONFINITE_HINT) -> None:
    """RccError naming `what`, how many values are NaN/Inf and where the first is, when any is."""
    if array.dtype.kind != "f" or math.isfinite(np.add.reduce(array, axis=None)):
        return   # a NaN or an Inf anywhere makes the sum NaN or infinite (finite values may overflow it: then look)
    bad = ~np.isfinite(array)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        raise RccError(f"{what} has {int(bad.sum())} NaN/Inf value(s) (first {array[tuple(first)]} at {first}); "
                       f"{hint}")


def random_inputs(module: Module, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for every module input: standard normal floats, small non-negative integers (below 8,
    and within the axis they index when they index a gather); an input with a default value
    (`Module.input_defaults`) gets its default."""
    rng = np.random.default_rng(seed)
    bounds = _index_bounds(module)
    inputs = {}
    for value in module.inputs:
        dtype = value.type.np_dtype
        if value.name in module.input_defaults:
            inputs[value.name] = module.input_defaults[value.name]
            continue
        if dtype.kind == "f" or is_narrow_float(value.type.dtype):
            normal = rng.standard_normal(value.type.shape)
            inputs[value.name] = (np.abs(normal) if value.type.dtype == "f8e8m0" else normal).astype(dtype)   # unsigned
        elif dtype.kind == "b":
            inputs[value.name] = rng.integers(0, 2, value.type.shape).astype(dtype)
        else:
            high = narrow_integer_range(value.type.dtype)[1] + 1 if is_narrow(value.type.dtype) else 8
            inputs[value.name] = rng.integers(0, min(high, bounds.get(value.name, 8)), value.type.shape).astype(dtype)
    return inputs


def _index_bounds(module: Module) -> dict[str, int]:
    """For inputs that index a gather (token ids, ...), the length of the shortest axis they index, so random
    indices stay in range."""
    bounds: dict[str, int] = {}
    inputs = {value.name for value in module.inputs}
    for op in module.ops:
        if op.opname not in ("nn.gather", "nn.gather_elements", "nn.gather_nd") or op.operands[1].name not in inputs:
            continue
        data, indices = op.operands[0].type.shape, op.operands[1].type.shape
        if op.opname == "nn.gather_nd":
            batch = op.attrs["batch_dims"]
            axes = data[batch:batch + (indices[-1] if indices else 0)]
        else:
            axes = (data[op.attrs["axis"]],)
        bound = max(min(axes, default=1), 1)
        bounds[op.operands[1].name] = min(bounds.get(op.operands[1].name, bound), bound)
    return bounds
def load_inputs(path: str | os.PathLike, flag: str = "--inputs", allow_nonfinite: bool = False
                ) -> dict[str, np.ndarray]:
    """Arrays by name from an .npz the user gave with `flag`, read within the input limits
    (`rcc.ir.limits`); RccError naming the flag and file when unreadable or (unless `allow_nonfinite`)
    when an array holds NaN/Inf. Shapes and dtypes are checked by whatever runs them (`rcc.ir.inputs`)."""
    arrays = load_npz(path, flag)
    if not allow_nonfinite:
        for key, array in arrays.items():
            check_finite(f"{flag} {path}: array {key!r}", array)
    return arrays
