"""NPZ dumps for debugging outside ptytui: the failing batch (which (model, split) pairs failed,
and their first batch as fed, with positions and outputs), and the collapsed samples (the samples
the diagnosis's sample-collapse findings name, with their inputs as grouped)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ptytui.core.atomic import atomic_open
from ptytui.diagnosis.sample_collapse import CollapsedSamples, collapsed_from_findings, dump_samples
from ptytui.outcome.export.gather import FAILING_NONZERO_BELOW, ReportInputs, primary_output
from ptytui.outcome.export.plan import safe_name
from ptytui.running.inference import call_inputs, feed_inputs, flat_outputs, resolve_intensity_scale

# Groups in a debug dump.
DEBUG_BATCH_GROUPS = 16
# Finding ids whose model / split point at a failing batch.
FAILING_FINDINGS = ("output-all-zero", "output-sparse", "positions-off-canvas", "nonfinite",
                    "activation-collapse", "underflow")


def failing_runs(inputs: ReportInputs) -> list[tuple[str, str]]:
    """(model, split) pairs whose batch is dumped: named by error findings of the diagnosis, else
    measured (primary output nonzero on < 50 % of pixels, or NaN / Inf)."""
    pairs: list[tuple[str, str]] = []
    models = set(inputs.workspace.models)
    for finding in inputs.findings:
        if finding.get("severity") == "error" and finding.get("id") in FAILING_FINDINGS:
            pair = (finding.get("model"), finding.get("split"))
            if pair[0] in models and pair[1] in inputs.workspace.splits and pair not in pairs:
                pairs.append(pair)
    if pairs:
        return pairs
    for run in inputs.stats_runs:
        name, record = primary_output(run)
        if record is None or not record.count:
            continue
        if record.nonzero_fraction < FAILING_NONZERO_BELOW or record.nan_count or record.inf_count:
            pair = (run.model, run.split)
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def write_debug_dump(session, model: str, split: str, path: Path, *, groups: int = DEBUG_BATCH_GROUPS) -> Path:
    """The first batch of ``split`` through ``model`` as the workspace feeds it, to an NPZ:
    ``input__NAME`` (as fed), ``output__NAME``, ``positions_absolute`` (B, C, 2) [x, y],
    ``pattern_indices`` (B, C), ``group_indices`` (B,), ``meta_json`` (a JSON string)."""

    loaded = session.model(model)
    entry = session.model_entry(model)
    opened = session.split(split)
    grouping = session.grouping(split, session.gridsize(model))
    idx = np.arange(min(groups, len(grouping.indices)))
    batch = grouping.batch(opened, idx)
    positions = entry.positions or "relative"
    scale = entry.intensity_scale if entry.intensity_scale is not None else "apply"
    fed = feed_inputs(loaded, batch, positions=positions, intensity_scale=scale)
    outputs = flat_outputs(loaded.model(call_inputs(fed), training=False))
    names = [o["name"] for o in loaded.card.outputs] or []
    arrays: dict[str, np.ndarray] = {}
    for name, value in fed.items():
        arrays[f"input__{safe_name(name)}"] = np.asarray(value)
    nonzero = {}
    for i, value in enumerate(outputs):
        name = names[i] if i < len(names) else f"output_{i}"
        array = np.asarray(value)
        arrays[f"output__{safe_name(name)}"] = array
        nonzero[name] = float(np.count_nonzero(array) / array.size) if array.size else None
    arrays["positions_absolute"] = np.asarray(batch.positions)
    arrays["pattern_indices"] = np.asarray(batch.indices)
    arrays["group_indices"] = np.asarray(batch.group_indices)
    meta = {"model": model, "split": split, "positions": positions,
            "intensity_scale": resolve_intensity_scale(loaded, scale), "groups": int(idx.size),
            "model_path": str(entry.path), "split_path": str(opened.path), "output_nonzero_fraction": nonzero}
    arrays["meta_json"] = np.array(json.dumps(meta))
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def collapsed_samples(inputs: ReportInputs) -> list[CollapsedSamples]:
    """Per (model, split) of the workspace, the samples the diagnosis's sample-collapse findings
    name (none without a diagnosis)."""
    models, splits = inputs.workspace.models, inputs.workspace.splits
    return [c for c in collapsed_from_findings(inputs.findings) if c.model in models and c.split in splits]


def write_collapsed_dump(session, collapsed: CollapsedSamples, path: Path) -> dict:
    """The named samples' inputs, as ``session`` groups the split for the model, to an NPZ
    (``sample_collapse.dump_samples``' keys, ``layer`` and ``meta_json`` included); return the
    export's record of it (file, model, split, layer, samples, of).

    The findings' group indices are indices into the grouping the diagnosis streamed: a grouping
    of another size (another ``n_groups``, or other inputs) raises ValueError instead of dumping
    other samples.
    """
    opened = session.split(collapsed.split)
    gridsize = session.gridsize(collapsed.model)
    grouping = session.grouping(collapsed.split, gridsize)
    groups = len(grouping.indices)
    ids = collapsed.group_ids()
    if (collapsed.total is not None and collapsed.total != groups) or (ids.size and int(ids[-1]) >= groups):
        raise ValueError(f"the finding names {collapsed.count} of {collapsed.total} groups (up to index "
                         f"{int(ids[-1]) if ids.size else '-'}), this session groups {collapsed.split} into "
                         f"{groups}: not the grouping the diagnosis streamed")
    record = {"file": path.name, "model": collapsed.model, "split": collapsed.split, "layer": collapsed.layer,
              "samples": collapsed.count, "of": collapsed.total if collapsed.total is not None else groups}
    meta = {**record, "finding": "sample-collapse", "ranges": [list(r) for r in collapsed.ranges],
            "layers": collapsed.layers, "gridsize": gridsize, "seed": int(session.seed),
            "n_groups": session.n_groups, "split_path": str(opened.path)}
    dump_samples(path, opened, grouping, ids, layer=collapsed.layer, meta=meta)
    return record
