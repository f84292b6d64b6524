"""Simulate the scenario's ptychography data: object, probe, scan, noisy diffraction, two splits.

numpy + scipy + scikit-image only (no TensorFlow). Follows DOMAIN.md section 2 (the NPZ contract).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptytui.scenario.settings import Preset

__all__ = [
    "SimulatedScan",
    "SplitArrays",
    "extract_patches",
    "make_object",
    "make_probe",
    "make_positions",
    "simulate",
    "write_split",
]

# Patterns processed together (FFT, Poisson): bounds memory on the large preset.
_CHUNK = 64


@dataclass
class SplitArrays:
    """One split, in the NPZ contract's layout (see ``write_split``)."""

    name: str
    diffraction: np.ndarray  # (M, N, N) float32 normalized amplitude
    xcoords: np.ndarray  # (M,) float64, object pixels, column
    ycoords: np.ndarray  # (M,) float64, object pixels, row
    scan_index: np.ndarray  # (M,) int64, order in the whole scan
    ground_truth_patches: np.ndarray  # (M, N, N, 1) complex64
    mean_pattern_energy_raw: float  # mean sum(sqrt(counts)**2) before normalization
    amplitude_factor: float  # stored amplitude = sqrt(counts) * amplitude_factor

    @property
    def M(self) -> int:
        return int(self.xcoords.shape[0])


@dataclass
class SimulatedScan:
    """Everything the simulation produced."""

    object: np.ndarray  # (H, W) complex64
    probe: np.ndarray  # (N, N) complex64, scaled so |FFT(probe * patch)| / N matches the data
    splits: dict[str, SplitArrays]
    dose: float
    split_y: float  # train: y < split_y, test: y >= split_y
    probe_scale: float  # factor applied to the unit-energy probe

    @property
    def N(self) -> int:
        return int(self.probe.shape[0])


def _normalized(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float64)
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)


def make_object(size: int, smoothing_px: float = 1.0) -> np.ndarray:
    """A complex object from two images that ship inside scikit-image (nothing is downloaded).

    Amplitude from ``skimage.data.camera`` scaled to 0.3..1.0; phase from the astronaut image
    (grey) scaled to -pi/2..pi/2; both resized to ``size`` x ``size`` and smoothed with a Gaussian
    of ``smoothing_px`` pixels.

    Returns
    -------
    np.ndarray, complex64, (size, size)
    """
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415
    from skimage import color, data, transform  # noqa: PLC0415

    amplitude_image = _normalized(data.camera())
    phase_image = _normalized(color.rgb2gray(data.astronaut()))
    amplitude_image = transform.resize(amplitude_image, (size, size), anti_aliasing=True)
    phase_image = transform.resize(phase_image, (size, size), anti_aliasing=True)
    amplitude = 0.3 + 0.7 * gaussian_filter(amplitude_image, smoothing_px)
    phase = (math.pi / 2) * (2.0 * gaussian_filter(phase_image, smoothing_px) - 1.0)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def make_probe(N: int, defocus_waves: float = 2.0, pupil_radius_fraction: float = 0.25) -> np.ndarray:
    """A focused beam: a circular pupil with a defocus phase, propagated to the sample plane.

    The pupil (radius ``pupil_radius_fraction * N`` frequency pixels) carries a quadratic phase of
    ``defocus_waves`` waves at its edge; its inverse FFT is the probe at the sample. Normalized to
    sum(|probe|**2) = 1 (the simulation rescales it to the data). With defocus_waves ~ N/32 about
    85-90% of the energy lies within a diameter of N/2.

    Returns
    -------
    np.ndarray, complex64, (N, N), centred at (N/2, N/2)
    """
    k = np.fft.fftshift(np.fft.fftfreq(N)) * N
    kx, ky = np.meshgrid(k, k)
    rho = np.hypot(kx, ky) / (pupil_radius_fraction * N)
    pupil = (rho <= 1.0) * np.exp(1j * 2.0 * math.pi * defocus_waves * rho**2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    probe /= np.sqrt(np.sum(np.abs(probe) ** 2))
    return probe.astype(np.complex64)


def make_positions(preset: Preset, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Scan positions uniform in [N/2, size - N/2], ``n_train`` below the split line, ``n_test`` above.

    Drawing each half with a fixed count is the uniform scan conditioned on the split sizes (so
    the large preset has exactly the study's 5,216 test positions). The points are then put in a
    random scan order.

    Returns
    -------
    x, y : (M,) float64 object-pixel positions (x = column, y = row), in scan order.
    split_y : the split line, 50% of the y range.
    """
    low, high = preset.N / 2, preset.object_size - preset.N / 2
    split_y = low + 0.5 * (high - low)
    x = rng.uniform(low, high, preset.n_train + preset.n_test)
    y = np.concatenate([
        rng.uniform(low, split_y, preset.n_train),
        # the test half is [split_y, high]; nudge so no point lands exactly on the line from below
        np.maximum(rng.uniform(split_y, high, preset.n_test), split_y),
    ])
    order = rng.permutation(x.size)
    return x[order], y[order], float(split_y)


def extract_patches(obj: np.ndarray, x: np.ndarray, y: np.ndarray, N: int) -> np.ndarray:
    """Bilinear sub-pixel N x N patches of ``obj`` centred at (x, y).

    Patch pixel (i, j) samples the object at row y - N/2 + i, column x - N/2 + j, so the patch
    centre pixel (N/2, N/2) sits on the position. Positions must lie in [N/2, size - N/2].

    Returns
    -------
    np.ndarray, complex64, (M, N, N)
    """
    padded = np.pad(np.asarray(obj, np.complex64), 1, mode="edge")  # the +1 neighbour may have weight 0
    top = np.asarray(y, np.float64) - N / 2 + 1.0
    left = np.asarray(x, np.float64) - N / 2 + 1.0
    row0 = np.floor(top).astype(np.int64)
    col0 = np.floor(left).astype(np.int64)
    # (N+1) x (N+1) integer blocks by slicing (far cheaper than fancy indexing), then bilinear
    blocks = np.empty((top.size, N + 1, N + 1), np.complex64)
    for k, (r, c) in enumerate(zip(row0, col0)):
        blocks[k] = padded[r : r + N + 1, c : c + N + 1]
    fy = (top - row0).astype(np.float32)[:, None, None]
    fx = (left - col0).astype(np.float32)[:, None, None]
    upper = (1 - fx) * blocks[:, :-1, :-1] + fx * blocks[:, :-1, 1:]
    lower = (1 - fx) * blocks[:, 1:, :-1] + fx * blocks[:, 1:, 1:]
    return ((1 - fy) * upper + fy * lower).astype(np.complex64)


def _far_field_intensity(exit_waves: np.ndarray) -> np.ndarray:
    """|fftshift(FFT2(psi))|**2 / N**2, so that its sum equals sum(|psi|**2) (Parseval)."""
    from scipy import fft  # noqa: PLC0415  (keeps complex64, unlike numpy.fft)

    N = exit_waves.shape[-1]
    spectrum = fft.fftshift(fft.fft2(exit_waves, axes=(-2, -1), workers=-1), axes=(-2, -1))
    return (spectrum.real**2 + spectrum.imag**2).astype(np.float64) / (N * N)


def simulate(preset: Preset, *, dose: float, seed: int, progress=None) -> SimulatedScan:
    """Simulate the whole scan and split it along y.

    amplitude = sqrt(Poisson(|FFT(probe * patch)|**2 scaled so the mean pattern holds ``dose``
    photons)); each split is then normalized on its own so its mean per-pattern energy
    sum(amplitude**2) is (N/2)**2, and the factor is recorded. The probe is rescaled so the
    noise-free model |FFT(probe * patch)| / N has that same mean energy.

    Parameters
    ----------
    preset : Preset
    dose : float
        Mean photons per diffraction pattern.
    seed : int
    progress : callable(done, total), optional
    """
    rng = np.random.default_rng(seed)
    N = preset.N
    obj = make_object(preset.object_size)
    unit_probe = make_probe(N, preset.probe_defocus_waves)
    x, y, split_y = make_positions(preset, rng)
    M = x.size

    # Pass 1: noise-free energy sum|unit_probe * patch|^2 of every pattern, for one photon scale
    # for the whole scan (one beam: the mean pattern holds `dose` photons) and for the probe
    # handed to models and ePIE (reproducing normalized data: mean energy (N/2)^2).
    model_energy = np.empty(M, np.float64)
    for start in range(0, M, _CHUNK):
        stop = min(start + _CHUNK, M)
        patches = extract_patches(obj, x[start:stop], y[start:stop], N)
        model_energy[start:stop] = np.sum(np.abs(unit_probe * patches) ** 2, axis=(1, 2))
        if progress:
            progress(stop, 2 * M)
    photons_per_unit = dose / model_energy.mean()
    probe_scale = math.sqrt((N / 2) ** 2 / model_energy.mean())
    probe = (unit_probe * probe_scale).astype(np.complex64)

    # Pass 2, split by split (patches are extracted again rather than kept: the large preset's
    # full stack would be 1.4 GB): noisy counts, amplitude, per-split normalization.
    scan_index = np.arange(M, dtype=np.int64)
    splits = {}
    done = M
    for name, mask in (("train", y < split_y), ("test", y >= split_y)):
        idx = np.flatnonzero(mask)
        ground_truth = np.empty((idx.size, N, N, 1), np.complex64)
        amplitude = np.empty((idx.size, N, N), np.float32)
        total_counts = 0
        for start in range(0, idx.size, _CHUNK):
            part = idx[start : start + _CHUNK]
            patches = extract_patches(obj, x[part], y[part], N)
            ground_truth[start : start + part.size, ..., 0] = patches
            counts = rng.poisson(_far_field_intensity(unit_probe * patches) * photons_per_unit)
            total_counts += int(counts.sum())
            amplitude[start : start + part.size] = np.sqrt(counts, dtype=np.float32)
            done += part.size
            if progress:
                progress(done, 2 * M)
        energy = total_counts / idx.size  # sum(sqrt(counts)^2) = counts per pattern
        factor = math.sqrt((N / 2) ** 2 / energy)
        amplitude *= np.float32(factor)
        splits[name] = SplitArrays(
            name=name,
            diffraction=amplitude,
            xcoords=x[idx].astype(np.float64),
            ycoords=y[idx].astype(np.float64),
            scan_index=scan_index[idx],
            ground_truth_patches=ground_truth,
            mean_pattern_energy_raw=float(energy),
            amplitude_factor=factor,
        )
    return SimulatedScan(object=obj, probe=probe, splits=splits, dose=float(dose), split_y=split_y,
                         probe_scale=probe_scale)


def write_split(path: Path, scan: SimulatedScan, split: SplitArrays, *, preset: Preset, seed: int) -> None:
    """Write one split as an UNCOMPRESSED NPZ (``np.savez``) so readers can memory-map it.

    Keys: ``diffraction`` (M, N, N) float32 amplitude, ``probeGuess`` (N, N) complex64,
    ``objectGuess`` (H, W) complex64, ``xcoords``/``ycoords`` and ``*_start`` (M,) float64,
    ``scan_index`` (M,) int64, ``ground_truth_patches`` (M, N, N, 1) complex64, and
    ``_metadata``: a 0-d *unicode* array holding JSON (readable without allow_pickle), which
    records the split and the normalization factor applied.
    """
    metadata = {
        "schema_version": "ptytui-scenario-1",
        "creation_info": {"tool": "ptytui demo", "preset": preset.name, "seed": seed},
        "physics_parameters": {"nphotons": scan.dose, "N": scan.N, "gridsize": 1,
                               "object_shape": list(scan.object.shape)},
        "data_transformations": [
            {"operation": "split", "axis": "y", "fraction": 0.5, "split_y": scan.split_y,
             "part": split.name},
            {"operation": "normalize", "target_mean_pattern_energy": (scan.N / 2) ** 2,
             "mean_pattern_energy_before": split.mean_pattern_energy_raw,
             "amplitude_factor": split.amplitude_factor,
             "energy_factor": split.amplitude_factor**2},
        ],
    }
    arrays = {
        "diffraction": split.diffraction,
        "probeGuess": scan.probe,
        "objectGuess": scan.object,
        "xcoords": split.xcoords,
        "ycoords": split.ycoords,
        "xcoords_start": split.xcoords.copy(),
        "ycoords_start": split.ycoords.copy(),
        "scan_index": split.scan_index,
        "ground_truth_patches": split.ground_truth_patches,
        "_metadata": np.array(json.dumps(metadata)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
