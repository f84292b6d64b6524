"""Positions against the reassembly canvas: the offsets a model is actually fed, the fraction of
each patch that survives the translate-and-crop, and a pty-chi-style object coverage check.

Geometry (DOMAIN.md section 1): each N x N patch is padded onto a P x P canvas, translated by
-offset (bilinear, zero fill) and cropped back to the centre N x N. A shift by (dx, dy) keeps
(N - |dx|)(N - |dy|) of its N^2 pixels, so the *predicted visible fraction* of one patch is
``max(0, 1 - |dx|/N) * max(0, 1 - |dy|/N)``; its mean over patches predicts the share of nonzero
output pixels when the network itself outputs no zeros (a sigmoid amplitude head, for example).

PtychoPINN's ``ReassemblePatchesLayer`` first subtracts the mean offset over each call (all
patches of the call), ptytui's ``ReassemblePatches`` does not: for the former the offsets that
matter are the fed ones minus their call's mean, so the prediction depends on the batch size
the model is streamed at (at batch 1 every patch is centred).

A prediction *holds* when it is within ``PREDICTION_TOLERANCE`` (absolute, in visible fraction)
of the observed nonzero fraction; a mechanism whose prediction fails explains nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from ptytui.core.jsonable import finite_or_none
from ptytui.core.thresholds import THRESHOLDS
from ptytui.running.inference import position_tensor

COVERAGE_MARGIN_PX = 2  # pty-chi asks for ceil(max - min + probe) + 2 px per axis
OFF_CANVAS_VISIBLE_MAX = THRESHOLDS.failing_nonzero_below
PREDICTION_TOLERANCE = THRESHOLDS.prediction_tolerance
# Reassembly layers that subtract each call's mean offset before placing the patches.
CENTRING_REASSEMBLY_TYPES = ("ReassemblePatchesLayer",)



@dataclass
class CanvasGeometry:
    """The reassembly layer of a model, from its card."""

    path: str
    type: str
    canvas: int | None  # P
    patch: int  # N

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.type, "canvas": self.canvas, "patch": self.patch}


@dataclass
class CoverageCheck:
    """Does the object cover the scan? Per axis: object size >= ceil(max - min + N) + 2 px."""

    split: str
    object_shape: tuple[int, int] | None  # (H, W)
    required: tuple[int, int]  # (along x = columns, along y = rows)
    extent: tuple[float, float]  # max - min of the positions along x, y

    @property
    def ok(self) -> bool | None:
        if self.object_shape is None:
            return None
        height, width = self.object_shape
        return width >= self.required[0] and height >= self.required[1]

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split,
                "object_shape": list(self.object_shape) if self.object_shape else None,
                "required_x": self.required[0], "required_y": self.required[1],
                "extent_x": finite_or_none(self.extent[0]), "extent_y": finite_or_none(self.extent[1]), "ok": self.ok}


@dataclass
class SplitGeometry:
    """The offsets one model is fed on one split, measured against its canvas."""

    model: str
    split: str
    positions: str  # the feeding mode: absolute | relative | zero
    canvas: CanvasGeometry
    offsets: np.ndarray  # (G, C, 2) [x, y] in object pixels, as fed
    visible_fraction: np.ndarray  # (G, C) per patch
    coverage: CoverageCheck | None = None
    centred_per_call: bool = False  # the reassembly subtracts each call's mean offset
    batch_size: int | None = None  # groups per call the prediction assumes (centring layers)

    @property
    def predicted_visible_fraction(self) -> float:
        return float(self.visible_fraction.mean()) if self.visible_fraction.size else math.nan

    @property
    def hidden_patch_fraction(self) -> float:
        """Share of patches that leave the crop entirely (visible fraction exactly 0)."""
        return float(np.mean(self.visible_fraction == 0)) if self.visible_fraction.size else math.nan

    @property
    def off_canvas(self) -> bool:
        return self.predicted_visible_fraction < OFF_CANVAS_VISIBLE_MAX

    def offset_summary(self) -> dict[str, Any]:
        """Mean and std per axis, and the largest |offset|, in object pixels."""
        flat = self.offsets.reshape(-1, 2)
        if flat.size == 0:
            return {"mean_x": None, "std_x": None, "mean_y": None, "std_y": None, "max_abs": None}
        return {"mean_x": finite_or_none(flat[:, 0].mean()), "std_x": finite_or_none(flat[:, 0].std()),
                "mean_y": finite_or_none(flat[:, 1].mean()), "std_y": finite_or_none(flat[:, 1].std()),
                "max_abs": finite_or_none(np.abs(flat).max())}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "positions": self.positions,
                "canvas": self.canvas.to_dict(), "n_patches": int(self.visible_fraction.size),
                "predicted_visible_fraction": finite_or_none(self.predicted_visible_fraction),
                "hidden_patch_fraction": finite_or_none(self.hidden_patch_fraction),
                "offsets": self.offset_summary(),
                "centred_per_call": self.centred_per_call, "batch_size": self.batch_size,
                "prediction_tolerance": PREDICTION_TOLERANCE,
                "coverage": self.coverage.to_dict() if self.coverage else None}

    def prediction_holds(self, observed_nonzero_fraction: float | None) -> bool:
        """Whether the predicted visible fraction matches the observed nonzero fraction to
        ``PREDICTION_TOLERANCE`` (False when nothing was observed)."""
        if observed_nonzero_fraction is None or not math.isfinite(observed_nonzero_fraction):
            return False
        return abs(self.predicted_visible_fraction - observed_nonzero_fraction) <= PREDICTION_TOLERANCE


def visible_fraction(offsets: np.ndarray, patch: int) -> np.ndarray:
    """Fraction of an N x N patch left inside the crop after a shift by (dx, dy).

    Parameters
    ----------
    offsets : array (..., 2)
        [dx, dy] in pixels (the sign does not matter).
    patch : int
        N, the patch side in pixels.

    Returns
    -------
    array (...)
        ``max(0, 1 - |dx|/N) * max(0, 1 - |dy|/N)``.
    """
    offsets = np.abs(np.asarray(offsets, dtype=np.float64))
    keep = np.clip(1.0 - offsets / float(patch), 0.0, 1.0)
    return keep[..., 0] * keep[..., 1]


def canvas_of(card) -> CanvasGeometry | None:
    """The (first cropping) reassembly layer of a model card, or None when it has none."""
    layers = list(getattr(card, "reassembly", None) or [])
    if not layers:
        return None
    layer = layers[0]
    get = (lambda k: layer.get(k)) if isinstance(layer, dict) else (lambda k: getattr(layer, k, None))
    patch = get("patch")
    if patch is None:  # fall back to the diffraction input's pattern size
        for spec in getattr(card, "inputs", []) or []:
            shape = spec.get("shape") or []
            if len(shape) == 4 and shape[1]:
                patch = int(shape[1])
                break
    if patch is None:
        return None
    return CanvasGeometry(path=str(get("path")), type=str(get("type")),
                          canvas=int(get("canvas")) if get("canvas") else None, patch=int(patch))


def fed_offsets(split, grouping, positions: str) -> np.ndarray:
    """Offsets of every group as the model is fed them, (G, C, 2) [x, y], without reading patterns.

    Uses the same rule as ``inference.position_tensor`` (relative: -(position - group mean);
    absolute: scan positions; zero: zeros).
    """

    members = np.asarray(grouping.indices)
    batch = SimpleNamespace(
        relative_offsets=np.asarray(grouping.relative_offsets, dtype=np.float32),
        positions=np.stack([split.xcoords[members], split.ycoords[members]], axis=-1))
    tensor = position_tensor(batch, positions)  # (G, 1, 2, C)
    return np.transpose(np.asarray(tensor, dtype=np.float64)[:, 0], (0, 2, 1))


def coverage_check(split) -> CoverageCheck:
    """pty-chi's rule: the object must be at least ceil(max - min + N) + 2 px along each axis."""
    extent_x = float(np.ptp(split.xcoords)) if split.xcoords.size else 0.0
    extent_y = float(np.ptp(split.ycoords)) if split.ycoords.size else 0.0
    required = (int(math.ceil(extent_x + split.N)) + COVERAGE_MARGIN_PX,
                int(math.ceil(extent_y + split.N)) + COVERAGE_MARGIN_PX)
    shape = tuple(int(d) for d in split.object.shape[:2]) if split.object is not None else None
    return CoverageCheck(split=split.name, object_shape=shape, required=required,
                         extent=(extent_x, extent_y))


def centred_per_call(offsets: np.ndarray, batch_size: int) -> np.ndarray:
    """Offsets (G, C, 2) minus the mean over each call of ``batch_size`` consecutive groups
    (all their patches), as a reassembly that centres each call places them."""
    out = np.array(offsets, dtype=np.float64, copy=True)
    step = max(1, int(batch_size))
    for start in range(0, len(out), step):
        call = out[start:start + step]
        call -= call.reshape(-1, 2).mean(axis=0)
    return out


def split_geometry(card, split, grouping, *, model: str, positions: str,
                   batch_size: int | None = None) -> SplitGeometry | None:
    """Geometry of one model on one split; None when the model has no reassembly layer or
    takes no positions (then nothing can push patches off the canvas). ``batch_size`` is the
    groups per call the model is streamed at (used when its reassembly centres each call)."""
    canvas = canvas_of(card)
    if canvas is None or not getattr(card, "takes_positions", False):
        return None
    offsets = fed_offsets(split, grouping, positions)
    centring = canvas.type in CENTRING_REASSEMBLY_TYPES and batch_size is not None
    placed = centred_per_call(offsets, batch_size) if centring else offsets
    return SplitGeometry(model=model, split=split.name, positions=positions, canvas=canvas,
                         offsets=offsets, visible_fraction=visible_fraction(placed, canvas.patch),
                         coverage=coverage_check(split), centred_per_call=centring,
                         batch_size=batch_size if centring else None)


# ---- positions against the data: are x and y the right way round? ---------------------------

SWAP_CORRELATION_GAIN = THRESHOLDS.swap_correlation_gain
SWAP_CORRELATION_MIN = THRESHOLDS.swap_correlation_min


@dataclass
class AxesCheck:
    """How well the positions explain the measured diffraction, as stored and with x/y swapped.

    For a sample of patterns, the far-field amplitude |FFT(probe * object patch)| is computed at
    (x, y) and at (y, x) (patch centred on the position, x = column) and correlated with the
    measured amplitude after removing the mean pattern of each set (what remains depends on
    where the probe sits on the object). Needs ``objectGuess``.
    """

    split: str
    n_patterns: int
    correlation_as_stored: float
    correlation_swapped: float

    @property
    def swapped(self) -> bool:
        return (self.correlation_swapped >= SWAP_CORRELATION_MIN
                and self.correlation_swapped >= self.correlation_as_stored + SWAP_CORRELATION_GAIN)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "n_patterns": self.n_patterns,
                "correlation_as_stored": finite_or_none(self.correlation_as_stored),
                "correlation_swapped": finite_or_none(self.correlation_swapped), "swapped": self.swapped}


def _patches_at(obj: np.ndarray, columns: np.ndarray, rows: np.ndarray, N: int) -> np.ndarray:
    """N x N patches centred on (column, row), nearest pixel (rounding is fine for a correlation)."""
    top = np.rint(rows - N / 2).astype(np.int64)
    left = np.rint(columns - N / 2).astype(np.int64)
    r = top[:, None] + np.arange(N)[None, :]
    c = left[:, None] + np.arange(N)[None, :]
    return obj[r[:, :, None], c[:, None, :]]


def _centred_correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else math.nan


def axes_check(split, *, n_patterns: int = 32, seed: int = 0) -> AxesCheck | None:
    """Compare the measured diffraction with the far field predicted at (x, y) and at (y, x).

    Returns None when the split has no object, or too few positions fit on it both ways round.
    """
    if split.object is None:
        return None
    obj = np.asarray(split.object)
    height, width = obj.shape[:2]
    N = split.N
    x, y = np.asarray(split.xcoords, np.float64), np.asarray(split.ycoords, np.float64)

    def fits(cols, rows):
        return ((cols - N / 2 >= 0) & (cols + N / 2 <= width - 1)
                & (rows - N / 2 >= 0) & (rows + N / 2 <= height - 1))

    usable = np.flatnonzero(fits(x, y) & fits(y, x))
    if usable.size < 4:
        return None
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(usable, size=min(n_patterns, usable.size), replace=False))
    measured = split.diffraction_batch(chosen).astype(np.float64)
    probe = np.asarray(split.probe)

    def far_field(cols, rows):
        exit_waves = probe[None] * _patches_at(obj, cols, rows, N)
        return np.abs(np.fft.fftshift(np.fft.fft2(exit_waves), axes=(-2, -1)))

    return AxesCheck(split=split.name, n_patterns=int(chosen.size),
                     correlation_as_stored=_centred_correlation(far_field(x[chosen], y[chosen]), measured),
                     correlation_swapped=_centred_correlation(far_field(y[chosen], x[chosen]), measured))
