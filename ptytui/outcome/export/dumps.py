"""NPZ dumps of the failing batch: which (model, split) pairs failed, and their first batch as
fed, with positions and outputs, for debugging outside ptytui."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ptytui.core.atomic import atomic_open
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
