"""`ptytui export`: write the session as an engineering blocker/resolution report (Markdown) with
its artifacts: tidy CSVs, a JSON session, NPZ dumps of the failing batch, PNG figures."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXPORT_HELP = ("Write the report and its artifacts, each file atomically: report.md (Summary, Evidence, "
               "Analysis, Root cause, Commands to reproduce, Decision, Status, Artifacts), "
               "comparison_metrics.csv and frc_curves.csv, session.json, debug_<model>_<split>.npz (the "
               "failing batch: inputs, positions, outputs), collapsed_<model>_<split>.npz (the samples a "
               "sample-collapse finding names: their inputs) and PNG figures. Uses the session's saved "
               "diagnosis and comparison when they match the inputs, else runs them.")


def register(app: typer.Typer) -> None:
    @app.command(help=EXPORT_HELP)
    def export(
        workspace: Path = typer.Argument(..., help="Folder with ptytui.toml, or the toml file."),
        formats: str = typer.Option("md,csv,json,npz,png", "--format", help="Comma-separated subset of md,csv,json,npz,png."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <session>/export)."),
        no_diagnosis: bool = typer.Option(False, "--no-diagnosis", help="Do not run the diagnosis (the report says so)."),
        no_stats: bool = typer.Option(False, "--no-stats", help="Do not stream every model over every split for "
                                      "the statistics table (faster; the report says they were not collected)."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout: the files written."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Groups per batch for the runs (default: ptytui chooses, at most 64)."),
        devices: Optional[str] = typer.Option(None, "--devices", help="cpu | gpu | all"),
        trust: bool = typer.Option(False, "--trust", help="Allow pickled custom objects and unsafe Keras deserialization."),
        seed: int = typer.Option(0, "--seed", help="Seed for grouping and subsets."),
    ) -> None:
        from ptytui.present.tables import print_prose, print_whole, results_console  # noqa: PLC0415
        from ptytui.study.spec import find_study_toml  # noqa: PLC0415

        if find_study_toml(workspace) is not None:  # a study: its matrix report and each cell's
            from ptytui.commands.study import export_study  # noqa: PLC0415

            export_study(workspace, out, json_out=json_out)
            return

        from ptytui.commands.common import emit_json, open_session, select_devices  # noqa: PLC0415
        from ptytui.outcome.export import export_workspace, parse_formats  # noqa: PLC0415

        chosen = parse_formats(formats)
        session = open_session(workspace, None, None, trust=trust, seed=seed, batch_size=batch_size)
        select_devices(devices)
        err = results_console(stderr=True)
        result = export_workspace(session, formats=chosen, out_dir=out,
                                  diagnosis=None if no_diagnosis else "auto", stats=None if no_stats else "run",
                                  log=lambda text: print_prose(err, text))
        if json_out:
            emit_json(result.to_dict())
            return
        console = results_console()
        for path in result.files:
            print_whole(console, f"wrote {path}")
        for note in result.notes:
            print_prose(console, f"note: {note}")
