"""The scenario's models: a gs2 PINN, a gs1 PINN "Baseline" bundle and a supervised U-Net.

Built from ``ptytui.networks.layers`` (Keras 3), trained briefly, saved without pickles. Imports
TensorFlow when a function runs, never at import time.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ptytui.networks.architectures import PinnModels, _keras
from ptytui.networks.training import fit

# Where the model defects are planted (layer names in pinn_gs2).
DEAD_LAYER = "amp_decoder1_conv"  # the amplitude decoder's last ReLU convolution
DEAD_LAYER_BIAS = -1e4  # far below any pre-activation the data can produce
# The amplitude head: its sigmoid passes NaN on. (A NaN inside the encoder is not reliable: a ReLU
# may turn NaN into 0, so whether it reaches the output depends on the kernel's code path.)
NAN_LAYER = "amp"


def train_pinn(models: PinnModels, diffraction: np.ndarray, offsets: np.ndarray, *, intensity_scale: float,
               epochs: int, batch_size: int, learning_rate: float, seed: int, progress=None) -> list[float]:
    """Train a PINN through its physics branch (Poisson NLL of counts); return the loss per epoch.

    diffraction (G, N, N, C) stored amplitude; offsets (G, 1, 2, C) relative offsets. The model
    input and the target are both amplitude * intensity_scale (sqrt of counts).
    """
    layers, _ = _keras()
    tf = layers.tf
    counts_amplitude = (diffraction * np.float32(intensity_scale)).astype(np.float32)

    def loss_of(targets, predicted):
        return tf.reduce_mean(layers.poisson_nll(targets[0], predicted))

    return fit(models.autoencoder, loss_of, [counts_amplitude, offsets.astype(np.float32)], [counts_amplitude],
                epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed, progress=progress)


def train_supervised(model, diffraction: np.ndarray, ground_truth: np.ndarray, *, epochs: int, batch_size: int,
                     learning_rate: float, seed: int, progress=None) -> list[float]:
    """Train the U-Net on ground-truth patches (MSE on amplitude plus MSE on phase); loss per epoch.

    diffraction (M, N, N, 1) stored amplitude; ground_truth (M, N, N, 1) complex.
    """
    layers, _ = _keras()
    tf = layers.tf

    def loss_of(targets, predicted):
        amplitude, phase = predicted
        return (tf.reduce_mean(tf.square(amplitude - targets[0]))
                + tf.reduce_mean(tf.square(phase - targets[1])))

    return fit(model, loss_of, [diffraction.astype(np.float32)],
                [np.abs(ground_truth).astype(np.float32), np.angle(ground_truth).astype(np.float32)],
                epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed, progress=progress)


def save_bundle(model, bundle_dir: Path, *, intensity_scale: float, work_dir: Path) -> Path:
    """Write a PtychoPINN-style bundle: ``bundle_dir/wts.h5.zip`` holding ``diffraction_to_obj/``
    with ``model.keras`` and ``model.h5`` (an HDF5 file whose only content is the float
    attribute ``intensity_scale``). No dill or pickle files are written.
    """
    import h5py  # noqa: PLC0415

    work_dir.mkdir(parents=True, exist_ok=True)
    keras_path = work_dir / "model.keras"
    h5_path = work_dir / "model.h5"
    model.save(keras_path)
    with h5py.File(h5_path, "w") as h5:
        h5.attrs["intensity_scale"] = np.float64(intensity_scale)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    archive = bundle_dir / "wts.h5.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(keras_path, "diffraction_to_obj/model.keras")
        zf.write(h5_path, "diffraction_to_obj/model.h5")
    keras_path.unlink()
    h5_path.unlink()
    return archive


def read_bundle_intensity_scale(bundle_dir: Path) -> float:
    """The ``intensity_scale`` attribute of ``diffraction_to_obj/model.h5`` in a bundle."""
    import h5py  # noqa: PLC0415

    with zipfile.ZipFile(Path(bundle_dir) / "wts.h5.zip") as zf:
        data = zf.read("diffraction_to_obj/model.h5")
    with h5py.File(io.BytesIO(data), "r") as h5:
        return float(h5.attrs["intensity_scale"])


def load_scenario_model(path: Path):
    """Load a scenario model (``.keras`` file or bundle directory) with plain Keras + our layers.

    For a bundle, ``diffraction_to_obj/model.keras`` is extracted next to nothing: it is read
    from the zip into a temporary file. Safe mode stays on (no lambdas are needed).
    """
    import tempfile  # noqa: PLC0415

    _, keras = _keras()
    path = Path(path)
    if path.is_dir():
        with zipfile.ZipFile(path / "wts.h5.zip") as zf, tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "model.keras"
            target.write_bytes(zf.read("diffraction_to_obj/model.keras"))
            return keras.saving.load_model(target)
    return keras.saving.load_model(path)


def plant_dead_layer(model) -> dict:
    """Set the bias of the ReLU layer DEAD_LAYER to DEAD_LAYER_BIAS (all units negative)."""
    layer = model.get_layer(DEAD_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.full_like(bias, DEAD_LAYER_BIAS)])
    return {"layer": DEAD_LAYER, "bias": DEAD_LAYER_BIAS}


def plant_nan_weights(model) -> dict:
    """Make the first bias of NAN_LAYER NaN: that output channel is NaN at every pixel."""
    layer = model.get_layer(NAN_LAYER)
    kernel, bias = layer.get_weights()
    bias = bias.copy()
    bias[0] = np.nan
    layer.set_weights([kernel, bias])
    return {"layer": NAN_LAYER, "weight": "bias", "index": [0]}


def sidecar(path: Path, payload: dict) -> None:
    """Write a small JSON file next to a model (its intensity scale, gridsize, how it was fed)."""
    path.write_text(json.dumps(payload, indent=2) + "\n")
