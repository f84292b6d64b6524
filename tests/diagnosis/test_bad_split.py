"""A split that cannot be read: the CLI's diagnosis stops with the one-line InputError (exit 2);
the workbench's (on_bad_split="report") raises a split-unreadable error finding with that line
and still runs every model on the readable splits (issue 13)."""

from __future__ import annotations

import pytest

from ptytui.core.events import DiagnosisFinished, FindingRaised, RunFinished
from ptytui.diagnosis.diagnose import diagnose_events
from ptytui.errors import InputError


@pytest.fixture
def bad_test_split(tiny_workspace_copy):
    (tiny_workspace_copy / "data" / "test.npz").write_bytes(b"not an npz file")
    return tiny_workspace_copy


def test_a_bad_split_raises_by_default(bad_test_split):
    with pytest.raises(InputError, match="test.npz"):
        list(diagnose_events(bad_test_split, n_groups=8))


def test_reported_a_bad_split_is_a_finding_and_the_readable_splits_still_run(bad_test_split):
    events = list(diagnose_events(bad_test_split, n_groups=8, on_bad_split="report"))
    unreadable = [e.finding for e in events if isinstance(e, FindingRaised)
                  and e.finding["id"] == "split-unreadable"]
    assert len(unreadable) == 1 and unreadable[0]["severity"] == "error" and unreadable[0]["split"] == "test"
    assert "test.npz" in unreadable[0]["summary"] and "\n" not in unreadable[0]["summary"]
    ran = {(e.model, e.split) for e in events if isinstance(e, RunFinished)}
    assert ran == {(m, "train") for m in ("pinn_gs2", "baseline_gs1", "supervised_unet")}
    assert isinstance(events[-1], DiagnosisFinished)
