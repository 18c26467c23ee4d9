"""Lowering crossbar-level IR into a program: one instruction per op, buffers named after values.

Inputs are `load`ed and outputs `store`d; `vec.im2col`, `vec.quantize`, `xbar.mvm` and `vec.dequantize`
become the instructions of the same name, `xbar.write_mvm` (weights written at run time) `write_mvm`;
every other op becomes a `vec` instruction that names the op, executed by the digital vector unit (the
fallback for a weighted op no pass mapped onto arrays, e.g. a batched matmul of constant 3-D weights,
whose multiply-accumulates the vector unit then counts). Constants are preloaded into buffers of their
own name; an `mvm`'s weights are programmed into its arrays when the machine loads the program. The
schedule (copies, their arrays and rows, phases, pipeline overlap) travels in the `mvm` attributes.
"""

from __future__ import annotations

from rcc.backends.program import Instruction, Program
from rcc.backends.target import Target
from rcc.ir.core import Module, Op
from rcc.ir.errors import RccError
from rcc.ir.ops.xbar import array_owner_ops

_DEDICATED = {"vec.im2col": "im2col", "vec.quantize": "quantize", "xbar.mvm": "mvm", "vec.dequantize": "dequantize",
              "xbar.write_mvm": "write_mvm"}


def _instruction(op: Op) -> Instruction:
    shapes = [list(r.type.shape) for r in op.results]
    dtypes = [r.type.dtype for r in op.results]
    dst = [r.name for r in op.results]
    src = [v.name for v in op.operands]
    if op.opname == "xbar.mvm":
        attrs = {**op.attrs, "weights_shape": list(op.operands[1].type.shape)}
        return Instruction("mvm", dst, src, attrs, shapes, dtypes)
    if op.opname in _DEDICATED:
        return Instruction(_DEDICATED[op.opname], dst, src, dict(op.attrs), shapes, dtypes)
    return Instruction("vec", dst, src, {"fn": op.opname, "attrs": dict(op.attrs)}, shapes, dtypes)


def emit_program(module: Module, target: Target, precision: str) -> Program:
    """The program of a crossbar-level module; RccError if it needs more arrays than the target has."""
    instructions = [Instruction("load", [v.name], [], {}, [list(v.type.shape)], [v.type.dtype])
                    for v in module.inputs]
    instructions += [_instruction(op) for op in module.ops]
    phases: dict[int, int] = {}  # arrays each reprogramming phase holds, copies included
    sharing = array_owner_ops(module.ops)   # these run on an earlier mvm's arrays
    for op in module.ops:
        if op.opname in ("xbar.mvm", "xbar.write_mvm") and op not in sharing:
            arrays = op.attrs["arrays"] * op.attrs.get("copies", 1)
            phases[op.attrs["phase"]] = phases.get(op.attrs["phase"], 0) + arrays
    arrays = max(phases.values(), default=0)
    if target.max_arrays is not None and arrays > target.max_arrays:
        raise RccError(f"model {module.name!r} needs {arrays} crossbar arrays; the target has {target.max_arrays} "
                       f"({target.chips} chips × {target.tiles_per_chip} tiles × {target.arrays_per_tile} arrays); "
                       f"raise --chips or use larger arrays")
    instructions += [Instruction("store", [], [v.name], {"output": v.name}) for v in module.outputs]
    inputs = [{"name": v.name, "shape": list(v.type.shape), "dtype": v.type.dtype} for v in module.inputs]
    constants = {c.name: c.data for c in module.constants}
    return Program(module.name, target.to_dict(), precision, inputs, [v.name for v in module.outputs],
                   instructions, constants, list(module.baked_inputs), input_defaults=dict(module.input_defaults))
