"""Snapshots of every screen at 80x24 and 120x40, driven by a recorded engine run replayed
synchronously (no worker, no timing): what a user sees after the incident's tiny scenario."""

from __future__ import annotations

import threading

import pytest

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
SCREENS = {
    "overview": [],
    "layers": ["2"],
    "layers_first_collapse": ["2", "c"],
    "findings": ["3"],
    "metrics": ["4"],
    "export": ["5"],
    "help": ["question_mark"],
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
def test_screen(snap_compare, make_app, incident_events, screen, size):
    app = make_app(initial_events=incident_events)
    assert snap_compare(app, press=SCREENS[screen], terminal_size=SIZES[size])


@pytest.mark.parametrize("size", SIZES)
def test_metrics_not_computed_yet(snap_compare, make_app, events_before_metrics, size):
    """Before the metrics event the slot says so: nothing is filled in."""
    app = make_app(initial_events=events_before_metrics)
    assert snap_compare(app, press=["4"], terminal_size=SIZES[size])


def test_loading_tensorflow_before_the_first_event(snap_compare, make_app):
    """The first frame shows that the engine is loading, before any event arrived."""

    def silent_feed(cancel: threading.Event):
        cancel.wait()  # the engine still importing TensorFlow; leaving the app releases it
        return
        yield

    app = make_app(feed=silent_feed)
    assert snap_compare(app, terminal_size=(80, 24))
