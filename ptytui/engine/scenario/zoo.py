"""The scenario's models: a gs2 PINN, a gs1 PINN "Baseline" bundle and a supervised U-Net.

Built from ``ptytui.engine.layers`` (Keras 3), trained briefly, saved without pickles. Imports
TensorFlow when a function runs, never at import time.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEAD_LAYER",
    "NAN_LAYER",
    "PinnModels",
    "build_pinn",
    "build_supervised_unet",
    "canvas_size",
    "intensity_scale_for",
    "load_scenario_model",
    "plant_dead_layer",
    "plant_nan_weights",
    "read_bundle_intensity_scale",
    "save_bundle",
    "train_pinn",
    "train_supervised",
]

# PtychoPINN's canvas: P = N + (gridsize - 1) * offset + jitter, offset 4, jitter 10.
GROUP_OFFSET_PX = 4
JITTER_PX = 10

# Where the model defects are planted (layer names in pinn_gs2).
DEAD_LAYER = "amp_decoder1_conv"  # the amplitude decoder's last ReLU convolution
DEAD_LAYER_BIAS = -1e4  # far below any pre-activation the data can produce
# The amplitude head: its sigmoid passes NaN on. (A NaN inside the encoder is not reliable: a ReLU
# may turn NaN into 0, so whether it reaches the output depends on the kernel's code path.)
NAN_LAYER = "amp"


def canvas_size(N: int, gridsize: int) -> int:
    """Reassembly canvas side P = N + (gridsize - 1) * 4 + 10 pixels."""
    return N + (gridsize - 1) * GROUP_OFFSET_PX + JITTER_PX


def intensity_scale_for(dose: float, N: int) -> float:
    """PtychoPINN's physics scale s = sqrt(nphotons) / (N / 2) (0.494 at 1e3 photons, N = 128)."""
    return math.sqrt(dose) / (N / 2)


def _keras():
    from ptytui.engine import layers  # noqa: PLC0415  (registers the ptytui layers)

    return layers, layers.keras


@dataclass
class PinnModels:
    """The two graphs of one PINN: inference (saved) and training (with the physics branch)."""

    diffraction_to_obj: object  # keras.Model [input, input_positions] -> (B, N, N, 1) complex64
    autoencoder: object  # keras.Model [input, input_positions] -> (B, N, N, C) counts amplitude
    probe_layer: object


def build_pinn(N: int, gridsize: int, intensity_scale: float, filters, probe: np.ndarray) -> PinnModels:
    """A PINN of the PtychoPINN family (written from DOMAIN.md, not from its code).

    Inputs ``input`` (B, N, N, C) = amplitude * intensity_scale and ``input_positions``
    (B, 1, 2, C) relative offsets [x, y]. A conv encoder (conv-relu-conv-relu-maxpool blocks),
    two decoders (amplitude: sigmoid head, phase: pi * tanh head), complex combine, reassembly on
    a P x P canvas (P = ``canvas_size``), crop to N. The training graph adds the physics branch:
    re-extract each pattern's patch from the canvas, multiply by the probe, FFT amplitude, times
    intensity_scale (counts amplitude), for a Poisson likelihood against the input.
    """
    layers, keras = _keras()
    C = gridsize * gridsize
    P = canvas_size(N, gridsize)
    diffraction = keras.Input((N, N, C), name="input")
    positions = keras.Input((1, 2, C), name="input_positions")
    x = layers.IntensityScale(intensity_scale, invert=True, name="intensity_scaler")(diffraction)
    for block, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"encoder{block}_conv1")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"encoder{block}_conv2")(x)
        x = keras.layers.MaxPooling2D(2, name=f"encoder{block}_pool")(x)
    encoded = x

    def decoder(head: str):
        y = encoded
        for block in range(len(filters), 0, -1):
            y = keras.layers.Conv2D(filters[block - 1], 3, padding="same", activation="relu",
                                    name=f"{head}_decoder{block}_conv")(y)
            y = keras.layers.UpSampling2D(2, name=f"{head}_decoder{block}_up")(y)
        return y

    amplitude = keras.layers.Conv2D(C, 3, padding="same", activation="sigmoid", name="amp")(decoder("amp"))
    phase = keras.layers.Conv2D(C, 3, padding="same", name="phase_conv")(decoder("phase"))
    phase = layers.ScaledTanh(math.pi, name="phi")(phase)
    obj = layers.CombineComplex(name="obj")(amplitude, phase)
    trimmed = layers.ReassemblePatches(N, P, gridsize, crop=True, name="trimmed_obj")(obj, positions)
    inference = keras.Model([diffraction, positions], trimmed, name="diffraction_to_obj")

    canvas = layers.ReassemblePatches(N, P, gridsize, crop=False, name="padded_obj")(obj, positions)
    patches = layers.ExtractPatches(N, P, gridsize, name="extracted_patches")(canvas, positions)
    probe_layer = layers.ProbeIllumination(N, name="probe_illumination")
    illuminated = probe_layer(patches)
    far_field = layers.FFTAmplitude(name="pred_amplitude")(illuminated)
    counts_amplitude = layers.IntensityScale(intensity_scale, name="pred_amplitude_scaled")(far_field)
    autoencoder = keras.Model([diffraction, positions], counts_amplitude, name="autoencoder")
    probe_layer.set_probe(probe)
    return PinnModels(inference, autoencoder, probe_layer)


def build_supervised_unet(N: int, filters):
    """A PtychoNN-style supervised U-Net: diffraction (B, N, N, 1) -> [amplitude, phase].

    Input ``diffraction`` is the stored (normalized) amplitude, no intensity scale and no
    positions. Encoder blocks (conv-relu-conv-relu-maxpool) with skip connections into two
    decoders; both heads are linear (1 x 1 convolutions), as in the supervised Baseline.
    """
    _, keras = _keras()
    diffraction = keras.Input((N, N, 1), name="diffraction")
    x = diffraction
    skips = []
    for block, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"encoder{block}_conv1")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"encoder{block}_conv2")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"encoder{block}_pool")(x)
    encoded = keras.layers.Conv2D(filters[-1], 3, padding="same", activation="relu", name="bottleneck_conv")(x)

    def decoder(head: str):
        y = encoded
        for block in range(len(filters), 0, -1):
            y = keras.layers.UpSampling2D(2, name=f"{head}_decoder{block}_up")(y)
            y = keras.layers.Concatenate(name=f"{head}_decoder{block}_skip")([y, skips[block - 1]])
            y = keras.layers.Conv2D(filters[block - 1], 3, padding="same", activation="relu",
                                    name=f"{head}_decoder{block}_conv")(y)
        return y

    amplitude = keras.layers.Conv2D(1, 1, name="amplitude")(decoder("amplitude"))
    phase = keras.layers.Conv2D(1, 1, name="phase")(decoder("phase"))
    return keras.Model(diffraction, [amplitude, phase], name="supervised_unet")


def compiled_train_step(model, optimizer, loss_of, n_inputs: int, signature: list):
    """One Adam step as a ``tf.function`` over (inputs..., targets...): the first ``n_inputs``
    tensors feed the model, the rest are the targets ``loss_of(targets, predicted)`` compares.
    Shared by the scenario's training and the Baseline retraining."""
    layers, _ = _keras()
    tf = layers.tf

    @tf.function(input_signature=signature)
    def step(*tensors):
        model_inputs = list(tensors[:n_inputs])
        with tf.GradientTape() as tape:
            predicted = model(model_inputs if n_inputs > 1 else model_inputs[0], training=True)
            loss = loss_of(list(tensors[n_inputs:]), predicted)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step


def _fit(model, loss_of, inputs: list[np.ndarray], targets: list[np.ndarray], *, epochs: int, batch_size: int,
         learning_rate: float, seed: int, progress=None) -> list[float]:
    """Minimal Adam training loop: one traced step with a batch dimension of None (no retracing
    for the last, smaller batch), seeded shuffling, mean loss per epoch.

    ``Model.fit`` is avoided on purpose: on a 2-core CPU its first-epoch tracing cost several
    seconds more per model, which the tiny preset's budget cannot afford.
    """
    layers, keras = _keras()
    tf = layers.tf
    keras.utils.set_random_seed(seed)
    optimizer = keras.optimizers.Adam(learning_rate)
    # Creating the optimizer's slots inside the traced step costs seconds of tracing; build first.
    optimizer.build(model.trainable_variables)
    n_inputs = len(inputs)
    arrays = [np.ascontiguousarray(a) for a in (*inputs, *targets)]
    signature = [tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)) for a in arrays]

    step = compiled_train_step(model, optimizer, loss_of, n_inputs, signature)

    rng = np.random.default_rng(seed)
    count = arrays[0].shape[0]
    history = []
    for epoch in range(epochs):
        order = rng.permutation(count)
        total, seen = 0.0, 0
        for start in range(0, count, batch_size):
            idx = np.sort(order[start : start + batch_size])
            loss = step(*[a[idx] for a in arrays])
            total += float(loss) * idx.size
            seen += idx.size
        history.append(total / max(seen, 1))
        if progress:
            progress(epoch + 1, epochs)
    return history


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

    return _fit(models.autoencoder, loss_of, [counts_amplitude, offsets.astype(np.float32)], [counts_amplitude],
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

    return _fit(model, loss_of, [diffraction.astype(np.float32)],
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
