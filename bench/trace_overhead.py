"""Trace cost against a plain forward pass, and trace memory against full activation capture.

Prints, measured side by side in one run:
- time: plain compiled forward pass of a batch vs ``trace_model`` of the same batch (eager walk
  with compiled reductions, the default; and the whole trace compiled, warm), as ratios;
- memory: peak resident memory added while the second call runs (each method in its own child
  process, so peaks do not mix) for the plain forward pass, the trace, and full activation
  capture the way keract does it (one functional model over every layer output, every
  activation returned to the host as numpy). keract itself is tried first; keract 4.5 calls
  tf.keras 2 internals that Keras 3 no longer has, and then the same method is run directly.

Usage: python bench/trace_overhead.py [--batch 32] [--repeats 5] [--model mobilenetv2|unet|all]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np


def build(name: str):
    from ptytui.core.tfload import keras as _keras

    keras = _keras()
    keras.utils.set_random_seed(0)
    if name == "mobilenetv2":
        model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10)
        shape = (64, 64, 3)
    elif name == "unet":
        from ptytui.networks.architectures import build_supervised_unet

        model = build_supervised_unet(64, (8, 16, 32))  # the scenario's supervised U-Net, N = 64
        shape = (64, 64, 1)
    else:
        raise SystemExit(f"unknown model {name!r}")
    return model, shape


def batch_for(shape, batch: int) -> np.ndarray:
    return np.random.default_rng(0).random((batch,) + shape).astype(np.float32)


def full_capture(model, x):
    """keract's method: evaluate every layer's output at once and return them all as numpy."""
    try:
        import keract  # noqa: PLC0415

        return keract.get_activations(model, x, auto_compile=True), "keract"
    except Exception as exc:  # noqa: BLE001 - keract 4.5 does not run on Keras 3
        reason = f"keract failed ({type(exc).__name__}: {str(exc)[:80]}); same method run directly"
    from ptytui.core.tfload import keras as _keras

    keras = _keras()
    cache = getattr(model, "_bench_extractor", None)
    if cache is None:
        outputs = [layer.output for layer in model.layers[1:]]
        cache = keras.Model(model.inputs, outputs)
        model._bench_extractor = cache
    activations = cache.predict_on_batch(x)
    return dict(zip([layer.name for layer in model.layers[1:]], activations)), reason


def run_method(method: str, model, x):
    from ptytui.core.tfload import tf as _tf
    from ptytui.running.trace import trace_model

    tf = _tf()
    if method == "forward":
        fn = getattr(model, "_bench_forward", None)
        if fn is None:
            fn = tf.function(lambda v: model(v, training=False), autograph=False)
            model._bench_forward = fn
        return np.asarray(fn(x))
    if method == "trace":
        return trace_model(model, x, with_weights=False)
    if method == "trace-compiled":
        return trace_model(model, x, with_weights=False, compiled=True)
    if method == "full-capture":
        return full_capture(model, x)
    raise SystemExit(f"unknown method {method!r}")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(method: str, model_name: str, batch: int) -> None:
    """Measure one method's memory in a fresh process: peak RSS added during the second call."""
    model, shape = build(model_name)
    x = batch_for(shape, batch)
    result = run_method(method, model, x)  # first call: graph building, caches
    del result
    base = rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    started = time.perf_counter()
    result = run_method(method, model, x)
    seconds = time.perf_counter() - started
    _, host_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak[0] = max(peak[0], rss_bytes())
    done.set()
    sampler.join()
    note = result[1] if isinstance(result, tuple) else ""
    print(json.dumps({"method": method, "peak_rss_added": peak[0] - base,
                      "host_numpy_peak": host_peak, "seconds": seconds, "note": note}))


def timings(model_name: str, batch: int, repeats: int) -> dict:
    model, shape = build(model_name)
    x = batch_for(shape, batch)
    out = {}
    for method in ("forward", "trace", "trace-compiled", "full-capture"):
        started = time.perf_counter()
        run_method(method, model, x)
        first = time.perf_counter() - started
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            run_method(method, model, x)
            runs.append(time.perf_counter() - started)
        out[method] = {"first": first, "median": statistics.median(runs)}
    out["layers"] = len(model.layers)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="all", choices=("all", "mobilenetv2", "unet"))
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.batch)
        return
    models = ("mobilenetv2", "unet") if args.model == "all" else (args.model,)
    print(f"trace overhead, batch {args.batch}, {os.cpu_count()} CPUs visible "
          f"(load average {os.getloadavg()[0]:.1f})")
    for name in models:
        t = timings(name, args.batch, args.repeats)
        plain = t["forward"]["median"]
        print(f"\n{name} ({t['layers']} layers)")
        print(f"  time, warm median of {args.repeats}:")
        for method in ("forward", "trace", "trace-compiled", "full-capture"):
            print(f"    {method:15s} first {t[method]['first']:7.3f} s   warm {t[method]['median']:7.3f} s"
                  f"   ratio to forward {t[method]['median'] / plain:6.2f}x")
        memory = {}
        for method in ("forward", "trace", "full-capture"):
            proc = subprocess.run([sys.executable, __file__, "--child", method, name, "--batch",
                                   str(args.batch)], capture_output=True, text=True, check=False)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if not line:
                print(f"    {method}: child failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            memory[method] = json.loads(line[-1])
        print("  memory, peak RSS added during a warm call (host numpy peak by tracemalloc):")
        for method, m in memory.items():
            print(f"    {method:15s} {m['peak_rss_added'] / 2**20:8.1f} MiB   "
                  f"(numpy {m['host_numpy_peak'] / 2**20:7.1f} MiB) {m['note']}")
        if "trace" in memory and "full-capture" in memory and memory["full-capture"]["peak_rss_added"]:
            ratio = memory["trace"]["peak_rss_added"] / memory["full-capture"]["peak_rss_added"]
            host = memory["trace"]["host_numpy_peak"] / max(memory["full-capture"]["host_numpy_peak"], 1)
            print(f"  trace / full capture: peak RSS {ratio:.2f}x, host numpy {host:.4f}x")


if __name__ == "__main__":
    main()
