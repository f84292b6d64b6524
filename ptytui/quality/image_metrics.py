"""Image-quality metrics of a prediction against ground truth: MAE, MSE, PSNR, SSIM, MS-SSIM, FRC.

Pure numpy / scipy (no TensorFlow). Every function takes two real 2-D images of the same shape
(FRC: real or complex), indexed ``[row, column]``, already aligned (see ``alignment``).

Public API
----------
``mae(pred, gt)``, ``mse(pred, gt)``, ``psnr(pred, gt, data_range)``
    Pixel errors; PSNR always with an explicit data range (never an implied 255).
``ssim(a, b, data_range)``
    SSIM (Wang et al. 2004), equal to scikit-image's with Gaussian weights, sigma 1.5,
    population covariance.
``ms_ssim(a, b, data_range) -> (value, n_scales)``
    Multi-scale SSIM (Wang et al. 2003) with the scale rule of ``ms_ssim_scale_count``.
``frc(a, b) -> FRCResult``
    Fourier ring correlation with 0.5, 1/7, half-bit and 1-bit thresholds, crossings, area.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ptytui.errors import InputError

#: SSIM (Wang et al. 2004): Gaussian window sigma, truncated at 3.5 sigma = 11 taps.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_WINDOW = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11, as scipy.ndimage sizes it
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: MS-SSIM (Wang et al. 2003) scale weights, finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

#: FRC thresholds, by the name used in result dicts and CSV rows.
FRC_THRESHOLD_NAMES = ("frc50", "frc_1over7", "frc_halfbit", "frc_onebit")


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

