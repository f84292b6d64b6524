"""Stitching, alignment and image-quality metrics that compare a reconstruction with ground truth.

Pure numpy / scipy / scikit-image (no TensorFlow); rows come out in PtychoPINN's metrics CSV layout.

Public API
----------
``stitch_patches(patches, positions_xy, *, crop=20, placement="bilinear") -> Stitched``
    Average object patches into one canvas by scan position (central crop, overlap count).
``StreamingStitcher(all_positions_xy, patch_size, *, crop=20, placement="bilinear")``
    The same stitching fed batch by batch (``add(patches, positions_xy)``, ``result()``).
``align_to_ground_truth(recon, ground_truth_object, positions_xy=None, patch_size=None, *,
origin=None, upsample_factor=50, border=None) -> Aligned``
    Crop the ground truth to the reconstructed region, register sub-pixel, remove the global
    phase and a phase plane, crop the border; records the offsets (dy, dx).
``mae(pred, gt)``, ``mse(pred, gt)``, ``psnr(pred, gt, data_range)``
    Pixel errors; PSNR always with an explicit data range (never an implied 255).
``ssim(a, b, data_range)``
    SSIM (Wang et al. 2004), equal to scikit-image's with Gaussian weights, sigma 1.5,
    population covariance.
``ms_ssim(a, b, data_range) -> (value, n_scales)``
    Multi-scale SSIM (Wang et al. 2003) with the scale rule of ``ms_ssim_scale_count``.
``frc(a, b) -> FRCResult``
    Fourier ring correlation with 0.5, 1/7, half-bit and 1-bit thresholds, crossings, area.
``evaluate_reconstruction(label, recon_complex_2d, gt_object_complex, *, positions_xy=None,
patch_size=None, origin=None, ...) -> ModelMetrics``
    The whole pipeline for one model: align, amplitude/phase metrics, sanity flags.
``evaluate_patches(label, patches, positions_xy, gt_object, *, crop=20, ...) -> ModelMetrics``
    ``stitch_patches`` then ``evaluate_reconstruction``.
``evaluate_stitched(label, stitched, gt_object, ...) -> ModelMetrics``
    ``evaluate_reconstruction`` of a stitched canvas on its largest fully covered rectangle.
``empty_metrics(label, reason) -> ModelMetrics`` and ``empty_rows(label, reason)``
    The record of a model that failed or was skipped: empty cells, the reason kept.

``ModelMetrics.rows()`` gives tidy rows ``model,metric,amplitude,phase,value`` (``CSV_COLUMNS``),
``ModelMetrics.frc_rows()`` gives ``model,frequency_bin,amplitude_frc,phase_frc``
(``FRC_CSV_COLUMNS``), ``ModelMetrics.to_dict()`` a JSON-safe dict, ``ModelMetrics.flags`` the
sanity flags ``{flag, component, value, message}`` that the diagnosis turns into
``metric-degenerate`` findings.

Conventions
-----------
Positions are object pixels, ``[x, y]`` with x the column and y the row. A patch at (x, y) shows
object rows ``y - N//2 + i`` and columns ``x - N//2 + j`` (the patch ``obj[y-N//2 : y-N//2+N,
x-N//2 : x-N//2+N]`` for integer positions). Image arrays are indexed ``[row, column]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ptytui.core.jsonable import json_ready
from ptytui.errors import InputError

# --- constants that define the metrics (one place) -------------------------------------------

#: Columns of the metrics CSV, as PtychoPINN's comparison script writes it.
CSV_COLUMNS = ("model", "metric", "amplitude", "phase", "value")
#: Columns of the FRC-curve CSV.
FRC_CSV_COLUMNS = ("model", "frequency_bin", "amplitude_frc", "phase_frc")

#: SSIM (Wang et al. 2004): Gaussian window sigma, truncated at 3.5 sigma = 11 taps.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_WINDOW = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11, as scipy.ndimage sizes it
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: MS-SSIM (Wang et al. 2003) scale weights, finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

#: Registration upsampling (1/50 px precision).
DEFAULT_UPSAMPLE_FACTOR = 50
#: Central crop of each patch before stitching, in pixels.
DEFAULT_STITCH_CROP = 20

#: Sanity thresholds.
SSIM_DEGENERATE_BELOW = 0.05
REGISTRATION_LARGE_FRACTION = 0.25  # a shift beyond this fraction of the image is suspect
_MAX_REFINEMENT_PX = 1.5  # complex refinement may move the amplitude estimate at most this far

#: FRC thresholds, by the name used in result dicts and CSV rows.
FRC_THRESHOLD_NAMES = ("frc50", "frc_1over7", "frc_halfbit", "frc_onebit")

#: Metric rows carrying an amplitude and a phase cell, in CSV order.
_COMPONENT_ROWS = (
    "mae", "mse", "psnr", "psnr_data_range", "ssim", "ms_ssim", "ms_ssim_scales",
    "frc50", "frc_1over7", "frc_halfbit", "frc_onebit", "frc_auc",
)
#: Metric rows carrying one ``value`` cell, in CSV order.
_SCALAR_ROWS = (
    "amplitude_scale_factor", "amplitude_rescaled",
    "registration_offset_dy", "registration_offset_dx", "computation_time_s",
)


# --- stitching ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stitched:
    """Patches averaged into one canvas.

    Attributes
    ----------
    canvas : ndarray (H, W)
        Overlap-averaged object (complex when the patches are); 0 where no patch reached.
    weights : ndarray (H, W) float64
        How many patches covered each pixel (fractional with bilinear placement).
    origin : (float, float)
        Object coordinates (row, column) of canvas pixel (0, 0), from the absolute positions.
    crop : int
        Side M of the central crop actually used, min(crop, N).
    placement : str
        "bilinear" or "nearest".
    """

    canvas: np.ndarray
    weights: np.ndarray
    origin: tuple[float, float]
    crop: int
    placement: str

    @property
    def covered_fraction(self) -> float:
        """Fraction of canvas pixels that at least part of a patch reached."""
        return float(np.mean(self.weights > 0))


def _as_patch_stack(patches: Any, where: str) -> np.ndarray:
    array = np.asarray(patches)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1] != array.shape[2] or array.shape[0] == 0:
        raise InputError(where, "patches (B, N, N) or (B, N, N, 1)",
                         f"shape {tuple(np.shape(patches))}")
    return array


def _as_positions(positions_xy: Any, count: int | None, where: str) -> np.ndarray:
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or positions.shape[0] == 0 or (
            count is not None and positions.shape[0] != count):
        want = f"({count}, 2)" if count is not None else "(B, 2)"
        raise InputError(where, f"positions_xy {want} [x, y] in object pixels",
                         f"shape {tuple(np.shape(positions_xy))}")
    if not np.all(np.isfinite(positions)):
        raise InputError(where, "finite positions", "NaN or Inf in positions_xy")
    return positions


def stitch_patches(patches: Any, positions_xy: Any, *, crop: int = DEFAULT_STITCH_CROP,
                   placement: str = "bilinear") -> Stitched:
    """Average object patches into one canvas by scan position.

    Each N x N patch is cropped to its central M x M (M = min(crop, N)), the offsets are taken
    relative to the centre of mass of the positions, every crop is placed on a canvas of
    M + 2*ceil(max |offset|) pixels per axis and the sum is divided by the same placement of
    ones (the overlap count). The canvas is sized per axis, so a square scan gives the square
    canvas of the single-max rule and a rectangular scan wastes no empty band.

    Parameters
    ----------
    patches : array (B, N, N) or (B, N, N, 1), real or complex
        Object patches, one per scan position.
    positions_xy : array (B, 2)
        Absolute scan positions in object pixels, [x, y] with x the column.
    crop : int
        Side M of the central crop, in pixels (20 by default, as PtychoPINN's stitching).
    placement : {"bilinear", "nearest"}
        "bilinear" splats each crop over the four nearest integer placements with bilinear
        weights (sub-pixel positions keep their fraction); "nearest" rounds each placement to
        the nearest pixel (half up).

    Returns
    -------
    Stitched
        Canvas, overlap weights, and the object (row, column) of canvas pixel (0, 0).

    See Also
    --------
    StreamingStitcher : the same placement, fed batch by batch (bounded memory).
    """
    where = "stitch_patches"
    stack = _as_patch_stack(patches, where)
    positions = _as_positions(positions_xy, stack.shape[0], where)
    stitcher = StreamingStitcher(positions, stack.shape[1], crop=crop, placement=placement)
    stitcher.add(stack, positions)
    return stitcher.result()


class StreamingStitcher:
    """``stitch_patches`` fed batch by batch: only the canvas sums stay in memory.

    The canvas geometry (centre of mass of the positions, reach, size) depends on every position,
    so all positions are given up front (they are small: (M, 2)); patches then arrive in batches
    with their own positions, in any order, and ``result()`` gives exactly what
    ``stitch_patches`` gives for all patches at once (up to float summation order).

    Parameters
    ----------
    all_positions_xy : array (M, 2)
        Every absolute position [x, y] (object pixels) that ``add`` will be given.
    patch_size : int
        N, the side of the square patches.
    crop, placement
        As in ``stitch_patches``.

    Examples
    --------
    >>> stitcher = StreamingStitcher(positions, N)        # doctest: +SKIP
    >>> for patches, xy in batches: stitcher.add(patches, xy)
    >>> stitched = stitcher.result()
    """

    def __init__(self, all_positions_xy: Any, patch_size: int, *, crop: int = DEFAULT_STITCH_CROP,
                 placement: str = "bilinear"):
        where = "StreamingStitcher"
        positions = _as_positions(all_positions_xy, None, where)
        if placement not in ("bilinear", "nearest"):
            raise InputError(where, "placement 'bilinear' or 'nearest'", repr(placement))
        if int(crop) < 1:
            raise InputError(where, "crop >= 1 pixel", repr(crop))
        if int(patch_size) < 1:
            raise InputError(where, "patch_size >= 1 pixel", repr(patch_size))
        self.patch_size = int(patch_size)
        self.placement = placement
        self.side = min(int(crop), self.patch_size)
        self.start = (self.patch_size - self.side) // 2
        self.centre = positions.mean(axis=0)  # [x, y]
        offsets = positions - self.centre
        self.reach_x = int(math.ceil(np.max(np.abs(offsets[:, 0]))))
        self.reach_y = int(math.ceil(np.max(np.abs(offsets[:, 1]))))
        self.height = self.side + 2 * self.reach_y
        self.width = self.side + 2 * self.reach_x
        self._real = np.zeros(self.height * self.width, dtype=np.float64)
        self._imag = np.zeros(self.height * self.width, dtype=np.float64)
        self._weights = np.zeros(self.height * self.width, dtype=np.float64)
        self._complex = False
        self.count = 0
        grid_r, grid_c = np.meshgrid(np.arange(self.side), np.arange(self.side), indexing="ij")
        self._grid = grid_r * self.width + grid_c  # flat canvas index of each crop pixel at (0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the canvas in pixels."""
        return (self.height, self.width)

    def add(self, patches: Any, positions_xy: Any) -> "StreamingStitcher":
        """Place one batch of patches (B, N, N) or (B, N, N, 1) at their absolute positions (B, 2).

        Positions must lie within the range given to the constructor (up to rounding noise).
        """
        where = "StreamingStitcher.add"
        stack = _as_patch_stack(patches, where)
        if stack.shape[1] != self.patch_size:
            raise InputError(where, f"patches of {self.patch_size} x {self.patch_size} px",
                             f"{stack.shape[1]} x {stack.shape[2]}")
        positions = _as_positions(positions_xy, stack.shape[0], where)
        crops = stack[:, self.start:self.start + self.side, self.start:self.start + self.side]
        is_complex = np.iscomplexobj(crops)
        crops = crops.astype(np.complex128 if is_complex else np.float64)
        self._complex = self._complex or is_complex
        offsets = positions - self.centre
        # Top-left corner of each crop on the canvas (continuous); clipped so rounding noise in
        # reach + offset never steps off the canvas.
        top = np.clip(self.reach_y + offsets[:, 1], 0.0, 2.0 * self.reach_y)
        left = np.clip(self.reach_x + offsets[:, 0], 0.0, 2.0 * self.reach_x)
        if self.placement == "nearest":
            rows0 = np.floor(top + 0.5).astype(np.int64)
            cols0 = np.floor(left + 0.5).astype(np.int64)
            terms = [(rows0, cols0, np.ones(stack.shape[0]))]
        else:
            rows0 = np.floor(top).astype(np.int64)
            cols0 = np.floor(left).astype(np.int64)
            frac_r, frac_c = top - rows0, left - cols0
            terms = [
                (rows0 + dr, cols0 + dc, wr * wc)
                for dr, wr in ((0, 1.0 - frac_r), (1, frac_r))
                for dc, wc in ((0, 1.0 - frac_c), (1, frac_c))
            ]
        for rows, cols, term_weight in terms:
            used = term_weight > 0  # a zero-weight term may sit one pixel past the canvas edge
            if not np.any(used):
                continue
            flat = ((rows[used] * self.width + cols[used])[:, None, None] + self._grid).ravel()
            w = np.broadcast_to(term_weight[used, None, None], (int(used.sum()), self.side, self.side)).ravel()
            values = (crops[used] * term_weight[used, None, None]).ravel()
            # Sum over the span this batch touches only: a batch of neighbouring patches covers a
            # band of the canvas, so a large canvas costs no full-size temporary per batch.
            low, high = int(flat.min()), int(flat.max()) + 1
            local = flat - low
            span = slice(low, high)
            self._weights[span] += np.bincount(local, weights=w, minlength=high - low)
            if is_complex:
                self._real[span] += np.bincount(local, weights=values.real, minlength=high - low)
                self._imag[span] += np.bincount(local, weights=values.imag, minlength=high - low)
            else:
                self._real[span] += np.bincount(local, weights=values, minlength=high - low)
        self.count += int(stack.shape[0])
        return self

    def result(self) -> Stitched:
        """The overlap-averaged canvas so far (complex if any complex patch was added)."""
        total = (self._real + 1j * self._imag) if self._complex else self._real.copy()
        total = total.reshape(self.height, self.width)
        weights = self._weights.reshape(self.height, self.width).copy()
        canvas = np.zeros_like(total)
        covered = weights > 0
        canvas[covered] = total[covered] / weights[covered]
        # Crop pixel j of a patch at y shows object row y + (start - N//2) + j, and sits on canvas
        # row top + j, so canvas row 0 is object row centre_y + (start - N//2) - reach_y.
        shift_in_patch = self.start - self.patch_size // 2
        origin = (float(self.centre[1] + shift_in_patch - self.reach_y),
                  float(self.centre[0] + shift_in_patch - self.reach_x))
        return Stitched(canvas=canvas, weights=weights, origin=origin, crop=self.side,
                        placement=self.placement)


def largest_covered_rectangle(covered: Any) -> tuple[int, int, int, int]:
    """Largest axis-aligned rectangle of True pixels: (row0, col0, height, width).

    Used to evaluate a stitched canvas only where patches reached: an uncovered pixel is 0, not
    a prediction, and holes also throw off the registration. (0, 0, 0, 0) when nothing is True.
    """
    mask = np.asarray(covered, dtype=bool)
    heights = np.zeros(mask.shape[1] + 1, dtype=np.int64)  # trailing 0 flushes the stack
    best = (0, 0, 0, 0)
    for row in range(mask.shape[0]):
        heights[:-1] = np.where(mask[row], heights[:-1] + 1, 0)
        stack: list[int] = []  # columns with increasing heights
        for col in range(len(heights)):
            while stack and heights[stack[-1]] >= heights[col]:
                top = stack.pop()
                height = int(heights[top])
                start = stack[-1] + 1 if stack else 0
                width = col - start
                if height * width > best[2] * best[3]:
                    best = (row - height + 1, start, height, width)
            stack.append(col)
    return best


# --- alignment ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Aligned:
    """A reconstruction registered to ground truth, both cropped to the compared region.

    Attributes
    ----------
    pred, gt : ndarray (h, w) complex128
        Aligned prediction (shifted, global phase and phase plane removed) and ground truth.
    offset_dy, offset_dx : float
        Shift in pixels applied to the prediction to register it with the ground truth
        (scikit-image's convention: ``ndimage.shift(pred, (dy, dx))`` matches gt).
    registered_on : str
        "amplitude+complex" (amplitude, then complex refinement), "amplitude", "complex", or
        "skipped: <why>" (then the offsets are 0).
    registration_error : float
        scikit-image's translation-invariant normalized RMS error (NaN when skipped).
    border : int
        Pixels cropped from each side after the shift.
    window : (int, int, int, int)
        Compared region in ground-truth pixels: (row0, col0, height, width).
    phase_offset : float
        Removed phase at the centre of the region, radians (wrapped to [-pi, pi)).
    phase_gradient : (float, float)
        Removed phase slope (d/drow, d/dcolumn), radians per pixel (0 when no plane removed).
    """

    pred: np.ndarray
    gt: np.ndarray
    offset_dy: float
    offset_dx: float
    registered_on: str
    registration_error: float
    border: int
    window: tuple[int, int, int, int]
    phase_offset: float
    phase_gradient: tuple[float, float]


def _as_image(array: Any, where: str, what: str) -> np.ndarray:
    image = np.asarray(array)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2 or min(image.shape) == 0:
        raise InputError(where, f"{what} as a 2-D array", f"shape {tuple(np.shape(array))}")
    return image


def _window_origin(recon_shape, gt_shape, positions, patch_size, origin):
    """Ground-truth (row, col) of recon pixel (0, 0), and an optional scanned box (rows, cols)."""
    if origin is not None:
        return (int(math.floor(origin[0] + 0.5)), int(math.floor(origin[1] + 0.5))), None
    if positions is not None and tuple(recon_shape) != tuple(gt_shape):
        # A canvas stitched around the centre of mass of the positions (see stitch_patches).
        centre_x, centre_y = positions.mean(axis=0)
        return (int(math.floor(centre_y - recon_shape[0] / 2 + 0.5)),
                int(math.floor(centre_x - recon_shape[1] / 2 + 0.5))), None
    if tuple(recon_shape) == tuple(gt_shape):
        box = None
        if positions is not None and patch_size is not None:
            half = int(patch_size) // 2
            rows = (int(math.floor(positions[:, 1].min())) - half,
                    int(math.ceil(positions[:, 1].max())) - half + int(patch_size))
            cols = (int(math.floor(positions[:, 0].min())) - half,
                    int(math.ceil(positions[:, 0].max())) - half + int(patch_size))
            box = (rows, cols)
        return (0, 0), box
    # Different shapes and nothing to place them by: compare the centred common region.
    return ((gt_shape[0] - recon_shape[0]) // 2, (gt_shape[1] - recon_shape[1]) // 2), None


def _flat(image: np.ndarray) -> bool:
    peak = float(np.max(np.abs(image))) if image.size else 0.0
    return peak == 0.0 or float(np.ptp(image)) <= 1e-6 * peak


def _wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def _remove_phase(pred: np.ndarray, gt: np.ndarray, plane: bool):
    """Remove from pred the global phase (and a phase plane) relative to gt."""
    product = pred * np.conj(gt)
    magnitude = np.abs(product)
    if not np.any(magnitude > 0):
        return pred, 0.0, (0.0, 0.0)
    h, w = pred.shape
    rows = np.arange(h, dtype=np.float64)[:, None]
    cols = np.arange(w, dtype=np.float64)[None, :]
    centre_r, centre_c = (h - 1) / 2.0, (w - 1) / 2.0
    slope_r = slope_c = 0.0
    if plane:
        # Coarse ramp from the spectral peak first, so the least-squares fit below sees a
        # residual of well under a cycle and no 2*pi wraps.
        spectrum = np.abs(np.fft.fft2(product))
        peak_r, peak_c = np.unravel_index(int(np.argmax(spectrum)), spectrum.shape)
        slope_r = 2 * np.pi * float(np.fft.fftfreq(h)[peak_r])
        slope_c = 2 * np.pi * float(np.fft.fftfreq(w)[peak_c])
    ramp = slope_r * (rows - centre_r) + slope_c * (cols - centre_c)
    residual = product * np.exp(-1j * ramp)
    offset = float(np.angle(residual.sum()))
    if plane:
        difference = np.angle(residual * np.exp(-1j * offset))
        used = magnitude > 0
        weight = np.sqrt(magnitude[used])  # amplitude-weighted: dark pixels have noisy phase
        rr = np.broadcast_to(rows - centre_r, (h, w))[used]
        cc = np.broadcast_to(cols - centre_c, (h, w))[used]
        design = np.stack([np.ones_like(rr), rr, cc], axis=1) * weight[:, None]
        (const, fine_r, fine_c), *_ = np.linalg.lstsq(design, difference[used] * weight, rcond=None)
        offset += float(const)
        slope_r += float(fine_r)
        slope_c += float(fine_c)
    plane_phase = offset + slope_r * (rows - centre_r) + slope_c * (cols - centre_c)
    corrected = pred * np.exp(-1j * plane_phase)
    return corrected, float(_wrap(offset)), (slope_r, slope_c)


def _flat_complex(image: np.ndarray) -> bool:
    peak = float(np.max(np.abs(image))) if image.size else 0.0
    return peak == 0.0 or float(np.max(np.abs(image - image.mean()))) <= 1e-6 * peak


def _register(pred: np.ndarray, gt: np.ndarray, register_on: str, upsample_factor: int):
    """Shift (dy, dx) that registers pred with gt, the registration error, and how it was found.

    "auto": amplitude first (blind to phase ramps and the global phase), then a complex
    refinement after removing the phase plane, because the amplitude of a shifted complex
    object is not exactly the shifted amplitude when the phase varies fast. A refinement
    that moves the amplitude estimate by more than ``_MAX_REFINEMENT_PX`` is rejected: the
    amplitude estimate is trusted over it.
    """
    from skimage.registration import phase_cross_correlation  # noqa: PLC0415 - slow to import

    pred_amp, gt_amp = np.abs(pred), np.abs(gt)
    if not np.any(pred_amp > 0):
        return (0.0, 0.0), float("nan"), "skipped: all-zero prediction"
    amplitude_usable = not (_flat(pred_amp) or _flat(gt_amp))
    complex_usable = not (_flat_complex(pred) or _flat_complex(gt))
    if not (amplitude_usable or complex_usable):
        return (0.0, 0.0), float("nan"), "skipped: images without contrast"

    shift, error, steps = np.zeros(2), float("nan"), []
    if amplitude_usable and register_on in ("auto", "amplitude"):
        # Plain cross-correlation (normalization=None), not the whitened phase correlation:
        # whitening weighs every frequency alike, so on a noisy reconstruction the noise decides
        # the peak (an ePIE reference 0.93-correlated with the truth in place registered 32 px off).
        found, error, _ = phase_cross_correlation(gt_amp, pred_amp, upsample_factor=upsample_factor,
                                                  normalization=None)
        shift, steps = np.asarray(found, dtype=np.float64), ["amplitude"]
    if complex_usable and (register_on in ("auto", "complex") or not amplitude_usable):
        # The phase plane is measured on the roughly aligned pair but removed from the original
        # prediction (a ramp commutes with a shift up to a constant phase), so the complex
        # correlation sees no interpolated pixels.
        moved = ndimage.shift(pred, shift, order=3, mode="nearest") if np.any(shift) else pred
        margin = int(math.ceil(np.max(np.abs(shift)))) + 1
        inner = (slice(margin, pred.shape[0] - margin), slice(margin, pred.shape[1] - margin))
        if min(pred.shape) - 2 * margin < 4:
            inner = (slice(None), slice(None))
        _, _, (slope_r, slope_c) = _remove_phase(moved[inner], gt[inner], plane=True)
        rows = np.arange(pred.shape[0])[:, None]
        cols = np.arange(pred.shape[1])[None, :]
        deramped = pred * np.exp(-1j * (slope_r * rows + slope_c * cols))
        found, complex_error, _ = phase_cross_correlation(gt, deramped, upsample_factor=upsample_factor,
                                                          normalization=None)
        found = np.asarray(found, dtype=np.float64)
        if not steps or np.max(np.abs(found - shift)) <= _MAX_REFINEMENT_PX:
            shift, error = found, float(complex_error)
            steps.append("complex")
    if not np.all(np.isfinite(shift)):
        return (0.0, 0.0), float("nan"), "skipped: registration returned a non-finite shift"
    return (float(shift[0]), float(shift[1])), float(error), "+".join(steps)


def align_to_ground_truth(recon: Any, ground_truth_object: Any, positions_xy: Any = None,
                          patch_size: int | None = None, *,
                          origin: tuple[float, float] | None = None,
                          upsample_factor: int = DEFAULT_UPSAMPLE_FACTOR,
                          border: int | None = None,
                          register_on: str = "auto",
                          remove_phase_plane: bool = True,
                          max_shift: float | None = None) -> Aligned:
    """Register a reconstruction to the ground-truth object and crop both to the compared region.

    Steps: (1) pick the ground-truth window the reconstruction covers; (2) sub-pixel
    registration with ``skimage.registration.phase_cross_correlation`` (``upsample_factor``
    50: 1/50 px); (3) shift the prediction (cubic spline, edge values repeated); (4) crop
    ``border`` pixels per side; (5) remove from the prediction the global phase and a
    least-squares phase plane relative to the ground truth (the ambiguities of ptychography).

    The window: with ``origin`` (a ``Stitched.origin``), recon pixel (0, 0) sits at that object
    (row, column). Else, with positions and a reconstruction smaller than the object, the
    reconstruction is a canvas centred on the centre of mass of the positions (as
    ``stitch_patches`` builds it). With the same shape as the object, both are compared in
    place, cropped to the scanned bounding box (positions +/- patch_size/2) when
    ``positions_xy`` and ``patch_size`` are given. Otherwise the centred common region is used.

    Parameters
    ----------
    recon : array (H, W), complex
        Reconstructed object (a stitched canvas or an iterative reconstruction).
    ground_truth_object : array (Hg, Wg), complex
        Full ground-truth object (``objectGuess``).
    positions_xy : array (B, 2), optional
        Absolute scan positions in object pixels, [x, y].
    patch_size : int, optional
        Patch side N in pixels, for the scanned bounding box.
    origin : (float, float), optional
        Object (row, column) of recon pixel (0, 0).
    upsample_factor : int
        Registration precision is 1/upsample_factor px.
    border : int, optional
        Pixels to crop per side after the shift. Default: ceil(max |shift|) + 1, reduced when
        needed so at least 11 x 11 px (one SSIM window) remain.
    register_on : {"auto", "amplitude", "complex"}
        What to correlate. "auto": amplitude (blind to phase ramps), then a complex refinement
        after removing the phase plane (exact for a shifted complex object). "amplitude" or
        "complex" use only that one; a flat amplitude falls back to complex. When the
        prediction is all zero or neither image has contrast, registration is skipped
        (offsets 0, said in ``registered_on``).
    remove_phase_plane : bool
        Remove a fitted phase plane; if False only the global phase offset is removed.
    max_shift : float, optional
        Largest registration shift (pixels, per axis) to accept. Use it when the placement is
        known (a stitched canvas with its ``origin``): a larger shift means the correlation
        locked onto a spurious peak of a poor reconstruction, so registration is skipped
        (offsets 0, ``registered_on`` says why) instead of misaligning the comparison.

    Returns
    -------
    Aligned
    """
    where = "align_to_ground_truth"
    pred = _as_image(recon, where, "reconstruction").astype(np.complex128)
    gt = _as_image(ground_truth_object, where, "ground-truth object").astype(np.complex128)
    if not np.all(np.isfinite(pred)):
        raise InputError(where, "a finite reconstruction", "NaN or Inf values",
                         hint="evaluate_reconstruction zeroes and flags them")
    if not np.all(np.isfinite(gt)):
        raise InputError(where, "a finite ground-truth object", "NaN or Inf values")
    if register_on not in ("auto", "amplitude", "complex"):
        raise InputError(where, "register_on 'auto', 'amplitude' or 'complex'", repr(register_on))
    positions = _as_positions(positions_xy, None, where) if positions_xy is not None else None

    (row0, col0), box = _window_origin(pred.shape, gt.shape, positions, patch_size, origin)
    # Overlap of the reconstruction with the object, in reconstruction pixels.
    r_start, r_stop = max(0, -row0), min(pred.shape[0], gt.shape[0] - row0)
    c_start, c_stop = max(0, -col0), min(pred.shape[1], gt.shape[1] - col0)
    if box is not None:
        r_start, r_stop = max(r_start, box[0][0]), min(r_stop, box[0][1])
        c_start, c_stop = max(c_start, box[1][0]), min(c_stop, box[1][1])
    if r_stop - r_start < 1 or c_stop - c_start < 1:
        raise InputError(where, "a reconstruction that overlaps the ground-truth object",
                         f"no overlap (recon {pred.shape} at object row {row0}, col {col0}; "
                         f"object {gt.shape})", hint="check positions_xy / origin")
    pred = pred[r_start:r_stop, c_start:c_stop]
    gt = gt[row0 + r_start:row0 + r_stop, col0 + c_start:col0 + c_stop]
    window_r, window_c = row0 + r_start, col0 + c_start

    shift, error, how = _register(pred, gt, register_on, upsample_factor)
    if max_shift is not None and max(abs(shift[0]), abs(shift[1])) > max_shift:
        how = (f"skipped: shift ({shift[0]:.2f}, {shift[1]:.2f}) px rejected, beyond max_shift "
               f"{max_shift:g} px for a known placement")
        shift, error = (0.0, 0.0), float("nan")
    if shift != (0.0, 0.0):
        pred = ndimage.shift(pred, shift, order=3, mode="nearest")

    h, w = pred.shape
    if border is None:
        border_px = int(math.ceil(max(abs(shift[0]), abs(shift[1])))) + 1
        border_px = min(border_px, max(0, (min(h, w) - SSIM_WINDOW) // 2))
    else:
        border_px = int(border)
        if border_px < 0 or 2 * border_px >= min(h, w):
            raise InputError(where, f"border between 0 and {(min(h, w) - 1) // 2} px",
                             f"border {border} on a {h} x {w} region")
    if border_px:
        pred = pred[border_px:h - border_px, border_px:w - border_px]
        gt = gt[border_px:h - border_px, border_px:w - border_px]

    pred, phase_offset, gradient = _remove_phase(pred, gt, remove_phase_plane)
    return Aligned(pred=pred, gt=gt, offset_dy=shift[0], offset_dx=shift[1], registered_on=how,
                   registration_error=error, border=border_px,
                   window=(window_r + border_px, window_c + border_px) + pred.shape,
                   phase_offset=phase_offset, phase_gradient=gradient)


def phase_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phase images (radians) of an aligned pair, free of spurious 2*pi jumps.

    The prediction's phase is written as gt phase + wrap(pred phase - gt phase), so a pixel whose
    phases agree across the -pi/pi cut is not counted as a 2*pi error. Zero-amplitude pixels
    have phase 0 (numpy's convention), so an all-zero prediction has phase 0, not the truth's.
    """
    gt_phase = np.angle(gt)
    return gt_phase + _wrap(np.angle(pred) - gt_phase), gt_phase


# --- pixel metrics -----------------------------------------------------------------------------

def _pair(a: Any, b: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2:
        raise InputError(where, "two 2-D images of the same shape",
                         f"shapes {np.shape(a)} and {np.shape(b)}")
    return first, second


def _check_range(data_range: Any, where: str) -> float:
    value = float(data_range)
    if not np.isfinite(value) or value <= 0:
        raise InputError(where, "data_range > 0 (max - min of the ground truth)", repr(data_range))
    return value


def mae(pred: Any, gt: Any) -> float:
    """Mean absolute error, in the images' units."""
    first, second = _pair(pred, gt, "mae")
    return float(np.mean(np.abs(first - second)))


def mse(pred: Any, gt: Any) -> float:
    """Mean squared error, in the images' units squared."""
    first, second = _pair(pred, gt, "mse")
    return float(np.mean((first - second) ** 2))


def psnr(pred: Any, gt: Any, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / MSE)``.

    Parameters
    ----------
    pred, gt : array (h, w)
    data_range : float
        The peak-to-peak range of the ground truth (max - min), in the images' units.
        Required: an implied 255 on data of order 1 inflates PSNR by ~48 dB.

    Returns
    -------
    float
        PSNR in dB; inf for identical images. Equals
        ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=data_range)``.
    """
    peak = _check_range(data_range, "psnr")
    error = mse(pred, gt)
    if error == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / error))


# --- SSIM and MS-SSIM --------------------------------------------------------------------------

def _gaussian(image: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")


def _ssim_terms(first: np.ndarray, second: np.ndarray, data_range: float):
    """Luminance map l and contrast-structure map c*s, without the window-radius border."""
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mean_a, mean_b = _gaussian(first), _gaussian(second)
    var_a = _gaussian(first * first) - mean_a * mean_a  # population covariance (Wang 2004)
    var_b = _gaussian(second * second) - mean_b * mean_b
    cov = _gaussian(first * second) - mean_a * mean_b
    luminance = (2 * mean_a * mean_b + c1) / (mean_a ** 2 + mean_b ** 2 + c1)
    contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
    pad = (SSIM_WINDOW - 1) // 2
    inner = (slice(pad, first.shape[0] - pad), slice(pad, first.shape[1] - pad))
    return luminance[inner], contrast_structure[inner]


def _check_ssim_size(shape, where: str) -> None:
    if min(shape) < SSIM_WINDOW:
        raise InputError(where, f"images at least {SSIM_WINDOW} x {SSIM_WINDOW} px "
                         f"(one Gaussian window)", f"{shape[0]} x {shape[1]}")


def ssim(a: Any, b: Any, data_range: float) -> float:
    """Structural similarity (Wang et al. 2004), the mean of the SSIM map.

    Gaussian window sigma 1.5 truncated to 11 taps, K1 0.01, K2 0.03, L = ``data_range``,
    population covariance; the 5-pixel border where the window leaves the image is ignored.
    This equals ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range)`` (float64 inputs).

    Parameters
    ----------
    a, b : array (h, w), h and w >= 11
    data_range : float
        L: max - min of the ground truth, in the images' units.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
    visibility to structural similarity", IEEE Trans. Image Process. 13(4), 600-612 (2004).
    """
    first, second = _pair(a, b, "ssim")
    peak = _check_range(data_range, "ssim")
    _check_ssim_size(first.shape, "ssim")
    luminance, contrast_structure = _ssim_terms(first, second, peak)
    return float(np.mean(luminance * contrast_structure, dtype=np.float64))


def ms_ssim_scale_count(shape: tuple[int, int], max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many MS-SSIM scales an image of this shape supports.

    Scale 1 is the image; each further scale halves it (floor) by 2 x 2 averaging. A scale is
    used when its smaller side is at least 11 px (one Gaussian window), up to 5 scales:
    sides 11-21 px give 1 scale, 22-43 give 2, 44-87 give 3, 88-175 give 4, 176 and up give 5.
    Returns 0 when even the image is smaller than 11 px.
    """
    side, count = min(shape), 0
    while count < max_scales and side >= SSIM_WINDOW:
        count += 1
        side //= 2
    return count


def _downsample(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    trimmed = image[:h, :w]  # an odd last row / column has no 2 x 2 partner
    return trimmed.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim(a: Any, b: Any, data_range: float) -> tuple[float, int]:
    """Multi-scale structural similarity (Wang et al. 2003) and the number of scales used.

    ``MS-SSIM = prod_{j<n} max(mean cs_j, 0)**w_j * max(mean(l_n * cs_n), 0)**w_n``: the
    contrast-structure term at every scale and luminance only at the coarsest scale n (whose
    term is the full SSIM there, as in Wang's reference implementation, so one scale gives
    exactly ``ssim``). Weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333 (finest first); with
    fewer scales (see ``ms_ssim_scale_count``) the first n weights are renormalized to sum to 1.
    Scales come from 2 x 2 block averaging. Negative terms are clipped to 0 (a fractional power
    of a negative number is undefined), so anti-correlated images score 0.

    Parameters
    ----------
    a, b : array (h, w), h and w >= 11
    data_range : float
        L: max - min of the ground truth, the same L at every scale.

    Returns
    -------
    (float, int)
        MS-SSIM value and the number of scales used.

    References
    ----------
    Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multiscale structural similarity for image quality
    assessment", 37th Asilomar Conf. Signals, Systems and Computers (2003).
    """
    first, second = _pair(a, b, "ms_ssim")
    peak = _check_range(data_range, "ms_ssim")
    _check_ssim_size(first.shape, "ms_ssim")
    n_scales = ms_ssim_scale_count(first.shape)
    weights = np.asarray(MS_SSIM_WEIGHTS[:n_scales])
    weights = weights / weights.sum()
    value = 1.0
    for scale in range(n_scales):
        luminance, contrast_structure = _ssim_terms(first, second, peak)
        if scale < n_scales - 1:
            term = float(np.mean(contrast_structure))
            first, second = _downsample(first), _downsample(second)
        else:
            term = float(np.mean(luminance * contrast_structure))
        value *= max(term, 0.0) ** float(weights[scale])
    return float(value), n_scales


# --- FRC -------------------------------------------------------------------------------------

def half_bit_threshold(n_per_ring: Any) -> np.ndarray:
    """Half-bit FRC threshold T(n) = (0.2071 + 1.9102/sqrt(n)) / (1.2071 + 0.9102/sqrt(n)).

    n is the number of pixels in the ring (van Heel & Schatz 2005).
    """
    root = np.sqrt(np.maximum(np.asarray(n_per_ring, dtype=np.float64), 1.0))
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def one_bit_threshold(n_per_ring: Any) -> np.ndarray:
    """1-bit FRC threshold T(n) = (0.5 + 2.4142/sqrt(n)) / (1.5 + 1.4142/sqrt(n))."""
    root = np.sqrt(np.maximum(np.asarray(n_per_ring, dtype=np.float64), 1.0))
    return (0.5 + 2.4142 / root) / (1.5 + 1.4142 / root)


@dataclass(frozen=True)
class FRCCrossing:
    """Where an FRC curve first falls below a threshold.

    Attributes
    ----------
    ring : float
        Crossing in ring units (linear interpolation between the rings either side); the
        Nyquist ring when the curve never falls below the threshold.
    fraction_of_nyquist : float
        ``ring / nyquist_ring``.
    crossed : bool
        False when the curve stays above the threshold up to Nyquist.
    """

    ring: float
    fraction_of_nyquist: float
    crossed: bool


def frc_crossing(curve: Any, threshold: Any) -> FRCCrossing:
    """First crossing of ``curve`` below ``threshold``, interpolated, searched from ring 1.

    Ring 0 (the mean) is only the interpolation anchor. A curve already below at ring 1
    crosses at a ring <= 1: correlation lost at once.
    """
    values = np.asarray(curve, dtype=np.float64)
    limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), values.shape)
    nyquist = len(values) - 1
    margin = values - limit
    for ring in range(1, len(values)):
        if margin[ring] < 0:
            before = margin[ring - 1]
            step = before / (before - margin[ring]) if before > 0 else 0.0
            position = ring - 1 + float(np.clip(step, 0.0, 1.0))
            return FRCCrossing(position, position / nyquist, True)
    return FRCCrossing(float(nyquist), 1.0, False)


@dataclass(frozen=True)
class FRCResult:
    """Fourier ring correlation of two images.

    Attributes
    ----------
    rings : ndarray (K,) int
        Ring index k = 0 .. Nyquist (S//2): pixels whose spatial frequency radius, in FFT index
        units, rounds to k.
    frequencies : ndarray (K,)
        The same as a fraction of Nyquist, k / (S//2).
    curve : ndarray (K,)
        Re(sum F_a conj F_b) / sqrt(sum |F_a|^2 sum |F_b|^2) per ring; 0 where a ring holds no
        power in either image.
    n_per_ring : ndarray (K,) int
        Pixels per ring.
    thresholds : dict[str, ndarray]
        "frc50" (0.5), "frc_1over7" (1/7), "frc_halfbit", "frc_onebit", one value per ring.
    crossings : dict[str, FRCCrossing]
        First crossing of each threshold.
    auc : float
        Area under the curve against fraction of Nyquist (trapezoid over 0..1; 1 = perfect).
    size : int
        Side S of the square crop the FRC was computed on.
    """

    rings: np.ndarray
    frequencies: np.ndarray
    curve: np.ndarray
    n_per_ring: np.ndarray
    thresholds: dict
    crossings: dict
    auc: float
    size: int


def _centre_square(image: np.ndarray) -> np.ndarray:
    side = min(image.shape)
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[top:top + side, left:left + side]


def frc(a: Any, b: Any) -> FRCResult:
    """Fourier ring correlation of two images, on the largest centred square crop.

    Rings have width 1 in FFT index units (radius rounded to the nearest integer), from ring 0
    (the mean) up to the Nyquist ring S//2; the corners beyond Nyquist are left out. The images
    are not windowed: edge discontinuities add correlated high-frequency power.

    Parameters
    ----------
    a, b : array (h, w), real or complex, same shape, min side >= 2

    Returns
    -------
    FRCResult
        Curve, pixels per ring, thresholds (0.5, 1/7, half-bit, 1-bit), their interpolated
        first crossings and the area under the curve.

    References
    ----------
    M. van Heel, M. Schatz, "Fourier shell correlation threshold criteria", J. Struct. Biol.
    151, 250-262 (2005).
    """
    first, second = np.asarray(a), np.asarray(b)
    if first.shape != second.shape or first.ndim != 2 or min(first.shape) < 2:
        raise InputError("frc", "two 2-D images of the same shape, at least 2 x 2",
                         f"shapes {np.shape(a)} and {np.shape(b)}")
    first, second = _centre_square(first), _centre_square(second)
    side = first.shape[0]
    spectrum_a = np.fft.fftshift(np.fft.fft2(first))
    spectrum_b = np.fft.fftshift(np.fft.fft2(second))
    index = np.arange(side) - side // 2  # fftshift puts frequency 0 at index side // 2
    radius = np.hypot(index[:, None], index[None, :])
    ring_of_pixel = np.floor(radius + 0.5).astype(np.int64)
    nyquist = side // 2
    inside = ring_of_pixel <= nyquist
    rings = ring_of_pixel[inside]
    cross = np.bincount(rings, weights=np.real(spectrum_a * np.conj(spectrum_b))[inside],
                        minlength=nyquist + 1)
    power_a = np.bincount(rings, weights=(np.abs(spectrum_a) ** 2)[inside], minlength=nyquist + 1)
    power_b = np.bincount(rings, weights=(np.abs(spectrum_b) ** 2)[inside], minlength=nyquist + 1)
    n_per_ring = np.bincount(rings, minlength=nyquist + 1)
    denominator = np.sqrt(power_a * power_b)
    curve = np.zeros(nyquist + 1)
    has_power = denominator > 0
    curve[has_power] = cross[has_power] / denominator[has_power]

    ring_index = np.arange(nyquist + 1)
    frequencies = ring_index / float(nyquist)
    thresholds = {
        "frc50": np.full(nyquist + 1, 0.5),
        "frc_1over7": np.full(nyquist + 1, 1.0 / 7.0),
        "frc_halfbit": half_bit_threshold(n_per_ring),
        "frc_onebit": one_bit_threshold(n_per_ring),
    }
    crossings = {name: frc_crossing(curve, limit) for name, limit in thresholds.items()}
    auc = float(np.trapezoid(curve, frequencies))
    return FRCResult(rings=ring_index, frequencies=frequencies, curve=curve,
                     n_per_ring=n_per_ring, thresholds=thresholds, crossings=crossings,
                     auc=auc, size=side)


# --- one model's metrics ---------------------------------------------------------------------

def _flag(flag: str, component: str, value: Any, message: str) -> dict:
    return {"flag": flag, "component": component, "value": value, "message": message}


@dataclass
class ComponentMetrics:
    """Metrics of one component (amplitude or phase) of one model.

    ``data_range`` is the L used by PSNR, SSIM and MS-SSIM (max - min of the ground truth
    unless flagged ``zero-data-range``). Metrics that could not be computed are NaN and flagged.
    """

    mae: float
    mse: float
    psnr: float
    data_range: float
    ssim: float
    ms_ssim: float
    ms_ssim_scales: int
    frc: FRCResult | None

    def cell(self, metric: str) -> Any:
        """The value of one CSV metric row for this component."""
        if metric == "psnr_data_range":
            return self.data_range
        if metric in FRC_THRESHOLD_NAMES:
            return self.frc.crossings[metric].ring if self.frc else float("nan")
        if metric == "frc_auc":
            return self.frc.auc if self.frc else float("nan")
        return getattr(self, metric)


@dataclass
class ModelMetrics:
    """Everything measured for one model against ground truth.

    ``amplitude`` / ``phase`` are None for a model that failed or was skipped (``reason`` says
    why). ``amplitude_scale_factor`` = mean(gt amplitude) / mean(pred amplitude) over the
    compared region; ``amplitude_rescaled`` says whether the amplitude metrics used the
    prediction multiplied by it (PtychoPINN's comparability rule; never when it is not finite).
    """

    label: str
    amplitude: ComponentMetrics | None = None
    phase: ComponentMetrics | None = None
    offset_dy: float | None = None
    offset_dx: float | None = None
    amplitude_scale_factor: float | None = None
    amplitude_rescaled: bool | None = None
    computation_time_s: float | None = None
    flags: list = field(default_factory=list)
    reason: str | None = None
    registered_on: str | None = None
    registration_error: float | None = None
    window: tuple | None = None
    border: int | None = None
    phase_offset: float | None = None
    phase_gradient: tuple | None = None
    covered_fraction: float | None = None
    evaluation_time_s: float | None = None

    def _scalar(self, metric: str) -> Any:
        value = {
            "amplitude_scale_factor": self.amplitude_scale_factor,
            "amplitude_rescaled": None if self.amplitude_rescaled is None else int(self.amplitude_rescaled),
            "registration_offset_dy": self.offset_dy,
            "registration_offset_dx": self.offset_dx,
            "computation_time_s": self.computation_time_s,
        }[metric]
        return "" if value is None else value

    def rows(self) -> list[dict]:
        """Tidy rows in PtychoPINN's CSV layout ``model,metric,amplitude,phase,value``.

        Component metrics fill ``amplitude`` and ``phase`` (empty ``value``); the scalar rows
        (``amplitude_scale_factor``, ``amplitude_rescaled`` 1/0, ``registration_offset_dy``,
        ``registration_offset_dx``, ``computation_time_s``) fill ``value``. ``frc50`` and the
        other crossings are in ring units; ``psnr_data_range`` is the peak PSNR used. A model
        without metrics has empty cells.
        """
        rows = []
        for metric in _COMPONENT_ROWS:
            amplitude = self.amplitude.cell(metric) if self.amplitude else ""
            phase = self.phase.cell(metric) if self.phase else ""
            rows.append({"model": self.label, "metric": metric, "amplitude": amplitude,
                         "phase": phase, "value": ""})
        for metric in _SCALAR_ROWS:
            rows.append({"model": self.label, "metric": metric, "amplitude": "", "phase": "",
                         "value": self._scalar(metric)})
        return rows

    def frc_rows(self) -> list[dict]:
        """FRC curves as rows ``model,frequency_bin,amplitude_frc,phase_frc`` (bin = ring)."""
        if not (self.amplitude and self.phase and self.amplitude.frc and self.phase.frc):
            return []
        amp, pha = self.amplitude.frc, self.phase.frc
        return [{"model": self.label, "frequency_bin": int(ring),
                 "amplitude_frc": float(amp.curve[ring]), "phase_frc": float(pha.curve[ring])}
                for ring in amp.rings]

    def to_dict(self) -> dict:
        """JSON-safe dict: NaN becomes None, +/-inf the strings "inf" / "-inf"."""
        def component(metrics: ComponentMetrics | None):
            if metrics is None:
                return None
            out = {name: getattr(metrics, name) for name in
                   ("mae", "mse", "psnr", "data_range", "ssim", "ms_ssim", "ms_ssim_scales")}
            if metrics.frc is not None:
                result = metrics.frc
                out["frc"] = {
                    "size": result.size,
                    "rings": result.rings, "frequencies": result.frequencies,
                    "curve": result.curve, "n_per_ring": result.n_per_ring,
                    "thresholds": result.thresholds,
                    "crossings": {name: {"ring": c.ring, "fraction_of_nyquist": c.fraction_of_nyquist,
                                         "crossed": c.crossed} for name, c in result.crossings.items()},
                    "auc": result.auc,
                }
            return out

        record = {
            "model": self.label, "reason": self.reason,
            "amplitude": component(self.amplitude), "phase": component(self.phase),
            "registration_offset_dy": self.offset_dy, "registration_offset_dx": self.offset_dx,
            "registered_on": self.registered_on, "registration_error": self.registration_error,
            "amplitude_scale_factor": self.amplitude_scale_factor,
            "amplitude_rescaled": self.amplitude_rescaled,
            "computation_time_s": self.computation_time_s,
            "evaluation_time_s": self.evaluation_time_s,
            "window": self.window, "border": self.border,
            "phase_offset": self.phase_offset, "phase_gradient": self.phase_gradient,
            "covered_fraction": self.covered_fraction,
            "flags": self.flags,
        }
        return json_ready(record, infinity="text")



def _component(label: str, name: str, pred: np.ndarray, gt: np.ndarray, flags: list) -> ComponentMetrics:
    data_range = float(np.ptp(gt))
    if data_range <= 0:
        fallback = float(np.max(np.abs(gt)))
        fallback = fallback if fallback > 0 else 1.0
        flags.append(_flag("zero-data-range", name, fallback,
                           f"{label}: ground-truth {name} is constant, so max - min is 0; PSNR, "
                           f"SSIM and MS-SSIM use data_range = {fallback:g} instead"))
        data_range = fallback
    if min(gt.shape) >= SSIM_WINDOW:
        similarity = ssim(pred, gt, data_range)
        multi, scales = ms_ssim(pred, gt, data_range)
    else:
        similarity, multi, scales = float("nan"), float("nan"), 0
        flags.append(_flag("image-too-small", name, float(min(gt.shape)),
                           f"{label}: compared region {gt.shape[0]} x {gt.shape[1]} px is smaller "
                           f"than one {SSIM_WINDOW}-px SSIM window; SSIM and MS-SSIM not computed"))
    correlation = frc(pred, gt) if min(gt.shape) >= 2 else None
    metrics = ComponentMetrics(mae=mae(pred, gt), mse=mse(pred, gt), psnr=psnr(pred, gt, data_range),
                               data_range=data_range, ssim=similarity, ms_ssim=multi,
                               ms_ssim_scales=scales, frc=correlation)
    if np.isfinite(similarity) and similarity < SSIM_DEGENERATE_BELOW:
        flags.append(_flag("ssim-degenerate", name, similarity,
                           f"{label}: {name} SSIM {similarity:.4f} is below {SSIM_DEGENERATE_BELOW}: "
                           f"no structural agreement with ground truth"))
    if correlation is not None and correlation.crossings["frc50"].ring <= 1.0:
        ring = correlation.crossings["frc50"].ring
        flags.append(_flag("frc-lost-at-once", name, ring,
                           f"{label}: {name} FRC falls below 0.5 by the first ring (FRC50 = "
                           f"{ring:.2f}): correlation lost at once, not a resolution"))
    return metrics


def evaluate_reconstruction(label: str, recon_complex_2d: Any, gt_object_complex: Any, *,
                            positions_xy: Any = None, patch_size: int | None = None,
                            origin: tuple[float, float] | None = None,
                            rescale_amplitude: bool = True,
                            upsample_factor: int = DEFAULT_UPSAMPLE_FACTOR,
                            border: int | None = None,
                            register_on: str = "auto",
                            remove_phase_plane: bool = True,
                            max_shift: float | None = None,
                            computation_time_s: float | None = None) -> ModelMetrics:
    """Align one reconstruction to ground truth and measure amplitude and phase.

    Non-finite prediction pixels are set to 0 and flagged. After ``align_to_ground_truth``,
    amplitude metrics use the prediction times mean(gt)/mean(pred) when ``rescale_amplitude``
    (as PtychoPINN's comparison script does; the factor is recorded and never applied when it
    is infinite or NaN). Phase metrics use ``phase_pair``. Each component gets MAE, MSE, PSNR
    (data_range = max - min of the ground-truth component, recorded), SSIM, MS-SSIM and FRC.

    Parameters
    ----------
    label : str
        Model id for the rows ("PtychoPINN", "Baseline", "PtyChi", ...).
    recon_complex_2d : array (H, W) complex
    gt_object_complex : array (Hg, Wg) complex
    positions_xy, patch_size, origin, upsample_factor, border, register_on, remove_phase_plane, max_shift
        Passed to ``align_to_ground_truth``.
    rescale_amplitude : bool
    computation_time_s : float, optional
        The model's reconstruction time, reported in the ``computation_time_s`` row.

    Returns
    -------
    ModelMetrics
        With ``flags``: ``nonfinite-prediction``, ``all-zero-prediction``,
        ``scale-factor-nonfinite``, ``registration-skipped``, ``registration-large-shift``,
        ``zero-data-range``, ``image-too-small``, ``ssim-degenerate`` (SSIM < 0.05),
        ``frc-lost-at-once`` (FRC50 <= 1 ring), each ``{flag, component, value, message}``.
    """
    started = time.perf_counter()
    where = f"metrics for {label}"
    pred = _as_image(recon_complex_2d, where, "reconstruction").astype(np.complex128)
    truth = _as_image(gt_object_complex, where, "ground-truth object").astype(np.complex128)
    flags: list[dict] = []

    finite = np.isfinite(pred)
    if not np.all(finite):
        bad = float(1.0 - finite.mean())
        flags.append(_flag("nonfinite-prediction", "both", bad,
                           f"{label}: {bad:.2%} of prediction pixels are NaN/Inf; set to 0 for metrics"))
        pred = np.where(finite, pred, 0)
    if not np.any(pred != 0):
        flags.append(_flag("all-zero-prediction", "both", 0.0,
                           f"{label}: the prediction is all zero; metrics describe an empty image"))

    aligned = align_to_ground_truth(pred, truth, positions_xy, patch_size, origin=origin,
                                    upsample_factor=upsample_factor, border=border,
                                    register_on=register_on, remove_phase_plane=remove_phase_plane,
                                    max_shift=max_shift)
    if aligned.registered_on.startswith("skipped"):
        flags.append(_flag("registration-skipped", "both", None,
                           f"{label}: registration {aligned.registered_on}; offsets set to 0"
                           + ("; the placement from the scan positions was kept: if the reconstruction "
                              "looks displaced in reconstructions.png, check the positions' frame "
                              "(absolute vs relative, x/y order); otherwise it is too unlike the truth "
                              "to register" if "rejected" in aligned.registered_on else "")))
    largest_shift = max(abs(aligned.offset_dy), abs(aligned.offset_dx))
    if largest_shift > REGISTRATION_LARGE_FRACTION * min(aligned.gt.shape[0] + 2 * aligned.border,
                                                         aligned.gt.shape[1] + 2 * aligned.border):
        flags.append(_flag("registration-large-shift", "both", largest_shift,
                           f"{label}: registration moved the prediction by {largest_shift:.1f} px, "
                           f"over {REGISTRATION_LARGE_FRACTION:.0%} of the image: suspect a wrong "
                           f"registration or a misplaced reconstruction"))

    pred_amp, gt_amp = np.abs(aligned.pred), np.abs(aligned.gt)
    mean_pred, mean_gt = float(pred_amp.mean()), float(gt_amp.mean())
    if mean_pred > 0:
        factor = mean_gt / mean_pred
    else:
        factor = float("inf") if mean_gt > 0 else float("nan")
    rescaled = False
    if not np.isfinite(factor):
        flags.append(_flag("scale-factor-nonfinite", "amplitude", factor,
                           f"{label}: amplitude scale factor mean(gt)/mean(pred) = {factor} "
                           f"(mean prediction amplitude {mean_pred:g}); amplitude not rescaled"))
    elif rescale_amplitude:
        pred_amp = pred_amp * factor
        rescaled = True

    pred_phase, gt_phase = phase_pair(aligned.pred, aligned.gt)
    amplitude = _component(label, "amplitude", pred_amp, gt_amp, flags)
    phase = _component(label, "phase", pred_phase, gt_phase, flags)
    return ModelMetrics(
        label=label, amplitude=amplitude, phase=phase,
        offset_dy=aligned.offset_dy, offset_dx=aligned.offset_dx,
        amplitude_scale_factor=factor, amplitude_rescaled=rescaled,
        computation_time_s=computation_time_s, flags=flags,
        registered_on=aligned.registered_on, registration_error=aligned.registration_error,
        window=aligned.window, border=aligned.border,
        phase_offset=aligned.phase_offset, phase_gradient=aligned.phase_gradient,
        evaluation_time_s=time.perf_counter() - started,
    )


def evaluate_patches(label: str, patches: Any, positions_xy: Any, gt_object: Any, *,
                     crop: int = DEFAULT_STITCH_CROP, placement: str = "bilinear",
                     **evaluate_options: Any) -> ModelMetrics:
    """Stitch patches by absolute position, then ``evaluate_reconstruction`` against gt_object.

    Only the largest rectangle of the canvas that patches fully cover is evaluated (holes are
    zeros, not predictions); a smaller rectangle than the canvas raises a ``partial-coverage``
    flag with the covered fraction.

    Parameters
    ----------
    label : str
    patches : array (B, N, N) or (B, N, N, 1) complex
    positions_xy : array (B, 2)
        Absolute positions in object pixels, [x, y].
    gt_object : array (Hg, Wg) complex
    crop, placement
        Passed to ``stitch_patches``.
    **evaluate_options
        Passed to ``evaluate_reconstruction`` (not positions_xy / origin, which come from here).
    """
    stitched = stitch_patches(patches, positions_xy, crop=crop, placement=placement)
    return evaluate_stitched(label, stitched, gt_object, **evaluate_options)


def evaluate_stitched(label: str, stitched: Stitched, gt_object: Any, **evaluate_options: Any) -> ModelMetrics:
    """``evaluate_reconstruction`` of a ``Stitched`` canvas (from ``stitch_patches`` or a
    ``StreamingStitcher``) on its largest fully covered rectangle; see ``evaluate_patches``."""
    row0, col0, height, width = largest_covered_rectangle(stitched.weights > 0)
    if height == 0 or width == 0:
        return empty_metrics(label, "no patch reached the canvas")
    canvas = stitched.canvas[row0:row0 + height, col0:col0 + width]
    origin = (stitched.origin[0] + row0, stitched.origin[1] + col0)
    result = evaluate_reconstruction(label, canvas, gt_object, origin=origin, **evaluate_options)
    result.covered_fraction = stitched.covered_fraction
    if (height, width) != stitched.canvas.shape:
        result.flags.insert(0, _flag(
            "partial-coverage", "both", stitched.covered_fraction,
            f"{label}: patches cover {stitched.covered_fraction:.1%} of the "
            f"{stitched.canvas.shape[0]} x {stitched.canvas.shape[1]} px canvas; metrics use its "
            f"largest fully covered rectangle, {height} x {width} px"))
    return result


def empty_metrics(label: str, reason: str, *, computation_time_s: float | None = None) -> ModelMetrics:
    """The record of a model that failed or was skipped: no values, ``reason`` kept."""
    return ModelMetrics(label=label, reason=reason, computation_time_s=computation_time_s,
                        flags=[_flag("model-not-evaluated", "both", None, f"{label}: {reason}")])


def empty_rows(label: str, reason: str) -> list[dict]:
    """CSV rows with empty value cells for a model that failed or was skipped.

    The five CSV columns have no room for the reason; keep ``empty_metrics(label, reason)`` for
    the JSON / report, which carries it.
    """
    return empty_metrics(label, reason).rows()
