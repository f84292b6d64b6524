"""The Markdown report: ``render_markdown`` composes one renderer per section, in the order the
report shows them (Summary, Evidence, Analysis, Root cause, Commands to reproduce, Decision,
Status, Artifacts). Numbers come only from ``ReportInputs``; every name is escaped."""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Iterable

from ptytui import __version__
from ptytui.core.findings import severity_rank
from ptytui.diagnosis.verdict import Verdict, build_verdict
from ptytui.inputs.decisions import OPTIONS, is_superseded_label, key_numbers
from ptytui.outcome.export.gather import FAILING_NONZERO_BELOW, ReportInputs, fed_positions, primary_output
from ptytui.outcome.export.markdown import code, md_escape, number, percent
from ptytui.outcome.export.plan import describe_artifact
from ptytui.outcome.retrain import retrained_at

# Error findings listed one by one in the Summary: the cause (e.g. positions-off-canvas) often
# comes after its symptoms in the engine's order, and a summary that stops at five can miss it.
SUMMARY_ERRORS = 10


def render_markdown(inputs: ReportInputs, artifacts: Iterable[str]) -> str:
    """The report for ``inputs``, listing ``artifacts`` (file names) under Artifacts."""
    sections = [
        ("Summary", summary_section(inputs)),
        ("Evidence", evidence_section(inputs)),
        ("Analysis", analysis_section(inputs)),
        ("Root cause", root_cause_section(inputs)),
        ("Commands to reproduce", commands_section(inputs)),
        ("Decision", decision_section(inputs)),
        ("Status", status_section(inputs)),
        ("Artifacts", artifacts_section(inputs, artifacts)),
    ]
    lines = title_lines(inputs)
    for title, body in sections:
        lines += [f"## {title}", "", *body, ""]
    return "\n".join(lines)


def _toml(inputs: ReportInputs) -> str:
    return str(inputs.workspace.toml_path or inputs.workspace.root)


def finding_numbers(finding: dict, limit: int = 6) -> str:
    """The first ``limit`` key numbers of a finding's (or hypothesis's) evidence, one cell."""
    numbers = key_numbers(finding.get("evidence") or {})
    parts = [f"{md_escape(k)} = {number(v)}" for k, v in list(numbers.items())[:limit]]
    return "; ".join(parts) if parts else "–"


def verdict_of(inputs: ReportInputs) -> Verdict | None:
    """The diagnosis's root-cause verdict (the same function as `diagnose` on the same findings
    and hypotheses), or None without a diagnosis."""
    if inputs.diagnosis is None:
        return None
    return build_verdict(inputs.findings, inputs.diagnosis.get("hypotheses") or [])


def _errors(inputs: ReportInputs) -> list[dict]:
    return [f for f in inputs.findings if f.get("severity") == "error"]


def _where(finding: dict) -> str:
    return f"{md_escape(finding.get('model') or '-')}/{md_escape(finding.get('split') or '-')}"


def _spelled(record: dict) -> str:
    """A decision's option as ``ptytui decide --option`` takes it (``apply-fix:INTERVENTION``)."""
    option = record.get("option")
    return f"{option}:{record['intervention']}" if record.get("intervention") else option


# ---- title, Summary, Status ------------------------------------------------------------------

def title_lines(inputs: ReportInputs) -> list[str]:
    return [f"# Blocker report: {md_escape(inputs.workspace.name)}", "",
            f"Workspace {code(_toml(inputs))} (inputs hash {code(inputs.workspace_hash[:16])}), generated "
            f"{md_escape(inputs.generated)} by ptytui {md_escape(__version__)}.", ""]


def status_line(inputs: ReportInputs) -> tuple[str, str]:
    """(short status, sentence) from the current decision and the workspace: Open without a
    decision or while debugging continues, Decided pending until a decided retrain has run,
    Resolved otherwise."""
    decision = inputs.decision
    if decision is None:
        return "Open", "No decision has been recorded (`ptytui decide`)."
    option = decision.get("option")
    who, when = md_escape(decision.get("who")), md_escape(decision.get("when"))
    known = OPTIONS.get(option)
    outcome = md_escape(known.outcome_text(decision.get("intervention"))) if known else md_escape(option)
    if option == "debug-baseline":
        return "Open", f"{outcome[:1].upper()}{outcome[1:]} (decision debug-baseline by {who}, {when})."
    if option == "retrain-baseline":
        retrained = retrained_at(inputs.workspace)
        decided = _parse_time(decision.get("when"))
        if retrained is not None and decided is not None and retrained < decided:
            return "Resolved", (f"The Baseline was retrained at {retrained.isoformat()}, before decision "
                                f"retrain-baseline ({who}, {when}) was recorded; the superseded model is kept "
                                f"in the workspace for comparison.")
        if retrained is not None or any(is_superseded_label(e.label) for e in inputs.workspace.models.values()):
            return "Resolved", (f"{outcome[:1].upper()}{outcome[1:]} (decision retrain-baseline by {who}, "
                                f"{when}); the superseded model is kept in the workspace for comparison.")
        return "Decided, pending", (f"Decision retrain-baseline by {who}, {when}; the retrain has not been "
                                    f"run yet (`ptytui retrain`).")
    return "Resolved", f"Resolved by decision {md_escape(option)}: {outcome} ({who}, {when})."


def _parse_time(text) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None


def summary_section(inputs: ReportInputs) -> list[str]:
    """Status, the diagnosis's error findings (or the measured failures without a diagnosis)
    and the amplitude SSIM per model."""
    status, sentence = status_line(inputs)
    lines = []
    verdict = verdict_of(inputs)
    if verdict is not None:  # the cause first: what the reader came for
        lines.append(f"- **Verdict: {md_escape(verdict.status)}.** {md_escape(verdict.headline)}")
        for cause in verdict.causes:
            if cause.fixes:
                fix = cause.fixes[0]
                lines.append(f"  - Suggested for {md_escape(cause.id)}: {code(fix.command)}"
                             + (f" ({md_escape(fix.evidence)})" if fix.evidence else ""))
    lines.append(f"- **Status: {md_escape(status)}.** {sentence}")
    findings = inputs.findings
    if inputs.diagnosis is None:
        lines.append(f"- The diagnosis was {md_escape(inputs.diagnosis_note)}. No finding or cause is claimed; "
                     f"the evidence below is limited to measured statistics and metrics.")
        for run in inputs.stats_runs:
            name, record = primary_output(run)
            if record is not None and record.count and record.nonzero_fraction < FAILING_NONZERO_BELOW:
                fed = fed_positions(run)
                lines.append(f"- Measured: {md_escape(run.model)} output {md_escape(name)} on split "
                             f"{md_escape(run.split)} is {percent(record.nonzero_fraction)} nonzero"
                             + (f" (positions fed {md_escape(fed)})." if fed else "."))
    else:
        errors = _errors(inputs)
        warnings_ = [f for f in findings if f.get("severity") == "warning"]
        lines.append(f"- Diagnosis ({md_escape(inputs.diagnosis_note)}): {len(errors)} error, {len(warnings_)} "
                     f"warning finding(s) of {len(findings)}.")
        for finding in errors[:SUMMARY_ERRORS]:
            lines.append(f"  - {md_escape(finding.get('id'))} ({_where(finding)}): {md_escape(finding.get('summary'))}")
        if len(errors) > SUMMARY_ERRORS:
            lines.append(f"  - and {len(errors) - SUMMARY_ERRORS} more error finding(s): see Findings below.")
    comparison = inputs.comparison
    if comparison is not None:
        parts = []
        for entry in comparison.entries:
            ssim = entry.value("amplitude", "ssim")
            parts.append(f"{md_escape(entry.model_id)} {number(ssim, 3)}" if entry.status in ("evaluated", "train-only")
                         else f"{md_escape(entry.model_id)} {md_escape(entry.status)}")
        lines.append(f"- Amplitude SSIM on split {md_escape(comparison.split)}: " + ", ".join(parts) + ".")
    return lines


def status_section(inputs: ReportInputs) -> list[str]:
    status, sentence = status_line(inputs)
    return [f"**{md_escape(status)}.** {sentence}"]


# ---- Evidence --------------------------------------------------------------------------------

def evidence_section(inputs: ReportInputs) -> list[str]:
    """Output statistics per model and split, the findings, and the metrics when compared."""
    lines = statistics_lines(inputs) + [""] + findings_lines(inputs)
    if inputs.comparison is not None:
        lines += [""] + metrics_lines(inputs.comparison)
    return lines


def statistics_lines(inputs: ReportInputs) -> list[str]:
    lines = ["### Output statistics per model and split", ""]
    if inputs.stats_runs:
        lines += ["| model | split | positions | tensor | mean | std | max | nonzero | NaN | Inf |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for run in inputs.stats_runs:
            for kind, records in (("in", run.inputs), ("out", run.outputs)):
                for name, rec in records.items():
                    lines.append(
                        f"| {md_escape(run.model)} | {md_escape(run.split)} | {md_escape(fed_positions(run) or '–')} | "
                        f"{kind}: {md_escape(name)} | {number(rec.mean)} | {number(rec.std)} | {number(rec.max)} | "
                        f"{percent(rec.nonzero_fraction)} ({rec.nonzero_count}/{rec.count}) | {rec.nan_count} | "
                        f"{rec.inf_count} |")
    else:
        lines.append("Statistics were not collected for this export.")
    lines += [f"- failed: {md_escape(failure)}" for failure in inputs.stats_failures]
    return lines


def findings_lines(inputs: ReportInputs) -> list[str]:
    lines = ["### Findings", ""]
    findings = inputs.findings
    if inputs.diagnosis is None:
        lines.append(f"The diagnosis was {md_escape(inputs.diagnosis_note)}: no findings to report. Run "
                     f"`ptytui diagnose` and export again.")
    elif not findings:
        lines.append("The diagnosis raised no finding.")
    else:
        lines += ["| severity | finding | model | split | summary | key numbers |", "|---|---|---|---|---|---|"]
        for finding in sorted(findings, key=lambda f: severity_rank(str(f.get("severity")))):
            lines.append(f"| {md_escape(finding.get('severity'))} | {md_escape(finding.get('id'))} | "
                         f"{md_escape(finding.get('model') or '–')} | {md_escape(finding.get('split') or '–')} | "
                         f"{md_escape(finding.get('summary'))} | {finding_numbers(finding)} |")
    return lines


def metrics_table(comparison) -> list[str]:
    head = ("| model | status | split | amp SSIM | amp MS-SSIM | amp PSNR dB | amp MAE | amp FRC50 | "
            "phase SSIM | phase MS-SSIM | phase PSNR dB | phase MAE | phase FRC50 | output nonzero |")
    lines = [head, "|" + "---|" * 14]
    for entry in comparison.entries:
        cells = [md_escape(entry.model_id), md_escape(entry.status), md_escape(entry.split)]
        for component in ("amplitude", "phase"):
            for metric in ("ssim", "ms_ssim", "psnr", "mae", "frc50"):
                cells.append(number(entry.value(component, metric)))
        cells.append(percent(entry.output_nonzero_fraction))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def metrics_lines(comparison) -> list[str]:
    lines = [f"### Metrics on split {md_escape(comparison.split)}", "",
             "Amplitude metrics use the prediction rescaled by mean(gt)/mean(pred) (PtychoPINN's rule; "
             "the factor is in the CSV); PSNR uses the ground truth's data range, never 255; FRC50 in rings.",
             "", *metrics_table(comparison), ""]
    lines += [f"- {md_escape(entry.model_id)}: {md_escape(entry.note)}" for entry in comparison.entries if entry.note]
    lines += [f"- {md_escape(note)}" for note in comparison.notes]
    metric_findings = [f for f in comparison.findings() if f["severity"] != "info"]
    if metric_findings:
        lines += ["", "Metric sanity flags (metric-degenerate):", ""]
        lines += [f"- {md_escape(f['severity'])}: {md_escape(f['summary'])}" for f in metric_findings]
    return lines


# ---- Analysis, Root cause --------------------------------------------------------------------

def analysis_section(inputs: ReportInputs) -> list[str]:
    """Each model's output per split, the counterfactuals that recover it, the incident
    report's hypotheses with their verdicts, and the error findings."""
    lines = []
    by_model: dict[str, list] = {}
    for run in inputs.stats_runs:
        by_model.setdefault(run.model, []).append(run)
    for model, runs in by_model.items():
        parts = []
        for run in runs:
            name, record = primary_output(run)
            if record is not None:
                parts.append(f"{percent(record.nonzero_fraction)} nonzero on {md_escape(run.split)}")
        if parts:
            positions = sorted({str(fed_positions(r)) for r in runs if fed_positions(r)})
            fed = f" (positions fed {md_escape(', '.join(positions))})" if positions else ""
            lines.append(f"- {md_escape(model)}{fed}: output " + ", ".join(parts) + ".")
    for finding in inputs.findings:
        if finding.get("id") == "counterfactual-recovers":
            lines.append(f"- Counterfactual ({md_escape(finding.get('model'))}/{md_escape(finding.get('split'))}): "
                         f"{md_escape(finding.get('summary'))} [{finding_numbers(finding)}]")
    lines += hypotheses_lines(inputs)
    if inputs.diagnosis is None:
        lines.append("- No diagnosis was run, so no mechanism is claimed: the statistics and metrics above are "
                     "what the report can state.")
    elif not _errors(inputs):
        lines.append("- The diagnosis raised no error finding.")
    else:
        for finding in _errors(inputs)[:6]:
            if finding.get("id") != "counterfactual-recovers":
                lines.append(f"- {md_escape(finding.get('id'))}: {md_escape(finding.get('summary'))}")
    return lines or ["- Nothing measured."]


def hypotheses_lines(inputs: ReportInputs) -> list[str]:
    hypotheses = [h for h in ((inputs.diagnosis or {}).get("hypotheses") or []) if isinstance(h, dict)]
    if not hypotheses:
        return []
    lines = ["- The incident report's hypotheses, each with its test and verdict:", "",
             "| hypothesis | model | verdict | test | key numbers |", "|---|---|---|---|---|"]
    for hypothesis in hypotheses:
        lines.append(f"| {md_escape(hypothesis.get('name') or hypothesis.get('id'))} | "
                     f"{md_escape(hypothesis.get('model') or '–')} | **{md_escape(hypothesis.get('verdict'))}** | "
                     f"{md_escape(hypothesis.get('test'))} | {finding_numbers(hypothesis, limit=4)} |")
    lines.append("")
    return lines


def root_cause_section(inputs: ReportInputs) -> list[str]:
    """The verdict: per cause its summary, the predicted against observed fraction per split when
    the cause predicts one, the chain from cause to symptoms and the fixes ranked by evidence;
    then what was ruled out and why. A finding whose prediction failed is never named as the
    cause (the verdict rules it out); nothing is claimed without a diagnosis."""
    verdict = verdict_of(inputs)
    if verdict is None:
        return [f"Not established: the diagnosis was {md_escape(inputs.diagnosis_note)}."]
    findings = inputs.findings
    if verdict.status == "healthy":
        return ["No error finding: no root cause to state."]
    lines: list[str] = [f"**Verdict: {md_escape(verdict.status)}.** {md_escape(verdict.headline)}", ""]
    for n, cause in enumerate(verdict.causes, start=1):
        lines += [f"### Cause {n}: {md_escape(cause.id)} ({md_escape(cause.model or cause.split or '-')})", "",
                  md_escape(cause.summary), ""]
        if cause.prediction:
            predicted, observed = cause.prediction["predicted"], cause.prediction["observed"]
            lines += ["| split | predicted visible fraction (geometry) | observed nonzero fraction |", "|---|---|---|"]
            for split in sorted(set(predicted) | set(observed)):
                lines.append(f"| {md_escape(split)} | {percent(predicted.get(split))} | {percent(observed.get(split))} |")
            lines.append("")
        lines += ["Chain, from the cause to its symptoms:", ""]
        for link in cause.chain:
            if link.finding is not None:
                mark = "**cause**" if link.finding == cause.finding else "then"
                lines.append(f"1. {mark}: {md_escape(link.text)}"
                             + (f" ({finding_numbers(findings[link.finding], limit=4)})"
                                if link.finding < len(findings) else ""))
        if cause.fixes:
            lines += ["", "Fixes, ranked by evidence:", ""]
            for fix in cause.fixes:
                lines.append(f"1. {code(fix.command)}: {md_escape(fix.description)}"
                             + (f" ({md_escape(fix.evidence)})" if fix.evidence else ""))
        lines.append("")
    for i in verdict.unexplained:
        lines.append(f"- Unexplained ({_where(findings[i])}): {md_escape(findings[i].get('summary'))}")
    if verdict.ruled_out:
        lines += ["", "Ruled out:", ""]
        for ruled in verdict.ruled_out:
            lines.append(f"- {md_escape(ruled.get('name'))} ({md_escape(ruled.get('model') or '-')}): "
                         f"{md_escape(ruled.get('why'))}")
    return lines


# ---- Commands, Decision, Artifacts -----------------------------------------------------------

def commands_section(inputs: ReportInputs) -> list[str]:
    """The commands that reproduce the session, the decision and retrain included."""
    quoted = shlex.quote(_toml(inputs))
    lines = ["~~~sh", f"ptytui stats {quoted} --json", f"ptytui diagnose {quoted} --json",
             f"ptytui compare {quoted} --json"]
    decision = inputs.decision
    if decision is not None:
        lines.append(f"ptytui decide {quoted} --option {shlex.quote(str(_spelled(decision)))} --reason "
                     f"{shlex.quote(' '.join(str(decision.get('rationale') or '').split()))}")
        if decision.get("option") == "retrain-baseline":
            lines.append(f"ptytui retrain {quoted}")
    lines += [f"ptytui export {quoted}", "~~~"]
    return lines


def decision_section(inputs: ReportInputs) -> list[str]:
    """The current decision with its evidence at decision time, then the whole log when longer."""
    decision = inputs.decision
    if decision is None:
        lines = ["No decision recorded. Options: "
                 + ", ".join(md_escape(option.usage) for option in OPTIONS.values()) + "."]
    else:
        lines = [f"- Option: **{md_escape(decision.get('option'))}**"
                 + (f" (intervention {md_escape(decision.get('intervention'))})" if decision.get("intervention") else ""),
                 f"- Rationale: {md_escape(decision.get('rationale') or decision.get('reason'))}",
                 f"- Who / when: {md_escape(decision.get('who'))}, {md_escape(decision.get('when'))}"]
        evidence = decision.get("evidence") or {}
        ids = [f"{md_escape(f.get('id'))} ({_where(f)})" for f in evidence.get("findings") or []]
        lines.append(f"- Evidence at decision time: "
                     f"{', '.join(ids) if ids else md_escape(evidence.get('note') or 'none recorded')}")
        if decision.get("workspace_hash") and decision.get("workspace_hash") != inputs.workspace_hash:
            lines.append("- Note: the workspace's inputs changed since this decision (hash differs).")
        if len(inputs.decisions) > 1:
            lines += ["", "Decision log (oldest first):", "", "| when | who | option | rationale |", "|---|---|---|---|"]
            for record in inputs.decisions:
                lines.append(f"| {md_escape(record.get('when'))} | {md_escape(record.get('who'))} | "
                             f"{md_escape(_spelled(record))} | {md_escape(record.get('rationale') or record.get('reason'))} |")
    lines += [f"- Decision log: {md_escape(warning)}" for warning in inputs.decision_warnings]
    return lines


def collapsed_line(record: dict) -> str:
    """What a collapsed-samples dump holds: how many samples of which run, after which layer."""
    return (f"{record.get('samples')} of {record.get('of')} samples of {record.get('model')} on "
            f"{record.get('split')} are all zero after {record.get('layer')} (sample-collapse): their inputs "
            f"as grouped (diffraction, positions, offsets, group and pattern indices)")


def artifacts_section(inputs: ReportInputs, artifacts: Iterable[str]) -> list[str]:
    """Each file written, with what it holds, then the export's notes."""
    lines = []
    collapsed = {record.get("file"): record for record in inputs.collapsed_samples}
    for name in artifacts:
        description = collapsed_line(collapsed[name]) if name in collapsed else describe_artifact(name)
        lines.append(f"- {code(name)}" + (f": {md_escape(description)}" if description else ""))
    lines += [f"- note: {md_escape(note)}" for note in inputs.notes]
    return lines
