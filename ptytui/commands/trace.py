"""`ptytui trace`: per-layer activation statistics of a probe batch, as a tree (headless twin of
the Layers screen). Nested models expand to paths like outer/inner/layer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ptytui.inputs.workspace import POSITION_MODES

TRACE_HELP = ("Trace every layer's output for a probe batch (the first K groups of each split) in one "
              "forward pass: statistics per layer (nonzero fraction, mean, std, NaN/Inf, dead channels), "
              "weight health, and the first collapse (the earliest layer below 1% nonzero fed by a layer "
              "above 20%). With --model/--data the model is fed as a PtychoPINN pipeline feeds it: "
              "diffraction amplitude times the model's intensity scale, relative positions. "
              "A model that does not return one output per input for the probe batch (it merges the "
              "samples of one call) is an invalid run: the layers past the merge are marked, the "
              "first collapse is sought before it, and the command exits 2.")
MERGED_MARK = "*"  # beside a layer whose output lost the batch's sample axis (short: the name column breaks at spaces)
N_SAMPLES_REMEDY = "trace fewer groups (--n-samples)"


def render_trace(trace, console) -> None:
    """The layer tree: each layer by its full name, indented by nesting depth, with its type
    beside it (below it when narrow); numbers aligned in columns and never split. Where the model
    returned another number of outputs than it was given inputs, the layers whose output lost the
    sample axis are marked and one line says where the samples merge."""
    from rich.text import Text  # noqa: PLC0415

    from ptytui.present.format import percent  # noqa: PLC0415
    from ptytui.present.tables import Column, Grid, print_prose, render_grid  # noqa: PLC0415

    grid = Grid(f"{trace.model} / {trace.split}  ({trace.n_samples} groups, positions "
                f"{trace.positions}, {trace.seconds:.2f} s)",
                [Column("layer (type)", "name"), Column("nonzero"), Column("mean"), Column("std"),
                 Column("dead"), Column("NaN/Inf"), Column("weights", "text")])
    collapse = trace.first_collapse.path if trace.first_collapse else None
    count = trace.output_count
    merged = count is not None and not count.matches
    for entry in trace.layers:
        rec = entry.output
        weights = ""
        if entry.weights:
            bad = [n for n, w in entry.weights.items() if w.nonfinite_count or (w.is_kernel and w.all_zero)]
            weights = ("BAD: " + ",".join(bad)) if bad else "ok"
        style = "bold red" if entry.path == collapse else None
        per_sample = not merged or trace.per_sample(entry)
        if style is None and rec.count and rec.nonzero_fraction == 0:
            style = "red" if per_sample else "dim"
        label = Text(entry.name)
        label.append(f" {entry.type}", style="dim")
        if not per_sample:
            label.append(f" {MERGED_MARK}", style="yellow")
        grid.add_row(
            label,
            percent(rec.nonzero_fraction) if rec.count else "-",
            f"{rec.mean:.4g}" if rec.finite_count else "-",
            f"{rec.std:.4g}" if rec.finite_count else "-",
            f"{entry.dead_channels}/{entry.channels}" if entry.channels else "-",
            f"{rec.nan_count}/{rec.inf_count}", weights, style=style, indent="  " * entry.depth)
    render_grid(console, grid)
    if merged:
        lost = f"{count.lost_at} ({trace.layer(count.lost_at).type})" if count.lost_at else "unknown"
        outputs = f"{count.returned} output{'' if count.returned == 1 else 's'}"
        print_prose(console, f"output-count-mismatch: {outputs} for {count.inputs} inputs; "
                             f"the sample axis is lost at {lost}: rows marked {MERGED_MARK} describe the "
                             "merged batch, not its samples", style="bold red")
    heading = "first collapse among the per-sample layers" if merged else "first collapse"
    if trace.first_collapse:
        c = trace.first_collapse
        print_prose(console, f"{heading}: {c.path} ({c.type}): {c.upstream_nonzero_fraction:.2%} nonzero "
                             f"going in (from {c.upstream_path}), {c.nonzero_fraction:.2%} coming out")
    else:
        print_prose(console, f"{heading}: none")


def register(app: typer.Typer) -> None:
    @app.command(help=TRACE_HELP)
    def trace(
        workspace: Optional[Path] = typer.Argument(None, help="Folder with ptytui.toml, or the toml file."),
        model_name: Optional[list[str]] = typer.Option(None, "--model-name", help="Only this workspace model (repeatable)."),
        model: Optional[list[str]] = typer.Option(None, "--model", help="A model file or bundle (instead of WORKSPACE)."),
        data: Optional[list[str]] = typer.Option(None, "--data", help="NPZ split, or NAME=NPZ (repeatable)."),
        split: Optional[list[str]] = typer.Option(None, "--split", help="Only this split (repeatable)."),
        positions: Optional[str] = typer.Option(None, "--positions", help=f"Override how positions are fed: {' | '.join(POSITION_MODES)}."),
        n_samples: int = typer.Option(16, "--n-samples", help="Groups in the probe batch."),
        preview: Optional[str] = typer.Option(None, "--preview", metavar="LAYER", help="Also return a downsampled preview of this layer's output (JSON: 'preview')."),
        compiled: bool = typer.Option(True, "--compiled/--eager", help="One compiled step for the whole trace (the default: about twice a forward pass once built), or run the layers eagerly (no graph build: for a one-off trace of a very large model)."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        trust: bool = typer.Option(False, "--trust", help="Allow pickled custom objects and unsafe Keras deserialization."),
        seed: int = typer.Option(0, "--seed", help="Seed for grouping."),
    ) -> None:
        from ptytui.commands.common import emit_json, open_session  # noqa: PLC0415
        from ptytui.errors import InputError, UsageError  # noqa: PLC0415

        if n_samples < 1:
            raise UsageError(f"--n-samples: expected a positive integer, found {n_samples}")
        session = open_session(workspace, model, data, positions=positions, trust=trust, seed=seed)
        plans = session.plan(models=model_name, splits=split, positions=positions)

        import numpy as np  # noqa: PLC0415

        from ptytui.running.inference import feed_inputs  # noqa: PLC0415
        from ptytui.running.trace import compare_traces, trace_model  # noqa: PLC0415

        traces = []
        for plan in plans:
            loaded = session.model(plan.model)
            split_data = session.split(plan.split)
            grouping = session.grouping(plan.split, session.gridsize(plan.model))
            ids = np.arange(min(n_samples, len(grouping)))
            fed = feed_inputs(loaded, grouping.batch(split_data, ids), positions=plan.positions,
                              intensity_scale=plan.intensity_scale)
            result = trace_model(loaded.model, fed, model_name=plan.model, split=plan.split,
                                 preview=preview, positions=plan.positions, compiled=compiled)
            if preview is not None and preview not in result.paths():
                raise UsageError(f"--preview: expected a layer path of {plan.model} "
                                 f"(e.g. {result.paths()[-1]!r}), found {preview!r}")
            traces.append(result)
        if json_out:
            documents = []
            for t in traces:
                document = t.to_dict()
                if t.preview is not None:
                    image = t.preview.image
                    document["preview"] = {
                        "path": t.preview.path, "stride": list(t.preview.stride),
                        "amplitude" if np.iscomplexobj(image) else "values":
                            np.abs(image).tolist() if np.iscomplexobj(image) else image.tolist(),
                        **({"phase": np.angle(image).tolist()} if np.iscomplexobj(image) else {})}
                documents.append(document)
            if len(documents) == 1:
                emit_json(documents[0])
            else:
                comparisons = []
                by_model: dict[str, list] = {}
                for t in traces:
                    by_model.setdefault(t.model, []).append(t)
                for model_traces in by_model.values():
                    for other in model_traces[1:]:
                        comparisons.append(compare_traces(model_traces[0], other).to_dict())
                emit_json({"traces": documents, "comparisons": comparisons})
        else:
            from ptytui.present.tables import results_console  # noqa: PLC0415

            console = results_console()
            for t in traces:
                render_trace(t, console)
        invalid = [t for t in traces if t.output_count is not None and not t.output_count.matches]
        if invalid:
            # Like a streamed run that merges the samples of a call: an invalid model run, exit 2.
            first = invalid[0]
            raise InputError(session.model_entry(first.model).path,
                             f"model '{first.model}' to trace on split '{first.split}'",
                             first.output_count.message(remedy=N_SAMPLES_REMEDY))
