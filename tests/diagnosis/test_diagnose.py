"""The diagnosis on the tiny incident scenario, on planted defects, on a healthy scenario, and the
batch-coupling hypothesis on models built here."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ptytui.core.events import (
    CounterfactualDone,
    DiagnosisFinished,
    FindingRaised,
    HypothesisTested,
    PositionsMeasured,
    TraceDone,
)
from ptytui.diagnosis.diagnose import diagnose_events, diagnose_workspace
from ptytui.inputs.workspace import load_workspace

PINN_AND_BASELINE = ("pinn_gs2", "baseline_gs1")


def _workspace(folder, models):
    ws = load_workspace(folder)
    return dataclasses.replace(ws, models={k: v for k, v in ws.models.items() if k in models})


def _one(diagnosis, finding_id, **where):
    found = [f for f in diagnosis.findings_with(finding_id)
             if all(getattr(f, key) == value for key, value in where.items())]
    assert len(found) == 1, f"{finding_id} {where}: {[(f.model, f.split, f.layer) for f in found]}"
    return found[0]


# ---- the incident (absolute positions + model-kind), full splits ----------------------------


@pytest.fixture(scope="module")
def incident_events(tiny_workspace):
    return list(diagnose_events(_workspace(tiny_workspace, PINN_AND_BASELINE)))


@pytest.fixture(scope="module")
def incident(incident_events):
    assert isinstance(incident_events[-1], DiagnosisFinished)
    return incident_events[-1].diagnosis


def test_baseline_output_all_zero_on_test(incident):
    finding = _one(incident, "output-all-zero", model="baseline_gs1", split="test")
    assert finding.severity == "error" and finding.label == "Baseline"
    assert finding.evidence["nonzero_fraction"] == 0.0


def test_baseline_output_sparse_on_train(incident):
    finding = _one(incident, "output-sparse", model="baseline_gs1", split="train")
    assert 0 < finding.evidence["nonzero_fraction"] < 0.02


def test_collapse_at_the_reassembly_layer(incident):
    finding = _one(incident, "activation-collapse", model="baseline_gs1", split="test")
    assert finding.layer == "trimmed_obj" and finding.evidence["reassembly"] is True
    assert finding.evidence["upstream_nonzero_fraction"] > 0.5
    assert finding.evidence["nonzero_fraction"] == 0.0


def test_positions_drift_reports_both_means(incident):
    finding = _one(incident, "positions-drift", split="test")
    evidence = finding.evidence
    assert evidence["test_mean_y"] - evidence["train_mean_y"] > 30
    assert {"train_std_y", "test_std_y", "train_mean_x", "test_mean_x"} <= set(evidence)


def test_positions_off_canvas_prediction_matches_observation(incident):
    finding = _one(incident, "positions-off-canvas", model="baseline_gs1")
    predicted = finding.evidence["predicted_visible_fraction"]
    observed = finding.evidence["observed_nonzero_fraction"]
    assert predicted["test"] == 0.0 and observed["test"] == 0.0
    assert 0.5 <= predicted["train"] / observed["train"] <= 2.0
    assert finding.layer == "trimmed_obj"  # the trace's path of the reassembly layer


def test_zero_positions_recover_the_baseline(incident):
    for split in ("train", "test"):
        finding = _one(incident, "counterfactual-recovers", model="baseline_gs1", split=split)
        assert finding.evidence["intervention"] == "zero-positions"
        assert finding.evidence["nonzero_after"] > 0.5
        assert {"option": "apply-fix", "intervention": "zero-positions"}.items() <= finding.actions[0].items()


def test_model_kind_confusion(incident):
    finding = _one(incident, "model-kind", model="baseline_gs1")
    assert finding.evidence["takes_positions"] is True


def test_the_pinn_raises_no_error(incident):
    assert not [f for f in incident.findings if f.model == "pinn_gs2" and f.severity == "error"]
    assert incident.exit_code == 1


def test_hypotheses_point_at_geometry(incident):
    verdicts = {h.id: h.verdict for h in incident.hypotheses if h.model == "baseline_gs1"}
    assert verdicts == {"underflow": "rejected", "dead-weights": "rejected", "batch-size": "rejected",
                        "architecture-clipping": "rejected", "weight-corruption": "rejected",
                        "positions-off-canvas": "supported"}


def test_json_document(incident):
    document = json.loads(json.dumps(incident.to_dict(), allow_nan=False))
    assert {"workspace", "findings", "seconds", "hypotheses", "traces", "geometry", "drift",
            "interventions", "runs"} <= set(document)
    finding = document["findings"][0]
    assert {"id", "severity", "model", "split", "layer", "summary", "evidence", "actions"} <= set(finding)
    assert [f["severity"] for f in document["findings"]] == sorted(
        (f["severity"] for f in document["findings"]), key=["error", "warning", "info"].index)


def test_events_stream_and_fold_into_the_workbench_state(incident_events, incident):
    from ptytui.tui.state import WorkbenchState

    kinds = {type(e) for e in incident_events}
    assert {TraceDone, PositionsMeasured, CounterfactualDone, HypothesisTested, FindingRaised} <= kinds
    raised = [e for e in incident_events if isinstance(e, FindingRaised)]
    assert len(raised) == len(incident.findings)
    state = WorkbenchState()
    state.apply_all(incident_events)
    assert ("baseline_gs1", "test") in state.traces and ("baseline_gs1", "test") in state.positions
    assert len(state.findings) == len(incident.findings)
    assert len(state.hypotheses) == len(incident.hypotheses)


def test_cancel_stops_the_diagnosis(tiny_workspace):
    from ptytui.errors import Cancelled

    with pytest.raises(Cancelled):
        diagnose_workspace(_workspace(tiny_workspace, PINN_AND_BASELINE), cancel=lambda: True)


# ---- planted defects (pinn_gs2 only, a subset of groups) ----------------------------------------


@pytest.fixture(scope="module")
def model_defects(tiny_scenario):
    folder = tiny_scenario(["dead-layer", "missing-scale", "swapped-xy"])
    return diagnose_workspace(_workspace(folder, ("pinn_gs2",)), n_groups=32)


@pytest.fixture(scope="module")
def weight_and_data_defects(tiny_scenario):
    folder = tiny_scenario(["nan-weights", "double-scale", "uint16-intensity"])
    return diagnose_workspace(_workspace(folder, ("pinn_gs2",)), n_groups=32)


def test_dead_layer_found_where_planted(model_defects):
    from ptytui.scenario.zoo import DEAD_LAYER

    for split in ("train", "test"):
        assert _one(model_defects, "activation-collapse", split=split).layer == DEAD_LAYER
        dead = _one(model_defects, "dead-units", split=split)
        assert dead.layer == DEAD_LAYER
        # counted by the live layer health over every batch of the split, not the probe batch alone
        row = dead.evidence["layers"][0]
        assert row["over"] == "split" and row["samples"] == 32 and row["dead_channels"] == row["channels"]
        assert "never nonzero over all 32 samples of the split" in dead.summary
    clipping = [h for h in model_defects.hypotheses if h.id == "architecture-clipping"][0]
    assert clipping.verdict == "supported"


def test_missing_scale_found(model_defects):
    finding = _one(model_defects, "scale-mismatch", model="pinn_gs2")
    assert finding.evidence["fed_scale"] == 1.0
    assert finding.actions[0]["intervention"] == "apply-intensity-scale"


def test_swapped_axes_found_on_both_splits(model_defects):
    for split in ("train", "test"):
        finding = _one(model_defects, "axes-swapped", split=split)
        assert finding.evidence["correlation_swapped"] > finding.evidence["correlation_as_stored"]


def test_nan_weights_found_where_planted(weight_and_data_defects):
    from ptytui.scenario.zoo import NAN_LAYER

    assert _one(weight_and_data_defects, "weights-nonfinite").layer == NAN_LAYER
    assert _one(weight_and_data_defects, "nonfinite", split="test", layer=NAN_LAYER)
    corruption = [h for h in weight_and_data_defects.hypotheses if h.id == "weight-corruption"][0]
    assert corruption.verdict == "supported"


def test_double_scale_found(weight_and_data_defects):
    finding = _one(weight_and_data_defects, "scale-mismatch", model="pinn_gs2")
    assert finding.evidence["ratio"] == pytest.approx(finding.evidence["model_intensity_scale"], rel=1e-6)


def test_uint16_intensity_found(weight_and_data_defects):
    for split in ("train", "test"):
        assert _one(weight_and_data_defects, "intensity-as-amplitude", split=split).severity == "error"


def test_healthy_scenario_raises_no_error(tiny_scenario):
    folder = tiny_scenario(())
    diagnosis = diagnose_workspace(_workspace(folder, ("baseline_gs1", "supervised_unet")), n_groups=24)
    assert [f.id for f in diagnosis.findings if f.severity == "error"] == []
    assert diagnosis.exit_code == 0


# ---- batch coupling on models built here ----------------------------------------------------


@pytest.fixture(scope="module")
def coupling_setup(tmp_path_factory):
    """Two saved single-input models (per-sample vs subtracting the batch mean) and a split."""
    from ptytui.core.tfload import keras as _keras
    from ptytui.core.tfload import tf as _tf
    from ptytui.inputs.grouping import group_split
    from ptytui.inputs.models import load_model
    from ptytui.inputs.npz import open_split
    from tests.helpers_npz import make_arrays, write_npz

    keras, tf = _keras(), _tf()

    @keras.saving.register_keras_serializable(package="ptytui_tests")
    class SubtractBatchMean(keras.layers.Layer):
        def call(self, x):
            return x - tf.reduce_mean(x, axis=0, keepdims=True)

    folder = tmp_path_factory.mktemp("coupling")
    paths = {}
    for name, coupled in (("per_sample", False), ("coupled", True)):
        x = keras.Input((8, 8, 1), name="diffraction")
        y = keras.layers.Conv2D(1, 3, padding="same", name="conv")(x)
        if coupled:
            y = SubtractBatchMean(name="batch_mean")(y)
        keras.Model(x, y).save(folder / f"{name}.keras")
        paths[name] = folder / f"{name}.keras"
    split = open_split(write_npz(folder / "s.npz", make_arrays(N=8, nx=4, ny=4)), "s")
    return {name: load_model(path) for name, path in paths.items()}, split, group_split(split, 1)


def test_batch_coupling_check(coupling_setup):
    from ptytui.diagnosis.hypotheses import batch_coupling_check

    models, split, grouping = coupling_setup
    healthy = batch_coupling_check(models["per_sample"], split, grouping, model="a", positions=None,
                                   intensity_scale="none", batch_size=6)
    coupled = batch_coupling_check(models["coupled"], split, grouping, model="b", positions=None,
                                   intensity_scale="none", batch_size=6)
    assert healthy.same_shapes and not healthy.coupled
    assert coupled.same_shapes and coupled.coupled and coupled.max_abs_difference > 0
