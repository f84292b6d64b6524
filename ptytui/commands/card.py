"""`ptytui card MODEL`: the model card (inputs, position input, reassembly layer, custom classes,
intensity scale, parameters) read from the files without running or deserializing the model."""

from __future__ import annotations

import typer

CARD_HELP = ("Show what a saved model is without running it: .keras, .h5, SavedModel folder or "
             "PtychoPINN bundle (the folder holding wts.h5.zip, or the zip). Nothing is unpickled "
             "unless --trust.")


def fallback_warning(fallback: str) -> str:
    """The loud line printed (on stderr, and in the table) when another file was read."""
    return f"WARNING: FALLBACK: {fallback}"


def render_card(card, console) -> None:
    """The card as fields and narrow tables on ``console`` (a model card, not a dump of every
    key): paths printed whole, identifiers never cut, at any width."""
    from rich.text import Text  # noqa: PLC0415

    from ptytui.present.tables import Column, Grid, print_fields, print_prose, render_grid  # noqa: PLC0415

    if card.fallback:
        print_prose(console, Text(fallback_warning(card.fallback), style="bold white on red"))
    print_prose(console, Text(f"model card: {card.path}", style="bold"))
    summary = [("kind", card.kind), ("loaded from", card.loaded_from),
               ("fallback", Text(card.fallback, style="bold red") if card.fallback else "none"),
               ("takes positions", Text("yes", style="bold yellow") if card.takes_positions else "no"),
               ("gridsize", _or_unknown(card.gridsize)),
               ("intensity scale", "none" if card.intensity_scale is None else f"{card.intensity_scale:.6g}"),
               ("parameters", "unknown" if card.parameters is None else f"{card.parameters:,}")]
    if card.keras_version:
        summary.append(("saved by Keras", card.keras_version))
    print_fields(console, summary)
    console.print()

    tensors = Grid("inputs and outputs", [Column("", "text"), Column("name", "name"),
                                          Column("shape", "text"), Column("dtype", "text")])
    for role, specs in (("in", card.inputs), ("out", card.outputs)):
        for spec in specs:
            shape = "unknown" if spec.get("shape") is None else "(" + ", ".join(
                "None" if d is None else str(d) for d in spec["shape"]) + ")"
            tensors.add_row(role, str(spec.get("name")), shape, str(spec.get("dtype") or "unknown"))
    render_grid(console, tensors)

    if card.reassembly:
        reassembly = Grid("reassembly (where positions enter)",
                          [Column("path", "name"), Column("type", "text"), Column("canvas P"),
                           Column("patch N"), Column("gridsize"), Column("from", "text")])
        for item in card.reassembly:
            reassembly.add_row(item.path, item.type, _or_unknown(item.canvas), _or_unknown(item.patch),
                               _or_unknown(item.gridsize), "inferred from shapes" if item.inferred else "config")
        render_grid(console, reassembly)

    if card.custom_classes:
        customs = Grid("custom classes", [Column("class", "name"), Column("module", "name"),
                                          Column("registered as", "name"), Column("importable", "text")])
        for custom in card.custom_classes:
            customs.add_row(custom.class_name, custom.module or "-", custom.registered_name or "-",
                            Text("yes", style="green") if custom.importable else Text("MISSING", style="bold red"))
        render_grid(console, customs)

    if card.training:
        print_prose(console, Text("training parameters (params.dill, read with --trust)", style="bold"))
        print_fields(console, [(name, f"{value:.6g}" if isinstance(value, float) else str(value))
                               for name, value in card.training.items()])
        console.print()

    if card.layers:
        layers = Grid("layers", [Column("type", "name"), Column("count")])
        for name, count in card.layers.items():
            layers.add_row(name, str(count))
        render_grid(console, layers)

    for warning in card.warnings:
        print_prose(console, Text(f"warning: {warning}", style="yellow"))


def _or_unknown(value) -> str:
    return "unknown" if value is None else str(value)


def register(app: typer.Typer) -> None:
    @app.command(help=CARD_HELP)
    def card(
        model: str = typer.Argument(..., help="Model file, SavedModel folder, bundle folder or wts.h5.zip."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        trust: bool = typer.Option(False, "--trust", help="Also read the bundle's params.dill (a pickle: "
                                                          "runs code from the file; needs dill: pip install 'ptytui[trust]')."),
    ) -> None:
        from ptytui.inputs.models import read_card  # noqa: PLC0415

        model_card = read_card(model, trust=trust)
        if model_card.fallback:
            typer.echo(f"ptytui: {fallback_warning(model_card.fallback)}", err=True)
        if json_out:
            from ptytui.commands.common import emit_json  # noqa: PLC0415

            emit_json(model_card.to_dict())
            return
        from ptytui.present.tables import results_console  # noqa: PLC0415

        render_card(model_card, results_console())
