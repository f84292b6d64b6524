"""UI latency benchmark: key press to updated screen while TensorFlow inference keeps the cores busy.

The target is measured through a pseudo-terminal: the app runs as a real terminal app (Textual's
Linux driver) in a child process; a screen key (1-5 in turn) is written to the terminal and the
clock stops when text that only the new screen draws is read back. Side by side in one run:
a minimal Textual app switching between two plain screens (what this machine gives any Textual
app), the workbench idle (the replayed incident), and the workbench with an engine feed that runs
a small Keras conv net over random batches forever in the app's worker thread, reducing outputs
with the engine's StatsAccumulator and yielding BatchDone events as a live run does (optionally a
second process runs a TF matmul loop as well).

Also printed: the UI thread's CPU time per switch, measured headless (Textual's test driver;
headless Textual neither writes frames nor holds repaints, so its wall times are not the
terminal's).

    .venv/bin/python bench/ui_latency.py [--presses 60] [--background-process]
Target: p95 <= 100 ms under load, through the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEYS = ["2", "3", "4", "5", "1"]
MODES = ["layers", "findings", "metrics", "export", "overview"]
RECORDING = Path(__file__).resolve().parents[1] / "tests" / "screens" / "data" / "incident_tiny_recorded.jsonl"
# Text that only the named screen draws at 120x40, each in one style run so that no escape code
# splits it; the metrics screen has two (a busy run starts by resetting the replayed metrics).
SCREEN_MARKERS = {"overview": ("out nonzero",), "layers": ("First collapse",), "findings": ("counterfactual",),
                  "metrics": ("ms_ssim_scales", "come from the metrics engine"), "export": ("report preview",),
                  "a": ("plain screen a",), "b": ("plain screen b",)}
_ESCAPES = re.compile(r"\x1b(\[[0-9;?<>=$]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|.)")


def inference_feed(batch: int = 16, size: int = 64):
    """An endless engine-like run: a conv net over random batches, stats merged per batch."""

    def feed(cancel: threading.Event):
        import numpy as np

        from ptytui.core.events import BatchDone, RunStarted
        from ptytui.core.stats import StatsAccumulator
        from ptytui.core.tfload import keras, tf

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
    async with app.run_test(size=(120, 40)):
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
        def __init__(self, name: str) -> None:
            super().__init__()
            self.label = name

        def compose(self):
            yield Static(f"plain screen {self.label}")
            for i in range(10):
                yield Static(f"line {i}")
            yield Footer()

    class Minimal(App):
        MODES = {"a": lambda: Plain("a"), "b": lambda: Plain("b")}
        DEFAULT_MODE = "a"
        BINDINGS = [("1", "switch_mode('a')", "A"), ("2", "switch_mode('b')", "B")]

    return Minimal()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(q * len(ordered))) - 1)]


def report(label: str, walls: list[float], cpus: list[float] | None = None) -> float:
    cpu = (f" | UI-thread CPU p50 {1000 * statistics.median(cpus):5.1f}  p95 {1000 * percentile(cpus, .95):5.1f} ms"
           if cpus else "")
    print(f"{label:44s} p50 {1000 * statistics.median(walls):6.1f}  p95 {1000 * percentile(walls, .95):6.1f}"
          f"  max {1000 * max(walls):6.1f} ms{cpu}")
    return percentile(walls, 0.95)


def serve(kind: str) -> None:
    """``--serve KIND``: run one app in this terminal: minimal, idle (the replayed incident) or
    busy (the replay plus the endless inference feed)."""
    if kind == "minimal":
        minimal_textual_app().run()
        return
    from ptytui.tui.app import WorkbenchApp
    from ptytui.tui.feeds import load_recording

    app = WorkbenchApp(feed=inference_feed() if kind == "busy" else None,
                       initial_events=load_recording(RECORDING), workspace_label=kind)
    app.run()


def pty_latencies(kind: str, presses: int, size: tuple[int, int] = (120, 40)) -> list[float]:
    """Seconds from a screen key written to a pseudo-terminal to the new screen's text read back."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    keys, modes = (["2", "1"], ["b", "a"]) if kind == "minimal" else (KEYS, MODES)
    columns, rows = size
    pid, fd = pty.fork()
    if pid == 0:  # the child: size its terminal, then run the app in it
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.environ["TERM"] = "xterm-256color"
        os.environ.pop("NO_COLOR", None)
        os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), "--serve", kind])

    screen_text = []  # text read since the last key, escape codes removed

    def read_until(markers: tuple[str, ...], limit_s: float) -> float:
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 1 << 16).decode("utf-8", "replace")
                except OSError:
                    break
                screen_text.append(_ESCAPES.sub("", chunk))
                recent = "".join(screen_text[-4:])
                if any(marker in recent for marker in markers):
                    return time.perf_counter()
        raise RuntimeError(f"{kind}: nothing drew {' or '.join(markers)!r} within {limit_s:.0f} s")

    try:
        read_until(SCREEN_MARKERS[modes[-1]], 60)
        if kind == "busy":
            read_until(("▶",), 120)  # the engine runs: TensorFlow imported, batches coming
        time.sleep(2.0)
        latencies = []
        for i in range(len(keys) + presses):  # every screen drawn once first, as a user would have
            key, mode = keys[i % len(keys)], modes[i % len(modes)]
            screen_text.clear()
            started = time.perf_counter()
            os.write(fd, key.encode())
            drawn = read_until(SCREEN_MARKERS[mode], 30)
            if i >= len(keys):
                latencies.append(drawn - started)
            time.sleep(0.05)
        return latencies
    finally:
        os.write(fd, b"\x03" if kind == "minimal" else b"q")
        for _ in range(50):
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                break
            if select.select([fd], [], [], 0.1)[0]:  # keep draining, or a blocked write stops its exit
                try:
                    os.read(fd, 1 << 16)
                except OSError:
                    pass
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--background-process", action="store_true",
                        help="also run a TF matmul loop in a second process")
    parser.add_argument("--serve", choices=("minimal", "idle", "busy"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve)
        return

    from ptytui.tui.app import WorkbenchApp
    from ptytui.tui.feeds import load_recording

    events = load_recording(RECORDING)
    idle_cpu = asyncio.run(measure(WorkbenchApp(initial_events=events, workspace_label="idle"),
                                   options.presses, warm_up=0.0))
    busy_cpu = asyncio.run(measure(WorkbenchApp(feed=inference_feed(), initial_events=events,
                                                workspace_label="busy"), options.presses, warm_up=2.0))
    minimal = pty_latencies("minimal", options.presses)
    idle = pty_latencies("idle", options.presses)
    stop = multiprocessing.Event()
    background = None
    if options.background_process:
        background = multiprocessing.Process(target=_matmul_loop, args=(stop,), daemon=True)
        background.start()
    try:
        busy = pty_latencies("busy", options.presses)
    finally:
        stop.set()
        if background is not None:
            background.join(timeout=10)

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f} "
          f"(other processes share these cores; wall times include waiting for them)")
    print("key press -> new screen read back from a pseudo-terminal (120x40):")
    minimal_p95 = report("  minimal Textual app, 2 plain screens", minimal)
    idle_p95 = report("  workbench, idle", idle)
    busy_p95 = report("  workbench, inference in the worker" + (" + TF proc" if background else ""), busy)
    print("UI-thread CPU per screen switch, headless:")
    report("  workbench, idle", idle_cpu[1])
    report("  workbench, inference in the worker", busy_cpu[1])
    print(f"engine batches run during the headless presses: {busy_cpu[2]}")
    print(f"ratios of p95: idle/minimal {idle_p95 / minimal_p95:.2f}, busy/idle {busy_p95 / idle_p95:.2f}, "
          f"busy/minimal {busy_p95 / minimal_p95:.2f}")
    print(f"p95 under load {1000 * busy_p95:.1f} ms: {'within' if busy_p95 <= 0.1 else 'ABOVE'} the 100 ms target")


if __name__ == "__main__":
    main()
