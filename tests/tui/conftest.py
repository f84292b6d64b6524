"""Fixtures of the workbench UI tests: recorded engine events, a frozen clock, and an app factory.

The UI is tested on recorded engine results (replayed synchronously for snapshots, through the
worker for flows), never on live timing. NO_COLOR and TEXTUAL_THEME are cleared before Textual
is imported, so snapshots do not depend on the developer's terminal settings.
"""

from __future__ import annotations

import os

os.environ.pop("NO_COLOR", None)
os.environ.pop("TEXTUAL_THEME", None)

from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"
INCIDENT = DATA / "incident_tiny_recorded.jsonl"  # the engine on the tiny scenario (record_tiny_scenario.py)
# The same engine's events about one model on one split, live layer health included (the slice
# record_tiny_scenario.py writes): baseline_gs1 x train, 4 batches, updates after batches 1, 2, 4.
LIVE_SLICE = DATA / "live_health_tiny_recorded.jsonl"
FROZEN_TIME = datetime(2025, 1, 31, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TEXTUAL_THEME", raising=False)


@pytest.fixture(scope="session")
def incident_events():
    from ptytui.errors import InputError
    from ptytui.tui.feeds import load_recording

    try:
        return load_recording(INCIDENT)
    except InputError as exc:  # e.g. recorded before the statistics record changed its bins
        pytest.fail(f"{exc}: the recording no longer matches the engine; re-record it with "
                    f"tests/tui/record_tiny_scenario.py, then pytest tests/tui --snapshot-update")


@pytest.fixture(scope="session")
def live_events():
    """The live slice: baseline_gs1 on train from its card to its counterfactuals."""
    from ptytui.tui.feeds import load_recording

    return load_recording(LIVE_SLICE)


def events_until(events, type_name: str, **fields):
    """The events up to and including the first of ``type_name`` whose fields match."""
    from ptytui.tui.state import event_type_name

    for i, event in enumerate(events):
        if event_type_name(event) == type_name and all(getattr(event, k) == v for k, v in fields.items()):
            return list(events[:i + 1])
    raise LookupError(f"no {type_name} {fields} in the recording")


@pytest.fixture(scope="session")
def events_before_metrics(incident_events):
    """The recorded run up to the diagnosis: what the workbench shows before metrics arrive."""
    from ptytui.tui.state import event_type_name

    return [event for event in incident_events if event_type_name(event) != "MetricsDone"]


@pytest.fixture
def make_app(tmp_path):
    """Build a WorkbenchApp with a frozen clock, the dark theme and a session folder in tmp_path."""

    def build(**options):
        from ptytui.tui.app import WorkbenchApp

        options.setdefault("workspace_label", "incident")
        options.setdefault("session_dir", tmp_path / "session")
        options.setdefault("clock", lambda: FROZEN_TIME)
        options.setdefault("theme", "textual-dark")
        return WorkbenchApp(**options)

    return build
