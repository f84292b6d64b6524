"""ptytui's Keras layers: exact translation and zero fill, averaging, physics pieces, serialization."""

from __future__ import annotations

import math

import numpy as np
import pytest

layers = pytest.importorskip("ptytui.networks.layers")
keras = layers.keras

N = 8
P = N + 10


def _patches(batch=2, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.0, (batch, N, N, channels))
            * np.exp(1j * rng.uniform(-1, 1, (batch, N, N, channels)))).astype(np.complex64)


def _offsets(xy_per_sample):
    """[[x, y], ...] per sample -> (B, 1, 2, 1) float32."""
    return np.asarray(xy_per_sample, np.float32)[:, None, :, None]


def test_integer_translation_moves_pixels_exactly():
    image = np.zeros((1, N, N, 1), np.float32)
    image[0, 2, 3, 0] = 1.0  # row 2, column 3
    moved = layers.translate_images(image, np.array([[2.0, 1.0]], np.float32)).numpy()
    assert np.argwhere(moved[0, :, :, 0]).tolist() == [[3, 5]]
    assert moved[0, 3, 5, 0] == 1.0


def test_reassembly_translates_by_minus_offset():
    patches = _patches()
    out = layers.ReassemblePatches(N, P, 1)(patches, _offsets([[2, 1], [-3, 0]])).numpy()
    # offset (x=2, y=1): content moves left 2 and up 1, so out[y, x] = patch[y + 1, x + 2]
    np.testing.assert_array_equal(out[0, : N - 1, : N - 2, 0], patches[0, 1:, 2:, 0])
    np.testing.assert_array_equal(out[1, :, 3:, 0], patches[1, :, : N - 3, 0])


def test_zero_offset_reassembly_is_identity():
    patches = _patches()
    out = layers.ReassemblePatches(N, P, 1)(patches, _offsets([[0, 0], [0, 0]])).numpy()
    np.testing.assert_array_equal(out, patches)


@pytest.mark.parametrize("offset", [[N, 0], [0, N], [-N, 3], [N + 0.4, -2.5], [250.0, 300.0], [-N - 7.3, 0]])
def test_shift_of_n_or_more_gives_exact_zeros(offset):
    out = layers.ReassemblePatches(N, P, 1)(_patches(batch=1), _offsets([offset])).numpy()
    assert np.count_nonzero(out) == 0


def test_partial_shift_keeps_a_sliver():
    # shifted by N - 0.5 columns: only the last column still samples the patch (bilinear)
    out = layers.ReassemblePatches(N, P, 1)(_patches(batch=1), _offsets([[N - 0.5, 0]])).numpy()
    assert np.count_nonzero(out) == N
    assert np.count_nonzero(out[0, :, 0, 0]) == N


def test_overlapping_channels_are_averaged():
    patches = _patches(batch=1, channels=4)
    out = layers.ReassemblePatches(N, P + 4, 2)(patches, np.zeros((1, 1, 2, 4), np.float32)).numpy()
    np.testing.assert_allclose(out[..., 0], patches.mean(axis=-1), rtol=1e-6, atol=1e-7)


def test_extract_undoes_reassembly_of_one_patch():
    patches = _patches(batch=1, channels=4)
    patches[..., 1:] = patches[..., :1]  # the same patch in all four channels
    offsets = np.array([[[[3.0, -2.0, 0.0, 1.0], [1.0, 0.0, -4.0, 2.0]]]], np.float32)
    canvas = layers.ReassemblePatches(N, P + 4, 2, crop=False)(patches[..., :1], offsets[..., :1])
    back = layers.ExtractPatches(N, P + 4, 2)(canvas, offsets[..., :1].repeat(4, axis=-1)).numpy()
    for c in range(4):
        np.testing.assert_allclose(back[..., c], patches[..., 0], rtol=1e-5, atol=1e-6)


def test_reassembly_does_not_couple_samples_of_a_batch():
    patches = _patches(batch=5, seed=3)
    offsets = _offsets([[1.5, -2.0], [40, 40], [0, 0], [-3.25, 7.0], [7.9, 0.1]])
    layer = layers.ReassemblePatches(N, P, 1)
    together = layer(patches, offsets).numpy()
    alone = np.concatenate([layer(patches[i : i + 1], offsets[i : i + 1]).numpy() for i in range(5)])
    np.testing.assert_array_equal(together, alone)


def test_combine_complex():
    amplitude = np.array([[[[0.5], [2.0]]]], np.float32)
    phase = np.array([[[[math.pi / 2], [-math.pi]]]], np.float32)
    out = layers.CombineComplex()(amplitude, phase).numpy()
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out, amplitude * np.exp(1j * phase), atol=1e-6)


def test_fft_amplitude_is_centred_and_keeps_energy():
    field = _patches(batch=1, channels=2)
    amplitude = layers.FFTAmplitude()(field).numpy()
    expected = np.abs(np.fft.fftshift(np.fft.fft2(field, axes=(1, 2)), axes=(1, 2))) / N
    np.testing.assert_allclose(amplitude, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose((amplitude**2).sum(axis=(1, 2)), (np.abs(field) ** 2).sum(axis=(1, 2)), rtol=1e-4)


def test_probe_illumination_multiplies_every_channel():
    layer = layers.ProbeIllumination(N)
    probe = _patches(batch=1, seed=9)[0, :, :, 0]
    layer.set_probe(probe)
    patches = _patches(batch=2, channels=3)
    np.testing.assert_allclose(layer(patches).numpy(), patches * probe[None, :, :, None], rtol=1e-6)


def test_intensity_scale_inverts():
    x = np.full((1, 2, 2, 1), 3.0, np.float32)
    assert float(layers.IntensityScale(1.5)(x)[0, 0, 0, 0]) == pytest.approx(4.5)
    assert float(layers.IntensityScale(1.5, invert=True)(x)[0, 0, 0, 0]) == pytest.approx(2.0)


def test_poisson_nll_is_finite_for_zero_predictions():
    observed = np.ones((1, 2, 2, 1), np.float32)
    loss = layers.poisson_nll(observed, np.zeros_like(observed)).numpy()
    assert np.all(np.isfinite(loss))
    # the minimum over the prediction sits at predicted counts = observed counts
    losses = [float(layers.poisson_nll(observed, np.full_like(observed, a)).numpy()[0]) for a in (0.5, 1.0, 2.0)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


@pytest.mark.parametrize("layer", [
    layers.ReassemblePatches(N, P + 4, 2, crop=False, name="reassemble"),
    layers.ExtractPatches(N, P, 1, name="extract"),
    layers.IntensityScale(0.494, invert=True, name="scaler"),
    layers.ScaledTanh(2.0, name="phi"),
    layers.CombineComplex(name="obj"),
    layers.ProbeIllumination(N, name="probe"),
    layers.FFTAmplitude(name="fft"),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"ptytui>{type(layer).__name__}"
    assert type(keras.saving.deserialize_keras_object(serialized)) is type(layer)


def test_reassembly_model_saves_and_reloads(tmp_path):
    patches = keras.Input((N, N, 1), dtype="complex64", name="patches")
    positions = keras.Input((1, 2, 1), name="input_positions")
    out = layers.ReassemblePatches(N, P, 1, name="trimmed_obj")(patches, positions)
    model = keras.Model([patches, positions], out)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    data = [_patches(), _offsets([[1.25, 0], [9, 9]])]
    np.testing.assert_array_equal(reloaded(data).numpy(), model(data).numpy())
