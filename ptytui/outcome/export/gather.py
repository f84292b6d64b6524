"""The report's material: metrics, diagnosis, decisions and statistics of a session, each taken
from the session folder when it matches the inputs and computed otherwise (``ReportInputs``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ptytui.core.events import RunCancelled, RunFailed, RunFinished
from ptytui.core.thresholds import THRESHOLDS
from ptytui.diagnosis.diagnose import diagnose_workspace
from ptytui.errors import Cancelled, one_line
from ptytui.inputs.decisions import load_saved_diagnosis, read_decision_log, save_diagnosis
from ptytui.quality import compare as compare_module
from ptytui.quality import comparison_store

# An output whose amplitude is nonzero on less than this share of pixels is "failing": the
# report's summary says so, and such batches are dumped when no diagnosis names one.
FAILING_NONZERO_BELOW = THRESHOLDS.failing_nonzero_below


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
    # the collapsed-sample dumps written (``dumps.write_collapsed_dump``'s records), for the
    # report's Artifacts, the JSON session and ``export --json``
    collapsed_samples: list[dict] = field(default_factory=list)

    @property
    def decision(self) -> dict | None:
        return self.decisions[-1] if self.decisions else None

    @property
    def findings(self) -> list[dict]:
        return list((self.diagnosis or {}).get("findings") or [])


def primary_output(run) -> tuple[str, Any] | tuple[None, None]:
    """(name, StatsRecord) of a run's first output that is not a phase, or (None, None)."""
    for name, record in run.outputs.items():
        if not name.endswith(".phase"):
            return name, record
    return None, None


def fed_positions(run) -> str | None:
    """How positions were fed in a run, or None when the model takes no positions."""
    takes = any("position" in name.lower() for name in run.inputs)
    return run.positions if takes else None


def run_diagnosis(session, *, cancel=None) -> tuple[dict | None, str, Any]:
    """Run the diagnosis on the session: (document, note, the Diagnosis object or None)."""
    try:
        result = diagnose_workspace(session.workspace, session=session, cancel=cancel)
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - the report says so instead of failing
        return None, f"not run: the diagnosis failed ({one_line(exc)})", None
    return result.to_dict(), "run by the export (ptytui.diagnosis.diagnose)", result


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


def _comparison(session, workspace_hash: str, decision, notes: list[str], *, cancel, say):
    """The session's cached comparison for these inputs and decision, else a new one (cached)."""
    workspace = session.workspace
    comparison = comparison_store.load_cached_comparison(workspace.session_dir, workspace_hash=workspace_hash,
                                                       decision=decision)
    if comparison is not None:
        say("metrics: the session's cached comparison (same inputs, same decision)")
        return comparison
    say("metrics: running compare")
    comparison = compare_module.compare_workspace(session, decision=decision, cancel=cancel)
    try:
        comparison_store.save_comparison(comparison, workspace.session_dir)
    except OSError as exc:
        notes.append(f"the comparison could not be cached in the session folder: {exc}")
    return comparison


def _diagnosis(session, workspace_hash: str, diagnosis: Any, notes: list[str], *,
               cancel, say) -> tuple[dict | None, str, list | None]:
    """(document, note, the runs a diagnosis streamed just now or None); see ``gather_report_inputs``."""
    if diagnosis is None:
        return None, "not run (not requested)", None
    if diagnosis != "auto":
        document = diagnosis.to_dict() if hasattr(diagnosis, "to_dict") else dict(diagnosis)
        return document, "given by the caller", None
    workspace = session.workspace
    saved = load_saved_diagnosis(workspace.session_dir, workspace_hash)
    if saved is not None:
        return saved, "read from the session's saved diagnosis.json", None
    say("diagnosis: running")
    document, note, ran = run_diagnosis(session, cancel=cancel)
    if document is None:
        return None, note, None
    try:
        save_diagnosis(document, workspace.session_dir)
    except (OSError, TypeError, ValueError) as exc:
        notes.append(f"the diagnosis could not be saved in the session folder: {exc}")
    return document, note, list(getattr(ran, "runs", None) or [])


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
        ``ptytui.diagnosis.diagnose.diagnose_workspace`` (saved in the session folder; a failed
        run leaves no diagnosis and the report says why). None: no diagnosis.
    stats : "run", list of RunResult, or None
        "run" streams every model over every split for the statistics table.
    """

    say = log or (lambda text: None)
    workspace = session.workspace
    workspace_hash = workspace.hash()
    decision_log = read_decision_log(workspace.session_dir)
    notes: list[str] = []
    if comparison is None:
        comparison = _comparison(session, workspace_hash, decision_log.current, notes, cancel=cancel, say=say)
    diagnosis, diagnosis_note, diagnosis_runs = _diagnosis(session, workspace_hash, diagnosis, notes,
                                                           cancel=cancel, say=say)
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
