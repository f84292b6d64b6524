"""`ptytui study STUDY`: every cell of a study diagnosed and compared (as `diagnose` and `compare`
would, each in its own session folder) on Dask; the matrix of cells x worst severity, root
cause, test nonzero %, SSIM / FRC50. Exit 0 fine, 1 an error finding in any cell, 2 bad input
(a bad study file, a cell that could not be diagnosed, Dask missing), 3 cancelled."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

STUDY_HELP = (
    "Diagnose and compare every cell of a study: STUDY is a ptytui-study.toml (or a folder holding "
    "one) naming its cells, listed (\\[\\[cell]] path, labels) or found by a pattern such as "
    "'runs/dose_{dose}/{view}/ptytui.toml'. Cells run on Dask: by default a local cluster of worker "
    "processes (one per core, one per GPU with dask-cuda), --scheduler joins a running cluster, and "
    "\\[cluster] kind = 'slurm' | 'pbs' (or --cluster) submits batch jobs through dask-jobqueue. "
    "Results stream in as cells finish; the matrix is printed at the end and saved as study.json in "
    "the study's session folder. Needs: pip install \"ptytui\\[cluster]\".")


def render_matrix(result, console) -> None:
    """The study matrix: a table when it fits the console, else one block per cell (never a
    number split or a column squeezed to a few letters)."""
    from ptytui.present.tables import Column, Grid, render_grid  # noqa: PLC0415 - rich on use

    styles = {"error": "bold red", "warning": "yellow", "info": "cyan", "ok": "green", "failed": "red",
              "pending": "dim", "cancelled": "dim"}
    header = result.header()
    kinds = ["name"] + ["text"] * (len(header) - 1)
    grid = Grid(f"study {result.name}: {len(result.cells)} cells", [Column(h, k) for h, k in zip(header, kinds)])
    for row, cells in zip(result.rows(), result.table()):
        grid.add_row(*cells, style=styles.get(result.severity_of(row)))
    render_grid(console, grid)


def export_study(path: Path, out: Optional[Path], *, json_out: bool = False) -> None:
    """`ptytui export STUDY`: the report from the saved run when it still matches the cells'
    inputs, else the study is run with --export (on a local cluster)."""
    from rich.console import Console  # noqa: PLC0415

    from ptytui.commands.common import emit_json  # noqa: PLC0415
    from ptytui.study.export import export_saved_study  # noqa: PLC0415
    from ptytui.study.spec import load_study  # noqa: PLC0415

    spec = load_study(path)
    target = Path(out) if out is not None else spec.root / "study-export"
    written = export_saved_study(spec, target)
    if written is None:
        Console(stderr=True).print("study: no complete saved run matches the cells; running the study",
                                   markup=False, highlight=False)
        code = run(path, export=target, json_out=json_out)
        if code:
            raise typer.Exit(code)
        return
    if json_out:
        emit_json({"out_dir": str(target), "files": [str(p) for p in written], "reused": True})
    else:
        for file in written:
            typer.echo(f"wrote {file}")


def register(app: typer.Typer) -> None:
    @app.command(help=STUDY_HELP)
    def study(
        study_path: Path = typer.Argument(..., metavar="STUDY", help="A ptytui-study.toml, or a folder holding one."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        full: bool = typer.Option(False, "--full", help="With --json: each cell's whole diagnosis and comparison."),
        export: Optional[Path] = typer.Option(None, "--export", help="Also write the study report here: "
                                              "study_report.md, study_matrix.csv, study_heatmap.png and each "
                                              "cell's report under cells/."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Join a running Dask scheduler "
                                                "(tcp://HOST:PORT) instead of starting a cluster."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Local cluster: worker processes "
                                              "(default one per core)."),
        cluster: Optional[str] = typer.Option(None, "--cluster", help="local | slurm | pbs (default: the "
                                              "study's \\[cluster] kind, else local)."),
        queue: Optional[str] = typer.Option(None, "--queue", help="slurm / pbs: the queue (partition)."),
        cores: Optional[int] = typer.Option(None, "--cores", help="slurm / pbs: cores per job."),
        memory: Optional[str] = typer.Option(None, "--memory", help="slurm / pbs: memory per job (e.g. 16GB)."),
        walltime: Optional[str] = typer.Option(None, "--walltime", help="slurm / pbs: walltime (HH:MM:SS)."),
        jobs: Optional[int] = typer.Option(None, "--jobs", help="slurm / pbs: how many jobs."),
        job_script: bool = typer.Option(False, "--job-script", help="slurm / pbs: print the job script "
                                        "dask-jobqueue would submit, and submit nothing."),
    ) -> None:
        code = run(study_path, json_out=json_out, full=full, export=export, scheduler=scheduler, workers=workers,
                   cluster=cluster, queue=queue, cores=cores, memory=memory, walltime=walltime, jobs=jobs,
                   job_script=job_script)
        if code:
            raise typer.Exit(code)


def run(study_path: Path, *, json_out: bool = False, full: bool = False, export: Optional[Path] = None,
        scheduler: Optional[str] = None, workers: Optional[int] = None, cluster: Optional[str] = None,
        queue: Optional[str] = None, cores: Optional[int] = None, memory: Optional[str] = None,
        walltime: Optional[str] = None, jobs: Optional[int] = None, job_script: bool = False) -> int:
    """`ptytui study`: run the study's cells and print the matrix; return the exit code (0 fine,
    1 an error finding in a cell, 2 a cell's bad input, 3 cancelled). Used by `demo --study` and
    by `export` of a study with no saved run, as the command itself."""
    from rich.console import Console  # noqa: PLC0415

    from ptytui.commands.common import emit_json  # noqa: PLC0415
    from ptytui.errors import Cancelled, UsageError  # noqa: PLC0415
    from ptytui.study.cluster import require_dask, run_study  # noqa: PLC0415
    from ptytui.study.spec import CLUSTER_KINDS, load_study  # noqa: PLC0415

    spec = load_study(study_path)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers: expected a positive integer, found {workers}")
    if cluster is not None and cluster not in CLUSTER_KINDS:
        raise UsageError(f"--cluster: expected one of {', '.join(CLUSTER_KINDS)}, found {cluster!r}")
    overrides = {k: v for k, v in {"kind": cluster, "queue": queue, "cores": cores, "memory": memory,
                                   "walltime": walltime, "jobs": jobs}.items() if v is not None}
    if overrides:
        spec = dataclasses.replace(spec, cluster=dataclasses.replace(spec.cluster, **overrides))
    require_dask()
    err = Console(stderr=True)
    if job_script:
        if spec.cluster.kind not in ("slurm", "pbs"):
            raise UsageError("--job-script: expected --cluster slurm or pbs (or [cluster] kind), "
                             f"found {spec.cluster.kind!r}")
        from ptytui.study.cluster import jobqueue_cluster  # noqa: PLC0415

        batch = jobqueue_cluster(spec.cluster)
        try:
            typer.echo(batch.job_script())
        finally:
            batch.close()
        return 0
    total = len(spec.cells)
    done = [0]

    def on_record(record) -> None:
        done[0] += 1
        row = record.get("row") or {}
        if record.get("status") == "done":
            what = f"{row.get('worst_severity') or 'ok'}" + (f" {row['root_cause']}" if row.get("root_cause") else "")
        else:
            what = f"FAILED: {record.get('error')}"
        err.print(f"[{done[0]}/{total}] {record['cell']}: {what} ({record.get('seconds', 0):.1f} s)",
                  markup=False, highlight=False)

    try:
        result = run_study(spec, scheduler=scheduler, workers=workers, export_dir=export,
                           on_record=on_record, log=lambda text: err.print(text, markup=False, highlight=False))
    except Cancelled as exc:
        result = getattr(exc, "result", None)
        if result is None:
            raise
        err.print("ptytui: study cancelled", markup=False, highlight=False)
    if json_out:
        emit_json(result.to_dict(full=full))
    else:
        from ptytui.commands.compare import results_console  # noqa: PLC0415

        render_matrix(result, results_console())
        if export is not None and not result.cancelled:
            err.print(f"wrote the study report to {export}", markup=False, highlight=False)
    return result.exit_code
