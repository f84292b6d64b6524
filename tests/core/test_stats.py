"""The statistics record: device reduction equals numpy, merging parts gives the whole, JSON
round trip, complex tensors as amplitude and phase."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ptytui.core.stats import (
    CENTRE_BIN,
    HIST_EDGES,
    N_BINS,
    StatsAccumulator,
    TensorStats,
    complex_stats_of_array,
    stats_of_array,
)

finite_or_special = st.one_of(
    st.floats(min_value=-1e7, max_value=1e7, allow_nan=False, width=32),
    st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, -1e-8, 1e6, 1.0]),
)


def assert_same(a: TensorStats, b: TensorStats, rel: float = 1e-9) -> None:
    assert a.count == b.count
    assert a.finite_count == b.finite_count
    assert a.zero_count == b.zero_count
    assert a.nan_count == b.nan_count
    assert a.inf_count == b.inf_count
    if rel <= 1e-9:
        assert a.min == b.min and a.max == b.max
        np.testing.assert_array_equal(a.hist_counts, b.hist_counts)
    else:  # float32 amplitudes computed by two libraries may differ in the last bit
        assert a.min == pytest.approx(b.min, rel=rel) and a.max == pytest.approx(b.max, rel=rel)
        assert np.abs(a.hist_counts - b.hist_counts).sum() <= 2
    scale = max(1.0, abs(a.mean), abs(b.mean))
    assert abs(a.mean - b.mean) <= rel * scale * 10
    assert a.m2 == pytest.approx(b.m2, rel=1e-7, abs=1e-6 * scale * scale)


def test_record_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(7, 5, 3)).astype(np.float32)
    x[0, 0, 0] = 0.0
    x[1, 0, 0] = np.nan
    x[2, 0, 0] = np.inf
    rec = stats_of_array(x)
    finite = x[np.isfinite(x)].astype(np.float64)
    assert rec.count == x.size
    assert rec.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert rec.std == pytest.approx(finite.std(), rel=1e-12)
    assert rec.min == finite.min() and rec.max == finite.max()
    assert rec.zero_count == 1 and rec.nan_count == 1 and rec.inf_count == 1
    assert rec.nonzero_fraction == pytest.approx(1 - 1 / x.size)
    assert rec.hist_counts.sum() == finite.size


def test_histogram_bins_are_fixed_symlog():
    assert HIST_EDGES.shape == (N_BINS + 1,)
    assert np.all(np.diff(HIST_EDGES) > 0)
    rec = stats_of_array(np.array([0.0, 5e-7, -5e-7, 1.0, -1.0, 1e9, -1e9]))
    assert rec.hist_counts[CENTRE_BIN] == 3  # |x| < 1e-6, zero included
    assert rec.hist_counts[0] == 1 and rec.hist_counts[-1] == 1  # beyond 1e6: outermost bins
    one = np.searchsorted(HIST_EDGES, 1.0, side="right") - 1
    assert rec.hist_counts[one] == 1


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 60), elements=finite_or_special), st.data())
def test_merging_any_partition_gives_the_whole(values, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, values.size), max_size=5)))
    parts = np.split(values, cuts)
    merged = TensorStats.merge_all(stats_of_array(p) for p in parts)
    assert_same(merged, stats_of_array(values))


def test_device_reduction_equals_numpy_and_merges():
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=(6, 16, 16, 2)).astype(np.float32)
    x[x < 0.5] = 0.0
    x[0, 0, 0, 0] = np.nan
    x[3, 2, 1, 0] = -np.inf
    acc = StatsAccumulator()
    acc.update("x", x[:2])
    acc.update("x", x[2:5])
    acc.update("x", x[5:])
    assert_same(acc.records["x"], stats_of_array(x))


def test_complex_tensor_becomes_amplitude_and_phase():
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(4, 8, 8)) + 1j * rng.normal(size=(4, 8, 8))).astype(np.complex64)
    z[0] = 0
    acc = StatsAccumulator()
    acc.update("obj", z)
    assert set(acc.records) == {"obj.amplitude", "obj.phase"}
    host = complex_stats_of_array(z)
    assert_same(acc.records["obj.amplitude"], host["amplitude"], rel=1e-6)
    assert acc.records["obj.amplitude"].zero_count == 64
    assert acc.records["obj.phase"].max <= math.pi


def test_json_round_trip_is_exact():
    rec = stats_of_array(np.array([0.0, 1.5, -2.25, np.nan, np.inf], dtype=np.float32))
    again = TensorStats.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec
    empty = TensorStats()
    assert TensorStats.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty


def test_stats_keys_match_cli_contract():
    keys = set(stats_of_array(np.ones(3)).to_dict())
    assert {"count", "mean", "std", "min", "max", "nonzero_fraction", "zero_count", "nan_count",
            "inf_count", "histogram"} <= keys


def test_device_and_host_bin_values_on_and_next_to_every_edge_alike():
    edges = np.concatenate([HIST_EDGES, [1.0, 10.0, 100.0, 1000.0, 0.1, 0.01]])
    values = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf)])
    acc = StatsAccumulator()
    acc.update("x", values)
    np.testing.assert_array_equal(acc.records["x"].hist_counts, stats_of_array(values).hist_counts)
