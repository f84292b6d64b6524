"""retrain: epoch events, cancellation, the new model saved beside the old one, the workspace
rewired atomically (old entry kept), and the retrained Baseline healthy and better than the
broken one. On the tiny scenario (copied) and the synthetic workspace of tests/helpers_compare."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from ptytui.errors import InputError
from ptytui.inputs.npz import open_split
from ptytui.inputs.workspace import load_workspace
from ptytui.outcome.retrain import (
    EpochDone,
    RetrainCancelled,
    RetrainFinished,
    RetrainStarted,
    _rewrite_old_table,
    ground_truth_patches,
    plan_retrain,
    run_retrain,
    verify_retrained,
)
from ptytui.running.session import Session
from tests.helpers_compare import make_object, make_probe, shared_workspace, split_arrays


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return shared_workspace(tmp_path_factory)


@pytest.fixture()
def workspace_copy(request, tmp_path, synthetic):
    """A private copy of the tiny incident scenario, or of the synthetic workspace without it."""
    try:
        source = request.getfixturevalue("tiny_workspace")
    except pytest.FixtureLookupError:
        source = synthetic
    target = tmp_path / "ws"
    shutil.copytree(source, target)
    return target


def test_retrained_baseline_is_healthy_and_beats_the_broken_one(workspace_copy):
    session = Session.open(workspace_copy)
    old_entry = session.workspace.model("baseline_gs1")
    old_files = {p: p.read_bytes() for p in sorted(old_entry.path.rglob("*")) if p.is_file()} \
        if old_entry.path.is_dir() else {old_entry.path: old_entry.path.read_bytes()}
    plan = plan_retrain(session, epochs=2)
    assert plan.model == "baseline_gs1" and plan.design == "supervised"
    events = list(run_retrain(session, plan))
    assert isinstance(events[0], RetrainStarted) and isinstance(events[-1], RetrainFinished)
    epochs = [e for e in events if isinstance(e, EpochDone)]
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(np.isfinite(e.loss) and e.val_loss is not None and np.isfinite(e.val_loss) for e in epochs)
    result = events[-1].result
    assert result.path.parent == old_entry.path.parent and result.path.name.startswith("baseline_gs1_retrained_")
    assert result.path.suffix == ".keras" and result.path.is_file()
    assert all(path.read_bytes() == data for path, data in old_files.items())  # never over the old model
    assert result.backup_path.is_file()

    rewired = load_workspace(workspace_copy)
    assert rewired.models["baseline_gs1"].label == "Baseline (superseded)"
    assert rewired.models["baseline_gs1"].path == old_entry.path
    new = rewired.models[result.new_name]
    assert new.label == "Baseline" and new.path == result.path and new.expected_kind == "supervised"

    verification = verify_retrained(workspace_copy, result.new_name)
    assert verification.healthy, verification.problems
    assert {run.split for run in verification.runs} == {"train", "test"}
    comparison = verification.comparison
    retrained, broken = comparison.entry("Baseline"), comparison.entry("Baseline (superseded)")
    assert retrained.output_nonzero_fraction == 1.0 and broken.output_nonzero_fraction == 0.0
    assert retrained.value("amplitude", "ssim") > broken.value("amplitude", "ssim")
    # the superseded model stays for comparison, its all-zero output no longer an error
    assert not [f for f in comparison.findings() if f["severity"] == "error"]


def test_a_cancelled_retrain_saves_nothing(tmp_path, synthetic):
    folder = tmp_path / "ws"
    shutil.copytree(synthetic, folder)
    toml_before = (folder / "ptytui.toml").read_text()
    session = Session.open(folder)
    plan = plan_retrain(session, epochs=3)
    cancel = threading.Event()
    seen = []
    for event in run_retrain(session, plan, cancel=cancel):
        seen.append(event)
        if isinstance(event, EpochDone):
            cancel.set()
    assert isinstance(seen[-1], RetrainCancelled) and seen[-1].epoch == 1
    assert not plan.out_path.exists()
    assert (folder / "ptytui.toml").read_text() == toml_before
    assert not list((folder / "models").glob(".*"))  # no temporary file left behind


def test_same_design_fine_tunes_the_position_model_fed_relative_positions(tmp_path, synthetic):
    folder = tmp_path / "ws"
    shutil.copytree(synthetic, folder)
    session = Session.open(folder)
    plan = plan_retrain(session, design="same", epochs=1)
    result = [e for e in run_retrain(session, plan) if isinstance(e, RetrainFinished)][0].result
    entry = load_workspace(folder).models[result.new_name]
    assert entry.positions == "relative" and entry.gridsize == 1 and entry.label == "Baseline"
    from ptytui.inputs.models import read_card

    assert read_card(result.path).takes_positions


def test_ground_truth_is_cut_from_the_object_when_the_split_has_no_patches(tmp_path):
    obj, probe = make_object(), make_probe()
    xs, ys = np.array([12.0, 30.0, 50.0]), np.array([20.0, 41.0, 33.0])
    arrays = split_arrays(obj, probe, xs, ys)
    expected = arrays.pop("ground_truth_patches")[..., 0]
    np.savez(tmp_path / "no_gt.npz", **arrays)
    split = open_split(tmp_path / "no_gt.npz", "train")
    assert split.ground_truth is None
    np.testing.assert_allclose(ground_truth_patches(split, np.array([0, 2])), expected[[0, 2]], atol=1e-6)


def test_rewriting_the_old_table_keeps_everything_else():
    lines = ['[models."odd name"]', 'path = "m.keras"', "", "[models.other]", 'label = "Baseline"']
    out = _rewrite_old_table(lines, "odd name", "Baseline (superseded)", "by x")
    assert out[:3] == ['[models."odd name"]', 'label = "Baseline (superseded)"', 'description = "by x"']
    assert out[-1] == 'label = "Baseline"'  # the other table is untouched
    with pytest.raises(InputError):
        _rewrite_old_table(lines, "missing", "x", "y")


def test_without_a_baseline_label_the_model_must_be_named(tmp_path, synthetic):
    folder = tmp_path / "ws"
    shutil.copytree(synthetic, folder)
    toml = folder / "ptytui.toml"
    toml.write_text(toml.read_text().replace('label = "Baseline"', 'label = "Other"'))
    with pytest.raises(InputError, match="Baseline"):
        plan_retrain(Session.open(folder))
    assert plan_retrain(Session.open(folder), model="baseline_gs1").model == "baseline_gs1"


# ---- the loop: decide -> retrain -> diagnose --------------------------------------------------


def _cli(argv, capsys):
    from ptytui.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_retrain_refuses_when_the_latest_decision_is_not_retrain_baseline(tiny_workspace_copy, capsys):
    toml_before = (tiny_workspace_copy / "ptytui.toml").read_text()
    assert _cli(["decide", tiny_workspace_copy, "--option", "skip-baseline", "--reason", "no time"], capsys)[0] == 0
    code, out, err = _cli(["retrain", tiny_workspace_copy, "--epochs", "1", "--no-verify"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "skip-baseline" in lines[0] and "--force" in lines[0], err
    assert (tiny_workspace_copy / "ptytui.toml").read_text() == toml_before  # nothing retrained
    assert not list((tiny_workspace_copy / "models").glob("*retrained*"))


def test_decide_retrain_then_diagnose_goes_green(tiny_workspace_copy, capsys):
    """The documented fix closes the loop: after the retrain the superseded model is one info
    finding, the active models are healthy, and `diagnose` exits 0 (a CI gate can pass)."""
    import json

    from ptytui.outcome.retrain import retrained_at

    ws = tiny_workspace_copy
    assert _cli(["decide", ws, "--option", "retrain-baseline", "--reason", "wrong model kind"], capsys)[0] == 0
    code, out, err = _cli(["retrain", ws, "--epochs", "3", "--json"], capsys)
    assert code == 0, err
    document = json.loads(out)
    curve = document["epochs"]
    assert [e["epoch"] for e in curve] == [1, 2, 3]
    assert all(np.isfinite(e["loss"]) and np.isfinite(e["val_loss"]) for e in curve)
    assert sum("validation loss" in line for line in err.splitlines()) == 3  # the curve on stderr too
    best = min(range(3), key=lambda k: curve[k]["val_loss"]) + 1
    assert document["retrain"]["best_epoch"] == best
    ended_above = curve[-1]["val_loss"] > curve[best - 1]["val_loss"]
    assert bool(document["retrain"]["warnings"]) == ended_above
    assert ("warning: validation loss ended" in err) == ended_above

    workspace = load_workspace(ws)
    assert retrained_at(workspace) is not None
    assert "following decision retrain-baseline" in workspace.models["baseline_gs1"].description

    code, out, err = _cli(["diagnose", ws, "--json"], capsys)
    findings = json.loads(out)["findings"]
    assert code == 0, [f for f in findings if f["severity"] == "error"]
    superseded = [f for f in findings if f["model"] == "baseline_gs1"]
    assert [(f["id"], f["severity"]) for f in superseded if f["id"] != "metric-degenerate"] == [
        ("model-superseded", "info")]
    assert not [f for f in findings if f["severity"] == "error"]


def test_loss_curve_warning_only_when_validation_ends_above_its_best():
    from ptytui.outcome.retrain import loss_curve_warnings

    assert loss_curve_warnings([1.0, 0.9, 0.8], [1.04, 1.10, 1.13])[0].startswith(
        "validation loss ended at 1.13 (epoch 3), above its best 1.04 (epoch 1")
    assert loss_curve_warnings([1.0, 0.9], [1.1, 1.0]) == []
    assert loss_curve_warnings([1.0, 0.9], [None, None]) == []
