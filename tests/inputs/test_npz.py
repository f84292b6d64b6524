"""Tests of the NPZ contract: open, validate, lazy (memory-mapped) access, the amplitude scan."""

from __future__ import annotations

import mmap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptytui.errors import InputError
from ptytui.inputs import diffraction_scan
from ptytui.inputs.npz import open_split
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


def test_every_missing_required_key_is_named_at_once(tmp_path):
    path = write_npz(tmp_path / "other.npz", {"image": np.zeros((4, 4))})
    with pytest.raises(InputError) as info:
        open_split(path)
    message = str(info.value)
    for key in ("'diffraction'", "'probeGuess'", "'xcoords'", "'ycoords'", "found keys ['image']"):
        assert key in message
