"""The workbench leads with the root-cause verdict (issue 13): the Overview's first screen names
the cause with its numbers and the suggested decision, the failing run and its positions are one
key away, findings group under their cause, decisions survive a restart, planned runs are
counted, and a bad split is one line while the readable splits still run."""

from __future__ import annotations

import asyncio
import json

from ptytui.core.events import DiagnosisFinished, FindingRaised, RunsPlanned, RunStarted
from ptytui.errors import InputError
from ptytui.present.format import evidence_rows
from ptytui.tui.screens.help import ErrorScreen
from ptytui.tui.state import WorkbenchState, event_type_name
from tests.tui.test_flows import screen_text, wait_until


def flat(text: str) -> str:
    """Screen text with borders and wrapping undone, for phrases that wrap across lines."""
    return " ".join(text.replace("│", " ").split())


def test_the_overview_names_the_cause_with_its_numbers_on_the_first_screen(make_app, incident_events):
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            return screen_text(app), app.focused.id

    text, focused = asyncio.run(scenario())
    assert "verdict: explained" in text
    assert "baseline_gs1: positions-off-canvas" in text
    assert "test: predicted 0% visible, observed 0% nonzero" in flat(text)
    assert "suggested: apply-fix:zero-positions" in text
    assert text.index("verdict: explained") < text.index("baseline_gs1     test")  # above the runs table
    assert focused == "runs-summary"  # the table's cursor moves at once


def test_one_key_reaches_the_failing_run_its_positions_and_the_decision(make_app, incident_events):
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("f")
            await pilot.pause()
            panel = screen_text(app)
            await pilot.press("p")
            await pilot.pause()
            positions = screen_text(app)
            await pilot.press("up", "up", "enter")  # the runs table's cursor: baseline_gs1 x train
            await pilot.pause()
            await pilot.press("d")
            await pilot.pause()
            return panel, positions, app.screen.MODE, app.focused.id

    panel, positions, mode, focused = asyncio.run(scenario())
    assert "baseline_gs1 × test" in panel.splitlines()[2]  # the panel's border, right under the status line
    assert "canvas" in positions and "baseline_gs1" in positions
    assert (mode, focused) == ("findings", "decision-options")


def test_enter_on_a_run_row_shows_its_panel(make_app, incident_events):
    async def scenario():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("down", "down", "enter")  # third run: baseline_gs1 x train
            await pilot.pause()
            return screen_text(app)

    assert "baseline_gs1 × train" in asyncio.run(scenario()).splitlines()[2]


def test_findings_have_focus_group_under_their_cause_and_grow_with_the_terminal(make_app, incident_events):
    async def scenario(size):
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=size) as pilot:
            await pilot.press("3")
            await pilot.pause()
            options = app.screen.query_one("#finding-list")
            first = options.highlighted
            await pilot.press("down")
            await pilot.pause()
            prompts = [str(option.prompt) for option in options.options]
            return app.focused.id, first, options.highlighted, prompts, options.outer_size.height

    focused, first, moved, prompts, small = asyncio.run(scenario((80, 24)))
    assert focused == "finding-list"
    assert moved == first + 1
    assert prompts[0].startswith("cause 1: baseline_gs1: positions-off-canvas")
    assert "positions-off-canvas" in prompts[1]  # the cause first, then its symptoms
    rest = next(i for i, p in enumerate(prompts) if p.startswith("not explained by a cause"))
    assert all("baseline_gs1" not in p for p in prompts[rest + 1:])
    large = asyncio.run(scenario((160, 50)))[4]
    assert large > small
    assert large >= len(prompts) + 2  # every row and the border, without a scrollbar


def test_evidence_reads_as_aligned_values_not_python_reprs():
    rows = dict(evidence_rows({
        "takes_positions": True,
        "reassembly": [{"path": "diffraction_to_obj/trimmed_obj", "inferred": False}],
        "observed_nonzero_fraction": {"train": 0.00341796875, "test": 0.0},
        "canvas": 42,
    }))
    assert rows["takes_positions"] == "yes"
    assert rows["reassembly.path"] == "diffraction_to_obj/trimmed_obj"
    assert rows["reassembly.inferred"] == "no"
    assert rows["observed_nonzero_fraction.train"] == "0.34%"
    assert rows["observed_nonzero_fraction.test"] == "0%"
    assert rows["canvas"] == "42"


def test_a_decision_survives_quitting_and_reopening(make_app, incident_events, tmp_path):
    async def decide():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("3", "d", "down", "down", "enter")  # retrain-baseline
            await pilot.press("tab", "tab")
            await pilot.press(*"the Baseline is a PINN")
            await pilot.press("enter")
            await pilot.pause()

    async def reopen():
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            overview = screen_text(app)
            await pilot.press("3")
            await pilot.pause()
            log = str(app.screen.query_one("#decision-log").render())
            await pilot.press("5")
            await pilot.pause()
            export = screen_text(app)
            return app.state.current_decision, overview, log, export

    asyncio.run(decide())
    records = [json.loads(line) for line in (tmp_path / "session" / "decisions.jsonl").read_text().splitlines()]
    assert [r["option"] for r in records] == ["retrain-baseline"]
    current, overview, log, export = asyncio.run(reopen())
    assert current["option"] == "retrain-baseline"
    assert "decided: retrain-baseline" in overview
    assert "decided: retrain-baseline" in log and "the Baseline is a PINN" in log
    assert "no decision recorded yet" not in export and "retrain-baseline" in export


def test_the_status_line_counts_planned_runs_and_the_verdict_waits_for_the_end(incident_events):
    state = WorkbenchState()
    state.feed_status = "running"
    state.apply(RunsPlanned("", "", runs=[(m, s) for m in ("pinn_gs2", "baseline_gs1", "supervised_unet")
                             for s in ("train", "test")]))
    state.apply(RunStarted("pinn_gs2", "train", n_samples=200, batch_size=64, positions="relative"))
    assert "0/6 runs done" in state.summary_line()
    finished = [e for e in incident_events if event_type_name(e) != "DiagnosisFinished"]
    state.apply_all(finished)
    assert state.verdict is None  # findings arrived, the diagnosis has not finished
    state.apply_all([e for e in incident_events if event_type_name(e) == "DiagnosisFinished"])
    assert state.verdict is not None and state.verdict.causes[0].id == "positions-off-canvas"
    assert state.failing_run() == ("baseline_gs1", "test")


def test_a_bad_split_is_one_line_and_the_readable_splits_still_show(make_app, incident_events):
    message = "data/test.npz: expected a readable NPZ file, found an unreadable file (not a zip file)"
    unreadable = {"id": "split-unreadable", "severity": "error", "model": None, "split": "test", "layer": None,
                  "summary": f"split test skipped: {message}", "evidence": {"split": "test"}, "actions": []}
    train_only = [e for e in incident_events if getattr(e, "split", "") != "test"
                  and event_type_name(e) not in ("DiagnosisFinished", "MetricsDone")]

    def feed(cancel):
        yield FindingRaised("", "test", finding=unreadable)
        yield from train_only
        yield DiagnosisFinished("", "", diagnosis=None, findings=None, hypotheses=[], seconds=1.0)

    async def scenario():
        app = make_app(feed=feed)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.state.feed_status == "done", "the feed finished")
            await pilot.pause()
            return app, screen_text(app), isinstance(app.screen, ErrorScreen)

    app, text, dialog = asyncio.run(scenario())
    assert not dialog
    assert message in flat(text)  # whole, wrapped, not cut with an ellipsis
    assert any(r.status == "finished" for r in app.state.runs.values())


def test_bad_input_raised_by_the_feed_is_one_line_without_a_traceback_dialog(make_app):
    def feed(cancel):
        raise InputError("data/test.npz", "a readable NPZ file", "an unreadable file (not a zip file)")
        yield

    async def scenario():
        app = make_app(feed=feed)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.state.feed_status == "failed", "the feed failed")
            await pilot.pause()
            return app, screen_text(app), isinstance(app.screen, ErrorScreen)

    app, text, dialog = asyncio.run(scenario())
    assert not dialog
    assert "Traceback" not in text
    assert "an unreadable file (not a zip file)" in flat(text)


def test_metrics_lead_with_a_side_by_side_summary_and_never_truncate_values(make_app, incident_events):
    async def scenario(size):
        app = make_app(initial_events=incident_events)
        async with app.run_test(size=size) as pilot:
            await pilot.press("4")
            await pilot.pause()
            return screen_text(app)

    small = asyncio.run(scenario((80, 24)))
    assert "summary (amplitude / phase)" in small.splitlines()[2]
    assert "Baseline" in small and "SupervisedUNet " in small and "ePIE" in small
    assert "…" not in small
    large = asyncio.run(scenario((160, 50)))
    assert "…" not in large and "amplitude_scale_factor" in large
