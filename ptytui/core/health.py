"""Layer health: the mergeable per-layer record of a streamed run or a probe trace.

One ``LayerHealth`` summarizes one layer output (one part of it: see ``running.layer_health``)
over some batches. It has two kinds of numbers, and says which is which:

- exact, from every batch: ``count``, ``zero_count``, ``nan_count``, ``inf_count``, the nonzero
  count of every channel (``channel_nonzero``: dead channels are those never nonzero), and the
  samples that are entirely zero (``zero_samples``) or hold a NaN/Inf (``nonfinite_samples``), as
  sorted half-open ranges ``[start, stop)`` of the run's group indices;
- sampled (``sampled`` in ``to_dict``): ``finite_count``, ``mean``, ``m2``, ``min``, ``max`` come
  from every ``sample_every``-th batch (all their elements; a probe trace has ``sample_every`` 1);
  the histogram and ``underflow_count`` from the first ``hist_samples`` samples of those batches
  (``hist_elements`` elements in all).

Records merge exactly across batches, shards and devices (counts, channel counts and histograms
add, sample ranges unite, moments merge by Chan's formula in float64 as ``TensorStats`` does).
The histogram bins are ``core.stats``'s symlog bins; ``RAW_TO_SYMLOG`` maps the device's raw
float32 codes (``bits >> 22``: sign, exponent, top mantissa bit) onto them, exactly as
``core.stats`` bins a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ptytui.core.stats import HIST_EDGES, N_BINS, TensorStats, _bin_index_numpy

RAW_BINS = 1024  # float32 bits >> 22: sign (1) | exponent (8) | top mantissa bit (1)
# raw codes of exponent 0 (zeros and subnormals), positive and negative
SUBNORMAL_CODES = np.array([0, 1, 512, 513])


def _raw_to_symlog() -> np.ndarray:
    """Symlog bin of each raw code (N_BINS for NaN/Inf codes: dropped, as stats.py drops them)."""
    raw = np.arange(RAW_BINS, dtype=np.uint32)
    values = (raw << np.uint32(22)).view(np.float32)
    out = np.full(RAW_BINS, N_BINS, dtype=np.int64)
    finite = np.isfinite(values)  # a raw code's values are all finite or all not
    out[finite] = _bin_index_numpy(values[finite])
    return out


RAW_TO_SYMLOG = _raw_to_symlog()
_RAW_ORDER = np.argsort(RAW_TO_SYMLOG, kind="stable")
_RAW_STARTS = np.searchsorted(RAW_TO_SYMLOG[_RAW_ORDER], np.arange(N_BINS))


def symlog_hist(raw_counts: np.ndarray) -> np.ndarray:
    """Symlog histogram(s) (..., N_BINS) int64 from raw-code counts (..., RAW_BINS), exactly."""
    ordered = np.asarray(raw_counts, dtype=np.int64)[..., _RAW_ORDER]
    return np.add.reduceat(ordered, _RAW_STARTS, axis=-1)


Ranges = list[tuple[int, int]]


def index_runs(indices) -> Ranges:
    """Sorted half-open ranges covering the given (unique) indices."""
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.r_[indices[0], indices[breaks + 1]]
    stops = np.r_[indices[breaks], indices[-1]] + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def union_runs(a: Ranges, b: Ranges) -> Ranges:
    """Union of two sets of half-open ranges, sorted and coalesced."""
    out: Ranges = []
    for start, stop in sorted(list(a) + list(b)):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((int(start), int(stop)))
    return out


def run_indices(runs: Ranges) -> np.ndarray:
    """The indices a set of ranges covers, ascending."""
    if not runs:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in runs])


def _same_or_max(a: int | None, b: int | None) -> int | None:
    return a if b is None else b if a is None else max(a, b)


@dataclass
class LayerHealth:
    """Health of one layer output over some batches (exact counts, sampled moments)."""

    path: str
    channels: int = 0  # last axis for outputs of rank >= 2, else 0 (no channel view)
    count: int = 0
    zero_count: int = 0
    nan_count: int = 0
    inf_count: int = 0
    batches: int = 0
    samples: int = 0
    channel_nonzero: np.ndarray | None = None  # int64 (channels,)
    zero_samples: Ranges = field(default_factory=list)
    nonfinite_samples: Ranges = field(default_factory=list)
    # sampled: moments from `moment_batches` batches, histogram from `hist_elements` elements
    moment_batches: int = 0
    finite_count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    hist_elements: int = 0
    hist_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))
    underflow_count: int = 0
    sample_every: int = 1
    hist_samples: int | None = None  # per moment batch; None: every sample

    # ---- derived -------------------------------------------------------------------------
    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.finite_count) if self.finite_count else float("nan")

    @property
    def nonzero_fraction(self) -> float:
        return 1.0 - self.zero_count / self.count if self.count else float("nan")

    @property
    def dead_channels(self) -> int:
        return 0 if self.channel_nonzero is None else int((self.channel_nonzero == 0).sum())

    @property
    def zero_sample_count(self) -> int:
        return sum(b - a for a, b in self.zero_samples)

    @property
    def nonfinite_sample_count(self) -> int:
        return sum(b - a for a, b in self.nonfinite_samples)

    def to_stats(self) -> TensorStats:
        """The statistics record: exact counts; moments and histogram as sampled (see ``sampled``)."""
        return TensorStats(
            count=self.count, finite_count=self.finite_count, mean=self.mean, m2=self.m2,
            min=self.min, max=self.max, zero_count=self.zero_count, nan_count=self.nan_count,
            inf_count=self.inf_count, hist_counts=self.hist_counts.copy())

    # ---- merging -------------------------------------------------------------------------
    def merge(self, other: "LayerHealth") -> "LayerHealth":
        """Both parts together: exact for counts, channels, samples and histograms; Chan's
        formula (float64) for the moments."""
        moments = TensorStats(finite_count=self.finite_count, mean=self.mean, m2=self.m2).merge(
            TensorStats(finite_count=other.finite_count, mean=other.mean, m2=other.m2))
        if self.channel_nonzero is None or other.channel_nonzero is None:
            channel_nonzero = self.channel_nonzero if other.channel_nonzero is None else other.channel_nonzero
        else:
            channel_nonzero = self.channel_nonzero + other.channel_nonzero
        return LayerHealth(
            path=self.path, channels=self.channels or other.channels,
            count=self.count + other.count, zero_count=self.zero_count + other.zero_count,
            nan_count=self.nan_count + other.nan_count, inf_count=self.inf_count + other.inf_count,
            batches=self.batches + other.batches, samples=self.samples + other.samples,
            channel_nonzero=None if channel_nonzero is None else channel_nonzero.copy(),
            zero_samples=union_runs(self.zero_samples, other.zero_samples),
            nonfinite_samples=union_runs(self.nonfinite_samples, other.nonfinite_samples),
            moment_batches=self.moment_batches + other.moment_batches,
            finite_count=moments.finite_count, mean=moments.mean, m2=moments.m2,
            min=min(self.min, other.min), max=max(self.max, other.max),
            hist_elements=self.hist_elements + other.hist_elements,
            hist_counts=self.hist_counts + other.hist_counts,
            underflow_count=self.underflow_count + other.underflow_count,
            sample_every=max(self.sample_every, other.sample_every),
            hist_samples=_same_or_max(self.hist_samples, other.hist_samples))

    __add__ = merge

    # ---- (de)serialization ---------------------------------------------------------------
    def sampled(self) -> dict[str, Any]:
        """Which numbers are sampled and how (the exact ones are listed in ``exact``)."""
        return {"fields": ["finite_count", "mean", "std", "m2", "min", "max", "histogram",
                           "underflow_count"],
                "every": int(self.sample_every), "batches": int(self.moment_batches),
                "of_batches": int(self.batches),
                "hist_samples_per_batch": self.hist_samples, "hist_elements": int(self.hist_elements)}

    def to_dict(self) -> dict[str, Any]:
        def num(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "path": self.path, "channels": int(self.channels), "count": int(self.count),
            "zero_count": int(self.zero_count), "nan_count": int(self.nan_count),
            "inf_count": int(self.inf_count), "nonzero_fraction": num(self.nonzero_fraction),
            "batches": int(self.batches), "samples": int(self.samples),
            "dead_channels": self.dead_channels,
            "channel_nonzero": None if self.channel_nonzero is None else self.channel_nonzero.tolist(),
            "zero_samples": [list(r) for r in self.zero_samples],
            "zero_sample_count": self.zero_sample_count,
            "nonfinite_samples": [list(r) for r in self.nonfinite_samples],
            "nonfinite_sample_count": self.nonfinite_sample_count,
            "exact": ["count", "zero_count", "nan_count", "inf_count", "channel_nonzero",
                      "dead_channels", "zero_samples", "nonfinite_samples"],
            "sampled": self.sampled(),
            "finite_count": int(self.finite_count), "mean": num(self.mean) if self.finite_count else None,
            "std": num(self.std) if self.finite_count else None, "m2": float(self.m2),
            "min": num(self.min), "max": num(self.max),
            "underflow_count": int(self.underflow_count),
            "histogram": {"edges": HIST_EDGES.tolist(), "counts": self.hist_counts.tolist()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LayerHealth":
        sampled = data.get("sampled", {})
        channel_nonzero = data.get("channel_nonzero")
        return cls(
            path=str(data["path"]), channels=int(data.get("channels", 0)), count=int(data["count"]),
            zero_count=int(data["zero_count"]), nan_count=int(data["nan_count"]),
            inf_count=int(data["inf_count"]), batches=int(data.get("batches", 0)),
            samples=int(data.get("samples", 0)),
            channel_nonzero=None if channel_nonzero is None else np.asarray(channel_nonzero, np.int64),
            zero_samples=[(int(a), int(b)) for a, b in data.get("zero_samples", [])],
            nonfinite_samples=[(int(a), int(b)) for a, b in data.get("nonfinite_samples", [])],
            moment_batches=int(sampled.get("batches", 0)), finite_count=int(data.get("finite_count", 0)),
            mean=float(data["mean"]) if data.get("mean") is not None else 0.0, m2=float(data.get("m2", 0.0)),
            min=float(data["min"]) if data.get("min") is not None else math.inf,
            max=float(data["max"]) if data.get("max") is not None else -math.inf,
            hist_elements=int(sampled.get("hist_elements", 0)),
            hist_counts=np.asarray(data["histogram"]["counts"], dtype=np.int64),
            underflow_count=int(data.get("underflow_count", 0)),
            sample_every=int(sampled.get("every", 1)), hist_samples=sampled.get("hist_samples_per_batch"))

    def __eq__(self, other: object) -> bool:  # dataclass eq would compare arrays ambiguously
        if not isinstance(other, LayerHealth):
            return NotImplemented
        return self.to_dict() == other.to_dict()


def health_to_dict(records: Mapping[str, LayerHealth]) -> dict[str, dict]:
    return {name: rec.to_dict() for name, rec in records.items()}


def health_from_dict(data: Mapping[str, Mapping[str, Any]]) -> dict[str, LayerHealth]:
    return {name: LayerHealth.from_dict(rec) for name, rec in data.items()}
