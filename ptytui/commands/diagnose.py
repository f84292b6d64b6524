"""`ptytui diagnose`: every check on every model and split, findings with evidence and decision
options (headless twin of the Findings screen). Exit 1 when any error finding, 0 otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ptytui.inputs.workspace import DEFAULT_POSITION_MODE, POSITION_MODES

DIAGNOSE_HELP = (
    "Diagnose a workspace: stream every model over every split (output statistics), trace a probe "
    "batch layer by layer, measure positions against each model's reassembly canvas, compare the "
    "splits, re-run a batch fed differently (zero/relative/centred/swapped positions, intensity "
    "scale on/off), test the incident report's hypotheses (underflow, dead weights, batch size, "
    "clipping, corruption), and report findings with evidence and decision options. In a workspace "
    "the result is also saved as diagnosis.json in the session folder (read by 'ptytui decide'). "
    "Exit 1 when any error finding is raised.")


def register(app: typer.Typer) -> None:
    @app.command(help=DIAGNOSE_HELP)
    def diagnose(
        workspace: Optional[Path] = typer.Argument(None, help="Folder with ptytui.toml, or the toml file."),
        model: Optional[list[str]] = typer.Option(None, "--model", help="A model file or bundle (instead of WORKSPACE)."),
        data: Optional[list[str]] = typer.Option(None, "--data", help="NPZ split, or NAME=NPZ (repeatable)."),
        model_name: Optional[list[str]] = typer.Option(None, "--model-name", help="Only this workspace model (repeatable)."),
        positions: Optional[str] = typer.Option(None, "--positions", help=f"With --model/--data: how positions are fed ({' | '.join(POSITION_MODES)}; default {DEFAULT_POSITION_MODE})."),
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

        from ptytui.core.events import DiagnosisFinished  # noqa: PLC0415
        from ptytui.diagnosis.diagnose import diagnose_events  # noqa: PLC0415

        diagnosis = None
        with StderrProgress() as progress:
            for event in diagnose_events(session.workspace, session=session, seed=seed):
                progress(event)
                if isinstance(event, DiagnosisFinished):
                    diagnosis = event.diagnosis
        document = diagnosis.to_dict(full_traces=full)
        if save and getattr(session.workspace, "toml_path", None) is not None and not model_name:
            from ptytui.inputs.decisions import ensure_session_dir, save_diagnosis  # noqa: PLC0415

            save_diagnosis(document, ensure_session_dir(session.workspace))
        if json_out:
            emit_json(document)
        else:
            from rich.console import Console  # noqa: PLC0415

            from ptytui.present.diagnosis import render_diagnosis  # noqa: PLC0415 - Rich only when printing

            render_diagnosis(diagnosis, Console())
        if diagnosis.exit_code:
            raise typer.Exit(diagnosis.exit_code)
