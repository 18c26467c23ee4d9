"""The reference interpreter: executes a module op by op with the op table's numpy semantics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rcc.ir.core import Module, Op, Value
from rcc.ir.inputs import check_inputs as check_declared_inputs
from rcc.ir.optable import OPS

Substitute = Callable[[Op, list[np.ndarray]], list[np.ndarray]]


def check_inputs(module: Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The module's inputs (defaults filled in); RccError naming the input when one is missing, has the
    wrong shape or dtype, or is baked in."""
    return check_declared_inputs([(value.name, value.type) for value in module.inputs], inputs,
                                 baked=module.baked_inputs, defaults=module.input_defaults)


def run(module: Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name for the given inputs (keyed by input name)."""
    env = evaluate(module, inputs)
    return {v.name: env[v] for v in module.outputs}


def evaluate(module: Module, inputs: dict[str, np.ndarray], substitute: Substitute | None = None
             ) -> dict[Value, np.ndarray]:
    """Every value of the module (inputs, constants, op results) for the given inputs. `substitute(op,
    operands)`, when given, may replace the arrays an op reads (e.g. by their quantised values)."""
    inputs = check_inputs(module, inputs)
    env: dict[Value, np.ndarray] = {v: np.asarray(inputs[v.name]) for v in module.inputs}
    env.update({c: c.data for c in module.constants})
    for op in module.ops:
        operands = [env[v] for v in op.operands]
        results = OPS[op.opname].run(substitute(op, operands) if substitute else operands, op.attrs)
        for value, array in zip(op.results, results):
            assert value not in env, f"%{value.name} assigned twice"
            assert array.shape == value.type.shape and array.dtype == value.type.np_dtype, \
                f"{op.opname} gave {array.dtype}{list(array.shape)} for %{value.name} : {value.type}"
            env[value] = array
    return env
