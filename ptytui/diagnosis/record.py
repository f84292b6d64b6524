"""The diagnosis record: everything one diagnosis measured and concluded, and its
``diagnose --json`` document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptytui.core.events import RunResult
from ptytui.core.findings import Finding
from ptytui.core.jsonable import json_ready
from ptytui.diagnosis.drift import SplitDrift
from ptytui.diagnosis.geometry import AxesCheck, SplitGeometry
from ptytui.diagnosis.hypotheses import BatchCouplingCheck, Hypothesis
from ptytui.diagnosis.interventions import InterventionReport, primary_output_stats
from ptytui.diagnosis.verdict import Verdict, build_verdict
from ptytui.running.trace import Trace


@dataclass
class Diagnosis:
    """Everything one diagnosis measured and concluded."""

    workspace: str
    workspace_name: str = ""
    workspace_hash: str | None = None
    findings: list[Finding] = field(default_factory=list)
    hypotheses: list[Hypothesis] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    geometry: list[SplitGeometry] = field(default_factory=list)
    drift: list[SplitDrift] = field(default_factory=list)
    interventions: list[InterventionReport] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    batch_checks: list[BatchCouplingCheck] = field(default_factory=list)
    axes_checks: list[AxesCheck] = field(default_factory=list)
    data_checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """1 when any error finding was raised, else 0 (CLI.md exit codes)."""
        return 1 if any(f.severity == "error" for f in self.findings) else 0

    @property
    def verdict(self) -> Verdict:
        """The root-cause verdict over these findings and hypotheses (``diagnosis.verdict``)."""
        return build_verdict([f.to_dict() for f in self.findings], [h.to_dict() for h in self.hypotheses])

    def findings_with(self, finding_id: str) -> list[Finding]:
        return [f for f in self.findings if f.id == finding_id]

    def to_dict(self, *, full_traces: bool = False) -> dict[str, Any]:
        """The ``diagnose --json`` document (workspace, findings, seconds, and what was measured)."""
        return json_ready({
            "workspace": self.workspace,
            "workspace_name": self.workspace_name,
            "workspace_hash": self.workspace_hash,
            "verdict": self.verdict.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
            "hypotheses": [h.to_dict() for h in self.hypotheses],
            "runs": [run_summary(r) for r in self.runs],
            "traces": [t.to_dict() if full_traces else trace_summary(t) for t in self.traces],
            "geometry": [g.to_dict() for g in self.geometry],
            "drift": [d.to_dict() for d in self.drift],
            "interventions": [intervention_summary(r) for r in self.interventions],
            "batch_checks": [c.to_dict() for c in self.batch_checks],
            "axes_checks": [c.to_dict() for c in self.axes_checks],
            "data_checks": self.data_checks,
            "cards": self.cards,
        })


def trace_summary(trace: Trace) -> dict[str, Any]:
    """A compact trace (no histograms): per layer path, type, nonzero fraction, mean, std, dead."""
    return {
        "model": trace.model, "split": trace.split, "n_samples": trace.n_samples,
        "positions": trace.positions,
        "first_collapse": trace.first_collapse.to_dict() if trace.first_collapse else None,
        "layers": [{"path": e.path, "type": e.type, "nonzero_fraction": e.nonzero_fraction,
                    "mean": e.output.mean if e.output.finite_count else None,
                    "std": e.output.std if e.output.finite_count else None,
                    "nan_count": e.output.nan_count, "inf_count": e.output.inf_count,
                    "dead_channels": e.dead_channels, "channels": e.channels,
                    "underflow_count": e.underflow_count}
                   for e in trace.layers],
    }


def run_summary(run: RunResult) -> dict[str, Any]:
    d = run.to_dict()
    primary = primary_output_stats(run.outputs)
    d["output_nonzero_fraction"] = primary.nonzero_fraction if primary else None
    return d


def intervention_summary(report: InterventionReport) -> dict[str, Any]:
    return {"model": report.model, "split": report.split, "n_samples": report.n_samples,
            "nonzero_before": report.as_fed.nonzero_fraction,
            "results": [{"intervention": r.name, "description": r.description,
                         "nonzero_after": r.nonzero_fraction,
                         "outputs": {k: {"mean": v.mean if v.finite_count else None,
                                         "std": v.std, "nonzero_fraction": v.nonzero_fraction,
                                         "nan_count": v.nan_count}
                                     for k, v in r.outputs.items()}}
                        for r in report.results]}
