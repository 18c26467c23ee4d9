"""Where verification went wrong: every intermediate tensor of the machine run that has a counterpart in
the ONNX model is compared with onnxruntime's, in program order; the first outside its tolerance is
named, and the crossbar layer that produced it has its error split by source.

    localization = localize("models/mlp.onnx", compile_model("models/mlp.onnx", Target(adc_bits=4)))
    localization.first            # "fc1" — the first tensor outside tolerance
    localization.attribution      # its layer's error by source, and the arrays and columns that saturated

The split re-runs the layer on the machine's own input to it with each source switched off; the layer is
linear in each, so a source's contribution is the difference it makes, in the layer's output units:
- `weight_quantization`: the dequantised inputs times (float weights − dequantised integer weights);
- `activation_rounding`: (float inputs − unclipped rounded inputs) times the float weights;
- `activation_clipping`: the exact product of (unclipped − clipped) integer inputs;
- `adc_saturation`: the machine's accumulators − the exact product (the arrays and columns that saturated
  are found by running each array alone);
- `device_noise`: with a device model or faults (`--device`, `--faults`, as `--verify` ran), the device
  machine's accumulators − the ideal machine's (then `adc_saturation` is the ideal machine's); else None.
Each is reported as rel L2 against the layer's float output (the float inputs times the float weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rcc.backends.device import Device
from rcc.backends.faults import FaultMap
from rcc.backends.program import Instruction
from rcc.compiler.driver import Compiled, input_samples, integer_widths, with_extra_stores
from rcc.compiler.frontend.loader import load_onnx
from rcc.compiler.verify import (FLOAT_MACHINE_TOLERANCE, Tolerance, integer_snr_bound, onnxruntime_runner,
                                 output_metrics)
from rcc.ir.ops.nn_linear import weight_matrix
from rcc.ir.ops.xbar import exact_grouped_product, im2col, quantize_limits
from rcc.runtime.crossbar import CrossbarGroup
from rcc.runtime.instructions import vector_step
from rcc.runtime.machine import Machine


@dataclass
class Localization:
    """The per-tensor error table (program order), the first tensor outside tolerance, and its layer's
    error by source."""

    tolerance: str
    tensors: list[dict[str, Any]] = field(default_factory=list)
    first: str | None = None
    attribution: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "first": self.first, "attribution": self.attribution,
                "tensors": self.tensors}


def localize(path: str | os.PathLike, compiled: Compiled, inputs: dict[str, np.ndarray] | None = None,
             seed: int = 0, device: Device | None = None, device_seed: int = 0,
             faults: FaultMap | None = None) -> Localization:
    """Compare every tensor the program writes under an ONNX tensor's name with onnxruntime's on one
    input set (`inputs`, the first of its samples when stacked, or seeded random ones), on the machine `--verify`
    ran (its cells those of `device` with `faults`), and attribute the first mismatch's layer error."""
    model = load_onnx(path)
    onnx_ops = {out: node.op_type for node in model.graph.node for out in node.output}
    model_outputs = {output.name for output in model.graph.output}
    written = [name for i in compiled.program.instructions for name in i.dst]
    program, _ = with_extra_stores(compiled.program, written)
    feeds = input_samples(compiled.graph, inputs, seed, 2)[0]   # verify's first input set (of stacked samples too)
    non_ideal = device is not None and not (device.is_ideal and faults is None)
    buffers = Machine(program, device=device, seed=device_seed, faults=faults).run(feeds).outputs
    ideal = Machine(program).run(feeds).outputs if non_ideal else None
    compared = [name for name in written if name in onnx_ops]
    # every compared tensor that is not the model's output (a program output of a model split for the host,
    # the tensors it hands over, is an intermediate tensor of the model)
    reference = onnxruntime_runner(path, [n for n in compared if n not in model_outputs])(feeds)
    tolerance = FLOAT_MACHINE_TOLERANCE if compiled.precision == "float" else \
        Tolerance("snr", bound=integer_snr_bound(*integer_widths(compiled)))
    result = Localization(tolerance.describe())
    for name in compared:
        metrics = output_metrics(np.asarray(buffers[name]), reference[name], tolerance)
        result.tensors.append({"tensor": name, "op": onnx_ops[name], **metrics})
        if not metrics["passed"] and result.first is None:
            result.first = name
    if result.first is not None:
        layer = producing_mvm(program.instructions, result.first)
        if layer is not None and compiled.precision == "int":
            result.attribution = attribute_layer(compiled, layer, buffers, ideal)
    return result


def producing_mvm(instructions: list[Instruction], buffer: str) -> Instruction | None:
    """The nearest crossbar layer (`mvm`) upstream of `buffer`, or None."""
    producer = {name: i for i in instructions for name in i.dst}
    frontier, seen = [buffer], set()
    while frontier:
        name = frontier.pop(0)
        instruction = producer.get(name)
        if instruction is None or name in seen:
            continue
        seen.add(name)
        if instruction.opcode == "mvm":
            return instruction
        frontier.extend(instruction.src)
    return None


def _grouped_float_product(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    groups, k, outputs = weights.shape
    grouped = rows.astype(np.float64).reshape(rows.shape[0], groups, k)
    return np.einsum("pgk,gkm->pgm", grouped, weights.astype(np.float64)).reshape(rows.shape[0], groups * outputs)


def _quantized_to_rows(producer: dict[str, Instruction], mvm: Instruction
                       ) -> tuple[Instruction, list[Instruction]] | None:
    """A crossbar layer's `quantize` and the instructions between it and its `mvm` (an im2col, reshapes,
    transposes, slices), in program order; None for a quantized model's own integers (no `quantize` of rcc's)."""
    chain = []
    instruction = producer.get(mvm.src[0])
    while instruction is not None and instruction.opcode != "quantize":
        chain.append(instruction)
        instruction = producer.get(instruction.src[0]) if instruction.src else None
    return None if instruction is None else (instruction, chain[::-1])


def attribute_accumulators(compiled: Compiled, mvm: Instruction, buffers: dict[str, np.ndarray],
                           ideal_buffers: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """A quantized model's own integer layer (rcc quantised nothing there): its accumulators' error against the exact
    integer product, by the sources that remain, ADC saturation and device noise (rel L2 against the exact)."""
    rows = np.asarray(buffers[mvm.src[0]]).astype(np.int64)
    exact = exact_grouped_product(rows, compiled.program.constants[mvm.src[1]]).astype(np.float64)
    machine_acc = np.asarray(buffers[mvm.dst[0]], np.float64)
    ideal_acc = machine_acc if ideal_buffers is None else np.asarray(ideal_buffers[mvm.dst[0]], np.float64)
    norm = float(np.linalg.norm(exact)) or 1.0
    total = machine_acc - exact
    contributions = {"adc_saturation": ideal_acc - exact,
                     **({"device_noise": machine_acc - ideal_acc} if ideal_buffers is not None else {})}
    sources: dict[str, Any] = dict.fromkeys(("weight_quantization", "activation_rounding", "activation_clipping"))
    sources.update({name: {"rel_l2": float(np.linalg.norm(c)) / norm,
                           "rel_l2_without": float(np.linalg.norm(total - c)) / norm}
                    for name, c in contributions.items()})
    sources.setdefault("device_noise", None)
    return {"layer": mvm.attrs["layer"], "rel_l2": float(np.linalg.norm(total)) / norm, "sources": sources,
            "against": "exact integer product", "clipped_inputs": 0, "saturated_arrays": []}


def attribute_layer(compiled: Compiled, mvm: Instruction, buffers: dict[str, np.ndarray],
                    ideal_buffers: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The error of one crossbar layer's output split by source (see the module docstring); `ideal_buffers`: the
    ideal machine's buffers when `buffers` are a device model's."""
    producer = {name: i for i in compiled.program.instructions for name in i.dst}
    chain = _quantized_to_rows(producer, mvm)
    if chain is None:
        return attribute_accumulators(compiled, mvm, buffers, ideal_buffers)
    quantize, between = chain
    dequantize = next(i for i in compiled.program.instructions if i.opcode == "dequantize" and i.src[0] == mvm.dst[0])
    scale, bits, signed = quantize.attrs["scale"], quantize.attrs["bits"], quantize.attrs["signed"]

    def rows_of(x: np.ndarray) -> np.ndarray:
        """`x` moved as the program moves the quantised activations to the crossbar's rows."""
        for instruction in between:
            if instruction.opcode == "im2col":
                x = im2col(x, **{k: instruction.attrs[k] for k in ("kernel", "strides", "pads", "dilations")})
            else:
                [x] = vector_step(instruction.attrs["fn"], instruction.attrs["attrs"])([x])
        return x.reshape(-1, x.shape[-1])

    x_float = np.asarray(buffers[quantize.src[0]], np.float64)
    rows_clipped = np.asarray(buffers[mvm.src[0]]).astype(np.int64)
    rows_unclipped = rows_of(np.rint(x_float.astype(np.float32) * np.float32(1.0 / scale)).astype(np.int64))
    rows_float = rows_of(x_float)
    wq = compiled.program.constants[mvm.src[1]]
    w_scale = compiled.program.constants[dequantize.src[1]].astype(np.float64)
    graph_op = next(op for op in compiled.graph.ops if op.opname in ("nn.conv2d", "nn.matmul")
                    and op.results[0].name == mvm.attrs["layer"])
    w_float = weight_matrix(graph_op).astype(np.float64)
    groups, _, outputs = wq.shape
    w_dequantized = wq.astype(np.float64) * w_scale.reshape(groups, 1, outputs)

    def out(acc: np.ndarray) -> np.ndarray:
        return acc.astype(np.float64) * scale * w_scale

    ideal = _grouped_float_product(rows_float, w_float)
    exact = exact_grouped_product(rows_clipped, wq)
    machine_acc = np.asarray(buffers[mvm.dst[0]])
    ideal_acc = machine_acc if ideal_buffers is None else np.asarray(ideal_buffers[mvm.dst[0]])
    contributions = {
        "weight_quantization": _grouped_float_product(rows_clipped * scale, w_float - w_dequantized),
        "activation_rounding": _grouped_float_product(rows_float - rows_unclipped * scale, w_float),
        "activation_clipping": out(exact_grouped_product(rows_unclipped, wq)) - out(exact),
        "adc_saturation": out(ideal_acc) - out(exact),
        **({"device_noise": out(machine_acc) - out(ideal_acc)} if ideal_buffers is not None else {}),
    }
    total = out(machine_acc) - ideal
    norm = float(np.linalg.norm(ideal)) or 1.0
    low, limit = quantize_limits(bits, signed)
    sources = {name: {"rel_l2": float(np.linalg.norm(c)) / norm,
                      "rel_l2_without": float(np.linalg.norm(total - c)) / norm}
               for name, c in contributions.items()}
    sources.setdefault("device_noise", None)
    return {"layer": mvm.attrs["layer"], "rel_l2": float(np.linalg.norm(total)) / norm, "sources": sources,
            "clipped_inputs": int(np.count_nonzero((rows_unclipped > limit) | (rows_unclipped < low))),
            "saturated_arrays": saturated_arrays(compiled, mvm, rows_clipped, exact, ideal_acc)}


def saturated_arrays(compiled: Compiled, mvm: Instruction, rows: np.ndarray, exact: np.ndarray,
                     machine_acc: np.ndarray) -> list[dict[str, Any]]:
    """Each array (pair) whose ADC saturated, found by running it alone: its index on the chip, group, the
    weight rows it holds, and the layer's output columns whose sums it clipped."""
    if np.array_equal(machine_acc, exact):
        return []
    weights = compiled.program.constants[mvm.src[1]]
    maps = [compiled.program.constants[name] for name in mvm.src[2:]]
    layer = CrossbarGroup(weights, mvm.attrs, *maps)
    found = []
    for index, (group, tile_rows, tile_outputs) in enumerate(layer.tiles()):
        alone = np.zeros_like(weights)
        alone[group][np.ix_(tile_rows, tile_outputs)] = weights[group][np.ix_(tile_rows, tile_outputs)]
        clipped = CrossbarGroup(alone, mvm.attrs, *maps).run(rows) != exact_grouped_product(rows, alone)
        columns = np.flatnonzero(clipped.any(axis=0))
        if columns.size:
            found.append({"array": mvm.attrs["first_array"] + index * layer.mapping.signs, "group": int(group),
                          "rows": [int(tile_rows.min()), int(tile_rows.max())],
                          "columns": [int(c) for c in columns]})
    return found
