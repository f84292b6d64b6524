"""The headless diagnosis as text blocks: what `ptytui diagnose`, `ptytui WORKSPACE` without a
terminal and `ptytui demo --headless` print (Rich only; the Findings screen is its TUI twin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from ptytui.core.findings import SEVERITIES
from ptytui.present.format import SEVERITY_STYLE, SEVERITY_SYMBOL, VERDICT_STYLE, wrap_words

if TYPE_CHECKING:  # the engine's result type; rendering needs only its attributes
    from ptytui.diagnosis.diagnose import Diagnosis


def _indented(console: Console, text: Text, indent: int, first: str = "") -> None:
    """Print ``text`` wrapped to the console's width less ``indent``, each line indented (the first
    after ``first`` instead, for a hanging indent), with no trailing spaces (Rich's Padding fills
    lines out to the width, which a log keeps). Words are never split: a path longer than the
    line stays whole, so it can be copied."""
    lead = first or " " * indent
    for n, line in enumerate(wrap_words(text, max(20, console.width - indent))):
        console.print(lead if n == 0 else " " * indent, line, sep="", soft_wrap=True)


def _finding_block(console: Console, f, indent: int = 0) -> None:
    head = Text(" " * indent + f"{SEVERITY_SYMBOL.get(f.severity, '·')} {f.severity:<7} ",
                style=SEVERITY_STYLE.get(f.severity))
    head.append(f.id, style="bold")
    where = " × ".join(part for part in (f.model, f.split) if part)
    if f.layer:
        where += f" @ {f.layer}"
    if where:
        head.append(f"  {where}")
    console.print(head)
    _indented(console, Text(f.summary), indent + 4)


def render_verdict(verdict, findings, console: Console) -> None:
    """The root cause first: the verdict's headline, then per cause the chain from its context to
    its symptoms, its fixes ranked by evidence and what was ruled out."""
    style = {"healthy": "bold green", "explained": "bold red", "several-causes": "bold red",
             "unexplained": "bold yellow"}.get(verdict.status, "bold")
    line = Text("verdict: ", style="bold")
    line.append(verdict.status, style=style)
    console.print(line)
    _indented(console, Text(verdict.headline), 2)
    for n, cause in enumerate(verdict.causes, start=1):
        console.print(Text(f"\ncause {n}: {cause.id}" + (f" ({cause.model})" if cause.model else ""), style="bold"))
        for link in cause.chain:
            if link.finding is not None:
                _indented(console, Text(link.text), 5, first="  => " if link.finding == cause.finding else "  -> ")
        for i, fix in enumerate(cause.fixes, start=1):
            _indented(console, Text(fix.command + (f" ({fix.evidence})" if fix.evidence else "")), 9,
                      first=f"  fix {i}: ")
    for r in (r for r in verdict.ruled_out if r.get("finding") is not None):
        _indented(console, Text(f"{r['name']} ({r.get('model')}): {r['why']}"), 4, first="  ruled out: ")


def render_diagnosis(diagnosis: Diagnosis, console: Console) -> None:
    """The diagnosis as text blocks: the verdict first, then the findings grouped under the cause
    they belong to, the findings that explain nothing, and the hypotheses per model.

    Blocks rather than a table: a batch job's log is 80 columns wide (no terminal), and a table
    squeezes each summary, where the numbers are, into a narrow column.
    """
    verdict = diagnosis.verdict
    render_verdict(verdict, diagnosis.findings, console)
    counts = {severity: sum(f.severity == severity for f in diagnosis.findings) for severity in SEVERITIES}
    console.print(Text(f"\nfindings: {diagnosis.workspace_name or diagnosis.workspace} "
                       f"({diagnosis.seconds:.1f} s): {counts['error']} error, {counts['warning']} warning, "
                       f"{counts['info']} info", style="bold"))
    shown: set[int] = set()
    for n, cause in enumerate(verdict.causes, start=1):
        console.print(Text(f"under cause {n} ({cause.id}):", style="dim"))
        for i in [cause.finding, *cause.also, *[link.finding for link in cause.chain], *cause.symptoms]:
            if i is not None and i not in shown:
                shown.add(i)
                _finding_block(console, diagnosis.findings[i], indent=2)
    rest = [i for i in range(len(diagnosis.findings)) if i not in shown]
    if rest and verdict.causes:
        console.print(Text("not explained by a cause:", style="dim"))
    for i in rest:
        _finding_block(console, diagnosis.findings[i], indent=2 if verdict.causes else 0)
    by_model: dict[str, list] = {}
    for h in diagnosis.hypotheses:
        by_model.setdefault(h.model, []).append(h)
    if by_model:
        console.print(Text("\nthe incident report's hypotheses (each tested, see --json for the evidence)",
                           style="bold"))
    for model, hypotheses in by_model.items():
        line = Text(f"{model}: ")
        for i, h in enumerate(hypotheses):
            if i:
                line.append(", ")
            line.append(f"{h.name}: ")
            line.append(h.verdict, style=VERDICT_STYLE.get(h.verdict, ""))
        _indented(console, line, 2)
    options = []
    for f in diagnosis.findings:
        for a in f.actions:
            if a["command"] not in options:
                options.append(a["command"])
    if options:
        console.print()
        _indented(console, Text("decision options: " + ", ".join(options)), 0)
        console.print("  (record one with: ptytui decide WORKSPACE --option OPTION --reason TEXT)")
