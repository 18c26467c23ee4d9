"""Lowering of ONNX's recurrent layers RNN, GRU and LSTM, unrolled over their (static) sequence length.

Per direction, the input projection of every step, X·Wᵀ, is one matmul over all T·B rows: one
crossbar layer that each step's vectors pass through. Each step's recurrent product H·Rᵀ is its own matmul of one constant Rᵀ (the
report's layers are the node's outputs, so usually one layer holds the projection and every step), so `lower-to-xbar` maps R's arrays once and every step reads them in
turn (time-multiplexed: the steps share R's arrays, their reads and conversions are counted per step). The gates, peepholes, clip, activations and state updates run on the vector
unit, adding in onnxruntime's order (RNN: projection + biases, then the recurrent product; GRU and LSTM:
projection + recurrent product, then peephole, then biases; `_biases`).

`sequence_lens` must be known at compile time. A batch entry's steps past its length leave its state as it was
and write zeros to Y (an entry of length 0 ends with zero states, as in onnxruntime, whatever its initial ones);
a reverse direction reads each entry's own steps backwards from its last one. Activation
names, alphas and betas are read as onnxruntime reads them (an alpha or beta is consumed only by a function
that takes one; absent, LeakyRelu, HardSigmoid and Elu take their defaults and the others 0).

Not matched: NaN inside the layer. onnxruntime's GRU and LSTM kernels add the bias and clip each gate input in one
step with std::min/std::max (the clip bound is FLT_MAX when `clip` is absent), which turns a NaN gate input into the
bound when the node has a bias (a NaN in X then gives finite states: LSTM outputs tanh(1)), and their Relu gates
give 0 or the bound for NaN depending on the gate; rcc propagates NaN, as onnxruntime does without a bias. Only NaN
inputs and states that overflow (exploding Relu, Softplus or Affine gates) reach these paths; modelling them would
add two vector-unit ops to every gate of every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.core import Value

_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}

# activation → (takes alpha, takes beta), and the defaults onnxruntime gives an alpha or beta not in the lists
_TAKES = {"affine": (True, True), "relu": (False, False), "leakyrelu": (True, False), "thresholdedrelu": (True, False),
          "tanh": (False, False), "scaledtanh": (True, True), "sigmoid": (False, False), "hardsigmoid": (True, True),
          "elu": (True, False), "softsign": (False, False), "softplus": (False, False)}
_DEFAULTS = {"leakyrelu": (0.01, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0)}


@dataclass(frozen=True)
class Activation:
    name: str      # lower case, a key of _TAKES
    alpha: float
    beta: float


def activations(ctx: LowerContext, directions: int, kind: str) -> list[list[Activation]]:
    """Each direction's activation functions (f; f, g; f, g, h) of a `kind` (RNN, GRU, LSTM), with their alphas and
    betas."""
    count = len(_DEFAULT_ACTIVATIONS[kind])
    names = list(ctx.attr("activations", []) or _DEFAULT_ACTIVATIONS[kind] * directions)
    if kind == "RNN" and len(names) == 2 and directions == 1:
        names = names[:1]   # ONNX once listed RNN's default as (Tanh, Tanh); onnxruntime takes the first
    if len(names) != count * directions:
        raise ctx.error(f"activations lists {len(names)} functions; {kind} with {directions} "
                        f"direction(s) takes {count * directions}")
    alphas, betas = iter(ctx.attr("activation_alpha", []) or []), iter(ctx.attr("activation_beta", []) or [])
    parsed = []
    for name in names:
        key = name.lower()
        if key not in _TAKES:
            raise ctx.error(f"activation {name!r} is not one of Affine, Relu, LeakyRelu, ThresholdedRelu, Tanh, "
                            f"ScaledTanh, Sigmoid, HardSigmoid, Elu, Softsign, Softplus")
        takes_alpha, takes_beta = _TAKES[key]
        default_alpha, default_beta = _DEFAULTS.get(key, (0.0, 0.0))
        parsed.append(Activation(key, float(next(alphas, default_alpha)) if takes_alpha else 0.0,
                                 float(next(betas, default_beta)) if takes_beta else 0.0))
    return [parsed[d * count:(d + 1) * count] for d in range(directions)]


class WeightReader(Protocol):
    """Where a recurrent node's W and R come from when they are not LSTM's float inputs 1 and 2 (DynamicQuantizeLSTM's
    int8 matrices, `rules_quant_lstm.py`), and how a state or input is multiplied by them."""

    kind: str

    def matrices(self) -> tuple[np.ndarray, np.ndarray]: ...

    def product(self, rec: "Recurrence", h: Value, suffix: str) -> Value: ...


class Recurrence:
    """One recurrent node being unrolled: its operands, and the ops every step is built from."""

    def __init__(self, ctx: LowerContext, weights: WeightReader | None = None) -> None:
        self.ctx, self.kind = ctx, ctx.node.op_type if weights is None else weights.kind
        self.name = ctx.node.output[0] or ctx.node.output[1] or ctx.node.name
        self.layout = ctx.flag("layout", 0)
        x = ctx.input(0)
        if x.type.rank != 3 or x.type.dtype != "f32":
            raise ctx.error(f"X must be f32[seq_length, batch, input_size], got {x.type}")
        self.x = self.op("nn.transpose", [x], {"perm": (1, 0, 2)}, "x") if self.layout else x
        self.steps, self.batch, size = self.x.type.shape
        if self.steps == 0 or self.batch == 0:
            raise ctx.unsupported(f"X of shape {list(x.type.shape)}: an empty sequence or batch")
        direction = ctx.attr("direction", "forward")
        if direction not in _DIRECTIONS:
            raise ctx.error(f"direction {direction!r} is not forward, reverse or bidirectional")
        self.direction, self.directions = direction, _DIRECTIONS[direction]
        gates = _GATES[self.kind]
        self.weights = weights
        self.w, self.r = (ctx.constant(1, "W"), ctx.constant(2, "R")) if weights is None else weights.matrices()
        self.transposed: dict[str, Value] = {}   # the recurrent matrices' transposes, by name, made once
        self.hidden = int(ctx.attr("hidden_size", self.r.shape[-1] if self.r.ndim == 3 else 0))
        expected = {"W": (self.directions, gates * self.hidden, size),
                    "R": (self.directions, gates * self.hidden, self.hidden)}
        for what, array in (("W", self.w), ("R", self.r)):
            if array.shape != expected[what]:
                raise ctx.error(f"{what} has shape {list(array.shape)}; expected {list(expected[what])}")
        bias = ctx.optional_constant(3, "B")
        if bias is not None and bias.shape != (self.directions, 2 * gates * self.hidden):
            raise ctx.error(f"B has shape {list(bias.shape)}; expected {[self.directions, 2 * gates * self.hidden]}")
        self.bias = bias
        self.lengths = self._lengths()
        self.clip = ctx.attr("clip")
        if self.clip is not None and self.kind == "RNN":   # onnxruntime's RNN: 0 clips to 0, below 0 does not clip
            self.clip = None if float(self.clip) < 0 else float(self.clip)
        elif self.clip is not None and not float(self.clip) > 0:
            raise ctx.error(f"clip={self.clip} is not positive (onnxruntime refuses it for GRU and LSTM)")
        self.functions = activations(ctx, self.directions, self.kind)
        self.linear_before_reset = self.kind == "GRU" and ctx.flag("linear_before_reset", 0)
        self.input_forget = self.kind == "LSTM" and ctx.flag("input_forget", 0)
        self.writes_sequence = bool(ctx.node.output[0]) if ctx.node.output else False

    def op(self, opname: str, operands: list[Value], attrs: dict | None = None, suffix: str = "") -> Value:
        return self.ctx.op(opname, operands, attrs, name=f"{self.name}.{suffix or opname[3:]}")

    def constant(self, suffix: str, data: np.ndarray) -> Value:
        return self.ctx.builder.constant(f"{self.name}.{suffix}", np.ascontiguousarray(data, dtype=np.float32))

    def _lengths(self) -> np.ndarray | None:
        """sequence_lens as integers when some entry is shorter than the sequence, else None."""
        lengths = self.ctx.optional_constant(4, "sequence_lens")
        if lengths is None:
            return None
        lengths = np.asarray(lengths).reshape(-1)
        if lengths.shape != (self.batch,) or lengths.dtype.kind not in "iu":
            raise self.ctx.error(f"sequence_lens must be {self.batch} integers, got {lengths.dtype} of shape "
                                 f"{list(lengths.shape)}")
        if lengths.min() < 0 or lengths.max() > self.steps:
            raise self.ctx.error(f"sequence_lens {lengths.tolist()} outside [0, {self.steps}]")
        return None if (lengths == self.steps).all() else lengths.astype(np.int64)

    def state(self, index: int, direction: int) -> Value | None:
        """Initial state input `index` (initial_h or initial_c) of one direction as [batch, hidden]; None if absent."""
        if not self.ctx.has_input(index):
            return None
        value = self.ctx.input(index)
        shape = (self.batch, self.directions, self.hidden) if self.layout else (self.directions, self.batch, self.hidden)
        if value.type.shape != shape:
            raise self.ctx.error(f"initial state #{index} has shape {list(value.type.shape)}; expected {list(shape)}")
        starts = (0, direction, 0) if self.layout else (direction, 0, 0)
        sizes = (self.batch, 1, self.hidden) if self.layout else (1, self.batch, self.hidden)
        part = self.op("nn.slice", [value], {"starts": starts, "steps": (1, 1, 1), "sizes": sizes}, f"state{index}.{direction}")
        return self.op("nn.reshape", [part], {"shape": (self.batch, self.hidden)}, f"state{index}.{direction}")

    # pieces of a step
    def columns(self, x: Value, gate: int, count: int = 1, suffix: str = "") -> Value:
        """Gates `gate` .. `gate + count − 1` of x [batch, gates·hidden]."""
        h = self.hidden
        return self.op("nn.slice", [x], {"starts": (0, gate * h), "steps": (1, 1), "sizes": (self.batch, count * h)},
                       suffix or f"gate{gate}")

    def activate(self, x: Value, function: Activation, clipped: bool = True) -> Value:
        """`function` of x; of x clipped to ±clip first when it is a gate's input (`clipped`; LSTM's h(C) is not)."""
        if self.clip is not None and clipped:
            x = self.op("nn.clip", [x], {"min": -float(self.clip), "max": float(self.clip)})
        name, alpha, beta = function.name, function.alpha, function.beta
        simple = {"relu": "nn.relu", "tanh": "nn.tanh", "sigmoid": "nn.sigmoid", "softsign": "nn.softsign"}
        if name in simple:
            return self.op(simple[name], [x])
        if name == "softplus":   # onnxruntime's recurrent softplus: log(1 + exp(x)) in float32 (inf past x ≈ 88.7)
            return self.op("nn.log", [self.op("nn.add", [self.op("nn.exp", [x]), self.scalar(1.0)])])
        if name in ("leakyrelu", "thresholdedrelu", "elu"):
            opname = {"leakyrelu": "nn.leaky_relu", "thresholdedrelu": "nn.thresholded_relu", "elu": "nn.elu"}[name]
            return self.op(opname, [x], {"alpha": alpha})
        if name == "hardsigmoid":
            return self.op("nn.hard_sigmoid", [x], {"alpha": alpha, "beta": beta})
        if name == "affine":
            return self.op("nn.add", [self.op("nn.mul", [x, self.scalar(alpha)]), self.scalar(beta)])
        inner = self.op("nn.tanh", [self.op("nn.mul", [x, self.scalar(beta)])])   # scaledtanh
        return self.op("nn.mul", [inner, self.scalar(alpha)])

    def scalar(self, number: float) -> Value:
        return self.constant("scalar", np.array(number))

    def add(self, x: Value, y: Value | None) -> Value:
        return x if y is None else self.op("nn.add", [x, y])

    def mul(self, x: Value, y: Value) -> Value:
        return self.op("nn.mul", [x, y])

    def product(self, h: Value | None, matrix: np.ndarray, suffix: str) -> Value | None:
        """h · matrixᵀ (a crossbar layer of its own, reading the one constant matrixᵀ named by `suffix` that
        every step reads); None for a zero state. With a `WeightReader` the reader multiplies by its own form
        of the matrix that `suffix` names (`matrix` is then that matrix as integers, unused here)."""
        if h is None:
            return None
        if self.weights is not None:
            return self.weights.product(self, h, suffix)
        if suffix not in self.transposed:
            self.transposed[suffix] = self.constant(suffix + ".T", matrix.T)
        return self.op("nn.matmul", [h, self.transposed[suffix]], suffix=suffix)

    def keep(self, step: int, new: Value, old: Value | None) -> Value:
        """`new` for the batch entries whose sequence has step `step`, `old` (or 0) for the others."""
        if self.lengths is None or (self.lengths > step).all():
            return new
        mask = self.ctx.builder.constant(f"{self.name}.valid{step}", (self.lengths > step).reshape(-1, 1))
        return self.op("nn.where", [mask, new, old if old is not None else self.constant("zero", np.zeros(1))])

    def stacked(self, states: list[Value], axis_length: int) -> Value:
        """[batch, hidden] values stacked on a new leading axis."""
        parts = [self.op("nn.reshape", [s], {"shape": (1, self.batch, self.hidden)}) for s in states]
        return parts[0] if axis_length == 1 else self.op("nn.concat", parts, {"axis": 0})


def _time_order(recurrence: Recurrence, reverse: bool) -> tuple[np.ndarray | None, list[int]]:
    """How a direction reads the input projection: (per-entry step index [T, B] for a gather, or None) and the
    order of its T rows of steps."""
    steps = recurrence.steps
    if not reverse:
        return None, list(range(steps))
    if recurrence.lengths is None:
        return None, list(range(steps - 1, -1, -1))
    index = np.array([[length - 1 - k if k < length else k for length in recurrence.lengths] for k in range(steps)])
    return index, list(range(steps))


def _biases(rec: Recurrence, d: int) -> dict[str, Value]:
    """Direction d's bias constants, as onnxruntime adds them: RNN's Wb + Rb with the input projection; per gate
    after the recurrent product (LSTM: i, o, f, c; GRU: zr, and h, whose Rbh goes inside r ⊙ (H·Rhᵀ + Rbh) when
    linear_before_reset)."""
    if rec.bias is None:
        return {}
    h, gates = rec.hidden, _GATES[rec.kind]
    both = rec.bias[d, :gates * h] + rec.bias[d, gates * h:]
    if rec.kind == "RNN":
        return {"projection": rec.constant(f"B{d}", both)}
    if rec.kind == "LSTM":
        return {f"gate{g}": rec.constant(f"B{d}.{g}", both[g * h:(g + 1) * h]) for g in range(4)}
    biases = {"zr": rec.constant(f"B{d}.zr", both[:2 * h])}
    if rec.linear_before_reset:
        biases["h"] = rec.constant(f"B{d}.h", rec.bias[d, 2 * h:3 * h])
        biases["Rh"] = rec.constant(f"B{d}.Rh", rec.bias[d, 5 * h:])
    else:
        biases["h"] = rec.constant(f"B{d}.h", both[2 * h:])
    return biases


def _direction(rec: Recurrence, d: int) -> tuple[list[Value], Value, Value | None]:
    """One direction unrolled: its hidden states in time order, its last hidden state and (LSTM) last cell state."""
    kind, h, ctx = rec.kind, rec.hidden, rec.ctx
    gates = _GATES[kind]
    reverse = rec.direction == "reverse" or d == 1
    biases = _biases(rec, d)
    flat = rec.op("nn.reshape", [rec.x], {"shape": (rec.steps * rec.batch, rec.x.type.shape[2])}, "rows")
    projected = rec.product(flat, rec.w[d], f"W{d}")
    projected = rec.add(projected, biases.get("projection"))
    index, order = _time_order(rec, reverse)
    if index is not None:   # each entry's own steps backwards
        cube = rec.op("nn.reshape", [projected], {"shape": (rec.steps, rec.batch, gates * h)})
        gather = np.broadcast_to(index[:, :, None], cube.type.shape).astype(np.int64)
        cube = rec.op("nn.gather_elements", [cube, ctx.builder.constant(f"{rec.name}.reversed", gather)], {"axis": 0})
        projected = rec.op("nn.reshape", [cube], {"shape": (rec.steps * rec.batch, gates * h)})
    hidden, cell = rec.state(5, d), rec.state(6, d) if kind == "LSTM" else None
    peepholes = ctx.optional_constant(7, "P") if kind == "LSTM" else None
    if peepholes is not None and peepholes.shape != (rec.directions, 3 * h):
        raise ctx.error(f"P has shape {list(peepholes.shape)}; expected {[rec.directions, 3 * h]}")
    step = {"RNN": _rnn_step, "GRU": _gru_step, "LSTM": _lstm_step}[kind]
    outputs: list[Value] = []
    for k, row in enumerate(order):
        x = rec.op("nn.slice", [projected], {"starts": (row * rec.batch, 0), "steps": (1, 1),
                                             "sizes": (rec.batch, gates * h)}, f"step{row}")
        # onnxruntime's quantized product reads the previous step's output row (zeros past a sequence's end) when
        # it writes Y, and the quantization range spans all rows: the same products, other codes
        read = outputs[-1] if rec.weights is not None and rec.writes_sequence and outputs else hidden
        new, new_cell = step(rec, x, hidden, cell, d, biases, peepholes, read)
        if kind == "LSTM":
            cell = rec.keep(k, new_cell, cell)
        outputs.append(rec.keep(k, new, None))
        hidden = rec.keep(k, new, hidden)
    if rec.lengths is not None and (rec.lengths == 0).any():   # onnxruntime: an empty entry's last states are 0
        hidden = rec.keep(0, hidden, None)
        cell = None if cell is None else rec.keep(0, cell, None)
    if index is not None:
        cube = rec.stacked(outputs, rec.steps)
        gather = np.broadcast_to(index[:, :, None], cube.type.shape).astype(np.int64)
        cube = rec.op("nn.gather_elements", [cube, ctx.builder.constant(f"{rec.name}.restored", gather)], {"axis": 0})
        valid = (np.arange(rec.steps)[:, None] < rec.lengths[None, :])[:, :, None]
        cube = rec.op("nn.where", [ctx.builder.constant(f"{rec.name}.valid", valid), cube, rec.constant("zero", np.zeros(1))])
        outputs = [rec.op("nn.reshape", [rec.op("nn.slice", [cube], {"starts": (t, 0, 0), "steps": (1, 1, 1),
                                                                       "sizes": (1, rec.batch, h)})],
                          {"shape": (rec.batch, h)}) for t in range(rec.steps)]
    elif reverse:
        outputs = outputs[::-1]
    return outputs, hidden, cell


def _rnn_step(rec: Recurrence, x: Value, hidden: Value | None, cell: None, d: int, biases: dict, peepholes: None,
              read: Value | None) -> tuple[Value, None]:
    return rec.activate(rec.add(x, rec.product(hidden, rec.r[d], f"R{d}")), rec.functions[d][0]), None


def _gru_step(rec: Recurrence, x: Value, hidden: Value | None, cell: None, d: int, biases: dict, peepholes: None,
              read: Value | None) -> tuple[Value, None]:
    h, r, f = rec.hidden, rec.r[d], rec.functions[d]
    if rec.linear_before_reset:   # H·Rᵀ for all three gates at once
        full = rec.product(hidden, r, f"R{d}")
        zr_product = None if full is None else rec.columns(full, 0, 2, "Rzr")
    else:
        full, zr_product = None, rec.product(hidden, r[:2 * h], f"Rzr{d}")
    update_reset = rec.add(rec.add(rec.columns(x, 0, 2), zr_product), biases.get("zr"))
    reset = rec.activate(rec.columns(update_reset, 1), f[0])
    if rec.linear_before_reset:
        inner = rec.add(None if full is None else rec.columns(full, 2), biases.get("Rh")) if full is not None \
            else biases.get("Rh")
        candidate = rec.columns(x, 2) if inner is None else rec.add(rec.columns(x, 2), rec.mul(reset, inner))
    else:
        candidate = rec.add(rec.columns(x, 2), None if hidden is None else
                            rec.product(rec.mul(reset, hidden), r[2 * h:], f"Rh{d}"))
    candidate = rec.activate(rec.add(candidate, biases.get("h")), f[1])
    update = rec.activate(rec.columns(update_reset, 0), f[0])
    kept = rec.mul(rec.op("nn.sub", [rec.scalar(1.0), update]), candidate)
    return (kept if hidden is None else rec.add(kept, rec.mul(update, hidden))), None


def _lstm_step(rec: Recurrence, x: Value, hidden: Value | None, cell: Value | None, d: int, biases: dict,
               peepholes: np.ndarray | None, read: Value | None) -> tuple[Value, Value]:
    """One step; `read` is the state the recurrent product reads (`hidden`, but for quantized weights)."""
    h, f = rec.hidden, rec.functions[d]
    pre = rec.add(x, rec.product(read, rec.r[d], f"R{d}"))   # gates i, o, f, c

    def gate(g: int, state: Value | None = None) -> Value:
        """Gate g's input: its part of the products, + its peephole · state, + its bias."""
        value = rec.columns(pre, g)
        if peepholes is not None and state is not None and g < 3:
            weights = rec.constant(f"P{d}.{g}", peepholes[d, g * h:(g + 1) * h])
            value = rec.add(value, rec.mul(state, weights))
        return rec.add(value, biases.get(f"gate{g}"))

    input_gate = rec.activate(gate(0, cell), f[0])
    forget_gate = rec.op("nn.sub", [rec.scalar(1.0), input_gate]) if rec.input_forget else \
        rec.activate(gate(2, cell), f[0])
    new_cell = rec.mul(input_gate, rec.activate(gate(3), f[1]))
    if cell is not None:
        new_cell = rec.add(rec.mul(cell, forget_gate), new_cell)
    output_gate = rec.activate(gate(1, new_cell), f[0])
    return rec.mul(output_gate, rec.activate(new_cell, f[2], clipped=False)), new_cell


@rule("RNN", "GRU", "LSTM")
def lower_recurrent(ctx: LowerContext, weights: WeightReader | None = None) -> None:
    rec = Recurrence(ctx, weights)
    results = [_direction(rec, d) for d in range(rec.directions)]
    outputs = list(ctx.node.output) + [""] * 3
    if outputs[0]:   # Y: [T, D, B, H] (layout 1: [B, T, D, H])
        per_direction = [rec.op("nn.reshape", [rec.stacked(states, rec.steps)],
                                {"shape": (rec.steps, 1, rec.batch, rec.hidden)}) for states, _, _ in results]
        y = per_direction[0] if rec.directions == 1 else rec.op("nn.concat", per_direction, {"axis": 1})
        ctx.bind(0, rec.op("nn.transpose", [y], {"perm": (2, 0, 1, 3)}) if rec.layout else y)
    for index, position in ((1, 1), (2, 2)):   # Y_h, Y_c: [D, B, H] (layout 1: [B, D, H])
        if not outputs[index] or (index == 2 and rec.kind != "LSTM"):
            continue
        last = rec.stacked([result[position] for result in results], rec.directions)
        ctx.bind(index, rec.op("nn.transpose", [last], {"perm": (1, 0, 2)}) if rec.layout else last)
