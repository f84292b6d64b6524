"""Tests of the NPZ contract (open, validate, lazy access) and of gs1/gs2 grouping."""

from __future__ import annotations

import mmap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptytui.errors import InputError
from ptytui.inputs import diffraction_scan
from ptytui.inputs.grouping import Grouping, group_split
from ptytui.inputs.npz import Split, open_split
from tests.helpers_npz import (
    VARIANT_WRITERS,
    make_arrays,
    write_compressed,
    write_legacy_nnm,
    write_modern,
    write_npz,
    write_with_metadata,
)


def _is_memory_mapped(arr: np.ndarray) -> bool:
    """True when ``arr`` is a np.memmap or a view whose base chain reaches one (or an mmap)."""
    while arr is not None:
        if isinstance(arr, (np.memmap, mmap.mmap)):
            return True
        arr = getattr(arr, "base", None)
    return False


# --------------------------------------------------------------------------------------------
# Contract variants
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANT_WRITERS))
def test_every_contract_variant_opens_to_the_same_arrays(tmp_path, variant):
    reference = make_arrays()
    split = open_split(VARIANT_WRITERS[variant](tmp_path), "test")
    M = reference["xcoords"].size
    assert (split.N, split.M) == (8, M)
    assert split.diffraction.shape == (M, 8, 8)
    np.testing.assert_array_equal(split.diffraction_batch(slice(None)), reference["diffraction"])
    np.testing.assert_array_equal(split.probe, reference["probeGuess"])
    np.testing.assert_array_equal(split.object, reference["objectGuess"])
    np.testing.assert_array_equal(split.xcoords, reference["xcoords"])
    np.testing.assert_array_equal(split.ycoords, reference["ycoords"])
    np.testing.assert_array_equal(split.xcoords_start, reference["xcoords_start"])
    np.testing.assert_array_equal(split.ycoords_start, reference["ycoords_start"])
    np.testing.assert_array_equal(split.ground_truth_batch(slice(None)), reference["Y"])
    assert split.probe.dtype == np.complex64
    assert split.xcoords.dtype == np.float64


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("modern", {"diffraction": "diffraction", "layout": "MNN", "trailing_singleton": False,
                    "ground_truth": "Y", "storage": "memmap"}),
        ("diff3d", {"diffraction": "diff3d", "layout": "MNN"}),
        ("nnm", {"diffraction": "diff3d", "layout": "NNM"}),
        ("trailing_singleton", {"trailing_singleton": True, "layout": "MNN"}),
        ("ground_truth_patches", {"ground_truth": "ground_truth_patches"}),
        ("without_start", {"xcoords_start": "xcoords (fallback)", "ycoords_start": "ycoords (fallback)"}),
        ("compressed", {"storage": "loaded (compressed member)"}),
    ],
)
def test_source_keys_say_what_was_found(tmp_path, variant, expected):
    split = open_split(VARIANT_WRITERS[variant](tmp_path))
    assert {k: split.source_keys[k] for k in expected} == expected


def test_name_defaults_to_file_stem(tmp_path):
    assert open_split(write_modern(tmp_path, "train_part.npz")).name == "train_part"


def test_uncompressed_diffraction_is_memory_mapped(tmp_path):
    split = open_split(write_modern(tmp_path))
    assert isinstance(split.diffraction, np.memmap)
    assert _is_memory_mapped(split.ground_truth)


def test_legacy_nnm_layout_is_a_view_on_the_memory_map(tmp_path):
    split = open_split(write_legacy_nnm(tmp_path))
    assert _is_memory_mapped(split.diffraction)
    assert split.diffraction.shape == (12, 8, 8)


def test_fortran_ordered_member_is_memory_mapped_and_identical(tmp_path):
    arrays = make_arrays()
    reference = arrays["diffraction"].copy()
    arrays["diffraction"] = np.asfortranarray(arrays["diffraction"])
    split = open_split(write_npz(tmp_path / "fortran.npz", arrays))
    assert isinstance(split.diffraction, np.memmap)
    np.testing.assert_array_equal(split.diffraction_batch(slice(None)), reference)
    assert split.normalization.factor == pytest.approx(1.0, rel=1e-5)


def test_compressed_diffraction_is_loaded_and_says_so(tmp_path):
    split = open_split(write_compressed(tmp_path))
    assert not _is_memory_mapped(split.diffraction)
    assert any("compressed" in note for note in split.notes)


def test_diffraction_batch_reads_requested_rows_in_order(tmp_path):
    reference = make_arrays()["diffraction"]
    split = open_split(write_legacy_nnm(tmp_path))
    batch = split.diffraction_batch([5, 0, 7])
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch, reference[[5, 0, 7]])


def test_metadata_is_not_read_without_trust(tmp_path):
    split = open_split(write_with_metadata(tmp_path))
    assert split.metadata is None
    assert split.source_keys["metadata"].startswith("present, not read")
    assert any("_metadata" in note and "--trust" in note for note in split.notes)


def test_metadata_is_read_with_trust(tmp_path):
    split = open_split(write_with_metadata(tmp_path), trust=True)
    assert split.metadata["physics_parameters"]["gridsize"] == 2
    assert split.source_keys["metadata"] == "read"


def test_y_with_wrong_first_axis_is_ignored_not_fatal(tmp_path):
    arrays = make_arrays()
    arrays["Y"] = arrays["Y"][:5]
    split = open_split(write_npz(tmp_path / "short_y.npz", arrays))
    assert split.ground_truth is None
    assert any("'Y' ignored" in note for note in split.notes)


def test_float64_diffraction_is_read_as_float32_batches(tmp_path):
    arrays = make_arrays()
    arrays["diffraction"] = arrays["diffraction"].astype(np.float64)
    split = open_split(write_npz(tmp_path / "f64.npz", arrays))
    assert split.diffraction_batch([0]).dtype == np.float32


# --------------------------------------------------------------------------------------------
# Streaming scan, normalization and warnings
# --------------------------------------------------------------------------------------------


def test_normalization_is_recorded_per_split_not_applied(tmp_path):
    arrays = make_arrays()
    bright = dict(arrays, diffraction=arrays["diffraction"] * 2)
    normal = open_split(write_npz(tmp_path / "normal.npz", arrays))
    doubled = open_split(write_npz(tmp_path / "bright.npz", bright))
    assert normal.normalization.target_energy == 16.0  # (N/2)^2, N = 8
    assert normal.normalization.factor == pytest.approx(1.0, rel=1e-5)
    assert doubled.normalization.factor == pytest.approx(0.25, rel=1e-5)
    assert doubled.normalization.amplitude_factor == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_array_equal(doubled.diffraction_batch([0]), bright["diffraction"][[0]])


@pytest.mark.parametrize("writer", [write_modern, write_legacy_nnm], ids=["MNN", "NNM"])
def test_chunked_scan_matches_single_chunk(tmp_path, monkeypatch, writer):
    path = writer(tmp_path)
    whole = open_split(path)
    monkeypatch.setattr(diffraction_scan, "SCAN_CHUNK_ELEMENTS", 70)  # about one pattern row per chunk
    chunked = open_split(path)
    assert chunked.normalization.mean_pattern_energy == pytest.approx(whole.normalization.mean_pattern_energy)
    assert chunked.scan.to_dict() == pytest.approx(whole.scan.to_dict())


@pytest.mark.parametrize("layout", ["MNN", "NNM"])
def test_nan_in_a_late_chunk_names_its_pattern(tmp_path, monkeypatch, layout):
    arrays = make_arrays()
    arrays["diffraction"][9, 3, 4] = np.nan
    if layout == "NNM":
        arrays["diff3d"] = np.ascontiguousarray(np.moveaxis(arrays.pop("diffraction"), 0, 2))
    path = write_npz(tmp_path / "late_nan.npz", arrays)
    monkeypatch.setattr(diffraction_scan, "SCAN_CHUNK_ELEMENTS", 64)
    with pytest.raises(InputError, match="first in pattern 9"):
        open_split(path)


def test_sample_scan_measures_a_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(diffraction_scan, "SAMPLE_PATTERNS", 5)
    split = open_split(write_modern(tmp_path), scan="sample")
    assert (split.scan.scope, split.scan.n_patterns) == ("sample", 5)
    assert split.normalization.n_patterns == 5


def test_intensity_stored_as_amplitude_is_a_warning(tmp_path):
    arrays = make_arrays()
    arrays["diffraction"] = arrays["diffraction"] ** 2 * 50  # intensity with a photon scale
    split = open_split(write_npz(tmp_path / "intensity.npz", arrays))
    assert any("intensity stored as amplitude" in w for w in split.warnings)


def test_normalized_amplitude_raises_no_scale_warning(tmp_path):
    split = open_split(write_modern(tmp_path))
    assert not any("intensity" in w for w in split.warnings)


def test_centred_positions_are_a_warning(tmp_path):
    arrays = make_arrays()
    arrays["xcoords"] = arrays["xcoords"] - arrays["xcoords"].mean()
    split = open_split(write_npz(tmp_path / "centred.npz", arrays))
    assert any("straddle 0" in w for w in split.warnings)


def test_all_zero_pattern_is_a_warning(tmp_path):
    arrays = make_arrays()
    arrays["diffraction"][2] = 0
    split = open_split(write_npz(tmp_path / "zero_pattern.npz", arrays))
    assert split.scan.zero_energy_patterns == 1
    assert any("all zero" in w for w in split.warnings)


# --------------------------------------------------------------------------------------------
# Malformed inputs: one line, the file named, expected and found
# --------------------------------------------------------------------------------------------


def _arrays_with(**changes):
    arrays = make_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value(arrays) if callable(value) else value
    return arrays


def _bad_npz(**changes):
    return lambda folder: write_npz(folder / "bad.npz", _arrays_with(**changes))


def _no_file(folder: Path) -> Path:
    return folder / "missing.npz"


def _a_folder(folder: Path) -> Path:
    (folder / "adir.npz").mkdir()
    return folder / "adir.npz"


def _text_file(folder: Path) -> Path:
    (folder / "notes.npz").write_text("not an archive\n")
    return folder / "notes.npz"


def _empty_file(folder: Path) -> Path:
    (folder / "empty.npz").write_bytes(b"")
    return folder / "empty.npz"


def _single_npy(folder: Path) -> Path:
    with open(folder / "single.npz", "wb") as fh:
        np.save(fh, make_arrays()["diffraction"])
    return folder / "single.npz"


def _truncated(folder: Path) -> Path:
    whole = write_modern(folder, "whole.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    return folder / "truncated.npz"


def _member_not_npy_format(folder: Path) -> Path:
    path = folder / "garbled.npz"
    write_modern(folder, "garbled.npz")
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("Y2.npy", b"this is not an npy header at all")
    return path


def _pickled_diffraction(folder: Path) -> Path:
    arrays = make_arrays()
    arrays["diffraction"] = np.array(list(arrays["diffraction"]) + [None], dtype=object)[:-1]
    return write_npz(folder / "pickled.npz", arrays)


MALFORMED = {
    "no such file": (_no_file, "no such file"),
    "a directory": (_a_folder, "a directory"),
    "not a zip": (_text_file, "not a zip archive"),
    "empty file": (_empty_file, "empty file"),
    "a single npy": (_single_npy, "single .npy array"),
    "truncated": (_truncated, "damaged zip archive"),
    "member header garbled": (_member_not_npy_format, "invalid array header"),
    "no diffraction": (_bad_npz(diffraction=None), "key 'diffraction'"),
    "no probe": (_bad_npz(probeGuess=None), "key 'probeGuess'"),
    "no xcoords": (_bad_npz(xcoords=None), "key 'xcoords'"),
    "diffraction rank 2": (_bad_npz(diffraction=lambda a: a["diffraction"][0]), "found shape (8, 8)"),
    "diffraction complex": (_bad_npz(diffraction=lambda a: a["diffraction"].astype(np.complex64)), "complex dtype"),
    "diffraction uint16 counts": (
        _bad_npz(diffraction=lambda a: (a["diffraction"] ** 2).astype(np.uint16)), "uint16 counts"),
    "probe integer": (_bad_npz(probeGuess=lambda a: np.ones((8, 8), np.int32)), "dtype int32"),
    "probe not square": (_bad_npz(probeGuess=lambda a: a["probeGuess"][:, :6]), "shape (8, 6)"),
    "probe size not N": (_bad_npz(probeGuess=lambda a: np.ones((16, 16), np.complex64)), "patterns of 16 x 16"),
    "M mismatch xcoords": (_bad_npz(xcoords=lambda a: a["xcoords"][:-1]), "shape (11,)"),
    "M mismatch ycoords_start": (_bad_npz(ycoords_start=lambda a: a["ycoords_start"][:3]), "'ycoords_start' of shape (12,)"),
    "NaN in diffraction": (
        _bad_npz(diffraction=lambda a: np.where(np.arange(12)[:, None, None] == 4, np.nan, a["diffraction"]).astype(np.float32)),
        "first in pattern 4"),
    "Inf in ycoords": (_bad_npz(ycoords=lambda a: np.r_[a["ycoords"][:-1], np.inf]), "NaN/Inf values"),
    "negative amplitude": (_bad_npz(diffraction=lambda a: a["diffraction"] - 1.0), "amplitudes >= 0"),
    "empty split": (_bad_npz(diffraction=lambda a: a["diffraction"][:0]), "empty split"),
    "grouped 4-D diffraction": (
        _bad_npz(diffraction=lambda a: np.repeat(a["diffraction"][..., None], 4, axis=-1)), "shape (12, 8, 8, 4)"),
    "coords as strings": (_bad_npz(xcoords=lambda a: a["xcoords"].astype(str)), "float64 positions"),
    "pickled object diffraction": (_pickled_diffraction, "pickled object array"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_is_one_line_input_error(tmp_path, case):
    make, fragment = MALFORMED[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        open_split(path)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    assert "expected" in message and "found" in message
    assert fragment in message


def test_uint16_error_hints_at_square_root(tmp_path):
    path = _bad_npz(diffraction=lambda a: (a["diffraction"] ** 2).astype(np.uint16))(tmp_path)
    with pytest.raises(InputError, match=r"sqrt\(counts\)"):
        open_split(path)


def test_pickled_diffraction_opens_with_trust(tmp_path):
    split = open_split(_pickled_diffraction(tmp_path), trust=True)
    np.testing.assert_array_equal(split.diffraction_batch([0]), make_arrays()["diffraction"][[0]])


# --------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------

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


def test_every_missing_required_key_is_named_at_once(tmp_path):
    path = write_npz(tmp_path / "other.npz", {"image": np.zeros((4, 4))})
    with pytest.raises(InputError) as info:
        open_split(path)
    message = str(info.value)
    for key in ("'diffraction'", "'probeGuess'", "'xcoords'", "'ycoords'", "found keys ['image']"):
        assert key in message
