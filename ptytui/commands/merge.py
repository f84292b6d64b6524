"""`ptytui merge`: combine the `stats --json` records of sharded runs (`--shard k/n`, e.g. the
tasks of a SLURM job array) into the records of the whole run, exactly. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

import typer

from ptytui.errors import EXIT_FINDING

HELP = ("Combine 'ptytui stats --json' documents of sharded runs exactly: runs are matched by model, "
        "split and positions, counts add up and records merge exactly. Overlapping shards, shards of "
        "different groupings and records with other histogram bins are refused. Exit 1 when the "
        "documents' --zero-gate trips on the merged records.")


def register(app: typer.Typer) -> None:
    @app.command(help=HELP)
    def merge(
        records: list[Path] = typer.Argument(..., metavar="RECORD.json",
                                             help="'ptytui stats --json' outputs (one per shard)."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout (the stats shape)."),
    ) -> None:
        from ptytui.commands.common import emit_json  # noqa: PLC0415
        from ptytui.commands.stats import gate_tripped, render_table  # noqa: PLC0415
        from ptytui.running.merge import merge_files  # noqa: PLC0415

        result = merge_files(records)
        gate = result.document["gate"]
        tripped = gate_tripped(result.runs, gate["zero_fraction_max"])
        gate["tripped"], gate["reasons"] = bool(tripped), tripped
        if json_out:
            emit_json(result.document)
        else:
            from rich.console import Console  # noqa: PLC0415

            console = Console()
            render_table(result.runs, console)
            for note in result.notes:
                console.print(f"note: {note}", markup=False, highlight=False)
            if gate["zero_fraction_max"] is not None:
                console.print(("gate TRIPPED: " + "; ".join(tripped)) if tripped else
                              f"gate passed: every output's zero fraction <= {gate['zero_fraction_max']}",
                              markup=False, highlight=False)
        if json_out:
            for note in result.notes:
                typer.echo(f"ptytui merge: note: {note}", err=True)
        if tripped:
            raise typer.Exit(EXIT_FINDING)
