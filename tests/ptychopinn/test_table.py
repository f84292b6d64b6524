"""The client README's table, through ptytui's runner: output counts and nonzero fractions per
feed and batch size (96 positions per split). Nonzero fractions within NONZERO_TOL."""

from __future__ import annotations

import pytest

from tests.ptychopinn.conftest import session_sharing

NONZERO_TOL = 0.01  # absolute, on the share of nonzero output amplitude pixels


@pytest.fixture(scope="module")
def session_for(ptycho_on_path, bundle, splits, loaded):
    from ptytui.inputs.workspace import workspace_from_flags

    workspaces = {}

    def make(positions: str, batch_size: int | None):
        key = (positions, batch_size)
        if key not in workspaces:
            ws = workspace_from_flags([str(bundle)], [f"{k}={v}" for k, v in splits.items()], positions=positions)
            workspaces[key] = session_sharing(ws, loaded, batch_size=batch_size)
        return workspaces[key]

    return make


def _run(session, split):
    from ptytui.running.inference import run_to_result

    plan = next(p for p in session.plan() if p.split == split)
    return run_to_result(session.run(plan)), plan


def _nonzero(result):
    record = next(r for name, r in result.outputs.items() if name.endswith(".amplitude"))
    return record.nonzero_fraction


@pytest.mark.parametrize("positions,split,expected", [
    ("absolute", "train", 0.253), ("absolute", "test", 0.219), ("relative", "test", 1.0), ("zero", "test", 1.0)])
def test_batch_16(session_for, positions, split, expected):
    result, _ = _run(session_for(positions, 16), split)
    assert result.n_samples == 96 and result.batch_size == 16
    assert _nonzero(result) == pytest.approx(expected, abs=NONZERO_TOL)


@pytest.mark.parametrize("positions", ["relative", "absolute"])
def test_batch_64_chosen_by_the_user_is_an_invalid_run(session_for, positions):
    from ptytui.core.events import RunFailed

    result, _ = _run(session_for(positions, 64), "test")
    assert isinstance(result, RunFailed)
    assert "returned 1 output for 64 inputs" in result.message and "output-count-mismatch" in result.message


def test_batch_1_absolute_is_fully_visible(session_for):
    result, _ = _run(session_for("absolute", 1), "test")
    assert _nonzero(result) == pytest.approx(1.0, abs=NONZERO_TOL)


def test_default_batch_size_avoids_the_merge_and_says_so(session_for):
    result, plan = _run(session_for("relative", None), "test")
    choice = session_for("relative", None).batch_choice(plan)
    assert choice.merge_starts_at == 64 and choice.output_counts[64] == 1
    assert result.batch_size == 63 and any("64 -> 63" in note for note in result.notes)
    assert _nonzero(result) == pytest.approx(1.0, abs=NONZERO_TOL)
    assert result.outputs[next(iter(result.outputs))].max < 1000  # not the merged canvas (~2.6e4)
