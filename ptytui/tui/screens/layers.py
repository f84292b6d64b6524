"""Layers: each model's layer tree coloured by health, and for the selected layer its statistics
with the splits side by side, histogram, weights, config and preview; `c` jumps to the first
collapse (the first layer whose nonzero fraction falls far below its input's).

While a run streams, the tree and the panels fill in from its live layer health
(``tui.live_layers``): every layer's exact nonzero fraction, NaN/Inf, dead channels and samples
entirely zero over the batches so far. When the probe trace of that model x split arrives it is
shown as before, with the live whole-split numbers beside it."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.events import Resize
from textual.widgets import Static, Tree

from ptytui.core.stats import TensorStats
from ptytui.present.format import (
    HEALTH_STYLE,
    HEALTH_SYMBOL,
    compact,
    histogram_span_label,
    histogram_sparkline,
    number,
    percent,
    value_text,
    worst,
)
from ptytui.tui.live_layers import LiveTraces, progress_label
from ptytui.tui.screens.base import WorkbenchScreen
from ptytui.tui.state import WorkbenchState
from ptytui.tui.widgets.layer_tree import LayerRef, LayerTree, layer_health, layers_by_path
from ptytui.tui.widgets.patch_image import PatchImage

LiveByModel = Mapping[str, Mapping[str, Mapping[str, Any]]]  # {model: {split: live_layers.live_trace}}


def traces_by_model(state: WorkbenchState) -> dict[str, dict[str, Mapping[str, Any]]]:
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for (model, split), trace in state.traces.items():
        out.setdefault(model, {})[split] = trace
    return out


def collapses(state: WorkbenchState, live: LiveByModel) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(model, split, first_collapse) for every trace that has one, in trace order, then for every
    run streamed without a trace yet whose live layer health has one (marked by ``upstream_by``)."""
    found = [(model, split, trace["first_collapse"]) for (model, split), trace in state.traces.items()
             if trace.get("first_collapse")]
    for model, splits in live.items():
        found += [(model, split, trace["first_collapse"]) for split, trace in splits.items()
                  if (model, split) not in state.traces and trace.get("first_collapse")]
    return found


def shown_traces(state: WorkbenchState, live: LiveByModel) -> dict[str, dict[str, Mapping[str, Any]]]:
    """{model: {split: trace}}: the probe trace where it has arrived, else the live layer health."""
    out = traces_by_model(state)
    for model, splits in live.items():
        for split, trace in splits.items():
            out.setdefault(model, {}).setdefault(split, trace)
    return out


def collapse_text(collapse: Mapping[str, Any]) -> str:
    """'trimmed_obj 100%→0.29%': where a collapse is, and the nonzero fractions across it."""
    return (f"{collapse.get('path')} {percent(collapse.get('upstream_nonzero_fraction'))}"
            f"→{percent(collapse.get('nonzero_fraction'))}")


def model_summary(model: str, traces: Mapping[str, Mapping[str, Any]],
                  live: Mapping[str, Mapping[str, Any]] | None = None, *, narrow: bool = False) -> Group:
    """A model's traces at a glance: per split the layer count, health counts, first collapse;
    then each streamed split's live layer health, layer by layer."""
    live = live or {}
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for column in ("split", "layers", "✗", "!", "first collapse"):
        table.add_column(column, no_wrap=column != "first collapse", overflow="fold")
    shown = dict(traces) | {split: trace for split, trace in live.items() if split not in traces}
    for split, trace in shown.items():
        collapse = trace.get("first_collapse") or {}
        levels = [layer_health(layer, collapse.get("path")) for layer in trace.get("layers", [])]
        where = (Text(collapse_text(collapse), style=HEALTH_STYLE["error"])
                 if collapse else Text("none", style=HEALTH_STYLE["healthy"]))
        table.add_row(split if split in traces else f"{split} live", str(len(levels)),
                      str(levels.count("error")), str(levels.count("warning")), where)
    parts: list[Any] = [Text(model, style="bold"), table,
                        Text("select a layer for its statistics per split (arrow keys; c: first collapse)",
                             style="dim")]
    for split, trace in live.items():
        parts += [Text(""), *live_layer_table(split, trace, narrow=narrow)]
    return Group(*parts)


def live_layer_table(split: str, live: Mapping[str, Any], *, narrow: bool = False) -> list[Any]:
    """One split's live layer health, a row per layer: exact nonzero fraction, NaN/Inf, dead
    channels and samples entirely zero there, the first collapse highlighted. ``narrow`` (under
    120 columns) leaves out the NaN/Inf and dead-channel columns where every layer has none (and
    says so below); wide, the sampled mean and std follow (marked *, see ``sampling_note``)."""
    collapse_path = (live.get("first_collapse") or {}).get("path")
    layers = live.get("layers", [])
    nonfinite = any((layer.get("output") or {}).get("nan_count") or (layer.get("output") or {}).get("inf_count")
                    for layer in layers)
    dead = any(layer.get("dead_channels") for layer in layers)
    columns = {"nonzero": True, "NaN/Inf": nonfinite or not narrow, "dead": dead or not narrow, "all-0": True,
               "mean*": not narrow, "std*": not narrow}
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False, header_style="bold",
                  title=f"{split} · whole split · {progress_label(live)}", title_justify="left",
                  title_style="bold")
    table.add_column("", no_wrap=True)
    table.add_column("layer", overflow="ellipsis")  # the one column that gives way when narrow
    for column, shown in columns.items():
        if shown:
            table.add_column(column, justify="right", no_wrap=True)
    for layer in layers:
        level = layer_health(layer, collapse_path)
        style = HEALTH_STYLE.get(level, "") if level in ("error", "warning") else ""
        if layer.get("path") == collapse_path:
            style = f"{HEALTH_STYLE['error']} reverse"
        output = layer.get("output") or {}
        health = layer.get("health")
        sampled = health is not None and health.finite_count > 0
        cells = {"nonzero": percent(output.get("nonzero_fraction")),
                 "NaN/Inf": f"{output.get('nan_count', 0)}/{output.get('inf_count', 0)}",
                 "dead": f"{layer.get('dead_channels', 0)}/{layer.get('channels', 0)}",
                 "all-0": str(layer.get("zero_sample_count", 0)),
                 "mean*": compact(health.mean) if sampled else "-",
                 "std*": compact(health.std) if sampled else "-"}
        table.add_row(Text(HEALTH_SYMBOL.get(level, "·"), style=HEALTH_STYLE.get(level, "")),
                      Text(str(layer.get("path")), style=style),
                      *[cells[column] for column, shown in columns.items() if shown])
    note = (f"exact over {live.get('samples', 0)} of {live.get('n_samples') or '?'} samples; "
            "all-0: samples entirely zero at the layer")
    note += "".join(f"; no {what}" for what, shown in (("NaN/Inf", columns["NaN/Inf"]),
                                                       ("dead channels", columns["dead"])) if not shown)
    if collapse_path:
        note += f"; first collapse {collapse_text(live['first_collapse'])}"
        if live["first_collapse"].get("upstream_by") == "order":
            note += " (its input: the layer run before it, until the trace gives the graph)"
    parts: list[Any] = [table, Text(note, style="dim")]
    if not narrow and layers and layers[0].get("health") is not None:
        parts.append(sampling_note(layers[0]["health"]))
    return parts


def _levels(traces: Mapping[str, Mapping[str, Any]], by_split: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Health of one layer per split, against each trace's own first collapse."""
    return {split: layer_health(layer, (traces[split].get("first_collapse") or {}).get("path"))
            for split, layer in by_split.items()}


def layer_details(model: str, path: str, traces: Mapping[str, Mapping[str, Any]],
                  live: Mapping[str, Mapping[str, Any]] | None = None, *, narrow: bool = False) -> Group:
    """Statistics of one layer, one column per split: the probe trace's rows, then the whole
    split's live rows (``live``: {split: live_layers.live_trace}); histograms, weights, config."""
    live = live or {}
    if not path:
        return model_summary(model, traces, live, narrow=narrow)
    by_split = layers_by_path(traces).get(path, {})
    live_by_split = layers_by_path(live).get(path, {})
    if not by_split and not live_by_split:
        return Group(Text(f"{model}: {path}", style="bold"),
                     Text("a group of layers: select one of its layers (arrow keys)", style="dim"))
    first = next(iter(by_split.values())) if by_split else next(iter(live_by_split.values()))
    title = Text(f"{path}", style="bold")
    title.append(f"  {first.get('type', '')}", style="dim")
    levels, live_levels = _levels(traces, by_split), _levels(live, live_by_split)
    splits = list(dict.fromkeys([*by_split, *live_by_split]))
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("", style="dim", no_wrap=True)
    for split in splits:
        level = worst(level for level in (levels.get(split), live_levels.get(split)) if level)
        table.add_column(Text(split, style=HEALTH_STYLE.get(level, "")), justify="right", no_wrap=True)
    records = {split: TensorStats.from_dict(layer["output"]) for split, layer in by_split.items()
               if layer.get("output")}
    if by_split:
        probe_rows(table, splits, by_split, records, levels)
    if live_by_split:
        whole_split_rows(table, splits, live_by_split, live, live_levels, heading=bool(by_split))
    parts: list[Any] = [title, table]
    # A split streamed but not traced yet: its histogram is the live one (sampled, marked *).
    sampled = {split: layer["health"].to_stats() for split, layer in live_by_split.items()
               if split not in records}
    if live_by_split:
        parts.append(sampling_note(next(iter(live_by_split.values()))["health"]))
    parts.append(Text("histogram (symlog bins, occupied span)", style="bold underline"))
    for split, record in [*records.items(), *sampled.items()]:
        line = Text(f"{split + '*' if split in sampled else split:>6} ", style="dim")
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


def probe_rows(table: Table, splits: list[str], by_split: Mapping[str, Mapping[str, Any]],
               records: Mapping[str, TensorStats], levels: Mapping[str, str]) -> None:
    """The probe trace's statistics of one layer, one cell per split ('-' where not traced)."""

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
        table.add_row(label, *[cell(split, by_split[split], records.get(split)) if split in by_split else "-"
                               for split in splits])


def whole_split_rows(table: Table, splits: list[str], by_split: Mapping[str, Mapping[str, Any]],
                     live: Mapping[str, Mapping[str, Any]], levels: Mapping[str, str], *,
                     heading: bool) -> None:
    """The live layer health of one layer over the batches streamed so far, one cell per split:
    exact counts, then the sampled moments (marked *, see ``sampling_note``)."""

    def moment(record, value: float) -> str:
        return number(value) if record.finite_count else "-"

    rows = [("batches", lambda s, h: f"{live[s].get('batches', 0)} of {live[s].get('batches_total') or '?'}"),
            ("health", lambda s, h: Text(levels[s], style=HEALTH_STYLE.get(levels[s], ""))),
            ("nonzero", lambda s, h: percent(h.nonzero_fraction) if h.count else "-"),
            ("NaN/Inf", lambda s, h: f"{h.nan_count}/{h.inf_count}"),
            ("dead ch", lambda s, h: f"{h.dead_channels}/{h.channels}"),
            ("all-zero", lambda s, h: f"{h.zero_sample_count}/{h.samples}"),
            ("sampled", lambda s, h: f"{h.moment_batches} of {h.batches}"),
            ("mean*", lambda s, h: moment(h, h.mean)),
            ("std*", lambda s, h: moment(h, h.std))]
    if heading:
        table.add_row(Text("whole split", style="bold"), *["" for _ in splits])
    for label, cell in rows:
        table.add_row(label, *[cell(split, by_split[split]["health"]) if split in by_split else "-"
                               for split in splits])


def sampling_note(record) -> Text:
    """What the live numbers cover: counts exact over every batch so far; moments and histograms
    from one batch in ``sample_every`` (``core.health.LayerHealth.sampled``; the ``sampled`` row
    of the details says how many batches that was per split)."""
    sampled = record.sampled()
    every = "every batch" if sampled["every"] <= 1 else f"one batch in {sampled['every']}"
    note = f"whole split: counts exact over every batch so far; * mean, std and histogram from {every}"
    if sampled["hist_samples_per_batch"]:
        note += f", the histogram from its first {sampled['hist_samples_per_batch']} samples"
    return Text(note, style="dim")


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
        self._live: LiveByModel = {}
        self._live_traces = LiveTraces()
        self._live_runs: tuple = ()  # (key, status) of the streamed runs last drawn
        self._narrow = self.app.size.width < self.app.WIDE_COLUMNS

    def update_body(self, state: WorkbenchState, changed) -> None:
        # A run's status ends its live label ("cancelled after ..."); batches alone do not.
        live_runs = tuple((key, state.runs[key].status if key in state.runs else "")
                          for key in state.live_health)
        if not ({"traces", "health"} & set(changed)) and live_runs == self._live_runs:
            return
        self._live_runs = live_runs
        self._live = self._live_traces(state)
        tree = self.query_one(LayerTree)
        grouped = shown_traces(state, self._live)
        tree.show_traces(grouped)
        self.query_one("#collapse-summary", Static).update(self._collapse_summary(state))
        if self._selected is None and grouped:
            model = next(iter(grouped))
            self._show_layer(LayerRef(model, "", False))
        elif self._selected is not None:
            self._show_layer(self._selected)

    def _collapse_summary(self, state: WorkbenchState) -> Text:
        found = collapses(state, self._live)
        if not state.traces and not self._live:
            return Text("layer trace not computed yet: it follows the statistics runs", style="dim")
        if found:
            text = Text("first collapse (c): ", style="bold")
            for i, (model, split, collapse) in enumerate(found):
                if i:
                    text.append(" · ")
                text.append(f"{model} × {split} at {collapse.get('path', '?').split('/')[-1]} "
                            f"{percent(collapse.get('upstream_nonzero_fraction'))}"
                            f"→{percent(collapse.get('nonzero_fraction'))}", style=HEALTH_STYLE["error"])
                if (model, split) not in state.traces:
                    text.append(" (live)", style="dim")
            return text
        if not state.traces:
            return Text("no collapse so far in the live layer health (the probe trace follows the run)",
                        style=HEALTH_STYLE["healthy"])
        return Text("no collapse: every layer keeps its input's nonzero fraction", style=HEALTH_STYLE["healthy"])

    def on_resize(self, event: Resize) -> None:
        narrow = self.app.size.width < self.app.WIDE_COLUMNS
        if narrow != self._narrow:  # the live tables show more columns from 120 on
            self._narrow = narrow
            if self._selected is not None:
                self._show_layer(self._selected)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self._show_layer(event.node.data)

    def _show_layer(self, ref: LayerRef) -> None:
        self._selected = ref
        traces = traces_by_model(self.shown_state).get(ref.model, {})
        live = self._live.get(ref.model, {})
        self.query_one("#layer-info", Static).update(layer_details(ref.model, ref.path, traces, live,
                                                                   narrow=self._narrow))
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
        found = collapses(self.shown_state, self._live)
        if not found:
            self.notify("no collapse found in the traces", severity="information")
            return
        self._collapse_cursor = (self._collapse_cursor + 1) % len(found)
        model, split, collapse = found[self._collapse_cursor]
        tree = self.query_one(LayerTree)
        if tree.go_to(model, str(collapse.get("path"))):
            tree.focus()
            self._show_layer(LayerRef(model, str(collapse.get("path")), True))
