"""Layer health: exact counts against numpy on real small Keras models (nested, MobileNetV2),
per-sample all-zero and non-finite samples through the compiled path, dead channels, exact merges
however the batches are split, the raw-code histogram against core.stats, live streaming events."""

from __future__ import annotations

import numpy as np
import pytest

from ptytui.core.events import LayerHealthUpdate, RunFinished, event_from_dict, event_to_dict
from ptytui.core.health import N_BINS, RAW_TO_SYMLOG, LayerHealth, run_indices, symlog_hist
from ptytui.core.stats import stats_of_array
from ptytui.running.layer_health import probe_health
from ptytui.running.walk import walk_model

keras = pytest.importorskip("keras")

FLOAT32_TINY = np.finfo(np.float32).tiny


def _nested_model():
    """image -> encoder(inner: conv with a dead channel -> relu) -> flatten -> dense."""
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    inner_in = k.Input((8, 8, 3), name="inner_in")
    conv = k.layers.Conv2D(4, 3, padding="same", name="conv")
    h = k.layers.ReLU(name="relu")(conv(inner_in))
    inner = k.Model(inner_in, h, name="inner")
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Dense(3, name="head")(k.layers.Flatten(name="flat")(inner(x)))
    model = k.Model(x, y, name="outer")
    kernel, bias = conv.get_weights()
    kernel[..., 1] = 0.0
    bias[1] = -1.0  # channel 1 is negative everywhere: dead after the ReLU
    conv.set_weights([kernel, bias])
    return model


def _reference(model, x) -> dict[str, np.ndarray]:
    """Every layer output as numpy, from the same walk run eagerly (first output only)."""
    from ptytui.core.tfload import tf as _tf

    out: dict[str, np.ndarray] = {}

    def keep(meta, outputs):
        if outputs and not meta.is_container:
            out[meta.path] = np.asarray(outputs[0]).astype(np.float32)

    walk_model(model, [_tf().convert_to_tensor(x)], keep)
    return out


def _by_path(probe) -> dict[str, LayerHealth]:
    return {meta.path: probe.records[parts[0]] for meta, parts in zip(probe.entries, probe.entry_parts)
            if parts and not meta.is_container}


def _check_against_numpy(model, x, first_index: int = 0) -> int:
    probe = probe_health(model, x, sample_ids=range(first_index, first_index + len(x)))
    records = _by_path(probe)
    reference = _reference(model, x)
    assert set(reference) <= set(records)
    for path, a in reference.items():
        r = records[path]
        flat = a.reshape(len(a), -1)
        assert r.count == a.size and r.zero_count == int((a == 0).sum()), path
        assert r.nan_count == r.inf_count == 0
        zero_ids = np.flatnonzero((flat != 0).sum(axis=1) == 0) + first_index
        assert run_indices(r.zero_samples).tolist() == zero_ids.tolist(), path
        if a.ndim >= 2:
            per_channel = (a.reshape(-1, a.shape[-1]) != 0).sum(axis=0)
            assert r.channel_nonzero.tolist() == per_channel.tolist(), path
            assert r.dead_channels == int((per_channel == 0).sum())
        assert r.min == a.min() and r.max == a.max(), path
        assert r.mean == pytest.approx(a.astype(np.float64).mean(), rel=1e-5, abs=1e-6)
        assert r.std == pytest.approx(a.astype(np.float64).std(), rel=1e-3, abs=1e-6)
        rows = len(a) if r.hist_samples is None else min(r.hist_samples, len(a))
        part = a[:rows]
        assert r.hist_elements == part.size
        assert r.hist_counts.tolist() == stats_of_array(part).hist_counts.tolist(), path
        assert r.underflow_count == int(((np.abs(part) < FLOAT32_TINY) & (part != 0)).sum())
    return len(reference)


def test_nested_model_counts_channels_and_samples_match_numpy():
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype(np.float32)
    x[2] = 0.0  # sample 2 is all zero at the input, so at the conv (zero bias) and beyond
    model = _nested_model()
    assert _check_against_numpy(model, x, first_index=100) >= 5
    records = _by_path(probe_health(model, x, sample_ids=range(100, 106)))
    assert records["encoder" if "encoder" in records else "inner/relu"].dead_channels >= 1
    assert records["inner/relu"].dead_channels == 1
    assert records["head"].zero_samples == [(102, 103)]


def test_mobilenet_counts_match_numpy():
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    k.utils.set_random_seed(0)
    model = k.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.35)
    x = np.random.default_rng(1).random((5, 32, 32, 3)).astype(np.float32)
    x[3] = 0.0
    assert _check_against_numpy(model, x) == len(model.layers)


def _nonfinite_model():
    """x -> log (NaN for negatives, -Inf for zeros) -> conv+relu (fused in a graph) -> dense."""
    from ptytui.core.tfload import keras as _keras
    from ptytui.core.tfload import tf as _tf

    k, tf = _keras(), _tf()

    class Log(k.layers.Layer):
        def call(self, v):
            return tf.math.log(v)

    x = k.Input((4, 4, 2), name="x")
    h = k.layers.Conv2D(3, 1, activation="relu", name="conv_relu")(Log(name="log")(x))
    return k.Model(x, k.layers.Dense(2, name="head")(k.layers.Flatten(name="flat")(h)))


def test_nan_and_inf_counted_exactly_through_the_compiled_path():
    from ptytui.core.tfload import tf as _tf

    model = _nonfinite_model()
    x = np.random.default_rng(2).random((4, 4, 4, 2)).astype(np.float32) + 0.5
    x[1, 0, 0, 0] = -1.0  # NaN at the log, sample 1
    x[3, 1, 1, 1] = 0.0  # -Inf at the log, sample 3
    records = _by_path(probe_health(model, x))
    log = records["log"]
    assert (log.nan_count, log.inf_count) == (1, 1)
    assert log.nonfinite_samples == [(1, 2), (3, 4)]
    assert log.finite_count == log.count - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(x)
    finite = logs[np.isfinite(logs)].astype(np.float64)
    assert log.mean == pytest.approx(finite.mean(), rel=1e-5)  # TF's log may differ by an ulp
    assert log.min == pytest.approx(finite.min(), rel=1e-6) and log.max == pytest.approx(finite.max(), rel=1e-6)
    # The compiled graph's own values decide (a fused Conv2D+BiasAdd+ReLU may turn NaN into 0):
    # the exact path runs compiled too, so its counts are those of the compiled forward pass.
    compiled = _tf().function(lambda v: model(v, training=False), autograph=False)
    head = np.asarray(compiled(x))
    assert records["head"].nan_count + records["head"].inf_count == int((~np.isfinite(head)).sum())
    bad = np.flatnonzero((~np.isfinite(head)).any(axis=1))
    assert run_indices(records["head"].nonfinite_samples).tolist() == bad.tolist()


def test_records_merge_exactly_however_the_batches_are_split():
    model = _nested_model()
    x = np.random.default_rng(3).normal(size=(11, 8, 8, 3)).astype(np.float32)
    x[[0, 4, 5, 10]] = 0.0
    whole = _by_path(probe_health(model, x))

    def merged(cuts):
        out: dict[str, LayerHealth] = {}
        for a, b in zip(cuts[:-1], cuts[1:]):
            for path, rec in _by_path(probe_health(model, x[a:b], sample_ids=range(a, b))).items():
                out[path] = out[path].merge(rec) if path in out else rec
        return out

    for cuts in ([0, 4, 11], [0, 1, 2, 7, 11], [0, 5, 6, 10, 11]):
        parts = merged(cuts)
        for path, w in whole.items():
            p = parts[path]
            for name in ("count", "zero_count", "nan_count", "inf_count", "zero_samples",
                         "nonfinite_samples", "samples", "finite_count"):
                assert getattr(p, name) == getattr(w, name), (path, name, cuts)
            assert p.channel_nonzero.tolist() == w.channel_nonzero.tolist()
            assert (p.min, p.max) == (w.min, w.max)
            assert p.hist_counts.tolist() == w.hist_counts.tolist()  # small outputs: every sample
            assert p.mean == pytest.approx(w.mean, rel=1e-6, abs=1e-9)
            assert p.m2 == pytest.approx(w.m2, rel=1e-5, abs=1e-6)
    assert whole["head"].zero_samples == [(0, 1), (4, 6), (10, 11)]


def test_raw_code_histogram_is_the_symlog_histogram():
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-9, 9, 5000),
                             [0.0, -0.0, 1e-39, -1e-39, 2.0**-20, 1.5 * 2.0**-20, 2.0**20, 3e38, -3e38]]
                            ).astype(np.float32)
    raw = np.bincount(values.view(np.uint32) >> 22, minlength=1024)
    assert symlog_hist(raw).tolist() == stats_of_array(values).hist_counts.tolist()
    assert RAW_TO_SYMLOG[0x1FE] == N_BINS and RAW_TO_SYMLOG[0x3FF] == N_BINS  # Inf/NaN codes dropped


def test_record_round_trips_and_says_what_is_sampled():
    x = np.random.default_rng(5).normal(size=(3, 8, 8, 3)).astype(np.float32)
    rec = _by_path(probe_health(_nested_model(), x))["inner/relu"]
    again = LayerHealth.from_dict(rec.to_dict())
    assert again == rec
    sampled = rec.to_dict()["sampled"]
    assert {"every", "batches", "hist_samples_per_batch", "hist_elements"} <= set(sampled)
    assert "zero_samples" in rec.to_dict()["exact"]


def test_live_health_streams_records_for_every_batch(tiny_workspace):
    from ptytui.inputs.workspace import load_workspace
    from ptytui.running.session import Session

    session = Session(load_workspace(tiny_workspace), batch_size=16)
    plan = session.plan(models=["supervised_unet"], splits=["test"])[0]
    events = list(session.run(plan))
    updates = [e for e in events if isinstance(e, LayerHealthUpdate)]
    result = next(e for e in events if isinstance(e, RunFinished)).result
    assert updates and updates[-1].batches == result.batches
    records = result.layer_health
    assert records and all(r.batches == result.batches for r in records.values())
    first = next(iter(records.values()))
    assert first.samples == result.n_samples and first.count > 0
    replayed = event_from_dict(event_to_dict(updates[-1]))
    assert replayed.records == updates[-1].records
    session.layer_health = False
    off = next(e for e in session.run(plan) if isinstance(e, RunFinished)).result
    assert off.layer_health is None
    assert off.outputs.keys() == result.outputs.keys()
    for name, rec in off.outputs.items():
        assert rec.zero_count == result.outputs[name].zero_count
