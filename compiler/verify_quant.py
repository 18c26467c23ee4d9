"""Bit-exact verification of quantized models: the machine's integer tensors at every quantized boundary and
its outputs against onnxruntime's, element for element.

    boundaries = quantized_boundaries("model_qdq.onnx", compiled.program)
    ...run both with `boundaries` exposed as extra outputs...
    summary = bit_exact_summary(machine_runs, onnxruntime_runs, outputs, boundaries)

A quantized boundary is an integer tensor of the ONNX model that the compiled program computes under
the same name: the output of a QuantizeLinear (also com.microsoft's, which 4-bit models use), QLinearConv,
QLinearMatMul, ConvInteger or MatMulInteger (what `fuse-qdq` and the quantization rules name their results
after). onnxruntime computes them with its default session options, where QDQ groups run as its integer
kernels; `nn.requantize` and the `nn.qlinear_*` ops reproduce those kernels, so with a lossless ADC every
element must be equal. Where onnxruntime keeps a group in float (`float_kernel_boundaries`, read from its
own optimized graph) rcc computes the exact value rounded once, and a value within float32 error of a
rounding tie can land on the other side in onnxruntime's float32 sum.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import onnx

from rcc.backends.program import Program
from rcc.compiler.frontend.loader import load_onnx
from rcc.compiler.frontend.registry import MS_DOMAIN
from rcc.compiler.frontend.opsets import model_for_onnxruntime

QUANTIZED_PRODUCERS = ("QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                       "MatMulInteger")
EXACT_FLOAT_OPS = frozenset({"DequantizeLinear", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity",
                             "Concat", "Split", "Slice", "Gather", "MaxPool", "NhwcMaxPool", "GlobalMaxPool",
                             "DepthToSpace", "SpaceToDepth", "Expand", "Tile"})


def is_quantized(program: Program) -> bool:
    """Whether the program computes a quantized model's integer tensors (an `nn.requantize` or
    `nn.quantize_linear` runs on its vector unit)."""
    return any(i.opcode == "vec" and i.attrs["fn"] in ("nn.requantize", "nn.quantize_linear")
               for i in program.instructions)


def dynamically_quantized(path: str | os.PathLike) -> bool:
    """Whether the model quantizes activations at run time (DynamicQuantizeLinear, onnxruntime's `quantize_dynamic`,
    or com.microsoft DynamicQuantizeMatMul):
    its integer layers sit between float kernels (the scales' products, the float ops it leaves in float) that rcc
    computes in float32 but not with MLAS's instructions, and each DynamicQuantizeLinear takes its range from one,
    so it is not held to bit exactness (driver.hold_to_one_step)."""
    quantizers = ("DynamicQuantizeLinear", "DynamicQuantizeMatMul")
    return any(node.op_type in quantizers for node in load_onnx(path).graph.node)


def quantized_boundaries(path: str | os.PathLike, program: Program) -> list[str]:
    """The ONNX model's quantized tensors (in graph order) that the program also writes."""
    written = {name for instruction in program.instructions for name in instruction.dst}
    names = [node.output[0] for node in load_onnx(path).graph.node if node.op_type in QUANTIZED_PRODUCERS
             and (node.domain in ("", "ai.onnx") or node.domain == MS_DOMAIN and node.op_type == "QuantizeLinear")
             and node.output]
    return [name for name in names if name in written]


def onnxruntime_optimized_graph(path: str | os.PathLike) -> onnx.GraphProto:
    """The graph onnxruntime runs for the model under the reference's session options (CPU; `verify.
    reference_options`), as it saves it through `SessionOptions.optimized_model_filepath`: QDQ groups it fused are
    its integer kernels there, the groups it left in float are still DequantizeLinear → float op → QuantizeLinear."""
    import onnxruntime

    from rcc.compiler.verify import reference_options

    with tempfile.TemporaryDirectory() as folder:
        options = reference_options()
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        onnxruntime.InferenceSession(model_for_onnxruntime(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath).graph


def float_kernel_boundaries(path: str | os.PathLike) -> dict[str, str]:
    """The QuantizeLinear outputs of the model whose float input onnxruntime computes with a float kernel,
    and that kernel's op type: in onnxruntime's optimized graph (`onnxruntime_optimized_graph`) the
    QuantizeLinear's input comes from an arithmetic op (`EXACT_FLOAT_OPS` only move or select values, so
    the integers they give are the same). rcc computes those groups exactly; onnxruntime's float32 sum,
    rounded in MLAS's order, can land on the other side of a rounding boundary of y_scale, which only its own
    float kernel could reproduce. Found there: ConvTranspose (no integer kernel); Conv and Gemm with 4-bit
    weights; Conv, Add and Mul whose int8 activations its int8 → uint8 rewrite converted on one side only;
    a linear Resize."""
    optimized = onnxruntime_optimized_graph(path)
    producers = {name: node for node in optimized.node for name in node.output}
    computed = {node.input[0]: producers[node.input[0]].op_type for node in optimized.node
                if node.op_type == "QuantizeLinear" and node.input and node.input[0] in producers
                and producers[node.input[0]].op_type not in EXACT_FLOAT_OPS}
    return {node.output[0]: computed[node.input[0]] for node in load_onnx(path).graph.node
            if node.op_type == "QuantizeLinear" and node.input and node.input[0] in computed}


def _steps_apart(actual: np.ndarray, expected: np.ndarray) -> int:
    """The largest |actual − expected| of two integer tensors of one shape; 2^31 otherwise when they differ."""
    if actual.shape != expected.shape or actual.dtype.kind not in "iu" or expected.dtype.kind not in "iu":
        return 0 if _differing(actual, expected) == 0 else 2 ** 31
    return int(np.abs(actual.astype(np.int64) - expected.astype(np.int64)).max(initial=0))


def _differing(actual: np.ndarray, expected: np.ndarray) -> int:
    if actual.shape != expected.shape:
        return int(max(actual.size, expected.size))
    return int(np.count_nonzero(~((actual == expected) | (np.isnan(actual) & np.isnan(expected))
                                  if actual.dtype.kind == "f" else actual == expected)))


def bit_exact_summary(actual: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]],
                      outputs: list[str], boundaries: list[str],
                      expected_boundaries: list[dict[str, np.ndarray]],
                      float_kernels: dict[str, str] | None = None) -> dict[str, Any]:
    """`bit_exact` (every output equal to onnxruntime's on the model as given, in every sample),
    `differing` (output elements that differ, over all samples, and per output), and the boundaries
    (`expected_boundaries`: onnxruntime on a copy that exposes them): how many were compared, whether all
    are equal, and the differing count of each that is not (the first in graph order is where the machine
    left onnxruntime).

    Exposing an int8 tensor stops onnxruntime's int8 → uint8 rewrite of its QuantizeLinear/
    DequantizeLinear pair, which can keep that group in float (DequantizeLinear → Conv → QuantizeLinear)
    in the copy; so the outputs are judged on the model as given and the boundaries are reported.

    `float_kernels` (`float_kernel_boundaries`) are boundaries onnxruntime computes in float: their differing
    counts are listed in `float_kernel_boundaries` and their kernels' op types in `float_kernels`, and
    `float_kernel_boundary` names the first differing boundary when it is one of them (the outputs then
    differ by onnxruntime's float rounding, not by rcc).
    """
    per_output = {name: sum(_differing(np.asarray(a[name]), np.asarray(e[name])) for a, e in zip(actual, expected))
                  for name in outputs if all(name in a for a in actual) and name in expected[0]}
    per_boundary = {name: sum(_differing(np.asarray(a[name]), np.asarray(e[name]))
                              for a, e in zip(actual, expected_boundaries)) for name in boundaries}
    codes = [name for name in boundaries if np.asarray(expected_boundaries[0][name]).dtype.itemsize <= 2]
    steps = {name: max(_steps_apart(np.asarray(a[name]), np.asarray(e[name]))
                       for a, e in zip(actual, expected_boundaries)) for name in codes}
    float_kernels = float_kernels or {}
    differing_boundaries = {name: count for name, count in per_boundary.items() if count}
    first = next(iter(differing_boundaries), None)
    return {"bit_exact": not any(per_output.values()) and len(per_output) == len(outputs),
            "differing": sum(per_output.values()), "differing_per_output": per_output,
            "boundaries_compared": len(boundaries), "boundaries_bit_exact": not differing_boundaries,
            "max_step": max(steps.values(), default=0),   # the largest difference of an 8- or 16-bit boundary's
            # codes (an int32 accumulator moves by a weight when one of its input codes moves by one)
            "first_step": steps.get(first, 0),   # that difference at the first differing boundary
            "wide_boundaries": sum(np.asarray(expected_boundaries[0][name]).dtype.itemsize == 2 for name in codes),
            "differing_boundaries": differing_boundaries,
            "first_differing_boundary": first,
            "float_kernel_boundaries": {name: per_boundary[name] for name in boundaries if name in float_kernels},
            "float_kernel_boundary": first if first in float_kernels else None,
            "float_kernels": {name: float_kernels[name] for name in boundaries if name in float_kernels}}
