"""Evaluation: one reconstruction measured against ground truth, with sanity flags.

Aligns (``alignment``), measures amplitude and phase (``image_metrics``) and records the result
as a ``metrics.ModelMetrics``. Pure numpy / scipy / scikit-image (no TensorFlow).

Public API
----------
``evaluate_reconstruction(label, recon_complex_2d, gt_object_complex, *, positions_xy=None,
patch_size=None, origin=None, ...) -> ModelMetrics``
    The whole pipeline for one model: align, amplitude/phase metrics, sanity flags.
``evaluate_patches(label, patches, positions_xy, gt_object, *, crop=20, ...) -> ModelMetrics``
    ``stitching.stitch_patches`` then ``evaluate_reconstruction``.
``evaluate_stitched(label, stitched, gt_object, ...) -> ModelMetrics``
    ``evaluate_reconstruction`` of a stitched canvas on its largest fully covered rectangle.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ptytui.core.thresholds import THRESHOLDS
from ptytui.quality.alignment import DEFAULT_UPSAMPLE_FACTOR, Aligned, align_to_ground_truth, as_image, phase_pair
from ptytui.quality.image_metrics import SSIM_WINDOW, frc, mae, ms_ssim, mse, psnr, ssim
from ptytui.quality.metrics import ComponentMetrics, ModelMetrics, empty_metrics, sanity_flag
from ptytui.quality.stitching import DEFAULT_STITCH_CROP, Stitched, largest_covered_rectangle, stitch_patches

#: Sanity thresholds.
SSIM_DEGENERATE_BELOW = THRESHOLDS.ssim_degenerate_below
REGISTRATION_LARGE_FRACTION = THRESHOLDS.registration_large_fraction


def _component(label: str, name: str, pred: np.ndarray, gt: np.ndarray, flags: list) -> ComponentMetrics:
    """Metrics of one component (amplitude or phase) of an aligned pair; flags appended to ``flags``."""
    data_range = float(np.ptp(gt))
    if data_range <= 0:
        fallback = float(np.max(np.abs(gt)))
        fallback = fallback if fallback > 0 else 1.0
        flags.append(sanity_flag("zero-data-range", name, fallback,
                                 f"{label}: ground-truth {name} is constant, so max - min is 0; PSNR, "
                                 f"SSIM and MS-SSIM use data_range = {fallback:g} instead"))
        data_range = fallback
    if min(gt.shape) >= SSIM_WINDOW:
        similarity = ssim(pred, gt, data_range)
        multi, scales = ms_ssim(pred, gt, data_range)
    else:
        similarity, multi, scales = float("nan"), float("nan"), 0
        flags.append(sanity_flag("image-too-small", name, float(min(gt.shape)),
                                 f"{label}: compared region {gt.shape[0]} x {gt.shape[1]} px is smaller "
                                 f"than one {SSIM_WINDOW}-px SSIM window; SSIM and MS-SSIM not computed"))
    correlation = frc(pred, gt) if min(gt.shape) >= 2 else None
    metrics = ComponentMetrics(mae=mae(pred, gt), mse=mse(pred, gt), psnr=psnr(pred, gt, data_range),
                               data_range=data_range, ssim=similarity, ms_ssim=multi,
                               ms_ssim_scales=scales, frc=correlation)
    if np.isfinite(similarity) and similarity < SSIM_DEGENERATE_BELOW:
        flags.append(sanity_flag("ssim-degenerate", name, similarity,
                                 f"{label}: {name} SSIM {similarity:.4f} is below {SSIM_DEGENERATE_BELOW}: "
                                 f"no structural agreement with ground truth"))
    if correlation is not None and correlation.crossings["frc50"].ring <= 1.0:
        ring = correlation.crossings["frc50"].ring
        flags.append(sanity_flag("frc-lost-at-once", name, ring,
                                 f"{label}: {name} FRC falls below 0.5 by the first ring (FRC50 = "
                                 f"{ring:.2f}): correlation lost at once, not a resolution"))
    return metrics


def _finite_prediction(label: str, pred: np.ndarray, flags: list) -> np.ndarray:
    """The prediction with NaN/Inf pixels set to 0; flags non-finite and all-zero predictions."""
    finite = np.isfinite(pred)
    if not np.all(finite):
        bad = float(1.0 - finite.mean())
        flags.append(sanity_flag("nonfinite-prediction", "both", bad,
                                 f"{label}: {bad:.2%} of prediction pixels are NaN/Inf; set to 0 for metrics"))
        pred = np.where(finite, pred, 0)
    if not np.any(pred != 0):
        flags.append(sanity_flag("all-zero-prediction", "both", 0.0,
                                 f"{label}: the prediction is all zero; metrics describe an empty image"))
    return pred


def _flag_registration(label: str, aligned: Aligned, flags: list) -> None:
    """Flags a skipped registration and a shift beyond ``REGISTRATION_LARGE_FRACTION`` of the image."""
    if aligned.registered_on.startswith("skipped"):
        flags.append(sanity_flag("registration-skipped", "both", None,
                                 f"{label}: registration {aligned.registered_on}; offsets set to 0"
                           + ("; the placement from the scan positions was kept: if the reconstruction "
                              "looks displaced in reconstructions.png, check the positions' frame "
                              "(absolute vs relative, x/y order); otherwise it is too unlike the truth "
                              "to register" if "rejected" in aligned.registered_on else "")))
    largest_shift = max(abs(aligned.offset_dy), abs(aligned.offset_dx))
    if largest_shift > REGISTRATION_LARGE_FRACTION * min(aligned.gt.shape[0] + 2 * aligned.border,
                                                         aligned.gt.shape[1] + 2 * aligned.border):
        flags.append(sanity_flag("registration-large-shift", "both", largest_shift,
                                 f"{label}: registration moved the prediction by {largest_shift:.1f} px, "
                                 f"over {REGISTRATION_LARGE_FRACTION:.0%} of the image: suspect a wrong "
                                 f"registration or a misplaced reconstruction"))


def _amplitude_scale_factor(label: str, pred_amp: np.ndarray, gt_amp: np.ndarray, flags: list) -> float:
    """mean(gt amplitude) / mean(pred amplitude) over the compared region: inf for an all-zero
    prediction of a nonzero truth, NaN when both are zero (then flagged, and never applied)."""
    mean_pred, mean_gt = float(pred_amp.mean()), float(gt_amp.mean())
    if mean_pred > 0:
        factor = mean_gt / mean_pred
    else:
        factor = float("inf") if mean_gt > 0 else float("nan")
    if not np.isfinite(factor):
        flags.append(sanity_flag("scale-factor-nonfinite", "amplitude", factor,
                                 f"{label}: amplitude scale factor mean(gt)/mean(pred) = {factor} "
                                 f"(mean prediction amplitude {mean_pred:g}); amplitude not rescaled"))
    return factor


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
    pred = as_image(recon_complex_2d, where, "reconstruction").astype(np.complex128)
    truth = as_image(gt_object_complex, where, "ground-truth object").astype(np.complex128)
    flags: list[dict] = []

    pred = _finite_prediction(label, pred, flags)
    aligned = align_to_ground_truth(pred, truth, positions_xy, patch_size, origin=origin,
                                    upsample_factor=upsample_factor, border=border,
                                    register_on=register_on, remove_phase_plane=remove_phase_plane,
                                    max_shift=max_shift)
    _flag_registration(label, aligned, flags)
    pred_amp, gt_amp = np.abs(aligned.pred), np.abs(aligned.gt)
    factor = _amplitude_scale_factor(label, pred_amp, gt_amp, flags)
    rescaled = bool(rescale_amplitude and np.isfinite(factor))
    if rescaled:
        pred_amp = pred_amp * factor

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
        result.flags.insert(0, sanity_flag(
            "partial-coverage", "both", stitched.covered_fraction,
            f"{label}: patches cover {stitched.covered_fraction:.1%} of the "
            f"{stitched.canvas.shape[0]} x {stitched.canvas.shape[1]} px canvas; metrics use its "
            f"largest fully covered rectangle, {height} x {width} px"))
    return result
