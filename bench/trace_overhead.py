"""Layer-health cost against the tools it replaces, and against the run it rides on.

Prints, for each model (MobileNetV2 64x64x3, the scenario's supervised U-Net, DenseNet121 64x64x3;
weights=None, batch 32, CPU), measured side by side in one process with interleaved repeats:

- per batch, as ratios to a plain compiled forward pass: every layer output read once and nothing
  else (one ``reduce_sum`` each: the floor of any exact per-layer record), the probe trace
  (``trace_model``, the compiled layer-health step, warm; with ptytui's kernel and with stock
  TensorFlow ops), full activation capture the way keract does it (one
  functional model over every layer output, all returned as numpy), and TensorBoard Debugger V2
  in FULL_HEALTH mode (``tf.debugging.experimental.enable_dump_debug_info`` dumping to a temporary
  folder; in a child process of its own, since it instruments every graph built after it);
- per streamed split (``--stream-batches`` batches), as a ratio to the same stream without it:
  live layer health (the inference step with every layer's health, ``running.layer_health``;
  with the kernel and with stock ops) against the plain inference step (model + input/output
  records, ``running.inference._Step``);
- peak memory: the whole process's peak RSS (VmHWM) of a streaming run with and without live
  layer health, each in a fresh child process (graph building included), and the peak RSS added
  during a warm probe trace and a warm full capture.

The machine may be shared: each ratio is the median over repeats of (method / forward) measured in
the same repeat; the spread printed beside it is the min-max of those per-repeat ratios.

Usage: python bench/trace_overhead.py [--batch 32] [--repeats 5] [--stream-batches 16]
                                      [--model all|mobilenetv2|unet|densenet121]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

import numpy as np

MODELS = ("mobilenetv2", "unet", "densenet121")


def build(name: str):
    from ptytui.core.tfload import keras as _keras

    keras = _keras()
    keras.utils.set_random_seed(0)
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10), (64, 64, 3)
    if name == "densenet121":
        return keras.applications.DenseNet121(weights=None, input_shape=(64, 64, 3), classes=10), (64, 64, 3)
    if name == "unet":
        from ptytui.networks.architectures import build_supervised_unet

        return build_supervised_unet(64, (8, 16, 32)), (64, 64, 1)  # the scenario's U-Net, N = 64
    raise SystemExit(f"unknown model {name!r}")


def batch_for(shape, batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch,) + shape).astype(np.float32)


def _loaded(model):
    """What the inference step needs of a loaded model: the Keras model and a card's names."""
    name = model.inputs[0].name.split(":")[0]
    card = SimpleNamespace(inputs=[{"name": name}], outputs=[{"name": "output"}])
    return SimpleNamespace(model=model, card=card), name


class Methods:
    """Every measured method of one model, built once (first calls timed apart)."""

    def __init__(self, model, shape, batch: int, stream_batches: int) -> None:
        from ptytui.core.tfload import keras as _keras
        from ptytui.core.tfload import tf as _tf

        tf, keras = _tf(), _keras()
        self.model, self.x = model, batch_for(shape, batch)
        self.batches = [batch_for(shape, batch, seed=i + 1) for i in range(stream_batches)]
        self.forward_fn = tf.function(lambda v: model(v, training=False), autograph=False)
        self.capture_model = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
        self.loaded, self.input_name = _loaded(model)
        self._stock = None

    @property
    def stock_loaded(self):
        """The same model again (built on first use, so the memory children do not hold it), its
        layer-health steps built with stock TensorFlow ops (a step keeps the path it was built
        with): ptytui's kernel against what it replaces."""
        if self._stock is None:
            from ptytui.core.tfload import keras as _keras

            clone = _keras().models.clone_model(self.model)
            clone.set_weights(self.model.get_weights())
            self._stock, _ = _loaded(clone)
        return self._stock

    @property
    def stock_model(self):
        return self.stock_loaded.model

    def forward(self):
        return np.asarray(self.forward_fn(self.x))

    def probe(self, stock: bool = False):
        from ptytui.running.health_kernel import stock_only
        from ptytui.running.trace import trace_model

        if not stock:
            return trace_model(self.model, self.x, with_weights=False)
        with stock_only():
            return trace_model(self.stock_model, self.x, with_weights=False)

    def floor(self):
        """Every layer output read once and nothing else (one ``reduce_sum`` each, in one compiled
        walk of the model): the least an exact per-layer record can cost."""
        if getattr(self, "_floor_fn", None) is None:
            from ptytui.core.tfload import tf as _tf
            from ptytui.running.walk import walk_model

            tf = _tf()

            def read_once(v):
                sums = []

                def reduce(meta, outputs):
                    sums.extend(tf.reshape(tf.reduce_sum(tf.cast(o, tf.float32)), [1]) for o in outputs
                                if hasattr(o, "dtype") and (o.dtype.is_floating or o.dtype.is_integer))

                walk_model(self.model, [v], reduce)
                return tf.concat(sums, 0)

            self._floor_fn = tf.function(read_once, autograph=False)
        return np.asarray(self._floor_fn(self.x))

    def capture(self):
        return self.capture_model.predict_on_batch(self.x)

    def stream(self, live: bool, stock: bool = False):
        """One streamed split, as ``run_inference`` does per batch (records merged on the host);
        ``stock``: live health through stock TensorFlow ops instead of ptytui's kernel."""
        from ptytui.core.stats import StatsAccumulator
        from ptytui.running.health_kernel import stock_only
        from ptytui.running.inference import _compiled_step
        from ptytui.running.layer_health import LiveLayerHealth

        loaded = self.stock_loaded if stock else self.loaded
        step = _compiled_step(loaded)
        if live and stock:
            with stock_only():
                health = LiveLayerHealth(loaded, step, "m", "s")
                health({self.input_name: self.batches[0]})  # builds the step's graph: stock ops
                health = LiveLayerHealth(loaded, step, "m", "s")
        else:
            health = LiveLayerHealth(loaded, step, "m", "s") if live else None
        accumulator = StatsAccumulator()
        done = 0
        for i, xb in enumerate(self.batches):
            reductions, _ = (health or step)({self.input_name: xb})
            for part in reductions:
                accumulator.merge_reductions(part)
            ids = np.arange(done, done + len(xb))
            done += len(xb)
            if health is not None:
                health.update(ids, last=i == len(self.batches) - 1)
        return accumulator.snapshot(), health.records() if health else None


def timings(name: str, batch: int, repeats: int, stream_batches: int) -> dict:
    model, shape = build(name)
    m = Methods(model, shape, batch, stream_batches)
    methods = {"forward": m.forward, "read each output once": m.floor, "probe trace": m.probe, "probe trace, stock ops": lambda: m.probe(True),
               "full capture": m.capture, "stream": lambda: m.stream(False),
               "stream + live health": lambda: m.stream(True),
               "  ... with stock ops": lambda: m.stream(True, stock=True)}
    first = {}
    for key, fn in methods.items():
        started = time.perf_counter()
        fn()
        first[key] = time.perf_counter() - started
    runs: dict[str, list[float]] = {key: [] for key in methods}
    for _ in range(repeats):
        for key, fn in methods.items():
            started = time.perf_counter()
            fn()
            runs[key].append(time.perf_counter() - started)
    return {"layers": len(model.layers), "first": first, "runs": runs}


def vm_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def memory_child(method: str, name: str, batch: int, stream_batches: int) -> None:
    """One method in a fresh process: whole-process peak RSS, and the peak added by a warm call."""
    model, shape = build(name)
    m = Methods(model, shape, batch, stream_batches)
    run = {"stream": lambda: m.stream(False), "stream-live": lambda: m.stream(True),
           "probe": m.probe, "capture": m.capture, "forward": m.forward}[method]
    run()  # first call: graph building, caches
    base = vm_kib("VmRSS")
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], vm_kib("VmRSS"))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run()
    done.set()
    sampler.join()
    print(json.dumps({"method": method, "process_peak_kib": vm_kib("VmHWM"),
                      "warm_added_kib": max(peak[0], vm_kib("VmRSS")) - base}))


def debugger_child(name: str, batch: int, repeats: int) -> None:
    """Forward vs the same forward under Debugger V2 FULL_HEALTH (dump to a temporary folder)."""
    from ptytui.core.tfload import tf as _tf

    tf = _tf()
    model, shape = build(name)
    x = batch_for(shape, batch)
    plain = tf.function(lambda v: model(v, training=False), autograph=False)
    plain(x)
    folder = tempfile.mkdtemp(prefix="ptytui-dbgv2-")
    try:
        tf.debugging.experimental.enable_dump_debug_info(folder, tensor_debug_mode="FULL_HEALTH",
                                                         circular_buffer_size=-1)
        dumped = tf.function(lambda v: model(v, training=False), autograph=False)
        started = time.perf_counter()
        dumped(x)
        first = time.perf_counter() - started
        ratios = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plain(x)
            t1 = time.perf_counter()
            dumped(x)
            ratios.append((time.perf_counter() - t1) / (t1 - t0))
        tf.debugging.experimental.disable_dump_debug_info()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"ratios": ratios, "first": first}))


def _child(args: list[str]) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        print(f"    child {args[:3]} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(lines[-1])


def _ratio_line(label: str, values: list[float], refs: list[float], first: float | None) -> str:
    ratios = [v / r for v, r in zip(values, refs)]
    text = (f"    {label:22s} {statistics.median(values) * 1000:9.1f} ms   ratio {statistics.median(ratios):5.2f}x"
            f"   (spread {min(ratios):.2f}-{max(ratios):.2f})")
    return text + (f"   first call {first:6.2f} s" if first is not None else "")


def report(name: str, args) -> None:
    t = timings(name, args.batch, args.repeats, args.stream_batches)
    runs, first = t["runs"], t["first"]
    print(f"\n{name} ({t['layers']} layers), batch {args.batch}, median of {args.repeats} interleaved repeats")
    print("  per batch, against a compiled forward pass:")
    for key in ("forward", "read each output once", "probe trace", "probe trace, stock ops", "full capture"):
        print(_ratio_line(key, runs[key], runs["forward"], first[key]))
    debugger = _child(["--debugger", name, "--batch", str(args.batch), "--repeats", str(args.repeats)])
    if debugger:
        r = debugger["ratios"]
        print(f"    {'Debugger V2 FULL_HEALTH':22s} {'':12s} ratio {statistics.median(r):5.2f}x"
              f"   (spread {min(r):.2f}-{max(r):.2f})   first call {debugger['first']:6.2f} s")
    print(f"  per streamed split ({args.stream_batches} batches), against the same stream without health:")
    for key in ("stream", "stream + live health", "  ... with stock ops"):
        print(_ratio_line(key, runs[key], runs["stream"], first[key]))
    memory = {}
    for method in ("stream", "stream-live", "probe", "capture"):
        memory[method] = _child(["--memory", method, name, "--batch", str(args.batch),
                                 "--stream-batches", str(args.stream_batches)])
    print("  memory (fresh process each): whole-process peak RSS; peak RSS added by a warm call")
    for method, mem in memory.items():
        if mem:
            print(f"    {method:22s} peak {mem['process_peak_kib'] / 1024:8.1f} MiB   "
                  f"warm call added {mem['warm_added_kib'] / 1024:7.1f} MiB")
    if memory.get("stream") and memory.get("stream-live"):
        print(f"    live / plain stream: process peak "
              f"{memory['stream-live']['process_peak_kib'] / memory['stream']['process_peak_kib']:.2f}x")
    if memory.get("probe") and memory.get("capture") and memory["capture"]["warm_added_kib"]:
        print(f"    probe / full capture: warm call added "
              f"{memory['probe']['warm_added_kib'] / memory['capture']['warm_added_kib']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream-batches", type=int, default=16)
    parser.add_argument("--model", default="all", choices=("all",) + MODELS)
    parser.add_argument("--memory", nargs=2, metavar=("METHOD", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--debugger", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        memory_child(args.memory[0], args.memory[1], args.batch, args.stream_batches)
        return
    if args.debugger:
        debugger_child(args.debugger, args.batch, args.repeats)
        return
    from ptytui.running.health_kernel import status

    print(f"layer-health overhead, batch {args.batch}, {os.cpu_count()} CPUs visible "
          f"(load average {os.getloadavg()[0]:.1f} at start); layer-health kernel: {status()}")
    for name in MODELS if args.model == "all" else (args.model,):
        report(name, args)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
