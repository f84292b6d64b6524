"""UI latency benchmark: key press to updated screen while TensorFlow inference keeps the cores busy.

The workbench runs headless (Textual's test driver) with an engine feed that runs a small Keras
conv net over random batches forever in the app's worker thread, reducing outputs with the
engine's StatsAccumulator and yielding BatchDone events, as a live run does. Optionally a second
process runs a TF matmul loop as well. Each sample delivers a screen key (1-5 in turn) the way the
terminal driver does and waits until the new screen has been drawn. Printed side by side: a minimal Textual app
switching between two plain screens (what this machine gives any Textual app), the workbench
idle, and the workbench under load; wall time and the UI thread's own CPU time.

    .venv/bin/python bench/ui_latency.py [--presses 60] [--background-process]
Target: p95 <= 100 ms under load.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEYS = ["2", "3", "4", "5", "1"]
MODES = ["layers", "findings", "metrics", "export", "overview"]


def inference_feed(batch: int = 16, size: int = 64):
    """An endless engine-like run: a conv net over random batches, stats merged per batch."""

    def feed(cancel: threading.Event):
        import numpy as np

        from ptytui.engine.events import BatchDone, RunStarted
        from ptytui.engine.stats import StatsAccumulator
        from ptytui.engine.tfload import keras, tf

        k = keras()
        inputs = k.Input((size, size, 1))
        x = inputs
        for filters in (32, 64, 64, 32):
            x = k.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        model = k.Model(inputs, k.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x))
        step = tf().function(lambda data: model(data, training=False))
        accumulator = StatsAccumulator()
        rng = np.random.default_rng(0)
        total = 10**9
        yield RunStarted("bench_model", "random", n_samples=total, batch_size=batch, positions="relative")
        done = 0
        while not cancel.is_set():
            data = rng.random((batch, size, size, 1), dtype=np.float32)
            output = step(data)
            accumulator.update("input", data)
            accumulator.update("output", output)
            done += batch
            records = accumulator.snapshot()
            yield BatchDone("bench_model", "random", done=done, total=total,
                            inputs={"input": records["input"]}, outputs={"output": records["output"]})

    return feed


def _matmul_loop(stop) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    a = tf.random.normal((768, 768))
    while not stop.is_set():
        a = tf.linalg.matmul(a, a) / 768.0


async def press(app, key: str, mode: str) -> None:
    """Deliver a key as the terminal driver does, then wait until its screen is drawn.

    (Pilot.press is not used: it waits for the whole process to go idle, which a process running
    inference never does, so it would time its own waiting rather than the UI.)
    """
    from textual import events

    event = events.Key(key, key)
    event.set_sender(app)
    app._driver.send_message(event)
    deadline = time.monotonic() + 30
    while app.current_mode != mode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"key {key!r} did not switch to {mode!r} (now {app.current_mode!r}, "
                               f"focus {app.focused!r}, screen {app.screen!r})")
        await asyncio.sleep(0.001)
    refreshed = asyncio.get_running_loop().create_future()
    app.call_after_refresh(lambda: refreshed.done() or refreshed.set_result(None))
    await refreshed


async def measure(app, presses: int, warm_up: float, keys=KEYS, modes=MODES) -> tuple[list[float], list[float], int]:
    """(wall seconds, UI-thread CPU seconds) per key press, and the batches the engine ran."""
    walls, cpus = [], []
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 120
        while warm_up and getattr(app, "state", None) is not None and app.state.feed_status != "running" \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # TensorFlow imported, first batches in
        await asyncio.sleep(warm_up)
        for key, mode in zip(keys, modes):  # every screen built once, as a user would have done
            await press(app, key, mode)
        for i in range(presses):
            started, cpu_started = time.perf_counter(), time.thread_time()
            await press(app, keys[i % len(keys)], modes[i % len(modes)])
            walls.append(time.perf_counter() - started)
            cpus.append(time.thread_time() - cpu_started)
            await asyncio.sleep(0.05)
        runs = getattr(getattr(app, "state", None), "runs", {})
        batches = runs.get(("bench_model", "random"))
    return walls, cpus, (batches.done // 16 if batches else 0)


def minimal_textual_app():
    """Two plain screens (a dozen Statics and a Footer) switched by keys: the machine's baseline."""
    from textual.app import App
    from textual.screen import Screen
    from textual.widgets import Footer, Static

    class Plain(Screen):
        def compose(self):
            for i in range(10):
                yield Static(f"line {i}")
            yield Footer()

    class Minimal(App):
        MODES = {"a": Plain, "b": Plain}
        DEFAULT_MODE = "a"
        BINDINGS = [("1", "switch_mode('a')", "A"), ("2", "switch_mode('b')", "B")]

    return Minimal()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(q * len(ordered))) - 1)]


def report(label: str, walls: list[float], cpus: list[float]) -> float:
    print(f"{label:40s} wall p50 {1000 * statistics.median(walls):6.1f}  p95 {1000 * percentile(walls, .95):6.1f}"
          f"  max {1000 * max(walls):6.1f} ms | UI-thread CPU p50 {1000 * statistics.median(cpus):5.1f}"
          f"  p95 {1000 * percentile(cpus, .95):5.1f} ms")
    return percentile(walls, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--background-process", action="store_true",
                        help="also run a TF matmul loop in a second process")
    options = parser.parse_args()

    from ptytui.app import WorkbenchApp
    from ptytui.screens.feeds import load_recording

    recording = Path(__file__).resolve().parents[1] / "tests" / "screens" / "data" / "incident_tiny_recorded.jsonl"
    events = load_recording(recording)

    minimal = asyncio.run(measure(minimal_textual_app(), options.presses, warm_up=0.0, keys=["2", "1"],
                                  modes=["b", "a"]))
    idle = asyncio.run(measure(WorkbenchApp(initial_events=events, workspace_label="idle"),
                               options.presses, warm_up=0.0))

    stop = multiprocessing.Event()
    background = None
    if options.background_process:
        background = multiprocessing.Process(target=_matmul_loop, args=(stop,), daemon=True)
        background.start()
    busy_app = WorkbenchApp(feed=inference_feed(), initial_events=events, workspace_label="busy")
    try:
        busy = asyncio.run(measure(busy_app, options.presses, warm_up=2.0))
    finally:
        stop.set()
        if background is not None:
            background.join(timeout=10)

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f} "
          f"(other processes share these cores; wall times include waiting for them)")
    minimal_p95 = report("minimal Textual app, 2 plain screens", *minimal[:2])
    idle_p95 = report("workbench, idle", *idle[:2])
    busy_p95 = report("workbench, inference in the worker" + (" + TF proc" if background else ""), *busy[:2])
    print(f"engine batches run during the presses: {busy[2]}")
    print(f"ratios of wall p95: idle/minimal {idle_p95 / minimal_p95:.2f}, busy/idle {busy_p95 / idle_p95:.2f}, "
          f"busy/minimal {busy_p95 / minimal_p95:.2f}")
    print(f"p95 under load {1000 * busy_p95:.1f} ms: {'within' if busy_p95 <= 0.1 else 'ABOVE'} the 100 ms target")


if __name__ == "__main__":
    main()
