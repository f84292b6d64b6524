"""Metrics of every workspace model and the reference reconstruction against ground truth, on one
split (default ``test``), in PtychoPINN's tidy CSV layout, shaped by the current decision.

Each model streams over the split batch by batch with its workspace feeding; its output patches
go straight into a ``StreamingStitcher`` (no split-sized array is ever held), the canvas is
evaluated with ``metrics.evaluate_stitched``. The reference NPZ (pty-chi layout) is evaluated
with ``metrics.evaluate_reconstruction``.

Conventions
-----------
- Model ids (the CSV ``model`` column) are the canonical workspace labels ("PtychoPINN",
  "Baseline", "PtyChi", "Tike", or a free label). When several entries share a label, each of
  them is written ``LABEL:NAME`` (NAME the workspace model name), so ids stay unique.
- Where an output patch sits: a model whose output has one channel (a reassembled object patch,
  PtychoPINN's ``diffraction_to_obj``) is placed at the group's global offset (the mean position
  of its members, which is the pattern's own position at gridsize 1); an output with C channels
  (one per group member) is placed channel by channel at each member's position.
- A supervised model with two real outputs [amplitude, phase] (recognized by name, else by
  order) is combined into amplitude * exp(i * phase); a single real output is an amplitude
  with zero phase (said in the notes).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ptytui.core.atomic import atomic_open, atomic_write_text
from ptytui.core.jsonable import json_ready
from ptytui.core.tfload import tf as _tf
from ptytui.errors import Cancelled, InputError, one_line
from ptytui.inputs.decisions import current_decision, model_policy
from ptytui.quality.metrics import (
    CSV_COLUMNS,
    DEFAULT_STITCH_CROP,
    FRC_CSV_COLUMNS,
    StreamingStitcher,
    empty_metrics,
    evaluate_reconstruction,
    evaluate_stitched,
)
from ptytui.running.inference import (
    _is_oom,
    call_inputs,
    feed_inputs,
    flat_outputs,
    is_cancelled,
    resolve_intensity_scale,
)

__all__ = [
    "COMPARISON_JSON",
    "DEFAULT_COMPARE_SPLIT",
    "FRC_CSV",
    "METRICS_CSV",
    "RECONSTRUCTIONS_NPZ",
    "ComparedModel",
    "Comparison",
    "CompareProgress",
    "compare_workspace",
    "load_cached_comparison",
    "ReferenceReconstruction",
    "known_placement_max_shift",
    "load_reference",
    "metric_findings",
    "object_patches",
    "save_comparison",
    "stream_model",
    "write_comparison_files",
]

DEFAULT_COMPARE_SPLIT = "test"
METRICS_CSV = "comparison_metrics.csv"
FRC_CSV = "frc_curves.csv"
COMPARISON_JSON = "comparison.json"
RECONSTRUCTIONS_NPZ = "comparison_reconstructions.npz"

# How each metrics flag ranks as a metric-degenerate finding (unknown flags: warning).
_FLAG_SEVERITY = {
    "all-zero-prediction": "error",
    "nonfinite-prediction": "error",
    "ssim-degenerate": "warning",
    "frc-lost-at-once": "warning",
    "scale-factor-nonfinite": "warning",
    "registration-skipped": "warning",
    "registration-large-shift": "warning",
    "partial-coverage": "info",
    "zero-data-range": "info",
    "image-too-small": "info",
}
_BASELINE_ACTIONS = ["debug-baseline", "retrain-baseline", "skip-baseline", "accept-train-only"]


@dataclass
class CompareProgress:
    """Progress of one entry: ``stage`` "run" (``done`` of ``total`` groups), "evaluate", "done"."""

    model_id: str
    split: str
    stage: str
    done: int = 0
    total: int = 0


@dataclass
class ComparedModel:
    """One row group of the comparison: a workspace model or the reference.

    Attributes
    ----------
    model_id : the CSV id (see the module docstring).
    name : the workspace model name; None for the reference.
    label : canonical label.
    kind : "model" | "reference".
    split : the split it was evaluated on (the train split for a train-only Baseline).
    status : "evaluated" | "skipped" | "failed" | "train-only".
    rows, frc_rows : CSV rows (``metrics.CSV_COLUMNS`` / ``FRC_CSV_COLUMNS``).
    metrics : ``ModelMetrics.to_dict()``.
    flags : the metrics' sanity flags.
    positions, intensity_scale : how the model was fed (None for the reference).
    n_groups, gridsize : what was streamed.
    output_nonzero_fraction : share of output-patch pixels with nonzero amplitude.
    output_nonfinite_fraction : share of output-patch pixels that are NaN or Inf.
    seconds : inference time (the ``computation_time_s`` row).
    note : the decision's note, or why it failed / was skipped.
    path : the model or reference file.
    canvas, origin : the evaluated reconstruction (2-D complex) and the object (row, column) of
        its pixel (0, 0) (None when not known, e.g. a reference); kept in memory for figures.
    """

    model_id: str
    name: str | None
    label: str
    kind: str
    split: str
    status: str
    rows: list
    frc_rows: list
    metrics: dict
    flags: list
    positions: str | None = None
    intensity_scale: float | None = None
    n_groups: int = 0
    gridsize: int | None = None
    output_nonzero_fraction: float | None = None
    output_nonfinite_fraction: float | None = None
    seconds: float | None = None
    note: str | None = None
    path: str | None = None
    canvas: np.ndarray | None = field(default=None, repr=False)
    origin: tuple | None = None

    @classmethod
    def from_metrics(cls, metrics, *, model_id: str, name: str | None, label: str, kind: str, split: str,
                     status: str, **extra: Any) -> "ComparedModel":
        metrics.label = model_id
        if status == "train-only":
            for flag in metrics.flags:
                flag["message"] = f"{flag['message']} [train split]"
        rows = metrics.rows()
        if status == "train-only":
            # The tidy CSV has no room for a mark: one more scalar row says these numbers are
            # the train split's, accepted by decision.
            rows.append({"model": model_id, "metric": "train_only", "amplitude": "", "phase": "", "value": 1})
        summary = metrics.to_dict()
        return cls(model_id=model_id, name=name, label=label, kind=kind, split=split, status=status,
                   rows=rows, frc_rows=metrics.frc_rows(), metrics=summary,
                   flags=[dict(f) for f in summary["flags"]], **extra)

    def value(self, component: str, metric: str) -> float | None:
        """One metric value (``component`` "amplitude" / "phase" / "value"), None when empty."""
        for row in self.rows:
            if row["metric"] == metric:
                cell = row.get(component, "")
                if cell == "" or cell is None:
                    return None
                number = float(cell)
                return None if math.isnan(number) else number
        return None

    def to_dict(self) -> dict:
        return {
            "model_id": self.model_id, "name": self.name, "label": self.label, "kind": self.kind,
            "split": self.split, "status": self.status, "note": self.note, "path": self.path,
            "positions": self.positions, "intensity_scale": self.intensity_scale,
            "n_groups": self.n_groups, "gridsize": self.gridsize,
            "output_nonzero_fraction": self.output_nonzero_fraction,
            "output_nonfinite_fraction": self.output_nonfinite_fraction,
            "seconds": self.seconds, "origin": list(self.origin) if self.origin else None,
            "metrics": self.metrics, "flags": self.flags,
        }

    @classmethod
    def from_dict(cls, data: dict, rows: list, frc_rows: list) -> "ComparedModel":
        keys = ("model_id", "name", "label", "kind", "split", "status", "metrics", "flags", "positions",
                "intensity_scale", "n_groups", "gridsize", "output_nonzero_fraction",
                "output_nonfinite_fraction", "seconds", "note", "path")
        kwargs = {k: data.get(k) for k in keys}
        kwargs["flags"] = kwargs["flags"] or []
        kwargs["n_groups"] = kwargs["n_groups"] or 0
        origin = data.get("origin")
        return cls(rows=[r for r in rows if r["model"] == data["model_id"]],
                   frc_rows=[r for r in frc_rows if r["model"] == data["model_id"]],
                   origin=tuple(origin) if origin else None, **kwargs)


@dataclass
class Comparison:
    """Every entry's metrics on one split, with the decision that shaped them."""

    workspace: str
    workspace_hash: str
    split: str
    entries: list[ComparedModel]
    decision: dict | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    ground_truth_window: tuple | None = None  # not serialized

    def entry(self, model_id: str) -> ComparedModel:
        for entry in self.entries:
            if entry.model_id == model_id or entry.name == model_id:
                return entry
        raise KeyError(model_id)

    def rows(self) -> list[dict]:
        """Tidy rows ``model,metric,amplitude,phase,value`` of every entry."""
        return [row for entry in self.entries for row in entry.rows]

    def frc_rows(self) -> list[dict]:
        """FRC curve rows ``model,frequency_bin,amplitude_frc,phase_frc`` of every entry."""
        return [row for entry in self.entries for row in entry.frc_rows]

    def findings(self) -> list[dict]:
        """The metrics' sanity flags as ``metric-degenerate`` findings (diagnose's FINDING shape)."""
        return metric_findings(self)

    def to_dict(self) -> dict:
        """The ``compare --json`` document."""
        return json_ready({
            "workspace": self.workspace,
            "workspace_hash": self.workspace_hash,
            "split": self.split,
            "decision": self.decision,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "models": [entry.to_dict() for entry in self.entries],
            "rows": self.rows(),
            "frc_rows": self.frc_rows(),
            "findings": self.findings(),
        }, infinity="text")

    @classmethod
    def from_dict(cls, data: dict) -> "Comparison":
        rows, frc_rows = data.get("rows") or [], data.get("frc_rows") or []
        return cls(workspace=data["workspace"], workspace_hash=data["workspace_hash"], split=data["split"],
                   entries=[ComparedModel.from_dict(d, rows, frc_rows) for d in data.get("models", [])],
                   decision=data.get("decision"), seconds=float(data.get("seconds") or 0.0),
                   notes=list(data.get("notes") or []))



def metric_findings(comparison: Comparison) -> list[dict]:
    """Each entry's sanity flags as ``metric-degenerate`` findings, one per model x split and
    severity (the flags listed in its evidence): a broken model raises many flags at once (SSIM,
    FRC, registration...), and one finding per flag buried the list under repeats.

    Severity: "error" for an all-zero or non-finite prediction and for a model that failed to
    run; "info" for a model skipped by decision and for coverage / size notes; "warning" else.
    A model a retrain superseded (label ending "(superseded)", kept for comparison) has its
    errors lowered to warnings: the decision already answered them.
    """
    findings = []
    for entry in comparison.entries:
        actions = list(_BASELINE_ACTIONS) if (entry.kind == "model" and entry.label.startswith("Baseline")) else []
        superseded = entry.label.endswith("(superseded)")
        by_severity: dict[str, list[dict]] = {}
        for flag in entry.flags:
            name = flag.get("flag")
            if name == "model-not-evaluated":
                severity = "error" if entry.status == "failed" else "info"
            else:
                severity = _FLAG_SEVERITY.get(name, "warning")
            if superseded and severity == "error":
                severity = "warning"
            by_severity.setdefault(severity, []).append(flag)
        for severity in ("error", "warning", "info"):
            flags = by_severity.get(severity)
            if not flags:
                continue
            findings.append({
                "id": "metric-degenerate", "severity": severity,
                "model": entry.name or entry.model_id, "split": entry.split, "layer": None,
                "summary": "; ".join(str(flag.get("message")) for flag in flags),
                "evidence": {"flags": [flag.get("flag") for flag in flags],
                             "details": [{"flag": flag.get("flag"), "component": flag.get("component"),
                                          "value": flag.get("value")} for flag in flags],
                             "model_id": entry.model_id, "status": entry.status,
                             "superseded": superseded},
                "actions": actions if severity != "info" else [],
            })
    return findings


# ---- model outputs -> object patches -----------------------------------------------------------

def object_patches(outputs: list[np.ndarray], output_names: list[str], *, patch_size: int,
                   channels: int, where: str) -> tuple[np.ndarray, str]:
    """Complex object patches (B, N, N, K) from a model's outputs, and how they were read.

    K is 1 (one reassembled patch per group) or C (one per group member). Raises InputError when
    the outputs are not object patches.
    """
    arrays = [np.asarray(o) for o in outputs]
    shapes = [tuple(a.shape) for a in arrays]
    if any(a.ndim != 4 or a.shape[1:3] != (patch_size, patch_size) for a in arrays):
        raise InputError(where, f"object patches (B, {patch_size}, {patch_size}, 1 or C) as outputs",
                         f"output shapes {shapes}")
    complex_outputs = [i for i, a in enumerate(arrays) if np.iscomplexobj(a)]
    if complex_outputs:
        patches, how = arrays[complex_outputs[0]], "complex output"
    elif len(arrays) >= 2:
        lowered = [n.lower() for n in output_names[:len(arrays)]]
        phase_i = next((i for i, n in enumerate(lowered) if "phase" in n or "phi" in n), 1)
        amp_i = next((i for i, n in enumerate(lowered) if i != phase_i and "amp" in n),
                     0 if phase_i != 0 else 1)
        amplitude, phase = arrays[amp_i].astype(np.float64), arrays[phase_i].astype(np.float64)
        if amplitude.shape != phase.shape:
            raise InputError(where, "amplitude and phase outputs of the same shape", f"output shapes {shapes}")
        patches = amplitude * np.exp(1j * phase)
        how = f"amplitude '{output_names[amp_i]}' * exp(i phase '{output_names[phase_i]}')"
    else:
        patches, how = arrays[0].astype(np.complex128), "real output read as amplitude, zero phase"
    if patches.shape[-1] not in (1, channels):
        raise InputError(where, f"object patches with 1 or {channels} channel(s)", f"output shapes {shapes}")
    return patches, how


def _compiled_call(model):

    def call(inputs):

        return flat_outputs(model(inputs, training=False))

    return _tf().function(call, reduce_retracing=True)


@dataclass
class StreamedModel:
    """What streaming one model over one split left: the stitched canvas and output health."""

    stitched: Any  # metrics.Stitched
    n_groups: int
    nonzero_fraction: float
    nonfinite_fraction: float
    seconds: float
    how: str
    batch_size: int


def stream_model(session, name: str, split_name: str, *, positions: str | None, intensity_scale,
                 batch_size: int | None = None, cancel=None,
                 progress: Callable[[int, int], None] | None = None) -> StreamedModel:
    """Run workspace model ``name`` over ``split_name`` and stitch its output patches incrementally.

    Memory stays bounded by one batch plus the canvas. On out-of-memory the batch halves and the
    run goes on (as ``inference.run_inference`` does).

    Raises
    ------
    Cancelled
        When ``cancel`` is set between batches.
    InputError
        When the model's outputs are not object patches or the inputs cannot be fed.
    """

    loaded = session.model(name)
    split = session.split(split_name)
    gridsize = session.gridsize(name)
    grouping = session.grouping(split_name, gridsize)
    total = len(grouping.indices)
    if total == 0:
        raise InputError(str(split.path), "at least one group to compare", "no groups")
    output_names = [o["name"] for o in loaded.card.outputs] or ["output"]
    where = str(session.model_entry(name).path)
    # Every placement is known before the first batch: the stitcher sizes its canvas from them.
    centres = grouping.global_offsets[:, 0, :, 0]  # (G, 2) [x, y]
    members = np.stack([split.xcoords[grouping.indices], split.ycoords[grouping.indices]], axis=-1)
    stitcher: StreamingStitcher | None = None
    function = _compiled_call(loaded.model)
    size = int(batch_size or session.batch_size)
    nonzero = nonfinite = pixels = 0
    how = ""
    started = time.perf_counter()
    done = 0
    while done < total:
        if cancel is not None and is_cancelled(cancel):
            raise Cancelled(f"compare of {name}")
        chunk = np.arange(done, min(done + size, total))
        batch = grouping.batch(split, chunk, ground_truth=False)  # metrics use objectGuess
        fed = feed_inputs(loaded, batch, positions=positions, intensity_scale=intensity_scale)
        try:
            outputs = [o.numpy() for o in function(call_inputs(fed))]
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc) and size > 1:
                size = max(1, size // 2)
                continue
            raise
        patches, how = object_patches(outputs, output_names, patch_size=split.N, channels=grouping.C,
                                      where=where)
        per_member = patches.shape[-1] > 1
        if stitcher is None:
            everywhere = members.reshape(-1, 2) if per_member else centres
            stitcher = StreamingStitcher(everywhere, split.N)
        finite = np.isfinite(patches)
        nonfinite += int(patches.size - np.count_nonzero(finite))
        nonzero += int(np.count_nonzero(np.where(finite, patches, 0)))
        pixels += int(patches.size)
        if per_member:
            stitcher.add(np.moveaxis(patches, -1, 1).reshape(-1, split.N, split.N),
                         members[chunk].reshape(-1, 2))
        else:
            stitcher.add(patches[..., 0], centres[chunk])
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return StreamedModel(stitched=stitcher.result(), n_groups=total,
                         nonzero_fraction=nonzero / pixels if pixels else 0.0,
                         nonfinite_fraction=nonfinite / pixels if pixels else 0.0,
                         seconds=time.perf_counter() - started, how=how, batch_size=size)


# ---- the reference -----------------------------------------------------------------------------

@dataclass
class ReferenceReconstruction:
    """An iterative reconstruction read from a pty-chi / Tike NPZ.

    ``origin`` is the object (row, column) of its pixel (0, 0) when the file records it
    (``metadata`` JSON ``canvas_origin_yx``, as ptytui's ePIE writes); else None, and the metrics
    assume a canvas centred on the scan (or the object's own frame when the shapes agree).
    """

    object: np.ndarray
    origin: tuple[float, float] | None = None
    algorithm: str | None = None


def load_reference(path: str | Path) -> ReferenceReconstruction:
    """``reconstructed_object`` of a pty-chi / Tike NPZ as a 2-D complex array, with its origin.

    Leading singleton axes (a single object slice) are dropped. InputError (one line) when the
    file is not an NPZ, lacks the key, or the object is not 2-D complex. Nothing is unpickled.
    """
    path = Path(path)
    origin = algorithm = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "reconstructed_object" not in archive.files:
                raise InputError(str(path), "key 'reconstructed_object' (2-D complex, pty-chi layout)",
                                 f"keys {sorted(archive.files)}")
            obj = np.asarray(archive["reconstructed_object"])
            for key in ("algorithm", "metadata"):
                if key not in archive.files:
                    continue
                try:
                    text = str(archive[key][()])
                except ValueError:  # an object array: not read without trust
                    continue
                if key == "algorithm":
                    algorithm = text
                else:
                    origin = _origin_from_metadata(text)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(str(path), "a reference reconstruction NPZ", " ".join(str(exc).split())[:200]) from None
    while obj.ndim > 2 and obj.shape[0] == 1:
        obj = obj[0]
    if obj.ndim != 2 or not np.iscomplexobj(obj):
        raise InputError(str(path), "reconstructed_object as a 2-D complex array",
                         f"shape {obj.shape}, dtype {obj.dtype}")
    return ReferenceReconstruction(obj, origin, algorithm)


def _origin_from_metadata(text: str) -> tuple[float, float] | None:
    try:
        metadata = json.loads(text)
        row, col = metadata["canvas_origin_yx"]
        origin = (float(row), float(col))
    except (ValueError, KeyError, TypeError):
        return None
    return origin if all(math.isfinite(v) for v in origin) else None


def scanned_region(canvas: np.ndarray, origin: tuple[float, float], positions_xy: np.ndarray,
                   patch_size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The part of a reference canvas the models are evaluated on too, and its origin.

    An iterative reconstruction's canvas reaches half a probe beyond the outermost positions,
    where the probe barely lit the object and the reconstruction keeps its starting guess; the
    models' stitched canvases hold the central ``min(DEFAULT_STITCH_CROP, N)`` pixels of each
    patch. Cropping the reference to positions +/- that half-crop compares every row of the
    comparison on the same object region (and keeps the unlit border out of the registration).
    ``origin`` is the object (row, column) of canvas pixel (0, 0); positions are [x, y].
    """
    side = min(DEFAULT_STITCH_CROP, int(patch_size))
    xy = np.asarray(positions_xy, dtype=np.float64)
    rows = (math.floor(xy[:, 1].min()) - side // 2, math.ceil(xy[:, 1].max()) + side - side // 2)
    cols = (math.floor(xy[:, 0].min()) - side // 2, math.ceil(xy[:, 0].max()) + side - side // 2)
    r0 = max(0, rows[0] - int(math.floor(origin[0] + 0.5)))
    c0 = max(0, cols[0] - int(math.floor(origin[1] + 0.5)))
    r1 = min(canvas.shape[0], rows[1] - int(math.floor(origin[0] + 0.5)))
    c1 = min(canvas.shape[1], cols[1] - int(math.floor(origin[1] + 0.5)))
    if r1 - r0 < 1 or c1 - c0 < 1:
        return canvas, origin  # no overlap: the evaluation reports it
    return canvas[r0:r1, c0:c1], (origin[0] + r0, origin[1] + c0)


def known_placement_max_shift(patch_size: int) -> float:
    """Largest registration shift accepted when the placement is known: N/8, at least 4 px."""
    return max(4.0, patch_size / 8.0)


# ---- the comparison ----------------------------------------------------------------------------

def _model_ids(workspace) -> dict[str, str]:
    labels = [entry.label for entry in workspace.models.values()]
    if workspace.reference is not None:
        labels.append(workspace.reference.label)
    ids = {}
    for name, entry in workspace.models.items():
        ids[name] = entry.label if labels.count(entry.label) == 1 else f"{entry.label}:{name}"
    if workspace.reference is not None:
        label = workspace.reference.label
        ids[None] = label if labels.count(label) == 1 else f"{label}:reference"
    return ids



def compare_workspace(session, *, split: str | None = None, decision: Any = "current",
                      models: list[str] | None = None, include_reference: bool = True, cancel=None,
                      progress: Callable[[CompareProgress], None] | None = None) -> Comparison:
    """Metrics of every workspace model and the reference on one split.

    Parameters
    ----------
    session : ptytui.running.session.Session
        The opened workspace (its ``batch_size``, ``n_groups`` and ``seed`` apply).
    split : str, optional
        The split to compare on: default ``test`` (or the reference's split, or the only split).
        It must hold ``objectGuess``.
    decision : "current", dict or None
        The decision that shapes the comparison (``decisions.model_policy``): "current" reads the
        session's latest decision, None ignores decisions.
    models : list of str, optional
        Only these workspace models (default: all).
    include_reference : bool
        Evaluate the workspace's reference reconstruction too.
    cancel : threading.Event or callable, optional
        Checked between batches; raises ``Cancelled``.
    progress : callable, optional
        Called with ``CompareProgress`` events.

    Returns
    -------
    Comparison
        A model that fails to run or cannot be evaluated gets empty rows and status "failed"
        (its reason in ``note``); the others are still compared.
    """

    started = time.perf_counter()
    workspace = session.workspace
    split_name = _choose_split(workspace, split)
    if decision == "current":
        decision = current_decision(workspace.session_dir)
    ids = _model_ids(workspace)
    report = progress or (lambda event: None)
    entries: list[ComparedModel] = []
    notes: list[str] = []
    gt_cache: dict[str, np.ndarray] = {}

    def ground_truth(name: str) -> np.ndarray:
        if name not in gt_cache:
            opened = session.split(name)
            if opened.object is None:
                raise InputError(str(opened.path), "objectGuess (the ground-truth object) for metrics",
                                 "no objectGuess key", hint="compare needs the full object")
            gt_cache[name] = np.asarray(opened.object)
        return gt_cache[name]

    ground_truth(split_name)  # a split without the object is bad input for the whole comparison
    retrained = any(str(e.label).endswith("(superseded)") for e in workspace.models.values())

    for name, entry in workspace.models.items():
        if models and name not in models:
            continue
        model_id = ids[name]
        policy = model_policy(decision, name, entry.label, retrained=retrained)
        positions = policy.feeding.get("positions", entry.positions or "relative")
        scale = policy.feeding.get("intensity_scale",
                                   entry.intensity_scale if entry.intensity_scale is not None else "apply")
        common = dict(model_id=model_id, name=name, label=entry.label, kind="model", path=str(entry.path))
        if policy.action == "skip":
            entries.append(ComparedModel.from_metrics(
                empty_metrics(model_id, policy.note), split=split_name, status="skipped",
                note=policy.note, positions=positions, **common))
            report(CompareProgress(model_id, split_name, "done"))
            continue
        run_split, status = split_name, "evaluated"
        if policy.action == "train-only":
            if "train" not in workspace.splits:
                note = f"{policy.note}; but the workspace has no 'train' split"
                entries.append(ComparedModel.from_metrics(
                    empty_metrics(model_id, note), split=split_name, status="skipped", note=note,
                    positions=positions, **common))
                continue
            run_split, status = "train", "train-only"
        try:
            streamed = stream_model(
                session, name, run_split, positions=positions, intensity_scale=scale, cancel=cancel,
                progress=lambda done, total, mid=model_id, s=run_split: report(
                    CompareProgress(mid, s, "run", done, total)))
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing model gets empty rows, the rest go on
            reason = f"failed to run on split '{run_split}': {one_line(exc)}"
            entries.append(ComparedModel.from_metrics(
                empty_metrics(model_id, reason), split=run_split, status="failed", note=reason,
                positions=positions, **common))
            report(CompareProgress(model_id, run_split, "done"))
            continue
        report(CompareProgress(model_id, run_split, "evaluate"))
        try:
            metrics = evaluate_stitched(model_id, streamed.stitched, ground_truth(run_split),
                                        computation_time_s=streamed.seconds,
                                        max_shift=known_placement_max_shift(session.split(run_split).N))
        except Exception as exc:  # noqa: BLE001
            reason = f"metrics failed on split '{run_split}': {one_line(exc)}"
            metrics, status = empty_metrics(model_id, reason, computation_time_s=streamed.seconds), "failed"
            policy.note = reason if policy.note is None else f"{policy.note}; {reason}"
        scale_value = None
        try:

            scale_value = resolve_intensity_scale(session.model(name), scale)
        except Exception:  # noqa: BLE001 - only for the record
            pass
        entries.append(ComparedModel.from_metrics(
            metrics, split=run_split, status=status, note=policy.note, positions=positions,
            intensity_scale=scale_value, n_groups=streamed.n_groups, gridsize=session.gridsize(name),
            output_nonzero_fraction=streamed.nonzero_fraction,
            output_nonfinite_fraction=streamed.nonfinite_fraction, seconds=streamed.seconds,
            canvas=streamed.stitched.canvas, origin=streamed.stitched.origin, **common))
        if streamed.how and streamed.how != "complex output":
            notes.append(f"{model_id}: {streamed.how}")
        report(CompareProgress(model_id, run_split, "done"))

    reference = workspace.reference
    if include_reference and reference is not None:
        model_id = ids[None]
        common = dict(model_id=model_id, name=None, label=reference.label, kind="reference",
                      path=str(reference.path))
        if reference.split and reference.split != split_name:
            note = f"the reference reconstructs split '{reference.split}', not '{split_name}'"
            entries.append(ComparedModel.from_metrics(empty_metrics(model_id, note), split=split_name,
                                                      status="skipped", note=note, **common))
        else:
            report(CompareProgress(model_id, split_name, "evaluate"))
            opened = session.split(split_name)
            try:
                recon = load_reference(reference.path)
                canvas, origin = recon.object, recon.origin
                if origin is not None:
                    canvas, origin = scanned_region(canvas, origin, opened.positions, opened.N)
                    metrics = evaluate_reconstruction(model_id, canvas, ground_truth(split_name),
                                                      origin=origin,
                                                      max_shift=known_placement_max_shift(opened.N))
                else:
                    metrics = evaluate_reconstruction(model_id, canvas, ground_truth(split_name),
                                                      positions_xy=opened.positions, patch_size=opened.N)
                entries.append(ComparedModel.from_metrics(metrics, split=split_name, status="evaluated",
                                                          canvas=canvas, origin=origin, **common))
            except Exception as exc:  # noqa: BLE001 - the models' metrics still stand
                reason = f"reference not evaluated: {one_line(exc)}"
                entries.append(ComparedModel.from_metrics(empty_metrics(model_id, reason), split=split_name,
                                                          status="failed", note=reason, **common))
            report(CompareProgress(model_id, split_name, "done"))

    return Comparison(workspace=str(workspace.toml_path or workspace.root), workspace_hash=workspace.hash(),
                      split=split_name, entries=entries, decision=decision,
                      seconds=time.perf_counter() - started, notes=notes)


def _choose_split(workspace, split: str | None) -> str:
    if split is not None:
        workspace.split_path(split)  # InputError naming the known splits
        return split
    if DEFAULT_COMPARE_SPLIT in workspace.splits:
        return DEFAULT_COMPARE_SPLIT
    if workspace.reference is not None and workspace.reference.split:
        return workspace.reference.split
    return next(iter(workspace.splits))


# ---- files -------------------------------------------------------------------------------------

def csv_text(rows: list[dict], columns) -> str:
    """CSV text with a header (``\\n`` line ends), NaN written as ``nan``."""
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k, "")) for k in columns})
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return value


def write_comparison_files(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write ``comparison_metrics.csv``, ``frc_curves.csv`` and ``comparison.json`` atomically."""

    folder = Path(out_dir)
    written = [
        atomic_write_text(folder / METRICS_CSV, csv_text(comparison.rows(), CSV_COLUMNS)),
        atomic_write_text(folder / FRC_CSV, csv_text(comparison.frc_rows(), FRC_CSV_COLUMNS)),
        atomic_write_text(folder / COMPARISON_JSON,
                          json.dumps(comparison.to_dict(), indent=2, allow_nan=False) + "\n"),
    ]
    return written


def save_comparison(comparison: Comparison, session_dir: str | Path) -> list[Path]:
    """Cache a comparison in the session folder: the three files of ``write_comparison_files``
    plus ``comparison_reconstructions.npz`` (each entry's evaluated canvas, for figures)."""

    folder = Path(session_dir)
    written = write_comparison_files(comparison, folder)
    arrays = {}
    for i, entry in enumerate(comparison.entries):
        if entry.canvas is not None:
            arrays[f"canvas_{i}"] = np.asarray(entry.canvas)
    arrays["model_ids"] = np.array([e.model_id for e in comparison.entries], dtype=np.str_)
    with atomic_open(folder / RECONSTRUCTIONS_NPZ, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    written.append(folder / RECONSTRUCTIONS_NPZ)
    return written


def _same_decision(a: dict | None, b: dict | None) -> bool:
    if not a or not b:
        return not a and not b
    keys = ("option", "intervention", "when", "models")
    return all(a.get(k) == b.get(k) for k in keys)


def load_cached_comparison(session_dir: str | Path, *, workspace_hash: str, decision: dict | None,
                           split: str | None = None) -> Comparison | None:
    """The comparison cached in the session folder, if it was made on the same inputs (workspace
    hash), under the same decision and on ``split`` (when given); else None."""
    folder = Path(session_dir)
    path = folder / COMPARISON_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        comparison = Comparison.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if comparison.workspace_hash != workspace_hash or not _same_decision(comparison.decision, decision):
        return None
    if split is not None and comparison.split != split:
        return None
    recon = folder / RECONSTRUCTIONS_NPZ
    if recon.is_file():
        try:
            with np.load(recon, allow_pickle=False) as archive:
                ids = list(archive["model_ids"])
                for i, entry in enumerate(comparison.entries):
                    key = f"canvas_{i}"
                    if key in archive.files and i < len(ids) and ids[i] == entry.model_id:
                        entry.canvas = archive[key]
        except (OSError, ValueError, KeyError):
            pass
    return comparison
