"""Engine event streams for the verdict's four cases, from the recorded incident run: the
incident itself (one cause), a healthy workspace, symptoms no mechanism explains, and two causes.

The non-incident cases keep the recorded runs, traces and hypotheses and change only what the
diagnosis concluded: findings are the engine's own finding dicts (from the recording, or shaped
as ``ptytui.diagnosis.findings`` builds them), handed over as the diagnosis's final list.
"""

from __future__ import annotations

from ptytui.tui.state import RecordedEvent, event_type_name

CONCLUSIONS = ("FindingRaised", "DiagnosisFinished")


def _finished(event, findings):
    return RecordedEvent("DiagnosisFinished", {**event.data, "findings": findings})


def _split(events):
    """(events before the diagnosis's conclusion, the final DiagnosisFinished, its findings)."""
    finished = next(e for e in events if event_type_name(e) == "DiagnosisFinished")
    measured = [e for e in events if event_type_name(e) not in CONCLUSIONS]
    return measured, finished, list(finished.findings)


def healthy_events(incident):
    """The workspace without the Baseline: its two healthy models and their data findings."""
    measured, finished, findings = _split(incident)
    keep = [e for e in measured if getattr(e, "model", "") != "baseline_gs1"]
    kept_findings = [f for f in findings if f.get("model") != "baseline_gs1"]
    hypotheses = [h for h in finished.hypotheses if "baseline_gs1" not in str(h.get("name"))]
    done = RecordedEvent("DiagnosisFinished", {**finished.data, "findings": kept_findings,
                                               "hypotheses": hypotheses})
    return [e for e in keep if event_type_name(e) != "MetricsDone"] + [done]


def unexplained_events(incident):
    """The Baseline's output collapses, but neither its card (no reassembly layer read) nor its
    geometry names a mechanism: the symptoms stand unexplained, the hypotheses ruled out."""
    measured, finished, findings = _split(incident)
    dropped = ("positions-off-canvas", "model-kind", "counterfactual-recovers")
    kept = [f for f in findings if f.get("id") not in dropped]
    measured = [e for e in measured if not (event_type_name(e) == "PositionsMeasured"
                                            and e.model == "baseline_gs1")]
    return measured + [_finished(finished, kept)]


SCALE_MISMATCH = {
    "id": "scale-mismatch", "severity": "error", "model": "pinn_gs2", "split": None, "layer": None,
    "summary": "pinn_gs2's diffraction input is scaled by 1000, but the model's intensity scale is 1.976 "
               "(input off by a factor 506)",
    "evidence": {"intensity_scale_setting": 1000.0, "fed_scale": 1000.0, "model_intensity_scale": 1.97642,
                 "ratio": 505.96},
    "actions": [{"option": "apply-fix", "intervention": "apply-intensity-scale",
                 "command": "apply-fix:apply-intensity-scale",
                 "description": "feed the diffraction with the model's own intensity scale"}],
    "label": "PtychoPINN",
}
CONSTANT_OUTPUT = {
    "id": "output-constant", "severity": "error", "model": "pinn_gs2", "split": "test", "layer": None,
    "summary": "pinn_gs2 on test: output trimmed_obj.amplitude is constant (std 0 over 204800 values): "
               "the network saturates",
    "evidence": {"record": "trimmed_obj.amplitude", "mean": 1.0, "std": 0.0, "count": 204800, "positions": "relative"},
    "actions": [], "label": "PtychoPINN",
}


def two_cause_events(incident):
    """The incident, and the PINN fed raw counts (1000x its intensity scale): two causes."""
    measured, finished, findings = _split(incident)
    return measured + [_finished(finished, [SCALE_MISMATCH, CONSTANT_OUTPUT, *findings])]
