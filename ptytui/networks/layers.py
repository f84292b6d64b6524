"""ptytui's own Keras 3 layers for PINN-style ptychography models (the demo scenario's models).

Importing this module imports TensorFlow (through ``tfload``) and registers every class below
under the Keras package name ``ptytui``, so ``keras.saving.load_model`` can rebuild our models.

Conventions
-----------
- Offsets are (B, 1, 2, C) in object pixels, order [x, y] (x = column, y = row), one per channel.
- Reassembly places each (N, N) patch on a zero (P, P) canvas and translates it by **-offset**
  with bilinear interpolation and a constant fill of exactly 0, so a patch moved by N pixels or
  more along either axis leaves the centre crop entirely: exact zeros, not small numbers.
- Every layer works per sample: nothing mixes samples of a batch (PtychoPINN's reassembly
  subtracts a mean offset over each predict call, which makes outputs depend on batching).
"""

from __future__ import annotations

import math

from ptytui.core.tfload import keras as _keras
from ptytui.core.tfload import tf as _tf

tf = _tf()
keras = _keras()

PACKAGE = "ptytui"

# Smallest predicted intensity in the Poisson likelihood. The model predicts exact zeros where a
# patch was translated off the canvas and in dark-field pixels, and log(0) = -inf would make the
# loss and its gradient non-finite; 1e-6 counts is far below one photon, so it changes nothing
# where the prediction is meaningful.
POISSON_EPSILON = 1e-6

__all__ = [
    "PACKAGE",
    "POISSON_EPSILON",
    "CombineComplex",
    "ExtractPatches",
    "FFTAmplitude",
    "IntensityScale",
    "PoissonNLL",
    "ProbeIllumination",
    "ReassemblePatches",
    "ScaledTanh",
    "custom_objects",
    "poisson_nll",
    "translate_images",
]


def translate_images(images, shifts, output_size=None):
    """Translate each image of a batch by its own (dx, dy), bilinear, zero fill.

    Parameters
    ----------
    images : tf.Tensor, float32, (B, H, W, K)
    shifts : tf.Tensor, float32, (B, 2)
        [dx, dy] in pixels: content moves right by dx (columns) and down by dy (rows).
    output_size : (rows, cols), optional
        Size of the output window, whose pixel (0, 0) is the input's pixel (0, 0); default (H, W).

    Returns
    -------
    tf.Tensor, float32, (B, rows, cols, K)
        out[y, x] = images[y - dy, x - dx], bilinear between pixels; samples that fall outside
        the image read exactly 0 (fill_mode CONSTANT, fill_value 0).
    """
    shifts = tf.cast(shifts, tf.float32)
    batch = tf.shape(images)[0]
    ones = tf.ones((batch,), tf.float32)
    zeros = tf.zeros((batch,), tf.float32)
    # ImageProjectiveTransformV3 maps each OUTPUT pixel (x, y) to the INPUT point
    # (a0 x + a1 y + a2, b0 x + b1 y + b2); moving content by +d means reading at (x - dx, y - dy).
    transforms = tf.stack(
        [ones, zeros, -shifts[:, 0], zeros, ones, -shifts[:, 1], zeros, zeros], axis=1
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3] if output_size is None else tf.constant(output_size, tf.int32),
        fill_value=tf.constant(0.0, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _register(cls):
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


@_register
class CombineComplex(keras.layers.Layer):
    """(amplitude, phase) -> amplitude * exp(i * phase), complex64, same shape."""

    def call(self, amplitude, phase):
        amplitude = tf.cast(amplitude, tf.float32)
        phase = tf.cast(phase, tf.float32)
        return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))

    def compute_output_spec(self, amplitude, phase):
        return keras.KerasTensor(amplitude.shape, dtype="complex64")


@_register
class ScaledTanh(keras.layers.Layer):
    """scale * tanh(x): the PINN phase head (scale = pi gives phases in (-pi, pi))."""

    def __init__(self, scale: float = math.pi, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x):
        return self.scale * tf.tanh(x)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@_register
class IntensityScale(keras.layers.Layer):
    """Multiply by the physics intensity scale s, or divide by it (``invert=True``).

    PINN models receive amplitude * s (s = sqrt(nphotons) / (N/2)) and divide it out first thing,
    as PtychoPINN's IntensityScaler does; the training branch multiplies predictions by s to
    compare them with counts. ``scale`` in the config is s itself in both directions, so a model
    card can read the model's intensity scale from this layer's config.
    """

    def __init__(self, scale: float = 1.0, invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.invert = bool(invert)

    def call(self, x):
        factor = 1.0 / self.scale if self.invert else self.scale
        return x * factor

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "invert": self.invert}


def _split_offsets(offsets):
    """(B, 1, 2, C) offsets -> (B*C, 2) [dx, dy], channel-major within each sample."""
    offsets = tf.cast(offsets, tf.float32)
    per_channel = tf.transpose(offsets[:, 0, :, :], (0, 2, 1))  # (B, C, 2)
    return tf.reshape(per_channel, (-1, 2))


def _channels_to_batch(x):
    """(B, H, W, C) -> (B*C, H, W, 1)."""
    shape = tf.shape(x)
    x = tf.transpose(x, (0, 3, 1, 2))
    return tf.reshape(x, (shape[0] * shape[3], shape[1], shape[2], 1))


@_register
class ReassemblePatches(keras.layers.Layer):
    """Place C complex patches on a zero canvas at -offset each, average them, crop the centre.

    Inputs: [patches (B, N, N, C) complex64, offsets (B, 1, 2, C) float32, [x, y]].
    Output: (B, N, N, 1) complex64 (``crop=True``) or the whole (B, P, P, 1) canvas.

    Each patch is zero-padded to P x P (centred) and translated by -offset with bilinear
    interpolation and zero fill. Overlapping patches are averaged: the sum of translated patches
    is divided by the translated coverage (a translated patch of ones), floored at 1 so that a
    pixel covered by a sliver is not amplified and a pixel no patch reaches stays exactly 0.
    """

    def __init__(self, patch_size: int, canvas_size: int, gridsize: int = 1, crop: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.canvas_size = int(canvas_size)
        self.gridsize = int(gridsize)
        self.crop = bool(crop)
        if self.canvas_size < self.patch_size or (self.canvas_size - self.patch_size) % 2:
            raise ValueError(
                f"canvas_size {canvas_size} must be >= patch_size {patch_size} with an even margin"
            )

    def call(self, patches, offsets):
        N, P = self.patch_size, self.canvas_size
        patches = tf.cast(patches, tf.complex64)
        batch = tf.shape(patches)[0]
        channels = tf.shape(patches)[3]
        coverage = tf.ones_like(tf.math.real(patches))
        stacked = tf.stack([tf.math.real(patches), tf.math.imag(patches), coverage], axis=-1)  # (B,N,N,C,3)
        stacked = tf.transpose(stacked, (0, 3, 1, 2, 4))  # (B, C, N, N, 3)
        stacked = tf.reshape(stacked, (batch * channels, N, N, 3))
        # Translate by -offset: content moves by (-dx, -dy). With a zero fill, padding a patch to
        # P x P, translating and cropping the centre N x N equals translating the unpadded patch
        # inside an N x N window, so the cropped output skips the canvas (half the pixels).
        if self.crop:
            size = N
            moved = translate_images(stacked, -_split_offsets(offsets))
        else:
            size = P
            pad = (P - N) // 2
            stacked = tf.pad(stacked, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            moved = translate_images(stacked, -_split_offsets(offsets))
        moved = tf.reshape(moved, (batch, channels, size, size, 3))
        summed = tf.reduce_sum(moved, axis=1)  # (B, size, size, 3)
        weight = tf.maximum(summed[..., 2], 1.0)
        return tf.complex(summed[..., 0] / weight, summed[..., 1] / weight)[..., None]

    def compute_output_spec(self, patches, offsets):
        size = self.patch_size if self.crop else self.canvas_size
        return keras.KerasTensor((patches.shape[0], size, size, 1), dtype="complex64")

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "canvas_size": self.canvas_size,
            "gridsize": self.gridsize,
            "crop": self.crop,
        }


@_register
class ExtractPatches(keras.layers.Layer):
    """The inverse of reassembly: cut C patches back out of a (B, P, P, 1) complex canvas.

    Inputs: [canvas (B, P, P, 1) complex64, offsets (B, 1, 2, C)]. Output (B, N, N, C) complex64:
    patch c is the canvas translated by +offset_c (bringing that pattern's region to the centre),
    cropped to the centre N x N. Used by the physics training branch of a gridsize > 1 PINN.
    """

    def __init__(self, patch_size: int, canvas_size: int, gridsize: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.canvas_size = int(canvas_size)
        self.gridsize = int(gridsize)

    def call(self, canvas, offsets):
        N, P = self.patch_size, self.canvas_size
        C = self.gridsize**2
        pad = (P - N) // 2
        canvas = tf.cast(canvas, tf.complex64)
        batch = tf.shape(canvas)[0]
        parts = tf.concat([tf.math.real(canvas), tf.math.imag(canvas)], axis=-1)  # (B, P, P, 2)
        parts = tf.repeat(parts, C, axis=0)  # (B*C, P, P, 2), channel-major within a sample
        # translate by +offset, then crop the centre: out[y, x] = canvas[y + pad - oy, x + pad - ox]
        moved = translate_images(parts, _split_offsets(offsets) - float(pad), output_size=(N, N))
        moved = tf.reshape(moved, (batch, C, N, N, 2))
        moved = tf.transpose(moved, (0, 2, 3, 1, 4))  # (B, N, N, C, 2)
        return tf.complex(moved[..., 0], moved[..., 1])

    def compute_output_spec(self, canvas, offsets):
        N = self.patch_size
        return keras.KerasTensor((canvas.shape[0], N, N, self.gridsize**2), dtype="complex64")

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "canvas_size": self.canvas_size,
            "gridsize": self.gridsize,
        }


@_register
class ProbeIllumination(keras.layers.Layer):
    """Multiply complex object patches (B, N, N, C) by the probe (N, N), the same for every channel.

    The probe is a pair of non-trainable weights (real, imaginary) saved with the model's weights,
    so the config holds only its size. Set it with ``set_probe`` after the layer is built.
    """

    def __init__(self, patch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)

    def build(self, input_shape=None):
        N = self.patch_size
        self.probe_real = self.add_weight(name="probe_real", shape=(N, N), initializer="ones", trainable=False)
        self.probe_imag = self.add_weight(name="probe_imag", shape=(N, N), initializer="zeros", trainable=False)

    def set_probe(self, probe) -> None:
        """Store a (N, N) complex probe."""
        import numpy as np  # noqa: PLC0415

        probe = np.asarray(probe, dtype=np.complex64)
        if probe.shape != (self.patch_size, self.patch_size):
            raise ValueError(f"probe shape {probe.shape} does not match patch_size {self.patch_size}")
        if not self.built:
            self.build()
        self.probe_real.assign(probe.real.astype("float32"))
        self.probe_imag.assign(probe.imag.astype("float32"))

    def call(self, patches):
        probe = tf.complex(self.probe_real, self.probe_imag)[None, :, :, None]
        return tf.cast(patches, tf.complex64) * probe

    def compute_output_spec(self, patches):
        return keras.KerasTensor(patches.shape, dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


@_register
class FFTAmplitude(keras.layers.Layer):
    """Far-field amplitude |fftshift(FFT2(field))| / N of (B, N, N, C) complex fields, float32.

    With the 1/N factor, sum(amplitude**2) equals sum(|field|**2) (Parseval), and the zero
    frequency sits at pixel (N/2, N/2), as in the stored diffraction.
    """

    def call(self, fields):
        fields = tf.cast(fields, tf.complex64)
        n = tf.cast(tf.shape(fields)[1], tf.float32)
        spectrum = tf.signal.fft2d(tf.transpose(fields, (0, 3, 1, 2)))  # FFT over the last two axes
        spectrum = tf.signal.fftshift(spectrum, axes=(2, 3))
        return tf.transpose(tf.math.abs(spectrum), (0, 2, 3, 1)) / n

    def compute_output_spec(self, fields):
        return keras.KerasTensor(fields.shape, dtype="float32")


def poisson_nll(observed_amplitude, predicted_amplitude):
    """Poisson negative log-likelihood of counts, given amplitudes (sqrt of counts).

    lambda = predicted_amplitude**2 + POISSON_EPSILON, k = observed_amplitude**2;
    loss = mean(lambda - k * log(lambda)) (the log k! term does not depend on the model).
    """
    observed = tf.cast(observed_amplitude, tf.float32)
    predicted = tf.cast(predicted_amplitude, tf.float32)
    rate = tf.square(predicted) + POISSON_EPSILON
    return tf.reduce_mean(rate - tf.square(observed) * tf.math.log(rate), axis=[1, 2, 3])


@_register
class PoissonNLL(keras.losses.Loss):
    """Keras loss wrapper of ``poisson_nll`` (serializable as ``ptytui>PoissonNLL``)."""

    def __init__(self, name: str = "poisson_nll", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return poisson_nll(y_true, y_pred)


def custom_objects() -> dict:
    """Every class this module registers, by class name (for ``custom_objects=`` arguments)."""
    return {
        cls.__name__: cls
        for cls in (CombineComplex, ScaledTanh, IntensityScale, ReassemblePatches, ExtractPatches,
                    ProbeIllumination, FFTAmplitude, PoissonNLL)
    }
