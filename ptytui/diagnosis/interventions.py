"""Counterfactual re-runs: the same batch fed differently (positions zeroed, relative, centred,
x/y swapped; intensity scale applied or removed), each output's statistics before and after.

The question each answers: "would the output come back if the input were fed this way?" A
zero-positions run that restores a dead Baseline is the incident's fix in one batch.

Each re-run is one call of the whole batch, and must return one output per input, as every call
of the inference runner must (``inference.output_count_message``). A re-run that merges the
samples (PtychoPINN's reassembly sums a call of 64 or more patches into one canvas) is invalid:
its statistics describe the batching, so it is neither a recovery nor a failure to recover, and
an invalid as-fed run leaves nothing to recover from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ptytui.core.jsonable import finite_or_none
from ptytui.core.stats import TensorStats
from ptytui.core.thresholds import THRESHOLDS
from ptytui.inputs.models import input_roles
from ptytui.running.batch_choice import forward_outputs, output_count
from ptytui.running.inference import feed_inputs, output_count_message
from ptytui.running.trace import records_of

RECOVERED_NONZERO_MIN = THRESHOLDS.failing_nonzero_below
RERUN_REMEDY = "this re-run is invalid (neither a recovery nor a failure to recover); re-run fewer groups in one call"


@dataclass(frozen=True)
class Intervention:
    """One way of re-feeding a batch. ``name`` is what ``apply-fix`` records."""

    name: str
    description: str
    positions: str | None = None  # feeding override for the position input
    intensity_scale: str | float | None = None  # feeding override for the diffraction input
    needs_positions: bool = False
    needs_scale: bool = False


# Names follow ptytui.inputs.decisions.FEEDING_INTERVENTIONS where the fix is a feeding change.
INTERVENTIONS: dict[str, Intervention] = {
    "zero-positions": Intervention("zero-positions", "positions input set to zero",
                                   positions="zero", needs_positions=True),
    "relative-positions": Intervention("relative-positions",
                                       "relative offsets -(position - group mean)",
                                       positions="relative", needs_positions=True),
    "centred-positions": Intervention("centred-positions",
                                      "absolute positions minus their split mean, per axis",
                                      needs_positions=True),
    "swap-xy": Intervention("swap-xy", "x and y of the fed positions exchanged",
                            needs_positions=True),
    "apply-intensity-scale": Intervention("apply-intensity-scale",
                                          "diffraction times the model's intensity scale",
                                          intensity_scale="apply", needs_scale=True),
    "no-intensity-scale": Intervention("no-intensity-scale", "diffraction fed as stored",
                                       intensity_scale="none", needs_scale=True),
}


def primary_output_stats(outputs: dict[str, TensorStats]) -> TensorStats | None:
    """The first amplitude-like output record (phase records skipped), as the stats gate reads."""
    for name, record in outputs.items():
        if not name.endswith(".phase") and record.count:
            return record
    return None


@dataclass
class InterventionResult:
    name: str
    description: str
    outputs: dict[str, TensorStats]
    positions: str | None
    intensity_scale: str | float | None
    inputs: int = 0  # samples fed in the one call
    returned: int | None = None  # outputs that call returned (None: not counted)

    @property
    def valid(self) -> bool:
        """One output per input (a re-run whose outputs were not counted counts as valid)."""
        return self.returned is None or self.returned == self.inputs

    @property
    def invalid_reason(self) -> str | None:
        """The output-count line of an invalid re-run, None for a valid one."""
        if self.valid:
            return None
        return output_count_message(int(self.returned), self.inputs, self.inputs, remedy=RERUN_REMEDY)

    @property
    def nonzero_fraction(self) -> float:
        """The primary output's nonzero fraction; NaN for an invalid re-run (its records describe
        the merged batch, not the samples) or one without output records."""
        record = primary_output_stats(self.outputs) if self.valid else None
        return record.nonzero_fraction if record is not None else math.nan

    def to_dict(self) -> dict[str, Any]:
        nz = self.nonzero_fraction
        return {"intervention": self.name, "description": self.description,
                "positions": self.positions, "intensity_scale": self.intensity_scale,
                "nonzero_fraction": nz if math.isfinite(nz) else None,
                "inputs": self.inputs, "returned": self.returned, "valid": self.valid,
                "invalid_reason": self.invalid_reason,
                "outputs": {k: v.to_dict() for k, v in self.outputs.items()}}


@dataclass
class InterventionReport:
    """All interventions of one model on one batch of one split, against the batch as fed."""

    model: str
    split: str
    n_samples: int
    as_fed: InterventionResult
    results: list[InterventionResult] = field(default_factory=list)

    def result(self, name: str) -> InterventionResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def invalid(self) -> list[InterventionResult]:
        """The runs (the as-fed one included) that did not return one output per input."""
        return [r for r in [self.as_fed, *self.results] if not r.valid]

    def recoveries(self, threshold: float = RECOVERED_NONZERO_MIN) -> list[InterventionResult]:
        """Interventions that lift an output below ``threshold`` nonzero to above it, best first
        (valid re-runs against a valid as-fed run only)."""
        before = self.as_fed.nonzero_fraction
        if not (self.as_fed.valid and math.isfinite(before) and before < threshold):
            return []
        good = [r for r in self.results if r.valid and math.isfinite(r.nonzero_fraction)
                and r.nonzero_fraction > threshold]
        order = [name for name in INTERVENTIONS]
        return sorted(good, key=lambda r: (-r.nonzero_fraction, order.index(r.name)
                                           if r.name in order else 99))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "n_samples": self.n_samples,
                "as_fed": self.as_fed.to_dict(),
                "results": [r.to_dict() for r in self.results],
                "nonzero_before": finite_or_none(self.as_fed.nonzero_fraction),
                "nonzero_after": {r.name: finite_or_none(r.nonzero_fraction) for r in self.results},
                "invalid": {r.name: r.invalid_reason for r in self.invalid()}}



# ---- running the model --------------------------------------------------------------------

def output_names(loaded_model, n: int) -> list[str]:
    """Output record names, as the inference runner names them (card output names)."""
    names = [o["name"] for o in getattr(loaded_model.card, "outputs", []) or []][:n]
    while len(names) < n:
        names.append(f"output_{len(names)}")
    return names


def output_stats(loaded_model, fed: dict[str, np.ndarray]) -> tuple[dict[str, TensorStats], int]:
    """Run the model on fed inputs in one call: the output records (reduced on the device) and
    the number of outputs the call returned (``batch_choice.output_count``)."""

    outputs = forward_outputs(loaded_model.model, fed)
    records: dict[str, TensorStats] = {}
    for name, tensor in zip(output_names(loaded_model, len(outputs)), outputs):
        records.update(records_of(name, tensor))
    return records, output_count(outputs)


def model_outputs(loaded_model, fed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the model on fed inputs and bring the (small) outputs back as numpy arrays."""
    return [np.asarray(t) for t in forward_outputs(loaded_model.model, fed)]


# ---- feeding variants ---------------------------------------------------------------------


def _split_mean_position(split, grouping) -> np.ndarray:
    """Mean scan position [x, y] over the grouping's patterns (object pixels)."""
    members = np.unique(np.asarray(grouping.indices).reshape(-1))
    return np.array([split.xcoords[members].mean(), split.ycoords[members].mean()])


def feed_variant(loaded_model, batch, intervention: Intervention, *, positions: str,
                 intensity_scale, split_mean: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The batch's inputs fed as ``intervention`` says (the rest as configured)."""

    mode = intervention.positions or positions
    if intervention.name == "centred-positions":
        mode = "absolute"
    scale = intervention.intensity_scale if intervention.intensity_scale is not None else intensity_scale
    fed = feed_inputs(loaded_model, batch, positions=mode, intensity_scale=scale)
    pos_name = input_roles(loaded_model).get("positions")
    if pos_name and pos_name in fed:
        offsets = np.array(fed[pos_name], dtype=np.float32, copy=True)  # (B, 1, 2, C)
        if intervention.name == "centred-positions" and split_mean is not None:
            offsets[:, :, 0, :] -= np.float32(split_mean[0])
            offsets[:, :, 1, :] -= np.float32(split_mean[1])
        elif intervention.name == "swap-xy":
            offsets = offsets[:, :, ::-1, :].copy()
        fed[pos_name] = offsets
    return fed


def applicable(loaded_model, names: Sequence[str] | None = None) -> list[Intervention]:
    """Interventions that make sense for this model (positions only if it takes them, scale only
    if it carries an intensity scale other than 1)."""

    has_positions = bool(input_roles(loaded_model).get("positions"))
    scale = getattr(loaded_model, "intensity_scale", None)
    has_scale = bool(scale) and not math.isclose(float(scale), 1.0)
    chosen = [INTERVENTIONS[n] for n in (names or INTERVENTIONS)]
    return [iv for iv in chosen if (has_positions or not iv.needs_positions)
            and (has_scale or not iv.needs_scale)]


def run_interventions(loaded_model, split, grouping, *, model: str, positions: str | None,
                      intensity_scale, group_ids: np.ndarray | None = None, n_samples: int = 32,
                      names: Sequence[str] | None = None,
                      on_result: Callable[[InterventionResult, InterventionResult], None] | None = None
                      ) -> InterventionReport:
    """Re-run one batch of ``split`` under each applicable intervention.

    Parameters
    ----------
    loaded_model : models.LoadedModel
    split, grouping : the opened split and its grouping for this model's gridsize.
    model : str
        The model's name (labels only).
    positions, intensity_scale :
        How the workspace feeds the model (the "as fed" reference run).
    group_ids : array, optional
        The groups of the batch; default the first ``n_samples`` groups of the grouping.
    names : list of str, optional
        Interventions to run (default: every applicable one of ``INTERVENTIONS``).
    on_result : callable(as_fed, result), optional
        Called after each intervention (for live progress).
    """
    positions = positions or "relative"
    ids = np.arange(min(n_samples, len(grouping))) if group_ids is None else np.asarray(group_ids)
    batch = grouping.batch(split, ids, ground_truth=False)

    base_fed = feed_inputs(loaded_model, batch, positions=positions, intensity_scale=intensity_scale)
    records, returned = output_stats(loaded_model, base_fed)
    as_fed = InterventionResult("as-fed", f"as the workspace feeds it (positions {positions}, "
                                f"intensity scale {intensity_scale})", records,
                                positions, intensity_scale, inputs=len(ids), returned=returned)
    report = InterventionReport(model=model, split=split.name, n_samples=len(ids), as_fed=as_fed)
    split_mean = _split_mean_position(split, grouping)
    for intervention in applicable(loaded_model, names):
        fed = feed_variant(loaded_model, batch, intervention, positions=positions,
                           intensity_scale=intensity_scale, split_mean=split_mean)
        records, returned = output_stats(loaded_model, fed)
        result = InterventionResult(
            intervention.name, intervention.description, records,
            intervention.positions or ("absolute" if intervention.name == "centred-positions" else positions),
            intervention.intensity_scale if intervention.intensity_scale is not None else intensity_scale,
            inputs=len(ids), returned=returned)
        report.results.append(result)
        if on_result is not None:
            on_result(as_fed, result)
    return report
