"""A small synthetic workspace for the compare / decide / retrain / export tests.

One smooth complex object, two splits cut along y (train low, test high) as in the incident, a
position-taking gs1 model built from ptytui's own reassembly layer (fed absolute positions, so
its test output is exactly zero), a supervised [amplitude, phase] model, and a perfect reference.
Real NPZ files and real Keras models, written into the folder given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

N = 16
OBJECT_SIZE = 72


def make_object(size: int = OBJECT_SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amplitude = 0.4 + 0.6 * ndimage.gaussian_filter(rng.random((size, size)), 2.0)
    amplitude = (amplitude - amplitude.min()) / np.ptp(amplitude) * 0.6 + 0.4
    phase = ndimage.gaussian_filter(rng.uniform(-1, 1, (size, size)), 2.5) * 4.0
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def make_probe(n: int = N) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] - (n - 1) / 2
    return np.exp(-(xx ** 2 + yy ** 2) / (2 * (n / 4) ** 2)).astype(np.complex64)


def split_arrays(obj: np.ndarray, probe: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> dict:
    n = probe.shape[0]
    patches = np.stack([obj[int(y) - n // 2:int(y) - n // 2 + n, int(x) - n // 2:int(x) - n // 2 + n]
                        for x, y in zip(xs, ys)]).astype(np.complex64)
    diffraction = np.abs(np.fft.fftshift(np.fft.fft2(probe[None] * patches), axes=(1, 2))) / n
    energy = (diffraction ** 2).sum(axis=(1, 2)).mean()
    diffraction *= np.sqrt((n / 2) ** 2 / energy)
    return {
        "diffraction": diffraction.astype(np.float32), "probeGuess": probe, "objectGuess": obj,
        "xcoords": xs.astype(np.float64), "ycoords": ys.astype(np.float64),
        "xcoords_start": xs.astype(np.float64), "ycoords_start": ys.astype(np.float64),
        "scan_index": np.arange(xs.size, dtype=np.int64),
        "ground_truth_patches": patches[..., None],
    }


def write_splits(folder: Path, *, step: int = 4) -> dict[str, Path]:
    """train.npz (y below the middle) and test.npz (y above), raster step ``step`` px."""
    obj, probe = make_object(), make_probe()
    grid = np.arange(N // 2 + 1, OBJECT_SIZE - N // 2, step)
    xs, ys = np.meshgrid(grid, grid)
    xs, ys = xs.ravel().astype(float), ys.ravel().astype(float)
    middle = OBJECT_SIZE / 2
    paths = {}
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train", ys < middle), ("test", ys >= middle)):
        paths[name] = data / f"{name}.npz"
        np.savez(paths[name], **split_arrays(obj, probe, xs[keep], ys[keep]))
    return paths


def build_position_model(path: Path, n: int = N, seed: int = 0) -> Path:
    """A gs1 PINN-like model: conv heads -> complex patch -> ReassemblePatches(N, N + 10)."""
    from ptytui.core.tfload import keras
    from ptytui.networks.layers import CombineComplex, ReassemblePatches, ScaledTanh

    k = keras()
    k.utils.set_random_seed(seed)
    diffraction = k.Input((n, n, 1), name="input")
    positions = k.Input((1, 2, 1), name="input_positions")
    h = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="encoder_conv")(diffraction)
    amplitude = k.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="amp")(h)
    phase = ScaledTanh(np.pi, name="phi")(k.layers.Conv2D(1, 3, padding="same", name="phase_conv")(h))
    obj = CombineComplex(name="obj")(amplitude, phase)
    out = ReassemblePatches(n, n + 10, 1, crop=True, name="trimmed_obj")(obj, positions)
    model = k.Model([diffraction, positions], out, name="diffraction_to_obj")
    model.save(path)
    return path


def build_supervised_model(path: Path, n: int = N, seed: int = 1) -> Path:
    """diffraction (B, N, N, 1) -> [amplitude, phase], linear heads, no positions."""
    from ptytui.core.tfload import keras

    k = keras()
    k.utils.set_random_seed(seed)
    diffraction = k.Input((n, n, 1), name="diffraction")
    h = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(diffraction)
    amplitude = k.layers.Conv2D(1, 1, name="amplitude")(h)
    phase = k.layers.Conv2D(1, 1, name="phase")(h)
    k.Model(diffraction, [amplitude, phase], name="supervised").save(path)
    return path


def write_reference(path: Path, obj: np.ndarray) -> Path:
    np.savez(path, reconstructed_object=obj.astype(np.complex64), algorithm=np.array("test-perfect"))
    return path


TOML = """\
[workspace]
name = "synthetic incident"
session = "session"

[splits]
train = "data/train.npz"
test = "data/test.npz"

[models.pinn_like]
path = "models/pinn_like.keras"
label = "PtychoPINN"
gridsize = 1
positions = "relative"

[models.baseline_gs1]
path = "models/baseline_gs1.keras"
label = "Baseline"
gridsize = 1
positions = "absolute"
expected_kind = "supervised"

[reference]
path = "reference/recon.npz"
label = "pty-chi"
split = "test"
"""


def build_workspace(folder: Path) -> Path:
    """The whole synthetic workspace in ``folder``; returns the folder (holding ptytui.toml)."""
    folder = Path(folder)
    write_splits(folder)
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    build_position_model(models / "pinn_like.keras", seed=0)
    build_position_model(models / "baseline_gs1.keras", seed=3)
    (folder / "reference").mkdir(exist_ok=True)
    write_reference(folder / "reference" / "recon.npz", make_object())
    (folder / "ptytui.toml").write_text(TOML)
    return folder


_BUILT: dict[str, Path] = {}


def shared_workspace(tmp_path_factory) -> Path:
    """The synthetic workspace, built once per test session (shared: copy it before writing)."""
    base = tmp_path_factory.getbasetemp()
    key = str(base)
    if key not in _BUILT:
        _BUILT[key] = build_workspace(base / "synthetic_compare_workspace")
    return _BUILT[key]
