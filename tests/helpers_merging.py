"""A real Keras layer that sums the samples of a call into one (PtychoPINN's reassembly does so
from 64 patches on): the model behind the output-count tests, registered once so saved models
load in any test process."""

from __future__ import annotations

_LAYER = None


def sum_samples_layer():
    """The registered ``ptytui_tests>SumSamples`` layer class (seeds Keras too, so the small
    models built around it start from the same weights on every run)."""
    global _LAYER
    from ptytui.core.tfload import keras as _keras  # noqa: PLC0415 - TensorFlow on first use
    from ptytui.core.tfload import tf as _tf  # noqa: PLC0415 - TensorFlow on first use

    k, tf = _keras(), _tf()
    k.utils.set_random_seed(0)
    if _LAYER is None:
        @k.saving.register_keras_serializable(package="ptytui_tests")
        class SumSamples(k.layers.Layer):
            def call(self, x):
                return tf.reduce_sum(x, axis=0, keepdims=True)

            def compute_output_shape(self, shape):
                return (1,) + tuple(shape[1:])

        _LAYER = SumSamples
    return _LAYER
