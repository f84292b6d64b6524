"""One finding with its evidence: severity, where (model, split, layer), summary, the numbers
behind it and the decision options it suggests. No engine calls."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ptytui.present.format import SEVERITY_STYLE, SEVERITY_SYMBOL, evidence_rows


def where(finding: Mapping[str, Any]) -> str:
    parts = [str(finding[key]) for key in ("model", "split") if finding.get(key)]
    text = " × ".join(parts) if parts else "workspace"
    if finding.get("layer"):
        text += f" @ {finding['layer']}"
    return text


def option_of(action: Any) -> tuple[str, str | None]:
    """(option, intervention) of an action given as 'apply-fix', 'apply-fix:positions=zero' or a dict."""
    if isinstance(action, Mapping):
        return str(action.get("option", "")), action.get("intervention")
    option, _, intervention = str(action).partition(":")
    return option, intervention or None


def finding_renderable(finding: Mapping[str, Any] | None) -> RenderableType:
    if finding is None:
        return Text("no finding selected", style="dim")
    severity = finding.get("severity", "info")
    style = SEVERITY_STYLE.get(severity, "")
    title = Text(f"{SEVERITY_SYMBOL.get(severity, '·')} {severity}  ", style=style)
    title.append(str(finding.get("id", "?")), style="bold")
    title.append(f"  {where(finding)}", style="dim")
    parts: list[RenderableType] = [title, Text(str(finding.get("summary", "")))]
    rows = evidence_rows(finding.get("evidence") or {})
    if rows:
        # Keys in one column, values aligned in the next (yes/no, percentages, dotted nesting).
        table = Table.grid(padding=(0, 2))
        table.add_column(style="dim", no_wrap=True)
        table.add_column(overflow="fold")
        for key, value in rows:
            table.add_row(key, value)
        parts += [Text("evidence", style="bold underline"), table]
    actions = [option_of(a) for a in finding.get("actions") or []]
    if actions:
        listed = ", ".join(o + (f" ({i})" if i else "") for o, i in actions)
        parts.append(Text(f"options: {listed}", style="italic"))
    return Group(*parts)


class FindingCard(Static):
    """The selected finding, in full."""

    DEFAULT_CSS = """
    FindingCard { height: auto; padding: 0 1; }
    """

    def show(self, finding: Mapping[str, Any] | None) -> None:
        self.update(finding_renderable(finding))
