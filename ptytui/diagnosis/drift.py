"""Split-against-split drift: model inputs as fed, scan positions and normalization factors.

A train/test split along one axis of the object (as in the incident) moves the positions; a
per-split normalization hides a brightness shift unless both factors are shown. Pure numpy/scipy.

Measures and thresholds (all documented here, used by the diagnosis)
--------------------------------------------------------------------
- SMD, the standardized mean difference (mean_other - mean_ref) / sqrt((var_ref + var_other) / 2).
  ``|SMD| >= 0.25`` counts (a common "non-negligible imbalance" line in the matching literature).
- Normalized Wasserstein: ``scipy.stats.wasserstein_distance(ref, other) / std_ref``, the
  earth-mover distance in units of the reference spread. ``>= 0.1`` counts.
- KS: ``scipy.stats.ks_2samp``; counts when ``p < 0.01`` *and* the statistic ``>= 0.1`` (with
  thousands of samples any tiny difference is "significant", so an effect size is required).
- A distribution has drifted when at least two of the three criteria count: one measure alone
  reacts to things the others ignore (a few outliers move the mean, ties move KS).
- Normalization factors drift when their ratio is outside [1/1.25, 1.25] (the amplitude then
  differs by more than ~12% between splits before normalization).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ptytui.core.jsonable import finite_or_none
from ptytui.core.thresholds import THRESHOLDS

SMD_MIN = THRESHOLDS.smd_min
NORMALIZED_WASSERSTEIN_MIN = THRESHOLDS.normalized_wasserstein_min
KS_P_MAX = THRESHOLDS.ks_p_max
KS_STATISTIC_MIN = THRESHOLDS.ks_statistic_min
NORMALIZATION_RATIO_MAX = THRESHOLDS.normalization_ratio_max
MAX_VALUES = 20_000  # values per side kept for the distance computations (seeded subsample)



@dataclass
class DistributionDrift:
    """One quantity compared between a reference split and another split."""

    name: str
    reference_split: str
    other_split: str
    reference_mean: float
    reference_std: float
    other_mean: float
    other_std: float
    smd: float
    wasserstein: float
    normalized_wasserstein: float
    ks_statistic: float
    ks_pvalue: float
    n_reference: int
    n_other: int

    @property
    def criteria(self) -> dict[str, bool]:
        return {
            "smd": abs(self.smd) >= SMD_MIN,
            "wasserstein": self.normalized_wasserstein >= NORMALIZED_WASSERSTEIN_MIN,
            "ks": self.ks_pvalue < KS_P_MAX and self.ks_statistic >= KS_STATISTIC_MIN,
        }

    @property
    def drifted(self) -> bool:
        return sum(self.criteria.values()) >= 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference_split": self.reference_split,
            "other_split": self.other_split,
            "reference_mean": finite_or_none(self.reference_mean),
            "reference_std": finite_or_none(self.reference_std),
            "other_mean": finite_or_none(self.other_mean),
            "other_std": finite_or_none(self.other_std),
            "smd": finite_or_none(self.smd),
            "wasserstein": finite_or_none(self.wasserstein),
            "normalized_wasserstein": finite_or_none(self.normalized_wasserstein),
            "ks_statistic": finite_or_none(self.ks_statistic),
            "ks_pvalue": finite_or_none(self.ks_pvalue),
            "n_reference": self.n_reference,
            "n_other": self.n_other,
            "criteria": self.criteria,
            "drifted": self.drifted,
        }


@dataclass
class NormalizationDrift:
    """The per-split normalization factors side by side (energy factor = (N/2)^2 / mean energy)."""

    reference_split: str
    other_split: str
    reference_factor: float
    other_factor: float
    reference_mean_energy: float
    other_mean_energy: float

    @property
    def ratio(self) -> float:
        if not (self.reference_factor and math.isfinite(self.reference_factor)):
            return math.nan
        return self.other_factor / self.reference_factor

    @property
    def drifted(self) -> bool:
        r = self.ratio
        return math.isfinite(r) and not (1 / NORMALIZATION_RATIO_MAX <= r <= NORMALIZATION_RATIO_MAX)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_split": self.reference_split,
            "other_split": self.other_split,
            "reference_factor": finite_or_none(self.reference_factor),
            "other_factor": finite_or_none(self.other_factor),
            "reference_mean_energy": finite_or_none(self.reference_mean_energy),
            "other_mean_energy": finite_or_none(self.other_mean_energy),
            "ratio": finite_or_none(self.ratio),
            "drifted": self.drifted,
        }


@dataclass
class SplitDrift:
    """Everything compared between two splits (for one model's inputs, when given)."""

    reference_split: str
    other_split: str
    positions: list[DistributionDrift] = field(default_factory=list)  # scan positions x, y
    inputs: list[DistributionDrift] = field(default_factory=list)  # model inputs as fed
    normalization: NormalizationDrift | None = None
    model: str | None = None

    @property
    def drifted_positions(self) -> list[DistributionDrift]:
        return [d for d in self.positions if d.drifted]

    @property
    def drifted_inputs(self) -> list[DistributionDrift]:
        return [d for d in self.inputs if d.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "reference_split": self.reference_split,
            "other_split": self.other_split,
            "positions": [d.to_dict() for d in self.positions],
            "inputs": [d.to_dict() for d in self.inputs],
            "normalization": self.normalization.to_dict() if self.normalization else None,
        }


def _subsample(values: np.ndarray, max_values: int, rng: np.random.Generator) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    flat = flat[np.isfinite(flat)]
    if flat.size > max_values:
        flat = flat[rng.choice(flat.size, size=max_values, replace=False)]
    return flat


def compare_samples(name: str, reference: np.ndarray, other: np.ndarray, *,
                    reference_split: str = "reference", other_split: str = "other",
                    max_values: int = MAX_VALUES, seed: int = 0) -> DistributionDrift:
    """Compare two samples of one quantity (SMD, normalized Wasserstein, KS).

    Parameters
    ----------
    name : str
        What the values are (``"positions.x"``, an input name...).
    reference, other : array-like
        Values of any shape (flattened; non-finite values dropped). Larger samples are reduced
        to ``max_values`` values each by a seeded random subsample.
    """
    from scipy.stats import ks_2samp, wasserstein_distance  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    a = _subsample(reference, max_values, rng)
    b = _subsample(other, max_values, rng)
    if a.size == 0 or b.size == 0:
        nan = math.nan
        return DistributionDrift(name, reference_split, other_split, nan, nan, nan, nan, nan, nan,
                                 nan, nan, nan, int(a.size), int(b.size))
    mean_a, mean_b = float(a.mean()), float(b.mean())
    std_a, std_b = float(a.std()), float(b.std())
    pooled = math.sqrt((std_a**2 + std_b**2) / 2)
    if pooled > 0:
        smd = (mean_b - mean_a) / pooled
    else:
        smd = 0.0 if mean_a == mean_b else math.copysign(math.inf, mean_b - mean_a)
    wasserstein = float(wasserstein_distance(a, b))
    if std_a > 0:
        normalized = wasserstein / std_a
    else:
        normalized = 0.0 if wasserstein == 0 else math.inf
    ks = ks_2samp(a, b)
    return DistributionDrift(
        name=name, reference_split=reference_split, other_split=other_split,
        reference_mean=mean_a, reference_std=std_a, other_mean=mean_b, other_std=std_b, smd=smd,
        wasserstein=wasserstein, normalized_wasserstein=normalized,
        ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue),
        n_reference=int(a.size), n_other=int(b.size))


def positions_drift(reference, other, *, seed: int = 0) -> list[DistributionDrift]:
    """Scan positions (object pixels) per axis: ``positions.x`` (columns) and ``positions.y``."""
    return [
        compare_samples("positions.x", reference.xcoords, other.xcoords,
                        reference_split=reference.name, other_split=other.name, seed=seed),
        compare_samples("positions.y", reference.ycoords, other.ycoords,
                        reference_split=reference.name, other_split=other.name, seed=seed),
    ]


def offsets_drift(name: str, reference_offsets: np.ndarray, other_offsets: np.ndarray, *,
                  reference_split: str, other_split: str, seed: int = 0) -> list[DistributionDrift]:
    """Offsets as fed to a model, per axis. Offsets are (..., 2) [x, y] or (B, 1, 2, C)."""
    out = []
    ref = _as_xy(reference_offsets)
    oth = _as_xy(other_offsets)
    for axis, label in enumerate("xy"):
        out.append(compare_samples(f"{name}.{label}", ref[:, axis], oth[:, axis],
                                   reference_split=reference_split, other_split=other_split,
                                   seed=seed))
    return out


def _as_xy(offsets: np.ndarray) -> np.ndarray:
    """(K, 2) [x, y] from (..., 2) or from the model layout (B, 1, 2, C)."""
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim == 4 and offsets.shape[1] == 1 and offsets.shape[2] == 2:
        return np.transpose(offsets[:, 0], (0, 2, 1)).reshape(-1, 2)
    return offsets.reshape(-1, 2)


def normalization_drift(reference, other) -> NormalizationDrift:
    """The two splits' normalization records side by side."""
    a, b = reference.normalization, other.normalization
    return NormalizationDrift(reference.name, other.name, float(a.factor), float(b.factor),
                              float(a.mean_pattern_energy), float(b.mean_pattern_energy))


def inputs_drift(reference_inputs: Mapping[str, np.ndarray], other_inputs: Mapping[str, np.ndarray], *,
                 reference_split: str, other_split: str, skip: tuple[str, ...] = (),
                 seed: int = 0) -> list[DistributionDrift]:
    """Every model input present in both (values as fed, a seeded subsample of elements)."""
    return [compare_samples(name, reference_inputs[name], other_inputs[name],
                            reference_split=reference_split, other_split=other_split, seed=seed)
            for name in reference_inputs if name in other_inputs and name not in skip]


def split_drift(reference, other, *, reference_inputs: Mapping[str, np.ndarray] | None = None,
                other_inputs: Mapping[str, np.ndarray] | None = None,
                positions_input: str | None = None, model: str | None = None,
                seed: int = 0) -> SplitDrift:
    """Compare two opened splits (and, when given, one model's inputs as fed on each).

    ``positions_input`` names the model's position input: it is compared per axis
    (``NAME.x``, ``NAME.y``) rather than as one pooled distribution.
    """
    result = SplitDrift(reference.name, other.name, positions=positions_drift(reference, other, seed=seed),
                        normalization=normalization_drift(reference, other), model=model)
    if reference_inputs is not None and other_inputs is not None:
        skip = (positions_input,) if positions_input else ()
        result.inputs = inputs_drift(reference_inputs, other_inputs, reference_split=reference.name,
                                     other_split=other.name, skip=skip, seed=seed)
        if positions_input and positions_input in reference_inputs and positions_input in other_inputs:
            result.inputs += offsets_drift(positions_input, reference_inputs[positions_input],
                                           other_inputs[positions_input], reference_split=reference.name,
                                           other_split=other.name, seed=seed)
    return result
