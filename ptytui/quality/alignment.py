"""Alignment: a reconstruction registered to the ground-truth object and both cropped to the
compared region, with the global phase and a phase plane removed.

Pure numpy / scipy / scikit-image (no TensorFlow; scikit-image is imported on first use).

Public API
----------
``align_to_ground_truth(recon, ground_truth_object, positions_xy=None, patch_size=None, *,
origin=None, upsample_factor=50, border=None) -> Aligned``
    Crop the ground truth to the reconstructed region, register sub-pixel, remove the global
    phase and a phase plane, crop the border; records the offsets (dy, dx).
``phase_pair(pred, gt)``
    Phase images of an aligned pair without spurious 2*pi jumps.
``as_image(array, where, what)``
    The 2-D input check shared with ``evaluation``.

Positions and origins follow ``stitching``'s conventions (object pixels, ``[x, y]``; origins
``(row, column)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ptytui.errors import InputError
from ptytui.quality.image_metrics import SSIM_WINDOW
from ptytui.quality.stitching import as_positions

#: Registration upsampling (1/50 px precision).
DEFAULT_UPSAMPLE_FACTOR = 50
#: Complex refinement may move the amplitude estimate at most this far, in pixels.
_MAX_REFINEMENT_PX = 1.5


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


def as_image(array: Any, where: str, what: str) -> np.ndarray:
    """``array`` as a 2-D image (a trailing channel of 1 dropped); InputError naming ``where`` and
    ``what`` when it is not a non-empty 2-D array. Shared with ``evaluation``."""
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


def _overlap(pred: np.ndarray, gt: np.ndarray, positions, patch_size, origin, where: str):
    """The reconstruction and the ground truth cropped to their overlap (within the scanned box
    when there is one), and the ground-truth (row, column) of the overlap's pixel (0, 0)."""
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
    return (pred[r_start:r_stop, c_start:c_stop],
            gt[row0 + r_start:row0 + r_stop, col0 + c_start:col0 + c_stop],
            (row0 + r_start, col0 + c_start))


def _border_width(border: int | None, shift: tuple[float, float], shape: tuple[int, int], where: str) -> int:
    """Pixels to crop per side after the shift: ``border`` when given (checked against the region),
    else ceil(max |shift|) + 1, reduced so at least one SSIM window remains."""
    h, w = shape
    if border is None:
        border_px = int(math.ceil(max(abs(shift[0]), abs(shift[1])))) + 1
        return min(border_px, max(0, (min(h, w) - SSIM_WINDOW) // 2))
    border_px = int(border)
    if border_px < 0 or 2 * border_px >= min(h, w):
        raise InputError(where, f"border between 0 and {(min(h, w) - 1) // 2} px",
                         f"border {border} on a {h} x {w} region")
    return border_px


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
    pred = as_image(recon, where, "reconstruction").astype(np.complex128)
    gt = as_image(ground_truth_object, where, "ground-truth object").astype(np.complex128)
    if not np.all(np.isfinite(pred)):
        raise InputError(where, "a finite reconstruction", "NaN or Inf values",
                         hint="evaluate_reconstruction zeroes and flags them")
    if not np.all(np.isfinite(gt)):
        raise InputError(where, "a finite ground-truth object", "NaN or Inf values")
    if register_on not in ("auto", "amplitude", "complex"):
        raise InputError(where, "register_on 'auto', 'amplitude' or 'complex'", repr(register_on))
    positions = as_positions(positions_xy, None, where) if positions_xy is not None else None

    pred, gt, (window_r, window_c) = _overlap(pred, gt, positions, patch_size, origin, where)

    shift, error, how = _register(pred, gt, register_on, upsample_factor)
    if max_shift is not None and max(abs(shift[0]), abs(shift[1])) > max_shift:
        how = (f"skipped: shift ({shift[0]:.2f}, {shift[1]:.2f}) px rejected, beyond max_shift "
               f"{max_shift:g} px for a known placement")
        shift, error = (0.0, 0.0), float("nan")
    if shift != (0.0, 0.0):
        pred = ndimage.shift(pred, shift, order=3, mode="nearest")

    h, w = pred.shape
    border_px = _border_width(border, shift, (h, w), where)
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

