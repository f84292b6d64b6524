"""A small vectorized ePIE: the scenario's iterative reference reconstruction ("ePIE (ptytui)").

numpy only. Written from the published algorithm (Maiden & Rodenburg 2009, with the
regularized, batched update of rPIE, Maiden et al. 2017); saved in the pty-chi NPZ layout.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = ["ALGORITHM_LABEL", "EpieResult", "epie_reconstruct", "write_reconstruction"]

ALGORITHM_LABEL = "ePIE (ptytui)"


@dataclass
class EpieResult:
    """An ePIE reconstruction on its own canvas.

    object : (H, W) complex64; canvas pixel (0, 0) is object pixel (origin_y, origin_x).
    probe : (N, N) complex64.
    origin_y, origin_x : the canvas origin in the ground truth's object pixels (registration
        still needed: like pty-chi's, this canvas only covers the scanned area).
    fourier_error : per iteration, mean over patterns of sum (|model| - measured)**2 / sum measured**2.
    """

    object: np.ndarray
    probe: np.ndarray
    origin_y: int
    origin_x: int
    iterations: int
    fourier_error: list[float] = field(default_factory=list)


def _patch_indices(top: np.ndarray, left: np.ndarray, N: int, width: int) -> np.ndarray:
    """Flat canvas indices (B, N, N) of the N x N patches whose top-left corners are given."""
    rows = top[:, None] + np.arange(N)[None, :]
    cols = left[:, None] + np.arange(N)[None, :]
    return rows[:, :, None] * width + cols[:, None, :]


def epie_reconstruct(diffraction: np.ndarray, x: np.ndarray, y: np.ndarray, probe: np.ndarray, *,
                     iterations: int = 4, batch: int = 64, seed: int = 0, alpha: float = 1.0,
                     beta: float = 1.0, gamma: float = 0.1, probe_update_from: int = 1,
                     progress=None) -> EpieResult:
    """Reconstruct object (and refine the probe) from amplitudes with batched, regularized ePIE.

    Parameters
    ----------
    diffraction : (M, N, N) float
        Measured amplitudes, zero frequency at the centre (fftshifted), with the forward model
        amplitude = |fftshift(FFT2(probe * object_patch))| / N.
    x, y : (M,) float
        Patch-centre positions in object pixels (x = column, y = row). Rounded to whole pixels:
        a reference reconstruction does not need sub-pixel shifts.
    probe : (N, N) complex
        Starting probe (the known probe); the object starts as ones (never from ground truth).
    iterations, batch : passes over all positions, and positions updated together per step.
    alpha, beta : object and probe step sizes; gamma : rPIE regularization (0 = plain
        normalization by the summed |probe|**2, 1 = by its maximum).
    probe_update_from : first iteration (0-based) that also updates the probe.
    progress : callable(done, total), optional, called after each iteration.
    """
    amplitude = np.asarray(diffraction, dtype=np.float32)
    M, N, _ = amplitude.shape
    measured = np.fft.ifftshift(amplitude, axes=(-2, -1)) * np.float32(N)  # |FFT2| units, unshifted
    measured_energy = np.maximum(np.sum(measured.astype(np.float64) ** 2, axis=(1, 2)), 1e-12)
    top_obj = np.round(np.asarray(y, np.float64) - N / 2).astype(np.int64)
    left_obj = np.round(np.asarray(x, np.float64) - N / 2).astype(np.int64)
    origin_y, origin_x = int(top_obj.min()) - 1, int(left_obj.min()) - 1
    top, left = top_obj - origin_y, left_obj - origin_x
    height, width = int(top.max()) + N + 1, int(left.max()) + N + 1
    obj = np.ones(height * width, np.complex64)
    probe = np.asarray(probe, np.complex64).copy()
    rng = np.random.default_rng(seed)
    errors = []
    for iteration in range(iterations):
        order = rng.permutation(M)
        error_sum = 0.0
        for start in range(0, M, batch):
            idx = order[start : start + batch]
            flat = _patch_indices(top[idx], left[idx], N, width)
            patches = obj[flat]  # (B, N, N)
            exit_waves = probe[None] * patches
            spectrum = np.fft.fft2(exit_waves)
            modulus = np.abs(spectrum)
            error_sum += float(np.sum(np.sum((modulus - measured[idx]) ** 2, axis=(1, 2)) / measured_energy[idx]))
            # modulus constraint: keep the phase, take the measured amplitude
            corrected = spectrum * (measured[idx] / np.maximum(modulus, 1e-12))
            delta = (np.fft.ifft2(corrected) - exit_waves).astype(np.complex64)
            # object: summed updates over the batch, normalized by the summed probe power (rPIE)
            probe_power = np.abs(probe) ** 2
            numerator = np.conj(probe)[None] * delta
            flat_all = flat.ravel()
            num = (np.bincount(flat_all, numerator.real.ravel(), obj.size)
                   + 1j * np.bincount(flat_all, numerator.imag.ravel(), obj.size))
            den = np.bincount(flat_all, np.broadcast_to(probe_power, delta.shape).ravel(), obj.size)
            den = (1 - gamma) * den + gamma * den.max()
            obj += (alpha * num / np.maximum(den, 1e-12)).astype(np.complex64)
            if iteration >= probe_update_from:
                object_power = np.abs(patches) ** 2
                probe_num = np.sum(np.conj(patches) * delta, axis=0)
                probe_den = np.sum(object_power, axis=0)
                probe_den = (1 - gamma) * probe_den + gamma * probe_den.max()
                probe += (beta * probe_num / np.maximum(probe_den, 1e-12)).astype(np.complex64)
        errors.append(error_sum / M)
        if progress:
            progress(iteration + 1, iterations)
    return EpieResult(object=obj.reshape(height, width), probe=probe, origin_y=origin_y,
                      origin_x=origin_x, iterations=iterations, fourier_error=errors)


def write_reconstruction(path: Path, result: EpieResult, *, split: str, extra: dict | None = None) -> None:
    """Write the reconstruction in the pty-chi NPZ layout (uncompressed, no pickles).

    Keys: ``reconstructed_object`` (H, W) complex64, ``reconstructed_probe`` (N, N) complex64,
    ``algorithm`` and ``timestamp`` (0-d unicode), ``metadata`` (0-d unicode JSON: canvas origin
    in object pixels, iterations, Fourier error per iteration, which split).
    """
    metadata = {
        "split": split,
        "iterations": result.iterations,
        "canvas_origin_yx": [result.origin_y, result.origin_x],
        "positions": "rounded to whole pixels",
        "object_start": "ones (no ground truth)",
        "probe_start": "probeGuess",
        "fourier_error": [e if math.isfinite(e) else None for e in result.fourier_error],
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(
            fh,
            reconstructed_object=result.object.astype(np.complex64),
            reconstructed_probe=result.probe.astype(np.complex64),
            algorithm=np.array(ALGORITHM_LABEL),
            timestamp=np.array(datetime.now(timezone.utc).isoformat(timespec="seconds")),
            metadata=np.array(json.dumps(metadata)),
        )
