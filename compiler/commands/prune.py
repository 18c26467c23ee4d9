"""`rcc prune MODEL.onnx --sparsity S -o OUT.onnx`: magnitude-prune an ONNX model's weights
(the pruning itself is compiler/prune_model.py)."""

from __future__ import annotations

import argparse
from typing import Any

from rcc.compiler.commands.common import (Parser, add_common_arguments, add_target_arguments, input_files,
                                          target_from_args)
from rcc.compiler.commands.progress import showing_progress
from rcc.compiler.frontend.loader import load_onnx
from rcc.compiler.prune_model import STRUCTURES, prune_onnx, sparsity_fraction
from rcc.compiler.summary import format_table
from rcc.ir.errors import RccError
from rcc.ir.files import check_distinct_files, check_output_path, write_output
from rcc.ir.progress import stage

MAX_PROTO_BYTES = 2**31 - 1  # protobuf cannot serialise a message this large


def parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rcc prune", description="Magnitude-prune an ONNX model's weights.")
    parser.add_argument("model", help="the ONNX model")
    parser.add_argument("--sparsity", type=float, required=True, metavar="S",
                        help="fraction of each weight tensor to make zero, in [0, 1)")
    parser.add_argument("--structured", choices=STRUCTURES, default="none",
                        help="none: single weights by |w| (default); crossbar: whole array-sized blocks of the "
                             "[K, M] weight matrix by Σ|w|, sized by the target")
    parser.add_argument("-o", "--output", required=True, help="where to write the pruned model")
    add_target_arguments(parser)
    add_common_arguments(parser)
    return parser


def format_prune_rows(rows: list[dict[str, Any]]) -> str:
    def blocks(row: dict[str, Any]) -> str:
        return "" if row["blocks_total"] is None else f"{row['blocks_removed']}/{row['blocks_total']}"

    table = [[r["tensor"], r["op_type"], "x".join(map(str, r["shape"])),
              f"{100 * r['sparsity_before']:.1f}% → {100 * r['sparsity_after']:.1f}%", blocks(r)] for r in rows]
    size = sum(r["size"] for r in rows)
    if size:
        zeros_after = sum(round(r["sparsity_after"] * r["size"]) for r in rows)
        zeros_before = sum(round(r["sparsity_before"] * r["size"]) for r in rows)
        table.append(["total", f"{len(rows)} tensors", f"{size:,} weights",
                      f"{100 * zeros_before / size:.1f}% → {100 * zeros_after / size:.1f}%", ""])
    return format_table(["tensor", "op", "shape", "sparsity", "blocks removed"], table)


def prune_command(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    with showing_progress(args):
        sparsity_fraction(args.sparsity, "--sparsity")
        target = target_from_args(args)
        output = check_output_path(args.output, "-o")
        check_distinct_files([("-o", output)], input_files(args, ("the input model", args.model)))
        model = load_onnx(args.model)
        with stage("prune"):
            pruned, rows = prune_onnx(model, args.sparsity, args.structured, target)
        if pruned.ByteSize() > MAX_PROTO_BYTES:
            raise RccError(f"{args.model}: the pruned model is over 2 GiB, too large for one ONNX file")
        write_output(output, pruned.SerializeToString())
    if not args.quiet:
        print(format_prune_rows(rows) if rows else "no Conv, ConvTranspose, Gemm or MatMul weight initializers "
                                                   "to prune")
        print(f"wrote {output}")
    return 0
