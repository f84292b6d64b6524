"""The root-cause verdict as Rich text for the workbench: a brief (status, cause, the numbers that
prove it, the suggested decision) that leads the Overview, and the detail (chain, fixes, what
was ruled out) beside the findings. The headless twin is ``present.diagnosis.render_verdict``;
both say the same things from the same ``Verdict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from rich.text import Text

from ptytui.present.format import evidence_value

if TYPE_CHECKING:  # the engine's records; rendering needs only their attributes
    from ptytui.diagnosis.verdict import Cause, Verdict

VERDICT_STATUS_STYLE = {"healthy": "bold green", "explained": "bold red", "several-causes": "bold red",
                        "unexplained": "bold yellow"}
VERDICT_STATUS_SYMBOL = {"healthy": "✓", "explained": "✗", "several-causes": "✗", "unexplained": "?"}
#: Numbers of a cause without a prediction check shown in the brief (the first ones the engine keeps).
BRIEF_NUMBERS = 3


def cause_title(cause: Cause) -> str:
    """``model: id`` (or ``split: id`` for a cause in a split's data)."""
    where = cause.model or (f"split {cause.split}" if cause.split else "")
    return f"{where}: {cause.id}" if where else cause.id


def cause_numbers(cause: Cause) -> str:
    """The two or three numbers that prove a cause: its prediction against the observation when
    it has one, else the first scalar numbers of its finding's evidence."""
    if cause.prediction:
        return str(cause.prediction["text"])
    link = next((link for link in cause.chain if link.finding == cause.finding), None)
    numbers = list((link.numbers if link is not None else {}).items())[:BRIEF_NUMBERS]
    return ", ".join(f"{key.replace('_', ' ')} {evidence_value(value, key)}" for key, value in numbers)


def decision_text(decision: Mapping[str, Any] | None) -> Text:
    """The current decision in one line (or that none was taken, and the key that takes one)."""
    if not decision:
        return Text("no decision recorded yet (d to decide)", style="dim")
    text = Text("decided: ", style="bold")
    text.append(str(decision.get("option")), style="green")
    if decision.get("intervention"):
        text.append(f" ({decision['intervention']})")
    when = str(decision.get("when") or "")[:16].replace("T", " ")
    if when:
        text.append(f"  {when}", style="dim")
    return text


def verdict_brief(verdict: Verdict | None, decision: Mapping[str, Any] | None = None, *,
                  running: bool = False) -> Text:
    """What leads the Overview: status and cause, the numbers, the suggested decision, the
    decision taken. ``running``: the diagnosis has not finished (no verdict yet)."""
    if verdict is None:
        return Text("the verdict comes when the diagnosis finishes" if running else
                    "no verdict yet: run the workspace (r)", style="dim")
    text = Text()
    if verdict.status in ("healthy", "unexplained") or not verdict.causes:
        # The status is the box's title; the headline says what is (or is not) explained.
        text.append(f"{VERDICT_STATUS_SYMBOL.get(verdict.status, '·')} ",
                    style=VERDICT_STATUS_STYLE.get(verdict.status, "bold"))
        text.append(verdict.headline)
    for n, cause in enumerate(verdict.causes, start=1):
        label = f"cause {n}" if len(verdict.causes) > 1 else "cause"
        if text.plain:
            text.append("\n")
        text.append(f"{label}: ", style="bold")
        text.append(cause_title(cause), style="bold red")
        if cause.symptoms:
            text.append(f" (explains {len(cause.symptoms)} symptom findings)", style="dim")
        numbers = cause_numbers(cause)
        if numbers:
            text.append(f"\n  {numbers}")
        if cause.fixes:
            fix = cause.fixes[0]
            text.append("\n  suggested: ", style="bold")
            text.append(fix.command, style="cyan")
            if fix.evidence:
                text.append(f" ({fix.evidence})")
    text.append("\n")
    text.append_text(decision_text(decision))
    return text


def verdict_detail(verdict: Verdict | None, findings: Sequence[Mapping[str, Any]]) -> Text:
    """Per cause the chain from its context to its symptoms and its fixes ranked by evidence,
    then what was ruled out and why (the Findings screen's twin of ``render_verdict``)."""
    if verdict is None:
        return Text("verdict: when the diagnosis finishes", style="dim")
    text = Text("verdict: ", style="bold underline")
    text.append(verdict.status, style=VERDICT_STATUS_STYLE.get(verdict.status, "bold"))
    text.append(f"\n{verdict.headline}")
    for n, cause in enumerate(verdict.causes, start=1):
        text.append(f"\n\ncause {n}: {cause_title(cause)}", style="bold")
        for link in cause.chain:
            if link.finding is None:
                continue
            arrow = "  => " if link.finding == cause.finding else "  -> "
            text.append(f"\n{arrow}", style="bold red" if arrow == "  => " else "dim")
            text.append(link.text)
        for i, fix in enumerate(cause.fixes, start=1):
            text.append(f"\n  fix {i}: ", style="bold")
            text.append(fix.command, style="cyan")
            if fix.evidence:
                text.append(f" ({fix.evidence})")
    ruled = [r for r in verdict.ruled_out if r.get("finding") is not None]
    for r in ruled:
        text.append("\n  ruled out: ", style="green")
        text.append(f"{r['name']} ({r.get('model')}): {r['why']}")
    for i in verdict.unexplained:
        text.append("\n  unexplained: ", style="bold yellow")
        text.append(str(findings[i].get("summary", "")) if i < len(findings) else "?")
    return text
