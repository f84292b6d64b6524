"""The Layers screen while a run streams: the recorded live slice (baseline_gs1 on train, the
tiny scenario's engine events) fed through the worker and held mid-run, after the second live
layer-health update and before the probe trace, the way a slow run looks to a user."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.tui.conftest import events_until
from tests.tui.test_flows import screen_text, wait_until

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
KEY = ("baseline_gs1", "train")


def held_feed(events):
    """A feed that yields ``events`` and then waits, as an engine still running its next batch
    (quitting the app releases it; the bound keeps a failed test from waiting forever)."""

    def feed(cancel: threading.Event):
        yield from events
        cancel.wait(120)

    return feed


@pytest.fixture(scope="module")
def mid_run(live_events):
    """Up to the update after batch 2 of 4: live layer health, no probe trace yet."""
    return events_until(live_events, "LayerHealthUpdate", batches=2)


def arrived(app, batches: int):
    view = app.state.live_health.get(KEY)
    return view is not None and view.batches == batches


def test_the_layers_screen_shows_live_numbers_mid_run(make_app, mid_run):
    async def scenario():
        app = make_app(feed=held_feed(mid_run))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: arrived(app, 2), "the second live update arrived")
            await pilot.press("2")
            await pilot.pause()
            summary = screen_text(app)
            await pilot.press("c")
            await pilot.pause()
            node = app.screen.query_one("#layer-tree").cursor_node
            layer = screen_text(app)
            await pilot.press("q")
            return app.state, summary, node.data, layer

    state, summary, ref, layer = asyncio.run(scenario())
    assert state.feed_status == "running" and not state.traces  # mid-run: no probe trace yet
    assert "train · whole split · live · 2 of 4 batches" in summary
    assert "first collapse (c): baseline_gs1 × train at trimmed_obj 100%→0.29%" in summary
    assert "(live)" in summary
    # its row: exact nonzero fraction, NaN/Inf, dead channels, then 125 of 128 samples all zero
    assert any("✗ trimmed_obj 0.29% 0/0 0/1 125 " in " ".join(line.split()) for line in summary.splitlines())
    assert "✓ encoder1_conv1" in summary and "43.29%" in summary
    assert (ref.model, ref.path) == ("baseline_gs1", "trimmed_obj")  # c: the live first collapse
    assert "all-zero" in layer and "125/128" in layer and "2 of 4" in layer
    assert "one batch in 8" in layer and "1 of 2" in layer  # moments, histograms: sampled, and it says so


def test_the_trace_keeps_its_place_with_the_whole_split_beside_it(make_app, live_events):
    async def scenario():
        app = make_app(feed=held_feed(events_until(live_events, "TraceDone")))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: KEY in app.state.traces, "the probe trace arrived")
            await pilot.press("2", "c")
            await pilot.pause()
            text = screen_text(app)
            await pilot.press("q")
            return text

    text = asyncio.run(scenario())
    assert "trimmed_obj  ReassemblePatches" in text
    assert "baseline_gs1 × train at trimmed_obj 100%→0%" in text and "(live)" not in text
    assert "whole split" in text and "190/200" in text and "4 of 4" in text


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("keys", [["2"], ["2", "c"]], ids=["summary", "collapse"])
def test_mid_run(snap_compare, make_app, mid_run, keys, size):
    app = make_app(feed=held_feed(mid_run))

    async def until_mid_run(pilot):
        await wait_until(pilot, lambda: arrived(app, 2), "the second live update arrived")

    assert snap_compare(app, press=keys, terminal_size=SIZES[size], run_before=until_mid_run)
