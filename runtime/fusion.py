"""Fused steps of the machine's plan: quantize → (im2col →) mvm → dequantize carried in float.

When an ideal integer layer (dense, or packed: its blocks' sum) with no ADC saturation to subtract (`CrossbarGroup.
exact_without_saturation`) reads a quantized input (its range known from the `quantize`'s `bits` and
`signed`, `instructions.input_ranges`), every integer between the `quantize` and the `dequantize` can be
carried as a float holding it exactly: the quantize skips its int32 cast (`quantized_levels`: at most
16 bits, exact in float32), the im2col copies float32, the mvm returns its exact product in whatever
type computed it (`CrossbarGroup.exact_product`: float32 from one GEMM, float64 from row chunks or from a packed
layer's blocks' sum, int64)
without the int64 cast, and the dequantize reads it (float64 of any of them is the same number). An
im2col read by such a layer alone, with many channels, writes its columns taps first (each tap's
channels contiguous, a faster copy) and the layer reads its weight rows in that order: the same sums.
Every instruction still runs, on the same values: results are identical bit for
bit and the counts, which follow the shapes, are unchanged. A buffer read by anything else (a store, a
second reader) keeps its integer type. Runs that observe intermediate values (a trace, NaN propagation)
use the unfused steps.
Compiled (once a machine's runs have taken a second), a large 8-bit layer (`runtime/integer_gemm.py` layer_takes)
takes onnxruntime's integer GEMM (int32 sums, exact where this CPU's kernel is), and an im2col read by it alone
copies uint8 codes (taps first, in one kernel pass, where the kernel has several taps); a stride-1 layer that would
go tap by tap in float32 takes those columns and that GEMM instead.
For the single-sample steps, a small dense layer that alone reads its quantize runs its quantize, product and
dequantize as one step (`_small_layers`; compiled, one kernel call up to `compiled_steps.SMALL_LAYER_MACS`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from functools import cache

import numpy as np

from rcc.ir.ops.xbar import (channels_first_dequantizer, dequantize_terms, im2col_taps_first, quantizer,
                             quantizer_constants, taps_first_order)
from rcc.runtime.compiled_steps import (add_relu_step, code_columns_step, compilable, compiled, dense_taps_step,
                                        depthwise_step, dequantize_step, gather_step, layer_chain, levels_step,
                                        small_layer_step)
from rcc.runtime.crossbar import CrossbarGroup
from rcc.runtime.integer_gemm import Int8Gemm, input_offset, layer_takes
from rcc.runtime.instructions import (COMPILED_GATHER_ELEMENTS, constant_dequantize_terms, gathers_im2col,
                                     im2col_index)
from rcc.runtime.tap_conv import DepthwiseTaps, TapConvolution, tap_product_of


def fused_steps(machine, steps: list) -> tuple[list, list]:
    """The plan's `steps` (runtime/plan.py's PlannedStep) with every eligible quantize → (im2col →) mvm →
    dequantize chain carried in floats; and the same for runs whose steps need not show their operands' shapes
    (`Plan.run`'s quickest loops: one sample, or a stacked batch), where a stride-1 im2col's layer may skip the
    columns (`runtime/tap_conv.py`, dense stride-1 and depthwise layers: its im2col passes the input on)."""
    readers = Counter(name for step in steps for name in step.instruction.src)
    position = {name: k for k, step in enumerate(steps) for name in step.instruction.dst}
    fused = list(steps)
    exact: set[int] = set()   # positions of the mvms carried in floats
    # mvm position → (its im2col's, the taps, keep_float, whether the integer GEMM takes the layer)
    taps: dict[int, tuple[int, TapConvolution | DepthwiseTaps, bool, Callable[[], bool]]] = {}
    for k, step in enumerate(steps):
        instruction = step.instruction
        group = machine.crossbars.get(instruction.dst[0]) if instruction.opcode == "mvm" else None
        bound = machine.input_ranges.get(instruction.src[0]) if group is not None else None
        if bound is None or not isinstance(group, CrossbarGroup) or \
                not group.exact_without_saturation(machine.force_sliced):
            continue
        acc = instruction.dst[0]
        to_dequantize = readers[acc] == 1 and any(later.instruction.opcode == "dequantize" and
                                                  later.instruction.src[0] == acc for later in steps[k + 1:])
        source = instruction.src[0]
        producer = steps[position[source]] if readers[source] == 1 and source in position else None
        columns = producer is not None and producer.instruction.opcode == "im2col"
        order = _taps_first(producer, group) if columns else None
        codes_order = _codes_order(producer) if columns else None
        rows = instruction.shapes[0][0] if instruction.shapes else 0   # a sample's
        tap = tap_product_of(group, producer.instruction.attrs) if columns and group.single_gemm_exact(bound) \
            else None
        by_taps = _goes_tap_by_tap(tap, producer, steps, position)
        integer = cache(lambda group=group, bound=bound, order=order, rows=rows, by_taps=by_taps:
                        layer_takes(group, bound, order, rows, by_taps))   # decided at the switch, once
        exact.add(k)
        fused[k] = dataclasses.replace(step, run=_product(group, bound, order, to_dequantize, integer, codes_order),
                                       stacked_run=None)
        if producer is None:
            continue
        if columns:
            cols = producer.run if order is None else _taps_first_cols(producer.instruction.attrs)
            fused[position[source]] = dataclasses.replace(
                producer, run=_code_columns(cols, producer.instruction.attrs, bound, integer))
            if tap is not None:
                taps[k] = (position[source], tap, to_dequantize, integer)
            source = producer.instruction.src[0]
            if readers[source] != 1 or source not in position:
                continue
            producer = steps[position[source]]
        if producer.instruction.opcode == "quantize":
            fused[position[source]] = dataclasses.replace(producer, run=_levels(producer.instruction.attrs))
    _shared_levels(steps, fused, exact)
    single = list(fused)
    for k, (cols, tap, keep_float, integer) in taps.items():
        single[cols] = dataclasses.replace(fused[cols], run=pass_on)
        single[k] = dataclasses.replace(fused[k], run=_tap_product(tap, fused[cols].run, fused[k].run, keep_float,
                                                                   integer))
    layouts = _dequantize_channels_first(machine, steps, single, readers, position)
    reader = {name: j for j, step in enumerate(steps) for name in step.instruction.src}   # a name's (last) reader
    _dequantize_epilogues(machine, steps, single, readers, reader, layouts)
    _add_relus(steps, single, readers, reader)
    _small_layers(machine, steps, single, readers, reader, position, exact, layouts)
    return fused, single


def _goes_tap_by_tap(tap, im2col_step, steps: list, position: dict) -> bool:
    """Whether a layer would go tap by tap in float32 (`runtime/tap_conv.py` TapConvolution, several taps, not its
    few-outputs kernel) on its input as the im2col's source step shapes it (`TapConvolution.suits`)."""
    if not isinstance(tap, TapConvolution) or tap.pointwise or tap.few_outputs or \
            im2col_step.instruction.src[0] not in position:
        return False
    return tap.suits(tuple(steps[position[im2col_step.instruction.src[0]]].instruction.shapes[0]))


def _shared_levels(steps: list, fused: list, exact: set[int]) -> None:
    """In `fused`: a quantize read by several layers (a deconvolution's phases, a block's branches), each carried in
    floats directly or through an im2col read by such layers alone, gives its integers in float32 too."""
    reading: dict[str, list[int]] = {}
    for k, step in enumerate(steps):
        for name in set(step.instruction.src):
            reading.setdefault(name, []).append(k)

    def takes_levels(k: int) -> bool:
        instruction = steps[k].instruction
        return k in exact or (instruction.opcode == "im2col" and
                              all(j in exact for j in reading.get(instruction.dst[0], [None])))

    for k, step in enumerate(steps):
        if step.instruction.opcode == "quantize" and fused[k] is step and \
                all(takes_levels(j) for j in reading.get(step.instruction.dst[0], [])) and \
                len(reading.get(step.instruction.dst[0], [])) > 1:
            fused[k] = dataclasses.replace(step, run=_levels(step.instruction.attrs))


def pass_on(operands: list[np.ndarray]) -> list[np.ndarray]:
    """A step whose work an earlier step did: its operand is already its result."""
    return operands[:1]


CHANNELS_FIRST_ELEMENTS = 1 << 17   # largest dequantize whose numpy form transposes as it widens (a float64 temporary)


def _dequantize_channels_first(machine, steps: list, single: list, readers: Counter, position: dict) -> dict:
    """In `single`: a dequantize with constant scales read only by a reshape to [N, H, W, M] read only by a
    transpose to [N, M, H, W] gives its values in that layout directly (numpy: transposed as they are widened to
    float64, measured 26 µs against 35 for [1024, 16], up to CHANNELS_FIRST_ELEMENTS, beyond that the dequantize's
    values transposed; compiled: `compiled_steps.dequantize_step`); the reshape and transpose pass them on.
    Returns, by such a dequantize's position, its layout [N, H, W, M] and the transpose's result (the buffer
    holding its values)."""
    layouts: dict[int, tuple[tuple[int, ...], str]] = {}
    for k, step in enumerate(steps):
        instruction = step.instruction
        if instruction.opcode != "vec" or instruction.attrs["fn"] != "nn.transpose" or \
                tuple(instruction.attrs["attrs"]["perm"]) != (0, 3, 1, 2):
            continue
        reshape = steps[position.get(instruction.src[0], k)]
        if reshape.instruction.opcode != "vec" or reshape.instruction.attrs["fn"] != "nn.reshape" or \
                readers[instruction.src[0]] != 1 or reshape.instruction.src[0] not in position:
            continue
        dequantize = steps[position[reshape.instruction.src[0]]]
        shape = tuple(reshape.instruction.shapes[0])
        terms = constant_dequantize_terms(machine, dequantize.instruction) \
            if dequantize.instruction.opcode == "dequantize" else None
        if terms is None or readers[reshape.instruction.src[0]] != 1 or len(shape) != 4:
            continue
        if math.prod(shape) <= CHANNELS_FIRST_ELEMENTS:
            run = channels_first_dequantizer(*terms, shape)
            step = lambda operands, run=run: [run(operands[0])]   # noqa: E731
        else:
            step = lambda operands, run=dequantize.run, shape=shape: [   # noqa: E731
                np.ascontiguousarray(run(operands)[0].reshape(-1, *shape[1:]).transpose(0, 3, 1, 2))]
        step = compilable(step, lambda step=step, terms=terms, shape=shape:
                          dequantize_step(*dequantize_terms(*terms), step, shape))
        single[position[reshape.instruction.src[0]]] = dataclasses.replace(dequantize, run=step)
        single[position[instruction.src[0]]] = dataclasses.replace(single[position[instruction.src[0]]], run=pass_on)
        single[k] = dataclasses.replace(single[k], run=pass_on)
        layouts[position[reshape.instruction.src[0]]] = (shape, instruction.dst[0])
    return layouts


def _dequantize_epilogues(machine, steps: list, single: list, readers: Counter, reader: dict[str, int],
                          layouts: dict[int, tuple[tuple[int, ...], str]]) -> None:
    """In `single`: a dequantize with constant scales whose values are read only by the add (as its first operand)
    of a constant that holds one finite float32 value per output channel, and/or then only by a relu, does that
    work too, in its compiled form within the same kernel call (`runtime/compiled_steps.py` dequantize_step's
    epilogue, a second pass over its output: the same float32 operations in the same order); the add and relu pass
    its values on (an add whose first operand is the constant is left as it is: passing on takes the first).
    Measured on mlp's layers: 2-2.5 µs a step saved. A reshape of rows [P, M] keeping M as the last axis (a
    transformer's [16, 32] → [1, 16, 32] before its bias) may stand between: it still runs, on the values with
    the add done."""
    constants = machine.program.constants
    for k, step in enumerate(steps):
        terms = constant_dequantize_terms(machine, step.instruction) if step.instruction.opcode == "dequantize" \
            else None
        if terms is None:
            continue
        layout, name = layouts.get(k, (None, step.instruction.dst[0]))
        channel_axis = 1 if layout is not None else -1
        shape = tuple(step.instruction.shapes[0]) if layout is None else (layout[0], layout[3], *layout[1:3])
        chain: list[tuple[int, np.ndarray | None]] = []   # (position, constant operand) of the ops taken on
        addend, relu = None, False
        while readers[name] == 1 and name in reader and not relu:
            j = reader[name]
            instruction = steps[j].instruction
            if instruction.opcode != "vec" or instruction.src[0] != name:
                break
            if instruction.attrs["fn"] == "nn.reshape" and layout is None and not chain and \
                    instruction.shapes[0][-1:] == [shape[-1]]:   # [P, M] → [..., M]
                name, shape = instruction.dst[0], tuple(instruction.shapes[0])
                continue
            if tuple(instruction.shapes[0]) != shape:   # (of its result: an add that broadcasts no wider)
                break
            if single[j].run is not steps[j].run:
                break
            if instruction.attrs["fn"] == "nn.add" and addend is None and len(instruction.src) == 2 and \
                    instruction.src[1] in constants:
                addend = _channel_values(constants[instruction.src[1]], shape, channel_axis)
                if addend is None:
                    break
                chain.append((j, constants[instruction.src[1]]))
            elif instruction.attrs["fn"] == "nn.relu":
                relu = True
                chain.append((j, None))
            else:
                break
            name = instruction.dst[0]
        if not chain:
            continue
        base, tails = single[k].run, [(steps[j].run, constant) for j, constant in chain]

        def run(operands: list[np.ndarray], base=base, tails=tails) -> list[np.ndarray]:
            value = dequantized = base(operands)[0]
            for tail, constant in tails:
                value = tail([value] if constant is None else [value, constant])[0]
            return [value.reshape(dequantized.shape)]   # (a constant with more leading ones broadcasts wider)
        single[k] = dataclasses.replace(single[k], run=compilable(
            run, lambda run=run, terms=terms, layout=layout, addend=addend, relu=relu:
            dequantize_step(*dequantize_terms(*terms), run, layout, addend, relu)))
        for j, _ in chain:
            single[j] = dataclasses.replace(single[j], run=pass_on)


def _small_layers(machine, steps: list, single: list, readers: Counter, reader: dict[str, int], position: dict,
                  exact: set[int], layouts: dict) -> None:
    """In `single`: a layer carried in floats (`exact`) that alone reads its quantize's levels, has one dense group
    of weights whose product is one exact float32 GEMM, and whose accumulators only its dequantize reads (rows, not
    channels first; constant scales; with or without its epilogue) runs as one step, the quantize and the
    dequantize passing their operands on: compiled, one kernel call for a small product
    (`compiled_steps.small_layer_step`), else the three steps in one (two steps' calls fewer: mlp's 10 steps a run
    are 4)."""
    constants = machine.program.constants
    for k in sorted(exact):
        instruction = steps[k].instruction
        source, acc = instruction.src[0], instruction.dst[0]
        q, d = position.get(source), reader.get(acc)
        if q is None or d is None or readers[source] != 1 or readers[acc] != 1 or d in layouts or \
                steps[q].instruction.opcode != "quantize" or steps[d].instruction.opcode != "dequantize" or \
                single[q].run is pass_on or constant_dequantize_terms(machine, steps[d].instruction) is None:
            continue
        group = machine.crossbars[acc]
        if group.blocks is not None or group.mapping.groups != 1 or \
                not group.single_gemm_exact(machine.input_ranges[source]):
            continue
        parts = (single[q].run, single[k].run, single[d].run)
        terms = [constants[name] for name in steps[d].instruction.src[1:]]
        single[k] = dataclasses.replace(single[k], run=compilable(
            layer_chain(*parts, terms), lambda parts=parts, terms=terms, weights=group.matrix[0]:
            small_layer_step(weights, *(compiled(part) for part in parts), terms)))
        single[q] = dataclasses.replace(single[q], run=pass_on)
        single[d] = dataclasses.replace(single[d], run=pass_on)


def _add_relus(steps: list, single: list, readers: Counter, reader: dict[str, int]) -> None:
    """In `single`: an add of two tensors whose only reader is a relu (a residual block's sum) takes the relu on, in
    its compiled form in the same pass over the sums (`runtime/compiled_steps.py` add_relu_step); the relu passes
    them on. Neither step may have been taken over already (a dequantize's epilogue)."""
    for k, step in enumerate(steps):
        instruction, name = step.instruction, step.instruction.dst[0] if step.instruction.dst else None
        if instruction.opcode != "vec" or instruction.attrs["fn"] != "nn.add" or len(instruction.src) != 2 or \
                single[k].run is not step.run or readers[name] != 1 or name not in reader:
            continue
        j = reader[name]
        relu = steps[j].instruction
        if relu.opcode != "vec" or relu.attrs["fn"] != "nn.relu" or single[j].run is not steps[j].run:
            continue

        def run(operands: list[np.ndarray], add=step.run, clip=steps[j].run) -> list[np.ndarray]:
            return clip(add(operands))
        single[k] = dataclasses.replace(single[k], run=compilable(run, lambda run=run: add_relu_step(run)))
        single[j] = dataclasses.replace(single[j], run=pass_on)


def _channel_values(constant: np.ndarray, shape: tuple[int, ...], channel_axis: int) -> np.ndarray | None:
    """The float32 value per channel that a constant adds to values of `shape` (channels along `channel_axis`),
    when it broadcasts to that shape, is finite float32 and varies along the channels alone; else None."""
    if constant.dtype != np.float32 or len(shape) < constant.ndim or not np.isfinite(constant).all():
        return None
    padded = constant.reshape((1,) * (len(shape) - constant.ndim) + constant.shape)
    axis = channel_axis % len(shape)
    if any(size != 1 for a, size in enumerate(padded.shape) if a != axis) or \
            padded.shape[axis] not in (1, shape[axis]):
        return None
    return np.ascontiguousarray(np.broadcast_to(padded.reshape(-1), (shape[axis],)), np.float32)


def _tap_product(tap: TapConvolution | DepthwiseTaps, cols, product, keep_float: bool, integer: Callable[[], bool]):
    """The layer's step reading its im2col's input: tap by tap when that pays, else the columns and product. Its
    compiled form takes the im2col's and the product's compiled forms too (and a depthwise layer's compiled
    product); a dense layer with kernel taps that the integer GEMM takes (`integer()`) always reads its uint8
    columns into it (16 channels at 32×32, 3×3: 95-146 µs tap by tap in float32, 16 for the integer GEMM)."""
    def reading(columns, product):
        def run(operands: list[np.ndarray]) -> list[np.ndarray]:
            if not tap.suits(operands[0].shape):
                return product(columns(operands))
            values = tap(operands[0])
            return [values if keep_float else values.astype(np.int64)]
        return run
    if isinstance(tap, DepthwiseTaps):
        return compilable(reading(cols, product),
                          lambda: depthwise_step(tap, keep_float, reading(compiled(cols), compiled(product))))

    def compiled_taps():
        if not tap.pointwise and integer():
            columns, integer_product = compiled(cols), compiled(product)

            def integer_product_of_columns(operands: list[np.ndarray]) -> list[np.ndarray]:
                return integer_product(columns(operands))
            return integer_product_of_columns
        return dense_taps_step(tap, keep_float, reading(compiled(cols), compiled(product)))
    return compilable(reading(cols, product), compiled_taps)


def _product(group: CrossbarGroup, bound: tuple[int, int], order: np.ndarray | None, keep_float: bool,
             integer: Callable[[], bool], codes_order: np.ndarray | None):
    """The layer's exact product: float (or int64 unless `keep_float`) from `CrossbarGroup.exact_product`, its
    weight rows in `order`; compiled, where `integer()` (`integer_gemm.layer_takes`), int32 from onnxruntime's
    integer GEMM (int64 unless `keep_float`), its weight rows in `codes_order` where its columns are codes
    (`_code_columns`), else in `order`."""
    product = group.exact_product(bound, order)
    if keep_float:
        run = lambda operands: [product(operands[0])]   # noqa: E731
    else:
        run = lambda operands: [product(operands[0]).astype(np.int64, copy=False)]   # noqa: E731

    def integer_product():
        if not integer():
            return run
        row_order = order if codes_order is None else codes_order
        gemm = Int8Gemm(group.matrix_in_order(row_order)[0], input_offset(bound))
        if keep_float:
            return lambda operands: [gemm(operands[0])]
        return lambda operands: [gemm(operands[0]).astype(np.int64)]
    return compilable(run, integer_product)


# Taps-first columns copy faster where each copy moves runs of this many elements or more: a kernel row's kw·C when
# the width is not dilated (`ir.ops.xbar._copy_tap_rows`), else a tap's C (measured, medians of 30, µs, im2col →
# taps-first: 3×3 kernels, 8 channels at 32×32 115 → 83, 16 at 16×16 62 → 53, 4 at 64×64 226 → 216, 8 at 112×112
# stride 2 701 → 344, ResNet-50's stem, 3 channels 7×7 stride 2 at 224×224, 4669 → 3390; but 3 channels 3×3 at 32×32
# 74 → 82, one channel 5×5 at 28×28 46 → 109; tap by tap: 3 channels 58 against 25, 16 channels 83 against 86, 32
# channels 30 against 41).
TAPS_FIRST_RUN = 16


def _taps_first(im2col_step, group: CrossbarGroup) -> np.ndarray | None:
    """The weight row order for an im2col read by this layer alone when its taps-first columns copy faster
    (a dense layer of one group, several taps, copies of TAPS_FIRST_RUN elements or more, and not a gather), else
    None."""
    attrs = im2col_step.instruction.attrs
    taps = attrs["kernel"][0] * attrs["kernel"][1]
    channels = im2col_step.instruction.shapes[0][1] // taps
    run = channels * attrs["kernel"][1] if attrs["dilations"][1] == 1 else channels
    if group.blocks is not None or group.mapping.groups != 1 or taps == 1 or run < TAPS_FIRST_RUN or \
            gathers_im2col(im2col_step.instruction):
        return None
    return taps_first_order(channels, taps)


def _codes_order(im2col_step) -> np.ndarray | None:
    """The weight row order of a layer reading the uint8 codes of an im2col (several taps) when the integer GEMM takes
    it: taps first, each tap's channels one run (`step_kernels.code_columns`); None for one tap (the same order)."""
    attrs = im2col_step.instruction.attrs
    taps = attrs["kernel"][0] * attrs["kernel"][1]
    if taps == 1:
        return None
    return taps_first_order(im2col_step.instruction.shapes[0][1] // taps, taps)


def _code_columns(cols, attrs: dict, bound: tuple[int, int], integer: Callable[[], bool]):
    """An im2col read by one layer alone: compiled, where that layer's product is the integer GEMM (`integer()`),
    it copies the inputs' uint8 codes (a quarter of float32's bytes, the codes that GEMM takes): with several taps,
    taps first (`compiled_steps.code_columns_step`, in the layer's `_codes_order`; signed inputs offset, padded with
    level 0's code); with one, unsigned inputs as they are (padding 0 is level 0) and signed ones in float32 (the
    GEMM offsets them); else as `cols`'s compiled form does."""
    def code_copy():
        copy = compiled(cols)
        if not integer():
            return copy
        if attrs["kernel"][0] * attrs["kernel"][1] > 1:
            return code_columns_step(attrs, input_offset(bound))
        if bound[0] < 0:   # one tap, signed: float32 columns, offset by the GEMM
            return copy
        return lambda operands: copy([operands[0].astype(np.uint8)])
    return compilable(lambda operands: cols(operands), code_copy)


def _taps_first_cols(attrs: dict):
    """Taps-first columns; compiled, as a gather where it beats the copies (`runtime/instructions.py`)."""
    kernel, strides, pads, dilations = attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"]
    copy = lambda operands: [im2col_taps_first(operands[0], kernel, strides, pads, dilations)]   # noqa: E731
    return compilable(copy, lambda: gather_step(im2col_index(attrs, COMPILED_GATHER_ELEMENTS, taps_first=True), copy))


def _levels(attrs: dict):
    levels = quantizer(attrs["scale"], attrs["bits"], attrs["signed"])
    run = lambda operands: [levels(operands[0])]   # noqa: E731
    constants = quantizer_constants(attrs["scale"], attrs["bits"], attrs["signed"])
    return compilable(run, lambda: levels_step(*constants, run))
