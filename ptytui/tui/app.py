"""The ptytui workbench: a Textual app whose screens show what the engine measures, live.

The engine runs in a thread worker fed by an ``EngineFeed`` (the workspace session, or a replay
of recorded events in tests); workers and screens report with messages (``ptytui.tui.messages``),
and the app's handlers on the UI thread own every state change, which they hand to the screens
through ``WorkbenchScreen.show_state``. TensorFlow is imported by the engine inside the worker,
after the first frame. The worker bodies live in ``ptytui.tui.worker``.
"""

from __future__ import annotations

import importlib
import os
import sys
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from ptytui.errors import one_line
from ptytui.inputs.decisions import read_decision_log
from ptytui.tui.decision_log import DecisionRecorder, recorder_for
from ptytui.tui.feeds import EngineFeed
from ptytui.tui.first_frame import write_first_frame_record
from ptytui.tui.messages import (
    DecideRequested,
    DecisionConfirmed,
    EngineEventsReady,
    EngineFeedEnded,
    ExportRequested,
)
from ptytui.tui.screens.base import EVERYTHING, SCREENS, WorkbenchScreen, freeze_heap
from ptytui.tui.state import WorkbenchState
from ptytui.tui.worker import FeedRun, ThreadsInside, run_feed, write_export

# Screen classes by mode; each module is imported when its screen is first shown, so that the
# first frame pays only for the Overview.
SCREEN_CLASSES = {
    "overview": ("ptytui.tui.screens.overview", "OverviewScreen"),
    "layers": ("ptytui.tui.screens.layers", "LayersScreen"),
    "findings": ("ptytui.tui.screens.findings", "FindingsScreen"),
    "metrics": ("ptytui.tui.screens.metrics", "MetricsScreen"),
    "export": ("ptytui.tui.screens.export", "ExportScreen"),
}


def screen_class(mode: str) -> type[WorkbenchScreen]:
    """The screen class of a mode (importing its module on first use)."""
    module, name = SCREEN_CLASSES[mode]
    return getattr(importlib.import_module(module), name)


def _make_screen(mode: str) -> Callable[[], WorkbenchScreen]:
    return lambda: screen_class(mode)()


SCREEN_ABOUT = (
    "runs, live statistics, first patches, model cards, positions vs canvas",
    "layer tree by health, layer details per split, first collapse",
    "findings with evidence, counterfactuals, hypotheses, decision",
    "metrics per model, FRC curves, sanity flags",
    "what will be written, report preview, write",
)


class WorkbenchApp(App[int]):
    """The workbench. Screens are Textual modes switched with the number keys."""

    CSS_PATH = "app.tcss"
    TITLE = "ptytui"
    MODES = {mode: _make_screen(mode) for mode in SCREEN_CLASSES}
    DEFAULT_MODE = "overview"
    BINDINGS = [
        # The navigation bar shows the number keys, so the footer leaves them out.
        *[Binding(key, f"switch_mode('{mode}')", label, show=False, tooltip=f"{label} screen: {about}")
          for (key, mode, label), about in zip(SCREENS, SCREEN_ABOUT)],
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this list of keys"),
        Binding("r", "run", "Run", tooltip="run the workspace (restarts a run in progress)"),
        Binding("x", "cancel", "Cancel", tooltip="cancel the run after the current batch"),
        Binding("q", "quit", "Quit", tooltip="quit at once (a running engine is cancelled)"),
    ]
    WIDE_COLUMNS = 120  # from here panels sit side by side
    EXTRA_WIDE_COLUMNS = 160

    def __init__(
        self,
        feed: EngineFeed | None = None,
        *,
        workspace_label: str = "",
        session_dir: str | Path | None = None,
        decision_recorder: DecisionRecorder | None = None,
        initial_events: Iterable[object] = (),
        autostart: bool = True,
        clock: Callable[[], datetime] | None = None,
        first_frame_file: str | Path | None = None,
        export_writer: Callable[[WorkbenchState], list[str]] | None = None,
        theme: str | None = None,
    ) -> None:
        super().__init__()
        self.feed = feed
        self.workspace_label = workspace_label
        self.session_dir = Path(session_dir) if session_dir is not None else None
        if decision_recorder is None and self.session_dir is not None:
            decision_recorder = recorder_for(self.session_dir)
        self.decision_recorder = decision_recorder
        self.export_writer = export_writer
        self.autostart = autostart
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.first_frame_file = Path(first_frame_file) if first_frame_file else None
        self.state = WorkbenchState()
        self.decision_warnings: list[str] = []
        if self.session_dir is not None:  # decisions taken before (here or with `ptytui decide`)
            log = read_decision_log(self.session_dir)
            self.state.load_decisions(log.decisions)
            self.decision_warnings = log.warnings
        self._initial_events = list(initial_events)
        self._run = FeedRun(generation=0)  # the current (or last) run of the feed
        # Threads still inside the feed or the writer, for run_workbench once the app has closed.
        self.feed_threads = ThreadsInside()
        self.export_threads = ThreadsInside()
        self._built_modes: set[str] = {self.DEFAULT_MODE}
        self._hold_repaint = True  # see switch_mode
        if theme:
            self.theme = theme

    # ---- start-up --------------------------------------------------------------------------
    def on_mount(self) -> None:
        self._apply_wide_classes(self.size.width)
        for warning in self.decision_warnings:
            self.notify(warning, title="decision log", severity="warning", timeout=10)
        if self._initial_events:  # a replay applied synchronously (snapshot tests, screenshots)
            self.state.feed_status = "loading"
            self.apply_events(self._initial_events)
            self.state.feed_status = "done"
            self._refresh_screens(self.state.touch({"status"}))
        # The feed starts after the first frame: the engine's imports (TensorFlow) must not
        # delay it, and a thread importing TF competes for the interpreter lock.
        self.call_after_refresh(freeze_heap)
        if self.first_frame_file is not None:
            self.call_after_refresh(self._first_frame_drawn)
        elif self.autostart and self.feed is not None:
            self.call_after_refresh(self.action_run)
        self.set_interval(0.25, self._drain_if_waiting)

    def _first_frame_drawn(self) -> None:
        """The startup benchmark's probe (``ptytui.tui.first_frame``): record, then quit."""
        assert self.first_frame_file is not None
        write_first_frame_record(self.first_frame_file)
        self.exit(0)

    def on_resize(self, event) -> None:
        self._apply_wide_classes(event.size.width)

    def _apply_wide_classes(self, width: int) -> None:
        self.set_class(width >= self.WIDE_COLUMNS, "-wide")
        self.set_class(width >= self.EXTRA_WIDE_COLUMNS, "-xwide")

    # ---- switching screens ---------------------------------------------------------------
    def switch_mode(self, mode: str):
        """Switch screens without Textual's 50 ms repaint hold when the screen is already built.

        Textual suspends repaints for 50 ms on every mode switch (``delay_update``) to hide a
        screen being composed. Each of ours is built on its first visit and kept, so later
        switches have nothing to hide, and the hold was most of a key's latency in a terminal
        (65 -> 16 ms to the new frame at 120x40, measured through a pseudo-terminal).
        """
        self._hold_repaint = mode not in self._built_modes
        self._built_modes.add(mode)
        try:
            return super().switch_mode(mode)
        finally:
            self._hold_repaint = True

    def delay_update(self, delay: float = 0.05) -> None:
        if self._hold_repaint:
            super().delay_update(delay)

    # ---- the engine worker ----------------------------------------------------------------
    def action_run(self) -> None:
        """Run the feed (restarting it if a run is in progress)."""
        if self.feed is None:
            self.notify("no engine feed: open a workspace (ptytui WORKSPACE) to run", severity="warning")
            return
        self._run.cancel.set()  # the previous run, if any, stops at its next step
        self._run = FeedRun(generation=self._run.generation + 1)
        self.state.reset_results()
        self.state.feed_status = "loading"
        self._refresh_screens(self.state.touch(set(EVERYTHING)))
        self.run_worker(partial(run_feed, self.feed, self._run, self.post_message, self.feed_threads),
                        thread=True, exclusive=True, exit_on_error=False, group="engine", name="engine feed")

    def on_engine_events_ready(self, message: EngineEventsReady) -> None:
        if message.generation == self._run.generation:
            self._drain()

    def _drain_if_waiting(self) -> None:
        """Events left in the batcher when the engine went quiet (e.g. loading the next model)."""
        if self._run.batcher.has_events:
            self._drain()

    def _drain(self) -> None:
        events = self._run.batcher.drain()
        if events:
            first = self.state.events_seen == 0
            self.apply_events(events)
            if first:  # the engine (TensorFlow, the models) is loaded now: keep it out of GC scans
                freeze_heap()

    def on_engine_feed_ended(self, message: EngineFeedEnded) -> None:
        if message.generation != self._run.generation:
            return
        self._drain()
        if message.error:
            self.state.feed_status = "failed"
            self.state.feed_error = message.error
            self.state.end_running_runs("failed", message.error)
            self.notify(message.error, title="engine error", severity="error", timeout=10)
            if message.details:  # bad input is its one line (status line); a bug gets its traceback
                from ptytui.tui.screens.help import ErrorScreen  # noqa: PLC0415 - first frame: loaded when shown

                self.push_screen(ErrorScreen(message.error, message.details))
        elif message.cancelled:
            self.state.feed_status = "cancelled"
            self.state.end_running_runs("cancelled")
        else:
            self.state.feed_status = "done"
        self._refresh_screens(self.state.touch({"status", "runs"}))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "export" and event.state == WorkerState.SUCCESS:
            written: tuple[str, ...] = worker.result
            folder = os.path.commonpath([os.path.dirname(path) for path in written]) if written else ""
            self.notify(f"wrote {len(written)} files to {folder}", title="export", timeout=10)
        # The feed worker reports its own errors; this catches any other worker's failure.
        elif event.state == WorkerState.ERROR and worker.group != "engine":
            error = worker.error
            self.notify(one_line(error) if error else "a background task failed", severity="error")

    def apply_events(self, events: Iterable[object]) -> set[str]:
        """Fold engine events into the state and refresh what shows them (UI thread only)."""
        changed = self.state.apply_all(events)
        self._refresh_screens(changed)
        return changed

    def _refresh_screens(self, changed: Iterable[str]) -> None:
        changed = set(changed)
        for screen in self.screen_stack:
            if isinstance(screen, WorkbenchScreen) and screen.is_mounted:
                screen.show_state(self.state, changed)

    def action_cancel(self) -> None:
        """Stop the running feed at its next step."""
        if self.state.feed_status not in ("loading", "running"):
            self.notify("nothing is running", severity="information")
            return
        self._run.cancel.set()
        self.workers.cancel_group(self, "engine")
        self.notify("cancelling: the engine stops after its current batch")

    @property
    def engine_busy(self) -> bool:
        """True while an engine thread is still inside a feed (e.g. importing TensorFlow), even
        after its worker was cancelled: a thread cannot be stopped, only told to stop."""
        return self.feed_threads.busy

    async def action_quit(self) -> None:
        self.exit(0)

    def exit(self, *args, **kwargs) -> None:
        """Leave the app; the engine feed is told to stop at its next step."""
        self._run.cancel.set()
        self.workers.cancel_group(self, "engine")
        super().exit(*args, **kwargs)

    # ---- decisions and export ------------------------------------------------------------
    def on_decision_confirmed(self, message: DecisionConfirmed) -> None:
        """Record a decision taken on the Findings screen through the decision recorder."""
        decision = {
            "option": message.option,
            "rationale": message.rationale,
            "intervention": message.intervention,
            "workspace": self.workspace_label,
            "when": self.clock().isoformat(),
            "source": "tui",
            # The findings on screen: the decision log keeps the error and warning ones as evidence.
            "findings": [dict(f) for f in self.state.findings],
        }
        if self.decision_recorder is None:
            self.notify("no session folder: the decision was not recorded", severity="error")
            return
        try:
            where = self.decision_recorder(decision)
        except Exception as exc:  # noqa: BLE001 - a full disk must not close the workbench
            self.notify(f"decision not recorded: {one_line(exc)}", severity="error", timeout=10)
            return
        self.state.decisions.append({k: v for k, v in decision.items() if k != "findings"})
        self._refresh_screens(self.state.touch({"decisions"}))
        self.notify(f"decision recorded: {message.option} -> {where}", title="decision")

    def export_plan(self) -> list[str] | None:
        """What the export engine will write (None while there is no export engine)."""
        plan = getattr(self.export_writer, "plan", None)
        return list(plan(self.state)) if callable(plan) else None

    def on_export_requested(self, message: ExportRequested) -> None:
        self.action_write_export()

    def action_write_export(self) -> None:
        if self.export_writer is None:
            self.notify("nothing written: this session has no workspace to export from (a replay)",
                        severity="warning")
            return
        if any(w.group == "export" and w.is_running for w in self.workers):
            self.notify("an export is being written already", severity="warning")
            return
        # Seconds when the run finished (its statistics and cached metrics are reused); when it
        # did not, the export computes them: tens of seconds on a CPU.
        self.notify("writing the export...", title="export")
        self.run_worker(partial(write_export, self.export_writer, self.state, self.export_threads),
                        thread=True, exit_on_error=False, group="export", name="export")

    # ---- help and palette ----------------------------------------------------------------
    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        from ptytui.tui.screens.help import binding_rows  # noqa: PLC0415 - first frame: loaded when shown

        sections = [("everywhere", binding_rows(self.BINDINGS) + [("ctrl+p", "command palette"),
                                                                  ("ctrl+q", "quit")])]
        for _, mode, label in SCREENS:
            screen_bindings = screen_class(mode).__dict__.get("BINDINGS", [])  # not inherited ones
            if screen_bindings:
                sections.append((label, binding_rows(screen_bindings)))
        sections.append(("Findings: decision panel", [
            ("space / enter", "pick the highlighted option"),
            ("enter in rationale", "confirm the decision (or the Confirm button)")]))
        return sections

    def action_help(self) -> None:
        from ptytui.tui.screens.help import HelpScreen  # noqa: PLC0415 - first frame: loaded when shown

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(self.help_sections()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key, mode, label in SCREENS:
            yield SystemCommand(f"Go to {label}", f"switch to the {label} screen (key {key})",
                                lambda mode=mode: self.switch_mode(mode))
        yield SystemCommand("Run / restart", "run the workspace's engine feed again (key r)", self.action_run)
        yield SystemCommand("Cancel run", "stop the engine after its current batch (key x)", self.action_cancel)
        yield SystemCommand("Help", "every key of the workbench (key ?)", self.action_help)
        yield SystemCommand("Jump to first collapse", "Layers screen: the first collapsing layer (key c)",
                            self._jump_to_collapse)
        yield SystemCommand("Decide", "Findings screen: the decision panel (key d)", self._go_decide)
        yield SystemCommand("Write export", "Export screen: write the report (key w)", self.action_write_export)

    def _jump_to_collapse(self) -> None:
        self.switch_mode("layers")
        self.call_after_refresh(lambda: self.screen.run_action("first_collapse"))

    def on_decide_requested(self, message: DecideRequested) -> None:
        self._go_decide()

    def _go_decide(self) -> None:
        self.switch_mode("findings")
        self.call_after_refresh(lambda: self.screen.run_action("focus_decision"))


def run_workbench(app: WorkbenchApp) -> int:
    """Run the app in this terminal; quit promptly even while the engine thread is busy.

    Textual runs a thread worker in asyncio's default executor, which the interpreter joins at
    exit: a worker importing TensorFlow or inside a long batch would hold `q` for seconds. The
    cancel event stops the engine at its next step; if it is still busy when the UI has closed,
    the process leaves without waiting for it. It also leaves at once when TensorFlow is loaded:
    the interpreter's teardown of TensorFlow took 0.9-1.6 s after `q` and has nothing to save
    (every file ptytui writes is fsynced and renamed into place before this). An export still
    being written is waited for first.
    """
    import asyncio  # noqa: PLC0415

    loop = asyncio.new_event_loop()
    try:
        result = app.run(loop=loop)
    finally:
        busy = app.engine_busy
    code = int(result or 0) if isinstance(result, int) else 0
    if app.export_threads.busy:
        print("ptytui: waiting for the export being written to finish...", file=sys.stderr, flush=True)
        app.export_threads.wait_until_idle()
    if busy or "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    loop.close()
    return code
