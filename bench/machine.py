"""Benchmark: the machine model's speed against onnxruntime, and the cost of compiling.

For each model of the zoo (`models/*.onnx`) and onnx's light ResNet-50 and VGG-19, one run measures
- onnxruntime's median time per inference (CPUExecutionProvider, default session options, after a
  warm-up run);
- the machine's median time per inference in three modes: integer with the default lossless ADC,
  integer with a 6-bit ADC (`Target(adc_bits=6)`, which simulates every bit-slice), and float;
  each as a ratio to onnxruntime;
- the compile time of the default pipeline (`compile_model`, integer mode; median of 3
  compiles, 1 for VGG-19);
- the peak memory of compiling, read as VmHWM inside a fresh subprocess per model.

Targets (from the issue that asked for this benchmark):
- integer mode with the lossless ADC within 5x of onnxruntime;
- integer mode with a 6-bit ADC within 100x of onnxruntime;
- compiling VGG-19 (143 M weights) in under 60 s and under 4 GB peak memory.

    python bench/machine.py --quick --repeats 3
    python bench/machine.py --models lenet5 light_resnet50 --json results.json

Machine timings exclude building the `Machine` (programming its crossbars). Each machine mode gets a
warm-up run, then up to `--repeats` timed runs, stopping once the timed runs have taken
`--max-seconds`; when the warm-up alone takes longer than that, it is the only sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from rcc.backends.target import Target
from rcc.compiler.driver import Compiled, compile_model
from rcc.ir.inputs import random_inputs
from rcc.ir.errors import RccError
from rcc.ir.files import json_bytes, write_output
from rcc.runtime.machine import Machine

REPO = Path(__file__).resolve().parent.parent
LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
SLOW_MODEL = "light_vgg19"   # skipped by --quick

INT_RATIO_TARGET = 5.0
ADC6_RATIO_TARGET = 100.0
VGG_COMPILE_SECONDS_TARGET = 60.0
VGG_PEAK_MB_TARGET = 4096.0

# Runs in a fresh interpreter so the peak resident set belongs to one compilation alone.
_PEAK_MEMORY_CHILD = """
import json, sys, time
from rcc.compiler.driver import compile_model

def vm_kb(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])

imported_kb = vm_kb("VmHWM")
start = time.perf_counter()
compile_model(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "peak_kb": vm_kb("VmHWM"),
                  "after_imports_kb": imported_kb}))
"""


@dataclass
class ModelResult:
    name: str
    path: str
    crossbar_weights: int | None = None
    ort_ms: float | None = None
    int_ms: float | None = None
    adc6_ms: float | None = None
    float_ms: float | None = None
    compile_s: float | None = None
    peak_mb: float | None = None
    after_imports_mb: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)   # measurement → seconds per run
    errors: dict[str, str] = field(default_factory=dict)            # measurement → message

    def ratio(self, machine_ms: float | None) -> float | None:
        if machine_ms is None or not self.ort_ms:
            return None
        return machine_ms / self.ort_ms


def all_models() -> dict[str, Path]:
    models = {path.stem: path for path in sorted((REPO / "models").glob("*.onnx"))}
    for name in ("light_resnet50", SLOW_MODEL):
        models[name] = LIGHT_DIR / f"{name}.onnx"
    return models


def timed_runs(run: Callable[[], object], repeats: int, max_seconds: float, warm_up: bool = True) -> list[float]:
    """Seconds per call: a warm-up call, then up to `repeats` calls until `max_seconds` of them have run."""
    if warm_up:
        start = time.perf_counter()
        run()
        warm_up_seconds = time.perf_counter() - start
        if warm_up_seconds > max_seconds:
            return [warm_up_seconds]
    samples: list[float] = []
    while len(samples) < repeats and sum(samples) <= max_seconds:
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def onnxruntime_samples(path: Path, inputs: dict[str, np.ndarray], repeats: int, max_seconds: float) -> list[float]:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3   # silence warnings only; nothing that changes execution
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    feeds = {spec.name: inputs[spec.name] for spec in session.get_inputs()}
    return timed_runs(lambda: session.run(names, feeds), repeats, max_seconds)


def machine_samples(compiled: Compiled, inputs: dict[str, np.ndarray], repeats: int,
                    max_seconds: float) -> list[float]:
    machine = Machine(compiled.program)
    return timed_runs(lambda: machine.run(inputs), repeats, max_seconds)


def crossbar_weights(compiled: Compiled) -> int:
    program = compiled.program
    return sum(program.constants[i.src[1]].size for i in program.instructions if i.opcode == "mvm")


def peak_memory_of_compiling(path: Path) -> dict:
    """Compile `path` in a fresh interpreter; its VmHWM after compiling (kB) and more, as a dict."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    child = subprocess.run([sys.executable, "-c", _PEAK_MEMORY_CHILD, str(path)], capture_output=True,
                           text=True, env=env, cwd=REPO)
    if child.returncode != 0:
        raise RccError(f"compiling {path} in a subprocess failed: {child.stderr.strip().splitlines()[-1:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure_model(name: str, path: Path, repeats: int, max_seconds: float) -> ModelResult:
    result = ModelResult(name, str(path))

    def attempt(measurement: str, action: Callable[[], None]) -> None:
        try:
            action()
        except RccError as err:   # one model's failure should not end a long benchmark run
            result.errors[measurement] = str(err)

    def integer_lossless() -> None:
        compile_seconds = []
        start = time.perf_counter()
        compiled = compile_model(path, precision="int")
        compile_seconds.append(time.perf_counter() - start)
        while len(compile_seconds) < (1 if name == SLOW_MODEL else 3):
            start = time.perf_counter()
            compile_model(path, precision="int")
            compile_seconds.append(time.perf_counter() - start)
        result.samples["compile"] = compile_seconds
        result.compile_s = statistics.median(compile_seconds)
        result.crossbar_weights = crossbar_weights(compiled)
        inputs = random_inputs(compiled.graph, seed=0)
        result.samples["ort"] = onnxruntime_samples(path, inputs, repeats, max_seconds)
        result.ort_ms = median_ms(result.samples["ort"])
        result.samples["int"] = machine_samples(compiled, inputs, repeats, max_seconds)
        result.int_ms = median_ms(result.samples["int"])

    def integer_adc6() -> None:
        compiled = compile_model(path, target=Target(adc_bits=6), precision="int")
        result.samples["adc6"] = machine_samples(compiled, random_inputs(compiled.graph, seed=0), repeats,
                                                 max_seconds)
        result.adc6_ms = median_ms(result.samples["adc6"])

    def float_mode() -> None:
        compiled = compile_model(path, precision="float")
        result.samples["float"] = machine_samples(compiled, random_inputs(compiled.graph, seed=0), repeats,
                                                  max_seconds)
        result.float_ms = median_ms(result.samples["float"])

    def peak_memory() -> None:
        child = peak_memory_of_compiling(path)
        result.peak_mb = child["peak_kb"] / 1024.0
        result.after_imports_mb = child["after_imports_kb"] / 1024.0

    attempt("int", integer_lossless)
    attempt("adc6", integer_adc6)
    attempt("float", float_mode)
    attempt("peak_memory", peak_memory)
    return result


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


COLUMNS = ("model", "ort ms", "int ms", "×ort", "adc6 ms", "×ort", "float ms", "×ort", "compile s", "peak MB")


def table_rows(results: list[ModelResult]) -> list[tuple[str, ...]]:
    rows = []
    for r in results:
        rows.append((r.name, _cell(r.ort_ms, 3), _cell(r.int_ms, 2), _cell(r.ratio(r.int_ms), 1),
                     _cell(r.adc6_ms, 1), _cell(r.ratio(r.adc6_ms), 1), _cell(r.float_ms, 2),
                     _cell(r.ratio(r.float_ms), 1), _cell(r.compile_s, 2), _cell(r.peak_mb, 0)))
    return rows


def format_table(results: list[ModelResult]) -> str:
    rows = [COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def median_ratios(results: list[ModelResult]) -> dict[str, float | None]:
    medians = {}
    for mode in ("int", "adc6", "float"):
        ratios = [r.ratio(getattr(r, f"{mode}_ms")) for r in results]
        ratios = [x for x in ratios if x is not None]
        medians[mode] = statistics.median(ratios) if ratios else None
    return medians


def target_report(results: list[ModelResult]) -> list[str]:
    lines = []
    for mode, label, limit in (("int", "integer, lossless ADC", INT_RATIO_TARGET),
                               ("adc6", "integer, 6-bit ADC", ADC6_RATIO_TARGET)):
        ratios = {r.name: r.ratio(getattr(r, f"{mode}_ms")) for r in results}
        ratios = {name: x for name, x in ratios.items() if x is not None}
        if not ratios:
            continue
        worst = max(ratios, key=ratios.get)
        missed = sorted(name for name, x in ratios.items() if x > limit)
        verdict = "met" if not missed else f"missed by {len(missed)}/{len(ratios)} models ({', '.join(missed)})"
        lines.append(f"{label} within {limit:g}x of onnxruntime: {verdict}; worst {worst} {ratios[worst]:.1f}x")
    vgg = next((r for r in results if r.name == SLOW_MODEL), None)
    if vgg is not None and vgg.compile_s is not None:
        verdict = "met" if vgg.compile_s < VGG_COMPILE_SECONDS_TARGET else "missed"
        lines.append(f"compiling VGG-19 under {VGG_COMPILE_SECONDS_TARGET:g} s: {verdict} ({vgg.compile_s:.1f} s)")
    if vgg is not None and vgg.peak_mb is not None:
        verdict = "met" if vgg.peak_mb < VGG_PEAK_MB_TARGET else "missed"
        lines.append(f"compiling VGG-19 under 4 GB peak memory: {verdict} ({vgg.peak_mb:.0f} MB)")
    return lines


def environment() -> dict:
    return {"python": sys.version.split()[0], "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
            "cpus": os.cpu_count(),
            **{key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                     "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help=f"models by file stem (default: all); choose from {', '.join(all_models())}")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="stop repeating a measurement once its runs have taken this long (default 120)")
    parser.add_argument("--quick", action="store_true", help=f"skip {SLOW_MODEL}")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save the numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    known = all_models()
    unknown = [name for name in args.models or [] if name not in known]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = all_models()
    names = args.models or list(models)
    if args.quick:
        names = [name for name in names if name != SLOW_MODEL]
    results = []
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        result = measure_model(name, models[name], args.repeats, args.max_seconds)
        for measurement, message in result.errors.items():
            print(f"  {name} {measurement}: {message}", file=sys.stderr)
        results.append(result)
    print(format_table(results))
    medians = median_ratios(results)
    ratios = ", ".join(f"{mode} {_cell(value, 1)}x" for mode, value in medians.items())
    print(f"\nmedian ratio to onnxruntime: {ratios}")
    for line in target_report(results):
        print(line)
    if args.json:
        write_output(args.json, json_bytes({"environment": environment(), "repeats": args.repeats,
                                            "max_seconds": args.max_seconds, "median_ratios": medians,
                                            "targets": target_report(results),
                                            "models": [asdict(r) for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
