"""Benchmark: the machine model's speed and memory against onnxruntime, measured in the same run.

Models: the zoo (`models/*.onnx`) and VGG-19, ResNet-50 (224×224) and a CIFAR ResNet-18 built in
`bench/nets.py` with random weights. Per model, one run measures (medians):
- onnxruntime per inference with 1 intra-op thread and with its default threads (CPUExecutionProvider);
- the machine per inference, integer mode with the default lossless ADC, with numpy's BLAS at its
  default thread count and at 1 thread (threadpoolctl), and as a batch of `--batch` samples (one run:
  per-inference time and throughput);
- the machine with a 6-bit ADC (`Target(adc_bits=6)`: every input and weight bit-slice simulated) and in
  float mode;
- the compile time of the default pipeline (integer mode);
- with `--memory`, the machine's peak memory in a fresh process that loads the program, builds the
  machine and runs one inference (tracemalloc peak, numpy's buffers included, and VmHWM), beside the
  model's float32 weights and its largest im2col buffer;
- `rcc run PROGRAM` start-up on lenet5 and `rcc --help` (median wall time of `--repeats` subprocesses, at
  most STARTUP_RUNS) beside `python -c "import numpy"`.
It prints `uptime`'s load average before and after: the machine is shared, so quote ratios measured
in the same run.

Targets (issue 16): integer lossless within 2x of onnxruntime (1 thread) on VGG-19 and ResNet-50, 3x on
the CIFAR ResNet-18, 5x on the zoo; 6-bit ADC within 64x on VGG-19 and ResNet-50; `rcc run` on a small
model under 0.3 s; peak memory on VGG-19 under 2x its float32 weights plus its largest im2col buffer.

    python bench/machine.py --quick --repeats 3          # skip VGG-19
    python bench/machine.py --models lenet5 resnet50 --memory --json results.json

Machine timings exclude building the `Machine` (programming its crossbars). Each measurement gets a
warm-up run, then up to `--repeats` timed runs, stopping once the timed runs have taken
`--max-seconds`; when the warm-up alone takes longer than that, it is the only sample. onnxruntime (both
thread counts) and the integer lossless machine (both BLAS thread counts, and the batch) take turns in
blocks of about TURN_SECONDS each until every one has its samples, so that the ratios compare runs made
under the same load: the shared machine's speed drifts by tens of percent over seconds, which made two
runs of the same command disagree on a ratio (bilinear_seg_head 6.6x and 3.9x, back to back). A block
keeps its contender's data in the caches, as a run of one model over a data set would.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
from threadpoolctl import threadpool_info, threadpool_limits

from nets import NETS  # bench/ is the script's folder
from rcc.backends.program import save_program
from rcc.backends.target import Target
from rcc.compiler.driver import Compiled, compile_model
from rcc.ir.errors import RccError
from rcc.ir.files import json_bytes, write_output
from rcc.ir.inputs import random_inputs
from rcc.runtime.machine import Machine

REPO = Path(__file__).resolve().parent.parent
SLOW_MODEL = "vgg19"   # skipped by --quick
LARGE = ("vgg19", "resnet50", "cifar_resnet18")
INT_TARGETS = {"vgg19": 2.0, "resnet50": 2.0, "cifar_resnet18": 3.0}   # others: the zoo's 5x
ZOO_INT_TARGET = 5.0
ADC6_TARGET = 64.0       # on VGG-19 and ResNet-50
STARTUP_TARGET_S = 0.3
STARTUP_RUNS = 15        # subprocesses per start-up figure at most
MEMORY_MODEL = "vgg19"

# A fresh interpreter, so the peak belongs to one program's machine alone.
_MACHINE_MEMORY_CHILD = """
import json, sys, tracemalloc
import numpy as np
from rcc.backends.program import load_program
from rcc.runtime.machine import Machine

def vm_kb(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])

before_kb = vm_kb("VmRSS")
tracemalloc.start()
program = load_program(sys.argv[1])
inputs = {spec["name"]: np.random.default_rng(0).standard_normal(spec["shape"]).astype(np.float32)
          for spec in program.inputs}
machine = Machine(program)
machine.run(inputs)
first = {"traced_peak_bytes": tracemalloc.get_traced_memory()[1], "vm_hwm_kb": vm_kb("VmHWM"),
         "rss_before_kb": before_kb}
tracemalloc.reset_peak()
machine.plan.compile_after_seconds = 0.0   # then the compiled steps (numba kernels, the integer GEMM's sessions)
machine.run(inputs)
print(json.dumps({**first, "compiled_traced_peak_bytes": tracemalloc.get_traced_memory()[1],
                  "compiled_vm_hwm_kb": vm_kb("VmHWM")}))
"""


@dataclass
class ModelResult:
    name: str
    crossbar_weights: int | None = None
    ort1_ms: float | None = None        # onnxruntime, 1 intra-op thread
    ort_ms: float | None = None         # onnxruntime, default threads
    int_ms: float | None = None         # machine, integer lossless, BLAS default threads
    int1_ms: float | None = None        # the same with BLAS at 1 thread
    batch_ms: float | None = None       # per inference within one batch run
    adc6_ms: float | None = None
    float_ms: float | None = None
    compile_s: float | None = None
    memory: dict = field(default_factory=dict)
    profile: dict[str, float] = field(default_factory=dict)          # int@1: ms per run by instruction kind
    samples: dict[str, list[float]] = field(default_factory=dict)   # measurement → seconds per run
    errors: dict[str, str] = field(default_factory=dict)            # measurement → message

    def ratio(self, machine_ms: float | None, reference: str = "ort1_ms") -> float | None:
        base = getattr(self, reference)
        return None if machine_ms is None or not base else machine_ms / base


# A Machine's first run records its counts; its single-sample runs switch to compiled steps
# (runtime/compiled_steps.py) once they have taken `Plan.compile_after_seconds` in all (a second). `steady`
# sets that to 0, so the warm-up's second run switches: the samples are the steady state a data set reaches.
MACHINE_WARM_UPS = 3


def steady(machine: Machine) -> Machine:
    machine.plan.compile_after_seconds = 0.0
    return machine


def warm_up(run: Callable[[], object], warm_ups: int, max_seconds: float) -> float:
    """Seconds of the last of `warm_ups` calls; it stops early after a call longer than `max_seconds`, but not
    after the first: a machine's first run builds what later runs keep (a narrow ADC's sliced cells, numba's
    kernels: VGG-19's first run at a 6-bit ADC takes 18 s, later ones 10), so the figure is at least the
    second call's."""
    seconds = 0.0
    for call in range(max(warm_ups, 2)):
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        if call > 0 and seconds > max_seconds:
            break
    return seconds


def timed_runs(run: Callable[[], object], repeats: int, max_seconds: float, warm_ups: int = 1) -> list[float]:
    """Seconds per call: `warm_ups` warm-up calls, then up to `repeats` calls until `max_seconds` of them have run."""
    warm_up_seconds = warm_up(run, warm_ups, max_seconds)
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


def onnxruntime_session(path: Path, inputs: dict[str, np.ndarray], threads: int = 0) -> Callable[[], object]:
    """One onnxruntime run of `inputs` with `threads` intra-op threads (0: its default)."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3   # silence warnings only; nothing that changes execution
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    feeds = {spec.name: inputs[spec.name] for spec in session.get_inputs()}
    return lambda: session.run(names, feeds)


def onnxruntime_samples(path: Path, inputs: dict[str, np.ndarray], repeats: int, max_seconds: float,
                        threads: int = 0) -> list[float]:
    """onnxruntime's seconds per run with `threads` intra-op threads (0: its default)."""
    return timed_runs(onnxruntime_session(path, inputs, threads), repeats, max_seconds)


@dataclass
class Contender:
    """One side of an interleaved measurement: a call, its warm-up calls, and what to hold while it runs."""
    run: Callable[[], object]
    warm_ups: int = 1
    holding: Callable[[], AbstractContextManager] = nullcontext


# Interleaved measurements take turns in blocks of about this long, so that every contender sees the same
# shared machine (its load swings over seconds) and each block runs with its own data in the caches.
TURN_SECONDS = 0.05


def interleaved_runs(contenders: dict[str, Contender], repeats: int, max_seconds: float) -> dict[str, list[float]]:
    """Seconds per call of each contender, measured in turns: each takes a block of calls (about `TURN_SECONDS`)
    in turn until it has `repeats` calls or `max_seconds` of them; a contender whose warm-up alone takes
    longer than that keeps the warm-up as its one sample."""
    samples: dict[str, list[float]] = {}
    block: dict[str, int] = {}
    for name, contender in contenders.items():
        with contender.holding():
            seconds = warm_up(contender.run, contender.warm_ups, max_seconds)
        if seconds > max_seconds:
            samples[name] = [seconds]
        else:
            samples[name], block[name] = [], max(1, round(TURN_SECONDS / max(seconds, 1e-6)))
    while block:
        for name in list(block):
            contender, taken = contenders[name], samples[name]
            with contender.holding():
                for _ in range(min(block[name], repeats - len(taken))):
                    start = time.perf_counter()
                    contender.run()
                    taken.append(time.perf_counter() - start)
            if len(taken) >= repeats or sum(taken) > max_seconds:
                del block[name]
    return samples


def machine_samples(compiled: Compiled, inputs: dict[str, np.ndarray], repeats: int,
                    max_seconds: float) -> list[float]:
    machine = steady(Machine(compiled.program))
    return timed_runs(lambda: machine.run(inputs), repeats, max_seconds, MACHINE_WARM_UPS)


def blas_threads() -> int:
    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)


def batch_inputs(inputs: dict[str, np.ndarray], batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    """`batch` samples along the leading axis of every input: the given one first, then seeded draws."""
    rng = np.random.default_rng(seed)
    return {name: np.concatenate([array, *(rng.standard_normal(array.shape).astype(array.dtype)
                                           for _ in range(batch - 1))]) for name, array in inputs.items()}


def machine_profile(machine: Machine, inputs: dict[str, np.ndarray], runs: int, run_ms: float) -> dict[str, float]:
    """Milliseconds per run by kind of instruction (opcode, or a vector op's IR op) over `runs` runs, and the
    rest of the measured `run_ms` (input checks, counts, the plan's loop) as "outside steps"."""
    timings: dict[str, float] = {}
    for _ in range(runs):
        machine.run(inputs, timings=timings)
    profile = {kind: 1e3 * seconds / runs for kind, seconds in sorted(timings.items(), key=lambda kv: -kv[1])}
    profile["outside steps"] = max(0.0, run_ms - sum(profile.values()))
    return profile


def crossbar_weights(compiled: Compiled) -> int:
    program = compiled.program
    return sum(program.constants[i.src[1]].size for i in program.instructions if i.opcode == "mvm")


def largest_im2col_bytes(compiled: Compiled) -> int:
    """The largest vectors buffer an mvm reads (int32 in integer mode)."""
    program = compiled.program
    return max((4 * int(np.prod(shape)) for i in program.instructions if i.opcode == "im2col" for shape in i.shapes),
               default=0)


def machine_memory(compiled: Compiled) -> dict:
    """The machine's peak memory running `compiled` once, in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.rccp"
        save_program(compiled.program, path)
        child = subprocess.run([sys.executable, "-c", _MACHINE_MEMORY_CHILD, str(path)], capture_output=True,
                               text=True, env=env, cwd=REPO)
    if child.returncode != 0:
        raise RccError(f"the memory child failed: {child.stderr.strip().splitlines()[-1:]}")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    weights_bytes, im2col_bytes = 4 * crossbar_weights(compiled), largest_im2col_bytes(compiled)
    return {**measured, "float32_weights_bytes": weights_bytes, "largest_im2col_bytes": im2col_bytes,
            "limit_bytes": 2 * weights_bytes + im2col_bytes}


def measure_model(name: str, path: Path, args: argparse.Namespace) -> ModelResult:
    result = ModelResult(name)
    repeats, max_seconds = args.repeats, args.max_seconds

    def attempt(measurement: str, action: Callable[[], None]) -> None:
        try:
            action()
        except RccError as err:   # one model's failure should not end a long benchmark run
            result.errors[measurement] = str(err)

    def sample(key: str, run: Callable[[], list[float]]) -> float:
        result.samples[key] = run()
        return median_ms(result.samples[key])

    def integer_lossless() -> None:
        start = time.perf_counter()
        compiled = compile_model(path, precision="int")
        result.compile_s = time.perf_counter() - start
        result.crossbar_weights = crossbar_weights(compiled)
        inputs = random_inputs(compiled.graph, seed=0)
        machine = steady(Machine(compiled.program))
        contenders = {"ort1": Contender(onnxruntime_session(path, inputs, 1)),
                      "ort": Contender(onnxruntime_session(path, inputs)),
                      "int": Contender(lambda: machine.run(inputs), MACHINE_WARM_UPS),
                      "int1": Contender(lambda: machine.run(inputs), MACHINE_WARM_UPS,
                                        lambda: threadpool_limits(1, user_api="blas"))}
        if all(spec["shape"][:1] == [1] for spec in compiled.program.inputs):   # else the model fixes its batch
            batch = batch_inputs(inputs, args.batch)
            contenders["batch"] = Contender(lambda: machine.run(batch), MACHINE_WARM_UPS)
        result.samples.update(interleaved_runs(contenders, repeats, max_seconds))
        result.ort1_ms, result.ort_ms, result.int_ms, result.int1_ms = (
            median_ms(result.samples[key]) for key in ("ort1", "ort", "int", "int1"))
        if "batch" in result.samples:
            result.batch_ms = median_ms(result.samples["batch"]) / args.batch
        with threadpool_limits(1, user_api="blas"):
            result.profile = machine_profile(machine, inputs, len(result.samples["int1"]), result.int1_ms)
        if args.memory and name == MEMORY_MODEL:
            result.memory = machine_memory(compiled)

    def integer_adc6() -> None:
        compiled = compile_model(path, target=Target(adc_bits=6), precision="int")
        result.adc6_ms = sample("adc6", lambda: machine_samples(compiled, random_inputs(compiled.graph, seed=0),
                                                                repeats, max_seconds))

    def float_mode() -> None:
        compiled = compile_model(path, precision="float")
        result.float_ms = sample("float", lambda: machine_samples(compiled, random_inputs(compiled.graph, seed=0),
                                                                  repeats, max_seconds))

    attempt("int", integer_lossless)
    attempt("adc6", integer_adc6)
    if not args.no_float:
        attempt("float", float_mode)
    return result


def startup(repeats: int, program: Path, inputs: Path) -> dict[str, float]:
    """Median wall seconds (of at most STARTUP_RUNS runs) of `rcc run` on a small program, of `rcc --help`, and of
    `python -c "import numpy"`, as Python runs
    by default: with its bytecode cache (a warm-up run writes it, into a cache folder beside the program;
    PYTHONDONTWRITEBYTECODE, which some sandboxes set, is left out of the children's environment).
    `rcc_run_nocache_s`: the same with every module compiled from source on each run (an empty cache folder
    that nothing may write to), reported beside it."""
    base = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    cached = {**base, "PYTHONPYCACHEPREFIX": str(program.parent / "pycache")}
    uncached = {**base, "PYTHONPYCACHEPREFIX": str(program.parent / "empty"), "PYTHONDONTWRITEBYTECODE": "1"}

    def median_wall(command: list[str], env: dict[str, str]) -> float:
        subprocess.run(command, check=True, capture_output=True, env=env)   # warm-up: writes the bytecode cache
        seconds = []
        for _ in range(min(max(repeats, 3), STARTUP_RUNS)):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)
    rcc = [sys.executable, "-m", "rcc", "run", str(program), "--inputs", str(inputs), "-o",
           str(program.with_suffix(".out.npz")), "-q"]
    return {"rcc_run_s": median_wall(rcc, cached),
            "rcc_help_s": median_wall([sys.executable, "-m", "rcc", "--help"], cached),
            "rcc_run_nocache_s": median_wall(rcc, uncached),
            "import_numpy_s": median_wall([sys.executable, "-c", "import numpy"], cached),
            "python_s": median_wall([sys.executable, "-c", "pass"], cached)}


def measure_startup(repeats: int) -> dict[str, float]:
    compiled = compile_model(REPO / "models" / "lenet5.onnx")
    with tempfile.TemporaryDirectory() as folder:
        program, inputs = Path(folder) / "lenet5.rccp", Path(folder) / "inputs.npz"
        save_program(compiled.program, program)
        np.savez(inputs, **random_inputs(compiled.graph, seed=0))
        return startup(repeats, program, inputs)


def all_models() -> list[str]:
    return [path.stem for path in sorted((REPO / "models").glob("*.onnx"))] + list(NETS)


def model_path(name: str, folder: Path) -> Path:
    """A zoo model's file, or a built network saved into `folder`."""
    if name not in NETS:
        return REPO / "models" / f"{name}.onnx"
    path = folder / f"{name}.onnx"
    path.write_bytes(NETS[name]().SerializeToString())
    return path


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


COLUMNS = ("model", "ort1 ms", "ort ms", "int ms", "×ort1", "int@1 ms", "×ort1", "batch ms/inf", "×ort1",
           "adc6 ms", "×ort1", "float ms", "×ort1", "compile s")


def table_rows(results: list[ModelResult]) -> list[tuple[str, ...]]:
    rows = []
    for r in results:
        rows.append((r.name, _cell(r.ort1_ms, 2), _cell(r.ort_ms, 2), _cell(r.int_ms, 2), _cell(r.ratio(r.int_ms), 1),
                     _cell(r.int1_ms, 2), _cell(r.ratio(r.int1_ms), 1), _cell(r.batch_ms, 2),
                     _cell(r.ratio(r.batch_ms), 1), _cell(r.adc6_ms, 1), _cell(r.ratio(r.adc6_ms), 1),
                     _cell(r.float_ms, 2), _cell(r.ratio(r.float_ms), 1), _cell(r.compile_s, 1)))
    return rows


def format_table(results: list[ModelResult]) -> str:
    rows = [COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _verdict(ratio: float, limit: float) -> str:
    return f"{ratio:.1f}x ({'met' if ratio <= limit else 'MISSED'}, target {limit:g}x)"


def target_report(results: list[ModelResult], start_up: dict | None) -> list[str]:
    """One line per target: the best machine figure (default or 1-thread BLAS) against onnxruntime at 1 thread."""
    lines = []
    for r in results:
        best = min((x for x in (r.ratio(r.int_ms), r.ratio(r.int1_ms)) if x is not None), default=None)
        if best is not None:
            lines.append(f"{r.name}: integer lossless {_verdict(best, INT_TARGETS.get(r.name, ZOO_INT_TARGET))}")
            if best > INT_TARGETS.get(r.name, ZOO_INT_TARGET) and r.profile:
                kinds = [item for item in r.profile.items() if item[0] != "outside steps"][:5]
                lines.append("    where int@1's time goes (ms per run): " + ", ".join(
                    f"{kind} {ms:.2f}" for kind, ms in [*kinds, ("outside steps", r.profile["outside steps"])]))
        if r.name in ("vgg19", "resnet50") and r.ratio(r.adc6_ms) is not None:
            lines.append(f"{r.name}: integer 6-bit ADC {_verdict(r.ratio(r.adc6_ms), ADC6_TARGET)}")
        if r.memory:
            peak, limit = r.memory["traced_peak_bytes"], r.memory["limit_bytes"]
            lines.append(f"{r.name}: machine peak memory {peak / 2**20:.0f} MiB traced (VmHWM "
                         f"{r.memory['vm_hwm_kb'] / 1024:.0f} MiB) vs 2 x float32 weights + largest im2col = "
                         f"{limit / 2**20:.0f} MiB: {'met' if peak < limit else 'MISSED'}")
            if "compiled_vm_hwm_kb" in r.memory:
                growth = (r.memory["compiled_vm_hwm_kb"] - r.memory["rss_before_kb"]) * 1024
                lines.append(f"{r.name}: with the compiled steps (numba, the integer GEMM's sessions): "
                             f"{r.memory['compiled_traced_peak_bytes'] / 2**20:.0f} MiB traced, VmHWM "
                             f"{r.memory['compiled_vm_hwm_kb'] / 1024:.0f} MiB ({growth / 2**20:.0f} MiB beyond the "
                             f"interpreter's start): {'met' if growth < limit else 'MISSED'}")
    if start_up:
        verdict = "met" if start_up["rcc_run_s"] < STARTUP_TARGET_S else "MISSED"
        help_verdict = "met" if start_up["rcc_help_s"] < STARTUP_TARGET_S else "MISSED"
        lines.append(f"rcc --help: {start_up['rcc_help_s']:.2f} s ({help_verdict}, target {STARTUP_TARGET_S} s)")
        lines.append(f"rcc run lenet5: {start_up['rcc_run_s']:.2f} s ({verdict}, target {STARTUP_TARGET_S} s; "
                     f"{start_up['rcc_run_nocache_s']:.2f} s compiling every module from source); python -c "
                     f"'import numpy' {start_up['import_numpy_s']:.2f} s, bare python {start_up['python_s']:.2f} s "
                     f"in the same run")
    return lines


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def environment() -> dict:
    return {"python": sys.version.split()[0], "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
            "cpus": os.cpu_count(), "blas_threads": blas_threads(), "ort_default_threads": "onnxruntime's default (0)",
            **{key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                     "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help=f"models (default: all); choose from {', '.join(all_models())}")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="stop repeating a measurement once its runs have taken this long (default 120)")
    parser.add_argument("--batch", type=int, default=4, help="samples in the batch measurement (default 4)")
    parser.add_argument("--quick", action="store_true", help=f"skip {SLOW_MODEL}")
    parser.add_argument("--memory", action="store_true", help=f"measure the machine's peak memory on {MEMORY_MODEL}")
    parser.add_argument("--no-float", action="store_true", help="skip the float-mode measurement")
    parser.add_argument("--no-startup", action="store_true", help="skip the rcc run start-up measurement")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save the numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be at least 1")
    unknown = [name for name in args.models or [] if name not in all_models()]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(all_models())}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [name for name in args.models or all_models() if not (args.quick and name == SLOW_MODEL)]
    load_before = load_average()
    env = environment()
    print(f"load before: {load_before}\nBLAS threads {env['blas_threads']} (int@1: 1), onnxruntime 1 thread "
          f"(ort1) and its default (ort), {env['cpus']} CPUs", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            result = measure_model(name, model_path(name, Path(folder)), args)
            for measurement, message in result.errors.items():
                print(f"  {name} {measurement}: {message}", file=sys.stderr)
            results.append(result)
    start_up = None if args.no_startup else measure_startup(args.repeats)
    print(format_table(results))
    for line in target_report(results, start_up):
        print(line)
    load_after = load_average()
    print(f"load after: {load_after}")
    if args.json:
        write_output(args.json, json_bytes({"environment": env, "load_before": load_before, "load_after": load_after,
                                            "repeats": args.repeats, "batch": args.batch, "startup": start_up,
                                            "targets": target_report(results, start_up),
                                            "models": [asdict(r) for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
