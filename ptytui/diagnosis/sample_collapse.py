"""Per-sample collapse: which samples of a streamed run die (all zero) or hold NaN/Inf, and where.

The live layer health of a run (``RunResult.layer_health``: ``core.health.LayerHealth`` per
layer, in execution order, exact on every batch) says for every layer which samples are entirely
zero there. The rules here are pure functions of those records:

- ``sample-collapse`` (warning): the first layer after which samples are entirely zero that were
  not entirely zero at every earlier layer ("28 of 96 test samples are all zero after
  trimmed_obj (indices ...)"); later layers add a finding only when they kill further samples.
- ``sample-nonfinite`` (warning): the first layer after which samples hold a NaN or Inf.

Both are neither causes nor symptoms for the verdict: they locate, per sample, what the
activation-collapse and nonfinite findings say for the batch. ``collapsed_from_findings`` reads the
samples back from the findings (as ``diagnose --json`` writes them), and ``dump_samples`` writes
the named samples' inputs (as the grouping reads them) for the export.

Conventions: sample indices are group indices of the split's grouping (what ``Session.group_ids``
runs), as half-open ranges [start, stop); record keys are layer paths, ``path:part`` for a
layer's other outputs and complex phases (not considered: the first part decides).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ptytui.core.atomic import atomic_open
from ptytui.core.findings import Finding
from ptytui.core.health import LayerHealth, Ranges, index_runs, run_indices, union_runs

MAX_FINDINGS_PER_KIND = 3  # further layers that kill more samples are in the first's evidence
RANGES_SHOWN = 8  # index ranges written out in a summary


def format_ranges(runs: Ranges, limit: int = RANGES_SHOWN) -> str:
    """'0-3, 7, 9-11' (inclusive ends, as a reader counts), cut after ``limit`` ranges."""
    parts = [str(a) if b - a == 1 else f"{a}-{b - 1}" for a, b in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"... ({len(runs) - limit} more ranges)")
    return ", ".join(parts)


def _count(runs: Ranges) -> int:
    return sum(b - a for a, b in runs)


def _minus(runs: Ranges, covered: Ranges) -> Ranges:
    """Ranges of ``runs`` not in ``covered`` (both sorted, coalesced)."""
    return index_runs(np.setdiff1d(run_indices(runs), run_indices(covered), assume_unique=True))


def _first_layers(records: Mapping[str, LayerHealth], field: str) -> list[tuple[str, LayerHealth, Ranges]]:
    """Layers (first parts only, in order) where samples newly enter the set ``field`` names."""
    seen: Ranges = []
    out = []
    for key, record in records.items():
        if ":" in key:
            continue
        runs = getattr(record, field)
        new = _minus(runs, seen) if runs else []
        if new:
            out.append((key, record, new))
            seen = union_runs(seen, new)
    return out


def sample_collapse_findings(model: str, split: str, records: Mapping[str, LayerHealth] | None,
                             n_samples: int | None = None, *, label: str | None = None) -> list[Finding]:
    """Findings for the samples that die (all zero) or turn non-finite inside the model.

    ``records``: the run's live layer health (None or empty: no findings); ``n_samples``: the
    samples the run streamed (default: the layer's own sample count).
    """
    if not records:
        return []
    findings: list[Finding] = []
    for field, fid, what in (("zero_samples", "sample-collapse", "all zero"),
                             ("nonfinite_samples", "sample-nonfinite", "NaN/Inf")):
        layers = _first_layers(records, field)
        for key, record, new in layers[:MAX_FINDINGS_PER_KIND]:
            total = int(n_samples if n_samples is not None else record.samples)
            runs = getattr(record, field)
            count = _count(runs)
            summary = (f"{model} on {split}: {count} of {total} samples are {what} after {key} "
                       f"(indices {format_ranges(runs)})")
            if _count(new) != count:
                summary += f"; {_count(new)} of them first here"
            evidence = {"layer": key, "samples": count, "of": total, "new_samples": _count(new),
                        "ranges": [list(r) for r in runs], "new_ranges": [list(r) for r in new],
                        "exact": True, "batches": record.batches,
                        "later_layers": [k for k, _, _ in layers[MAX_FINDINGS_PER_KIND:]]}
            findings.append(Finding(fid, "warning", model, split, key, summary, evidence, [], label=label))
    return findings


def collapsed_sample_ids(records: Mapping[str, LayerHealth], layer: str | None = None,
                         field: str = "zero_samples") -> np.ndarray:
    """Group indices of the samples all zero (or, with ``field="nonfinite_samples"``, holding
    NaN/Inf) after ``layer`` (default: at any layer), ascending."""
    if layer is not None:
        return run_indices(getattr(records[layer], field)) if layer in records else np.zeros(0, np.int64)
    runs: Ranges = []
    for key, record in records.items():
        if ":" not in key:
            runs = union_runs(runs, getattr(record, field))
    return run_indices(runs)


@dataclass
class CollapsedSamples:
    """The samples that the ``sample-collapse`` findings of one model on one split name.

    ``ranges``: the union of the findings' ranges (group indices, half-open, sorted); ``layer``:
    the first layer after which samples are all zero; ``total``: the samples the run streamed
    (the findings' "of"; None when they do not say); ``layers``: per finding, in order, its layer,
    how many samples are all zero there and the ranges first all zero there.
    """

    model: str
    split: str
    layer: str
    ranges: Ranges
    total: int | None
    layers: list[dict[str, Any]]

    @property
    def count(self) -> int:
        return _count(self.ranges)

    def group_ids(self) -> np.ndarray:
        return run_indices(self.ranges)


def _finding_ranges(evidence: Mapping, key: str) -> Ranges | None:
    """``evidence[key]`` as sorted, coalesced half-open ranges, or None when it is not a list of
    [start, stop) pairs of non-negative integers."""
    raw = evidence.get(key)
    if not isinstance(raw, list):
        return None
    runs: Ranges = []
    for pair in raw:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in pair) and 0 <= pair[0] < pair[1]):
            return None
        runs = union_runs(runs, [(int(pair[0]), int(pair[1]))])
    return runs


def collapsed_from_findings(findings: Iterable[Mapping]) -> list[CollapsedSamples]:
    """Per (model, split), in the findings' order, the samples its ``sample-collapse`` findings
    name (finding dicts as ``diagnose --json`` and the saved diagnosis.json hold them; a finding
    without readable ranges is skipped)."""
    out: dict[tuple[str, str], CollapsedSamples] = {}
    for finding in findings:
        if not isinstance(finding, Mapping) or finding.get("id") != "sample-collapse":
            continue
        evidence = finding.get("evidence") or {}
        model, split = finding.get("model"), finding.get("split")
        runs = _finding_ranges(evidence, "ranges") if isinstance(evidence, Mapping) else None
        if not runs or not isinstance(model, str) or not isinstance(split, str):
            continue
        layer = str(finding.get("layer") or evidence.get("layer") or "")
        total = evidence.get("of")
        entry = out.get((model, split))
        if entry is None:
            entry = out[(model, split)] = CollapsedSamples(
                model, split, layer, [], int(total) if isinstance(total, int) else None, [])
        entry.ranges = union_runs(entry.ranges, runs)
        new = _finding_ranges(evidence, "new_ranges")
        entry.layers.append({"layer": layer, "samples": _count(runs),
                             "new_ranges": [list(r) for r in (new if new is not None else runs)]})
    return list(out.values())


def dump_samples(path: str | Path, split, grouping, group_ids, *, layer: str | None = None,
                 meta: Mapping[str, Any] | None = None) -> Path:
    """Write the given groups' inputs, as the grouping reads them, to an NPZ (atomically).

    Keys: ``group_indices`` (B,), ``diffraction`` (B, N, N, C) float32 amplitude at the stored
    scale, ``positions`` (B, C, 2) float64 absolute [x, y] object pixels, ``relative_offsets``
    (B, 1, 2, C) float32, ``pattern_indices`` (B, C) into the split; with ``layer``, ``layer`` (a
    0-d string: the layer after which the samples are all zero); with ``meta``, ``meta_json`` (a
    0-d JSON string). Every key reads with ``np.load(..., allow_pickle=False)``.
    """
    ids = np.asarray(group_ids, dtype=np.int64).reshape(-1)
    batch = grouping.batch(split, ids, ground_truth=False)
    arrays: dict[str, np.ndarray] = {"group_indices": ids, "diffraction": batch.diffraction,
                                     "positions": batch.positions, "relative_offsets": batch.relative_offsets,
                                     "pattern_indices": batch.indices}
    if layer is not None:
        arrays["layer"] = np.array(str(layer))
    if meta is not None:
        arrays["meta_json"] = np.array(json.dumps(meta))
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path
