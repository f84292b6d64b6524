"""Findings and decision: the verdict's chain and fixes, findings grouped under the cause they are
symptoms of (the rest apart) with their evidence, the counterfactual
re-runs, the incident report's hypotheses with test and verdict, and the decision panel (option,
intervention, rationale, confirm) whose confirmed decision the app appends to the session's log."""

from __future__ import annotations

from typing import Any, Mapping

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Button, Input, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from ptytui.inputs.decisions import DECISION_OPTIONS, OPTION_DESCRIPTIONS
from ptytui.present.format import SEVERITY_STYLE, SEVERITY_SYMBOL, VERDICT_STYLE, percent, value_text
from ptytui.present.verdict import cause_title, decision_text, verdict_detail
from ptytui.tui.messages import DecisionConfirmed
from ptytui.tui.screens.base import WorkbenchScreen
from ptytui.tui.state import WorkbenchState
from ptytui.tui.widgets.finding_card import FindingCard, option_of, where

# Short labels for the radio buttons (the engine's OPTION_DESCRIPTIONS, for reports, are longer);
# an option without one here shows its description.
OPTION_LABELS = {
    "skip-baseline": "compare PINN vs reference only",
    "debug-baseline": "Debug Baseline further",
    "retrain-baseline": "Retrain Baseline (supervised design)",
    "accept-train-only": "Accept train-only Baseline metrics",
    "apply-fix": "Apply an input fix (names the intervention)",
}


def finding_prompt(finding: Mapping[str, Any]) -> Text:
    severity = finding.get("severity", "info")
    text = Text(f"{SEVERITY_SYMBOL.get(severity, '·')} ", style=SEVERITY_STYLE.get(severity, ""))
    text.append(str(finding.get("id", "?")), style="bold")
    text.append(f"  {where(finding)}", style="dim")
    return text


def grouped_findings(state: WorkbenchState) -> list[tuple[str, int | None]]:
    """The list's rows in order: ("header", None) rows naming a cause or "the rest", and
    ("finding", index into state.findings) rows under them. Without a verdict (the diagnosis
    still running) the findings are listed by severity, ungrouped."""
    verdict = state.verdict
    indexes = range(len(state.findings))
    if verdict is None or not (verdict.causes or verdict.unexplained):
        return [("finding", i) for i in indexes]
    rows: list[tuple[str, int | None]] = []
    if verdict.unexplained:  # the symptoms no mechanism explains come first: they are the problem
        rows.append((f"unexplained: no measured mechanism ({len(verdict.unexplained)})", None))
        rows += [("finding", i) for i in verdict.unexplained]
    for n, cause in enumerate(verdict.causes):
        members = [i for i in indexes if verdict.cause_of(i) == n]
        members.sort(key=lambda i: (i != cause.finding, i))  # the cause first, then its symptoms
        rows.append((f"cause {n + 1}: {cause_title(cause)} ({len(members)})", None))
        rows += [("finding", i) for i in members]
    rest = [i for i in indexes if verdict.cause_of(i) is None and i not in verdict.unexplained]
    if rest:
        rows.append((f"not explained by a cause ({len(rest)})", None))
        rows += [("finding", i) for i in rest]
    return rows


def fraction_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {fraction_text(v)}" for k, v in value.items())
    return percent(value) if isinstance(value, (int, float)) else value_text(value)


def counterfactual_table(rows: list[dict[str, Any]]) -> Table | Text:
    if not rows:
        return Text("no counterfactual re-runs yet", style="dim")
    table = Table(title="counterfactual re-runs (nonzero output)", title_justify="left",
                  title_style="bold underline", box=None, padding=(0, 1), show_edge=False,
                  header_style="bold")
    for column in ("model", "split", "intervention", "before", "after"):
        numeric = column in ("before", "after")
        table.add_column(column, no_wrap=True, justify="right" if numeric else "left",
                         min_width=7 if numeric else None)  # "99.94%" whole, never "99.9…"
    reasons = []
    for row in rows:
        before, after = row.get("nonzero_before"), row.get("nonzero_after")
        recovered = (isinstance(before, (int, float)) and isinstance(after, (int, float)) and after > before)
        if row.get("invalid"):  # merged samples: neither a recovery nor a failure to recover
            after_text = Text("invalid", style="yellow")
            reasons.append(f"{row.get('model')} {row.get('split')} {row.get('intervention')}: {row['invalid']}")
        else:
            after_text = Text(fraction_text(after), style="green" if recovered else "")
        table.add_row(str(row.get("model") or "-"), str(row.get("split") or "-"), str(row.get("intervention")),
                      fraction_text(before), after_text)
    if reasons:
        table.caption = "invalid: " + reasons[0] + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")
        table.caption_justify = "left"
    return table


def hypotheses_table(hypotheses: list[dict[str, Any]]) -> Table | Text:
    """Each hypothesis with its verdict, the test that decided it and the evidence (supported ones
    first, in the engine's order otherwise)."""
    if not hypotheses:
        return Text("hypotheses not tested yet", style="dim")
    table = Table.grid(padding=(0, 1))
    table.title = "hypotheses"
    table.title_justify = "left"
    table.title_style = "bold underline"
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    # Supported first: the cause is what the user looks for; rejections follow as the record.
    order = {"supported": 0, "inconclusive": 1, "rejected": 2}
    for hypothesis in sorted(hypotheses, key=lambda h: order.get(str(h.get("verdict")), 3)):
        verdict = str(hypothesis.get("verdict", "-"))
        body = Text(str(hypothesis.get("name")), style="bold")
        body.append(f"\ntest: {hypothesis.get('test') or '-'}", style="dim")
        evidence = hypothesis.get("evidence") or {}
        if evidence:
            body.append("\nevidence: " + ", ".join(f"{k} {value_text(v)}" for k, v in evidence.items()),
                        style="dim")
        table.add_row(Text(verdict, style=VERDICT_STYLE.get(verdict, "")), body)
    return table


def suggested_intervention(findings: list[dict[str, Any]]) -> str:
    """The first intervention a finding proposes for apply-fix (e.g. zero-positions), or ''."""
    for finding in findings:
        for action in finding.get("actions") or []:
            option, intervention = option_of(action)
            if option == "apply-fix" and intervention:
                return intervention
    return ""


class FindingsScreen(WorkbenchScreen):
    MODE = "findings"
    AUTO_FOCUS = "#finding-list"  # arrows move the selection on arrival
    BINDINGS = [Binding("d", "focus_decision", "Decide", tooltip="go to the decision panel"),
                Binding("f", "focus_findings", "Findings list", tooltip="go to the findings list")]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="findings-body", classes="body"):
            with Vertical(id="findings-left", classes="column"):
                yield Static("", id="findings-empty", classes="empty-slot")
                yield OptionList(id="finding-list")
                yield FindingCard(id="finding-card")
            with Vertical(id="findings-right", classes="column"):
                yield Static("", id="verdict-detail")
                yield Static("", id="counterfactuals")
                yield Static("", id="hypotheses")
                with Vertical(id="decision"):
                    with RadioSet(id="decision-options"):
                        for option in DECISION_OPTIONS:
                            label = OPTION_LABELS.get(option) or OPTION_DESCRIPTIONS[option]
                            yield RadioButton(f"{option}: {label}", name=option)
                    yield Input(placeholder="intervention for apply-fix, e.g. zero-positions",
                                id="intervention")
                    yield Input(placeholder="rationale (required): why this decision", id="rationale")
                    yield Button("Confirm decision", id="confirm", variant="primary")
                    yield Static("", id="decision-log")

    def setup_body(self) -> None:
        self._shown_findings: list[dict[str, Any]] = []
        self._rows: list[tuple[str, int | None]] = []
        self.query_one("#decision", Vertical).border_title = "decision (d)"

    def update_body(self, state: WorkbenchState, changed) -> None:
        if "findings" in changed:
            self._show_findings(state)
        if "decisions" in changed:
            self._show_decisions(state)

    def _show_findings(self, state: WorkbenchState) -> None:
        options = self.query_one("#finding-list", OptionList)
        previous = self._finding_at(options.highlighted)
        self._rows = grouped_findings(state)
        self._shown_findings = list(state.findings)
        options.clear_options()
        options.add_options([
            Option(finding_prompt(self._shown_findings[i]), id=f"finding-{i}") if i is not None else
            Option(Text(label, style="bold underline"), id=f"group-{n}", disabled=True)
            for n, (label, i) in enumerate(self._rows)])
        options.display = bool(self._shown_findings)
        empty = self.query_one("#findings-empty", Static)
        empty.display = not self._shown_findings
        if state.feed_status in ("idle",):
            empty.update("no findings: run the workspace (r) and the diagnosis lists them here")
        else:
            empty.update("no findings yet: the diagnosis runs after the statistics and the trace")
        rows = [n for n, (_, i) in enumerate(self._rows) if i is not None]
        if rows:
            same = [n for n in rows if self._shown_findings[self._rows[n][1]] is previous]
            options.highlighted = same[0] if same else rows[0]
        card = self.query_one(FindingCard)
        card.display = bool(self._shown_findings)
        card.show(self._finding_at(options.highlighted))
        counts = state.severity_counts()
        options.border_title = (f"findings: {counts['error']} error, {counts['warning']} warning, "
                                f"{counts['info']} info")
        self.query_one("#verdict-detail", Static).update(verdict_detail(state.verdict, state.findings))
        self.query_one("#counterfactuals", Static).update(counterfactual_table(state.counterfactuals))
        self.query_one("#hypotheses", Static).update(hypotheses_table(state.hypotheses))
        intervention = self.query_one("#intervention", Input)
        if not intervention.value:
            intervention.value = suggested_intervention(self._shown_findings)

    def _finding_at(self, row: int | None) -> dict[str, Any] | None:
        """The finding shown on list row ``row`` (None for a group header or no row)."""
        if row is None or not 0 <= row < len(self._rows) or self._rows[row][1] is None:
            return None
        return self._shown_findings[self._rows[row][1]]

    def _show_decisions(self, state: WorkbenchState) -> None:
        log = self.query_one("#decision-log", Static)
        text = decision_text(state.current_decision)
        current = state.current_decision
        if current and current.get("rationale"):
            text.append(f"\n  why: {current['rationale']}", style="italic")
        if len(state.decisions) > 1:
            text.append("\nhistory (newest first):", style="bold")
            for decision in reversed(state.decisions[:-1]):
                when = str(decision.get("when") or "")[:16].replace("T", " ")
                text.append(f"\n  {when}  {decision.get('option')}"
                            + (f" ({decision['intervention']})" if decision.get("intervention") else ""))
        log.update(text)

    @on(OptionList.OptionHighlighted, "#finding-list")
    def _finding_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        finding = self._finding_at(event.option_index)
        if finding is not None:
            self.query_one(FindingCard).show(finding)

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm_decision()

    @on(Input.Submitted, "#rationale")
    def _rationale_submitted(self) -> None:
        self.action_confirm_decision()

    def selected_option(self) -> str | None:
        pressed = self.query_one("#decision-options", RadioSet).pressed_button
        return pressed.name if pressed is not None else None

    def action_confirm_decision(self) -> None:
        option = self.selected_option()
        rationale = self.query_one("#rationale", Input).value.strip()
        intervention = self.query_one("#intervention", Input).value.strip()
        if option is None:
            self.notify("choose a decision option first", severity="warning")
            self.query_one("#decision-options", RadioSet).focus()
            return
        if not rationale:
            self.notify("write a rationale: the log keeps why, not only what", severity="warning")
            self.query_one("#rationale", Input).focus()
            return
        if option == "apply-fix" and not intervention:
            self.notify("apply-fix needs the intervention it applies (e.g. zero-positions)",
                        severity="warning")
            self.query_one("#intervention", Input).focus()
            return
        self.post_message(DecisionConfirmed(option, rationale, intervention if option == "apply-fix" else None))

    def action_focus_decision(self) -> None:
        self.query_one("#decision-options", RadioSet).focus()
        self.query_one("#decision", Vertical).scroll_visible(animate=False)

    def action_focus_findings(self) -> None:
        self.query_one("#finding-list", OptionList).focus()
