"""Metrics of every workspace model and the reference reconstruction against ground truth, on one
split (default ``test``), in PtychoPINN's tidy CSV layout, shaped by the current decision.

Each model streams over the split batch by batch with its workspace feeding; its output patches
go straight into a ``StreamingStitcher`` (no split-sized array is ever held), the canvas is
evaluated with ``evaluation.evaluate_stitched``. The reference NPZ (pty-chi layout) is evaluated
with ``evaluation.evaluate_reconstruction``. The result is a ``comparison_store.Comparison``; that
module also writes it (CSV, JSON) and caches it in the session folder.

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

from ptytui.core.tfload import tf as _tf
from ptytui.errors import Cancelled, InputError, one_line
from ptytui.inputs.decisions import current_decision, model_policy
from ptytui.quality.comparison_store import ComparedModel, Comparison
from ptytui.quality.evaluation import evaluate_reconstruction, evaluate_stitched
from ptytui.quality.metrics import empty_metrics
from ptytui.quality.stitching import DEFAULT_STITCH_CROP, Stitched, StreamingStitcher
from ptytui.running.batching import BatchCancelled, BatchFailed, BatchHalved, run_batches
from ptytui.running.inference import (
    call_inputs,
    feed_inputs,
    flat_outputs,
    is_cancelled,
    output_count_message,
    resolve_intensity_scale,
)
from ptytui.running.session import RunPlan

__all__ = [
    "DEFAULT_COMPARE_SPLIT",
    "CompareProgress",
    "ReferenceReconstruction",
    "StreamedModel",
    "compare_workspace",
    "known_placement_max_shift",
    "load_reference",
    "model_ids",
    "object_patches",
    "stream_model",
]

DEFAULT_COMPARE_SPLIT = "test"


@dataclass
class CompareProgress:
    """Progress of one entry: ``stage`` "run" (``done`` of ``total`` groups), "evaluate", "done"."""

    model_id: str
    split: str
    stage: str
    done: int = 0
    total: int = 0


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

    stitched: Stitched
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
    run goes on (``running.batching.run_batches``, as ``inference.run_inference`` does).

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
    size = int(batch_size or session.batch_choice(RunPlan(name, split_name, positions, intensity_scale)).chosen)
    nonzero = nonfinite = pixels = 0
    how = ""
    started = time.perf_counter()

    def prepare(chunk):
        batch = grouping.batch(split, chunk, ground_truth=False)  # metrics use objectGuess
        return feed_inputs(loaded, batch, positions=positions, intensity_scale=intensity_scale)

    def run(fed):
        return [o.numpy() for o in function(call_inputs(fed))]

    for outcome in run_batches(np.arange(total), size, run, prepare=prepare,
                               cancelled=lambda: is_cancelled(cancel)):
        if isinstance(outcome, BatchHalved):
            size = outcome.new
            continue
        if isinstance(outcome, BatchCancelled):
            raise Cancelled(f"compare of {name}")
        if isinstance(outcome, BatchFailed):
            raise outcome.error
        chunk = outcome.indices
        returned = min((int(o.shape[0]) if o.ndim else 1) for o in outcome.result) if outcome.result else 0
        if returned != len(chunk):  # a merged call has no patch per group to stitch
            raise InputError(where, "one output per input", output_count_message(returned, len(chunk), size))
        patches, how = object_patches(outcome.result, output_names, patch_size=split.N, channels=grouping.C,
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
        if progress is not None:
            progress(outcome.done, total)
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

def model_ids(workspace) -> dict[str, str]:
    """The CSV id of every workspace model (keyed by model name) and of the reference (key None):
    its label, or ``LABEL:NAME`` (``LABEL:reference``) when several entries share the label."""
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
    ids = model_ids(workspace)
    run = _CompareRun(session, split_name, _GroundTruths(session), progress or (lambda event: None), cancel)
    run.ground_truth(split_name)  # a split without the object is bad input for the whole comparison
    retrained = any(str(e.label).endswith("(superseded)") for e in workspace.models.values())
    entries = [_compare_model(run, name, entry, ids[name], decision, retrained)
               for name, entry in workspace.models.items() if not models or name in models]
    if include_reference and workspace.reference is not None:
        entries.append(_compare_reference(run, workspace.reference, ids[None]))
    return Comparison(workspace=str(workspace.toml_path or workspace.root), workspace_hash=workspace.hash(),
                      split=split_name, entries=entries, decision=decision,
                      seconds=time.perf_counter() - started, notes=run.notes)


class _GroundTruths:
    """The ground-truth objects (``objectGuess``) of the splits compared, each read once."""

    def __init__(self, session):
        self._session = session
        self._objects: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._objects:
            opened = self._session.split(name)
            if opened.object is None:
                raise InputError(str(opened.path), "objectGuess (the ground-truth object) for metrics",
                                 "no objectGuess key", hint="compare needs the full object")
            self._objects[name] = np.asarray(opened.object)
        return self._objects[name]


@dataclass
class _CompareRun:
    """What every entry of one comparison shares: the session, the compared split, the ground
    truths, the progress callback, the cancel token, and the notes gathered on the way."""

    session: Any
    split: str
    ground_truth: _GroundTruths
    report: Callable[[CompareProgress], None]
    cancel: Any
    notes: list[str] = field(default_factory=list)


def _compare_model(run: _CompareRun, name: str, entry, model_id: str, decision, retrained: bool) -> ComparedModel:
    """One workspace model under the decision's policy: skipped, measured on the train split
    (train-only), or measured on the compared split, fed as the policy says."""
    policy = model_policy(decision, name, entry.label, retrained=retrained)
    positions = policy.feeding.get("positions", entry.positions or "relative")
    scale = policy.feeding.get("intensity_scale",
                               entry.intensity_scale if entry.intensity_scale is not None else "apply")
    common = dict(model_id=model_id, name=name, label=entry.label, kind="model", path=str(entry.path),
                  positions=positions)
    if policy.action == "skip":
        skipped = ComparedModel.from_metrics(empty_metrics(model_id, policy.note), split=run.split,
                                             status="skipped", note=policy.note, **common)
        run.report(CompareProgress(model_id, run.split, "done"))
        return skipped
    if policy.action != "train-only":
        return _run_and_evaluate(run, name, model_id, run.split, "evaluated", policy.note, scale, common)
    if "train" not in run.session.workspace.splits:
        note = f"{policy.note}; but the workspace has no 'train' split"
        return ComparedModel.from_metrics(empty_metrics(model_id, note), split=run.split, status="skipped",
                                          note=note, **common)
    return _run_and_evaluate(run, name, model_id, "train", "train-only", policy.note, scale, common)


def _run_and_evaluate(run: _CompareRun, name: str, model_id: str, run_split: str, status: str,
                      note: str | None, scale, common: dict) -> ComparedModel:
    """Stream model ``name`` over ``run_split`` and measure its canvas; a model that fails to run
    or to be measured gets empty rows and status "failed" (the reason in its note)."""
    session = run.session
    try:
        streamed = stream_model(
            session, name, run_split, positions=common["positions"], intensity_scale=scale, cancel=run.cancel,
            progress=lambda done, total: run.report(CompareProgress(model_id, run_split, "run", done, total)))
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing model gets empty rows, the rest go on
        reason = f"failed to run on split '{run_split}': {one_line(exc)}"
        failed = ComparedModel.from_metrics(empty_metrics(model_id, reason), split=run_split, status="failed",
                                            note=reason, **common)
        run.report(CompareProgress(model_id, run_split, "done"))
        return failed
    run.report(CompareProgress(model_id, run_split, "evaluate"))
    try:
        metrics = evaluate_stitched(model_id, streamed.stitched, run.ground_truth(run_split),
                                    computation_time_s=streamed.seconds,
                                    max_shift=known_placement_max_shift(session.split(run_split).N))
    except Exception as exc:  # noqa: BLE001
        reason = f"metrics failed on split '{run_split}': {one_line(exc)}"
        metrics, status = empty_metrics(model_id, reason, computation_time_s=streamed.seconds), "failed"
        note = reason if note is None else f"{note}; {reason}"
    evaluated = ComparedModel.from_metrics(
        metrics, split=run_split, status=status, note=note,
        intensity_scale=_recorded_scale(session, name, scale), n_groups=streamed.n_groups,
        gridsize=session.gridsize(name), output_nonzero_fraction=streamed.nonzero_fraction,
        output_nonfinite_fraction=streamed.nonfinite_fraction, seconds=streamed.seconds,
        canvas=streamed.stitched.canvas, origin=streamed.stitched.origin, **common)
    if streamed.how and streamed.how != "complex output":
        run.notes.append(f"{model_id}: {streamed.how}")
    run.report(CompareProgress(model_id, run_split, "done"))
    return evaluated


def _recorded_scale(session, name: str, scale) -> float | None:
    """The intensity scale model ``name`` was fed, for the record; None when it cannot be resolved."""
    try:
        return resolve_intensity_scale(session.model(name), scale)
    except Exception:  # noqa: BLE001 - only for the record
        return None


def _compare_reference(run: _CompareRun, reference, model_id: str) -> ComparedModel:
    """The workspace's reference reconstruction measured on the compared split (skipped when it
    reconstructs another split; status "failed" with the reason when it cannot be read or measured)."""
    common = dict(model_id=model_id, name=None, label=reference.label, kind="reference", path=str(reference.path))
    if reference.split and reference.split != run.split:
        note = f"the reference reconstructs split '{reference.split}', not '{run.split}'"
        return ComparedModel.from_metrics(empty_metrics(model_id, note), split=run.split, status="skipped",
                                          note=note, **common)
    run.report(CompareProgress(model_id, run.split, "evaluate"))
    opened = run.session.split(run.split)
    try:
        recon = load_reference(reference.path)
        canvas, origin = recon.object, recon.origin
        if origin is not None:
            canvas, origin = scanned_region(canvas, origin, opened.positions, opened.N)
            metrics = evaluate_reconstruction(model_id, canvas, run.ground_truth(run.split),
                                              origin=origin, max_shift=known_placement_max_shift(opened.N))
        else:
            metrics = evaluate_reconstruction(model_id, canvas, run.ground_truth(run.split),
                                              positions_xy=opened.positions, patch_size=opened.N)
        entry = ComparedModel.from_metrics(metrics, split=run.split, status="evaluated", canvas=canvas,
                                           origin=origin, **common)
    except Exception as exc:  # noqa: BLE001 - the models' metrics still stand
        reason = f"reference not evaluated: {one_line(exc)}"
        entry = ComparedModel.from_metrics(empty_metrics(model_id, reason), split=run.split, status="failed",
                                           note=reason, **common)
    run.report(CompareProgress(model_id, run.split, "done"))
    return entry


def _choose_split(workspace, split: str | None) -> str:
    if split is not None:
        workspace.split_path(split)  # InputError naming the known splits
        return split
    if DEFAULT_COMPARE_SPLIT in workspace.splits:
        return DEFAULT_COMPARE_SPLIT
    if workspace.reference is not None and workspace.reference.split:
        return workspace.reference.split
    return next(iter(workspace.splits))
