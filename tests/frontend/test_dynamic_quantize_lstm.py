"""com.microsoft DynamicQuantizeLSTM against onnxruntime (on one thread: its kernel quantizes each thread's batch rows
on their own): directions, per-direction and per-column scales, int8 and uint8 weights, initial states, sequence
lengths and peepholes bit for bit in the interpreter; a model on the machine; the one-line refusals."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from rcc.ir.errors import RccError
from tests.frontend.test_index_ops import PROPERTY, SEEDS

OUTPUTS = ("Y", "Yh", "Yc")


def lstm_model(seed: int, directions: int = 1, per_column: bool = True, weights: type = np.int8, steps: int = 5,
               batch: int = 2, size: int = 6, hidden: int = 4, states: bool = True, lengths: list | None = None,
               peepholes: bool = False, outputs: tuple = OUTPUTS, weight_zero: int = 0
               ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    low, high = (-100, 100) if weights == np.int8 else (0, 255)
    w = rng.integers(low, high, (directions, size, 4 * hidden)).astype(weights)
    r = rng.integers(low, high, (directions, hidden, 4 * hidden)).astype(weights)
    shape = (directions, 4 * hidden) if per_column else (directions,)
    constants = {"W": w, "R": r, "B": (rng.standard_normal((directions, 8 * hidden)) * 0.1).astype(np.float32),
                 "ws": rng.uniform(0.002, 0.01, shape).astype(np.float32), "wz": np.full(shape, weight_zero, weights),
                 "rs": rng.uniform(0.002, 0.01, shape).astype(np.float32), "rz": np.zeros(shape, weights)}
    names = ["X", "W", "R", "B", "", "", "", "", "ws", "wz", "rs", "rz"]
    if lengths is not None:
        constants["lengths"], names[4] = np.array(lengths, np.int32), "lengths"
    if peepholes:
        constants["P"], names[7] = (rng.standard_normal((directions, 3 * hidden)) * 0.1).astype(np.float32), "P"
    feeds = {"X": rng.standard_normal((steps, batch, size)).astype(np.float32)}
    if states:
        names[5], names[6] = "h0", "c0"
        feeds.update(h0=rng.standard_normal((directions, batch, hidden)).astype(np.float32),
                     c0=rng.standard_normal((directions, batch, hidden)).astype(np.float32))
    node = helper.make_node("DynamicQuantizeLSTM", names, [n if n in outputs else "" for n in OUTPUTS], name="lstm",
                            domain="com.microsoft", hidden_size=hidden,
                            direction="bidirectional" if directions == 2 else "forward")
    shapes = {"Y": [steps, directions, batch, hidden], "Yh": [directions, batch, hidden], "Yc": [directions, batch, hidden]}
    graph = helper.make_graph([node], "dq_lstm",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in feeds.items()],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in outputs],
                              [numpy_helper.from_array(a, n) for n, a in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return model, feeds


def one_thread(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@PROPERTY
@given(seed=SEEDS, directions=st.sampled_from([1, 2]), per_column=st.booleans(),
       weights=st.sampled_from([np.int8, np.uint8]), batch=st.sampled_from([1, 2, 3]), states=st.booleans(),
       lengths=st.booleans(), peepholes=st.booleans(), writes_y=st.booleans())
def test_dynamic_quantize_lstm_matches_onnxruntime_bit_for_bit(seed, directions, per_column, weights, batch, states,
                                                               lengths, peepholes, writes_y) -> None:
    rng = np.random.default_rng(seed)
    sequence = [int(n) for n in rng.integers(1, 6, batch)] if lengths else None
    outputs = OUTPUTS if writes_y else ("Yh", "Yc")
    model, feeds = lstm_model(seed, directions, per_column, weights, batch=batch, states=states, lengths=sequence,
                              peepholes=peepholes, outputs=outputs)
    expected = one_thread(model, feeds)
    actual = interpreter.run(lower_model(model, "dq_lstm"), feeds)
    for name, reference in expected.items():
        np.testing.assert_array_equal(actual[name], reference, err_msg=name)


def test_the_kernel_result_depends_on_onnxruntime_threads_and_rcc_gives_one_threads() -> None:
    """Why the reference runs on one thread: with two, each thread's row quantizes on its own range."""
    model, feeds = lstm_model(0, batch=2)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    two = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    actual = interpreter.run(lower_model(model, "dq_lstm"), feeds)
    assert not np.array_equal(two.run(["Y"], feeds)[0], actual["Y"])
    np.testing.assert_array_equal(one_thread(model, feeds)["Y"], actual["Y"])


@pytest.mark.parametrize("precision", ["int", "float"])
def test_a_dynamic_quantize_lstm_verifies_on_the_machine(tmp_path, precision: str) -> None:
    model, feeds = lstm_model(3, directions=2, batch=2, lengths=[5, 3], peepholes=True)
    path = tmp_path / "dq_lstm.onnx"
    onnx.save(model, path)
    compiled = compile_model(path, precision=precision)
    result = verify_compiled(path, compiled, inputs=feeds)
    assert result.passed, result.to_json() if hasattr(result, "to_json") else result


def test_a_non_zero_weight_zero_point_is_one_line() -> None:
    model, _ = lstm_model(0, weight_zero=3)
    with pytest.raises(RccError, match=r"node 'lstm' \(DynamicQuantizeLSTM\): W_zero_point must be zero \(onnxruntime "
                                        r"refuses others\)"):
        lower_model(model, "dq_lstm.onnx")


def test_a_layout_attribute_is_one_line_as_onnxruntime_refuses_it() -> None:
    model, _ = lstm_model(0)
    model.graph.node[0].attribute.append(helper.make_attribute("layout", 0))
    with pytest.raises(RccError, match=r"node 'lstm' \(DynamicQuantizeLSTM\): DynamicQuantizeLSTM has no layout"):
        lower_model(model, "dq_lstm.onnx")
