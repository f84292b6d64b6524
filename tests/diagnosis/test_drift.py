"""Split drift: SMD, normalized Wasserstein and KS on samples, scan positions and normalization
factors of real NPZ splits."""

from __future__ import annotations

import numpy as np
import pytest

from ptytui.diagnosis.drift import (
    compare_samples,
    normalization_drift,
    offsets_drift,
    positions_drift,
    split_drift,
)
from ptytui.inputs.npz import open_split
from tests.helpers_npz import make_arrays, write_npz


def test_same_distribution_does_not_drift():
    rng = np.random.default_rng(0)
    d = compare_samples("v", rng.normal(size=5000), rng.normal(size=5000))
    assert abs(d.smd) < 0.1 and d.normalized_wasserstein < 0.1
    assert not d.drifted


def test_shifted_distribution_drifts_with_known_numbers():
    rng = np.random.default_rng(1)
    reference = rng.normal(0.0, 1.0, 20000)
    shifted = rng.normal(1.0, 1.0, 20000)
    d = compare_samples("v", reference, shifted, reference_split="train", other_split="test")
    assert d.smd == pytest.approx(1.0, abs=0.05)
    assert d.normalized_wasserstein == pytest.approx(1.0, abs=0.05)  # W of a pure shift = the shift
    assert d.ks_pvalue < 1e-6 and d.ks_statistic > 0.3
    assert d.drifted and all(d.criteria.values())
    assert d.to_dict()["reference_split"] == "train"


def test_large_samples_are_subsampled_with_a_seed():
    values = np.arange(100_000, dtype=np.float64)
    a = compare_samples("v", values, values + 1, max_values=1000, seed=3)
    b = compare_samples("v", values, values + 1, max_values=1000, seed=3)
    assert a.n_reference == 1000 and a.to_dict() == b.to_dict()


def test_constant_reference_does_not_divide_by_zero():
    d = compare_samples("v", np.zeros(100), np.zeros(100))
    assert d.smd == 0.0 and d.normalized_wasserstein == 0.0 and not d.drifted


@pytest.fixture(scope="module")
def two_splits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift")
    low = make_arrays(N=8, nx=6, ny=6, spacing=2.0, seed=0)
    high = make_arrays(N=8, nx=6, ny=6, spacing=2.0, seed=0)
    high["ycoords"] = high["ycoords"] + 10.0  # the test split sits lower on the object
    high["ycoords_start"] = high["ycoords"].copy()
    high["diffraction"] = high["diffraction"] * np.float32(2.0)  # twice as bright before normalization
    return (open_split(write_npz(folder / "train.npz", low), "train"),
            open_split(write_npz(folder / "test.npz", high), "test"))


def test_positions_drift_per_axis(two_splits):
    train, test = two_splits
    x, y = positions_drift(train, test)
    assert x.name == "positions.x" and not x.drifted
    assert y.name == "positions.y" and y.drifted
    assert y.other_mean - y.reference_mean == pytest.approx(10.0)
    assert y.reference_std == pytest.approx(float(np.std(train.ycoords)))


def test_normalization_factors_side_by_side(two_splits):
    train, test = two_splits
    norm = normalization_drift(train, test)
    assert norm.ratio == pytest.approx(0.25, rel=1e-3)  # energy factor of a 2x brighter split
    assert norm.drifted


def test_offsets_as_fed_per_axis_and_split_drift(two_splits):
    train, test = two_splits
    fed_train = np.zeros((4, 1, 2, 1), np.float32)
    fed_test = np.zeros((4, 1, 2, 1), np.float32)
    fed_test[:, 0, 0, 0] = [50, 60, 70, 80]
    x, y = offsets_drift("input_positions", fed_train, fed_test, reference_split="train",
                         other_split="test")
    assert x.other_mean == pytest.approx(65.0) and y.other_mean == 0.0
    result = split_drift(train, test, reference_inputs={"input": np.ones((4, 8, 8, 1)),
                                                         "input_positions": fed_train},
                         other_inputs={"input": np.ones((4, 8, 8, 1)), "input_positions": fed_test},
                         positions_input="input_positions", model="m")
    names = [d.name for d in result.inputs]
    assert names == ["input", "input_positions.x", "input_positions.y"]
    assert [d.name for d in result.drifted_positions] == ["positions.y"]
    assert result.to_dict()["normalization"]["drifted"] is True
