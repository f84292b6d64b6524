"""`ptytui diagnose`: every check on every model and split, findings with evidence and decision
options (headless twin of the Findings screen). Exit 1 when any error finding, 0 otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DIAGNOSE_HELP = (
    "Diagnose a workspace: stream every model over every split (output statistics), trace a probe "
    "batch layer by layer, measure positions against each model's reassembly canvas, compare the "
    "splits, re-run a batch fed differently (zero/relative/centred/swapped positions, intensity "
    "scale on/off), test the incident report's hypotheses (underflow, dead weights, batch size, "
    "clipping, corruption), and report findings with evidence and decision options. In a workspace "
    "the result is also saved as diagnosis.json in the session folder (read by 'ptytui decide'). "
    "Exit 1 when any error finding is raised.")

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def _indented(console, text, indent: int) -> None:
    """Print ``text`` wrapped to the console's width less ``indent``, each line indented, with no
    trailing spaces (Rich's Padding fills lines out to the width, which a log keeps)."""
    for line in text.wrap(console, max(20, console.width - indent)):
        line.rstrip()
        console.print(" " * indent, line, sep="", soft_wrap=True)


def render_diagnosis(diagnosis, console) -> None:
    """The diagnosis as text blocks (one per finding, then the hypotheses per model).

    Blocks rather than a table: a batch job's log is 80 columns wide (no terminal), and a table
    squeezes each summary, where the numbers are, into a narrow column.
    """
    from rich.text import Text  # noqa: PLC0415

    from ptytui.present.format import SEVERITY_SYMBOL, VERDICT_STYLE  # noqa: PLC0415 - rich only

    counts = {severity: sum(f.severity == severity for f in diagnosis.findings)
              for severity in ("error", "warning", "info")}
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


def register(app: typer.Typer) -> None:
    @app.command(help=DIAGNOSE_HELP)
    def diagnose(
        workspace: Optional[Path] = typer.Argument(None, help="Folder with ptytui.toml, or the toml file."),
        model: Optional[list[str]] = typer.Option(None, "--model", help="A model file or bundle (instead of WORKSPACE)."),
        data: Optional[list[str]] = typer.Option(None, "--data", help="NPZ split, or NAME=NPZ (repeatable)."),
        model_name: Optional[list[str]] = typer.Option(None, "--model-name", help="Only this workspace model (repeatable)."),
        positions: Optional[str] = typer.Option(None, "--positions", help="With --model/--data: how positions are fed (absolute | relative | zero; default relative)."),
        n_groups: Optional[int] = typer.Option(None, "--n-groups", help="A seeded contiguous subset of K groups per split."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Groups per batch for the streaming runs (default: ptytui chooses, at most 64)."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        full: bool = typer.Option(False, "--full", help="With --json: every trace in full (histograms, weights)."),
        save: bool = typer.Option(True, "--save/--no-save", help="Save diagnosis.json in the workspace's session folder."),
        trust: bool = typer.Option(False, "--trust", help="Allow pickled custom objects and unsafe Keras deserialization."),
        seed: int = typer.Option(0, "--seed", help="Seed for grouping and subsets."),
    ) -> None:
        from ptytui.commands.common import StderrProgress, emit_json, open_session  # noqa: PLC0415

        session = open_session(workspace, model, data, positions=positions, trust=trust, seed=seed,
                               n_groups=n_groups, batch_size=batch_size)
        if model_name:
            import dataclasses  # noqa: PLC0415

            for name in model_name:
                session.model_entry(name)  # InputError naming the known models
            session.workspace = dataclasses.replace(
                session.workspace,
                models={k: v for k, v in session.workspace.models.items() if k in model_name})

        from ptytui.diagnosis.diagnose import DiagnosisFinished, diagnose_events  # noqa: PLC0415

        diagnosis = None
        with StderrProgress() as progress:
            for event in diagnose_events(session.workspace, session=session, seed=seed):
                progress(event)
                if isinstance(event, DiagnosisFinished):
                    diagnosis = event.diagnosis
        document = diagnosis.to_dict(full_traces=full)
        if save and getattr(session.workspace, "toml_path", None) is not None and not model_name:
            import json  # noqa: PLC0415

            from ptytui.core.atomic import atomic_write_text  # noqa: PLC0415
            from ptytui.inputs.decisions import DIAGNOSIS_FILE, ensure_session_dir  # noqa: PLC0415

            folder = ensure_session_dir(session.workspace)
            atomic_write_text(folder / DIAGNOSIS_FILE, json.dumps(document, indent=1, allow_nan=False))
        if json_out:
            emit_json(document)
        else:
            from rich.console import Console  # noqa: PLC0415

            render_diagnosis(diagnosis, Console())
        if diagnosis.exit_code:
            raise typer.Exit(diagnosis.exit_code)
