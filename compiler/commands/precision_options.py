"""The precision flags of `rcc compile` and `rcc opt`: `--layer-input-bits LAYER=BITS`, `--layer-weight-bits
LAYER=BITS` and `--mixed-precision auto|DB` (per-layer widths; compiler/passes/mixed_precision.py). Kept apart from
common.py so that `rcc run` does not import the passes."""

from __future__ import annotations

import argparse
from typing import Any

from rcc.backends.target import Target
from rcc.compiler.pass_context import MIXED_PRECISION_WIDTHS
from rcc.compiler.passes.mixed_precision import AUTO_MARGIN_DB, mixed_precision_goal
from rcc.ir.errors import RccError


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """`--layer-input-bits LAYER=BITS`, `--layer-weight-bits LAYER=BITS` (repeatable), `--mixed-precision auto|DB`
    and `--mixed-precision-widths`: input and weight widths of single crossbar layers beside the target's
    (compiler/passes/mixed_precision.py)."""
    parser.add_argument("--layer-input-bits", action="append", default=[], metavar="LAYER=BITS",
                        help="input width of one crossbar layer, beside --input-bits (repeatable); LAYER is a "
                             "layer of the report or the `layer` of an xbar.mvm in --emit xbar")
    parser.add_argument("--layer-weight-bits", action="append", default=[], metavar="LAYER=BITS",
                        help="weight width of one crossbar layer, beside --weight-bits (repeatable; more bits, more "
                             "weight slices and arrays); LAYER as for --layer-input-bits")
    parser.add_argument("--mixed-precision", metavar="auto|DB",
                        help="widen the inputs or weights of the layers that cost the most accuracy until the "
                             "model's SNR on held-out inputs (the --calibrate sets when given) reaches DB (auto: "
                             "the integer verification bound + "
                             f"{AUTO_MARGIN_DB:g} dB)")
    parser.add_argument("--mixed-precision-widths", choices=MIXED_PRECISION_WIDTHS, default="auto",
                        help="which widths --mixed-precision may widen: inputs (input cycles), weights (weight "
                             "slices, so arrays), both, or auto (the default: both, inputs only after pruning)")


def precision_settings(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """`compile_model`'s `layer_input_bits`, `layer_weight_bits`, `mixed_precision` and `mixed_precision_widths`
    from the flags above."""
    goal = None if args.mixed_precision is None else mixed_precision_goal(args.mixed_precision, target)
    if goal is None and args.mixed_precision_widths != "auto":
        raise RccError(f"--mixed-precision-widths {args.mixed_precision_widths}: it says what --mixed-precision "
                       f"widens; give --mixed-precision too")
    return {"layer_input_bits": _widths("--layer-input-bits", args.layer_input_bits),
            "layer_weight_bits": _widths("--layer-weight-bits", args.layer_weight_bits), "mixed_precision": goal,
            "mixed_precision_widths": args.mixed_precision_widths}


def _widths(flag: str, items: list[str]) -> dict[str, int]:
    widths = {}
    for item in items:
        layer, _, bits = item.rpartition("=")
        if not layer or not (bits.isascii() and bits.strip().isdigit()):
            raise RccError(f"{flag} {item!r}: expected LAYER=BITS, e.g. conv1=10")
        widths[layer] = int(bits)
    return widths
