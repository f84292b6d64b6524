"""Streaming, mergeable tensor statistics: the one statistics record used everywhere.

Each batch is reduced on the device (inside a ``tf.function``) to a small record; records merge
exactly on the host in float64 (Chan's parallel formula), across batches, shards and devices.

Conventions
-----------
- ``count`` counts every element; ``mean``, ``std`` (population, ddof=0), ``min`` and ``max``
  are over the finite elements only; NaN and +/-Inf are counted apart.
- ``nonzero_fraction = 1 - zero_count / count`` (a NaN is not a zero).
- The histogram has fixed, data-independent *symlog* bins (``HIST_EDGES``): two bins per
  octave, [2^e, 1.5 * 2^e) and [1.5 * 2^e, 2^(e+1)), for 2^-20 (~9.5e-7) <= |x| < 2^20 (~1.05e6)
  on each side, and one centre bin for |x| < 2^-20. Values beyond in magnitude land in the
  outermost bins. A value's bin is read from the exponent and the top mantissa bit of its float32
  bit pattern: integer operations, cheap on the device and identical on the host. Because the
  bins never depend on the data, merging two histograms is an exact sum.
- Complex tensors are summarized as two records, ``NAME.amplitude`` and ``NAME.phase``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from ptytui.core.tfload import tf as _tf

OCTAVE_MIN = -20  # smallest magnitude with its own bins: 2^-20 ~ 9.5e-7
OCTAVE_MAX = 20  # magnitudes from 2^20 ~ 1.05e6 up share the outermost bin
BINS_PER_OCTAVE = 2  # split at 1.5 * 2^e: the top mantissa bit
_SIDE_BINS = (OCTAVE_MAX - OCTAVE_MIN) * BINS_PER_OCTAVE  # bins on each side of zero
N_BINS = 2 * _SIDE_BINS + 1
CENTRE_BIN = _SIDE_BINS
# (exponent field << 1 | top mantissa bit) of 2^OCTAVE_MIN in float32: the first positive bin
_FIRST_CODE = (127 + OCTAVE_MIN) * 2


def _symlog_edges() -> np.ndarray:
    octaves = 2.0 ** np.arange(OCTAVE_MIN, OCTAVE_MAX, dtype=np.float64)
    positive = np.append(np.stack([octaves, 1.5 * octaves], axis=1).reshape(-1), 2.0**OCTAVE_MAX)
    return np.concatenate([-positive[::-1], positive])


HIST_EDGES: np.ndarray = _symlog_edges()  # N_BINS + 1 edges; the centre bin is [-2^-20, 2^-20)


def _bin_index_numpy(finite_values: np.ndarray) -> np.ndarray:
    """Bin index of each finite value, from its float32 bit pattern (as the device path does)."""
    values32 = np.asarray(finite_values, dtype=np.float32)
    code = (np.abs(values32).view(np.int32) >> 22).astype(np.int64)
    k = np.clip(code - _FIRST_CODE, 0, _SIDE_BINS - 1)
    index = np.where(values32 >= 0, CENTRE_BIN + 1 + k, CENTRE_BIN - 1 - k)
    return np.where(code < _FIRST_CODE, CENTRE_BIN, index)


@dataclass
class TensorStats:
    """Summary of one tensor (or of many batches of it, merged)."""

    count: int = 0
    finite_count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean, over finite values
    min: float = math.inf
    max: float = -math.inf
    zero_count: int = 0
    nan_count: int = 0
    inf_count: int = 0
    hist_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))

    # ---- derived -------------------------------------------------------------------------
    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.finite_count) if self.finite_count else float("nan")

    @property
    def nonzero_fraction(self) -> float:
        return 1.0 - self.zero_count / self.count if self.count else float("nan")

    @property
    def zero_fraction(self) -> float:
        return self.zero_count / self.count if self.count else float("nan")

    @property
    def nonzero_count(self) -> int:
        return self.count - self.zero_count

    # ---- merging -------------------------------------------------------------------------
    def merge(self, other: "TensorStats") -> "TensorStats":
        """Return the record of both parts together (Chan et al. 1979 parallel variance)."""
        n_a, n_b = self.finite_count, other.finite_count
        n = n_a + n_b
        if n_a == 0:
            mean, m2 = other.mean, other.m2
        elif n_b == 0:
            mean, m2 = self.mean, self.m2
        else:
            delta = other.mean - self.mean
            mean = self.mean + delta * (n_b / n)
            m2 = self.m2 + other.m2 + delta * delta * (n_a * n_b / n)
        return TensorStats(
            count=self.count + other.count,
            finite_count=n,
            mean=float(mean),
            m2=float(m2),
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            zero_count=self.zero_count + other.zero_count,
            nan_count=self.nan_count + other.nan_count,
            inf_count=self.inf_count + other.inf_count,
            hist_counts=self.hist_counts + other.hist_counts,
        )

    __add__ = merge

    @classmethod
    def merge_all(cls, parts) -> "TensorStats":
        total = cls()
        for part in parts:
            total = total.merge(part)
        return total

    # ---- (de)serialization ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The STATS object of CLI.md, plus ``finite_count`` and ``m2`` for exact re-merging."""

        def num(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "count": int(self.count),
            "mean": num(self.mean) if self.finite_count else None,
            "std": num(self.std) if self.finite_count else None,
            "min": num(self.min),
            "max": num(self.max),
            "nonzero_fraction": num(self.nonzero_fraction),
            "zero_count": int(self.zero_count),
            "nan_count": int(self.nan_count),
            "inf_count": int(self.inf_count),
            "finite_count": int(self.finite_count),
            "m2": float(self.m2),
            "histogram": {"edges": HIST_EDGES.tolist(), "counts": self.hist_counts.tolist()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorStats":
        counts = np.asarray(data["histogram"]["counts"], dtype=np.int64)
        if counts.shape != (N_BINS,):
            raise ValueError(f"histogram with {counts.shape[0]} bins, expected {N_BINS}")
        finite = int(data.get("finite_count", data["count"] - data["nan_count"] - data["inf_count"]))
        std = data.get("std")
        m2 = data.get("m2", (std or 0.0) ** 2 * finite)
        return cls(
            count=int(data["count"]),
            finite_count=finite,
            mean=float(data["mean"]) if data.get("mean") is not None else 0.0,
            m2=float(m2),
            min=float(data["min"]) if data.get("min") is not None else math.inf,
            max=float(data["max"]) if data.get("max") is not None else -math.inf,
            zero_count=int(data["zero_count"]),
            nan_count=int(data["nan_count"]),
            inf_count=int(data["inf_count"]),
            hist_counts=counts,
        )

    def __eq__(self, other: object) -> bool:  # dataclass eq would compare arrays ambiguously
        if not isinstance(other, TensorStats):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # ---- display helpers (no UI imports; plain data) ----------------------------------------
    def histogram_span(self) -> tuple[int, int]:
        """First and last occupied bin (inclusive), for compact displays; (0, -1) if empty."""
        occupied = np.flatnonzero(self.hist_counts)
        if occupied.size == 0:
            return 0, -1
        return int(occupied[0]), int(occupied[-1])


# ---- host path (numpy) -------------------------------------------------------------------


def stats_of_array(values: np.ndarray) -> TensorStats:
    """Statistics of a real numpy array computed on the host (float64)."""
    values = np.asarray(values)
    if np.iscomplexobj(values):
        raise TypeError("complex array: use complex_stats_of_array (amplitude and phase)")
    flat = values.reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.astype(np.float64)
    finite_mask = np.isfinite(flat) if flat.dtype.kind == "f" else np.ones(flat.shape, dtype=bool)
    finite = flat[finite_mask].astype(np.float64)
    hist = np.bincount(_bin_index_numpy(finite), minlength=N_BINS).astype(np.int64)
    nan_count = int(np.isnan(flat).sum()) if flat.dtype.kind == "f" else 0
    return TensorStats(
        count=int(flat.size),
        finite_count=int(finite.size),
        mean=float(finite.mean()) if finite.size else 0.0,
        m2=float(((finite - finite.mean()) ** 2).sum()) if finite.size else 0.0,
        min=float(finite.min()) if finite.size else math.inf,
        max=float(finite.max()) if finite.size else -math.inf,
        zero_count=int((flat == 0).sum()),
        nan_count=nan_count,
        inf_count=int(flat.size - finite.size - nan_count),
        hist_counts=hist,
    )


def complex_stats_of_array(values: np.ndarray) -> dict[str, TensorStats]:
    """Amplitude and phase records of a complex numpy array."""
    return {"amplitude": stats_of_array(np.abs(values)), "phase": stats_of_array(np.angle(values))}


# ---- device path (TensorFlow) ------------------------------------------------------------

def reduce_tensor_tf(x):
    """Reduce a real tensor to a dict of small tensors, on whatever device holds it.

    Call this inside a ``tf.function`` (the trace and the inference runner do). It casts to
    float64 for the sums so that the host merge is exact up to float64 rounding.
    """

    tf = _tf()
    flat = tf.reshape(x, [-1])
    if not flat.dtype.is_floating:
        flat = tf.cast(flat, tf.float32)
    values32 = flat if flat.dtype == tf.float32 else tf.cast(flat, tf.float32)
    count = tf.size(flat, out_type=tf.int64)

    # Histogram from the float32 bit pattern: (exponent << 1 | top mantissa bit) of |x|.
    code = tf.bitwise.right_shift(tf.bitcast(tf.abs(values32), tf.int32), 22)
    k = tf.clip_by_value(code - _FIRST_CODE, 0, _SIDE_BINS - 1)
    index = tf.where(values32 >= 0, CENTRE_BIN + 1 + k, CENTRE_BIN - 1 - k)
    index = tf.where(code < _FIRST_CODE, tf.constant(CENTRE_BIN, tf.int32), index)

    def all_finite():
        # The common case: no masks (they cost as much as the rest of the reduction).
        wide = tf.cast(flat, tf.float64)
        total = tf.reduce_sum(wide)
        mean = total / tf.cast(tf.maximum(count, 1), tf.float64)
        hist = tf.math.bincount(index, minlength=N_BINS, maxlength=N_BINS, dtype=tf.int64)
        return (count, total, tf.reduce_sum(tf.square(wide - mean)),
                tf.cast(tf.reduce_min(flat), tf.float64), tf.cast(tf.reduce_max(flat), tf.float64),
                tf.constant(0, tf.int64), hist)

    def some_nonfinite():
        finite_mask = tf.math.is_finite(flat)
        wide = tf.cast(flat, tf.float64)
        zeros = tf.zeros_like(wide)
        finite_count = tf.reduce_sum(tf.cast(finite_mask, tf.int64))
        total = tf.reduce_sum(tf.where(finite_mask, wide, zeros))
        mean = tf.math.divide_no_nan(total, tf.cast(finite_count, tf.float64))
        m2 = tf.reduce_sum(tf.where(finite_mask, tf.square(wide - mean), zeros))
        inf = tf.constant(math.inf, tf.float64)
        low = tf.reduce_min(tf.where(finite_mask, wide, zeros + inf))
        high = tf.reduce_max(tf.where(finite_mask, wide, zeros - inf))
        dropped = tf.where(finite_mask, index, tf.constant(N_BINS, tf.int32))  # non-finite: a slot cut off
        hist = tf.math.bincount(dropped, minlength=N_BINS + 1, maxlength=N_BINS + 1, dtype=tf.int64)
        nan_count = tf.reduce_sum(tf.cast(tf.math.is_nan(flat), tf.int64))
        return finite_count, total, m2, low, high, nan_count, hist[:N_BINS]

    finite_count, total, m2, low, high, nan_count, hist = tf.cond(
        tf.reduce_all(tf.math.is_finite(flat)), all_finite, some_nonfinite)
    return {
        "count": count,
        "finite_count": finite_count,
        "sum": total,
        "m2": m2,
        "min": tf.where(finite_count > 0, low, tf.constant(math.inf, tf.float64)),
        "max": tf.where(finite_count > 0, high, tf.constant(-math.inf, tf.float64)),
        "zero_count": tf.reduce_sum(tf.cast(tf.equal(flat, 0), tf.int64)),
        "nan_count": nan_count,
        "inf_count": count - finite_count - nan_count,
        "hist": hist,
    }


def reduce_named_tf(name: str, x) -> dict[str, dict]:
    """Reduce a tensor to {record name: reduction}; complex tensors give amplitude and phase."""

    tf = _tf()
    if x.dtype.is_complex:
        return {f"{name}.amplitude": reduce_tensor_tf(tf.abs(x)),
                f"{name}.phase": reduce_tensor_tf(tf.math.angle(x))}
    return {name: reduce_tensor_tf(x)}


def stats_from_reduction(reduction: Mapping[str, Any]) -> TensorStats:
    """Turn a device reduction (tensors or numpy values) into a host record."""

    def host(value):
        return value.numpy() if hasattr(value, "numpy") else np.asarray(value)

    finite_count = int(host(reduction["finite_count"]))
    total = float(host(reduction["sum"]))
    return TensorStats(
        count=int(host(reduction["count"])),
        finite_count=finite_count,
        mean=total / finite_count if finite_count else 0.0,
        m2=float(host(reduction["m2"])),
        min=float(host(reduction["min"])),
        max=float(host(reduction["max"])),
        zero_count=int(host(reduction["zero_count"])),
        nan_count=int(host(reduction["nan_count"])),
        inf_count=int(host(reduction["inf_count"])),
        hist_counts=host(reduction["hist"]).astype(np.int64),
    )


class StatsAccumulator:
    """Merged records for named tensors, fed batch by batch.

    ``update(name, tensor)`` reduces one tensor on its device; ``merge_reductions`` takes
    reductions computed inside a larger ``tf.function`` (as the inference runner does).
    """

    def __init__(self) -> None:
        self.records: dict[str, TensorStats] = {}
        self._reduce_fn = None

    def _fn(self):
        if self._reduce_fn is None:

            tf = _tf()
            self._reduce_fn = tf.function(reduce_named_tf, reduce_retracing=True)
        return self._reduce_fn

    def update(self, name: str, tensor) -> None:
        self.merge_reductions(self._fn()(name, tensor))

    def merge_reductions(self, reductions: Mapping[str, Mapping[str, Any]]) -> None:
        for record_name, reduction in reductions.items():
            self.merge_record(record_name, stats_from_reduction(reduction))

    def merge_record(self, name: str, record: TensorStats) -> None:
        previous = self.records.get(name)
        self.records[name] = record if previous is None else previous.merge(record)

    def snapshot(self) -> dict[str, TensorStats]:
        """A copy of the records so far (safe to hand to another thread)."""
        return {name: replace(rec, hist_counts=rec.hist_counts.copy()) for name, rec in self.records.items()}


def records_to_dict(records: Mapping[str, TensorStats]) -> dict[str, dict]:
    return {name: rec.to_dict() for name, rec in records.items()}


def records_from_dict(data: Mapping[str, Mapping[str, Any]]) -> dict[str, TensorStats]:
    return {name: TensorStats.from_dict(rec) for name, rec in data.items()}


def output_count_tf(outputs: list):
    """Outputs one call returned (a scalar tensor): the smallest leading dimension over the
    model's outputs (1 for a scalar output)."""
    tf = _tf()
    counts = [tf.shape(t)[0] if t.shape.rank else tf.constant(1) for t in outputs]
    return tf.reduce_min(tf.stack(counts)) if counts else tf.constant(0)
