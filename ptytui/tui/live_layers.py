"""A streamed run's live layer health as the Layers screen shows it (plain data, no Textual).

``WorkbenchState.live_health`` holds each run's latest ``LayerHealthUpdate`` records
(``core.health.LayerHealth``: exact counts over every batch so far, moments and histograms
sampled every ``sample_every``-th batch). ``live_trace`` turns them into the shape of a probe
trace (``trace --json``: ``layers`` and ``first_collapse``), which the layer tree and the
details panel already read; each layer dict keeps its ``LayerHealth`` under ``"health"`` for
the numbers a trace has not (samples entirely zero, what is sampled).

One layer is its record's first part (its output, output 0, or a complex output's amplitude),
as ``diagnosis.sample_collapse`` reads them.

The first collapse is ``running.trace.find_first_collapse`` on the live records, with the
trace's thresholds (``core.thresholds``). It needs each layer's inputs: a probe trace of the same
model (on any split) gives the graph; until one has arrived, a layer's input is taken to be the
layer run just before it (records come in execution order), and the collapse says so with
``"upstream_by": "order"`` (``"graph"`` otherwise). ``LiveTraces`` keeps every run's live trace
and rebuilds only those whose inputs moved.
"""

from __future__ import annotations

from typing import Any, Mapping

from ptytui.running.trace import LayerTrace, find_first_collapse
from ptytui.tui.state import RunKey, WorkbenchState


def batches_total(state: WorkbenchState, key: RunKey) -> int | None:
    """Batches the run will have streamed when done: those seen, plus the samples left at the
    current batch size (None before the run's size is known)."""
    view, run = state.live_health.get(key), state.runs.get(key)
    if view is None or run is None or not run.batch_size or not run.total:
        return None
    left = max(run.total - view.samples, 0)
    return view.batches + -(-left // run.batch_size)


def layer_graph(state: WorkbenchState, model: str) -> dict[str, Mapping[str, Any]]:
    """{layer path: trace layer dict} from the model's probe traces (the first trace wins)."""
    graph: dict[str, Mapping[str, Any]] = {}
    for (traced_model, _), trace in state.traces.items():
        if traced_model == model:
            for layer in trace.get("layers") or []:
                graph.setdefault(str(layer.get("path")), layer)
    return graph


def _input_names(state: WorkbenchState, model: str) -> set[str]:
    """The model's input names (its card's): the walk records each input under its name."""
    card = state.cards.get(model) or {}
    return {str(spec.get("name")) for spec in card.get("inputs") or [] if isinstance(spec, Mapping)}


def live_trace(state: WorkbenchState, key: RunKey) -> dict[str, Any] | None:
    """The run's live layer health as a TRACE-like dict (None before its first update).

    Keys: model, split, live (True), batches (seen), batches_total (``batches_total``), status
    (the run's), samples (streamed so far), n_samples (the run's), layers (one dict per layer in
    execution order: path, type, container, input, inputs, output {count, nonzero_fraction,
    zero_count, nan_count, inf_count}, channels, dead_channels, zero_sample_count,
    nonfinite_sample_count, health: the LayerHealth), first_collapse (the Collapse dict plus
    upstream_by, or None).
    """
    view = state.live_health.get(key)
    if view is None or not view.records:
        return None
    model, split = key
    graph = layer_graph(state, model)
    inputs = _input_names(state, model)
    records = view.layers()
    layers: list[dict[str, Any]] = []
    entries: list[LayerTrace] = []
    previous: str | None = None
    for path, record in records.items():
        known = graph.get(path)
        if known is not None:
            container, is_input = bool(known.get("container")), bool(known.get("input"))
            upstream = [str(p) for p in known.get("inputs") or []]
        else:
            container = any(other.startswith(path + "/") for other in records)
            is_input = path in inputs
            upstream = [previous] if previous is not None and not is_input else []
        layer_type = str(known.get("type", "")) if known is not None else ""
        layers.append({
            "path": path, "type": layer_type, "container": container, "input": is_input,
            "inputs": upstream, "output": {
                "count": record.count, "nonzero_fraction": record.nonzero_fraction if record.count else None,
                "zero_count": record.zero_count, "nan_count": record.nan_count, "inf_count": record.inf_count},
            "channels": record.channels, "dead_channels": record.dead_channels,
            "zero_sample_count": record.zero_sample_count,
            "nonfinite_sample_count": record.nonfinite_sample_count, "health": record})
        entries.append(LayerTrace(
            path=path, name=path.split("/")[-1], type=layer_type, depth=path.count("/"),
            parent=path.rsplit("/", 1)[0] if "/" in path else None, is_container=container,
            is_input=is_input, inputs=upstream, output_shapes=[], output_dtypes=[],
            output=record.to_stats(), outputs={}, channels=record.channels,
            dead_channels=record.dead_channels, underflow_count=record.underflow_count,
            underflow_elements=record.hist_elements, health=record))
        previous = path
    collapse = find_first_collapse(entries)
    first_collapse = None
    if collapse is not None:
        first_collapse = collapse.to_dict() | {"upstream_by": "graph" if graph else "order"}
    run = state.runs.get(key)
    return {"model": model, "split": split, "live": True, "batches": view.batches,
            "batches_total": batches_total(state, key), "status": run.status if run else "",
            "samples": view.samples, "n_samples": run.total if run else None,
            "layers": layers, "first_collapse": first_collapse}


class LiveTraces:
    """``live_trace`` of every streamed run as {model: {split: trace}}, in arrival order.

    A run's trace is rebuilt only when something it is built from moved (its update, its run's
    status or size, a trace or card arriving): an update of one run then costs one run's layers,
    not every run's (a few hundred layers per run make that tens of milliseconds each).
    """

    def __init__(self) -> None:
        self._built: dict[RunKey, tuple[tuple, dict[str, Any] | None]] = {}

    def __call__(self, state: WorkbenchState) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        built = {}
        for key, view in state.live_health.items():
            run = state.runs.get(key)
            inputs = (view.updates, view.batches, state.versions.get("traces"), state.versions.get("cards"),
                      run and (run.status, run.total, run.batch_size))
            previous = self._built.get(key)
            built[key] = previous if previous is not None and previous[0] == inputs else (
                inputs, live_trace(state, key))
            trace = built[key][1]
            if trace is not None:
                out.setdefault(key[0], {})[key[1]] = trace
        self._built = built
        return out


def progress_label(trace: Mapping[str, Any]) -> str:
    """How far a live trace is: 'live · 2 of 4 batches', 'all 4 batches', 'cancelled after 2 of 4
    batches' (the total is left out while it is not known)."""
    batches, total, status = trace.get("batches", 0), trace.get("batches_total"), trace.get("status")
    of = f"{batches} of {total} batches" if total else f"{batches} batches"
    if status in ("cancelled", "failed"):
        return f"{status} after {of}"
    if total and batches >= total:
        return f"all {total} batches"
    return f"live · {of}"
