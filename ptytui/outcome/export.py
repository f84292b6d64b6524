"""Export a workspace's session as an engineering blocker/resolution report and its artifacts:
Markdown, tidy CSVs, a JSON session, NPZ dumps of the failing batch and PNG figures.

Every file is written atomically (``ptytui.core.atomic``). Findings come only from a real
diagnosis (the session's saved ``diagnosis.json`` or ``ptytui.diagnosis.diagnose``); without one the
report says the diagnosis was not run and claims no cause. Names taken from models and files
are escaped in the Markdown (``md_escape``).
"""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ptytui import __version__
from ptytui.core.atomic import atomic_open, atomic_write_text
from ptytui.core.events import RunCancelled, RunFailed, RunFinished
from ptytui.core.jsonable import json_ready
from ptytui.diagnosis.diagnose import diagnose_workspace
from ptytui.diagnosis.geometry import canvas_of, fed_offsets, visible_fraction
from ptytui.errors import Cancelled, UsageError, one_line
from ptytui.inputs.decisions import (
    DIAGNOSIS_FILE,
    _key_numbers,
    is_superseded_label,
    load_saved_diagnosis,
    read_decision_log,
)
from ptytui.inputs.workspace import load_workspace
from ptytui.outcome.retrain import retrained_at
from ptytui.quality import compare as compare_module
from ptytui.quality.compare import FRC_CSV, METRICS_CSV, csv_text
from ptytui.quality.metrics import CSV_COLUMNS, FRC_CSV_COLUMNS
from ptytui.running.inference import call_inputs, feed_inputs, flat_outputs, is_cancelled, resolve_intensity_scale
from ptytui.running.session import Session
from ptytui.running.trace import trace_model

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "ReportInputs",
    "WorkspaceExportWriter",
    "export_workspace",
    "gather_report_inputs",
    "md_escape",
    "planned_files",
    "render_markdown",
]

EXPORT_FORMATS = ("md", "csv", "json", "npz", "png")
REPORT_MD = "report.md"
SESSION_JSON = "session.json"
FIGURE_RECONSTRUCTIONS = "reconstructions.png"
FIGURE_LAYERS = "layer_nonzero_fraction.png"
FIGURE_POSITIONS = "positions_vs_canvas.png"
DEFAULT_EXPORT_FOLDER = "export"
# Groups in a debug dump and in the trace behind the per-layer figure.
DEBUG_BATCH_GROUPS = 16
TRACE_GROUPS = 8
# An output whose amplitude is nonzero on less than this share of pixels is "failing" (used only
# to pick which batches to dump when no diagnosis names them).
FAILING_NONZERO_BELOW = 0.5
# Finding ids whose model / split point at a failing batch.
_FAILING_FINDINGS = ("output-all-zero", "output-sparse", "positions-off-canvas", "nonfinite",
                     "activation-collapse", "underflow")

_MD_SPECIAL = {"\\": "\\\\", "`": "\\`", "|": "\\|", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]",
               "<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#"}


def md_escape(value: Any) -> str:
    """Text safe inside Markdown prose and table cells: backslash-escape Markdown syntax
    (backticks, pipes, emphasis, brackets, headings), HTML-escape < > &, fold newlines."""
    text = " ".join(str(value).split()) if value is not None else ""
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in text)


def _code(value: Any) -> str:
    """Inline code for a path or id (escaped, so a backtick in a name cannot end the span)."""
    return f"<code>{md_escape(value)}</code>"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        return md_escape(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    if number == 0:
        return "0"  # also -0.0
    if abs(number) < 1e-3 or abs(number) >= 1e5:
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}g}"


def _pct(value: Any) -> str:
    if value is None:
        return "–"
    number = float(value)
    return "nan" if math.isnan(number) else f"{number:.2%}"


# ---- gathering --------------------------------------------------------------------------------

@dataclass
class ReportInputs:
    """Everything the report is made of (measured or recorded; nothing invented)."""

    workspace: Any
    workspace_hash: str
    generated: str
    comparison: Any  # compare.Comparison or None
    diagnosis: dict | None
    diagnosis_note: str  # where the diagnosis came from, or why there is none
    decisions: list[dict]
    decision_warnings: list[str]
    stats_runs: list  # events.RunResult per model x split
    stats_failures: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def decision(self) -> dict | None:
        return self.decisions[-1] if self.decisions else None

    @property
    def findings(self) -> list[dict]:
        return list((self.diagnosis or {}).get("findings") or [])


def _diagnose(session, *, cancel=None) -> tuple[dict | None, str, Any]:
    """Run the diagnosis on the session: (document, note, the Diagnosis object or None)."""
    try:
        result = diagnose_workspace(session.workspace, session=session, cancel=cancel)
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - the report says so instead of failing
        return None, f"not run: the diagnosis failed ({one_line(exc)})", None
    return result.to_dict(), "run by the export (ptytui.diagnosis.diagnose)", result


def _save_diagnosis(document: dict, session_dir: Path) -> None:
    """Keep a diagnosis the export ran in the session folder, for later decisions' evidence."""

    atomic_write_text(Path(session_dir) / DIAGNOSIS_FILE, json.dumps(document, indent=2, allow_nan=False) + "\n")


def collect_stats(session, *, cancel=None) -> tuple[list, list[str]]:
    """Input/output statistics of every model on every split (the incident's log lines)."""

    runs, failures = [], []
    for event in session.stats_events(session.plan(), cancel=cancel):
        if isinstance(event, RunFinished):
            runs.append(event.result)
        elif isinstance(event, RunFailed):
            failures.append(f"{event.model}/{event.split}: {event.message}")
        elif isinstance(event, RunCancelled):
            raise Cancelled("export")
    return runs, failures


def gather_report_inputs(session, *, comparison: Any = None, diagnosis: Any = "auto", stats: Any = "run",
                         cancel=None, log: Callable[[str], None] | None = None) -> ReportInputs:
    """Collect the report's material for ``session``'s workspace.

    Parameters
    ----------
    comparison : compare.Comparison, optional
        Default: the session's cached comparison when it matches the workspace hash and the
        current decision, else a new ``compare_workspace`` run (then cached).
    diagnosis : "auto", dict or None
        "auto": the session's saved ``diagnosis.json`` for the same workspace hash, else a run of
        ``ptytui.diagnosis.diagnose.diagnose_workspace`` when that module exists, else none (the
        report then says the diagnosis was not run). None: no diagnosis.
    stats : "run", list of RunResult, or None
        "run" streams every model over every split for the statistics table.
    """

    say = log or (lambda text: None)
    workspace = session.workspace
    workspace_hash = workspace.hash()
    decision_log = read_decision_log(workspace.session_dir)
    decision = decision_log.current
    notes: list[str] = []
    if comparison is None:
        comparison = compare_module.load_cached_comparison(workspace.session_dir, workspace_hash=workspace_hash,
                                                           decision=decision)
        if comparison is not None:
            say("metrics: the session's cached comparison (same inputs, same decision)")
        else:
            say("metrics: running compare")
            comparison = compare_module.compare_workspace(session, decision=decision, cancel=cancel)
            try:
                compare_module.save_comparison(comparison, workspace.session_dir)
            except OSError as exc:
                notes.append(f"the comparison could not be cached in the session folder: {exc}")
    diagnosis_runs = None
    if diagnosis == "auto":
        saved = load_saved_diagnosis(workspace.session_dir, workspace_hash)
        if saved is not None:
            diagnosis, diagnosis_note = saved, "read from the session's saved diagnosis.json"
        else:
            say("diagnosis: running")
            diagnosis, diagnosis_note, ran = _diagnose(session, cancel=cancel)
            if diagnosis is not None:
                diagnosis_runs = list(getattr(ran, "runs", None) or [])
                try:
                    _save_diagnosis(diagnosis, workspace.session_dir)
                except (OSError, TypeError, ValueError) as exc:
                    notes.append(f"the diagnosis could not be saved in the session folder: {exc}")
    elif diagnosis is None:
        diagnosis_note = "not run (not requested)"
    else:
        diagnosis = diagnosis.to_dict() if hasattr(diagnosis, "to_dict") else dict(diagnosis)
        diagnosis_note = "given by the caller"
    planned = {(plan.model, plan.split) for plan in session.plan()}
    if stats == "run" and diagnosis_runs and planned <= {(r.model, r.split) for r in diagnosis_runs}:
        # The diagnosis just streamed every model over every split: the same statistics.
        stats_runs, stats_failures = [r for r in diagnosis_runs if (r.model, r.split) in planned], []
    elif stats == "run":
        say("statistics: streaming every model over every split")
        stats_runs, stats_failures = collect_stats(session, cancel=cancel)
    else:
        stats_runs, stats_failures = list(stats or []), []
    return ReportInputs(workspace=workspace, workspace_hash=workspace_hash,
                        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        comparison=comparison, diagnosis=diagnosis, diagnosis_note=diagnosis_note,
                        decisions=decision_log.decisions, decision_warnings=decision_log.warnings,
                        stats_runs=stats_runs, stats_failures=stats_failures, notes=notes)


# ---- Markdown ------------------------------------------------------------------------------------

_ARTIFACT_DESCRIPTIONS = {
    REPORT_MD: "this report",
    "comparison_metrics.csv": "metrics, tidy: model,metric,amplitude,phase,value (PtychoPINN layout)",
    "frc_curves.csv": "FRC curves: model,frequency_bin,amplitude_frc,phase_frc",
    SESSION_JSON: "the whole session: workspace, statistics, diagnosis, metrics, decisions",
    FIGURE_RECONSTRUCTIONS: "reconstructions beside the ground truth (amplitude, phase)",
    FIGURE_LAYERS: "per-layer nonzero fraction per model and split",
    FIGURE_POSITIONS: "scan positions per split, and offsets as fed against each model's canvas",
}


def _describe_artifact(name: str) -> str:
    if name in _ARTIFACT_DESCRIPTIONS:
        return _ARTIFACT_DESCRIPTIONS[name]
    if name.startswith("debug_") and name.endswith(".npz"):
        return "the failing batch: inputs as fed, positions (fed and absolute), outputs"
    return ""


def _primary_output(run) -> tuple[str, Any] | tuple[None, None]:
    for name, record in run.outputs.items():
        if not name.endswith(".phase"):
            return name, record
    return None, None


def _fed_positions(run) -> str | None:
    """How positions were fed in a run, or None when the model takes no positions."""
    takes = any("position" in name.lower() for name in run.inputs)
    return run.positions if takes else None


def _status_line(inputs: ReportInputs) -> tuple[str, str]:
    """(short status, sentence) from the current decision and the workspace."""
    decision = inputs.decision
    if decision is None:
        return "Open", "No decision has been recorded (`ptytui decide`)."
    option = decision.get("option")
    who, when = md_escape(decision.get("who")), md_escape(decision.get("when"))
    if option == "debug-baseline":
        return "Open", f"Debugging continues (decision debug-baseline by {who}, {when})."
    if option == "retrain-baseline":
        retrained = retrained_at(inputs.workspace)
        decided = _parse_time(decision.get("when"))
        if retrained is not None and decided is not None and retrained < decided:
            return "Resolved", (f"The Baseline was retrained at {retrained.isoformat()}, before decision "
                                f"retrain-baseline ({who}, {when}) was recorded; the superseded model is kept "
                                f"in the workspace for comparison.")
        if retrained is not None or any(is_superseded_label(e.label) for e in inputs.workspace.models.values()):
            return "Resolved", (f"The Baseline was retrained (decision retrain-baseline by {who}, {when}); "
                                f"the superseded model is kept in the workspace for comparison.")
        return "Decided, pending", (f"Decision retrain-baseline by {who}, {when}; the retrain has not been "
                                    f"run yet (`ptytui retrain`).")
    label = {"skip-baseline": "the Baseline is skipped: PINN against the reference only",
             "accept-train-only": "Baseline metrics are accepted on the train split only",
             "apply-fix": f"the input fix {md_escape(decision.get('intervention'))} is applied"}.get(option, option)
    return "Resolved", f"Resolved by decision {md_escape(option)}: {label} ({who}, {when})."


def _parse_time(text) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None


def _finding_numbers(finding: dict, limit: int = 6) -> str:

    numbers = _key_numbers(finding.get("evidence") or {})
    parts = [f"{md_escape(k)} = {_fmt(v)}" for k, v in list(numbers.items())[:limit]]
    return "; ".join(parts) if parts else "–"


def _metrics_table(comparison) -> list[str]:
    head = ("| model | status | split | amp SSIM | amp MS-SSIM | amp PSNR dB | amp MAE | amp FRC50 | "
            "phase SSIM | phase MS-SSIM | phase PSNR dB | phase MAE | phase FRC50 | output nonzero |")
    lines = [head, "|" + "---|" * 14]
    for entry in comparison.entries:
        cells = [md_escape(entry.model_id), md_escape(entry.status), md_escape(entry.split)]
        for component in ("amplitude", "phase"):
            for metric in ("ssim", "ms_ssim", "psnr", "mae", "frc50"):
                cells.append(_fmt(entry.value(component, metric)))
        cells.append(_pct(entry.output_nonzero_fraction))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(inputs: ReportInputs, artifacts: Iterable[str]) -> str:
    """The report: Summary, Evidence, Analysis, Root cause, Commands to reproduce, Decision,
    Status, Artifacts. Numbers only from ``inputs``; every name escaped."""
    ws = inputs.workspace
    comparison = inputs.comparison
    findings = inputs.findings
    errors = [f for f in findings if f.get("severity") == "error"]
    warnings_ = [f for f in findings if f.get("severity") == "warning"]
    status, status_sentence = _status_line(inputs)
    toml = str(ws.toml_path or ws.root)
    out: list[str] = []
    add = out.append

    add(f"# Blocker report: {md_escape(ws.name)}")
    add("")
    add(f"Workspace {_code(toml)} (inputs hash {_code(inputs.workspace_hash[:16])}), generated "
        f"{md_escape(inputs.generated)} by ptytui {md_escape(_version())}.")
    add("")

    # Summary
    add("## Summary")
    add("")
    add(f"- **Status: {md_escape(status)}.** {status_sentence}")
    if inputs.diagnosis is None:
        add(f"- The diagnosis was {md_escape(inputs.diagnosis_note)}. No finding or cause is claimed; "
            f"the evidence below is limited to measured statistics and metrics.")
    else:
        add(f"- Diagnosis ({md_escape(inputs.diagnosis_note)}): {len(errors)} error, {len(warnings_)} "
            f"warning finding(s) of {len(findings)}.")
        # Every error up to ten: the cause (e.g. positions-off-canvas) often comes after its
        # symptoms in the engine's order, and a summary that stops at five can miss it.
        for finding in errors[:10]:
            add(f"  - {md_escape(finding.get('id'))} ({md_escape(finding.get('model') or '-')}/"
                f"{md_escape(finding.get('split') or '-')}): {md_escape(finding.get('summary'))}")
        if len(errors) > 10:
            add(f"  - and {len(errors) - 10} more error finding(s): see Findings below.")
    for run in (inputs.stats_runs if inputs.diagnosis is None else []):
        name, record = _primary_output(run)
        if record is not None and record.count and record.nonzero_fraction < FAILING_NONZERO_BELOW:
            fed = _fed_positions(run)
            add(f"- Measured: {md_escape(run.model)} output {md_escape(name)} on split {md_escape(run.split)} "
                f"is {_pct(record.nonzero_fraction)} nonzero"
                + (f" (positions fed {md_escape(fed)})." if fed else "."))
    if comparison is not None:
        parts = []
        for entry in comparison.entries:
            ssim = entry.value("amplitude", "ssim")
            parts.append(f"{md_escape(entry.model_id)} {_fmt(ssim, 3)}" if entry.status in ("evaluated", "train-only")
                         else f"{md_escape(entry.model_id)} {md_escape(entry.status)}")
        add(f"- Amplitude SSIM on split {md_escape(comparison.split)}: " + ", ".join(parts) + ".")
    add("")

    # Evidence
    add("## Evidence")
    add("")
    add("### Output statistics per model and split")
    add("")
    if inputs.stats_runs:
        add("| model | split | positions | tensor | mean | std | max | nonzero | NaN | Inf |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for run in inputs.stats_runs:
            for kind, records in (("in", run.inputs), ("out", run.outputs)):
                for name, rec in records.items():
                    add(f"| {md_escape(run.model)} | {md_escape(run.split)} | {md_escape(_fed_positions(run) or '–')} | "
                        f"{kind}: {md_escape(name)} | {_fmt(rec.mean)} | {_fmt(rec.std)} | {_fmt(rec.max)} | "
                        f"{_pct(rec.nonzero_fraction)} ({rec.nonzero_count}/{rec.count}) | {rec.nan_count} | "
                        f"{rec.inf_count} |")
    else:
        add("Statistics were not collected for this export.")
    for failure in inputs.stats_failures:
        add(f"- failed: {md_escape(failure)}")
    add("")
    add("### Findings")
    add("")
    if inputs.diagnosis is None:
        add(f"The diagnosis was {md_escape(inputs.diagnosis_note)}: no findings to report. Run "
            f"`ptytui diagnose` and export again.")
    elif not findings:
        add("The diagnosis raised no finding.")
    else:
        add("| severity | finding | model | split | summary | key numbers |")
        add("|---|---|---|---|---|---|")
        order = {"error": 0, "warning": 1, "info": 2}
        for finding in sorted(findings, key=lambda f: order.get(str(f.get("severity")), 3)):
            add(f"| {md_escape(finding.get('severity'))} | {md_escape(finding.get('id'))} | "
                f"{md_escape(finding.get('model') or '–')} | {md_escape(finding.get('split') or '–')} | "
                f"{md_escape(finding.get('summary'))} | {_finding_numbers(finding)} |")
    add("")
    if comparison is not None:
        add(f"### Metrics on split {md_escape(comparison.split)}")
        add("")
        add("Amplitude metrics use the prediction rescaled by mean(gt)/mean(pred) (PtychoPINN's rule; "
            "the factor is in the CSV); PSNR uses the ground truth's data range, never 255; FRC50 in rings.")
        add("")
        out.extend(_metrics_table(comparison))
        add("")
        for entry in comparison.entries:
            if entry.note:
                add(f"- {md_escape(entry.model_id)}: {md_escape(entry.note)}")
        for note in comparison.notes:
            add(f"- {md_escape(note)}")
        metric_findings = [f for f in comparison.findings() if f["severity"] != "info"]
        if metric_findings:
            add("")
            add("Metric sanity flags (metric-degenerate):")
            add("")
            for finding in metric_findings:
                add(f"- {md_escape(finding['severity'])}: {md_escape(finding['summary'])}")
        add("")

    # Analysis
    add("## Analysis")
    add("")
    analysis = _analysis_lines(inputs)
    out.extend(analysis)
    add("")

    # Root cause
    add("## Root cause")
    add("")
    out.extend(_root_cause_lines(inputs))
    add("")

    # Commands
    add("## Commands to reproduce")
    add("")
    quoted = shlex.quote(toml)
    add("~~~sh")
    add(f"ptytui stats {quoted} --json")
    add(f"ptytui diagnose {quoted} --json")
    add(f"ptytui compare {quoted} --json")
    decision = inputs.decision
    if decision is not None:
        option = decision.get("option")
        if decision.get("intervention"):
            option = f"{option}:{decision['intervention']}"
        add(f"ptytui decide {quoted} --option {shlex.quote(str(option))} --reason "
            f"{shlex.quote(' '.join(str(decision.get('rationale') or '').split()))}")
        if decision.get("option") == "retrain-baseline":
            add(f"ptytui retrain {quoted}")
    add(f"ptytui export {quoted}")
    add("~~~")
    add("")

    # Decision
    add("## Decision")
    add("")
    if decision is None:
        add("No decision recorded. Options: " + ", ".join(
            md_escape(o) for o in ("skip-baseline", "debug-baseline", "retrain-baseline", "accept-train-only",
                                   "apply-fix:INTERVENTION")) + ".")
    else:
        add(f"- Option: **{md_escape(decision.get('option'))}**"
            + (f" (intervention {md_escape(decision.get('intervention'))})" if decision.get("intervention") else ""))
        add(f"- Rationale: {md_escape(decision.get('rationale') or decision.get('reason'))}")
        add(f"- Who / when: {md_escape(decision.get('who'))}, {md_escape(decision.get('when'))}")
        evidence = decision.get("evidence") or {}
        ids = [f"{md_escape(f.get('id'))} ({md_escape(f.get('model') or '-')}/{md_escape(f.get('split') or '-')})"
               for f in evidence.get("findings") or []]
        add(f"- Evidence at decision time: {', '.join(ids) if ids else md_escape(evidence.get('note') or 'none recorded')}")
        if decision.get("workspace_hash") and decision.get("workspace_hash") != inputs.workspace_hash:
            add("- Note: the workspace's inputs changed since this decision (hash differs).")
        if len(inputs.decisions) > 1:
            add("")
            add("Decision log (oldest first):")
            add("")
            add("| when | who | option | rationale |")
            add("|---|---|---|---|")
            for record in inputs.decisions:
                option = record.get("option")
                if record.get("intervention"):
                    option = f"{option}:{record['intervention']}"
                add(f"| {md_escape(record.get('when'))} | {md_escape(record.get('who'))} | {md_escape(option)} | "
                    f"{md_escape(record.get('rationale') or record.get('reason'))} |")
    for warning in inputs.decision_warnings:
        add(f"- Decision log: {md_escape(warning)}")
    add("")

    # Status
    add("## Status")
    add("")
    add(f"**{md_escape(status)}.** {status_sentence}")
    add("")

    # Artifacts
    add("## Artifacts")
    add("")
    for name in artifacts:
        description = _describe_artifact(name)
        add(f"- {_code(name)}" + (f": {md_escape(description)}" if description else ""))
    for note in inputs.notes:
        add(f"- note: {md_escape(note)}")
    add("")
    return "\n".join(out)


def _version() -> str:

    return __version__


def _analysis_lines(inputs: ReportInputs) -> list[str]:
    lines = []
    by_model: dict[str, list] = {}
    for run in inputs.stats_runs:
        by_model.setdefault(run.model, []).append(run)
    for model, runs in by_model.items():
        parts = []
        for run in runs:
            name, record = _primary_output(run)
            if record is not None:
                parts.append(f"{_pct(record.nonzero_fraction)} nonzero on {md_escape(run.split)}")
        if parts:
            positions = sorted({str(_fed_positions(r)) for r in runs if _fed_positions(r)})
            fed = f" (positions fed {md_escape(', '.join(positions))})" if positions else ""
            lines.append(f"- {md_escape(model)}{fed}: output " + ", ".join(parts) + ".")
    findings = inputs.findings
    for finding in findings:
        if finding.get("id") == "counterfactual-recovers":
            lines.append(f"- Counterfactual ({md_escape(finding.get('model'))}/{md_escape(finding.get('split'))}): "
                         f"{md_escape(finding.get('summary'))} [{_finding_numbers(finding)}]")
    hypotheses = [h for h in ((inputs.diagnosis or {}).get("hypotheses") or []) if isinstance(h, dict)]
    if hypotheses:
        lines.append("- The incident report's hypotheses, each with its test and verdict:")
        lines.append("")
        lines.append("| hypothesis | model | verdict | test | key numbers |")
        lines.append("|---|---|---|---|---|")
        for hypothesis in hypotheses:
            lines.append(f"| {md_escape(hypothesis.get('name') or hypothesis.get('id'))} | "
                         f"{md_escape(hypothesis.get('model') or '–')} | **{md_escape(hypothesis.get('verdict'))}** | "
                         f"{md_escape(hypothesis.get('test'))} | {_finding_numbers(hypothesis, limit=4)} |")
        lines.append("")
    if inputs.diagnosis is None:
        lines.append("- No diagnosis was run, so no mechanism is claimed: the statistics and metrics above are "
                     "what the report can state.")
    elif not [f for f in findings if f.get("severity") == "error"]:
        lines.append("- The diagnosis raised no error finding.")
    else:
        for finding in [f for f in findings if f.get("severity") == "error"][:6]:
            if finding.get("id") != "counterfactual-recovers":
                lines.append(f"- {md_escape(finding.get('id'))}: {md_escape(finding.get('summary'))}")
    return lines or ["- Nothing measured."]


def _root_cause_lines(inputs: ReportInputs) -> list[str]:
    if inputs.diagnosis is None:
        return [f"Not established: the diagnosis was {md_escape(inputs.diagnosis_note)}."]
    findings = inputs.findings
    geometric = [f for f in findings if f.get("id") == "positions-off-canvas"]
    lines: list[str] = []
    for finding in geometric:
        evidence = finding.get("evidence") or {}
        predicted = evidence.get("predicted_visible_fraction") or {}
        observed = evidence.get("observed_nonzero_fraction") or {}
        lines.append(f"{md_escape(finding.get('summary'))} ({md_escape(finding.get('model') or '-')})")
        lines.append("")
        if isinstance(predicted, dict) or isinstance(observed, dict):
            predicted = predicted if isinstance(predicted, dict) else {}
            observed = observed if isinstance(observed, dict) else {}
            lines.append("| split | predicted visible fraction (geometry) | observed nonzero fraction |")
            lines.append("|---|---|---|")
            for split in sorted(set(predicted) | set(observed)):
                lines.append(f"| {md_escape(split)} | {_pct(predicted.get(split))} | {_pct(observed.get(split))} |")
        else:
            lines.append(f"Predicted visible fraction {_pct(predicted)}, observed nonzero fraction {_pct(observed)}.")
        lines.append("")
    if not geometric:
        errors = [f for f in findings if f.get("severity") == "error"]
        if not errors:
            return ["No error finding: no root cause to state."]
        top = errors[0]
        lines.append(f"Top error finding {md_escape(top.get('id'))} ({md_escape(top.get('model') or '-')}/"
                     f"{md_escape(top.get('split') or '-')}): {md_escape(top.get('summary'))}")
        lines.append("")
        lines.append(f"Evidence: {_finding_numbers(top, limit=10)}")
    return lines


# ---- NPZ debug dumps -------------------------------------------------------------------------------

def failing_runs(inputs: ReportInputs) -> list[tuple[str, str]]:
    """(model, split) pairs whose batch is dumped: named by error findings of the diagnosis, else
    measured (primary output nonzero on < 50 % of pixels, or NaN / Inf)."""
    pairs: list[tuple[str, str]] = []
    models = set(inputs.workspace.models)
    for finding in inputs.findings:
        if finding.get("severity") == "error" and finding.get("id") in _FAILING_FINDINGS:
            pair = (finding.get("model"), finding.get("split"))
            if pair[0] in models and pair[1] in inputs.workspace.splits and pair not in pairs:
                pairs.append(pair)
    if pairs:
        return pairs
    for run in inputs.stats_runs:
        name, record = _primary_output(run)
        if record is None or not record.count:
            continue
        if record.nonzero_fraction < FAILING_NONZERO_BELOW or record.nan_count or record.inf_count:
            pair = (run.model, run.split)
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def _safe_name(text: str) -> str:
    import re  # noqa: PLC0415

    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.")
    return cleaned or "model"


def write_debug_dump(session, model: str, split: str, path: Path, *, groups: int = DEBUG_BATCH_GROUPS) -> Path:
    """The first batch of ``split`` through ``model`` as the workspace feeds it, to an NPZ:
    ``input__NAME`` (as fed), ``output__NAME``, ``positions_absolute`` (B, C, 2) [x, y],
    ``pattern_indices`` (B, C), ``group_indices`` (B,), ``meta_json`` (a JSON string)."""

    loaded = session.model(model)
    entry = session.model_entry(model)
    opened = session.split(split)
    grouping = session.grouping(split, session.gridsize(model))
    idx = np.arange(min(groups, len(grouping.indices)))
    batch = grouping.batch(opened, idx)
    positions = entry.positions or "relative"
    scale = entry.intensity_scale if entry.intensity_scale is not None else "apply"
    fed = feed_inputs(loaded, batch, positions=positions, intensity_scale=scale)
    outputs = flat_outputs(loaded.model(call_inputs(fed), training=False))
    names = [o["name"] for o in loaded.card.outputs] or []
    arrays: dict[str, np.ndarray] = {}
    for name, value in fed.items():
        arrays[f"input__{_safe_name(name)}"] = np.asarray(value)
    nonzero = {}
    for i, value in enumerate(outputs):
        name = names[i] if i < len(names) else f"output_{i}"
        array = np.asarray(value)
        arrays[f"output__{_safe_name(name)}"] = array
        nonzero[name] = float(np.count_nonzero(array) / array.size) if array.size else None
    arrays["positions_absolute"] = np.asarray(batch.positions)
    arrays["pattern_indices"] = np.asarray(batch.indices)
    arrays["group_indices"] = np.asarray(batch.group_indices)
    meta = {"model": model, "split": split, "positions": positions,
            "intensity_scale": resolve_intensity_scale(loaded, scale), "groups": int(idx.size),
            "model_path": str(entry.path), "split_path": str(opened.path), "output_nonzero_fraction": nonzero}
    arrays["meta_json"] = np.array(json.dumps(meta))
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


# ---- figures -----------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save_figure(fig, path: Path) -> Path:

    plt = _pyplot()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _ground_truth_window(obj: np.ndarray, origin, shape) -> np.ndarray | None:
    if origin is None:
        return None
    row0, col0 = int(round(origin[0])), int(round(origin[1]))
    height, width = shape
    out = np.zeros(shape, dtype=np.complex64)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + height, obj.shape[0]), min(col0 + width, obj.shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = obj[r0:r1, c0:c1]
    return out


def figure_reconstructions(session, comparison, path: Path) -> Path | None:
    """One row per evaluated entry: amplitude, phase, and the ground truth of the same region."""
    entries = [e for e in comparison.entries if e.canvas is not None]
    if not entries:
        return None
    plt = _pyplot()
    truth = {}
    fig, axes = plt.subplots(len(entries), 4, figsize=(12, 3 * len(entries)), squeeze=False)
    for row, entry in enumerate(entries):
        if entry.split not in truth:
            opened = session.split(entry.split)
            truth[entry.split] = np.asarray(opened.object) if opened.object is not None else None
        canvas = np.asarray(entry.canvas)
        gt = truth[entry.split]
        window = _ground_truth_window(gt, entry.origin, canvas.shape) if gt is not None else None
        if window is None and gt is not None:
            window = gt
        panels = [(np.abs(canvas), f"{entry.model_id}: amplitude"), (np.angle(canvas), f"{entry.model_id}: phase")]
        if window is not None:
            panels += [(np.abs(window), "ground truth: amplitude"), (np.angle(window), "ground truth: phase")]
        for col in range(4):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(panels):
                image, title = panels[col]
                shown = ax.imshow(image, cmap="gray" if col % 2 == 0 else "twilight")
                ax.set_title(f"{title} ({entry.split})", fontsize=8)
                fig.colorbar(shown, ax=ax, fraction=0.046)
    return _save_figure(fig, path)


def figure_layers(session, path: Path, *, groups: int = TRACE_GROUPS) -> Path | None:
    """Per-layer nonzero fraction of every model on a small probe batch of every split."""
    workspace = session.workspace
    traces: dict[str, list] = {}
    for name, entry in workspace.models.items():
        try:
            loaded = session.model(name)
        except Exception:  # noqa: BLE001 - a model that cannot load is reported elsewhere
            continue
        for split_name in workspace.splits:
            try:
                opened = session.split(split_name)
                grouping = session.grouping(split_name, session.gridsize(name))
                batch = grouping.batch(opened, np.arange(min(groups, len(grouping.indices))))
                fed = feed_inputs(loaded, batch, positions=entry.positions or "relative",
                                  intensity_scale=entry.intensity_scale if entry.intensity_scale is not None else "apply")
                trace = trace_model(loaded.model, fed, model_name=name, split=split_name,
                                    positions=entry.positions, with_weights=False)
            except Exception:  # noqa: BLE001
                continue
            traces.setdefault(name, []).append(trace)
    if not traces:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(traces), 1, figsize=(11, 3.2 * len(traces)), squeeze=False)
    for row, (name, model_traces) in enumerate(traces.items()):
        ax = axes[row][0]
        labels = None
        for trace in model_traces:
            layers = [entry for entry in trace.layers if not entry.is_container]
            labels = [entry.path for entry in layers]
            ax.plot(range(len(layers)), [entry.nonzero_fraction for entry in layers], marker="o",
                    label=f"{trace.split} (positions {trace.positions or 'relative'})")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("nonzero fraction")
        ax.set_title(f"{name}: per-layer output nonzero fraction ({groups} groups per split)", fontsize=9)
        if labels:
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=6)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_figure(fig, path)


def figure_positions(session, path: Path) -> Path | None:
    """Scan positions per split on the object, and for each position-taking model the offsets as
    fed per split against its canvas: the box |dx|, |dy| < N keeps part of each patch visible."""
    workspace = session.workspace
    plt = _pyplot()
    panels = [None]
    cards = {}
    for name in workspace.models:
        try:
            card = session.model(name).card
        except Exception:  # noqa: BLE001
            continue
        if getattr(card, "takes_positions", False):
            panels.append(name)
            cards[name] = card
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax = axes[0][0]
    extent = None
    for i, split_name in enumerate(workspace.splits):
        opened = session.split(split_name)
        ax.scatter(opened.xcoords, opened.ycoords, s=4, color=colours[i % len(colours)], label=split_name)
        if opened.object is not None:
            extent = opened.object.shape
    if extent is not None:
        ax.add_patch(plt.Rectangle((0, 0), extent[1], extent[0], fill=False, color="k", lw=1))
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_title("scan positions per split (object pixels)", fontsize=9)
    ax.set_xlabel("x (column)")
    ax.set_ylabel("y (row)")
    ax.legend(fontsize=7)
    for col, name in enumerate(panels[1:], start=1):
        ax = axes[0][col]
        entry = workspace.models[name]
        mode = entry.positions or "relative"
        card = cards[name]
        patch = None
        canvas = None
        geometry = canvas_of(card)
        if geometry is not None:
            patch, canvas = geometry.patch, geometry.canvas
        for i, split_name in enumerate(workspace.splits):
            opened = session.split(split_name)
            grouping = session.grouping(split_name, session.gridsize(name))
            offsets = fed_offsets(opened, grouping, mode).reshape(-1, 2)
            label = split_name
            if patch:
                label += f" (visible {visible_fraction(offsets, patch).mean():.1%})"
            ax.scatter(offsets[:, 0], offsets[:, 1], s=4, color=colours[i % len(colours)], label=label)
        patch = patch or opened.N
        ax.add_patch(plt.Rectangle((-patch, -patch), 2 * patch, 2 * patch, fill=False, color="r", lw=1,
                                   label=f"|dx|, |dy| < N = {patch} (part visible)"))
        if canvas:
            ax.add_patch(plt.Rectangle((-canvas / 2, -canvas / 2), canvas, canvas, fill=False, color="k",
                                       lw=1, ls="--", label=f"canvas P = {canvas}"))
        ax.invert_yaxis()
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{name}: offsets as fed ({mode}) vs canvas", fontsize=9)
        ax.set_xlabel("dx (px)")
        ax.set_ylabel("dy (px)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save_figure(fig, path)


# ---- JSON session ---------------------------------------------------------------------------------

def session_document(inputs: ReportInputs, files: list[str]) -> dict:
    """The JSON session: workspace, statistics, diagnosis (or why none), metrics, decisions, files."""

    ws = inputs.workspace
    models = {name: {"path": str(e.path), "label": e.label, "gridsize": e.gridsize, "positions": e.positions,
                     "intensity_scale": e.intensity_scale, "expected_kind": e.expected_kind}
              for name, e in ws.models.items()}
    reference = None
    if ws.reference is not None:
        reference = {"path": str(ws.reference.path), "label": ws.reference.label, "split": ws.reference.split}
    return json_ready({
        "ptytui_version": _version(),
        "generated": inputs.generated,
        "workspace": {"name": ws.name, "toml": str(ws.toml_path) if ws.toml_path else None,
                      "hash": inputs.workspace_hash, "splits": {k: str(v) for k, v in ws.splits.items()},
                      "models": models, "reference": reference},
        "stats": {"runs": [run.to_dict() for run in inputs.stats_runs], "failures": inputs.stats_failures},
        "diagnosis": inputs.diagnosis if inputs.diagnosis is not None else {"run": False,
                                                                            "note": inputs.diagnosis_note},
        "diagnosis_source": inputs.diagnosis_note,
        "comparison": inputs.comparison.to_dict() if inputs.comparison is not None else None,
        "decisions": inputs.decisions,
        "current_decision": inputs.decision,
        "decision_log_warnings": inputs.decision_warnings,
        "files": files,
        "notes": inputs.notes,
    }, infinity="text")


# ---- the export ----------------------------------------------------------------------------------

def parse_formats(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``md,csv,json,npz,png`` (any subset, comma separated) -> a tuple in canonical order."""
    if text is None:
        return EXPORT_FORMATS
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = {item.strip().lower() for item in items if item.strip()}
    unknown = sorted(chosen - set(EXPORT_FORMATS))
    if unknown or not chosen:
        raise UsageError(f"--format: expected a comma-separated subset of {','.join(EXPORT_FORMATS)}, "
                         f"found {text!r}")
    return tuple(f for f in EXPORT_FORMATS if f in chosen)


def default_out_dir(workspace) -> Path:
    return Path(workspace.session_dir) / DEFAULT_EXPORT_FOLDER


def planned_files(formats: Iterable[str]) -> list[str]:
    """File names an export of ``formats`` writes (debug dumps named per failing model/split)."""

    chosen = set(formats)
    names = []
    if "md" in chosen:
        names.append(REPORT_MD)
    if "csv" in chosen:
        names += [METRICS_CSV, FRC_CSV]
    if "json" in chosen:
        names.append(SESSION_JSON)
    if "npz" in chosen:
        names.append("debug_<model>_<split>.npz")
    if "png" in chosen:
        names += [FIGURE_RECONSTRUCTIONS, FIGURE_LAYERS, FIGURE_POSITIONS]
    return names


@dataclass
class ExportResult:
    """What an export wrote (absolute paths, in writing order) and what it noted."""

    out_dir: Path
    files: list[Path]
    inputs: ReportInputs
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "files": [str(p) for p in self.files], "notes": list(self.notes),
                "seconds": round(self.seconds, 3),
                "diagnosis": self.inputs.diagnosis_note,
                "decision": self.inputs.decision}


def export_workspace(session, *, formats: Iterable[str] | str | None = None, out_dir: str | Path | None = None,
                     comparison: Any = None, diagnosis: Any = "auto", stats: Any = "run", cancel=None,
                     log: Callable[[str], None] | None = None) -> ExportResult:
    """Write the report and its artifacts for ``session``'s workspace into ``out_dir``.

    Parameters
    ----------
    formats : "md,csv,json,npz,png" or an iterable
        Which kinds of file to write (default all).
    out_dir : path, optional
        Default ``<session>/export``.
    comparison, diagnosis, stats
        See ``gather_report_inputs``.

    Returns
    -------
    ExportResult
        Each file written atomically; a figure that cannot be drawn is noted, not fatal.
    """

    started = time.perf_counter()
    chosen = parse_formats(formats)
    folder = Path(out_dir) if out_dir is not None else default_out_dir(session.workspace)
    folder.mkdir(parents=True, exist_ok=True)
    say = log or (lambda text: None)
    inputs = gather_report_inputs(session, comparison=comparison, diagnosis=diagnosis,
                                  stats=stats if ("md" in chosen or "json" in chosen or "npz" in chosen) else None,
                                  cancel=cancel, log=log)
    written: list[Path] = []
    notes: list[str] = []

    def check_cancel():

        if cancel is not None and is_cancelled(cancel):
            raise Cancelled("export")

    if "npz" in chosen:
        pairs = failing_runs(inputs)
        if not pairs:
            notes.append("no failing batch to dump: no error finding names one and every output is mostly nonzero")
        for model, split in pairs:
            check_cancel()
            target = folder / f"debug_{_safe_name(model)}_{_safe_name(split)}.npz"
            try:
                written.append(write_debug_dump(session, model, split, target))
                say(f"wrote {target.name}")
            except Exception as exc:  # noqa: BLE001
                notes.append(f"debug dump of {model}/{split} not written: {one_line(exc)}")
    if "png" in chosen:
        for name, draw in ((FIGURE_RECONSTRUCTIONS, lambda p: figure_reconstructions(session, inputs.comparison, p)),
                           (FIGURE_LAYERS, lambda p: figure_layers(session, p)),
                           (FIGURE_POSITIONS, lambda p: figure_positions(session, p))):
            check_cancel()
            try:
                result = draw(folder / name)
            except Exception as exc:  # noqa: BLE001 - a figure must not sink the report
                notes.append(f"figure {name} not drawn: {one_line(exc)}")
                continue
            if result is None:
                notes.append(f"figure {name} not drawn: nothing to show")
            else:
                written.append(result)
                say(f"wrote {name}")
    if "csv" in chosen and inputs.comparison is not None:
        written.append(atomic_write_text(folder / METRICS_CSV, csv_text(inputs.comparison.rows(), CSV_COLUMNS)))
        written.append(atomic_write_text(folder / FRC_CSV, csv_text(inputs.comparison.frc_rows(), FRC_CSV_COLUMNS)))
    inputs.notes.extend(notes)
    final_names = [p.name for p in written]
    if "json" in chosen:
        final_names.append(SESSION_JSON)
    if "md" in chosen:
        final_names.insert(0, REPORT_MD)
    if "json" in chosen:
        document = session_document(inputs, final_names)
        written.append(atomic_write_text(folder / SESSION_JSON,
                                         json.dumps(document, indent=2, allow_nan=False) + "\n"))
    if "md" in chosen:
        written.append(atomic_write_text(folder / REPORT_MD, render_markdown(inputs, final_names) + "\n"))
    return ExportResult(out_dir=folder, files=written, inputs=inputs, notes=notes,
                        seconds=time.perf_counter() - started)


class WorkspaceExportWriter:
    """The workbench's export action: ``writer(state) -> [paths written]``, ``writer.plan(state)
    -> [paths it will write]`` (the shape ``WorkbenchApp(export_writer=...)`` takes).

    The workspace is opened afresh on each call (in the caller's worker thread). The findings
    come from the session's saved diagnosis for the same inputs, else from the workbench's own
    findings (``state.findings``), else a diagnosis is run. The statistics are the workbench's
    finished runs when they cover every planned model x split, and the metrics the comparison the
    workbench cached in the session folder; otherwise they are computed again.
    """

    def __init__(self, workspace_path: str | Path, *, formats: Iterable[str] | str | None = None,
                 out_dir: str | Path | None = None, trust: bool = False, seed: int = 0, batch_size: int = 64,
                 collect_stats: bool = True, cancel=None):
        self.workspace_path = Path(workspace_path)
        self.formats = parse_formats(formats)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.options = {"trust": trust, "seed": seed, "batch_size": batch_size}
        self.collect_stats = collect_stats
        self.cancel = cancel

    def _folder(self, workspace=None) -> Path:
        if self.out_dir is not None:
            return self.out_dir
        if workspace is None:

            workspace = load_workspace(self.workspace_path)
        return default_out_dir(workspace)

    def plan(self, state: Any = None) -> list[str]:
        folder = self._folder()
        return [str(folder / name) for name in planned_files(self.formats)]

    def __call__(self, state: Any = None) -> list[str]:

        session = Session.open(self.workspace_path, **self.options)
        diagnosis: Any = "auto"
        findings = list(getattr(state, "findings", None) or [])
        if findings and load_saved_diagnosis(session.workspace.session_dir, session.workspace.hash()) is None:
            diagnosis = {"workspace": str(self.workspace_path), "findings": findings, "source": "workbench"}
        stats: Any = None
        if self.collect_stats:
            # The workbench's finished runs are the same streams (same session options): reuse
            # them when they cover every planned model x split, else stream again.
            runs = (getattr(state, "runs", None) or {}).values()
            results = {(run.model, run.split): run.result for run in runs if getattr(run, "result", None)}
            planned = [(plan.model, plan.split) for plan in session.plan()]
            stats = [results[key] for key in planned] if all(key in results for key in planned) else "run"
        result = export_workspace(session, formats=self.formats, out_dir=self._folder(session.workspace),
                                  diagnosis=diagnosis, stats=stats, cancel=self.cancel)
        return [str(path) for path in result.files]
