"""The report's Summary and Root cause lead with the diagnosis's verdict: the cause, the chain to
its symptoms and the fixes ranked by evidence; a finding whose prediction failed is ruled out,
never named as the cause (issue 13)."""

from __future__ import annotations

from types import SimpleNamespace

from ptytui.outcome.export.gather import ReportInputs
from ptytui.outcome.export.report import root_cause_section, summary_section


def _finding(id_, severity, model, split, summary, evidence=None, actions=None):
    return {"id": id_, "severity": severity, "model": model, "split": split, "layer": None,
            "summary": summary, "evidence": evidence or {}, "actions": actions or []}


def _inputs(findings, hypotheses=()):
    workspace = SimpleNamespace(name="w", toml_path="w/ptytui.toml", root="w", models={})
    return ReportInputs(workspace=workspace, workspace_hash="0" * 16, generated="now", comparison=None,
                        diagnosis={"findings": findings, "hypotheses": list(hypotheses)},
                        diagnosis_note="given", decisions=[], decision_warnings=[], stats_runs=[],
                        stats_failures=[])


OFF_CANVAS = _finding(
    "positions-off-canvas", "error", "baseline", "test", "baseline is fed absolute offsets off its 74 px canvas",
    {"canvas": 74, "patch": 64, "predicted_visible_fraction": {"train": 0.002, "test": 0.0},
     "observed_nonzero_fraction": {"train": 0.0022, "test": 0.0}},
    [{"option": "retrain-baseline", "command": "retrain-baseline", "description": "retrain the Baseline"}])
ALL_ZERO = _finding("output-all-zero", "error", "baseline", "test", "baseline on test: output is exactly zero",
                    {"nonzero_fraction": 0.0})
RECOVERS = _finding("counterfactual-recovers", "warning", "baseline", "test", "fed zero positions it recovers",
                    {"intervention": "zero-positions", "nonzero_before": 0.0, "nonzero_after": 1.0})


def test_the_summary_and_root_cause_lead_with_the_verdict_chain_and_fixes():
    inputs = _inputs([OFF_CANVAS, ALL_ZERO, RECOVERS])
    summary = summary_section(inputs)
    assert summary[0].startswith("- **Verdict: explained.** baseline: positions-off-canvas")
    assert "apply-fix:zero-positions" in summary[1] and "0% -&gt; 100%" in summary[1]  # escaped Markdown
    root = "\n".join(root_cause_section(inputs))
    assert "### Cause 1: positions-off-canvas (baseline)" in root
    assert "| test | 0.00% | 0.00% |" in root
    assert "then: baseline on test: output is exactly zero" in root
    assert root.index("apply-fix:zero-positions") < root.index("retrain-baseline")  # measured recovery first


def test_a_cause_whose_prediction_failed_is_ruled_out_not_named():
    failed = dict(OFF_CANVAS, evidence=dict(OFF_CANVAS["evidence"], observed_nonzero_fraction={"train": 0.9,
                                                                                               "test": 0.8}))
    inputs = _inputs([failed, ALL_ZERO])
    root = "\n".join(root_cause_section(inputs))
    assert "**Verdict: unexplained.**" in root
    assert "### Cause" not in root
    assert "Ruled out:" in root and "prediction does not match the observation" in root
    assert "Verdict: unexplained" in summary_section(inputs)[0]
