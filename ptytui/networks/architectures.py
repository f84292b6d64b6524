"""The architectures ptytui builds and trains: a PINN of the PtychoPINN family (inference and
training graphs) and a PtychoNN-style supervised U-Net. Used by retraining and by the demo.

Written from DOMAIN.md, not from PtychoPINN's code. TensorFlow is imported when a builder runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# PtychoPINN's canvas: P = N + (gridsize - 1) * offset + jitter, offset 4, jitter 10.
GROUP_OFFSET_PX = 4
JITTER_PX = 10

def canvas_size(N: int, gridsize: int) -> int:
    """Reassembly canvas side P = N + (gridsize - 1) * 4 + 10 pixels."""
    return N + (gridsize - 1) * GROUP_OFFSET_PX + JITTER_PX


def intensity_scale_for(dose: float, N: int) -> float:
    """PtychoPINN's physics scale s = sqrt(nphotons) / (N / 2) (0.494 at 1e3 photons, N = 128)."""
    return math.sqrt(dose) / (N / 2)


def _keras():
    # Importing the layers imports TensorFlow: deferred to the first model built.
    from ptytui.networks import layers  # noqa: PLC0415

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
