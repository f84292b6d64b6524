"""Tests of gs1/gs2 grouping: seeded neighbour groups, offsets, contiguous subsets, batches."""

from __future__ import annotations

import numpy as np
import pytest

from ptytui.errors import InputError
from ptytui.inputs.grouping import Grouping, group_split
from ptytui.inputs.npz import Split, open_split
from tests.helpers_npz import make_arrays, write_modern, write_npz

# A 3 x 3 raster with x spacing 1 and y spacing 1.5 (so nearest-neighbour distances from a corner
# are all different), indices row by row: index = 3 * row + column.
#   6 (10,13)   7 (11,13)   8 (12,13)
#   3 (10,11.5) 4 (11,11.5) 5 (12,11.5)
#   0 (10,10)   1 (11,10)   2 (12,10)
HAND_X = 10.0 + np.tile([0.0, 1.0, 2.0], 3)
HAND_Y = 10.0 + np.repeat([0.0, 1.5, 3.0], 3)


@pytest.fixture
def hand_split(tmp_path) -> Split:
    arrays = make_arrays(nx=3, ny=3)
    arrays.update(xcoords=HAND_X, ycoords=HAND_Y, xcoords_start=HAND_X, ycoords_start=HAND_Y)
    return open_split(write_npz(tmp_path / "hand.npz", arrays))


def test_gs1_groups_are_single_patterns_at_their_positions(hand_split):
    g = group_split(hand_split, 1)
    assert (g.C, len(g)) == (1, 9)
    np.testing.assert_array_equal(g.indices[:, 0], np.arange(9))
    assert g.global_offsets.shape == (9, 1, 2, 1)
    np.testing.assert_array_equal(g.global_offsets[4, 0, :, 0], [11.0, 11.5])  # [x, y]
    np.testing.assert_array_equal(g.relative_offsets, np.zeros((9, 1, 2, 1)))


def test_gs2_corner_groups_match_hand_computed_offsets(hand_split):
    # With K = C = 4 the draw keeps all four nearest neighbours, so the groups are fixed.
    g = group_split(hand_split, 2, k_neighbors=4)
    assert g.indices.shape == (9, 4)
    # Seed 0 at (10, 10): neighbours 0 (d 0), 1 (d 1), 3 (d 1.5), 4 (d 1.80); mean (10.5, 10.75).
    np.testing.assert_array_equal(g.indices[0], [0, 1, 3, 4])
    np.testing.assert_allclose(g.global_offsets[0, 0, :, 0], [10.5, 10.75])
    # relative = -(position - mean): the lower-left member sits below-left of the mean -> +, +
    np.testing.assert_allclose(g.relative_offsets[0, 0, 0], [0.5, -0.5, 0.5, -0.5])  # x
    np.testing.assert_allclose(g.relative_offsets[0, 0, 1], [0.75, 0.75, -0.75, -0.75])  # y
    # Seed 8 at (12, 13): neighbours 8, 7 (d 1), 5 (d 1.5), 4 (d 1.80); mean (11.5, 12.25).
    np.testing.assert_array_equal(g.indices[8], [8, 7, 5, 4])
    np.testing.assert_allclose(g.global_offsets[8, 0, :, 0], [11.5, 12.25])
    np.testing.assert_allclose(g.relative_offsets[8, 0, 0], [-0.5, 0.5, -0.5, 0.5])
    np.testing.assert_allclose(g.relative_offsets[8, 0, 1], [-0.75, -0.75, 0.75, 0.75])


def test_gs2_draws_four_distinct_of_the_seven_nearest(hand_split):
    g = group_split(hand_split, 2)
    # From corner 0 the seven nearest are 0,1,3,4,2,5,6 (7 at 3.16 and 8 at 3.61 are out).
    assert set(g.indices[0]) <= {0, 1, 2, 3, 4, 5, 6}
    assert len(set(g.indices[0])) == 4
    assert g.k_neighbors == 7


def test_gs2_makes_one_group_per_scan_point(tmp_path):
    split = open_split(write_modern(tmp_path))
    assert len(group_split(split, 2)) == split.M


def test_gs2_offsets_are_consistent_for_every_group(tmp_path):
    split = open_split(write_modern(tmp_path, nx=6, ny=5))
    g = group_split(split, 2, seed=3)
    members = np.stack([split.xcoords[g.indices], split.ycoords[g.indices]], axis=1)  # (G, 2, C)
    np.testing.assert_allclose(g.global_offsets[:, 0, :, 0], members.mean(axis=2))
    np.testing.assert_allclose(g.relative_offsets[:, 0], g.global_offsets[:, 0] - members)
    np.testing.assert_allclose(g.relative_offsets.sum(axis=-1), 0, atol=1e-12)


def test_gs2_is_seeded(tmp_path):
    split = open_split(write_modern(tmp_path, nx=6, ny=5))
    np.testing.assert_array_equal(group_split(split, 2, seed=1).indices, group_split(split, 2, seed=1).indices)
    assert not np.array_equal(group_split(split, 2, seed=1).indices, group_split(split, 2, seed=2).indices)


@pytest.fixture
def big_split(tmp_path) -> Split:
    return open_split(write_modern(tmp_path, "big.npz", nx=20, ny=20, spacing=2.0))


def _bbox_area(points: np.ndarray) -> float:
    return float(np.ptp(points[:, 0]) * np.ptp(points[:, 1]))


@pytest.mark.parametrize("gridsize", [1, 2])
def test_n_groups_takes_a_contiguous_region(big_split, gridsize):
    full = group_split(big_split, gridsize, seed=5)
    sub = group_split(big_split, gridsize, seed=5, n_groups=20)
    assert len(sub) == 20 and sub.n_groups_requested == 20
    sub_area = _bbox_area(sub.global_offsets[:, 0, :, 0])
    random_pick = np.random.default_rng(5).choice(len(full), 20, replace=False)
    random_area = _bbox_area(full.global_offsets[random_pick, 0, :, 0])
    assert sub_area < 0.25 * random_area
    # the subset's groups are groups of the full grouping, not regrouped
    np.testing.assert_array_equal(sub.indices, full.indices[np.sort(_rows_of(full.indices, sub.indices))])


def _rows_of(all_rows: np.ndarray, some_rows: np.ndarray) -> np.ndarray:
    lookup = {tuple(r): i for i, r in enumerate(all_rows)}
    return np.array([lookup[tuple(r)] for r in some_rows])


def test_n_groups_subset_is_seeded(big_split):
    a = group_split(big_split, 1, seed=7, n_groups=10)
    b = group_split(big_split, 1, seed=7, n_groups=10)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.anchor == b.anchor is not None


def test_n_groups_at_least_all_keeps_everything(hand_split):
    g = group_split(hand_split, 1, n_groups=100)
    assert len(g) == 9 and g.anchor is None


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"gridsize": 0}, "gridsize an integer >= 1"),
    ({"gridsize": 1, "n_groups": 0}, "n_groups >= 1"),
    ({"gridsize": 4}, "at least 16 patterns"),
])
def test_bad_grouping_requests_are_input_errors(hand_split, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        group_split(hand_split, **kwargs)


def test_group_batch_layouts(hand_split):
    g = group_split(hand_split, 2, k_neighbors=4)
    batch = g.batch(hand_split, [8, 0])
    assert batch.diffraction.shape == (2, 8, 8, 4) and batch.diffraction.dtype == np.float32
    assert batch.global_offsets.shape == (2, 1, 2, 1) and batch.global_offsets.dtype == np.float32
    assert batch.relative_offsets.shape == (2, 1, 2, 4) and batch.relative_offsets.dtype == np.float32
    assert batch.positions.shape == (2, 4, 2)
    assert batch.ground_truth.shape == (2, 8, 8, 4) and batch.ground_truth.dtype == np.complex64
    np.testing.assert_array_equal(batch.indices, [[8, 7, 5, 4], [0, 1, 3, 4]])
    np.testing.assert_array_equal(batch.positions[1, 2], [10.0, 11.5])  # pattern 3, [x, y]
    for c in range(4):
        np.testing.assert_array_equal(batch.diffraction[1, :, :, c], hand_split.diffraction_batch([batch.indices[1, c]])[0])


def test_iter_batches_covers_every_group_once(hand_split):
    g = group_split(hand_split, 1)
    batches = list(g.iter_batches(hand_split, 4))
    assert [len(b) for b in batches] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([b.group_indices for b in batches]), np.arange(9))


def test_select_keeps_offsets_with_their_groups(hand_split):
    g = group_split(hand_split, 2, k_neighbors=4)
    shard = g.select(slice(3, 6))
    assert isinstance(shard, Grouping) and len(shard) == 3
    np.testing.assert_array_equal(shard.relative_offsets, g.relative_offsets[3:6])
