"""Lowering of the attention ops onnxruntime's transformer optimizer fuses BERT- and GPT-style models into:
com.microsoft Attention, MultiHeadAttention and EmbedLayerNormalization, each as onnxruntime 1.32's CPU kernel
computes it. The projections with constant weights stay `nn.matmul`s against constants (crossbars); Q·Kᵀ and
softmax·V are matmuls of two activations, which `place-attention` puts where the target says.

- Attention: input · weights (+ bias) split into Q, K and V (`qkv_hidden_sizes`, else three equal parts), heads
  split, softmax(scale · Q·Kᵀ + attention_bias + mask) · V with the heads merged. `past` (2, B, N, P, H) is
  joined in front of K and V and `present` is the joined pair.
- MultiHeadAttention: query, key and value (B, S|L, D) (+ bias), or key and value already split into heads
  (B, N, L, H), whose bias then only shifts the query; past_key/past_value joined in front, present_key,
  present_value and qk (the scores before softmax) as outputs.
- EmbedLayerNormalization: word + position (+ segment) embeddings, LayerNormalization over the hidden axis;
  mask_index is the count of 1s in each row of the mask (zeros without one), embedding_sum the sum itself.

Masks, as the CPU kernel reads them: a masked score gets mask_filter_value (-10000 unless set) added; int32
end positions [B] (and start positions [2B] for Attention; the first B of [3B+2] are end positions), 0/1 masks
[B, T] and [B, S, T] (a value > 0 attends); Attention ignores a [B|1, 1] mask. unidirectional sets each score of
key t > P + s to float32's lowest (the kernel leaves the last query row whole, which matters only when S < T − P).
Refused in one line: 4-D masks and packed QKV/KV (the CPU kernel does not run them), a past without its present
outputs (Attention's kernel refuses it; MultiHeadAttention's then reads past the end of its buffers), shared
past/present buffers, past_sequence_length, cache_indirection, rotary embeddings, other element types than float32.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import MS_DOMAIN, rule
from rcc.compiler.frontend.rules_index import slice_value
from rcc.ir.core import Value

_LOWEST = np.finfo(np.float32).min   # what the kernel writes over a causally masked score
_MASK_FILTER_VALUE = -10000.0


def _name(ctx: LowerContext, suffix: str) -> str:
    return f"{ctx.node.output[0]}.{suffix}"


def _scalar(ctx: LowerContext, suffix: str, value: float, dtype: type = np.float32) -> Value:
    return ctx.builder.constant(_name(ctx, suffix), np.array(value, dtype))


def _used(ctx: LowerContext, index: int) -> bool:
    return len(ctx.node.output) > index and ctx.node.output[index] in ctx.used


def _named_output(ctx: LowerContext, index: int) -> bool:
    """Whether the node names output `index` (onnxruntime's kernel then writes it, read or not)."""
    return len(ctx.node.output) > index and bool(ctx.node.output[index])


def _refuse_inputs(ctx: LowerContext, inputs: dict[int, str]) -> None:
    for index, what in inputs.items():
        if ctx.has_input(index):
            raise ctx.unsupported(f"{ctx.node.op_type} with {what}")


def _float32(ctx: LowerContext, value: Value, what: str) -> Value:
    if value.type.dtype != "f32":
        raise ctx.unsupported(f"{ctx.node.op_type} on {what} of {value.type}: rcc lowers it in float32 only")
    return value


def _heads(ctx: LowerContext, x: Value, num_heads: int, what: str) -> Value:
    """[B, L, N·H] → [B, N, L, H]."""
    batch, length, width = x.type.shape
    if width % num_heads:
        raise ctx.error(f"{what} hidden size {width} is not a multiple of num_heads {num_heads}")
    split = ctx.op("nn.reshape", [x], {"shape": (batch, length, num_heads, width // num_heads)},
                   name=_name(ctx, f"{what}.split"))
    return ctx.op("nn.transpose", [split], {"perm": (0, 2, 1, 3)}, name=_name(ctx, f"{what}.heads"))


def _scale(ctx: LowerContext, head_size: int) -> float:
    scale = float(ctx.attr("scale", 0.0))
    return scale if scale != 0.0 else float(np.float32(1.0) / np.sqrt(np.float32(head_size)))


def _padding(ctx: LowerContext, index: int, batch: int, queries: int, total: int, forms: tuple[str, ...]
             ) -> Value | None:
    """The mask at input `index` as the scores' addend (0 or mask_filter_value), shaped [B, 1, S|1, T]; None for a
    mask that masks nothing. `forms` names the 1-D forms the op takes besides [B]: "2B", "3B+2", and "dummy" the
    [B|1, 1] mask Attention ignores."""
    mask = ctx.input(index)
    shape = mask.type.shape
    if mask.type.dtype != "i32":
        raise ctx.error(f"mask {ctx.node.input[index]!r} is {mask.type}; the op takes int32")
    filler = float(ctx.attr("mask_filter_value", _MASK_FILTER_VALUE))
    fill, zero = _scalar(ctx, "mask_filter_value", filler), _scalar(ctx, "mask_zero", 0.0)
    if shape in ((batch, total), (batch, queries, total)):
        attends = ctx.op("nn.greater", [mask, _scalar(ctx, "mask_zero_i32", 0, np.int32)], name=_name(ctx, "attends"))
        addend = ctx.op("nn.where", [attends, zero, fill], name=_name(ctx, "padding"))
        return ctx.op("nn.reshape", [addend], {"shape": (batch, 1, shape[1] if len(shape) == 3 else 1, total)},
                      name=_name(ctx, "padding.scores"))
    if "dummy" in forms and len(shape) == 2 and shape[1] == 1 and shape[0] in (1, batch):
        return None   # the same addend for every key: no mask at all
    lengths = {batch: "B", 2 * batch: "2B", 3 * batch + 2: "3B+2"}
    if len(shape) != 1 or lengths.get(shape[0]) not in ("B", *forms):
        accepted = ["[B]", *(f"[{form}]" for form in forms if form != "dummy"), "[B, T]", "[B, S, T]",
                    *(["[B|1, 1]"] if "dummy" in forms else [])]
        raise ctx.unsupported(f"{ctx.node.op_type} mask of shape {list(shape)} with B={batch}, S={queries}, "
                              f"T={total}; rcc lowers {', '.join(accepted)}, as onnxruntime's CPU kernel reads them")
    positions = ctx.builder.constant(_name(ctx, "key_positions"), np.arange(total, dtype=np.int32)[None, :])

    def bound(start: int, suffix: str) -> Value:
        return slice_value(ctx, mask, {0: (start, 1, batch)}, name=_name(ctx, suffix)) if shape[0] != batch else mask

    ends = ctx.op("nn.reshape", [bound(0, "ends")], {"shape": (batch, 1)}, name=_name(ctx, "ends.rows"))
    masked = ctx.op("nn.greater_equal", [positions, ends], name=_name(ctx, "past_end"))
    if shape[0] == 2 * batch:   # left padding: keys before each start are masked too
        starts = ctx.op("nn.reshape", [bound(batch, "starts")], {"shape": (batch, 1)}, name=_name(ctx, "starts.rows"))
        before = ctx.op("nn.less", [positions, starts], name=_name(ctx, "before_start"))
        masked = ctx.op("nn.logical_or", [masked, before], name=_name(ctx, "outside"))
    addend = ctx.op("nn.where", [masked, fill, zero], name=_name(ctx, "padding"))
    return ctx.op("nn.reshape", [addend], {"shape": (batch, 1, 1, total)}, name=_name(ctx, "padding.scores"))


def _attention_bias(ctx: LowerContext, index: int, batch: int, num_heads: int, queries: int, total: int
                    ) -> Value | None:
    if not ctx.has_input(index):
        return None
    bias = _float32(ctx, ctx.input(index), "attention_bias")
    shape = bias.type.shape
    if len(shape) != 4 or shape[0] not in (1, batch) or shape[1] not in (1, num_heads) or shape[2:] != (queries, total):
        raise ctx.unsupported(f"{ctx.node.op_type} attention_bias of shape {list(shape)}; onnxruntime takes "
                              f"[B|1, N|1, S, T] = [{batch}|1, {num_heads}|1, {queries}, {total}]")
    return bias


def _addend(ctx: LowerContext, padding: Value | None, bias: Value | None, queries: int, total: int,
            past: int) -> Value | None:
    """What the kernel adds to the scaled scores: attention_bias + mask, where the causal mask overwrites the
    padding mask with float32's lowest at each key t > past + s of query row s (the last row excepted)."""
    mask = padding
    if ctx.flag("unidirectional", 0) and queries > 1:
        rows, keys = np.arange(queries)[:, None], np.arange(total)[None, :]
        attends = (keys <= past + rows) | (rows == queries - 1)
        if padding is None:
            mask = ctx.builder.constant(_name(ctx, "causal"), np.where(attends, 0, _LOWEST).astype(np.float32))
        else:
            keep = ctx.builder.constant(_name(ctx, "causal_keep"), attends)
            mask = ctx.op("nn.where", [keep, padding, _scalar(ctx, "lowest", _LOWEST)], name=_name(ctx, "causal"))
    if bias is None or mask is None:
        return bias if mask is None else mask
    return ctx.op("nn.add", [bias, mask], name=_name(ctx, "bias_and_mask"))


def _attend(ctx: LowerContext, queries: Value, keys: Value, values: Value, scale: float,
            addend: Value | None) -> tuple[Value, Value]:
    """softmax(scale · Q·Kᵀ + addend) · V for heads [B, N, S|T, H]: the merged heads [B, S, N·Hv], and the
    scores before softmax."""
    transposed = ctx.op("nn.transpose", [keys], {"perm": (0, 1, 3, 2)}, name=_name(ctx, "keys_t"))
    scores = ctx.op("nn.matmul", [queries, transposed], name=_name(ctx, "qk"))
    scores = ctx.op("nn.mul", [scores, _scalar(ctx, "scale", scale)], name=_name(ctx, "scaled"))
    if addend is not None:
        scores = ctx.op("nn.add", [scores, addend], name=_name(ctx, "scores"))
    probabilities = ctx.op("nn.softmax", [scores], {"axis": 3}, name=_name(ctx, "probabilities"))
    context = ctx.op("nn.matmul", [probabilities, values], name=_name(ctx, "context"))
    batch, heads, length, width = context.type.shape
    merged = ctx.op("nn.transpose", [context], {"perm": (0, 2, 1, 3)}, name=_name(ctx, "merge"))
    return ctx.op("nn.reshape", [merged], {"shape": (batch, length, heads * width)}), scores


def _joined(ctx: LowerContext, past: Value | None, current: Value, what: str) -> Value:
    if past is None:
        return current
    if past.type.shape[:2] != current.type.shape[:2] or past.type.shape[3] != current.type.shape[3]:
        raise ctx.error(f"past {what} {past.type} does not fit the current {what} {current.type}")
    return ctx.op("nn.concat", [past, current], {"axis": 2}, name=_name(ctx, f"{what}.present"))


def _num_heads(ctx: LowerContext) -> int:
    num_heads = int(ctx.attr("num_heads", 0))
    if num_heads < 1:
        raise ctx.error(f"num_heads {num_heads} must be positive")
    return num_heads


@rule("Attention", domain=MS_DOMAIN)
def lower_attention(ctx: LowerContext) -> None:
    _refuse_inputs(ctx, {6: "a past_sequence_length input (shared past/present buffer)"})
    for flag, what in (("do_rotary", "rotary embeddings, which onnxruntime's CPU kernel does not run"),
                       ("past_present_share_buffer", "a shared past/present buffer")):
        if ctx.attr(flag, 0):
            raise ctx.unsupported(f"Attention with {what} ({flag}=1)")
    x, weights = _float32(ctx, ctx.input(0), "input"), _float32(ctx, ctx.input(1), "weights")
    num_heads = _num_heads(ctx)
    if x.type.rank != 3 or weights.type.rank != 2 or weights.type.shape[0] != x.type.shape[2]:
        raise ctx.error(f"input {x.type} and weights {weights.type} are not [B, S, D_in] and [D_in, D + D + D_v]")
    sizes = tuple(int(s) for s in ctx.attr("qkv_hidden_sizes", [weights.type.shape[1] // 3] * 3))
    if len(sizes) != 3 or sizes[0] != sizes[1] or sum(sizes) != weights.type.shape[1] or \
            any(size <= 0 or size % num_heads for size in sizes):
        raise ctx.error(f"qkv_hidden_sizes {list(sizes)} do not split weights {weights.type} into Q, K, V of equal "
                        f"Q and K sizes, each a multiple of num_heads {num_heads}")
    projected = ctx.op("nn.matmul", [x, weights], name=_name(ctx, "qkv"))
    if ctx.has_input(2):
        projected = ctx.op("nn.add", [projected, _float32(ctx, ctx.input(2), "bias")], name=_name(ctx, "qkv.bias"))
    offsets = (0, sizes[0], sizes[0] + sizes[1])
    queries, keys, values = (_heads(ctx, slice_value(ctx, projected, {2: (offset, 1, size)}, name=_name(ctx, part)),
                                    num_heads, part)
                             for offset, size, part in zip(offsets, sizes, ("q", "k", "v")))
    batch, sequence = x.type.shape[:2]
    past_length = 0
    if ctx.has_input(4):
        if not _named_output(ctx, 1):
            raise ctx.unsupported("Attention with past but no present output, which onnxruntime's CPU kernel refuses")
        past = _float32(ctx, ctx.input(4), "past")
        if past.type.rank != 5 or past.type.shape[0] != 2 or sizes[1] != sizes[2]:
            raise ctx.error(f"past {past.type} is not [2, B, N, P, H] with equal K and V sizes")
        past_length = past.type.shape[3]
        halves = [ctx.op("nn.reshape", [slice_value(ctx, past, {0: (index, 1, 1)}, name=_name(ctx, f"past.{part}"))],
                         {"shape": past.type.shape[1:]}, name=_name(ctx, f"past.{part}.heads"))
                  for index, part in enumerate(("k", "v"))]
        keys, values = _joined(ctx, halves[0], keys, "k"), _joined(ctx, halves[1], values, "v")
    total = sequence + past_length
    padding = _padding(ctx, 3, batch, sequence, total, ("2B", "3B+2", "dummy")) if ctx.has_input(3) else None
    bias = _attention_bias(ctx, 5, batch, num_heads, sequence, total)
    addend = _addend(ctx, padding, bias, sequence, total, past_length)
    output, _ = _attend(ctx, queries, keys, values, _scale(ctx, sizes[0] // num_heads), addend)
    ctx.bind(0, output)
    if _used(ctx, 1):
        if keys.type.shape != values.type.shape:
            raise ctx.error(f"present needs K and V of one shape, got {keys.type} and {values.type}")
        pair = [ctx.op("nn.reshape", [half], {"shape": (1, *half.type.shape)}, name=_name(ctx, f"present.{part}"))
                for half, part in ((keys, "k"), (values, "v"))]
        ctx.bind(1, ctx.op("nn.concat", pair, {"axis": 0}, name=_name(ctx, "present")))


def _projected_heads(ctx: LowerContext, index: int, bias: Value | None, offset: int, width: int, num_heads: int,
                     part: str) -> Value:
    """Input `index` as heads [B, N, L, H]: a [B, L, D] input plus its part of the bias, split; a [B, N, L, H]
    one as it is (the kernel adds no bias to it)."""
    x = _float32(ctx, ctx.input(index), part)
    if x.type.rank == 4:
        return x
    if bias is not None:
        x = ctx.op("nn.add", [x, slice_value(ctx, bias, {0: (offset, 1, width)}, name=_name(ctx, f"{part}.bias"))],
                   name=_name(ctx, f"{part}.biased"))
    return _heads(ctx, x, num_heads, part)


def _value_width(ctx: LowerContext, query: Value, num_heads: int) -> int:
    """D_v, once key and value are checked against query [B, S, D]: [B, L, D] and [B, L, D_v], or [B, N, L, H] and
    [B, N, L, H_v] (already split into heads); the packed forms are refused."""
    if not ctx.has_input(1) or query.type.rank != 3 or ctx.input_type(1).rank == 5:
        raise ctx.unsupported("MultiHeadAttention with packed QKV or packed KV, which onnxruntime's CPU kernel does "
                              "not run (rcc takes query [B, S, D] with key and value)")
    key, value = ctx.input(1), ctx.input(2) if ctx.has_input(2) else None
    batch, _, width = query.type.shape
    split = (batch, num_heads, key.type.shape[2], width // num_heads) if key.type.rank == 4 else None
    expected = split or (batch, key.type.shape[1], width)
    if value is None or value.type.rank != key.type.rank or key.type.shape != expected:
        raise ctx.error(f"key {key.type} and value {value.type if value is not None else None} do not fit query "
                        f"{query.type}: [B, L, D] and [B, L, D_v], or [B, N, L, H] both")
    if split and (ctx.has_input(6) or ctx.has_input(7)):
        raise ctx.error("past_key and past_value with key and value already split into heads")
    return value.type.shape[1] * value.type.shape[3] if split else value.type.shape[2]


def _past_joined(ctx: LowerContext, keys: Value, values: Value) -> tuple[Value, Value, int]:
    """Keys and values with past_key and past_value joined in front, and the past's length."""
    if ctx.has_input(6) != ctx.has_input(7):
        raise ctx.error("past_key and past_value must be given together")
    if not ctx.has_input(6):
        return keys, values, 0
    if not all(_named_output(ctx, index) for index in (1, 2)):
        raise ctx.unsupported("MultiHeadAttention with past_key and past_value but without both present outputs "
                              "(onnxruntime's CPU kernel then reads keys and values past the end of its buffers)")
    past_key, past_value = _float32(ctx, ctx.input(6), "past_key"), _float32(ctx, ctx.input(7), "past_value")
    return _joined(ctx, past_key, keys, "k"), _joined(ctx, past_value, values, "v"), past_key.type.shape[2]


@rule("MultiHeadAttention", domain=MS_DOMAIN)
def lower_multi_head_attention(ctx: LowerContext) -> None:
    _refuse_inputs(ctx, {8: "a past_sequence_length input (shared past/present buffer)",
                         9: "cache_indirection (beam search)"})
    query = _float32(ctx, ctx.input(0), "query")
    num_heads = _num_heads(ctx)
    value_width = _value_width(ctx, query, num_heads)
    batch, sequence, width = query.type.shape
    bias = _float32(ctx, ctx.input(3), "bias") if ctx.has_input(3) else None
    if bias is not None and bias.type.shape != (2 * width + value_width,):
        raise ctx.error(f"bias {bias.type} is not [D + D + D_v] = [{2 * width + value_width}]")
    queries = _projected_heads(ctx, 0, bias, 0, width, num_heads, "q")
    keys, values, past_length = _past_joined(ctx, _projected_heads(ctx, 1, bias, width, width, num_heads, "k"),
                                             _projected_heads(ctx, 2, bias, 2 * width, value_width, num_heads, "v"))
    total = keys.type.shape[2]
    padding = _padding(ctx, 4, batch, sequence, total, ("3B+2",)) if ctx.has_input(4) else None
    bias = _attention_bias(ctx, 5, batch, num_heads, sequence, total)
    addend = _addend(ctx, padding, bias, sequence, total, past_length)
    output, scores = _attend(ctx, queries, keys, values, _scale(ctx, width // num_heads), addend)
    ctx.bind(0, output)
    for index, result in ((1, keys), (2, values), (3, scores)):
        if _used(ctx, index):
            ctx.bind(index, result)


@rule("EmbedLayerNormalization", domain=MS_DOMAIN)
def lower_embed_layer_norm(ctx: LowerContext) -> None:
    ids = ctx.input(0)
    if ids.type.dtype != "i32" or ids.type.rank != 2:
        raise ctx.error(f"input_ids {ids.type} is not int32 [B, S]")
    batch, sequence = ids.type.shape
    word_table = _float32(ctx, ctx.input(2), "word_embedding")
    embedded = ctx.op("nn.gather", [word_table, ids], {"axis": 0}, name=_name(ctx, "words"))
    if ctx.has_input(8):
        positions = ctx.op("nn.gather", [_float32(ctx, ctx.input(3), "position_embedding"), ctx.input(8)],
                           {"axis": 0}, name=_name(ctx, "positions"))
    else:
        table = _float32(ctx, ctx.input(3), "position_embedding")
        if table.type.rank != 2 or table.type.shape[0] < sequence:
            raise ctx.error(f"position_embedding {table.type} has fewer than the sequence's {sequence} rows")
        positions = slice_value(ctx, table, {0: (0, 1, sequence)}, name=_name(ctx, "positions"))
    embedded = ctx.op("nn.add", [embedded, positions], name=_name(ctx, "words_positions"))
    if ctx.has_input(1) != ctx.has_input(4):
        raise ctx.error("segment_ids and segment_embedding must be given together")
    if ctx.has_input(1):
        segments = ctx.op("nn.gather", [_float32(ctx, ctx.input(4), "segment_embedding"), ctx.input(1)],
                          {"axis": 0}, name=_name(ctx, "segments"))
        embedded = ctx.op("nn.add", [embedded, segments], name=_name(ctx, "embedding_sum"))
    epsilon = float(ctx.attr("epsilon", np.float32(1e-12)))   # the schema's float default
    ctx.bind(0, ctx.op("nn.layer_norm", [embedded, ctx.input(5), ctx.input(6)],
                       {"axis": 2, "epsilon": epsilon, "stash_type": "f32"}))
    if _used(ctx, 1):
        if ctx.has_input(7):   # the kernel counts the 1s of each row, whatever else the mask holds
            ones = ctx.op("nn.equal", [ctx.input(7), _scalar(ctx, "one", 1, np.int32)], name=_name(ctx, "mask_ones"))
            counted = ctx.op("nn.cast", [ones], {"to": "i32"}, name=_name(ctx, "mask_counts"))
            ctx.bind(1, ctx.op("nn.reduce_sum", [counted], {"axes": (1,), "keepdims": False},
                               name=_name(ctx, "mask_index")))
        else:
            ctx.bind_constant(ctx.node.output[1], np.zeros(batch, np.int32))
    if _used(ctx, 2):
        ctx.bind(2, embedded)
