"""Snapshots of the verdict on the Overview and the Findings screen at 80x24 and 120x40, for its
four cases: healthy, the incident (one cause), unexplained symptoms, two causes."""

from __future__ import annotations

import pytest

from tests.tui import verdict_cases

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
SCREENS = {"overview": [], "findings": ["3"]}
CASES = {
    "healthy": verdict_cases.healthy_events,
    "incident": list,
    "unexplained": verdict_cases.unexplained_events,
    "two_causes": verdict_cases.two_cause_events,
}
STATUS = {"healthy": "healthy", "incident": "explained", "unexplained": "unexplained", "two_causes": "several-causes"}


@pytest.mark.parametrize("case", CASES)
def test_each_case_has_its_verdict(incident_events, case):
    from ptytui.tui.state import WorkbenchState

    state = WorkbenchState()
    state.apply_all(CASES[case](incident_events))
    assert state.verdict is not None and state.verdict.status == STATUS[case]
    if case == "two_causes":
        assert [c.id for c in state.verdict.causes] == ["positions-off-canvas", "scale-mismatch"]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("case", CASES)
def test_verdict(snap_compare, make_app, incident_events, case, screen, size):
    app = make_app(initial_events=CASES[case](incident_events))
    assert snap_compare(app, press=SCREENS[screen], terminal_size=SIZES[size])
