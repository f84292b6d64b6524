"""Writers of small, valid contract NPZ files for tests (modern and legacy layouts).

Each ``write_*`` function writes one variant of the same simulated split into a folder and returns
its path, so tests can check that every variant opens to identical arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DEFAULT_METADATA = {
    "schema_version": "1.0.0",
    "creation_info": {"script": "tests/helpers_npz.py"},
    "physics_parameters": {"nphotons": 1e3, "gridsize": 2, "N": 8},
    "data_transformations": [],
}


def grid_positions(nx: int = 4, ny: int = 3, *, spacing: float = 3.0, origin: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """(xcoords, ycoords) float64 of an nx x ny raster, row by row, in object pixels."""
    ys, xs = np.mgrid[0:ny, 0:nx]
    return (origin + spacing * xs.ravel()).astype(np.float64), (origin + spacing * ys.ravel()).astype(np.float64)


def make_arrays(N: int = 8, *, nx: int = 4, ny: int = 3, spacing: float = 3.0, seed: int = 0,
                normalize: bool = True) -> dict[str, np.ndarray]:
    """A small simulated split in the modern layout.

    A smooth random complex object, a Gaussian probe, a raster of positions; diffraction is the
    far-field amplitude |fftshift(FFT(probe * patch))| / N, normalized (by default) so the mean
    per-pattern energy is (N/2)**2 as PtychoPINN does. ``Y`` holds the object patches.
    """
    rng = np.random.default_rng(seed)
    x, y = grid_positions(nx, ny, spacing=spacing, origin=N / 2 + 2)
    H = int(y.max() + N / 2 + 3)
    W = int(x.max() + N / 2 + 3)
    amp = 0.6 + 0.4 * rng.random((H, W))
    phase = rng.uniform(-1, 1, (H, W))
    obj = (amp * np.exp(1j * phase)).astype(np.complex64)
    yy, xx = np.mgrid[0:N, 0:N] - (N - 1) / 2
    probe = (np.exp(-(xx ** 2 + yy ** 2) / (2 * (N / 4) ** 2)) * np.exp(0.3j * xx / N)).astype(np.complex64)
    patches = []
    for cx, cy in zip(x, y):
        r0, c0 = int(round(cy - N / 2)), int(round(cx - N / 2))
        patches.append(obj[r0:r0 + N, c0:c0 + N])
    Y = np.stack(patches).astype(np.complex64)
    diffraction = np.abs(np.fft.fftshift(np.fft.fft2(probe[None] * Y), axes=(1, 2))) / N
    if normalize:
        energy = (diffraction ** 2).sum(axis=(1, 2)).mean()
        diffraction *= np.sqrt((N / 2) ** 2 / energy)
    M = x.size
    return {
        "diffraction": diffraction.astype(np.float32),
        "probeGuess": probe,
        "objectGuess": obj,
        "xcoords": x,
        "ycoords": y,
        "xcoords_start": x + 0.0,
        "ycoords_start": y + 0.0,
        "scan_index": np.zeros(M, dtype=np.int64),
        "Y": Y,
    }


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], *, compressed: bool = False,
              metadata: dict | None = None) -> Path:
    """Write ``arrays`` (plus ``_metadata`` as a pickled 0-d JSON string, as PtychoPINN does)."""
    path = Path(path)
    out = dict(arrays)
    if metadata is not None:
        out["_metadata"] = np.array(json.dumps(metadata), dtype=object)
    (np.savez_compressed if compressed else np.savez)(path, **out)
    return path


def _without(arrays: dict, *keys: str) -> dict:
    return {k: v for k, v in arrays.items() if k not in keys}


def write_modern(folder: Path, name: str = "modern.npz", *, arrays: dict | None = None, **kw) -> Path:
    """Modern layout: ``diffraction`` (M, N, N), ``Y`` present."""
    return write_npz(Path(folder) / name, arrays if arrays is not None else make_arrays(**kw))


def write_compressed(folder: Path, name: str = "compressed.npz", **kw) -> Path:
    """Modern layout saved with np.savez_compressed (members cannot be memory-mapped)."""
    return write_npz(Path(folder) / name, make_arrays(**kw), compressed=True)


def write_legacy_diff3d(folder: Path, name: str = "diff3d.npz", **kw) -> Path:
    """Legacy key ``diff3d`` instead of ``diffraction``."""
    a = make_arrays(**kw)
    a["diff3d"] = a.pop("diffraction")
    return write_npz(Path(folder) / name, a)


def write_legacy_nnm(folder: Path, name: str = "nnm.npz", **kw) -> Path:
    """Legacy (N, N, M) axis layout under ``diff3d`` (C-contiguous on disk)."""
    a = make_arrays(**kw)
    a["diff3d"] = np.ascontiguousarray(np.moveaxis(a.pop("diffraction"), 0, 2))
    return write_npz(Path(folder) / name, a)


def write_trailing_singleton(folder: Path, name: str = "singleton.npz", **kw) -> Path:
    """``diffraction`` (M, N, N, 1)."""
    a = make_arrays(**kw)
    a["diffraction"] = a["diffraction"][..., None]
    return write_npz(Path(folder) / name, a)


def write_with_y(folder: Path, name: str = "with_y.npz", **kw) -> Path:
    """Ground truth as ``Y`` (M, N, N) complex64 (the modern layout already has it)."""
    return write_npz(Path(folder) / name, make_arrays(**kw))


def write_with_ground_truth_patches(folder: Path, name: str = "gtp.npz", **kw) -> Path:
    """Ground truth as ``ground_truth_patches`` (M, N, N, 1), no ``Y`` (PtychoPINN today)."""
    a = make_arrays(**kw)
    a["ground_truth_patches"] = a.pop("Y")[..., None]
    return write_npz(Path(folder) / name, a)


def write_without_start(folder: Path, name: str = "no_start.npz", **kw) -> Path:
    """No ``xcoords_start`` / ``ycoords_start`` (they fall back to xcoords/ycoords)."""
    return write_npz(Path(folder) / name, _without(make_arrays(**kw), "xcoords_start", "ycoords_start"))


def write_with_metadata(folder: Path, name: str = "meta.npz", metadata: dict | None = None, **kw) -> Path:
    """With ``_metadata`` (0-d object array holding a JSON string; reading it needs pickle)."""
    return write_npz(Path(folder) / name, make_arrays(**kw),
                     metadata=DEFAULT_METADATA if metadata is None else metadata)


def write_ptychopinn_like(folder: Path, name: str = "ptychopinn_like.npz", **kw) -> Path:
    """Everything legacy at once: ``diff3d`` in (N, N, M) with ``ground_truth_patches`` and metadata."""
    a = make_arrays(**kw)
    a["diff3d"] = np.ascontiguousarray(np.moveaxis(a.pop("diffraction"), 0, 2))
    a["ground_truth_patches"] = a.pop("Y")[..., None]
    return write_npz(Path(folder) / name, a, metadata=DEFAULT_METADATA)


VARIANT_WRITERS = {
    "modern": write_modern,
    "compressed": write_compressed,
    "diff3d": write_legacy_diff3d,
    "nnm": write_legacy_nnm,
    "trailing_singleton": write_trailing_singleton,
    "with_y": write_with_y,
    "ground_truth_patches": write_with_ground_truth_patches,
    "without_start": write_without_start,
    "with_metadata": write_with_metadata,
    "ptychopinn_like": write_ptychopinn_like,
}
