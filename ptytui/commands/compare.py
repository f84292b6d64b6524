"""`ptytui compare`: metrics of every model and the reference against ground truth on one split
(default test), in PtychoPINN's tidy CSV layout, shaped by the session's current decision.
Exit 1 when a metric finding is an error (an all-zero or non-finite prediction, a failed model)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ptytui.commands.common import StderrProgress
from ptytui.present.tables import print_whole, results_console

__all__ = ["results_console", "render_comparison", "register"]  # results_console: study, retrain

COMPARE_HELP = ("Metrics of every workspace model and the reference reconstruction against the ground "
                "truth (objectGuess) on one split (default: test). Each model streams over the split "
                "with its workspace feeding; patches are stitched batch by batch. Writes "
                "comparison_metrics.csv (model,metric,amplitude,phase,value), frc_curves.csv and "
                "comparison.json into --out (default: the session folder). The latest 'ptytui decide' "
                "shapes it: skip-baseline leaves the Baseline rows empty, accept-train-only evaluates "
                "the Baseline on the train split (marked), apply-fix feeds the Baseline with the fix. "
                "Exit 1 when a metric finding is an error.")


class CompareProgressPrinter(StderrProgress):
    """Progress of a comparison on stderr: a Rich bar on a terminal, one line per entry otherwise
    (the bar and the log come from the stats command's printer; only the events differ)."""

    def __call__(self, event) -> None:
        key = f"{event.model_id} / {event.split}"
        if self._progress is not None:
            if event.stage == "run":
                if key not in self._tasks:
                    self._tasks[key] = self._progress.add_task(key, total=event.total)
                self._progress.update(self._tasks[key], completed=event.done)
            elif event.stage == "evaluate":
                if key not in self._tasks:
                    self._tasks[key] = self._progress.add_task(f"{key} (metrics)", total=None)
        elif event.stage == "done":
            self.log(f"{key}: done")


COMPONENT_METRICS = (("ssim", "SSIM"), ("ms_ssim", "MS-SSIM"), ("psnr", "PSNR dB"), ("frc50", "FRC50"))
ENTRY_STYLE = {"failed": "red", "skipped": "dim", "train-only": "yellow"}


def metric_cell(value) -> str:
    """A metric as the table shows it: 3 significant digits, '–' when not measured."""
    return "–" if value is None else f"{value:.3g}"


def render_comparison(comparison, console) -> None:
    """The comparison as three narrow tables (each model's status and output, then amplitude and
    phase metrics), the models' notes and the metric findings; fits 80 columns."""
    from rich.text import Text  # noqa: PLC0415

    from ptytui.present.tables import Column, Grid, print_prose, render_grid  # noqa: PLC0415

    print_prose(console, Text(f"metrics on split '{comparison.split}' ({comparison.workspace})", style="bold"))
    models = Grid("models", [Column("model", "name"), Column("status", "text"), Column("output nonzero")])
    for entry in comparison.entries:
        status = entry.status if entry.split == comparison.split else f"{entry.status} ({entry.split})"
        nonzero = "–" if entry.output_nonzero_fraction is None else f"{entry.output_nonzero_fraction:.1%}"
        models.add_row(entry.model_id, status, nonzero, style=ENTRY_STYLE.get(entry.status))
    render_grid(console, models)
    for component in ("amplitude", "phase"):
        grid = Grid(f"{component} vs ground truth",
                    [Column("model", "name")] + [Column(header) for _, header in COMPONENT_METRICS])
        for entry in comparison.entries:
            grid.add_row(entry.model_id, *(metric_cell(entry.value(component, metric))
                                           for metric, _ in COMPONENT_METRICS),
                         style=ENTRY_STYLE.get(entry.status))
        render_grid(console, grid)
    for entry in comparison.entries:
        if entry.note:
            print_prose(console, f"{entry.model_id}: {entry.note}")
    for finding in comparison.findings():
        if finding["severity"] == "info":
            continue
        print_prose(console, f"{finding['severity']}: metric-degenerate: {finding['summary']}",
                    style="red" if finding["severity"] == "error" else "yellow")


def register(app: typer.Typer) -> None:
    @app.command(help=COMPARE_HELP)
    def compare(
        workspace: Path = typer.Argument(..., help="Folder with ptytui.toml, or the toml file."),
        out: Optional[Path] = typer.Option(None, "--out", help="Folder for the CSVs and JSON (default: the session folder)."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        split: Optional[str] = typer.Option(None, "--split", help="The split to compare on (default: test)."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Groups per batch (default: ptytui chooses, at most 64; halved on out-of-memory)."),
        n_groups: Optional[int] = typer.Option(None, "--n-groups", help="A seeded contiguous subset of K groups."),
        ignore_decision: bool = typer.Option(False, "--ignore-decision", help="Compare as if no decision was recorded."),
        devices: Optional[str] = typer.Option(None, "--devices", help="cpu | gpu | all"),
        trust: bool = typer.Option(False, "--trust", help="Allow pickled custom objects and unsafe Keras deserialization."),
        seed: int = typer.Option(0, "--seed", help="Seed for grouping and subsets."),
    ) -> None:
        from ptytui.commands.common import emit_json, open_session, select_devices  # noqa: PLC0415
        from ptytui.errors import EXIT_BAD_INPUT, EXIT_FINDING  # noqa: PLC0415
        from ptytui.quality.compare import compare_workspace  # noqa: PLC0415
        from ptytui.quality.comparison_store import save_comparison, write_comparison_files  # noqa: PLC0415

        session = open_session(workspace, None, None, trust=trust, seed=seed, n_groups=n_groups,
                               batch_size=batch_size)
        select_devices(devices)
        with CompareProgressPrinter() as progress:
            comparison = compare_workspace(session, split=split, decision=None if ignore_decision else "current",
                                           progress=progress)
        session_dir = Path(session.workspace.session_dir)
        written = save_comparison(comparison, session_dir)
        if out is not None and Path(out).resolve() != session_dir.resolve():
            written = write_comparison_files(comparison, out)
        errors = [f for f in comparison.findings() if f["severity"] == "error"]
        failed = [e for e in comparison.entries if e.status == "failed"]
        if json_out:
            document = comparison.to_dict()
            document["files"] = [str(p) for p in written]
            emit_json(document)
        else:
            console = results_console()
            render_comparison(comparison, console)
            for path in written:
                print_whole(console, f"wrote {path}")
        if failed:  # a model or reference that cannot run on this input is bad input, as elsewhere
            for entry in failed:
                typer.echo(f"ptytui: {entry.model_id}: {entry.note}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        if errors:
            raise typer.Exit(EXIT_FINDING)
