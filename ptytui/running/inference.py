"""Chunked inference over one split and one model, yielding typed events.

Batches are sliced from the (memory-mapped) split, fed through one ``tf.function`` that runs the
model and reduces inputs and outputs on the device, so memory stays bounded by the batch. The
run can be cancelled between batches; on out-of-memory it halves the batch and continues.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

from ptytui.core.events import (
    BatchDone,
    BatchSizeReduced,
    EngineEvent,
    FirstPatch,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunResult,
    RunStarted,
)
from ptytui.core.stats import StatsAccumulator, output_count_tf, reduce_named_tf
from ptytui.core.tfload import tf as _tf
from ptytui.errors import InputError, one_line
from ptytui.inputs.models import input_roles
from ptytui.inputs.workspace import DEFAULT_POSITION_MODE, POSITION_MODES
from ptytui.running.batching import BatchCancelled, BatchFailed, BatchHalved, run_batches
from ptytui.running.devices import DistributedStep
from ptytui.running.layer_health import LiveLayerHealth

CancelToken = threading.Event | Callable[[], bool] | None


def is_cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def resolve_intensity_scale(loaded_model, intensity_scale: str | float | None) -> float:
    """The factor the diffraction input is multiplied by before the model sees it.

    ``"apply"`` uses the model's own intensity scale (as a PtychoPINN pipeline does; 1.0 when the
    model carries none), ``"none"`` feeds the stored amplitude as it is, a number is used as given.
    """
    if intensity_scale in (None, "apply"):
        scale = getattr(loaded_model, "intensity_scale", None)
        return float(scale) if scale else 1.0
    if intensity_scale == "none":
        return 1.0
    return float(intensity_scale)


def position_tensor(batch, mode: str) -> np.ndarray:
    """Positions for the model's position input, shape (B, 1, 2, C), float32 [x, y] in object
    pixels; ``mode`` is one of ``POSITION_MODES`` (meanings: workspace.POSITION_MODE_MEANINGS)."""
    relative = np.asarray(batch.relative_offsets, dtype=np.float32)
    if mode == "relative":
        return relative
    if mode == "zero":
        return np.zeros_like(relative)
    if mode == "absolute":
        positions = np.asarray(batch.positions, dtype=np.float32)  # (B, C, 2) [x, y]
        return np.transpose(positions, (0, 2, 1))[:, None, :, :]
    raise InputError("--positions", f"one of {', '.join(POSITION_MODES)}", repr(mode))


def feed_inputs(loaded_model, batch, *, positions: str | None = DEFAULT_POSITION_MODE,
                intensity_scale: str | float | None = "apply") -> dict[str, np.ndarray]:
    """The model's inputs for one batch, keyed by input name, fed the way a pipeline would.

    The diffraction input gets the amplitude times the intensity scale; the position input (if
    the model has one) gets the offsets chosen by ``positions``.
    """

    roles = input_roles(loaded_model)
    card = loaded_model.card
    diffraction = np.asarray(batch.diffraction, dtype=np.float32)
    scale = resolve_intensity_scale(loaded_model, intensity_scale)
    fed: dict[str, np.ndarray] = {}
    diff_name = roles.get("diffraction")
    pos_name = roles.get("positions")
    for spec in card.inputs:
        name = spec["name"]
        shape = spec.get("shape") or []
        if name == diff_name:
            expected_c = shape[-1] if len(shape) == 4 else None
            if expected_c is not None and expected_c != diffraction.shape[-1]:
                raise InputError(card.path, f"diffraction input with {expected_c} channel(s) "
                                 f"(gridsize {int(round(expected_c ** 0.5))})",
                                 f"groups of {diffraction.shape[-1]} pattern(s) from the data",
                                 hint="set gridsize for this model in ptytui.toml")
            expected_hw = tuple(shape[1:3]) if len(shape) == 4 else None
            if expected_hw and None not in expected_hw and expected_hw != diffraction.shape[1:3]:
                raise InputError(card.path, f"diffraction patterns of {expected_hw[0]}x{expected_hw[1]}",
                                 f"{diffraction.shape[1]}x{diffraction.shape[2]} in the data")
            fed[name] = diffraction * np.float32(scale) if scale != 1.0 else diffraction
        elif name == pos_name:
            fed[name] = position_tensor(batch, positions or DEFAULT_POSITION_MODE)
        else:
            raise InputError(card.path, "inputs for diffraction and (optionally) positions",
                             f"an input '{name}' of shape {shape} that ptytui cannot feed")
    return fed


def flat_outputs(outputs) -> list:
    """A model's outputs as a list: a dict by sorted key, a lone tensor as a list of one."""
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if not isinstance(outputs, (list, tuple)):
        return [outputs]
    return list(outputs)


def call_inputs(fed: dict):
    """What to pass to ``model(...)``: the lone tensor for a single-input model (Keras warns
    about a dict there), else the dict keyed by input name."""
    return next(iter(fed.values())) if len(fed) == 1 else fed


STREAM_REMEDY = "let ptytui choose the batch size (omit --batch-size) or choose a smaller one"


def output_count_message(returned: int, given: int, batch_size: int, *, remedy: str = STREAM_REMEDY) -> str:
    """The one line for a call whose output count differs from its input count; ``remedy`` says
    what the user can do where the call was made (a streamed run by default)."""
    return (f"output-count-mismatch: the model returned {returned} output{'s' if returned != 1 else ''} "
            f"for {given} input{'s' if given != 1 else ''} at batch size {batch_size} (it merges or splits "
            f"the samples of one call): its statistics would describe the batching, not the model; {remedy}")


class _Step:
    """One compiled step: run the model on a batch and reduce inputs and outputs on device.
    ``output_counts`` holds the outputs the last call returned (one per device that ran a part)."""

    def __init__(self, loaded_model):

        tf = _tf()
        model = loaded_model.model
        self.output_names = [o["name"] for o in loaded_model.card.outputs] or ["output"]
        self.output_counts: list[int] = []

        def step(inputs):
            outputs = flat_outputs(model(call_inputs(inputs), training=False))
            reductions = {}
            for name, tensor in inputs.items():
                reductions.update(reduce_named_tf(name, tensor))
            for name, tensor in zip(self._names(len(outputs)), outputs):
                reductions.update(reduce_named_tf(name, tensor))
            firsts = [t[:1] for t in outputs]
            return reductions, firsts, output_count_tf(outputs)

        self.raw_step = step  # the un-compiled step, run per replica by distribute.DistributedStep
        self._fn = tf.function(step, reduce_retracing=True)

    def _names(self, n: int) -> list[str]:
        names = list(self.output_names[:n])
        while len(names) < n:
            names.append(f"output_{len(names)}")
        return names

    def __call__(self, inputs):
        """Reductions as a list (one dict per device that ran a part: here one) and the first
        sample of each output."""
        reductions, firsts, count = self._fn(inputs)
        self.output_counts = [int(count)]
        return [reductions], firsts


def _compiled_step(loaded_model) -> _Step:
    """The model's compiled step, built once per loaded model: later runs of the same model (other
    splits, shards, what-if feedings, re-runs in the TUI) reuse its traces instead of retracing."""
    step = getattr(loaded_model, "_ptytui_step", None)
    if step is None:
        step = _Step(loaded_model)
        try:
            loaded_model._ptytui_step = step
        except AttributeError:  # an object that takes no attributes: build per run
            pass
    return step


def run_inference(loaded_model, split, grouping, *, model_name: str, split_name: str | None = None,
                  positions: str | None = DEFAULT_POSITION_MODE, intensity_scale: str | float | None = "apply",
                  batch_size: int = 64, indices: np.ndarray | None = None,
                  cancel: CancelToken = None, device: str = "cpu",
                  device_set=None, batch_note: str | None = None,
                  requested_batch_size: int | None = None, layer_health: bool = True) -> Iterator[EngineEvent]:
    """Stream one model over one split's groups; yield events, ending in RunFinished/Failed/Cancelled.

    ``indices`` restricts the run to those group indices (for shards and subsets); memory stays
    bounded by one batch. On ResourceExhaustedError the batch size halves and the run goes on.
    ``device_set`` (a ``distribute.DeviceSet``, for ``--devices all``) splits every batch across
    its replicas; the per-replica records merge on the host and the events are the same.
    Every call must return one output per input, else the run fails (``output_count_message``).
    ``batch_note`` says why ``batch_size`` is not ``requested_batch_size`` (``batch_choice``):
    it goes into the result's notes, announced by a BatchSizeReduced event.
    ``layer_health`` records every layer's health on every batch (``running.layer_health``;
    LayerHealthUpdate events, and ``RunResult.layer_health``).
    """
    split_name = split_name or getattr(split, "name", "data")
    group_ids = np.arange(len(grouping.indices)) if indices is None else np.asarray(indices)
    total = int(group_ids.size)
    scale = resolve_intensity_scale(loaded_model, intensity_scale)
    if device_set is not None:
        device = device_set.label
    yield RunStarted(model_name, split_name, n_samples=total, batch_size=batch_size,
                     positions=positions, intensity_scale=scale, device=device)
    try:
        step = _compiled_step(loaded_model)
        health = LiveLayerHealth(loaded_model, step, model_name, split_name) if layer_health else None
        step = health or step
        if device_set is not None:

            step = DistributedStep(step, device_set)
            step = health.across(step) if health is not None else step
    except Exception as exc:  # noqa: BLE001 - a model that cannot be traced is a failed run
        yield RunFailed(model_name, split_name, message=f"cannot compile the model: {one_line(exc)}")
        return
    accumulator = StatsAccumulator()
    # feed_inputs feeds every input of the card (or raises), so these name the input records.
    input_names = {spec["name"] for spec in loaded_model.card.inputs}
    notes: list[str] = []
    if batch_note:
        notes.append(batch_note)
        yield BatchSizeReduced(model_name, split_name, old=int(requested_batch_size or batch_size),
                               new=batch_size, reason=batch_note)
    started = time.perf_counter()
    batches = 0
    first_patch: FirstPatch | None = None

    def prepare(chunk):
        batch = grouping.batch(split, chunk, ground_truth=False)  # inference never reads it
        return feed_inputs(loaded_model, batch, positions=positions, intensity_scale=intensity_scale)

    for outcome in run_batches(group_ids, batch_size, step, prepare=prepare,
                               cancelled=lambda: is_cancelled(cancel)):
        if isinstance(outcome, BatchHalved):
            notes.append(f"out of memory at batch size {outcome.old}; continuing at {outcome.new}")
            yield BatchSizeReduced(model_name, split_name, old=outcome.old, new=outcome.new,
                                   reason=one_line(outcome.error))
            batch_size = outcome.new
            continue
        if isinstance(outcome, BatchCancelled):
            yield RunCancelled(model_name, split_name, done=outcome.done)
            return
        if isinstance(outcome, BatchFailed):
            yield RunFailed(model_name, split_name, message=one_line(outcome.error))
            return
        reductions, firsts = outcome.result
        returned = sum(getattr(step, "output_counts", None) or [len(outcome.indices)])
        if returned != len(outcome.indices):  # never merge a call that did not return one output per input
            yield RunFailed(model_name, split_name,
                            message=output_count_message(returned, len(outcome.indices), batch_size))
            return
        for part in reductions:  # one per replica that ran a part of the batch, in order
            accumulator.merge_reductions(part)
        batches += 1
        if first_patch is None:
            first_patch = FirstPatch(
                model_name, split_name,
                inputs={k: np.asarray(v[0]) for k, v in outcome.inputs.items()},
                outputs={n: f.numpy()[0] for n, f in zip(step._names(len(firsts)), firsts)},
                index=int(outcome.indices[0]))
            yield first_patch
        input_records, output_records = _split_records(accumulator.snapshot(), input_names)
        yield BatchDone(model_name, split_name, done=outcome.done, total=total,
                        inputs=input_records, outputs=output_records,
                        seconds=time.perf_counter() - started)
        update = health.update(outcome.indices, last=outcome.done >= total) if health is not None else None
        if update is not None:
            yield update
    input_records, output_records = _split_records(accumulator.snapshot(), input_names)
    result = RunResult(
        model=model_name, split=split_name, positions=positions, n_samples=total, batches=batches,
        seconds=time.perf_counter() - started,
        inputs=input_records, outputs=output_records,
        batch_size=batch_size, intensity_scale=scale, notes=notes, first_patch=first_patch,
        layer_health=health.records() if health is not None else None)
    yield RunFinished(model_name, split_name, result=result)


def _split_records(records: dict, input_names: set) -> tuple[dict, dict]:
    """(input records, output records): a record NAME or NAME.amplitude / NAME.phase belongs to
    the inputs when NAME is one of the model's inputs."""
    inputs, outputs = {}, {}
    for name, record in records.items():
        (inputs if name.split(".")[0] in input_names else outputs)[name] = record
    return inputs, outputs


def run_to_result(events: Iterator[EngineEvent], on_event: Callable[[EngineEvent], Any] | None = None
                  ) -> RunResult | RunFailed | RunCancelled:
    """Drain an event stream; return the RunResult (or the failure/cancel event)."""
    last: Any = None
    for event in events:
        if on_event is not None:
            on_event(event)
        if isinstance(event, RunFinished):
            last = event.result
        elif isinstance(event, (RunFailed, RunCancelled)):
            last = event
    return last




