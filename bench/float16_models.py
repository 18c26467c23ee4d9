#!/usr/bin/env python3
"""Float16 copies of ONNX models, to try rcc on float16 models as users export them (`model.half()`,
onnxconverter-common): every float32 initializer, graph input and output, value type, Constant and Cast
target becomes float16 (Resize scales stay float32, as ONNX requires); `NAME.inputs.npz` beside a model
is copied with its float32 arrays in float16. Then tabulate with `bench/try_models.py`:

    python bench/float16_models.py /work/exports --out /work/exports_f16
    python bench/try_models.py --dir /work/exports_f16 --out /work/exports_f16/table.txt

A float32 constant beyond float16's range is clamped to ±65504 (an attention mask's -3.4e38, as
onnxconverter-common clamps); a ConstantOfShape without a value gets a float16 zero; subgraphs (If, Loop) and
sparse initializers are left as they are, so a model with one may be invalid in float16: onnxruntime refuses those too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def float16_copy(source: Path, target: Path) -> Path:
    """`source` with its float32 weights, inputs, outputs, value types, constants and casts in float16."""
    model = onnx.load(str(source))
    graph = model.graph
    scales = {node.input[i] for node in graph.node if node.op_type in ("Resize", "Upsample")
              for i in (1, 2) if len(node.input) > i}
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in scales:
            half = _half(numpy_helper.to_array(tensor))
            graph.initializer[index].CopyFrom(numpy_helper.from_array(half, tensor.name))
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.FLOAT16
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and not any(attribute.name == "value" for attribute in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16))))
        for attribute in list(node.attribute):
            if node.op_type in ("Constant", "ConstantOfShape") and attribute.name == "value" and \
                    attribute.t.data_type == TensorProto.FLOAT:
                attribute.t.CopyFrom(numpy_helper.from_array(_half(numpy_helper.to_array(attribute.t))))
            if node.op_type == "Constant" and attribute.name in ("value_float", "value_floats"):
                value = np.array(attribute.f if attribute.name == "value_float" else list(attribute.floats))
                node.attribute.remove(attribute)
                node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(_half(value))))
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.FLOAT16
    onnx.save(model, str(target))
    return target


def _half(array: np.ndarray) -> np.ndarray:
    """float16, finite values clamped to its range (infinities and NaN kept)."""
    largest = float(np.finfo(np.float16).max)
    return np.where(np.isfinite(array), np.clip(array, -largest, largest), array).astype(np.float16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder of ONNX models (or one model)")
    parser.add_argument("--out", type=Path, required=True, help="the folder for the float16 copies")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    models = sorted(args.source.glob("*.onnx")) if args.source.is_dir() else [args.source]
    for path in models:
        float16_copy(path, args.out / path.name)
        inputs = path.with_suffix(".inputs.npz")
        if inputs.is_file():
            arrays = dict(np.load(inputs))
            np.savez(args.out / inputs.name, **{name: array.astype(np.float16) if array.dtype == np.float32
                                                else array for name, array in arrays.items()})
        print(f"{path.name} -> {args.out / path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
