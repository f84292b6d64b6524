"""Layers: each model's layer tree coloured by health, and for the selected layer its statistics
with the splits side by side, histogram, weights, config and preview; `c` jumps to the first
collapse (the first layer whose nonzero fraction falls far below its input's)."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static, Tree

from ptytui.core.stats import TensorStats
from ptytui.present.format import (
    HEALTH_STYLE,
    compact,
    histogram_span_label,
    histogram_sparkline,
    number,
    percent,
    value_text,
)
from ptytui.tui.screens.base import WorkbenchScreen
from ptytui.tui.state import WorkbenchState
from ptytui.tui.widgets.layer_tree import LayerRef, LayerTree, layer_health, layers_by_path
from ptytui.tui.widgets.patch_image import PatchImage


def traces_by_model(state: WorkbenchState) -> dict[str, dict[str, Mapping[str, Any]]]:
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for (model, split), trace in state.traces.items():
        out.setdefault(model, {})[split] = trace
    return out


def collapses(state: WorkbenchState) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(model, split, first_collapse) for every trace that has one, in trace order."""
    return [(model, split, trace["first_collapse"]) for (model, split), trace in state.traces.items()
            if trace.get("first_collapse")]


def model_summary(model: str, traces: Mapping[str, Mapping[str, Any]]) -> Group:
    """A model's traces at a glance: per split the layer count, health counts, first collapse."""
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for column in ("split", "layers", "✗", "!", "first collapse"):
        table.add_column(column, no_wrap=column != "first collapse", overflow="fold")
    for split, trace in traces.items():
        collapse = trace.get("first_collapse") or {}
        levels = [layer_health(layer, collapse.get("path")) for layer in trace.get("layers", [])]
        where = (Text(f"{collapse.get('path')} {percent(collapse.get('upstream_nonzero_fraction'))}"
                      f"→{percent(collapse.get('nonzero_fraction'))}", style=HEALTH_STYLE["error"])
                 if collapse else Text("none", style=HEALTH_STYLE["healthy"]))
        table.add_row(split, str(len(levels)), str(levels.count("error")), str(levels.count("warning")), where)
    return Group(Text(model, style="bold"), table,
                 Text("select a layer for its statistics per split (arrow keys; c: first collapse)",
                      style="dim"))


def layer_details(model: str, path: str, traces: Mapping[str, Mapping[str, Any]]) -> Group:
    """Statistics of one layer, one column per split, then histograms, weights and config."""
    if not path:
        return model_summary(model, traces)
    by_split = layers_by_path(traces).get(path, {})
    if not by_split:
        return Group(Text(f"{model}: {path}", style="bold"),
                     Text("a group of layers: select one of its layers (arrow keys)", style="dim"))
    first = next(iter(by_split.values()))
    title = Text(f"{path}", style="bold")
    title.append(f"  {first.get('type', '')}", style="dim")
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("", style="dim", no_wrap=True)
    records: dict[str, TensorStats] = {}
    levels: dict[str, str] = {}
    for split, layer in by_split.items():
        levels[split] = layer_health(layer, (traces[split].get("first_collapse") or {}).get("path"))
        table.add_column(Text(split, style=HEALTH_STYLE.get(levels[split], "")), justify="right",
                         no_wrap=True)
        if layer.get("output"):
            records[split] = TensorStats.from_dict(layer["output"])

    def finite(r: TensorStats | None, value) -> str:
        return number(value) if r is not None and r.finite_count else "-"

    rows = [("health", lambda s, layer, r: Text(levels[s], style=HEALTH_STYLE.get(levels[s], ""))),
            ("nonzero", lambda s, layer, r: percent(r.nonzero_fraction) if r else "-"),
            ("mean", lambda s, layer, r: finite(r, r.mean if r else None)),
            ("std", lambda s, layer, r: finite(r, r.std if r else None)),
            ("min", lambda s, layer, r: finite(r, r.min if r else None)),
            ("max", lambda s, layer, r: finite(r, r.max if r else None)),
            ("NaN/Inf", lambda s, layer, r: f"{r.nan_count}/{r.inf_count}" if r else "-"),
            ("dead ch", lambda s, layer, r: f"{layer.get('dead_channels', 0)}/{layer.get('channels', 0)}")]
    for label, cell in rows:
        table.add_row(label, *[cell(split, layer, records.get(split)) for split, layer in by_split.items()])
    parts: list[Any] = [title, table, Text("histogram (symlog bins, occupied span)", style="bold underline")]
    for split, record in records.items():
        line = Text(f"{split:>6} ", style="dim")
        line.append(histogram_sparkline(record, 16))
        line.append(f" {histogram_span_label(record)}", style="dim")
        parts.append(line)
    weights = first.get("weights") or {}
    if weights:
        parts.append(weights_table(weights))
    config = first.get("config") or {}
    if config:
        parts.append(Text("config", style="bold underline"))
        parts.append(Text(", ".join(f"{k}={value_text(v)}" for k, v in config.items())))
    return Group(*parts)


def weights_table(weights: Mapping[str, Any]) -> Table:
    """Weight health per variable: the trace's weight dicts (mean, std, min, max, l2, NaN/Inf,
    zero fraction) or full STATS dicts."""
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold", title="weights",
                  title_justify="left", title_style="bold underline")
    for column in ("name", "shape", "mean", "std", "min", "max", "zero", "NaN/Inf"):
        table.add_column(column, justify="left" if column in ("name", "shape") else "right", no_wrap=True)
    for name, stats in weights.items():
        if not isinstance(stats, Mapping):
            table.add_row(str(name), value_text(stats), "", "", "", "", "", "")
            continue
        zero = stats.get("zero_fraction")
        if zero is None and stats.get("nonzero_fraction") is not None:
            zero = 1 - stats["nonzero_fraction"]
        bad = bool(stats.get("nan_count") or stats.get("inf_count"))
        dead = bool(stats.get("all_zero") and stats.get("is_kernel"))
        shape = "x".join(str(d) for d in stats.get("shape") or []) or "-"
        table.add_row(Text(str(name), style=HEALTH_STYLE["error"] if bad or dead else ""), shape,
                      *[compact(stats.get(key)) for key in ("mean", "std", "min", "max")],
                      Text(percent(zero), style=HEALTH_STYLE["error"] if dead else ""),
                      Text(f"{stats.get('nan_count', 0)}/{stats.get('inf_count', 0)}",
                           style=HEALTH_STYLE["error"] if bad else ""))
    return table


class LayersScreen(WorkbenchScreen):
    MODE = "layers"
    BINDINGS = [Binding("c", "first_collapse", "First collapse",
                        tooltip="jump to the first collapsing layer (again: the next model x split)")]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="layers-body", classes="body"):
            yield LayerTree(id="layer-tree")
            with VerticalScroll(id="layer-details"):
                yield Static("", id="collapse-summary")
                yield Static("", id="layer-info")
                yield PatchImage("preview", kind="amplitude", id="layer-preview")

    def setup_body(self) -> None:
        self._selected: LayerRef | None = None
        self._collapse_cursor = -1

    def update_body(self, state: WorkbenchState, changed) -> None:
        if "traces" not in changed:
            return
        tree = self.query_one(LayerTree)
        grouped = traces_by_model(state)
        tree.show_traces(grouped)
        summary = self.query_one("#collapse-summary", Static)
        found = collapses(state)
        if not state.traces:
            summary.update(Text("layer trace not computed yet: it follows the statistics runs",
                                style="dim"))
        elif found:
            text = Text("first collapse (c): ", style="bold")
            for i, (model, split, collapse) in enumerate(found):
                if i:
                    text.append(" · ")
                text.append(f"{model} × {split} at {collapse.get('path', '?').split('/')[-1]} "
                            f"{percent(collapse.get('upstream_nonzero_fraction'))}"
                            f"→{percent(collapse.get('nonzero_fraction'))}", style=HEALTH_STYLE["error"])
            summary.update(text)
        else:
            summary.update(Text("no collapse: every layer keeps its input's nonzero fraction",
                                style=HEALTH_STYLE["healthy"]))
        if self._selected is None and grouped:
            model = next(iter(grouped))
            self._show_layer(LayerRef(model, "", False))
        elif self._selected is not None:
            self._show_layer(self._selected)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self._show_layer(event.node.data)

    def _show_layer(self, ref: LayerRef) -> None:
        self._selected = ref
        traces = traces_by_model(self.shown_state).get(ref.model, {})
        self.query_one("#layer-info", Static).update(layer_details(ref.model, ref.path, traces))
        preview = None
        for trace in traces.values():
            for layer in trace.get("layers", []):
                if layer.get("path") == ref.path and layer.get("preview") is not None:
                    preview = layer["preview"]
                    break
            if preview is not None:
                break
        image = self.query_one("#layer-preview", PatchImage)
        image.display = preview is not None
        if preview is not None:
            import numpy as np  # noqa: PLC0415

            image.show(np.asarray(preview, dtype=np.float64))

    def action_first_collapse(self) -> None:
        """Select the next first-collapse layer (cycling over model x split)."""
        found = collapses(self.shown_state)
        if not found:
            self.notify("no collapse found in the traces", severity="information")
            return
        self._collapse_cursor = (self._collapse_cursor + 1) % len(found)
        model, split, collapse = found[self._collapse_cursor]
        tree = self.query_one(LayerTree)
        if tree.go_to(model, str(collapse.get("path"))):
            tree.focus()
            self._show_layer(LayerRef(model, str(collapse.get("path")), True))
