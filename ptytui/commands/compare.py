"""`ptytui compare`: metrics of every model and the reference against ground truth on one split
(default test), in PtychoPINN's tidy CSV layout, shaped by the session's current decision.
Exit 1 when a metric finding is an error (an all-zero or non-finite prediction, a failed model)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ptytui.commands.common import StderrProgress

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


def results_console():
    """A Rich console for results on stdout; off a terminal it is wide enough for the metric
    table (a log file should not get a table folded to 80 columns)."""
    from rich.console import Console  # noqa: PLC0415

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 160))


def render_comparison(comparison, console) -> None:
    """The metric table and the metric findings as Rich output."""
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"metrics on split '{comparison.split}' ({comparison.workspace})", title_justify="left")
    for column in ("model", "status", "amp\nSSIM", "amp\nMS-SSIM", "amp\nPSNR dB", "amp\nFRC50",
                   "phase\nSSIM", "phase\nMS-SSIM", "phase\nPSNR dB", "phase\nFRC50", "output\nnonzero"):
        table.add_column(column, justify="left" if column in ("model", "status") else "right",
                         overflow="fold")

    def cell(value):
        return "–" if value is None else f"{value:.3g}"

    for entry in comparison.entries:
        style = {"failed": "red", "skipped": "dim", "train-only": "yellow"}.get(entry.status)
        nonzero = "–" if entry.output_nonzero_fraction is None else f"{entry.output_nonzero_fraction:.1%}"
        status = entry.status if entry.split == comparison.split else f"{entry.status} ({entry.split})"
        table.add_row(entry.model_id, status,
                      cell(entry.value("amplitude", "ssim")), cell(entry.value("amplitude", "ms_ssim")),
                      cell(entry.value("amplitude", "psnr")), cell(entry.value("amplitude", "frc50")),
                      cell(entry.value("phase", "ssim")), cell(entry.value("phase", "ms_ssim")),
                      cell(entry.value("phase", "psnr")), cell(entry.value("phase", "frc50")),
                      nonzero, style=style)
    console.print(table, markup=False)
    for entry in comparison.entries:
        if entry.note:
            console.print(f"{entry.model_id}: {entry.note}", markup=False, highlight=False)
    for finding in comparison.findings():
        if finding["severity"] == "info":
            continue
        console.print(f"{finding['severity']}: metric-degenerate: {finding['summary']}", markup=False,
                      highlight=False, style="red" if finding["severity"] == "error" else "yellow")


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
                console.print(f"wrote {path}", markup=False, highlight=False)
        if failed:  # a model or reference that cannot run on this input is bad input, as elsewhere
            for entry in failed:
                typer.echo(f"ptytui: {entry.model_id}: {entry.note}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        if errors:
            raise typer.Exit(EXIT_FINDING)
