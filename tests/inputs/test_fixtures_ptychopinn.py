"""Tests against real files written by PtychoPINN's own code (shared/fixtures/ptychopinn).

Data part: the lines_N64 train/test splits open, validate and group as the contract says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptytui.inputs.grouping import group_split
from ptytui.inputs.npz import open_split

# The fixtures live in shared/ beside the checkout (or inside it, where a copy carries shared/).
_HERE = Path(__file__).resolve()
_CANDIDATES = [_HERE.parents[2] / "shared", _HERE.parents[3] / "shared", Path("/work/shared")]
FIXTURES = next((c / "fixtures" / "ptychopinn" for c in _CANDIDATES if (c / "fixtures" / "ptychopinn").is_dir()),
                _CANDIDATES[0] / "fixtures" / "ptychopinn")

pytestmark = pytest.mark.skipif(not (FIXTURES / "lines_N64_train.npz").is_file(),
                                reason="PtychoPINN fixtures not present")

SPLITS = ["train", "test"]


def _path(split: str) -> Path:
    return FIXTURES / f"lines_N64_{split}.npz"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split_name", SPLITS)
def test_lines_split_opens_with_the_legacy_keys(split_name):
    split = open_split(_path(split_name), split_name)
    assert (split.N, split.M) == (64, 96)
    assert split.source_keys["diffraction"] == "diff3d"
    assert split.source_keys["layout"] == "MNN"
    assert split.source_keys["ground_truth"] == "ground_truth_patches"
    assert split.source_keys["xcoords_start"] == "xcoords_start"
    assert split.ground_truth.shape == (96, 64, 64)
    assert split.ground_truth_batch([0]).dtype == np.complex64
    assert split.probe.shape == (64, 64)
    assert split.object.shape == (256, 256)
    assert split.scan_index.shape == (96,)


@pytest.mark.parametrize("split_name", SPLITS)
def test_lines_split_is_memory_mapped(split_name):
    assert isinstance(open_split(_path(split_name)).diffraction, np.memmap)


@pytest.mark.parametrize("split_name", SPLITS)
def test_lines_diffraction_matches_numpy_load(split_name):
    with np.load(_path(split_name)) as npz:
        expected = npz["diff3d"][[3, 50, 95]]
    np.testing.assert_array_equal(open_split(_path(split_name)).diffraction_batch([3, 50, 95]), expected)


@pytest.mark.parametrize("split_name", SPLITS)
def test_lines_metadata_needs_trust(split_name):
    untrusted = open_split(_path(split_name))
    assert untrusted.metadata is None
    assert untrusted.source_keys["metadata"].startswith("present, not read")
    trusted = open_split(_path(split_name), trust=True)
    assert trusted.metadata["physics_parameters"]["gridsize"] == 1
    assert trusted.metadata["physics_parameters"]["N"] == 64


@pytest.mark.parametrize("split_name", SPLITS)
def test_lines_real_amplitude_raises_no_warning(split_name):
    # Real, correctly stored amplitude: the scale heuristics must not fire on it.
    assert open_split(_path(split_name)).warnings == []


def test_lines_normalization_is_recorded_per_split():
    train, test = (open_split(_path(s), s) for s in SPLITS)
    for split in (train, test):
        assert split.normalization.target_energy == 32.0 ** 2
        assert split.normalization.n_patterns == 96
        assert np.isfinite(split.normalization.factor) and split.normalization.factor > 0
    assert train.normalization.factor != test.normalization.factor


def test_lines_splits_are_divided_along_y():
    # split_dataset_tool split at y = 128.25 (see the metadata); positions are absolute pixels.
    train, test = (open_split(_path(s), s) for s in SPLITS)
    assert train.ycoords.max() < 128.26 < test.ycoords.min()
    assert train.xcoords.min() > 0 and test.xcoords.min() > 0


def test_lines_groups_gs1_and_gs2():
    split = open_split(_path("test"))
    gs1 = group_split(split, 1)
    assert gs1.indices.shape == (96, 1)
    np.testing.assert_array_equal(gs1.global_offsets[:, 0, :, 0], split.positions)
    gs2 = group_split(split, 2)
    batch = gs2.batch(split, slice(0, 8))
    assert batch.diffraction.shape == (8, 64, 64, 4)
    assert batch.ground_truth.shape == (8, 64, 64, 4)
    # gs2 neighbours are close: every member sits within a few scan steps of its group mean
    assert np.abs(gs2.relative_offsets).max() < 60
