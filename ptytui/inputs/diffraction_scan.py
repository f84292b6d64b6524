"""Measuring a split's diffraction amplitudes: one streamed pass that refuses NaN/Inf/negative
values, summarizes the amplitudes (``DiffractionScan``) and states the per-split normalization
factor (``NormalizationRecord``) without applying it; suspicious scales become warnings.

Conventions: amplitude = sqrt(counts); PtychoPINN normalizes each split so that the mean
per-pattern energy sum(amplitude**2) equals (N/2)**2 (DOMAIN.md section 2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ptytui.core.thresholds import THRESHOLDS
from ptytui.errors import InputError
from ptytui.inputs.npz_reader import release_pages

__all__ = [
    "AMPLITUDE_MAX_SUSPECT",
    "MAX_OVER_MEAN_SUSPECT",
    "SAMPLE_PATTERNS",
    "SCAN_CHUNK_ELEMENTS",
    "DiffractionScan",
    "NormalizationRecord",
    "normalization_record",
    "scale_warnings",
    "scan_diffraction",
]

# A stored amplitude whose maximum is far above this suggests intensity stored as amplitude or a
# photon scale already applied (DOMAIN.md section 2).
AMPLITUDE_MAX_SUSPECT = THRESHOLDS.amplitude_max_suspect
# max/mean of all diffraction pixels. DOMAIN.md says "above ~100"; real PtychoPINN amplitude data
# (the lines_N64 fixtures, a peaky high-dose pattern) already sit at ~130, while the same data
# squared (intensity stored as amplitude) reach ~490, so the line is drawn between the two.
MAX_OVER_MEAN_SUSPECT = THRESHOLDS.max_over_mean_suspect

# Rows per streaming chunk are chosen so one chunk holds about this many elements.
SCAN_CHUNK_ELEMENTS = 4_000_000
# Patterns read when open_split(scan="sample").
SAMPLE_PATTERNS = 256


@dataclass(frozen=True)
class NormalizationRecord:
    """How bright a split is relative to PtychoPINN's per-split normalization.

    PtychoPINN normalizes each split on its own so that the mean per-pattern energy
    sum(amplitude**2) equals (N/2)**2; a brightness shift between splits is then invisible unless
    both factors are shown. ptytui never rescales the data: it records the factor instead.

    Attributes
    ----------
    mean_pattern_energy : float
        Mean over the measured patterns of sum(amplitude**2) over the N x N pixels.
    target_energy : float
        (N/2)**2, the energy PtychoPINN normalizes to.
    factor : float
        target_energy / mean_pattern_energy: the energy factor that would normalize this split
        (1.0 means already normalized; inf for an all-zero split). Amplitudes scale by sqrt(factor).
    n_patterns : int
        How many patterns the mean was taken over.
    scope : str
        "all" (every pattern, streamed) or "sample" (a seeded sample of patterns).
    """

    mean_pattern_energy: float
    target_energy: float
    factor: float
    n_patterns: int
    scope: str

    @property
    def amplitude_factor(self) -> float:
        """sqrt(factor): the multiplier on amplitudes that would normalize this split."""
        return math.sqrt(self.factor) if math.isfinite(self.factor) else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["amplitude_factor"] = self.amplitude_factor
        return d


@dataclass(frozen=True)
class DiffractionScan:
    """Summary of the diffraction amplitudes measured while opening a split (streamed in chunks).

    Statistics are over finite values of the measured patterns (all of them for scope "all").
    """

    n_patterns: int
    scope: str
    count: int
    mean: float
    min: float
    max: float
    zero_fraction: float
    zero_energy_patterns: int
    nan_count: int
    inf_count: int

    @property
    def max_over_mean(self) -> float:
        return self.max / self.mean if self.mean > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_over_mean"] = self.max_over_mean
        return d


def scan_diffraction(shown: str, key: str, stored: np.ndarray, pattern_axis: int,
                     diffraction: np.ndarray, scope: str) -> tuple[DiffractionScan, float]:
    """Stream the amplitudes in storage order, chunk by chunk, and refuse NaN/Inf/negatives.

    ``stored`` is the array as stored (``pattern_axis`` is its pattern axis), ``diffraction`` the
    (M, N, N) view on it; ``scope`` is open_split's ``scan`` ("full" or "sample"). Returns the
    summary and the mean per-pattern energy sum(amplitude**2) over the patterns read.

    Chunks follow the slowest-varying stored axis so each chunk is one contiguous read, whatever
    the layout; per-pattern energies are accumulated across chunks.
    """
    M = diffraction.shape[0]
    if scope == "sample":
        n = min(M, SAMPLE_PATTERNS)
        rows = np.sort(np.random.default_rng(0).choice(M, size=n, replace=False))
        stored, pattern_axis = diffraction[rows], 0
        offset_of = rows
    else:
        offset_of = None
    n_patterns = stored.shape[pattern_axis]
    fortran = isinstance(stored, np.ndarray) and stored.flags.f_contiguous and not stored.flags.c_contiguous
    chunk_axis = stored.ndim - 1 if fortran else 0
    per_index = max(1, int(np.prod([s for i, s in enumerate(stored.shape) if i != chunk_axis], dtype=np.int64)))
    step = max(1, SCAN_CHUNK_ELEMENTS // per_index)
    other_axes = tuple(i for i in range(stored.ndim) if i != pattern_axis)

    energy = np.zeros(n_patterns, dtype=np.float64)
    total = 0.0
    count = nan_count = inf_count = zero_count = 0
    vmin, vmax = math.inf, -math.inf
    for start in range(0, stored.shape[chunk_axis], step):
        sl = [slice(None)] * stored.ndim
        sl[chunk_axis] = slice(start, start + step)
        block = np.asarray(stored[tuple(sl)], dtype=np.float64)
        release_pages(stored)  # the float64 copy is all the scan needs (see release_pages)
        finite = np.isfinite(block)
        if not finite.all():
            nans = int(np.isnan(block).sum())
            nan_count += nans
            inf_count += int((~finite).sum()) - nans
            where = np.unravel_index(int(np.flatnonzero(~finite.ravel())[0]), block.shape)
            pattern = int(where[pattern_axis]) + (start if chunk_axis == pattern_axis else 0)
            if offset_of is not None:
                pattern = int(offset_of[pattern])
            raise InputError(shown, f"finite amplitudes in '{key}'",
                             f"NaN/Inf values (first in pattern {pattern})")
        bmin = float(block.min())
        if bmin < 0:
            where = np.unravel_index(int(block.argmin()), block.shape)
            pattern = int(where[pattern_axis]) + (start if chunk_axis == pattern_axis else 0)
            if offset_of is not None:
                pattern = int(offset_of[pattern])
            raise InputError(shown, f"amplitudes >= 0 in '{key}' (amplitude = sqrt(counts))",
                             f"min {bmin:.4g} in pattern {pattern}",
                             hint="background-subtracted intensity? clip at 0 and take sqrt")
        vmin = min(vmin, bmin)
        vmax = max(vmax, float(block.max()))
        total += float(block.sum())
        count += block.size
        zero_count += int(np.count_nonzero(block == 0))
        partial = np.square(block).sum(axis=other_axes)
        if chunk_axis == pattern_axis:
            energy[start:start + partial.shape[0]] += partial
        else:
            energy += partial
    record = DiffractionScan(
        n_patterns=n_patterns,
        scope="all" if scope == "full" else "sample",
        count=count,
        mean=total / count if count else 0.0,
        min=vmin if count else 0.0,
        max=vmax if count else 0.0,
        zero_fraction=zero_count / count if count else 0.0,
        zero_energy_patterns=int(np.count_nonzero(energy == 0)),
        nan_count=nan_count,
        inf_count=inf_count,
    )
    return record, float(energy.mean()) if n_patterns else 0.0


def normalization_record(scan: DiffractionScan, energy_mean: float, N: int) -> NormalizationRecord:
    """The per-split factor to (N/2)**2 from the scan's mean per-pattern energy (inf when all zero)."""
    target = (N / 2) ** 2
    factor = target / energy_mean if energy_mean > 0 else math.inf
    return NormalizationRecord(energy_mean, target, factor, scan.n_patterns, scan.scope)


def scale_warnings(scan: DiffractionScan, norm: NormalizationRecord) -> list[str]:
    """Observations (not errors) about the amplitude scale: intensity stored as amplitude, a
    photon scale already applied, all-zero patterns; one line each."""
    out = []
    if scan.max > AMPLITUDE_MAX_SUSPECT:
        out.append(f"diffraction max {scan.max:.4g} is far above ~{AMPLITUDE_MAX_SUSPECT:g}: "
                   "intensity stored as amplitude, or a photon scale already applied?")
    if scan.max_over_mean > MAX_OVER_MEAN_SUSPECT:
        out.append(f"diffraction max/mean {scan.max_over_mean:.4g} is above ~{MAX_OVER_MEAN_SUSPECT:g}: "
                   "intensity stored as amplitude?")
    if scan.zero_energy_patterns:
        out.append(f"{scan.zero_energy_patterns} of {scan.n_patterns} measured diffraction patterns are all zero")
    if not math.isfinite(norm.factor):
        out.append("diffraction is all zero: no normalization factor")
    return out

