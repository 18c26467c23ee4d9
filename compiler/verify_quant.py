"""Bit-exact verification of quantized models: the machine's integer tensors at every quantized boundary and
its outputs against onnxruntime's, element for element.

    boundaries = quantized_boundaries("model_qdq.onnx", compiled.program)
    ...run both with `boundaries` exposed as extra outputs...
    summary = bit_exact_summary(machine_runs, onnxruntime_runs, outputs, boundaries)

A quantized boundary is an integer tensor of the ONNX model that the compiled program computes under
the same name: the output of a QuantizeLinear, QLinearConv, QLinearMatMul, ConvInteger or MatMulInteger
(what `fuse-qdq` and the quantization rules name their results after). onnxruntime computes them with
its default session options, where QDQ groups run as its integer kernels; `nn.requantize` and the
`nn.qlinear_*` ops reproduce those kernels, so with a lossless ADC every element must be equal.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rcc.backends.program import Program
from rcc.compiler.frontend.loader import load_onnx

QUANTIZED_PRODUCERS = ("QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")
FLOAT_KERNELS = ("ConvTranspose",)  # float ops onnxruntime has no integer kernel for: their QDQ group runs in float


def is_quantized(program: Program) -> bool:
    """Whether the program computes a quantized model's integer tensors (an `nn.requantize` or
    `nn.quantize_linear` runs on its vector unit)."""
    return any(i.opcode == "vec" and i.attrs["fn"] in ("nn.requantize", "nn.quantize_linear")
               for i in program.instructions)


def quantized_boundaries(path: str | os.PathLike, program: Program) -> list[str]:
    """The ONNX model's quantized tensors (in graph order) that the program also writes."""
    written = {name for instruction in program.instructions for name in instruction.dst}
    names = [node.output[0] for node in load_onnx(path).graph.node
             if node.op_type in QUANTIZED_PRODUCERS and node.domain in ("", "ai.onnx") and node.output]
    return [name for name in names if name in written]


def float_kernel_boundaries(path: str | os.PathLike) -> set[str]:
    """The QuantizeLinear outputs of the model whose float input onnxruntime computes with a float kernel
    (`FLOAT_KERNELS`: DequantizeLinear → ConvTranspose → QuantizeLinear). rcc computes those groups exactly
    (`nn.conv_transpose_integer`, `nn.rescale_quantize`); onnxruntime's float32 sum, rounded in MLAS's
    order, can land on the other side of a rounding boundary of y_scale, which only its own float kernel
    could reproduce."""
    graph = load_onnx(path).graph
    producers = {name: node for node in graph.node for name in node.output}
    return {node.output[0] for node in graph.node if node.op_type == "QuantizeLinear" and node.input
            and getattr(producers.get(node.input[0]), "op_type", None) in FLOAT_KERNELS}


def _differing(actual: np.ndarray, expected: np.ndarray) -> int:
    if actual.shape != expected.shape:
        return int(max(actual.size, expected.size))
    return int(np.count_nonzero(~((actual == expected) | (np.isnan(actual) & np.isnan(expected))
                                  if actual.dtype.kind == "f" else actual == expected)))


def bit_exact_summary(actual: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]],
                      outputs: list[str], boundaries: list[str],
                      expected_boundaries: list[dict[str, np.ndarray]],
                      float_kernels: set[str] = frozenset()) -> dict[str, Any]:
    """`bit_exact` (every output equal to onnxruntime's on the model as given, in every sample),
    `differing` (output elements that differ, over all samples, and per output), and the boundaries
    (`expected_boundaries`: onnxruntime on a copy that exposes them): how many were compared, whether all
    are equal, and the differing count of each that is not (the first in graph order is where the machine
    left onnxruntime).

    Exposing an int8 tensor stops onnxruntime's int8 → uint8 rewrite of its QuantizeLinear/
    DequantizeLinear pair, which can keep that group in float (DequantizeLinear → Conv → QuantizeLinear)
    in the copy; so the outputs are judged on the model as given and the boundaries are reported.

    `float_kernels` (`float_kernel_boundaries`) are boundaries onnxruntime computes in float: their differing
    counts are listed in `float_kernel_boundaries`, and `float_kernel_boundary` names the first differing
    boundary when it is one of them (the outputs then differ by onnxruntime's float rounding, not by rcc).
    """
    per_output = {name: sum(_differing(np.asarray(a[name]), np.asarray(e[name])) for a, e in zip(actual, expected))
                  for name in outputs if all(name in a for a in actual) and name in expected[0]}
    per_boundary = {name: sum(_differing(np.asarray(a[name]), np.asarray(e[name]))
                              for a, e in zip(actual, expected_boundaries)) for name in boundaries}
    differing_boundaries = {name: count for name, count in per_boundary.items() if count}
    first = next(iter(differing_boundaries), None)
    return {"bit_exact": not any(per_output.values()) and len(per_output) == len(outputs),
            "differing": sum(per_output.values()), "differing_per_output": per_output,
            "boundaries_compared": len(boundaries), "boundaries_bit_exact": not differing_boundaries,
            "differing_boundaries": differing_boundaries,
            "first_differing_boundary": first,
            "float_kernel_boundaries": {name: per_boundary[name] for name in boundaries if name in float_kernels},
            "float_kernel_boundary": first if first in float_kernels else None}
