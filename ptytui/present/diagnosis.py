"""The headless diagnosis as text blocks: what `ptytui diagnose`, `ptytui WORKSPACE` without a
terminal and `ptytui demo --headless` print (Rich only; the Findings screen is its TUI twin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from ptytui.core.findings import SEVERITIES
from ptytui.present.format import SEVERITY_STYLE, SEVERITY_SYMBOL, VERDICT_STYLE

if TYPE_CHECKING:  # the engine's result type; rendering needs only its attributes
    from ptytui.diagnosis.diagnose import Diagnosis


def _indented(console: Console, text: Text, indent: int) -> None:
    """Print ``text`` wrapped to the console's width less ``indent``, each line indented, with no
    trailing spaces (Rich's Padding fills lines out to the width, which a log keeps)."""
    for line in text.wrap(console, max(20, console.width - indent)):
        line.rstrip()
        console.print(" " * indent, line, sep="", soft_wrap=True)


def render_diagnosis(diagnosis: Diagnosis, console: Console) -> None:
    """The diagnosis as text blocks (one per finding, then the hypotheses per model).

    Blocks rather than a table: a batch job's log is 80 columns wide (no terminal), and a table
    squeezes each summary, where the numbers are, into a narrow column.
    """
    counts = {severity: sum(f.severity == severity for f in diagnosis.findings) for severity in SEVERITIES}
    console.print(Text(f"findings: {diagnosis.workspace_name or diagnosis.workspace} "
                       f"({diagnosis.seconds:.1f} s): {counts['error']} error, {counts['warning']} warning, "
                       f"{counts['info']} info", style="bold"))
    for f in diagnosis.findings:
        head = Text(f"{SEVERITY_SYMBOL.get(f.severity, '·')} {f.severity:<7} ", style=SEVERITY_STYLE.get(f.severity))
        head.append(f.id, style="bold")
        where = " × ".join(part for part in (f.model, f.split) if part)
        if f.layer:
            where += f" @ {f.layer}"
        if where:
            head.append(f"  {where}")
        console.print(head)
        _indented(console, Text(f.summary), 4)
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
