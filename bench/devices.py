"""Benchmark: accuracy on real devices against each non-ideality's strength, and the noisy machine's speed.

One run measures, on the trained digits model (models/trained, 540 test images):
- top-1 accuracy against the strength of each non-ideality on its own: programming noise (aihwkit's ReRAM
  fit, Wan et al. 2022, scaled), drift time (aihwkit's PCM model, globally compensated), stuck-at faults
  (total rate split 9:1 off:on as MNSIM's defaults), plain and fault-aware mapping, and the on/off ratio;
  noise points are the mean over `--trials` device seeds, fault points over `--trials` chips (fault seeds),
  each compiled for its chip when the mapping is fault-aware;
- the machine with every non-ideality on (aihwkit PCM programming noise, drift to 1 h with its 1/f read
  noise, 1% read noise, MNSIM's stuck-at rates and wire resistance, on/off ratio 100, ADC offset and gain
  error) against onnxruntime on a ResNet-18-sized model (ResNet-18's layers at 224×224, random weights),
  median time per inference of each, in the same run (onnxruntime timed before and after the machines), with
  the load average and the noisy run's CPU seconds. Target (issue 13): within 100× of onnxruntime.
Tables go to stdout; `--out DIR` also writes devices.json and one PNG curve per sweep.

    python bench/devices.py --trials 3 --out /tmp/devices
    python bench/devices.py --quick            # fewer points, 1 trial, no ResNet-18
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import helper

from deconv import GraphBuilder  # bench/ is the script's folder
from machine import MACHINE_WARM_UPS, median_ms, onnxruntime_samples, steady, timed_runs
from rcc.backends.device import Device, load_device
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model
from rcc.compiler.evaluate import evaluate_model
from rcc.ir.inputs import random_inputs
from rcc.runtime.machine import Machine

REPO = Path(__file__).resolve().parent.parent
TRAINED = REPO / "models" / "trained"
BATCH = 270

PLAIN = [("plain", Target(), False)]
# name: (x label, values, device for a value, columns: (label, target, fault-aware mapping))
SWEEPS = {
    "programming noise": ("ReRAM programming-noise scale (× Wan et al. 2022 σ)", [0.0, 0.5, 1.0, 2.0, 4.0],
                          lambda v: Device(g_max=40.0, programming_noise="reram", programming_noise_scale=v), PLAIN),
    "drift": ("time after programming (s), aihwkit PCM, compensated", [0.0, 3600.0, 86400.0, 2.6e6, 3.15e7],
              lambda v: load_device("pcm-aihwkit").with_overrides(time_s=v), PLAIN),
    "stuck-at faults": ("stuck-at rate (off:on = 9:1)", [0.0, 0.01, 0.02, 0.05, 0.1, 0.2],
                        lambda v: Device(stuck_off_rate=0.9 * v, stuck_on_rate=0.1 * v),
                        [*PLAIN, ("fault-aware", Target(), True)]),
    # a differential pair's two columns carry the same off-state current, which cancels; offset encoding's does not
    "on/off ratio": ("on/off ratio", [math.inf, 1000.0, 100.0, 30.0, 10.0], lambda v: Device(on_off_ratio=v),
                     [("differential", Target(), False), ("offset encoding", Target(encoding="offset"), False)]),
}
ALL_ON = Device(name="all", programming_noise="pcm", read_noise=0.01, drift="pcm", time_s=3600.0,
                stuck_off_rate=0.09, stuck_on_rate=0.01, wire_resistance=2.82, on_off_ratio=100.0,
                adc_offset=0.1, adc_gain_error=0.01)


def digits_accuracy(device: Device, target: Target, trials: int, fault_aware: bool) -> dict:
    """Accuracies over `trials` device seeds, or over `trials` chips (fault seeds) when the device has faults."""
    data, labels = {"pixels": np.load(TRAINED / "digits_test.npz")["pixels"]}, np.load(TRAINED / "digits_test_labels.npy")
    model = TRAINED / "digits_mlp.onnx"
    if not device.has_faults:
        result = evaluate_model(model, data, labels, target, device, trials=trials, batch=BATCH)
        return {"accuracy": result["accuracy"]["trials"], "onnxruntime": result["onnxruntime_accuracy"]}
    per_chip = [evaluate_model(model, data, labels, target, device.with_overrides(fault_seed=chip), batch=BATCH,
                               fault_aware=fault_aware) for chip in range(trials)]
    return {"accuracy": [r["accuracy"]["mean"] for r in per_chip], "onnxruntime": per_chip[0]["onnxruntime_accuracy"]}


def run_sweeps(trials: int, quick: bool) -> dict:
    results = {}
    for name, (label, values, make, columns) in SWEEPS.items():
        rows = [{"value": value, **{column: digits_accuracy(make(value), target, trials, aware)
                                    for column, target, aware in columns}}
                for value in (values[::2] if quick else values)]
        results[name] = {"label": label, "columns": [column for column, _, _ in columns], "rows": rows}
        print_sweep(name, results[name])
    return results


def _mean(entry: dict) -> float:
    return 100 * float(np.mean(entry["accuracy"]))


def print_sweep(name: str, sweep: dict) -> None:
    rows, columns = sweep["rows"], sweep["columns"]
    print(f"\n## {name}: digits_mlp top-1 accuracy (%), float onnxruntime "
          f"{100 * rows[0][columns[0]]['onnxruntime']:.2f}%")
    print(f"| {sweep['label']} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for row in rows:
        print(f"| {row['value']:g} | " + " | ".join(f"{_mean(row[c]):.2f}" for c in columns) + " |")


def plot_sweeps(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, sweep in results.items():
        figure, axes = plt.subplots(figsize=(5, 3.5))
        rows = sweep["rows"]
        xs = [r["value"] if math.isfinite(r["value"]) else 1e4 for r in rows]
        for column, marker in zip(sweep["columns"], ("o-", "s-")):
            axes.plot(xs, [_mean(r[column]) for r in rows], marker, label=column)
        if name in ("drift", "on/off ratio"):
            axes.set_xscale("symlog" if name == "drift" else "log")
        axes.set_xlabel(sweep["label"] + (" (inf drawn at 1e4)" if name == "on/off ratio" else ""))
        axes.set_ylabel("top-1 accuracy (%)")
        axes.set_title(f"digits_mlp: {name}")
        axes.legend()
        figure.tight_layout()
        figure.savefig(out / f"devices_{name.replace('/', '_').replace(' ', '_')}.png", dpi=100)
        plt.close(figure)


def resnet18() -> object:
    """ResNet-18's convolutions at 224×224 (BN folded away: conv with bias), random He-normal weights."""
    builder = GraphBuilder(seed=18)

    def conv(x: str, name: str, cin: int, cout: int, kernel: int, stride: int, relu: bool = True) -> str:
        weight = builder.rng.standard_normal((cout, cin, kernel, kernel)) * math.sqrt(2 / (cin * kernel * kernel))
        inputs = [x, builder.tensor(f"{name}.weight", weight), builder.tensor(f"{name}.bias", np.zeros(cout))]
        builder.nodes.append(helper.make_node("Conv", inputs, [name], name=name, kernel_shape=[kernel, kernel],
                                              strides=[stride, stride], pads=[kernel // 2] * 4))
        if not relu:
            return name
        builder.nodes.append(helper.make_node("Relu", [name], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    x = conv("image", "stem", 3, 64, 7, 2)
    builder.nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                                          pads=[1, 1, 1, 1]))
    x, channels = "pool", 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            name = f"s{stage}b{block}"
            y = conv(conv(x, f"{name}.conv1", channels, width, 3, stride), f"{name}.conv2", width, width, 3, 1, False)
            shortcut = conv(x, f"{name}.proj", channels, width, 1, stride, False) if stride > 1 or channels != width else x
            x = builder.add(y, shortcut, f"{name}.add")
            builder.nodes.append(helper.make_node("Relu", [x], [f"{name}.relu"], name=f"{name}.relu"))
            x, channels = f"{name}.relu", width
    builder.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    builder.nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat"))
    weight = builder.tensor("fc.weight", builder.rng.standard_normal((512, 1000)) * math.sqrt(2 / 512))
    builder.nodes.append(helper.make_node("MatMul", ["flat", weight], ["logits"], name="fc"))
    return builder.model("resnet18", {"image": [1, 3, 224, 224]}, "logits", [1, 1000])


def speed(repeats: int, max_seconds: float) -> dict:
    """Median times per inference; onnxruntime is timed before and after the machines (its samples pooled) so a
    change of the shared machine's load during the run weighs on both sides; the load average and the noisy
    run's CPU seconds (all threads) are reported beside them."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet18.onnx"
        path.write_bytes(resnet18().SerializeToString())
        compiled = compile_model(path)
        inputs = random_inputs(compiled.graph, 0)
        ort_samples = onnxruntime_samples(path, inputs, repeats, max_seconds)
        start = time.perf_counter()
        machine = steady(Machine(compiled.program, device=ALL_ON, seed=0))
        programming_s = time.perf_counter() - start
        cpu_seconds: list[float] = []

        def noisy_run() -> None:
            cpu = time.process_time()
            machine.run(inputs)
            cpu_seconds.append(time.process_time() - cpu)

        noisy_ms = median_ms(timed_runs(noisy_run, repeats, max_seconds, MACHINE_WARM_UPS))
        ideal = steady(Machine(compiled.program))
        ideal_ms = median_ms(timed_runs(lambda: ideal.run(inputs), repeats, max_seconds, MACHINE_WARM_UPS))
        ort_samples += onnxruntime_samples(path, inputs, repeats, max_seconds)
    ort_ms = median_ms(ort_samples)
    load = (load_before[0], os.getloadavg()[0])
    weights = sum(int(np.prod(i.attrs["weights_shape"])) for i in compiled.program.instructions if i.opcode == "mvm")
    result = {"weights": weights, "onnxruntime_ms": ort_ms, "noisy_machine_ms": noisy_ms, "ideal_machine_ms": ideal_ms,
              "noisy_ratio": noisy_ms / ort_ms, "programming_s": programming_s,
              "noisy_cpu_s": float(np.median(cpu_seconds)), "load_average_1min": load, "cores": os.cpu_count()}
    print(f"\n## speed: ResNet-18-sized model ({weights / 1e6:.1f} M weights), every non-ideality on")
    print("| onnxruntime | ideal machine | noisy machine (CPU s) | noisy / onnxruntime | programming the noisy chip "
          "| load average (1 min) |")
    print("|---|---|---|---|---|---|")
    print(f"| {ort_ms:.1f} ms | {ideal_ms:.0f} ms | {noisy_ms:.0f} ms ({result['noisy_cpu_s']:.1f}) | "
          f"{noisy_ms / ort_ms:.1f}× (target ≤ 100×) | {programming_s:.1f} s | {load[0]:.1f} → {load[1]:.1f} "
          f"on {os.cpu_count()} cores |")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="accuracy versus device non-idealities, and the noisy machine's speed")
    parser.add_argument("--trials", type=int, default=3, help="device seeds (noise) or chips (faults) per point")
    parser.add_argument("--quick", action="store_true", help="every other point, 1 trial, no ResNet-18 timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, help="write devices.json and the PNG curves here")
    parser.add_argument("--speed-only", action="store_true", help="only the noisy machine's speed (no sweeps)")
    args = parser.parse_args(argv)
    trials = 1 if args.quick else args.trials
    results = {} if args.speed_only else {"sweeps": run_sweeps(trials, args.quick)}
    if not args.quick:
        results["speed"] = speed(args.repeats, args.max_seconds)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        if "sweeps" in results:
            plot_sweeps(results["sweeps"], args.out)
        (args.out / "devices.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
