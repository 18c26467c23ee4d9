"""What a pipeline's passes share: the compile settings (`PassContext`) and what each pass did (`PassReport`).

    ctx = PassContext(target=Target(xbar_rows=64, xbar_cols=64), precision="float")
    run_pipeline(module, DEFAULT_PIPELINE, ctx)
    for report in ctx.reports:
        print(report.name, report.changed, report.figures)

Settings are inputs to passes; results (what a pass removed, its figures, the graph-level module that
lowering started from) are written into the context, never into a pass's options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rcc.backends.packing import MODES as PACKING_MODES
from rcc.backends.target import MAX_INPUT_BITS, Target
from rcc.compiler.calibrate import (METHODS as CALIBRATION_METHODS, ActivationObservation, calibration_samples,
                                    observe_activations, samples_origin)
from rcc.ir.core import Module, Op, Value
from rcc.ir.errors import RccError

PRECISIONS = ("int", "float")
PIPELINING = ("none", "layer", "row")
MIXED_PRECISION_WIDTHS = ("auto", "both", "inputs", "weights")  # what `mixed-precision` may widen (auto: both, or
# inputs only where crossbar-grained pruning cut the weights)
DECONV_PASSES = {"pixelwise": "deconv-to-pixelwise", "zero-insertion": "deconv-zero-insertion"}

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class PruneBudget:
    """`--prune-budget`: a fraction of each layer's array blocks to remove, or the largest output error
    (relative L2 against the reference on the calibration inputs) that removal may cause."""

    fraction: float | None = None
    max_error: float | None = None

    @staticmethod
    def parse(text: str) -> PruneBudget:
        try:
            if text.startswith("error="):
                bound = float(text.removeprefix("error="))
                if bound > 0:
                    return PruneBudget(max_error=bound)
            elif 0 < float(text) < 1:
                return PruneBudget(fraction=float(text))
        except ValueError:
            pass
        raise RccError(f"--prune-budget {text!r}: give a fraction of crossbars in (0, 1) or error=MAX_REL_L2")


@dataclass
class PassReport:
    """What one pass did: whether it changed the module, what it removed (one dict per item), its figures."""

    name: str
    changed: bool = False
    removed: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassContext:
    """The settings every pass of a pipeline reads, and the reports the passes write.

    `calibration`: the user's calibration inputs (input name → array, optionally with a leading samples
    axis), or None for seeded random samples. `reference`: the outputs pruning error is measured against
    for one input sample (the driver gives onnxruntime on the original model; None means the interpreter
    on the module before pruning)."""

    target: Target = field(default_factory=Target)
    precision: str = "int"
    calibration: dict[str, np.ndarray] | None = None
    calibration_method: str = "max"  # how activation ranges are chosen: calibrate.METHODS
    packing: str = "best"
    deconv: str = "pixelwise"
    prune: PruneBudget | None = None
    replicate: str = "none"     # `replicate`: none | auto | N copies
    pipelining: str = "none"    # `replicate`: none | layer | row
    reference: Callable[[dict[str, np.ndarray]], Outputs] | None = None
    # input widths of single crossbar layers beside the target's `input_bits` (`--layer-input-bits`;
    # `mixed-precision` adds its choice), keyed by the name of the op lowered or a dotted prefix of it (the
    # report's layer: `fc1` for `fc1.matmul`, `up` for a deconvolution's `up.phase0_1`, ...), and that
    # pass's SNR goal in dB (None: off)
    layer_input_bits: dict[str, int] = field(default_factory=dict)
    layer_weight_bits: dict[str, int] = field(default_factory=dict)   # `--layer-weight-bits`, keyed the same way
    mixed_precision: float | None = None
    mixed_precision_widths: str = "auto"  # which widths that pass may widen (MIXED_PRECISION_WIDTHS)
    reports: list[PassReport] = field(default_factory=list)
    graph: Module | None = None  # the graph-level module `lower-to-xbar` started from (a copy)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise RccError(f"--precision {self.precision!r}: choose int or float")
        if self.deconv not in DECONV_PASSES:
            raise RccError(f"--deconv {self.deconv!r}: choose {' or '.join(DECONV_PASSES)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise RccError(f"--calibration-method {self.calibration_method!r}: choose one of "
                           f"{', '.join(CALIBRATION_METHODS)}")
        narrowest = max(2, self.target.dac_bits)  # a sign bit and a magnitude bit; at least one DAC step
        for layer, bits in self.layer_input_bits.items():
            if not isinstance(bits, int) or not narrowest <= bits <= MAX_INPUT_BITS:
                raise RccError(f"--layer-input-bits {layer}={bits}: the width must be an integer from "
                               f"{narrowest} to {MAX_INPUT_BITS}")
        for layer, bits in self.layer_weight_bits.items():
            try:
                replace(self.target, weight_bits=bits)
            except RccError as err:
                raise RccError(f"--layer-weight-bits {layer}={bits}: {str(err).replace('--weight-bits', 'the width')}"
                               ) from None
        if self.mixed_precision_widths not in MIXED_PRECISION_WIDTHS:
            raise RccError(f"--mixed-precision-widths {self.mixed_precision_widths!r}: choose "
                           f"{', '.join(MIXED_PRECISION_WIDTHS)}")
        if self.packing not in PACKING_MODES:
            raise RccError(f"--packing {self.packing!r}: choose one of {', '.join(PACKING_MODES)}")

    def begin(self, name: str) -> PassReport:
        """Start the report of pass `name` (the pass manager calls this before running the pass)."""
        self.reports.append(PassReport(name))
        return self.reports[-1]

    @property
    def report(self) -> PassReport:
        """The report of the pass running now."""
        assert self.reports, "no pass is running"
        return self.reports[-1]

    def report_of(self, name: str) -> PassReport | None:
        """The last report of pass `name`, if it ran."""
        return next((r for r in reversed(self.reports) if r.name == name), None)

    def calibration_samples(self, module: Module) -> list[dict[str, np.ndarray]]:
        """Input samples for calibrating `module`: the user's, or seeded random ones."""
        return calibration_samples(module, self.calibration)

    def input_bits_of(self, layer: str) -> int:
        """The input width of the op lowered as `layer`: that of its name or of its longest dotted prefix in
        `layer_input_bits`, else the target's."""
        return self.layer_input_bits.get(self.width_key(layer) or "", self.target.input_bits)

    def layer_target(self, layer: str) -> Target:
        """The target the op lowered as `layer` is mapped for: the context's, with the layer's own input and weight
        widths (`--layer-input-bits`, `--layer-weight-bits`, `mixed-precision`)."""
        widths = {"input_bits": self.input_bits_of(layer), "weight_bits": self.weight_bits_of(layer)}
        same = all(getattr(self.target, key) == bits for key, bits in widths.items())
        return self.target if same else replace(self.target, **widths)

    def weight_bits_of(self, layer: str) -> int:
        """The weight width of the op lowered as `layer`, from `layer_weight_bits` as `input_bits_of` reads its table."""
        return self.layer_weight_bits.get(self.width_key(layer, self.layer_weight_bits) or "", self.target.weight_bits)

    def width_key(self, layer: str, table: dict[str, int] | None = None) -> str | None:
        """The key of `table` (`layer_input_bits` by default) that gives `layer` its width (its name, or its longest
        dotted prefix)."""
        table = self.layer_input_bits if table is None else table
        parts = layer.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in table), None)

    def layer_ranges(self, module: Module, sources: dict[Op, Value], widths: dict[Op, int]
                     ) -> dict[Op, tuple[float, float]]:
        """The calibrated range of each op's input `sources[op]` when quantised to `widths[op]` bits (one
        calibration pass; `mse` then chooses the clipping per width, the other methods do not depend on it)."""
        seen = self.observe(module, list(dict.fromkeys(sources.values())))
        return {op: seen.range_of(sources[op], widths[op]) for op in widths}

    def activation_ranges(self, module: Module, values: list[Value], bits: int | None = None
                          ) -> dict[Value, tuple[float, float]]:
        """The calibrated (min, max) of each of `values` on `calibration_samples`, by `calibration_method`
        (`mse` chooses its clipping for `bits`, by default the target's input width)."""
        seen = self.observe(module, values)
        return {value: seen.range_of(value, bits or self.target.input_bits) for value in values}

    def observe(self, module: Module, values: list[Value]) -> ActivationObservation:
        """One calibration pass over `calibration_samples`, keeping what `calibration_method` needs of `values`
        (their ranges at any width: `ActivationObservation.range_of`)."""
        return observe_activations(module, values, self.calibration_samples(module), self.calibration_method,
                                   samples_origin(self.calibration))
