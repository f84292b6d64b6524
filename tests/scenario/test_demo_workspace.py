"""The demo hands out a copy the user owns (the cache never changes), and builds are reproducible."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptytui.errors import InputError
from ptytui.scenario import build_scenario, read_manifest


def _weights(model_path: Path) -> dict[str, np.ndarray]:
    """Every weight array of a saved .keras model or PtychoPINN-style bundle, by HDF5 path."""
    if model_path.is_dir():
        with zipfile.ZipFile(model_path / "wts.h5.zip") as bundle:
            archive = zipfile.ZipFile(io.BytesIO(bundle.read("diffraction_to_obj/model.keras")))
    else:
        archive = zipfile.ZipFile(model_path)
    arrays: dict[str, np.ndarray] = {}
    with archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                      else None)
    return arrays


def test_two_builds_with_one_key_have_identical_weights(tiny_scenario, tmp_path):
    """A second healthy tiny build in another cache gives bit-identical weights and reference."""
    first = tiny_scenario(())
    second = build_scenario("tiny", defects=(), cache_dir=tmp_path / "cache")
    assert first.name == second.name  # one cache key
    for model in ("models/pinn_gs2.keras", "models/baseline_gs1", "models/supervised_unet.keras"):
        ours, theirs = _weights(first / model), _weights(second / model)
        assert ours.keys() == theirs.keys()
        different = [name for name in ours if not np.array_equal(ours[name], theirs[name])]
        assert not different, (model, different[:3])
    for split in ("data/train.npz", "data/test.npz"):
        assert (first / split).read_bytes() == (second / split).read_bytes()
    with np.load(first / "reference/epie_test.npz") as a, np.load(second / "reference/epie_test.npz") as b:
        for key in ("reconstructed_object", "reconstructed_probe"):
            assert np.array_equal(a[key], b[key]), key


def test_demo_gives_a_copy_and_the_cache_never_changes(tiny_workspace, tmp_path, monkeypatch, capsys):
    from ptytui.cli import main

    monkeypatch.setenv("PTYTUI_CACHE_DIR", str(tiny_workspace.parent.parent))
    monkeypatch.chdir(tmp_path)
    toml_before = (tiny_workspace / "ptytui.toml").read_bytes()
    assert main(["demo", "--preset", "tiny", "--headless"]) == 0
    copy = tmp_path / "ptytui-demo" / "incident-tiny"
    assert read_manifest(copy)["scenario_key"] == read_manifest(tiny_workspace)["scenario_key"]
    for name in ("data/train.npz", "models/pinn_gs2.keras"):  # copies, not links into the cache
        assert (copy / name).stat().st_ino != (tiny_workspace / name).stat().st_ino

    # The README's follow-up happens in the copy; a second demo must not hand out the edited copy
    # as if it were the demo, nor overwrite the user's work: one line saying what is there.
    assert main(["decide", str(copy), "--option", "skip-baseline", "--reason", "try it"]) == 0
    capsys.readouterr()
    assert main(["demo", "--preset", "tiny", "--headless"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "decisions recorded" in err[0] and "--out" in err[0], err
    assert (tiny_workspace / "ptytui.toml").read_bytes() == toml_before
    assert not (tiny_workspace / "session" / "decisions.jsonl").exists()

    # A new folder gets a fresh copy; an unchanged copy is reused.
    assert main(["demo", "--preset", "tiny", "--headless", "--out", "again"]) == 0
    assert not (tmp_path / "again" / "session" / "decisions.jsonl").exists()
    assert main(["demo", "--preset", "tiny", "--headless", "--out", "again"]) == 0


def test_copy_refuses_a_folder_of_other_things(tiny_workspace, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="no demo workspace"):
        build_scenario("tiny", cache_dir=tiny_workspace.parent.parent, out=busy)
    assert (busy / "notes.txt").read_text() == "mine"
