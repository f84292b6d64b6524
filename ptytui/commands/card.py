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
    """The card as Rich tables on ``console`` (a model card, not a dump of every key)."""
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    if card.fallback:
        console.print(Text(fallback_warning(card.fallback), style="bold white on red"))

    summary = Table(title=f"model card: {card.path}", title_justify="left", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value", overflow="fold")
    summary.add_row("kind", card.kind)
    summary.add_row("loaded from", card.loaded_from)
    summary.add_row("fallback", Text(card.fallback, style="bold red") if card.fallback else "none")
    summary.add_row("takes positions", Text("yes", style="bold yellow") if card.takes_positions else "no")
    summary.add_row("gridsize", "unknown" if card.gridsize is None else str(card.gridsize))
    summary.add_row("intensity scale", "none" if card.intensity_scale is None else f"{card.intensity_scale:.6g}")
    summary.add_row("parameters", "unknown" if card.parameters is None else f"{card.parameters:,}")
    if card.keras_version:
        summary.add_row("saved by Keras", card.keras_version)
    console.print(summary)

    tensors = Table(title="inputs and outputs", title_justify="left")
    for column in ("", "name", "shape", "dtype"):
        tensors.add_column(column, overflow="fold")
    for role, specs in (("in", card.inputs), ("out", card.outputs)):
        for spec in specs:
            shape = "unknown" if spec.get("shape") is None else "(" + ", ".join(
                "None" if d is None else str(d) for d in spec["shape"]) + ")"
            tensors.add_row(role, str(spec.get("name")), shape, str(spec.get("dtype") or "unknown"))
    console.print(tensors)

    if card.reassembly:
        reassembly = Table(title="reassembly (where positions enter)", title_justify="left")
        for column in ("path", "type", "canvas P", "patch N", "gridsize", "from"):
            reassembly.add_column(column, overflow="fold")
        for item in card.reassembly:
            reassembly.add_row(item.path, item.type, _or_unknown(item.canvas), _or_unknown(item.patch),
                               _or_unknown(item.gridsize), "inferred from shapes" if item.inferred else "config")
        console.print(reassembly)

    if card.custom_classes:
        customs = Table(title="custom classes", title_justify="left")
        for column in ("class", "module", "registered as", "importable"):
            customs.add_column(column, overflow="fold")
        for custom in card.custom_classes:
            customs.add_row(custom.class_name, custom.module or "-", custom.registered_name or "-",
                            Text("yes", style="green") if custom.importable else Text("MISSING", style="bold red"))
        console.print(customs)

    if card.training:
        training = Table(title="training parameters (params.dill, read with --trust)", title_justify="left",
                         show_header=False)
        training.add_column("parameter", style="bold")
        training.add_column("value", overflow="fold")
        for name, value in card.training.items():
            training.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
        console.print(training)

    if card.layers:
        layers = Table(title="layers", title_justify="left")
        layers.add_column("type")
        layers.add_column("count", justify="right")
        for name, count in card.layers.items():
            layers.add_row(name, str(count))
        console.print(layers)

    for warning in card.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


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
        from rich.console import Console  # noqa: PLC0415

        render_card(model_card, Console())
