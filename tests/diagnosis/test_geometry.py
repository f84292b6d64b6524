"""Positions against the canvas: visible fraction, offsets as fed, coverage, and the x/y check
against the measured diffraction."""

from __future__ import annotations

import numpy as np
import pytest

from ptytui.diagnosis.geometry import (
    axes_check,
    canvas_of,
    coverage_check,
    fed_offsets,
    split_geometry,
    visible_fraction,
)
from ptytui.inputs.grouping import group_split
from ptytui.inputs.npz import open_split
from tests.helpers_npz import make_arrays, write_npz


def test_visible_fraction_formula():
    offsets = np.array([[0, 0], [16, 0], [0, -8], [16, 16], [32, 0], [-40, 3]], np.float64)
    np.testing.assert_allclose(visible_fraction(offsets, 32), [1, 0.5, 0.75, 0.25, 0, 0])


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("geometry")
    arrays = make_arrays(N=8, nx=6, ny=6, spacing=2.0, seed=0)
    return open_split(write_npz(folder / "s.npz", arrays), "train")


def test_offsets_as_fed_for_each_mode(split):
    grouping = group_split(split, 1)
    absolute = fed_offsets(split, grouping, "absolute")
    assert absolute.shape == (split.M, 1, 2)
    np.testing.assert_allclose(absolute[:, 0, 0], split.xcoords)
    np.testing.assert_allclose(absolute[:, 0, 1], split.ycoords)
    assert not fed_offsets(split, grouping, "relative").any()  # gs1: relative offsets are 0
    assert not fed_offsets(split, grouping, "zero").any()
    grouped = fed_offsets(split, group_split(split, 2), "relative")
    assert grouped.shape == (split.M, 4, 2)
    np.testing.assert_allclose(grouped.mean(axis=1), 0, atol=1e-9)  # relative to the group mean


def test_coverage_rule(split):
    check = coverage_check(split)
    extent = np.ptp(split.xcoords)
    assert check.required[0] == int(np.ceil(extent + split.N)) + 2
    assert check.ok is (split.object.shape[1] >= check.required[0]
                        and split.object.shape[0] >= check.required[1])


@pytest.fixture(scope="module")
def reassembly_card(tmp_path_factory):
    """The card of a real saved model whose reassembly layer has canvas 18, patch 8."""
    from ptytui.inputs.models import read_card
    from ptytui.networks import layers

    keras = layers.keras
    patches = keras.Input((8, 8, 1), name="input")
    offsets = keras.Input((1, 2, 1), name="input_positions")
    obj = layers.CombineComplex(name="obj")(patches, patches)
    out = layers.ReassemblePatches(8, 18, 1, name="trimmed")(obj, offsets)
    path = tmp_path_factory.mktemp("card") / "m.keras"
    keras.Model([patches, offsets], out).save(path)
    return read_card(path)


def test_split_geometry_with_a_card(split, reassembly_card):
    grouping = group_split(split, 1)
    geometry = split_geometry(reassembly_card, split, grouping, model="m", positions="absolute")
    expected = visible_fraction(np.stack([split.xcoords, split.ycoords], 1), 8).mean()
    assert geometry.predicted_visible_fraction == pytest.approx(expected)
    assert geometry.canvas.canvas == 18 and geometry.canvas.patch == 8 and geometry.off_canvas
    zero = split_geometry(reassembly_card, split, grouping, model="m", positions="zero")
    assert zero.predicted_visible_fraction == 1.0 and not zero.off_canvas
    assert canvas_of(reassembly_card).path.endswith("trimmed")


def test_axes_check_finds_swapped_coordinates(tmp_path):
    arrays = make_arrays(N=16, nx=7, ny=7, spacing=3.0, seed=4)
    good = open_split(write_npz(tmp_path / "good.npz", arrays), "good")
    swapped_arrays = dict(arrays, xcoords=arrays["ycoords"], ycoords=arrays["xcoords"],
                          xcoords_start=arrays["ycoords"], ycoords_start=arrays["xcoords"])
    swapped = open_split(write_npz(tmp_path / "swapped.npz", swapped_arrays), "swapped")
    ok = axes_check(good)
    bad = axes_check(swapped)
    assert ok.correlation_as_stored > 0.9 and not ok.swapped
    assert bad.correlation_swapped > 0.9 and bad.swapped
