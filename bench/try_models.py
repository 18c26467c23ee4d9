#!/usr/bin/env python3
"""Try rcc on every ONNX model in a folder (the exports of `bench/export_models.py`, or the zoo blocks of
`models/build_zoo.py --blocks`) and tabulate what happens, as a new user would see it.

For each `NAME.onnx` (fed `NAME.inputs.npz` when present: input sets stacked on a leading axis, else rcc's
seeded random inputs), in a child process with a timeout so a hang or crash costs only that model:

1. the ONNX op types with no lowering rule in rcc on a path that depends on the inputs (a node whose
   inputs are all constant is folded, so it needs no rule);
2. `compile_model(precision="int")`, then `verify_compiled` in the interpreter and on the machine;
3. `compile_model(precision="float")` and `verify_compiled` on the machine;
4. crossbars (`report.totals`) and one inference's energy and latency (`estimate_cost`, ISAAC chip) of the
   integer program.

Each stage's outcome is kept as soon as it is known, so a timeout still reports the stages before it.
The table gives per verification the worst output's SNR (dB), input-dependent SNR (dB) and pass/fail; a `*`
marks a verdict with a note (listed below the table). A model whose reference output is the same for every
input (`constant_reference`: random export weights that vanish, or a zero-initialised head) proves nothing
about the input-dependent part and is not counted as verified.

    python bench/try_models.py                                  # /work/exports → table on stdout
    python bench/try_models.py --dir /work/exports --out /work/exports/table_main.txt
    python bench/try_models.py --dir /work/exports/zoo_blocks --models gpt_decoder_block
    python bench/try_models.py --mixed-precision auto --models efficientnet_b0   # wider inputs or weights where needed
    python bench/try_models.py --calibrate-on-inputs --models opt_tiny    # ranges from the model's own samples

Integer compiles calibrate on `NAME.calibration.npz` when present (held-out samples from the generator of the
inputs: `bench/wheel_models.py` writes them), else on rcc's seeded random inputs (integers below 8), as `rcc MODEL`
does without `--calibrate`; `--calibrate-on-inputs` calibrates on `NAME.inputs.npz` instead, the samples it is then verified
on (optimistic: a user would hold out calibration data; OPT's position ids index a table with the running
count of its attention mask, which random integers overrun).

`--out FILE` writes the table there and the full results (every metric, error message and traceback)
to FILE with the suffix `.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

DEFAULT_DIR = Path("/work/exports")
CONSTANT_SOURCES = {"Constant", "Shape", "Size"}  # static shapes: these are always known at compile time


# --------------------------------------------------------------------------
# The child: one model, stage by stage
# --------------------------------------------------------------------------


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Op types on an input-dependent path that have no lowering rule in rcc."""
    from rcc.compiler.frontend import registry  # noqa: F401  (importing the frontend fills the rule tables)

    known = {init.name for init in model.graph.initializer} | {""}
    missing: set[str] = set()
    for node in model.graph.node:
        if node.op_type in CONSTANT_SOURCES or all(name in known for name in node.input):
            known.update(node.output)
        elif registry.rule_for(node) is None:
            missing.add(f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type)
    return sorted(missing)


def worst_output(verify: dict[str, Any]) -> dict[str, Any]:
    """SNR, input-dependent SNR and verdict over all outputs: the lowest SNRs, passed only if all passed; the
    outputs' notes and a failed integer verification's noise probe."""
    from rcc.compiler.commands.compile import noise_probe_line
    outputs = list(verify["outputs"].values())

    def lowest(key: str) -> float | None:
        values = [m.get(key) for m in outputs]
        if any(v is None for v in values):  # None: exact (no error) or not measured; say so only if all are
            measured = [v for v in values if v is not None]
            return min(measured) if measured else None
        return min(values)

    return {"snr_db": lowest("snr_db"), "snr_input_db": lowest("snr_input_db"), "passed": verify["passed"],
            "exact": all(m.get("max_abs_err") == 0 for m in outputs),
            "notes": {**{name: m["note"] for name, m in verify["outputs"].items() if "note" in m},
                      **({"(all)": noise_probe_line(verify["noise_probe"])} if verify.get("noise_probe") else {})},
            "constant_reference": any(m.get("constant_reference") for m in outputs)}


def run_stage(result: dict[str, Any], stage: str, save: Callable[[], None], work: Callable[[], Any]) -> Any:
    """Run one stage, recording its seconds and outcome (or the error: RccError is the user-facing kind, any
    other exception a bug with its traceback) in `result[stage]`; None when it failed."""
    from rcc.ir.errors import RccError

    started = time.perf_counter()
    result[stage] = {"status": "running"}
    save()
    try:
        value, figures = work()
    except RccError as error:
        result[stage] = {"status": "error", "error": str(error).splitlines()[0] if str(error) else type(error).__name__}
        value = None
    except Exception as error:  # noqa: BLE001  (a bug in rcc: keep its traceback, go on to the next model)
        result[stage] = {"status": "bug", "error": f"{type(error).__name__}: {error}".splitlines()[0],
                         "traceback": traceback.format_exc()}
        value = None
    else:
        result[stage] = {"status": "ok", **figures}
    result[stage]["seconds"] = round(time.perf_counter() - started, 2)
    save()
    return value


def try_model(path: Path, result_path: Path, mixed_precision: str | None = None,
              calibrate_on_inputs: bool = False, allow_nonfinite: bool = False) -> None:
    """Every stage of one model, its results rewritten to `result_path` after each stage; `mixed_precision`
    (auto or a goal in dB) as `rcc --mixed-precision` for the integer compile, calibrated on the model's input
    samples when `calibrate_on_inputs`, else on NAME.calibration.npz when there is one; `allow_nonfinite` as
    rcc's flag."""
    from rcc.backends.chip import load_chip
    from rcc.backends.target import Target
    from rcc.compiler.driver import compile_model, verify_compiled
    from rcc.compiler.passes.mixed_precision import mixed_precision_goal
    from rcc.compiler.report import layer_rows, totals
    from rcc.runtime.cost import estimate_cost

    result: dict[str, Any] = {}

    def save() -> None:
        result_path.write_text(json.dumps(result, default=str))

    model = onnx.load(str(path), load_external_data=False)
    result["ops"] = sorted({node.op_type for node in model.graph.node})
    result["unsupported"] = unsupported_ops(model)
    del model
    inputs_path = path.with_suffix(".inputs.npz")
    inputs = dict(np.load(inputs_path)) if inputs_path.is_file() else None
    result["inputs"] = inputs_path.name if inputs is not None else "random"
    calibration_path = path.with_suffix(".calibration.npz")
    calibration = inputs if calibrate_on_inputs else \
        dict(np.load(calibration_path)) if calibration_path.is_file() else None

    def compile_int() -> tuple[Any, dict[str, Any]]:
        goal = None if mixed_precision is None else mixed_precision_goal(mixed_precision, Target())
        compiled = compile_model(path, precision="int", mixed_precision=goal, calibration=calibration,
                                 allow_nonfinite=allow_nonfinite)
        cost = estimate_cost(compiled.program, load_chip("isaac"))
        return compiled, {"crossbars": totals(layer_rows(compiled.program, compiled.target))["crossbars"],
                          "energy_uj": cost.energy_pj / 1e6, "latency_us": cost.latency_ns / 1e3,
                          "mixed_precision": compiled.mixed_precision}

    def verify(compiled: Any, executor: str) -> Callable[[], tuple[None, dict[str, Any]]]:
        def work() -> tuple[None, dict[str, Any]]:
            outcome = verify_compiled(path, compiled, executor=executor, inputs=inputs,
                                      allow_nonfinite=allow_nonfinite).to_json()
            return None, {**worst_output(outcome), "verify": outcome}
        return work

    compiled = run_stage(result, "compile_int", save, compile_int)
    if compiled is not None:
        run_stage(result, "interpreter", save, verify(compiled, "interpreter"))
        run_stage(result, "machine_int", save, verify(compiled, "machine"))
    del compiled
    compiled = run_stage(result, "compile_float", save,
                         lambda: (compile_model(path, precision="float", allow_nonfinite=allow_nonfinite), {}))
    if compiled is not None:
        run_stage(result, "machine_float", save, verify(compiled, "machine"))


# --------------------------------------------------------------------------
# The parent: one child per model, then the table
# --------------------------------------------------------------------------


STAGES = ("compile_int", "interpreter", "machine_int", "compile_float", "machine_float")


def run_child(path: Path, timeout: float, mixed_precision: str | None = None,
              calibrate_on_inputs: bool = False, allow_nonfinite: bool = False) -> dict[str, Any]:
    """`try_model` in a fresh interpreter; what it had saved when it ended, with how it ended."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--child", str(path), "--child-result", str(result_path),
                   *(["--mixed-precision", mixed_precision] if mixed_precision else []),
                   *(["--calibrate-on-inputs"] if calibrate_on_inputs else []),
                   *(["--allow-nonfinite"] if allow_nonfinite else [])]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            ended = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            ended = f"timed out after {timeout:g} s"
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    result["path"], result["ended"] = str(path), ended
    result["seconds"] = round(time.perf_counter() - started, 1)
    for stage in STAGES:  # a stage still running when the child died is where it stopped
        if result.get(stage, {}).get("status") == "running":
            result[stage] = {"status": "killed", "error": ended}
    return result


def db(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) and value > 0 else f"{value:.1f}"


def verdict(stage: dict[str, Any] | None) -> str:
    """`SNR/input SNR pass|FAIL`, `exact pass`, or what stopped the stage."""
    if stage is None:
        return "-"
    if stage["status"] != "ok":
        return stage["status"]
    mark = ("pass" if stage["passed"] else "FAIL") + ("*" if stage.get("notes") else "")
    if stage["exact"]:
        return f"exact {mark}"
    return f"{db(stage['snr_db'])}/{db(stage['snr_input_db'])} {mark}"


def widened_widths(summary: dict[str, Any] | None) -> str:
    """What `--mixed-precision` did: `-` (not asked), `12/64 in@10 3/64 w@10` (inputs of 12 of 64 layers and weights
    of 3 at 10 bits), or `missed`."""
    if not summary:
        return "-"
    if not summary["reached"]:
        return f"missed ({summary['snr_db']:.1f} dB at 16)"
    cells = []
    for kind, short in (("inputs", "in"), ("weights", "w")):
        counts: dict[int, int] = {}
        for bits in summary[f"widened_{kind}"].values():
            counts[bits] = counts.get(bits, 0) + 1
        cells += [f"{count}/{summary['layers']} {short}@{bits}" for bits, count in sorted(counts.items())]
    return " ".join(cells) or "none"


def table(results: dict[str, dict[str, Any]]) -> str:
    """The results as a fixed-width table, then each model's first error."""
    header = ("model", "unsupported ops", "compile", "interpreter", "machine int", "machine float",
              "xbars", "energy uJ", "wider", "time s")
    rows = []
    for name, result in results.items():
        compiled = result.get("compile_int", {})
        ok = compiled.get("status") == "ok"
        rows.append((name, ",".join(result.get("unsupported", [])) or "-", compiled.get("status", "-"),
                     verdict(result.get("interpreter")), verdict(result.get("machine_int")),
                     verdict(result.get("machine_float")), str(compiled["crossbars"]) if ok else "-",
                     f"{compiled['energy_uj']:.3g}" if ok else "-", widened_widths(compiled.get("mixed_precision")),
                     f"{result['seconds']:.0f}"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    checks = [[result.get(stage, {}) for stage in ("interpreter", "machine_int", "machine_float")]
              for result in results.values()]
    vacuous = [name for name, stages in zip(results, checks)
               if any(stage.get("constant_reference") for stage in stages)]
    passed = [name for name, stages in zip(results, checks)
              if all(stage.get("passed") for stage in stages) and name not in vacuous]
    lines += ["", f"SNR/input-dependent SNR in dB, worst output; {len(passed)} of {len(results)} models compile and "
                  f"verify in the interpreter and on the machine (int and float)" + (f": {', '.join(passed)}"
                                                                                     if passed else "")]
    if vacuous:
        lines.append(f"not counted, an output the reference computes the same for every input: {', '.join(vacuous)}")
    lines.append("")
    for name, result in results.items():
        flagged: dict[tuple[str, str], list[str]] = {}  # (output, note) → the verifications that noted it
        for stage in ("interpreter", "machine_int", "machine_float"):
            for output, note in (result.get(stage) or {}).get("notes", {}).items():
                flagged.setdefault((output, note), []).append(stage)
        lines += [f"{name}: * {', '.join(stages)}, output {output!r}: {note}"
                  for (output, note), stages in flagged.items()]
        first = next((result[s] for s in STAGES if s in result and result[s]["status"] != "ok"), None)
        if first is not None:
            lines.append(f"{name}: {first['status']}: {first['error'].removeprefix(result['path'] + ': ')}")
        elif result.get("ended") != "ok":
            lines.append(f"{name}: {result['ended']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"folder of .onnx files (default {DEFAULT_DIR})")
    parser.add_argument("--models", nargs="+", help="only these file stems")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per model (default 900)")
    parser.add_argument("--out", type=Path, help="write the table here and the results to its .json sibling")
    parser.add_argument("--mixed-precision", metavar="auto|DB",
                        help="as rcc's flag, for the integer compile (default: off, every input at 8 bits)")
    parser.add_argument("--calibrate-on-inputs", action="store_true",
                        help="calibrate the integer compile on NAME.inputs.npz (default: rcc's seeded random inputs)")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="as rcc's flag: compile NaN/Inf weights (a -inf mask constant) and propagate them")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        try_model(args.child, args.child_result, args.mixed_precision, args.calibrate_on_inputs, args.allow_nonfinite)
        return 0

    paths = sorted(args.dir.glob("*.onnx"))
    if args.models:
        paths = [p for p in paths if p.stem in args.models]
    if not paths:
        print(f"no .onnx files in {args.dir}" + (f" named {' '.join(args.models)}" if args.models else ""),
              file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        results[path.stem] = run_child(path, args.timeout, args.mixed_precision, args.calibrate_on_inputs,
                                       args.allow_nonfinite)
        compiled = results[path.stem].get("compile_int", {})
        print(f"{path.stem:32s} {compiled.get('status', '-'):6s} {results[path.stem]['seconds']:7.1f} s",
              file=sys.stderr, flush=True)
        if args.out:  # keep what is done so far
            args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    text = table(results)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
