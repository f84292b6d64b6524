"""Pilot tests of the workbench's flows, driven through the real worker by replayed or scripted
feeds: run -> finding -> decision (writes decisions.jsonl), cancel, a failing feed, quit, keys."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np

from ptytui.core.events import BatchDone, RunStarted
from ptytui.core.stats import stats_of_array
from ptytui.tui.feeds import replay_feed
from ptytui.tui.screens.help import ErrorScreen, HelpScreen


async def wait_until(pilot, condition, what: str, limit_s: float = 60.0) -> None:
    """Let the app run until ``condition()`` holds (a bounded wait, not a timing assertion)."""
    import time

    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {limit_s:.0f} s: {what}")
        await pilot.pause(0.02)


def screen_text(app) -> str:
    """Everything the current screen shows, as plain text."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), color_system=None, record=True)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def slow_feed(cancels: list, batches: int = 10_000):
    """A run that yields a batch every 20 ms until cancelled; keeps the cancel event it was given."""
    record = stats_of_array(np.arange(16, dtype=np.float32))

    def feed(cancel: threading.Event):
        cancels.append(cancel)
        yield RunStarted("pinn_gs2", "test", n_samples=batches, batch_size=1, positions="relative")
        for done in range(1, batches + 1):
            if cancel.wait(0.02):
                return
            yield BatchDone("pinn_gs2", "test", done=done, total=batches, inputs={"input": record},
                            outputs={"trimmed_obj.amplitude": record})

    return feed


def test_run_see_finding_and_decide_writes_the_decision_log(make_app, incident_events, tmp_path):
    async def scenario():
        app = make_app(feed=replay_feed(incident_events))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.feed_status == "done", "the replayed run finished")
            await pilot.press("3")
            await pilot.pause()
            listed = [str(option.prompt) for option in app.screen.query_one("#finding-list").options]
            assert any("positions-off-canvas" in prompt for prompt in listed)
            await pilot.press("d")  # the decision panel: options, intervention, rationale
            for _ in range(4):  # the fifth option: apply-fix
                await pilot.press("down")
            await pilot.press("enter")
            await pilot.press("tab")  # intervention, prefilled from the findings' suggested fix
            assert app.focused.id == "intervention" and app.focused.value == "zero-positions"
            await pilot.press("tab")
            await pilot.press(*"patches leave the canvas; zero positions recover 100%")
            await pilot.press("enter")
            await pilot.pause()
        return app

    app = asyncio.run(scenario())
    log = tmp_path / "session" / "decisions.jsonl"
    decisions = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(decisions) == 1
    assert decisions[0]["option"] == "apply-fix"
    assert decisions[0]["intervention"] == "zero-positions"
    assert decisions[0]["rationale"] == "patches leave the canvas; zero positions recover 100%"
    assert decisions[0]["when"] == "2025-01-31T12:00:00+00:00"
    evidence_ids = {f["id"] for f in decisions[0]["evidence"]["findings"]}
    assert "positions-off-canvas" in evidence_ids
    assert app.state.decisions[0]["option"] == "apply-fix"


def test_a_decision_without_rationale_is_refused(make_app, incident_events, tmp_path):
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("3", "d", "enter")  # skip-baseline, no rationale
            app.screen.action_confirm_decision()
            await pilot.pause()
            return app.focused.id

    assert asyncio.run(scenario()) == "rationale"
    assert not (tmp_path / "session" / "decisions.jsonl").exists()


def test_cancel_stops_the_engine_and_keeps_the_app(make_app):
    cancels: list[threading.Event] = []

    async def scenario():
        app = make_app(feed=slow_feed(cancels))
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: app.state.runs and app.state.runs[("pinn_gs2", "test")].done > 0,
                             "the first batch arrived")
            await pilot.press("x")
            await wait_until(pilot, lambda: app.state.feed_status == "cancelled", "the run was cancelled")
            return app.state.runs[("pinn_gs2", "test")].status, app.is_running

    status, running = asyncio.run(scenario())
    assert cancels[0].is_set()
    assert (status, running) == ("cancelled", True)


def test_restart_replaces_the_running_feed(make_app, incident_events):
    cancels: list[threading.Event] = []
    feeds = iter([slow_feed(cancels), replay_feed(incident_events)])

    async def scenario():
        app = make_app(feed=lambda cancel: next(feeds)(cancel))
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: bool(app.state.runs), "the slow run started")
            await pilot.press("r")
            await wait_until(pilot, lambda: app.state.feed_status == "done", "the second run finished")
            return sorted(app.state.runs)

    runs = asyncio.run(scenario())
    assert cancels[0].is_set()
    recorded = {(e.model, e.split) for e in incident_events if isinstance(e, RunStarted)}
    assert runs == sorted(recorded)  # the slow run's ("pinn_gs2", "test") progress was replaced


def test_a_failing_feed_shows_the_error_and_the_app_survives(make_app, incident_events):
    def failing_feed(cancel):
        yield from incident_events[:8]
        raise RuntimeError("device lost in the middle of a batch")

    async def scenario():
        app = make_app(feed=failing_feed)
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: app.state.feed_status == "failed", "the feed failed")
            await pilot.pause()
            shown_error = isinstance(app.screen, ErrorScreen) and "device lost" in screen_text(app)
            await pilot.press("escape")
            await pilot.press("1")
            await pilot.pause()
            return shown_error, app.is_running, app.state

    shown_error, running, state = asyncio.run(scenario())
    assert shown_error
    assert running
    assert "RuntimeError: device lost" in state.feed_error
    assert state.runs  # what arrived before the failure is kept


def test_q_quits_even_while_the_engine_is_busy(make_app):
    released = threading.Event()

    def busy_feed(cancel):
        cancel.wait()  # e.g. importing TensorFlow
        released.set()
        return
        yield

    async def scenario():
        app = make_app(feed=busy_feed)
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: app.state.feed_status == "loading", "the feed started")
            await pilot.press("q")
            await pilot.pause()
        return app.return_value

    assert asyncio.run(scenario()) == 0
    assert released.is_set()


def test_loading_state_until_the_first_event(make_app, incident_events):
    gate = threading.Event()

    def gated_feed(cancel):
        gate.wait(10)
        yield from incident_events

    async def scenario():
        app = make_app(feed=gated_feed)
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: app.state.feed_status == "loading", "the feed started")
            await pilot.pause()
            before = screen_text(app)
            gate.set()
            await wait_until(pilot, lambda: app.state.feed_status == "done", "the run finished")
            await pilot.pause()
            return before, screen_text(app)

    before, after = asyncio.run(scenario())
    assert "loading TensorFlow" in before
    assert "loading TensorFlow" not in after and "baseline_gs1" in after


def test_digits_typed_in_the_rationale_stay_in_the_field(make_app, incident_events):
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("3")
            app.screen.query_one("#rationale").focus()
            await pilot.press("1", "2", "q")
            await pilot.pause()
            return app.current_mode, app.focused.value, app.is_running

    assert asyncio.run(scenario()) == ("findings", "12q", True)


def test_help_lists_every_key(make_app):
    from ptytui.tui.app import SCREEN_CLASSES, WorkbenchApp, screen_class

    async def scenario():
        app = make_app()
        async with app.run_test(size=(120, 60)) as pilot:
            await pilot.press("question_mark")
            await pilot.pause()
            return isinstance(app.screen, HelpScreen), screen_text(app)

    is_help, text = asyncio.run(scenario())
    assert is_help
    keys = [b.key_display or b.key for b in WorkbenchApp.BINDINGS]
    for mode in SCREEN_CLASSES:
        keys += [b.key for b in screen_class(mode).__dict__.get("BINDINGS", [])]
    missing = [key for key in keys if f"  {key} " not in text]
    assert not missing, f"keys missing from the help: {missing}"


def test_the_palette_offers_the_workbench_actions(make_app):
    async def scenario():
        app = make_app()
        async with app.run_test():
            return [command.title for command in app.get_system_commands(app.screen)]

    titles = asyncio.run(scenario())
    for expected in ("Go to Overview", "Go to Findings", "Run / restart", "Cancel run", "Help",
                     "Jump to first collapse", "Decide", "Write export"):
        assert expected in titles


def test_first_collapse_key_selects_the_collapsing_layer(make_app, incident_events):
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2", "c")
            await pilot.pause()
            node = app.screen.query_one("#layer-tree").cursor_node
            return node.data

    ref = asyncio.run(scenario())
    assert (ref.model, ref.path) == ("baseline_gs1", "trimmed_obj")


def test_the_recorded_engine_run_replays_through_the_worker_with_nothing_ignored(make_app, incident_events):
    """Events recorded from the engine on the tiny scenario: every type is understood."""

    async def scenario():
        app = make_app(feed=replay_feed(incident_events))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.feed_status == "done", "the replay finished")
            return app.state

    state = asyncio.run(scenario())
    assert state.events_ignored == 0, state.ignored_types
    assert state.runs[("baseline_gs1", "test")].output_nonzero_fraction() == 0.0
    assert 0 < state.runs[("baseline_gs1", "train")].output_nonzero_fraction() < 0.02
    assert state.runs[("pinn_gs2", "test")].output_nonzero_fraction() > 0.99
    assert {f["id"] for f in state.findings} >= {"positions-off-canvas", "output-all-zero"}


def test_no_color_keeps_health_readable_by_symbol(make_app, incident_events, monkeypatch):
    """Under NO_COLOR the app draws in monochrome; health still reads from ✓ / ! / ✗."""
    monkeypatch.setenv("NO_COLOR", "1")

    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(120, 80)) as pilot:
            await pilot.press("2")
            await pilot.pause()
            return app.no_color, screen_text(app)

    no_color, text = asyncio.run(scenario())
    assert no_color
    assert "✗ baseline_gs1" in text  # the incident's model: an error, told by its symbol
    assert "✓ encoder1_conv1" in text  # a healthy layer


def test_a_screen_hidden_while_the_terminal_widened_is_restyled_when_shown(make_app, incident_events):
    # Screens skip Textual's full restyle on resume when the app's classes, pseudo-classes and
    # theme are unchanged; a resize past 120 columns (class -wide) while hidden must still show.
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("3")
            body = app.screen.query_one("#findings-body")
            assert body.styles.layout.name == "vertical"
            await pilot.press("1")
            await pilot.resize_terminal(130, 40)
            await pilot.pause()
            assert app.has_class("-wide")
            await pilot.press("3")
            await pilot.pause()
            assert app.screen.query_one("#findings-body").styles.layout.name == "horizontal"
            await pilot.press("1")
            await pilot.resize_terminal(100, 40)
            await pilot.pause()
            await pilot.press("3")
            await pilot.pause()
            assert app.screen.query_one("#findings-body").styles.layout.name == "vertical"

    asyncio.run(scenario())


def test_the_footer_follows_focus_and_screen_switches(make_app, incident_events):
    # The footer is rebuilt only when the keys it shows change: typing in the rationale field
    # hides the one-key bindings, leaving it shows them again, and each screen keeps its own.
    def footer(app) -> str:
        return screen_text(app).rstrip("\n").splitlines()[-1]

    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("3")
            assert "Decide" in footer(app) and "Quit" in footer(app)
            app.screen.query_one("#rationale").focus()
            await pilot.pause()
            assert "Quit" not in footer(app) and "Decide" not in footer(app)
            app.screen.query_one("#confirm").focus()
            await pilot.pause()
            assert "Decide" in footer(app) and "Quit" in footer(app)
            for key, shows_c in (("2", True), ("1", False), ("2", True), ("4", False)):
                await pilot.press(key)
                await pilot.pause()
                assert ("First collapse" in footer(app)) is shows_c, (key, footer(app))

    asyncio.run(scenario())


def test_switching_to_a_built_screen_does_not_hold_repaints(make_app, incident_events):
    # Textual holds repaints for 50 ms on every mode switch to hide a screen being composed;
    # the workbench keeps that for a screen's first visit only.
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(120, 40)) as pilot:
            app.switch_mode("layers")  # first visit: held while it is built
            assert app._batch_count == 1
            await pilot.pause(0.1)
            assert app._batch_count == 0
            app.switch_mode("overview")  # built at start
            assert app._batch_count == 0
            app.switch_mode("layers")
            assert app._batch_count == 0
            await pilot.pause()
            assert app.current_mode == "layers"

    asyncio.run(scenario())


def test_w_on_the_export_screen_writes_the_files_it_plans(make_app, incident_events, tiny_workspace_copy):
    # The engine's export writer on a real workspace; the findings come from the workbench.
    from ptytui.outcome.export import WorkspaceExportWriter

    writer = WorkspaceExportWriter(tiny_workspace_copy, formats="md,json", collect_stats=False)
    out = tiny_workspace_copy / "session" / "export"

    async def scenario():
        app = make_app(initial_events=incident_events, export_writer=writer)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("5")
            await pilot.pause()
            assert "report.md" in screen_text(app) and "session.json" in screen_text(app)  # the plan
            await pilot.press("w")
            await wait_until(pilot, lambda: (out / "session.json").exists(), "the export written")
            await wait_until(pilot, lambda: any("wrote 2 files" in n.message for n in app._notifications),
                             "the export's notification")
        report = (out / "report.md").read_text()
        summary = report.split("## Evidence")[0]
        assert "positions-off-canvas (baseline\\_gs1/test)" in summary  # the cause is in the summary

    asyncio.run(scenario())
