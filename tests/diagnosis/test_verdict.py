"""The root-cause verdict: on synthetic findings (every branch), and on the tiny scenario with each
planted defect alone (each names its own cause; the healthy scenario has none)."""

from __future__ import annotations

import dataclasses

import pytest

from ptytui.diagnosis.diagnose import diagnose_workspace
from ptytui.diagnosis.verdict import PREDICTION_TOLERANCE, build_verdict
from ptytui.inputs.workspace import load_workspace


def finding(fid, severity="error", model="baseline", split=None, **evidence):
    return {"id": fid, "severity": severity, "model": model, "split": split, "layer": None,
            "summary": f"{fid} on {model}/{split}", "evidence": evidence, "actions": []}


def off_canvas(predicted, observed):
    return finding("positions-off-canvas", split="test", positions="absolute", canvas=74, patch=64,
                   predicted_visible_fraction=predicted, observed_nonzero_fraction=observed)


def test_the_incident_chain_runs_from_context_to_cause_to_symptoms():
    findings = [finding("model-kind", expected_kind="supervised"),
                finding("output-all-zero", split="test", nonzero_fraction=0.0),
                finding("activation-collapse", split="test", upstream_nonzero_fraction=1.0, nonzero_fraction=0.0),
                off_canvas({"train": 0.0021, "test": 0.0}, {"train": 0.0022, "test": 0.0}),
                finding("counterfactual-recovers", "warning", split="test", intervention="zero-positions",
                        nonzero_before=0.0, nonzero_after=1.0),
                finding("positions-drift", "warning", model=None, split="test")]
    verdict = build_verdict(findings, [{"model": "baseline", "name": "numerical underflow",
                                        "test": "subnormal activations", "verdict": "rejected"}])
    assert verdict.status == "explained"
    (cause,) = verdict.causes
    assert cause.id == "positions-off-canvas" and cause.prediction["matches"]
    assert [link.finding for link in cause.chain] == [0, 3, 2, 1]  # context, cause, collapse, output
    assert cause.fixes[0].command == "apply-fix:zero-positions"
    assert "0% -> 100% nonzero" in cause.fixes[0].evidence
    assert verdict.ruled_out[0]["name"] == "numerical underflow"
    assert verdict.standalone == [5]  # the drift explains nothing and is no symptom
    assert verdict.cause_of(1) == 0 and verdict.cause_of(5) is None


def test_samples_collapsed_by_a_cause_are_its_symptoms():
    """The per-sample collapse (from live layer health) of a model with a cause is a link of that
    cause's chain, not a finding left unexplained."""
    findings = [off_canvas({"test": 0.213}, {"test": 0.219}),
                finding("sample-collapse", "warning", split="test", count=28, samples_all_zero=28),
                finding("sample-collapse", "warning", model="pinn", split="test", count=3)]
    verdict = build_verdict(findings)
    (cause,) = verdict.causes
    assert cause.symptoms == [1] and [link.finding for link in cause.chain] == [0, 1]
    assert verdict.cause_of(1) == 0 and verdict.cause_of(2) is None


def test_a_failed_prediction_is_ruled_out_never_named():
    # A reassembly that centres each call: every patch visible although the offsets are absolute.
    findings = [off_canvas({"test": 0.0013}, {"test": 1.0})]
    verdict = build_verdict(findings)
    assert verdict.causes == [] and verdict.status == "healthy"
    assert "0.13% visible, observed 100% nonzero" in verdict.ruled_out[0]["why"]


def test_the_tolerance_is_the_edge_of_a_match():
    inside = build_verdict([off_canvas({"test": 0.20}, {"test": 0.20 + PREDICTION_TOLERANCE * 0.9})])
    outside = build_verdict([off_canvas({"test": 0.20}, {"test": 0.20 + PREDICTION_TOLERANCE * 1.1})])
    assert inside.causes and not outside.causes


def test_symptoms_without_a_cause_are_unexplained():
    verdict = build_verdict([finding("output-all-zero", split="test")],
                            [{"model": "baseline", "name": "dead weights", "test": "t", "verdict": "rejected"}])
    assert verdict.status == "unexplained" and verdict.unexplained == [0]
    assert "ruled out: dead weights" in verdict.headline


def test_two_causes_are_both_named():
    verdict = build_verdict([finding("weights-nonfinite", model="pinn"),
                             finding("nonfinite", model="pinn", split="test", where="output"),
                             finding("axes-swapped", model=None, split="train")])
    assert verdict.status == "several-causes"
    assert {c.id for c in verdict.causes} == {"weights-nonfinite", "axes-swapped"}
    assert verdict.causes[[c.id for c in verdict.causes].index("weights-nonfinite")].symptoms == [1]


def test_a_data_cause_explains_every_model_on_its_split():
    verdict = build_verdict([finding("intensity-as-amplitude", model=None, split="test"),
                             finding("output-sparse", model="pinn", split="test"),
                             finding("output-sparse", model="pinn", split="train")])
    assert verdict.causes[0].symptoms == [1] and verdict.unexplained == [2]


# ---- on the scenario: each planted defect alone --------------------------------------------------


def _diagnose(folder, models, **options):
    ws = load_workspace(folder)
    ws = dataclasses.replace(ws, models={k: v for k, v in ws.models.items() if k in models})
    return diagnose_workspace(ws, **options)


@pytest.mark.parametrize("defect, models, cause", [
    ("absolute-positions", ("baseline_gs1",), "positions-off-canvas"),
    ("model-kind", ("baseline_gs1",), "model-kind"),
    ("dead-layer", ("pinn_gs2",), "dead-units"),
    ("nan-weights", ("pinn_gs2",), "weights-nonfinite"),
    ("missing-scale", ("pinn_gs2",), "scale-mismatch"),
    ("double-scale", ("pinn_gs2",), "scale-mismatch"),
    ("swapped-xy", ("pinn_gs2",), "axes-swapped"),
    ("uint16-intensity", ("pinn_gs2",), "intensity-as-amplitude"),
])
def test_each_planted_defect_names_its_own_cause(tiny_scenario, defect, models, cause):
    diagnosis = _diagnose(tiny_scenario([defect]), models, n_groups=24)
    verdict = diagnosis.verdict
    assert [c.id for c in verdict.causes] == [cause], verdict.to_dict()
    assert verdict.status == "explained" and verdict.unexplained == []
    assert diagnosis.to_dict()["verdict"]["causes"][0]["id"] == cause


def test_the_healthy_scenario_has_no_cause(tiny_scenario):
    verdict = _diagnose(tiny_scenario(()), ("pinn_gs2", "baseline_gs1"), n_groups=24).verdict
    assert verdict.status == "healthy" and verdict.causes == []
