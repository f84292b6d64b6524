"""ptytui's one-pass layer-health kernel against the stock TensorFlow path it replaces on the CPU:
the same numbers (counts, sample sets and histograms exactly, moments to float32 rounding) on
real Keras models, NaN and Inf included; its build, cache and fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ptytui.running import health_kernel
from ptytui.running.layer_health import HealthStep, accumulator_for, run_batch

keras = pytest.importorskip("keras")

HAS_COMPILER = shutil.which(os.environ.get("CXX", "g++")) is not None


def _model_with_everything():
    """conv (one dead channel) -> relu -> a layer that puts NaN / Inf into chosen samples ->
    global pool -> dense: zero samples, dead channels, non-finite samples, ranks 4, 2 and 1."""
    from ptytui.core.tfload import keras as _keras
    from ptytui.core.tfload import tf as _tf

    k, tf = _keras(), _tf()

    class Poison(k.layers.Layer):
        def call(self, x):
            # sample 1 gets NaN where the input is positive, sample 2 Inf; the rest pass through
            ids = tf.reshape(tf.range(tf.shape(x)[0]), [-1, 1, 1, 1])
            poisoned = tf.where((ids == 1) & (x > 0.5), np.float32("nan"), x)
            return tf.where((ids == 2) & (x > 0.5), np.float32("inf"), poisoned)

    x_in = k.Input((12, 12, 3), name="image")
    conv = k.layers.Conv2D(8, 3, padding="same", name="conv")
    h = k.layers.ReLU(name="relu")(conv(x_in))
    h = Poison(name="poison")(h)
    pooled = k.layers.GlobalAveragePooling2D(name="pool")(h)
    out = k.layers.Dense(1, name="head")(pooled)
    model = k.Model(x_in, k.layers.Flatten(name="flat")(out), name="everything")
    kernel, bias = conv.get_weights()
    kernel[..., 3] = 0.0
    bias[3] = -1.0  # channel 3 is dead after the ReLU
    conv.set_weights([kernel, bias])
    return model


def _batch(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 12, 12, 3)).astype(np.float32)
    x[0] = 0.0  # sample 0 is all zero at the input
    return x


def _records(model, batches, *, stock: bool, full_every: int = 1):
    from contextlib import nullcontext

    with health_kernel.stock_only() if stock else nullcontext():
        step = HealthStep(model)
        first = run_batch(step, [batches[0]], full=True)[0]
    accumulator = accumulator_for(step, sample_every=full_every)
    start = 0
    for i, xb in enumerate(batches):
        batch = first if i == 0 else run_batch(step, [xb], full=i % full_every == 0)[0]
        accumulator.add(batch, np.arange(start, start + len(xb)), full=i % full_every == 0)
        start += len(xb)
    return accumulator.records()


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
def test_the_kernel_builds_and_is_used_on_the_cpu():
    assert health_kernel.status() == "native"
    assert health_kernel.kernel() is not None


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
@pytest.mark.parametrize("full_every", [1, 2])
def test_kernel_records_equal_the_stock_records(full_every):
    model = _model_with_everything()
    batches = [_batch(7, seed) for seed in range(4)] + [_batch(3, 9)]
    native = _records(model, batches, stock=False, full_every=full_every)
    stock = _records(model, batches, stock=True, full_every=full_every)
    assert native.keys() == stock.keys()
    poisoned = native["poison"]
    assert poisoned.nan_count > 0 and poisoned.inf_count > 0  # the comparison covers non-finite values
    # samples 1 and 2 of each batch, as half-open runs of group indices
    assert [tuple(r) for r in poisoned.nonfinite_samples] == [(1, 3), (8, 10), (15, 17), (22, 24), (29, 31)]
    assert native["relu"].dead_channels == 1
    for path, a in native.items():
        b = stock[path]
        exact = ("count", "zero_count", "nan_count", "inf_count", "samples", "finite_count", "batches",
                 "moment_batches", "hist_elements", "underflow_count", "zero_samples", "nonfinite_samples")
        for field in exact:
            assert getattr(a, field) == getattr(b, field), (path, field)
        assert (a.channel_nonzero is None) == (b.channel_nonzero is None)
        if a.channel_nonzero is not None:
            assert np.array_equal(a.channel_nonzero, b.channel_nonzero), path
        assert np.array_equal(a.hist_counts, b.hist_counts), path
        assert a.min == b.min and a.max == b.max, path
        assert a.mean == pytest.approx(b.mean, rel=1e-5, abs=1e-6), path
        assert a.m2 == pytest.approx(b.m2, rel=1e-4, abs=1e-5), path


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
def test_kernel_on_mobilenet_equals_stock():
    """Every layer of a real application model (depthwise convs, ReLU6, padding, 156 layers)."""
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    k.utils.set_random_seed(0)
    model = k.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4)
    batches = [np.random.default_rng(s).random((4, 32, 32, 3)).astype(np.float32) for s in range(2)]
    native = _records(model, batches, stock=False)
    stock = _records(model, batches, stock=True)
    assert len(native) > 150
    for path, a in native.items():
        b = stock[path]
        assert (a.count, a.zero_count, a.nan_count, a.inf_count) == (b.count, b.zero_count, b.nan_count,
                                                                     b.inf_count), path
        assert a.zero_samples == b.zero_samples and np.array_equal(a.hist_counts, b.hist_counts), path
        assert a.mean == pytest.approx(b.mean, rel=1e-4, abs=1e-6), path


def test_a_missing_compiler_falls_back_to_stock_and_says_why(tmp_path):
    """A process without a compiler (CXX names none) computes layer health with the stock ops."""
    code = ("from ptytui.running import health_kernel as h; import numpy as np;"
            "from ptytui.running.layer_health import probe_health;"
            "from ptytui.core.tfload import keras; k = keras();"
            "m = k.Sequential([k.Input((4,)), k.layers.Dense(2, activation='relu')]);"
            "p = probe_health(m, np.ones((3, 4), np.float32)); print(h.status()); print(p.records[-1].count)")
    env = dict(os.environ, CXX="ptytui-no-such-compiler", PTYTUI_KERNEL_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0] == "stock (no C++ compiler: ptytui-no-such-compiler not found)"
    assert lines[1] == "6"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler")
def test_a_failed_build_is_remembered_and_reported(tmp_path, monkeypatch):
    """A compiler that fails leaves a note in the kernel folder and the reason in the status; the
    next process does not try again for the same key."""
    from ptytui.core.tfload import tf as _tf

    wrapper = tmp_path / "bad-cxx"
    wrapper.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo bad-cxx 1.0; exit 0; fi\n"
                       "echo 'layer_health_op.cc:1: error: simulated failure' >&2; exit 1\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CXX", str(wrapper))
    monkeypatch.setenv(health_kernel.DIR_ENV, str(tmp_path / "kernels"))
    library, state = health_kernel.build(_tf())
    assert library is None
    notes = list((tmp_path / "kernels").glob("*.failed"))
    assert len(notes) == 1 and not list((tmp_path / "kernels").glob("*.so"))
    assert state == ("stock (the kernel's build failed: layer_health_op.cc:1: error: simulated failure; "
                     f"delete {notes[0]} to try again)")
    wrapper.write_text("#!/bin/sh\necho bad-cxx 1.0\nexit 0\n")  # same version: same key
    assert health_kernel.build(_tf()) == (None, state)


def test_stock_mode_is_honoured(monkeypatch):
    monkeypatch.setattr(health_kernel, "_state", {})
    monkeypatch.setenv(health_kernel.MODE_ENV, "stock")
    assert health_kernel.kernel() is None
    assert health_kernel.status() == "stock (PTYTUI_HEALTH_KERNEL=stock)"


def test_doctor_reports_how_layer_health_is_computed(capsys):
    import json

    from ptytui.cli import main

    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tensorflow"]["layer_health_kernel"] == health_kernel.status()
    if HAS_COMPILER:
        assert report["tensorflow"]["layer_health_kernel"] == "native"
        assert not [p for p in report["problems"] if "layer health" in p]


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
def test_the_eager_probe_uses_the_kernel_with_the_same_numbers():
    """``probe_health(compiled=False)`` (one small compiled function per part, shapes vary) gives
    the compiled step's records."""
    from ptytui.running.layer_health import probe_health

    model = _model_with_everything()
    x = _batch(7, 3)
    eager, compiled = probe_health(model, x, compiled=False), probe_health(model, x)
    assert eager.kernel == compiled.kernel == "native"
    for a, b in zip(eager.records, compiled.records):
        assert (a.path, a.zero_count, a.nan_count, a.inf_count, a.zero_samples) == (
            b.path, b.zero_count, b.nan_count, b.inf_count, b.zero_samples)
        assert np.array_equal(a.hist_counts, b.hist_counts) and a.min == b.min and a.max == b.max


def _op_reference(tf, x: np.ndarray, moment_rows: int, hist_rows: int) -> dict:
    """The kernel's outputs for ``x`` computed with stock TensorFlow ops and numpy (the comparison
    runs `x != 0` in TensorFlow, under the same subnormal handling as the kernel)."""
    xt = tf.constant(x)
    lead, channels = x.shape[0], x.shape[-1] if x.ndim >= 2 else 1
    nonzero = tf.cast(tf.not_equal(tf.reshape(xt, [lead, -1, channels]), 0), tf.int32).numpy()
    rows = x.reshape(lead, int(np.prod(x.shape[1:], dtype=np.int64)))
    m = rows[:moment_rows]
    finite = m[np.isfinite(m)].astype(np.float64)
    codes = (x[:min(moment_rows, hist_rows)].reshape(-1).view(np.uint32) >> 22).astype(np.int64)
    return {"per_sample": nonzero.sum(axis=(1, 2)), "per_channel": nonzero.sum(axis=(0, 1)),
            "nan": np.isnan(rows).sum(axis=1), "inf": np.isinf(rows).sum(axis=1),
            "floats": np.array([finite.sum(), (finite ** 2).sum(), finite.min() if finite.size else np.inf,
                                finite.max() if finite.size else -np.inf]),
            "hist": np.bincount(codes, minlength=1024) if moment_rows > 0 else np.zeros(0, np.int64)}


def _assert_record(got: dict, want: dict, where: str) -> None:
    for key in ("per_sample", "per_channel", "nan", "inf", "hist"):
        assert np.array_equal(np.asarray(got[key]), want[key]), (where, key)
    floats = np.asarray(got["floats"], np.float64)
    assert floats[2:].tolist() == want["floats"][2:].tolist(), where
    assert floats[:2] == pytest.approx(want["floats"][:2], rel=1e-5, abs=1e-6), where


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
@pytest.mark.parametrize("shape", [(5, 37), (3, 7, 1), (4, 6, 3), (3, 41, 2), (2, 19, 8), (2, 70, 5), (3, 5, 15), (3, 5, 16), (3, 5, 17), (2, 4, 4, 24),
                                   (3, 9, 40), (2, 3, 3, 96), (2, 5, 130), (3, 2, 200), (0, 4, 8), ()])
def test_the_op_counts_every_channel_layout_exactly(shape):
    """The vectorized counting (16 lanes, 16-128 channel blocks, an overlapping tail block, a flat
    path for one channel, a plain loop under 16 channels) against stock ops, with zeros, -0.0,
    subnormals, NaN and Inf placed in chosen samples; moments over the moment rows only, the
    histogram over its rows only."""
    from ptytui.core.tfload import tf as _tf

    tf, native = _tf(), health_kernel.kernel()
    rng = np.random.default_rng(len(shape) * 100 + (shape[-1] if shape else 0))
    x = rng.normal(size=shape).astype(np.float32)
    x[np.abs(x) < 0.4] = 0.0
    flat = x.reshape(-1)
    if flat.size >= 12:
        flat[rng.choice(flat.size, 6, replace=False)] = [-0.0, 1e-39, -1e-40, 3e-42, 0.0, -0.0]
        if x.shape[0] > 1:
            one = x.reshape(x.shape[0], -1)
            one[1, :3] = [np.nan, np.inf, -np.inf]
    tensor = x if x.ndim else x.reshape(1)
    for moment_rows, hist_rows in ((1 << 30, 4), (1, 1 << 30), (0, 4)):
        out = native.ptytui_layer_health(tensor, moment_rows, hist_rows)
        got = {key: getattr(out, key)[0].numpy() for key in out._fields}
        _assert_record(got, _op_reference(tf, tensor, moment_rows, hist_rows), f"{shape} {moment_rows}")


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
@pytest.mark.parametrize("poison", ["none", "nan", "inf", "subnormal"])
@pytest.mark.parametrize("shape", [(6, 5, 5, 40), (6, 7, 7, 3), (6, 30, 1)])
def test_derived_relu_records_equal_reading_the_relu_output(poison, shape):
    """The records the op derives for relu and relu6 of x equal the op's records of TensorFlow's
    own tf.nn.relu / tf.nn.relu6 outputs; where x has a value the derivation cannot vouch for
    (NaN, Inf, a positive subnormal, which TensorFlow's Relu flushes), the derived sums are NaN
    so the caller reads the outputs instead."""
    from ptytui.core.tfload import tf as _tf

    tf, native = _tf(), health_kernel.kernel()
    x = np.random.default_rng(4).normal(size=shape).astype(np.float32) * 8  # past 6: relu6 clips
    x[2] = np.minimum(x[2], 0.0)  # a sample all zero after the activation
    rows = x.reshape(6, -1)  # a view
    rows[0, :4] = [-0.0, 0.0, -1e-39, 6.0]
    rows[4, 5] = {"none": 1.0, "nan": np.nan, "inf": np.inf, "subnormal": 1e-39}[poison]
    out = native.ptytui_layer_health(x, 1 << 30, 3, activations=["relu", "relu6"], N=3)
    derived = [{key: getattr(out, key)[r].numpy() for key in out._fields} for r in range(3)]
    own = {key: getattr(out, key)[0].numpy() for key in out._fields}
    alone = native.ptytui_layer_health(x, 1 << 30, 3)
    for key in out._fields:  # x's own record is unchanged by the records derived with it
        if key == "floats":  # the sums to float32 rounding (one pass sums three records)
            assert own[key][2:].tolist() == alone.floats[0].numpy()[2:].tolist()
            assert own[key][:2] == pytest.approx(alone.floats[0].numpy()[:2], rel=1e-6)
        else:
            assert np.array_equal(own[key], getattr(alone, key)[0].numpy()), key
    for record, activation in zip(derived[1:], (tf.nn.relu, tf.nn.relu6)):
        if poison != "none":
            assert np.isnan(record["floats"][0]), (poison, activation.__name__)
            continue
        read = native.ptytui_layer_health(activation(x), 1 << 30, 3)
        for key in out._fields:
            want, got = getattr(read, key)[0].numpy(), record[key]
            if key == "floats":
                assert got[2:].tolist() == want[2:].tolist()
                assert got[:2] == pytest.approx(want[:2], rel=1e-6)
            else:
                assert np.array_equal(got, want), (activation.__name__, key)
        assert record["per_sample"][2] == 0
    # more activations of one tensor than one pass takes (two): the same records
    many = native.ptytui_layer_health(x, 1 << 30, 3, activations=["relu", "relu6", "relu6", "relu"], N=5)
    for r, same in ((3, 2), (4, 1)):
        for key in out._fields:
            assert np.array_equal(getattr(many, key)[r].numpy(), derived[same][key], equal_nan=key == "floats")


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
def test_a_relu_after_nan_is_read_not_derived():
    """conv -> ReLU6 -> conv -> Activation('relu') -> NaN in chosen samples -> ReLU -> zero padding
    -> zero padding: the compiled step derives the activations and the first padding from their
    inputs' passes, and a batch whose input to them is not finite is run again through the exact
    path, so every record equals the stock path's."""
    from ptytui.core.tfload import keras as _keras
    from ptytui.core.tfload import tf as _tf

    k, tf = _keras(), _tf()
    k.utils.set_random_seed(1)

    class Poison(k.layers.Layer):
        def call(self, x):
            ids = tf.reshape(tf.range(tf.shape(x)[0]), [-1, 1, 1, 1])
            return tf.where((ids == 1) & (x > 0.8), np.float32("nan"), x)

    x_in = k.Input((8, 8, 3), name="image")
    h = k.layers.Conv2D(20, 3, padding="same", name="conv")(x_in)
    h = k.layers.ReLU(max_value=6.0, name="relu6")(h)
    h = k.layers.Conv2D(18, 1, name="mix")(h)
    h = k.layers.Activation("relu", name="act")(h)
    poisoned = Poison(name="poison")(h)
    out = k.layers.ZeroPadding2D(((1, 2), (0, 1)), name="pad")(k.layers.ReLU(name="relu_after")(poisoned))
    model = k.Model(x_in, k.layers.ZeroPadding2D(1, name="pad_again")(out))
    clean = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    batches = [clean, clean * 3, clean[:1] - 5]  # batch 2: one sample, no NaN (no sample 1)
    native = _records(model, batches, stock=False)
    step = HealthStep(model)
    run_batch(step, [clean], full=False)
    assert sorted(step.entries[step.slots[i].entry].path for i in step.derived) == [
        "act", "pad", "relu6", "relu_after"]  # pad_again pads a derived pad: read
    stock = _records(model, batches, stock=True)
    assert native["poison"].nan_count > 0 and native["relu_after"].nan_count == native["poison"].nan_count
    for path, a in native.items():
        b = stock[path]
        assert (a.zero_count, a.nan_count, a.inf_count, a.zero_samples, a.nonfinite_samples) == (
            b.zero_count, b.nan_count, b.inf_count, b.zero_samples, b.nonfinite_samples), path
        assert np.array_equal(a.channel_nonzero, b.channel_nonzero), path
        assert np.array_equal(a.hist_counts, b.hist_counts) and a.min == b.min and a.max == b.max, path
        assert a.mean == pytest.approx(b.mean, rel=1e-5, abs=1e-6), path


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the stock path is the only one")
@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("with_nan", [False, True])
def test_derived_padding_records_equal_reading_the_padded_output(full, with_nan):
    """A "pad" record (of x, and of relu6(x)) equals the op's record of TensorFlow's own zero-padded
    tensor: counts, NaN/Inf, sums, min/max taking in the zeros, the padded zeros in the histogram.
    With a NaN in x the padding of x is still exact and the padded relu6 is left to be read."""
    from ptytui.core.tfload import tf as _tf

    tf, native = _tf(), health_kernel.kernel()
    x = np.random.default_rng(5).normal(size=(5, 6, 7, 20)).astype(np.float32) * 5 + 3  # mostly positive
    if with_nan:
        x[1, 0, 0, 0] = np.nan
    paddings = [[0, 0], [2, 1], [0, 3], [0, 0]]
    rows = (1 << 30) if full else 0
    added = 9 * 10 - 6 * 7
    out = native.ptytui_layer_health(x, rows, 2, activations=["relu6", "pad", "pad"],
                                     pad_positions=[0, added, added], pad_of=[0, 0, 1], N=4)
    for record, padded in ((2, tf.pad(x, paddings)), (3, tf.pad(tf.nn.relu6(x), paddings))):
        read = native.ptytui_layer_health(padded, rows, 2)
        if record == 3 and with_nan:
            assert np.isnan(out.floats[3].numpy()[0])
            continue
        for key in out._fields:
            got, want = getattr(out, key)[record].numpy(), getattr(read, key)[0].numpy()
            if key == "floats":
                assert got[2:].tolist() == want[2:].tolist()
                assert got[:2] == pytest.approx(want[:2], rel=1e-6)
            else:
                assert np.array_equal(got, want), (record, key)
