"""Running a program's host part: the ONNX model after its first data-dependent node, on onnxruntime.

    host = HostPart(program)                           # None-safe: HostPart.of(program) is None without one
    outputs = host.finish(machine_outputs, inputs)     # the whole model's outputs, in the model's order

The machine part's outputs and the model's inputs feed the host model (`program.host["inputs"]`); the
model's outputs come from the host where it computes them, else from the machine part.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rcc.backends.program import Program, ProgramError


class HostPart:
    """An onnxruntime session of one program's host model, checked against the program's `host` record."""

    def __init__(self, program: Program) -> None:
        assert program.host is not None and program.host_model is not None
        self.info = program.host
        self.machine_outputs = list(program.outputs)
        where = f"program {program.name!r}: host model"
        import onnx  # only a program with a host part pays for these (rcc run starts without them)
        import onnxruntime

        try:
            model = onnx.load_from_string(program.host_model)
            onnx.checker.check_model(model)
            self.session = onnxruntime.InferenceSession(model.SerializeToString(),
                                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # onnx and onnxruntime raise many types for a malformed model
            raise ProgramError(f"{where} cannot be loaded ({err.__class__.__name__}: "
                               f"{' '.join(str(err).split())[:160]})") from None
        self.nms_iou = nms_iou_threshold(model)
        names = [value.name for value in self.session.get_inputs()]
        outputs = [value.name for value in self.session.get_outputs()]
        if sorted(names) != sorted(self.info["inputs"]) or outputs != list(self.info["outputs"]):
            raise ProgramError(f"{where} reads {names} and writes {outputs}, not what the program states")

    @property
    def handed_over(self) -> list[str]:
        """The tensors the machine part computes and hands to the host (the host's other inputs are the
        model's own inputs)."""
        return [name for name in self.info["inputs"] if name in self.machine_outputs]

    @classmethod
    def of(cls, program: Program) -> HostPart | None:
        return cls(program) if program.host is not None else None

    def finish(self, machine_outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs from the machine part's outputs and the model's inputs."""
        feeds = {name: machine_outputs[name] if name in machine_outputs else inputs[name]
                 for name in self.info["inputs"]}
        results = dict(zip(self.info["outputs"], self.session.run(self.info["outputs"], feeds)))
        return {name: results[name] if name in results else machine_outputs[name]
                for name in self.info["final_outputs"]}


def nms_iou_threshold(model: Any) -> float | None:
    """The IoU threshold of the host model's NonMaxSuppression nodes (in any subgraph: torchvision's batched
    NMS sits in an If), when they share one constant threshold; else None."""
    from onnx import numpy_helper

    graphs, index = [model.graph], 0
    while index < len(graphs):  # the graph and every subgraph of If/Loop/Scan
        graphs += [attr.g for node in graphs[index].node for attr in node.attribute if attr.g.node]
        graphs += [sub for node in graphs[index].node for attr in node.attribute for sub in attr.graphs]
        index += 1
    constants = {init.name: init for graph in graphs for init in graph.initializer}
    constants.update((node.output[0], node.attribute[0].t) for graph in graphs for node in graph.node
                     if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value")
    names = {node.input[3] if len(node.input) > 3 else "" for graph in graphs for node in graph.node
             if node.op_type == "NonMaxSuppression"}
    if len(names) != 1 or not names <= constants.keys():
        return None
    return float(numpy_helper.to_array(constants[names.pop()]).reshape(-1)[0])
