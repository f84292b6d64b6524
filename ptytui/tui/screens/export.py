"""Export: what will be written, a preview of the report, and the write action (`w`).

Writing belongs to the export engine (``ptytui.outcome.export``), which the app is given when it
runs on a workspace. A replayed recording has no workspace to export from: the screen says so
and `w` explains why nothing is written. The preview is built from this session's results
(runs, findings, decisions) so the user sees what a report would hold.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from ptytui.present.format import percent
from ptytui.tui.messages import ExportRequested
from ptytui.tui.screens.base import WorkbenchScreen
from ptytui.tui.state import WorkbenchState

NO_ENGINE = ("nothing to export from: this session has no workspace (a replayed recording). On a "
             "workspace (ptytui WORKSPACE), `w` writes the report (Markdown), CSV, JSON, NPZ and PNG "
             "files atomically into the session folder.")


def report_preview(state: WorkbenchState, workspace: str) -> str:
    """A Markdown preview of the report from the session's results."""
    lines = [f"# ptytui report: {workspace or 'workspace'}", "", "## Summary", ""]
    verdict = state.verdict
    if verdict is None:
        lines.append("_no verdict yet: the diagnosis has not finished_")
    else:
        lines.append(f"- **Verdict: {verdict.status}.** {verdict.headline}")
        for cause in verdict.causes:
            if cause.fixes:
                fix = cause.fixes[0]
                lines.append(f"- Suggested for {cause.id}: `{fix.command}`"
                             + (f" ({fix.evidence})" if fix.evidence else ""))
    current = state.current_decision
    lines.append(f"- Decision: `{current.get('option')}`" if current else "- Decision: none recorded yet")
    lines += ["", "## Runs", ""]
    if state.runs:
        lines += ["| model | split | positions | groups | output nonzero | status |",
                  "|---|---|---|---|---|---|"]
        for run in state.runs.values():
            lines.append(f"| {run.model} | {run.split} | {run.positions or '-'} | {run.n_samples} | "
                         f"{percent(run.output_nonzero_fraction())} | {run.status} |")
    else:
        lines.append("_no runs yet_")
    lines += ["", "## Findings", ""]
    if state.findings:
        for finding in state.findings:
            where = " × ".join(str(finding[k]) for k in ("model", "split") if finding.get(k)) or "workspace"
            lines.append(f"- **{finding.get('severity')}** `{finding.get('id')}` ({where}): "
                         f"{finding.get('summary', '')}")
    else:
        lines.append("_no findings yet_")
    lines += ["", "## Decisions", ""]
    if state.decisions:
        for n, decision in enumerate(reversed(state.decisions)):
            fix = f" ({decision['intervention']})" if decision.get("intervention") else ""
            when = str(decision.get("when") or "")[:16].replace("T", " ")
            lines.append(f"- {'**current**' if n == 0 else 'earlier'} {when} `{decision.get('option')}`{fix}: "
                         f"{decision.get('rationale', '')}")
    else:
        lines.append("_no decision recorded yet_")
    lines += ["", "## Metrics", "", "_metrics not computed yet_" if state.metrics is None else
              f"{len(state.metrics.rows)} metric rows, FRC for {len(state.metrics.frc)} models"]
    return "\n".join(lines)


class ExportScreen(WorkbenchScreen):
    MODE = "export"
    BINDINGS = [Binding("w", "write_export", "Write", tooltip="write the report and artifacts (needs a workspace)")]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="export-body", classes="body"):
            yield Static("", id="export-plan")
            yield Static("report preview", classes="section-title")
            yield Static("", id="export-preview")

    def update_body(self, state: WorkbenchState, changed) -> None:
        if not changed & {"runs", "findings", "decisions", "metrics"}:
            return
        plan = getattr(self.app, "export_plan", lambda: None)()
        target = self.query_one("#export-plan", Static)
        if plan is None:
            target.update(Text(NO_ENGINE, style="italic"))
            target.add_class("empty-slot")
        else:
            target.remove_class("empty-slot")
            target.update(Text("will write:\n" + "\n".join(f"  {item}" for item in plan)))
        preview = report_preview(state, getattr(self.app, "workspace_label", ""))
        from rich.markdown import Markdown  # noqa: PLC0415 - markdown-it only when the preview is shown

        self.query_one("#export-preview", Static).update(Markdown(preview))

    def action_write_export(self) -> None:
        self.post_message(ExportRequested())
