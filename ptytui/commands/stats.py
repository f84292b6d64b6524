"""`ptytui stats`: stream models over splits and report input/output statistics (headless twin of
the Overview screen). Exit 1 when --zero-gate trips, 2 for bad input, 3 when cancelled."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ptytui.errors import EXIT_FINDING, Cancelled
from ptytui.inputs.workspace import POSITION_MODE_MEANINGS

POSITIONS_HELP = ("How the model's position input is fed: "
                  + ", ".join(f"'{mode}' ({meaning})" for mode, meaning in POSITION_MODE_MEANINGS.items())
                  + ". Overrides the workspace.")
FLAGS_HELP = ("With --model/--data the model is fed as a PtychoPINN pipeline feeds it: diffraction "
              "amplitude times the model's intensity scale, relative positions, gridsize from the model.")


def gate_tripped(runs, zero_fraction_max: float | None) -> list[str]:
    """Output records whose zero fraction exceeds the gate (phase records are not gated:
    a zero amplitude already counts, and a phase of exactly 0 can be legitimate)."""
    if zero_fraction_max is None:
        return []
    tripped = []
    for run in runs:
        for name, record in run.outputs.items():
            if name.endswith(".phase") or not record.count:
                continue
            if record.zero_fraction > zero_fraction_max:
                tripped.append(f"{run.model}/{run.split}/{name}: zero fraction "
                               f"{record.zero_fraction:.4f} > {zero_fraction_max}")
    return tripped


def stats_document(runs, zero_fraction_max: float | None, tripped: list[str],
                   coverages: dict | None = None) -> dict:
    """The ``stats --json`` document; ``coverages`` maps (model, split) to the groups each run
    covered (``Session.coverage``), which ``ptytui merge`` uses to check shards."""
    documents = []
    for run in runs:
        document = run.to_dict()
        if coverages and (run.model, run.split) in coverages:
            document["coverage"] = coverages[(run.model, run.split)]
        documents.append(document)
    return {"runs": documents,
            "gate": {"zero_fraction_max": zero_fraction_max, "tripped": bool(tripped),
                     "reasons": tripped}}


def render_table(runs, console) -> None:
    """One table per run: each input and output record by its full name (broken at its dots
    when narrow, never cut), numbers whole; as records when even that does not fit."""
    from ptytui.present.tables import Column, Grid, print_prose, render_grid  # noqa: PLC0415

    for run in runs:
        grid = Grid(f"{run.model} / {run.split}  ({run.n_samples} groups, positions {run.positions}, "
                    f"{run.seconds:.2f} s)",
                    [Column("", "text"), Column("tensor", "name"), Column("mean"), Column("std"),
                     Column("min"), Column("max"), Column("nonzero"), Column("NaN/Inf")])
        for kind, records in (("in", run.inputs), ("out", run.outputs)):
            for name, rec in records.items():
                style = "red" if kind == "out" and rec.count and rec.nonzero_fraction == 0 else None
                grid.add_row(kind, name, f"{rec.mean:.4g}", f"{rec.std:.4g}", f"{rec.min:.4g}",
                             f"{rec.max:.4g}", f"{rec.nonzero_fraction:.4%}",
                             f"{rec.nan_count}/{rec.inf_count}", style=style)
        render_grid(console, grid)
        for note in run.notes:
            print_prose(console, f"note: {note}")


def register(app: typer.Typer) -> None:
    @app.command(help="Stream models over splits; report input/output statistics. " + FLAGS_HELP)
    def stats(
        workspace: Optional[Path] = typer.Argument(None, help="Folder with ptytui.toml, or the toml file."),
        model_name: Optional[list[str]] = typer.Option(None, "--model-name", help="Only this workspace model (repeatable)."),
        model: Optional[list[str]] = typer.Option(None, "--model", help="A model file or bundle (instead of WORKSPACE)."),
        data: Optional[list[str]] = typer.Option(None, "--data", help="NPZ split, or NAME=NPZ (repeatable)."),
        split: Optional[list[str]] = typer.Option(None, "--split", help="Only this split (repeatable)."),
        positions: Optional[str] = typer.Option(None, "--positions", help=POSITIONS_HELP),
        n_groups: Optional[int] = typer.Option(None, "--n-groups", help="A seeded contiguous subset of K groups."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Groups per batch (default: ptytui chooses, at most 64: one output per input, same outputs as batch 1; halved on out-of-memory)."),
        zero_gate: Optional[float] = typer.Option(None, "--zero-gate", metavar="FRACTION",
                                                  help="Exit 1 when an output's zero fraction exceeds FRACTION."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        shard: Optional[str] = typer.Option(None, "--shard", metavar="k/n", help="Only shard k of n, k counted from 0 (0/2 and 1/2 cover all groups); combine the --json outputs with 'ptytui merge'."),
        devices: Optional[str] = typer.Option(None, "--devices", help="cpu | gpu | all"),
        layer_health: bool = typer.Option(True, "--layer-health/--no-layer-health", help="Record every layer's health (zeros, NaN/Inf, dead channels, all-zero samples) on every batch while streaming."),
        trust: bool = typer.Option(False, "--trust", help="Allow pickled custom objects and unsafe Keras deserialization."),
        seed: int = typer.Option(0, "--seed", help="Seed for grouping and subsets."),
    ) -> None:
        from ptytui.commands.common import (  # noqa: PLC0415
            StderrProgress,
            device_set_for,
            emit_json,
            open_session,
            select_devices,
        )
        from ptytui.core import events as ev  # noqa: PLC0415
        from ptytui.errors import UsageError  # noqa: PLC0415

        if zero_gate is not None and not 0.0 <= zero_gate <= 1.0:
            raise UsageError(f"--zero-gate: expected a fraction in [0, 1], found {zero_gate}")
        session = open_session(workspace, model, data, positions=positions, trust=trust, seed=seed,
                               n_groups=n_groups, batch_size=batch_size, shard=shard)
        plans = session.plan(models=model_name, splits=split, positions=positions)
        device = select_devices(devices)
        session.device_set = device_set_for(device)
        session.layer_health = layer_health
        if session.device_set is not None:
            device = session.device_set.label
        runs = []
        failures = []
        with StderrProgress() as progress:
            for event in session.stats_events(plans):
                progress(event)
                if isinstance(event, ev.RunFinished):
                    runs.append(event.result)
                elif isinstance(event, ev.RunFailed):
                    failures.append(event)
                elif isinstance(event, ev.RunCancelled):
                    raise Cancelled("stats")
        if failures:
            # A model that cannot run on this input is bad input: one line per failure, exit 2.
            from ptytui.errors import InputError  # noqa: PLC0415

            first = failures[0]
            raise InputError(session.model_entry(first.model).path,
                             f"model '{first.model}' to run on split '{first.split}'", first.message)
        tripped = gate_tripped(runs, zero_gate)
        if json_out:
            coverages = {(plan.model, plan.split): session.coverage(plan) for plan in plans}
            document = stats_document(runs, zero_gate, tripped, coverages)
            document["devices"] = device
            emit_json(document)
        else:
            from ptytui.present.tables import print_prose, results_console  # noqa: PLC0415

            console = results_console()
            render_table(runs, console)
            if zero_gate is not None:
                print_prose(console, ("gate TRIPPED: " + "; ".join(tripped)) if tripped else
                            f"gate passed: every output's zero fraction <= {zero_gate}")
        if tripped:
            raise typer.Exit(EXIT_FINDING)

