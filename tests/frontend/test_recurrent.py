"""RNN, GRU and LSTM against onnxruntime: every attribute (direction, layout, activations with their alphas and
betas, clip, input_forget, linear_before_reset), biases, peepholes, initial states and per-entry sequence lengths,
in the interpreter and exported; on the machine in float and integer mode; and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from rcc.backends.program import load_program
from rcc.compiler.cli import main
from rcc.compiler.frontend import lower_model
from rcc.ir.errors import RccError, UnsupportedError
from rcc.ir import interpreter
from tests.frontend.test_index_ops import PROPERTY, SEEDS, check_model, floats, one_node, onnxruntime_run

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
FUNCTIONS = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
             "Elu", "Softsign", "Softplus"]


def recurrent_model(kind: str, seed: int, steps: int, batch: int, size: int, hidden: int, direction: str = "forward",
                    layout: int = 0, bias: bool = True, lengths: list[int] | None = None, initial: bool = False,
                    peepholes: bool = False, outputs: int = 3, **attrs) -> tuple[onnx.ModelProto, dict]:
    rng = np.random.default_rng(seed)
    directions = 2 if direction == "bidirectional" else 1
    gates = GATES[kind]
    x_shape = (batch, steps, size) if layout else (steps, batch, size)
    state_shape = (batch, directions, hidden) if layout else (directions, batch, hidden)
    fed = {"X": floats(seed, x_shape)}
    constants = {"W": (rng.standard_normal((directions, gates * hidden, size)) / np.sqrt(size)).astype(np.float32),
                 "R": (rng.standard_normal((directions, gates * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32),
                 "B": rng.standard_normal((directions, 2 * gates * hidden)).astype(np.float32) if bias else None,
                 "sequence_lens": np.array(lengths, np.int32) if lengths is not None else None}
    names = ["X", "W", "R", "B", "sequence_lens"]
    if initial:
        fed["initial_h"] = floats(seed + 1, state_shape)
        if kind == "LSTM":
            fed["initial_c"] = floats(seed + 2, state_shape)
    if peepholes:
        constants["P"] = rng.standard_normal((directions, 3 * hidden)).astype(np.float32)
    # the node reads its inputs in ONNX's order: X, W, R, B, sequence_lens, initial_h, initial_c, P
    inputs = names + (["initial_h"] + (["initial_c"] if kind == "LSTM" else []) if initial else []) + \
        (["", "", "P"] if peepholes and not initial else ["P"] if peepholes else [])
    inputs = [name if name in fed or constants.get(name) is not None else "" for name in inputs]
    while not inputs[-1]:
        inputs.pop()
    model = one_node(kind, {"X": fed["X"]}, {}, outputs=min(outputs, 3 if kind == "LSTM" else 2), opset=22,
                     hidden_size=hidden, direction=direction, **({"layout": layout} if layout else {}), **attrs)
    node = model.graph.node[0]
    del node.input[:]
    node.input.extend(inputs)
    for name, array in fed.items():
        if name != "X":
            model.graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, array.shape))
    model.graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in constants.items() if a is not None)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output   # shapes, for rcc's CLI
    del model.graph.output[:]
    model.graph.output.extend(inferred)
    return model, fed


def check_recurrent(model: onnx.ModelProto, fed: dict[str, np.ndarray]) -> None:
    """The interpreter and the exported model against onnxruntime, and the IR text round trip (`check_model`), to
    1e-5 of the output's largest magnitude: onnxruntime's GEMMs (MLAS, fused multiply-adds) sum in another order
    than numpy's BLAS, and a state that is a difference of large terms (exploding Relu or Affine gates) keeps that
    rounding at the terms' scale, not its own."""
    expected = onnxruntime_run(model, fed)
    scale = max([1.0] + [float(np.abs(a[np.isfinite(a)]).max(initial=0)) for a in expected.values()])
    check_model(model, fed, rtol=1e-5, atol=1e-5 * scale)


def activation_attrs(kind: str, directions: int, data: st.DataObject) -> dict:
    count = {"RNN": 1, "GRU": 2, "LSTM": 3}[kind] * directions
    if not data.draw(st.booleans()):
        return {}
    names = data.draw(st.lists(st.sampled_from(FUNCTIONS), min_size=count, max_size=count))
    alphas = data.draw(st.lists(st.floats(0.125, 2.0, width=32), max_size=count))
    betas = data.draw(st.lists(st.floats(0.125, 2.0, width=32), max_size=count))
    return {"activations": names, **({"activation_alpha": alphas} if alphas else {}),
            **({"activation_beta": betas} if betas else {})}


@PROPERTY
@given(kind=st.sampled_from(sorted(GATES)), direction=st.sampled_from(["forward", "reverse", "bidirectional"]),
       layout=st.integers(0, 1), steps=st.integers(1, 5), batch=st.integers(1, 3), bias=st.booleans(),
       initial=st.booleans(), clip=st.sampled_from([None, 0.5, 3.0]), data=st.data(), seed=SEEDS)
def test_recurrent_layers_match_onnxruntime(kind: str, direction: str, layout: int, steps: int, batch: int,
                                            bias: bool, initial: bool, clip: float | None, data: st.DataObject,
                                            seed: int) -> None:
    attrs = activation_attrs(kind, 2 if direction == "bidirectional" else 1, data)
    if clip is not None:
        attrs["clip"] = clip
    lengths = data.draw(st.none() | st.lists(st.integers(0, steps), min_size=batch, max_size=batch))
    if kind == "GRU":
        attrs["linear_before_reset"] = data.draw(st.integers(0, 1))
    peepholes = kind == "LSTM" and data.draw(st.booleans())
    if kind == "LSTM":
        attrs["input_forget"] = data.draw(st.integers(0, 1))
    model, fed = recurrent_model(kind, seed % 2**31, steps, batch, 3, 4, direction, layout, bias, lengths,
                                 initial, peepholes, **attrs)
    if not layout:
        # states that overflow to inf and NaN take onnxruntime's bias-and-clip paths, which rcc does not model
        # (rules_recurrent.py, "Not matched")
        assume(all(np.isfinite(a).all() for a in onnxruntime_run(model, fed).values()))
        check_recurrent(model, fed)
        return
    # onnxruntime has no batch-first kernels (layout 1): its run of the same layer sequence-first, transposed
    reference, _ = recurrent_model(kind, seed % 2**31, steps, batch, 3, 4, direction, 0, bias, lengths,
                                   initial, peepholes, **attrs)
    expected = onnxruntime_run(reference, {name: np.swapaxes(array, 0, 1) for name, array in fed.items()})
    assume(all(np.isfinite(a).all() for a in expected.values()))
    actual = interpreter.run(lower_model(model, "batch-first"), fed)
    scale = max([1.0] + [float(np.abs(a[np.isfinite(a)]).max(initial=0)) for a in expected.values()])
    for name, transposed in (("y0", (2, 0, 1, 3)), ("y1", (1, 0, 2)), ("y2", (1, 0, 2))):
        if name in expected:
            np.testing.assert_allclose(actual[name], expected[name].transpose(transposed), rtol=1e-5,
                                       atol=1e-5 * scale)


def test_only_the_read_outputs_are_built() -> None:
    model, fed = recurrent_model("LSTM", 0, 3, 2, 3, 4, outputs=3)
    model.graph.node[0].output[0] = ""           # Y not asked for
    del model.graph.output[0]
    check_recurrent(model, fed)


def test_states_past_a_short_sequence_are_held_and_its_outputs_zero() -> None:
    model, fed = recurrent_model("GRU", 3, 4, 3, 3, 4, "bidirectional", lengths=[4, 1, 2], initial=True)
    check_recurrent(model, fed)


@pytest.mark.parametrize("kind", sorted(GATES))
def test_recurrent_layers_verify_on_the_machine(kind: str, tmp_path: Path) -> None:
    """The input projection is one crossbar layer per direction, each step's recurrent product one more. Integer
    mode calibrates on the samples it is verified on: with 24 input values per sample, a held-out sample's
    outlier beyond the calibrated range is clipped (one such value costs the projection 11% rel L2), which
    measures the calibration data, not the lowering."""
    model, fed = recurrent_model(kind, 1, 3, 1, 8, 16, "bidirectional", initial=True,
                                 peepholes=kind == "LSTM", lengths=[3])
    path, samples = tmp_path / f"{kind}.onnx", tmp_path / "samples.npz"
    onnx.save(model, path)
    rng = np.random.default_rng(7)
    np.savez(samples, **{name: rng.standard_normal((4, *array.shape)).astype(np.float32) for name, array in fed.items()})
    for precision in ("float", "int"):
        output = tmp_path / f"{kind}.{precision}.rccp"
        assert main([str(path), "--precision", precision, "--verify", "--inputs", str(samples), "--calibrate",
                     str(samples), "-q", "-o", str(output)]) == 0
        mvms = sum(i.opcode == "mvm" for i in load_program(output).instructions)
        # per direction: W, and R at every step (GRU's reset splits R in two)
        assert mvms == 2 * (1 + 3 * (2 if kind == "GRU" else 1)), mvms


def test_computed_weights_are_refused_naming_the_input() -> None:
    model, _ = recurrent_model("RNN", 0, 2, 1, 3, 4, bias=False)
    weights = model.graph.initializer[0]
    model.graph.initializer.remove(weights)
    model.graph.input.append(helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, list(weights.dims)))
    with pytest.raises(UnsupportedError, match="input W .* must be a compile-time constant"):
        lower_model(model, "rnn")


@pytest.mark.parametrize("attrs, message", [
    ({"activations": ["Tanh", "Tanh", "Tanh"]}, "activations lists 3 functions; GRU with 1 direction"),
    ({"activations": ["Sigmoid", "Gelu"]}, "activation 'Gelu' is not one of"),
    ({"direction": "sideways"}, "direction 'sideways'"),
    ({"clip": -1.0}, r"clip=-1.0 is not positive \(onnxruntime refuses it for GRU and LSTM\)"),
])
def test_bad_attributes_are_one_line_errors(attrs: dict, message: str) -> None:
    direction = attrs.pop("direction", "forward")
    model, _ = recurrent_model("GRU", 0, 2, 1, 3, 4, **attrs)
    [attribute] = [a for a in model.graph.node[0].attribute if a.name == "direction"]
    attribute.s = direction.encode()
    with pytest.raises(RccError, match=message):
        lower_model(model, "gru")


def test_sequence_lengths_outside_the_sequence_and_empty_sequences_are_refused() -> None:
    model, _ = recurrent_model("LSTM", 0, 2, 2, 3, 4, lengths=[2, 3])
    with pytest.raises(RccError, match=r"sequence_lens \[2, 3\] outside \[0, 2\]"):
        lower_model(model, "lstm")
    model, _ = recurrent_model("RNN", 0, 0, 1, 3, 4)
    with pytest.raises(UnsupportedError, match=r"X of shape \[0, 1, 3\]: an empty sequence"):
        lower_model(model, "rnn")


@pytest.mark.parametrize("clip", [0.0, -1.0])
def test_rnn_clip_of_zero_clips_to_zero_and_a_negative_one_does_not_clip(clip: float) -> None:
    """As onnxruntime's RNN has it (its GRU and LSTM refuse such a clip, as rcc does)."""
    model, fed = recurrent_model("RNN", 0, 3, 2, 3, 4, clip=clip)
    check_recurrent(model, fed)


def test_an_empty_entry_ends_with_zero_states_whatever_its_initial_ones() -> None:
    model, fed = recurrent_model("LSTM", 5, 3, 3, 3, 4, "bidirectional", lengths=[3, 0, 1], initial=True)
    check_recurrent(model, fed)
