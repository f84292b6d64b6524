"""Does a model's output depend on how its inputs are batched? Measured where it matters.

For one model on one split, on the workspace's feed and on the relative feed (what a
PtychoPINN pipeline feeds; zeros at gridsize 1):
- the output count of one call (``running.batch_choice``): a call that returns another number of
  outputs than it was given inputs is an error finding ``output-count-mismatch`` (evidence:
  inputs, outputs, batch size, the smallest batch size where it starts);
- the same groups streamed at batch B (the requested batch size, or the largest below the merge)
  and one at a time: nonzero fraction, samples that are entirely zero, and the largest
  difference, against ``batch_choice.BATCH_RTOL`` of the output scale: ``batch-coupling``.
Where the reassembly centres each call (``geometry.CENTRING_REASSEMBLY_TYPES``) the geometry's
prediction at batch B is stated beside the observation, with whether it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptytui.diagnosis.geometry import PREDICTION_TOLERANCE, split_geometry
from ptytui.diagnosis.hypotheses import BatchCouplingCheck
from ptytui.running.batch_choice import BATCH_ATOL, BATCH_RTOL, BatchChoice, choose_batch_size, forward_outputs
from ptytui.running.inference import feed_inputs
from ptytui.running.session import RunPlan

COUPLING_SAMPLES_MAX = 256  # groups streamed at batch B and at batch 1 (the split's first ones)


@dataclass
class CouplingMeasure:
    """One feed of one model on one split, streamed at batch ``batch_size`` and at batch 1."""

    positions: str | None
    batch_size: int
    n_samples: int
    nonzero_batched: float
    nonzero_single: float
    zero_samples_batched: int  # samples whose primary output is entirely zero
    zero_samples_single: int
    max_abs_difference: float
    output_scale: float
    predicted_visible_fraction: float | None = None  # geometry at batch_size (centring layers)

    @property
    def tolerance(self) -> float:
        return BATCH_ATOL + BATCH_RTOL * self.output_scale

    @property
    def coupled(self) -> bool:
        return not (self.max_abs_difference <= self.tolerance)

    @property
    def prediction_holds(self) -> bool | None:
        if self.predicted_visible_fraction is None:
            return None
        return abs(self.predicted_visible_fraction - self.nonzero_batched) <= PREDICTION_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "batch_size": self.batch_size, "n_samples": self.n_samples,
                "nonzero_fraction_batched": self.nonzero_batched,
                "nonzero_fraction_single": self.nonzero_single,
                "entirely_zero_samples_batched": self.zero_samples_batched,
                "entirely_zero_samples_single": self.zero_samples_single,
                "max_abs_difference": self.max_abs_difference, "output_scale": self.output_scale,
                "tolerance": self.tolerance, "coupled": self.coupled,
                "predicted_visible_fraction": self.predicted_visible_fraction,
                "prediction_tolerance": PREDICTION_TOLERANCE, "prediction_holds": self.prediction_holds}


@dataclass
class CouplingReport:
    """Everything measured for one model on one split, and the findings it gives (plain dicts:
    id, severity, split, summary, evidence)."""

    model: str
    split: str
    choices: list[BatchChoice] = field(default_factory=list)
    measures: list[CouplingMeasure] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    def check(self) -> BatchCouplingCheck | None:
        """The batch-size hypothesis' evidence: the workspace feed's measure."""
        if not self.measures:
            return None
        m = self.measures[0]
        merged = next((c for c in self.choices if c.count_mismatch), None)
        shapes = [(c.requested, c.output_counts.get(c.requested)) for c in self.choices if c.count_mismatch]
        return BatchCouplingCheck(model=self.model, split=self.split, batch_size=m.batch_size,
                                  shapes_batched=[(s[1],) for s in shapes] or [(m.n_samples,)],
                                  shapes_single=[(s[0],) for s in shapes] or [(m.n_samples,)],
                                  max_abs_difference=None if merged else m.max_abs_difference,
                                  output_scale=m.output_scale)


def _primary(outputs: list[np.ndarray]) -> np.ndarray:
    return np.abs(outputs[0]) if outputs else np.zeros((0,))


def measure(loaded_model, split, grouping, ids: np.ndarray, *, positions: str | None, intensity_scale,
            batch_size: int, card=None, model: str = "") -> CouplingMeasure:
    """Stream ``ids`` at ``batch_size`` and at 1 through the model (primary output only)."""
    def run(size: int) -> np.ndarray:
        parts = []
        for start in range(0, len(ids), size):
            batch = grouping.batch(split, ids[start:start + size], ground_truth=False)
            fed = feed_inputs(loaded_model, batch, positions=positions, intensity_scale=intensity_scale)
            parts.append(_primary(forward_outputs(loaded_model.model, fed)))
        return np.concatenate(parts, axis=0)

    batched, single = run(batch_size), run(1)
    per_sample = lambda a: a.reshape(len(a), -1)  # noqa: E731
    predicted = None
    if card is not None:
        geometry = split_geometry(card, split, _Subset(grouping, ids), model=model,
                                  positions=positions or "relative", batch_size=batch_size)
        if geometry is not None and geometry.centred_per_call:
            predicted = geometry.predicted_visible_fraction
    finite = np.isfinite(single)
    scale = float(np.max(np.where(finite, single, 0))) if single.size else 0.0
    delta = np.abs(batched - single) if batched.shape == single.shape else np.array([np.inf])
    return CouplingMeasure(
        positions=positions, batch_size=batch_size, n_samples=len(ids),
        nonzero_batched=float(np.mean(batched != 0)), nonzero_single=float(np.mean(single != 0)),
        zero_samples_batched=int(np.sum(~per_sample(batched).any(axis=1))),
        zero_samples_single=int(np.sum(~per_sample(single).any(axis=1))),
        max_abs_difference=float(np.nanmax(delta)) if delta.size else 0.0, output_scale=scale,
        predicted_visible_fraction=predicted)


class _Subset:
    """A grouping restricted to some groups (for the geometry of the measured groups)."""

    def __init__(self, grouping, ids: np.ndarray):
        self.indices = np.asarray(grouping.indices)[ids]
        self.relative_offsets = np.asarray(grouping.relative_offsets)[ids]


def feeds_to_test(positions: str | None) -> list[str]:
    """The workspace's feed, then the relative feed when that is another one."""
    feeds = [positions or "relative"]
    if "relative" not in feeds:
        feeds.append("relative")
    return feeds


def coupling_report(session, plan: RunPlan, *, card=None) -> CouplingReport:
    """Measure batch coupling of ``plan``'s model on ``plan``'s split, on each feed to test."""
    loaded = session.model(plan.model)
    split = session.split(plan.split)
    grouping = session.grouping(plan.split, session.gridsize(plan.model))
    ids = session.group_ids(plan)[:COUPLING_SAMPLES_MAX]
    report = CouplingReport(plan.model, plan.split)
    for feed in feeds_to_test(plan.positions):
        if feed == plan.positions:
            choice = session.batch_choice(plan)
        else:
            choice = choose_batch_size(loaded, split, grouping, session.group_ids(plan), model=plan.model,
                                       positions=feed, intensity_scale=plan.intensity_scale,
                                       requested=session.batch_size, explicit=session.batch_size_explicit)
        report.choices.append(choice)
        size = choice.compared_at or choice.requested
        if len(ids) >= 2 and size > 1:
            report.measures.append(measure(loaded, split, grouping, ids, positions=feed,
                                           intensity_scale=plan.intensity_scale, batch_size=size,
                                           card=card, model=plan.model))
    report.findings = _findings(report, streamed=session.batch_choice(plan).chosen)
    return report


def _findings(report: CouplingReport, *, streamed: int) -> list[dict[str, Any]]:
    findings = []
    merged = [c for c in report.choices if c.count_mismatch]
    if merged:
        c = merged[0]
        n = c.merge_starts_at
        feeds = ", ".join(str(m.positions) for m in merged)
        findings.append({
            "id": "output-count-mismatch", "severity": "error", "split": report.split,
            "summary": (f"{report.model} returned {c.output_counts.get(n)} output(s) for {n} inputs in one "
                        f"call: from {n} groups per call its outputs merge into one, whatever the offsets "
                        f"(feeds tested: {feeds}); batch size {c.requested} would give wrong statistics "
                        f"and no stitching; ptytui streams at batch {streamed}"),
            "evidence": {"inputs": n, "outputs": c.output_counts.get(n), "batch_size": c.requested,
                         "merge_starts_at": n, "streamed_batch_size": streamed,
                         "probes": [m.to_dict() for m in merged]}})
    coupled = [m for m in report.measures if m.coupled]
    if coupled:
        m = coupled[0]
        parts = [f"at batch {m.batch_size} {m.nonzero_batched:.1%} of the output is nonzero and "
                 f"{m.zero_samples_batched} of {m.n_samples} samples are entirely zero; at batch 1 "
                 f"{m.nonzero_single:.1%} and {m.zero_samples_single}"]
        if m.predicted_visible_fraction is not None:
            verdict = "holds" if m.prediction_holds else "fails"
            parts.append(f"the reassembly subtracts each call's mean offset: predicted "
                         f"{m.predicted_visible_fraction:.1%} visible at batch {m.batch_size} ({verdict}, "
                         f"tolerance {PREDICTION_TOLERANCE})")
        findings.append({
            "id": "batch-coupling", "severity": "error", "split": report.split,
            "summary": (f"{report.model}'s outputs depend on how samples are batched ({m.positions} "
                        f"offsets): " + "; ".join(parts) + f"; ptytui streams at batch {streamed}"),
            "evidence": {"measures": [x.to_dict() for x in report.measures],
                         "streamed_batch_size": streamed}})
    return findings
