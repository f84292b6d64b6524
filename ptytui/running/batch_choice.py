"""Which batch size a model may be streamed at: one output per input, and the same outputs as
one sample at a time.

Some models couple the samples of one call. PtychoPINN's reassembly layer sums every call of 64
or more patches into one canvas (64 inputs -> 1 output) and subtracts each call's mean offset
(with absolute offsets the visible part of a patch then depends on its batch-mates). Statistics,
gates and stitching of such a run describe the batching, not the model.

``choose_batch_size`` probes the model on the run's first groups, fed as the run feeds them:
- the output count of one call of the requested batch size (and, when it differs from the input
  count, the smallest batch size where it starts: a bisection over calls of 1..B groups);
- the outputs of the first ``PROBE_SAMPLES`` groups in one call against the same groups one at a
  time, to ``BATCH_RTOL`` of the output scale (plus ``BATCH_ATOL``).
When the user did not choose the batch size, ptytui streams at the largest probed size that
passes both (the requested one when it does; else the largest size below the merge; else 1) and
says so in a note. A batch size the user chose is kept; the run then fails on the first call
whose output count differs (``inference.output_count_message``) and the diagnosis reports the
difference.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptytui.core.tfload import tf as _tf
from ptytui.core.thresholds import THRESHOLDS
from ptytui.running.inference import call_inputs, feed_inputs, flat_outputs

DEFAULT_BATCH_SIZE = 64  # groups per call when the user chooses none
PROBE_SAMPLES = 8  # groups compared in one call against one at a time
BATCH_RTOL = THRESHOLDS.batch_rtol
BATCH_ATOL = THRESHOLDS.batch_atol


@dataclass
class BatchChoice:
    """What the probe measured and the batch size the run uses (group counts per call)."""

    model: str
    split: str
    positions: str | None
    requested: int
    explicit: bool  # the user chose ``requested``
    chosen: int
    output_counts: dict[int, int] = field(default_factory=dict)  # groups per call -> outputs returned
    merge_starts_at: int | None = None  # smallest groups per call returning another output count
    compared_at: int | None = None  # batch size whose outputs were compared with batch 1
    max_abs_difference: float | None = None  # at ``compared_at`` vs batch 1 (None: not compared)
    output_scale: float = 0.0
    samples_compared: int = 0

    @property
    def tolerance(self) -> float:
        return BATCH_ATOL + BATCH_RTOL * self.output_scale

    @property
    def values_differ(self) -> bool:
        return self.max_abs_difference is not None and not (self.max_abs_difference <= self.tolerance)

    @property
    def count_mismatch(self) -> bool:
        return self.merge_starts_at is not None and self.merge_starts_at <= self.requested

    def note(self) -> str | None:
        """One line saying why the run's batch size is not the requested one (None when it is)."""
        if self.chosen == self.requested:
            return None
        reasons = []
        if self.count_mismatch:
            n = self.merge_starts_at
            reasons.append(f"the model returned {self.output_counts.get(n)} output(s) for {n} inputs "
                           f"(a call of {n} or more groups merges them)")
        if self.values_differ:
            reasons.append(f"at batch {self.compared_at} its outputs differ from batch 1 by up to "
                           f"{self.max_abs_difference:.3g} (tolerance {self.tolerance:.3g})")
        return f"batch size {self.requested} -> {self.chosen}: " + "; ".join(reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "positions": self.positions,
                "requested": self.requested, "explicit": self.explicit, "chosen": self.chosen,
                "output_counts": {str(k): v for k, v in sorted(self.output_counts.items())},
                "merge_starts_at": self.merge_starts_at, "compared_at": self.compared_at,
                "max_abs_difference": self.max_abs_difference, "output_scale": self.output_scale,
                "tolerance": self.tolerance, "samples_compared": self.samples_compared,
                "note": self.note()}


_FORWARD: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def forward_outputs(model, fed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One call through a compiled function with a free batch dimension (cached per model)."""
    tf = _tf()
    names = list(fed)
    arrays = [np.asarray(fed[n]) for n in names]
    key = tuple((n, a.shape[1:], a.dtype.str) for n, a in zip(names, arrays))
    cache = _FORWARD.setdefault(model, {})
    if key not in cache:
        signature = [tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)) for a in arrays]

        def forward(*tensors):
            return flat_outputs(model(call_inputs(dict(zip(names, tensors))), training=False))

        cache[key] = tf.function(forward, input_signature=signature, autograph=False)
    return [np.asarray(t) for t in cache[key](*arrays)]


def output_count(outputs: list[np.ndarray]) -> int:
    """Outputs returned by one call: the smallest leading dimension over the model's outputs."""
    return min((int(a.shape[0]) if a.ndim else 1) for a in outputs) if outputs else 0


def _max_difference(batched: list[np.ndarray], singles: list[list[np.ndarray]]) -> float:
    worst = 0.0
    for j, whole in enumerate(batched):
        one_by_one = np.concatenate([s[j] for s in singles], axis=0)
        part = whole[:len(one_by_one)]
        delta = np.abs(part - one_by_one)
        delta = np.where(np.isnan(part) & np.isnan(one_by_one), 0.0, delta)
        if delta.size:
            worst = max(worst, float(np.nanmax(np.where(np.isfinite(delta), delta, np.inf))))
    return worst


def choose_batch_size(loaded_model, split, grouping, group_ids: np.ndarray, *, model: str,
                      positions: str | None, intensity_scale, requested: int | None,
                      explicit: bool) -> BatchChoice:
    """Probe the model as the run will feed it; return the batch size to stream at (see the
    module docstring). Calls of at most ``requested`` groups, on the run's first groups."""
    requested = int(requested or DEFAULT_BATCH_SIZE)
    ids = np.asarray(group_ids)
    choice = BatchChoice(model, getattr(split, "name", "data"), positions, requested, explicit, requested)
    if len(ids) < 2:
        return choice

    def call(n: int) -> list[np.ndarray]:
        batch = grouping.batch(split, ids[:n], ground_truth=False)
        fed = feed_inputs(loaded_model, batch, positions=positions, intensity_scale=intensity_scale)
        return forward_outputs(loaded_model.model, fed)

    n = min(requested, len(ids))
    outputs = call(n)
    choice.output_counts[n] = output_count(outputs)
    ok = n
    if choice.output_counts[n] != n:
        ok, bad = 1, n
        while bad - ok > 1:  # the smallest call size whose output count differs
            mid = (ok + bad) // 2
            choice.output_counts[mid] = output_count(call(mid))
            ok, bad = (ok, mid) if choice.output_counts[mid] != mid else (mid, bad)
        choice.merge_starts_at = bad
        outputs = call(ok) if ok > 1 else outputs
    if ok > 1:
        k = min(ok, PROBE_SAMPLES)
        batched = outputs
        singles = [call_one(loaded_model, grouping, split, ids[i], positions, intensity_scale) for i in range(k)]
        choice.compared_at, choice.samples_compared = ok, k
        choice.output_scale = max((float(np.nanmax(np.abs(a))) if a.size and np.isfinite(a).any() else 0.0)
                                  for a in batched)
        choice.max_abs_difference = _max_difference([a[:k] for a in batched], singles)
    if not explicit:
        choice.chosen = 1 if choice.values_differ else (ok if choice.merge_starts_at else requested)
    return choice


def call_one(loaded_model, grouping, split, group_id, positions, intensity_scale) -> list[np.ndarray]:
    """The outputs of one group called alone."""
    batch = grouping.batch(split, np.asarray([group_id]), ground_truth=False)
    fed = feed_inputs(loaded_model, batch, positions=positions, intensity_scale=intensity_scale)
    return forward_outputs(loaded_model.model, fed)
