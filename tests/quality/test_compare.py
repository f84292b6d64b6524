"""compare: streaming stitching equals all-at-once stitching, canonical ids, decisions shaping the
rows, the reference NPZ, metric-degenerate findings, the session cache. Real small Keras models
and NPZ files (tests/helpers_compare.py); the tiny scenario when its fixture exists."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ptytui.errors import InputError
from ptytui.inputs.workspace import load_workspace
from ptytui.quality.compare import compare_workspace, load_reference, model_ids, object_patches, stream_model
from ptytui.quality.comparison_store import Comparison, load_cached_comparison, save_comparison
from ptytui.quality.metrics import CSV_COLUMNS, FRC_CSV_COLUMNS
from ptytui.quality.stitching import StreamingStitcher, stitch_patches
from ptytui.running.inference import call_inputs, feed_inputs
from ptytui.running.session import Session
from tests.helpers_compare import shared_workspace


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return shared_workspace(tmp_path_factory)


@pytest.fixture(scope="module")
def session(synthetic):
    return Session.open(synthetic)


@pytest.fixture(scope="module")
def as_wired(session):
    """The comparison of the workspace as the study wired it (no decision)."""
    return compare_workspace(session, decision=None)


# ---- the streaming stitcher ------------------------------------------------------------------------

@pytest.mark.parametrize("placement", ["bilinear", "nearest"])
def test_streaming_stitcher_equals_stitch_patches(placement):
    rng = np.random.default_rng(4)
    patches = rng.normal(size=(37, 12, 12)) + 1j * rng.normal(size=(37, 12, 12))
    positions = rng.uniform(10, 60, size=(37, 2))
    whole = stitch_patches(patches, positions, crop=8, placement=placement)
    stitcher = StreamingStitcher(positions, 12, crop=8, placement=placement)
    order = rng.permutation(37)
    for chunk in np.array_split(order, 5):  # batches arrive in any order
        stitcher.add(patches[chunk], positions[chunk])
    streamed = stitcher.result()
    assert streamed.origin == whole.origin and streamed.canvas.shape == whole.canvas.shape
    np.testing.assert_allclose(streamed.weights, whole.weights, atol=1e-12)
    np.testing.assert_allclose(streamed.canvas, whole.canvas, atol=1e-12)


def test_stream_model_canvas_equals_stitching_all_outputs_at_once(session):
    streamed = stream_model(session, "pinn_like", "test", positions="relative", intensity_scale="apply",
                            batch_size=7)
    loaded, split = session.model("pinn_like"), session.split("test")
    grouping = session.grouping("test", 1)
    batch = grouping.batch(split, np.arange(len(grouping.indices)))
    outputs = loaded.model.predict(call_inputs(feed_inputs(loaded, batch, positions="relative")), verbose=0)
    whole = stitch_patches(outputs, split.positions)
    assert streamed.n_groups == split.M
    np.testing.assert_allclose(streamed.stitched.canvas, whole.canvas, atol=1e-5)
    assert streamed.nonzero_fraction == 1.0


# ---- outputs -> object patches ------------------------------------------------------------------

def test_amplitude_and_phase_outputs_are_combined_by_name():
    amplitude = np.full((2, 4, 4, 1), 2.0)
    phase = np.full((2, 4, 4, 1), 0.5)
    patches, how = object_patches([phase, amplitude], ["phase", "amplitude"], patch_size=4, channels=1, where="m")
    np.testing.assert_allclose(patches, 2.0 * np.exp(0.5j))
    assert "amplitude" in how


def test_outputs_that_are_not_object_patches_are_refused():
    with pytest.raises(InputError, match="object patches"):
        object_patches([np.zeros((2, 10))], ["dense"], patch_size=4, channels=1, where="m")


# ---- the comparison -----------------------------------------------------------------------------

def test_ids_are_the_canonical_labels_and_rows_are_tidy(as_wired):
    assert [e.model_id for e in as_wired.entries] == ["PtychoPINN", "Baseline", "PtyChi"]
    assert as_wired.split == "test"
    rows = as_wired.rows()
    assert rows and all(set(row) == set(CSV_COLUMNS) for row in rows)
    assert {row["model"] for row in as_wired.frc_rows()} == {"PtychoPINN", "Baseline", "PtyChi"}
    assert all(set(row) == set(FRC_CSV_COLUMNS) for row in as_wired.frc_rows())


def test_the_incident_baseline_is_all_zero_and_a_metric_error(as_wired):
    baseline = as_wired.entry("Baseline")
    assert baseline.output_nonzero_fraction == 0.0 and baseline.positions == "absolute"
    errors = [f for f in as_wired.findings() if f["severity"] == "error"]
    assert [(f["id"], f["model"], f["evidence"]["flags"]) for f in errors] == [
        ("metric-degenerate", "baseline_gs1", ["all-zero-prediction"])]
    assert "retrain-baseline" in errors[0]["actions"]


def test_the_reference_is_evaluated_against_the_ground_truth(as_wired):
    reference = as_wired.entry("PtyChi")
    assert reference.kind == "reference" and reference.status == "evaluated"
    assert reference.value("amplitude", "ssim") == pytest.approx(1.0, abs=1e-6)  # a perfect reconstruction
    assert reference.value("phase", "ssim") == pytest.approx(1.0, abs=1e-6)


def test_skip_baseline_leaves_its_rows_empty_with_the_reason(session):
    decision = {"option": "skip-baseline", "rationale": "compare PINN vs reference only", "when": "t0"}
    comparison = compare_workspace(session, decision=decision)
    baseline = comparison.entry("Baseline")
    assert baseline.status == "skipped" and "compare PINN vs reference only" in baseline.note
    assert all(row["amplitude"] == "" and row["phase"] == "" and row["value"] == "" for row in baseline.rows)
    assert comparison.entry("PtychoPINN").status == "evaluated"
    assert not [f for f in comparison.findings() if f["severity"] == "error"]


def test_accept_train_only_evaluates_the_baseline_on_train_and_marks_it(session):
    comparison = compare_workspace(session, decision={"option": "accept-train-only", "rationale": "r"})
    baseline = comparison.entry("Baseline")
    assert baseline.status == "train-only" and baseline.split == "train"
    assert 0.0 < baseline.output_nonzero_fraction < 0.02  # a sliver survives on train, as in the incident
    assert {"model": "Baseline", "metric": "train_only", "amplitude": "", "phase": "", "value": 1} in baseline.rows


def test_apply_fix_zero_positions_feeds_the_baseline_zeros(session):
    comparison = compare_workspace(session, decision={"option": "apply-fix", "intervention": "zero-positions",
                                                      "rationale": "r"})
    baseline = comparison.entry("Baseline")
    assert baseline.positions == "zero" and baseline.output_nonzero_fraction == 1.0
    assert baseline.value("amplitude", "ssim") is not None


def test_a_reference_without_its_key_fails_alone(tmp_path, synthetic):
    folder = tmp_path / "ws"
    shutil.copytree(synthetic, folder)
    np.savez(folder / "reference" / "recon.npz", something_else=np.zeros(3))
    comparison = compare_workspace(Session.open(folder), decision=None)
    reference = comparison.entry("PtyChi")
    assert reference.status == "failed" and "reconstructed_object" in reference.note
    assert comparison.entry("PtychoPINN").status == "evaluated"
    with pytest.raises(InputError, match="reconstructed_object"):
        load_reference(folder / "reference" / "recon.npz")


def test_a_model_that_cannot_run_gets_empty_rows(tmp_path, synthetic):
    folder = tmp_path / "ws"
    shutil.copytree(synthetic, folder)
    toml = folder / "ptytui.toml"
    toml.write_text(toml.read_text().replace('label = "PtychoPINN"\ngridsize = 1', 'label = "PtychoPINN"\ngridsize = 2'))
    comparison = compare_workspace(Session.open(folder), decision=None)
    pinn = comparison.entry("PtychoPINN")
    assert pinn.status == "failed" and "channel" in pinn.note
    assert comparison.entry("PtyChi").status == "evaluated"


def test_shared_labels_become_unique_ids(tmp_path, synthetic):
    folder = tmp_path / "ws"
    shutil.copytree(synthetic, folder)
    toml = folder / "ptytui.toml"
    toml.write_text(toml.read_text().replace('label = "Baseline"', 'label = "PtychoPINN"'))
    ids = model_ids(load_workspace(folder))
    assert ids["pinn_like"] == "PtychoPINN:pinn_like" and ids["baseline_gs1"] == "PtychoPINN:baseline_gs1"


def test_the_session_cache_round_trips_and_knows_its_decision(tmp_path, as_wired):
    save_comparison(as_wired, tmp_path)
    cached = load_cached_comparison(tmp_path, workspace_hash=as_wired.workspace_hash, decision=None)
    assert isinstance(cached, Comparison)
    assert cached.rows() == Comparison.from_dict(as_wired.to_dict()).rows()
    assert [e.model_id for e in cached.entries] == ["PtychoPINN", "Baseline", "PtyChi"]
    np.testing.assert_allclose(cached.entry("PtychoPINN").canvas, as_wired.entry("PtychoPINN").canvas)
    assert load_cached_comparison(tmp_path, workspace_hash=as_wired.workspace_hash,
                                  decision={"option": "skip-baseline", "when": "t"}) is None
    assert load_cached_comparison(tmp_path, workspace_hash="other", decision=None) is None


# ---- the tiny scenario ------------------------------------------------------------------------------

def test_tiny_scenario_incident_compares(request, tmp_path):
    try:
        tiny = request.getfixturevalue("tiny_workspace")
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_workspace fixture (tests/conftest.py) is not available")
    folder = tmp_path / "tiny"
    shutil.copytree(tiny, folder)
    comparison = compare_workspace(Session.open(folder, n_groups=64), decision=None)
    baseline = comparison.entry("Baseline")
    assert baseline.output_nonzero_fraction == 0.0  # absolute offsets: every test patch leaves the crop
    pinn = comparison.entry("PtychoPINN")
    assert pinn.status == "evaluated" and pinn.output_nonzero_fraction > 0.9
    reference = [e for e in comparison.entries if e.kind == "reference"]
    assert reference and reference[0].status == "evaluated"
