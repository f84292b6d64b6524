"""Layer trace: nested models, multi-input/output and complex tensors, dead channels, weight health,
first collapse, preview, side-by-side comparison, eager vs compiled, keras.applications."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptytui.core.stats import stats_of_array
from ptytui.running.trace import compare_traces, find_first_collapse, trace_model, weight_health

keras = pytest.importorskip("keras")


def _nested_model_with_dead_relu():
    """outer: input -> encoder(inner: conv -> dead relu) -> dense head; plus a healthy branch."""
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    inner_in = k.Input((8, 8, 3), name="inner_in")
    h = k.layers.Conv2D(4, 3, padding="same", name="conv")(inner_in)
    # a bias of -1e4 pushes every unit negative: the ReLU returns exact zeros
    h = k.layers.Dense(4, name="shift", kernel_initializer="ones",
                       bias_initializer=k.initializers.Constant(-1e4))(h)
    h = k.layers.ReLU(name="relu")(h)
    inner = k.Model(inner_in, h, name="inner")
    encoder_in = k.Input((8, 8, 3), name="encoder_in")
    encoder = k.Model(encoder_in, inner(encoder_in), name="encoder")
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Flatten(name="flat")(encoder(x))
    y = k.layers.Dense(2, name="head")(y)
    return k.Model(x, y, name="outer")


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype(np.float32)


def test_nested_paths_and_dead_layer_inside_a_submodel(batch):
    trace = trace_model(_nested_model_with_dead_relu(), batch, model_name="m", split="s")
    paths = trace.paths()
    assert paths[:2] == ["image", "encoder"]
    assert {"encoder/inner", "encoder/inner/conv", "encoder/inner/shift", "encoder/inner/relu",
            "flat", "head"} <= set(paths)
    relu = trace.layer("encoder/inner/relu")
    assert relu.parent == "encoder/inner" and relu.depth == 2
    assert relu.nonzero_fraction == 0.0
    assert relu.dead_channels == relu.channels == 4
    assert trace.first_collapse is not None
    assert trace.first_collapse.path == "encoder/inner/relu"
    assert trace.first_collapse.upstream_path == "encoder/inner/shift"
    assert trace.first_collapse.upstream_nonzero_fraction > 0.5


def test_layer_statistics_match_numpy(batch):
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    x = k.Input((8, 8, 3), name="x")
    conv = k.layers.Conv2D(2, 1, name="conv")
    model = k.Model(x, k.layers.ReLU(name="relu")(conv(x)))
    trace = trace_model(model, batch)
    expected = np.maximum(np.asarray(conv(batch)), 0)
    got = trace.layer("relu").output
    want = stats_of_array(expected)
    assert got.count == want.count and got.zero_count == want.zero_count
    assert got.mean == pytest.approx(want.mean, rel=1e-5)
    assert got.std == pytest.approx(want.std, rel=1e-4)
    assert (got.hist_counts == want.hist_counts).all()


def test_multi_input_multi_output_and_complex():
    from ptytui.core.tfload import keras as _keras
    from ptytui.core.tfload import tf as _tf

    k, tf = _keras(), _tf()

    class ToComplex(k.layers.Layer):
        def call(self, a, b):
            return tf.complex(a, b)

        def compute_output_spec(self, a, b):
            return k.KerasTensor(a.shape, dtype="complex64")

    a = k.Input((4, 4, 1), name="amp")
    b = k.Input((4, 4, 1), name="phase_in")
    c = ToComplex(name="combine")(a, b)
    model = k.Model([a, b], [c, k.layers.Add(name="sum")([a, b])])
    rng = np.random.default_rng(1)
    inputs = {"amp": rng.random((3, 4, 4, 1)).astype(np.float32),
              "phase_in": rng.random((3, 4, 4, 1)).astype(np.float32)}
    trace = trace_model(model, inputs)
    combine = trace.layer("combine")
    assert set(combine.outputs) == {"output.amplitude", "output.phase"}
    assert combine.output_dtypes == ["complex64"]
    amplitude = np.abs(inputs["amp"] + 1j * inputs["phase_in"])
    assert combine.outputs["output.amplitude"].mean == pytest.approx(amplitude.mean(), rel=1e-5)
    assert trace.layer("combine").inputs == ["amp", "phase_in"]
    assert trace.layer("sum").output.count == 48


def test_weight_health_finds_nan_and_zero_kernels(batch):
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    x = k.Input((8, 8, 3), name="x")
    bad = k.layers.Conv2D(2, 3, padding="same", name="bad")
    zero = k.layers.Conv2D(2, 1, name="zero", kernel_initializer="zeros")
    model = k.Model(x, zero(bad(x)))
    kernel, bias = bad.get_weights()
    kernel[0, 0, 0, 0] = np.nan
    bad.set_weights([kernel, bias])
    trace = trace_model(model, batch)
    assert trace.layer("bad").weights["kernel"].stats.nan_count == 1
    assert trace.layer("bad").weights["bias"].nonfinite_count == 0
    assert trace.layer("zero").weights["kernel"].all_zero
    assert not trace.layer("zero").weights["bias"].is_kernel
    assert trace.first_nonfinite().path == "bad"
    health = weight_health(bad)
    assert health["kernel"].l2_norm == pytest.approx(float(np.sqrt(np.nansum(kernel.astype(np.float64) ** 2))))


def test_preview_is_one_small_sample():
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    x = k.Input((130, 70, 3), name="x")
    model = k.Model(x, k.layers.Conv2D(5, 1, name="conv")(x))
    trace = trace_model(model, np.ones((2, 130, 70, 3), np.float32), preview="conv")
    assert trace.preview.path == "conv"
    assert trace.preview.image.shape == (44, 35)  # strides 3 and 2 keep each side <= 64
    assert trace.preview.stride == (3, 2)


def test_compiled_and_eager_agree(batch):
    model = _nested_model_with_dead_relu()
    eager = trace_model(model, batch)
    compiled = trace_model(model, batch, compiled=True)
    assert eager.paths() == compiled.paths()
    for a, b in zip(eager.layers, compiled.layers):
        assert a.output.zero_count == b.output.zero_count
        assert a.output.mean == pytest.approx(b.output.mean, rel=1e-5, abs=1e-9)
        assert a.dead_channels == b.dead_channels


def test_sequential_and_comparison(batch):
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    model = k.Sequential([k.Input((8, 8, 3)), k.layers.Conv2D(3, 1, name="c"),
                          k.layers.ReLU(name="r")], name="seq")
    a = trace_model(model, batch, split="train")
    b = trace_model(model, -np.abs(batch) * 0 + 0.0, split="test")
    assert [e.path for e in a.layers if not e.is_input] == ["c", "r"]
    comparison = compare_traces(a, b)
    assert comparison.splits == ("train", "test")
    assert comparison.first_divergence == "c"  # zeros in, bias only (zero init) out
    assert find_first_collapse(b.layers) is None  # its input was never healthy


def test_keras_applications_architecture():
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    model = k.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.35)
    x = np.random.default_rng(2).random((2, 32, 32, 3)).astype(np.float32)
    trace = trace_model(model, x, with_weights=False)
    leaf = [e for e in trace.layers if not e.is_input]
    assert len(leaf) == len(model.layers) - 1  # every layer but the InputLayer, once
    assert trace.layers[-1].output.count == 2 * 4
    assert trace.layers[-1].output.nonzero_fraction == 1.0  # softmax
    assert all(e.output.nan_count == 0 for e in trace.layers)


def test_to_dict_has_the_trace_keys(batch):
    trace = trace_model(_nested_model_with_dead_relu(), batch, model_name="m", split="s")
    d = trace.to_dict()
    assert {"model", "split", "layers", "first_collapse"} <= set(d)
    layer = d["layers"][3]
    assert {"path", "type", "output", "dead_channels", "channels", "weights"} <= set(layer)
    assert {"count", "mean", "std", "nonzero_fraction", "histogram"} <= set(layer["output"])
    assert {"path", "upstream_nonzero_fraction", "nonzero_fraction"} <= set(d["first_collapse"])


def test_reduction_in_slices_changes_no_number(batch, monkeypatch):
    from ptytui.running import trace as trace_module

    model = _nested_model_with_dead_relu()
    whole = trace_model(model, batch)
    monkeypatch.setattr(trace_module, "REDUCE_CHUNK_ELEMENTS", 60)  # many uneven slices
    sliced = trace_model(model, batch)
    for a, b in zip(whole.layers, sliced.layers):
        assert a.output.count == b.output.count and a.output.zero_count == b.output.zero_count
        assert (a.output.hist_counts == b.output.hist_counts).all()
        assert a.output.mean == pytest.approx(b.output.mean, rel=1e-9, abs=1e-12)
        assert a.output.std == pytest.approx(b.output.std, rel=1e-9, abs=1e-12)
        assert (a.channels, a.dead_channels) == (b.channels, b.dead_channels)


def test_underflow_is_counted_or_flushed():
    from ptytui.core.tfload import keras as _keras
    from ptytui.core.tfload import tf as _tf
    from ptytui.diagnosis.hypotheses import subnormals_flushed

    k, tf = _keras(), _tf()

    class Subnormal(k.layers.Layer):
        def call(self, v):
            return tf.fill(tf.shape(v), np.float32(1e-39))  # below float32's smallest normal

    x = k.Input((4,), name="x")
    trace = trace_model(k.Model(x, Subnormal(name="tiny")(x)), np.ones((2, 4), np.float32))
    layer = trace.layer("tiny")
    if subnormals_flushed():  # TensorFlow on CPU: the value is an exact zero
        assert layer.underflow_count == 0 and layer.output.zero_count == 8
    else:
        assert layer.underflow_count == 8 and layer.underflow_fraction == 1.0


def test_preview_and_config_travel_with_the_layer_in_json():
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    x = k.Input((6, 6, 2), name="x")
    model = k.Model(x, k.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(x))
    trace = trace_model(model, np.ones((2, 6, 6, 2), np.float32), preview="conv")
    layer = next(d for d in trace.to_dict()["layers"] if d["path"] == "conv")
    assert np.asarray(layer["preview"]).shape == (6, 6)
    assert layer["config"]["filters"] == 3 and layer["config"]["padding"] == "same"
    assert layer["activation"] == "relu"
    json.dumps(trace.to_dict(), allow_nan=False)


def test_preview_of_a_nested_model_and_of_its_last_layer(batch):
    model = _nested_model_with_dead_relu()
    inner = trace_model(model, batch, preview="encoder/inner/relu")
    outer = trace_model(model, batch, preview="encoder")
    assert inner.preview.path == "encoder/inner/relu" and outer.preview.path == "encoder"
    assert inner.layer("encoder").output == inner.layer("encoder/inner/relu").output
