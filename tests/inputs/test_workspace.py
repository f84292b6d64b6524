"""Tests of ptytui.toml workspaces and of workspaces built from --model/--data flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptytui.errors import InputError
from ptytui.inputs.workspace import (
    ModelEntry,
    Workspace,
    canonical_label,
    load_workspace,
    workspace_from_flags,
)
from tests.helpers_npz import write_modern

FULL_TOML = """\
[workspace]
name = "incident"
session = "session"

[splits]
train = "data/train.npz"
test = "data/test.npz"

[models.pinn_gs2]
path = "models/pinn_gs2.keras"
label = "PtychoPINN"
gridsize = 2
positions = "relative"
intensity_scale = "apply"

[models.baseline_gs1]
path = "models/baseline_gs1"  # a PtychoPINN-style bundle directory
label = "Baseline"
gridsize = 1
positions = "absolute"
expected_kind = "supervised"

[reference]
path = "reference/epie_test.npz"
label = "PtyChi"
split = "test"
"""


@pytest.fixture
def study(tmp_path) -> Path:
    """A workspace folder with every file FULL_TOML names (model files are placeholders)."""
    (tmp_path / "data").mkdir()
    write_modern(tmp_path / "data", "train.npz")
    write_modern(tmp_path / "data", "test.npz")
    (tmp_path / "models" / "baseline_gs1").mkdir(parents=True)
    (tmp_path / "models" / "baseline_gs1" / "wts.h5.zip").write_bytes(b"bundle")
    (tmp_path / "models" / "pinn_gs2.keras").write_bytes(b"keras")
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "epie_test.npz").write_bytes(b"ref")
    (tmp_path / "ptytui.toml").write_text(FULL_TOML)
    return tmp_path


def test_full_toml_loads_with_paths_relative_to_the_toml(study, monkeypatch):
    monkeypatch.chdir("/")  # relative to the toml, not to the current folder
    ws = load_workspace(study)
    root = study.resolve()
    assert ws.root == root and ws.toml_path == study / "ptytui.toml"
    assert ws.name == "incident"
    assert ws.session_dir == root / "session"
    assert list(ws.splits) == ["train", "test"]
    assert ws.splits["test"] == root / "data" / "test.npz"
    assert list(ws.models) == ["pinn_gs2", "baseline_gs1"]
    assert ws.models["pinn_gs2"] == ModelEntry(
        name="pinn_gs2", path=root / "models" / "pinn_gs2.keras", label="PtychoPINN", gridsize=2,
        positions="relative", intensity_scale="apply", expected_kind=None, trust=False)
    baseline = ws.models["baseline_gs1"]
    assert (baseline.path, baseline.positions, baseline.expected_kind) == (
        root / "models" / "baseline_gs1", "absolute", "supervised")
    assert (ws.reference.path, ws.reference.label, ws.reference.split) == (
        root / "reference" / "epie_test.npz", "PtyChi", "test")


def test_toml_file_path_works_like_its_folder(study):
    assert load_workspace(study / "ptytui.toml").splits == load_workspace(study).splits


def test_defaults(tmp_path):
    write_modern(tmp_path, "only.npz")
    (tmp_path / "m.keras").write_bytes(b"k")
    (tmp_path / "ptytui.toml").write_text('[splits]\nonly = "only.npz"\n[models.m]\npath = "m.keras"\n')
    ws = load_workspace(tmp_path)
    assert ws.name == tmp_path.resolve().name
    assert ws.session_dir == tmp_path.resolve() / "session"
    model = ws.models["m"]
    assert (model.label, model.gridsize, model.positions, model.intensity_scale, model.expected_kind) == (
        "m", None, None, "apply", None)
    assert model.effective_positions == "relative"
    assert ws.reference is None and ws.trust is False


def test_numeric_intensity_scale_is_a_float(study):
    toml = study / "ptytui.toml"
    toml.write_text(toml.read_text().replace('intensity_scale = "apply"', "intensity_scale = 988"))
    assert load_workspace(study).models["pinn_gs2"].intensity_scale == 988.0


def test_labels_are_canonical():
    assert [canonical_label(x) for x in ("pinn", "BASELINE", "pty-chi", "tike", "MyNet")] == [
        "PtychoPINN", "Baseline", "PtyChi", "Tike", "MyNet"]


def test_open_split_through_the_workspace(study):
    split = load_workspace(study).open_split("train")
    assert (split.name, split.M) == ("train", 12)


@pytest.mark.parametrize("method", ["split_path", "model"])
def test_unknown_names_are_input_errors(study, method):
    with pytest.raises(InputError, match="nope"):
        getattr(load_workspace(study), method)("nope")


# --------------------------------------------------------------------------------------------
# Invalid tomls: one line naming the toml, what was expected and what was found
# --------------------------------------------------------------------------------------------


def _edit(old: str, new: str):
    return lambda text: text.replace(old, new)


BAD_TOMLS = {
    "unknown positions mode": (_edit('positions = "relative"', 'positions = "centred"'), "'centred'"),
    "missing model path key": (_edit('path = "models/pinn_gs2.keras"\n', ""), "models.pinn_gs2.path"),
    "path does not exist": (_edit("data/test.npz", "data/absent.npz"), "data/absent.npz"),
    "missing splits": (lambda t: t.replace('[splits]\ntrain = "data/train.npz"\ntest = "data/test.npz"\n', ""),
                       "no [splits] table"),
    "empty splits": (lambda t: t.replace('train = "data/train.npz"\ntest = "data/test.npz"\n', ""), "empty [splits]"),
    "syntax error": (_edit('name = "incident"', "name = incident"), "line 2"),
    "unknown top-level key": (lambda t: t + "\n[modles.x]\npath = 'a'\n", "unknown keys ['modles']"),
    "unknown model key": (_edit("gridsize = 2", "gridsize = 2\ngrid_size = 2"), "unknown keys ['grid_size']"),
    "unknown workspace key": (_edit('session = "session"', 'session = "session"\nsesion = "x"'), "unknown keys ['sesion']"),
    "bad gridsize": (_edit("gridsize = 2", "gridsize = 0"), "gridsize an integer >= 1"),
    "bad intensity_scale": (_edit('intensity_scale = "apply"', 'intensity_scale = "twice"'), "'twice'"),
    "bad expected_kind": (_edit('expected_kind = "supervised"', 'expected_kind = "unet"'), "'unet'"),
    "reference names unknown split": (_edit('split = "test"', 'split = "validation"'), "'validation'"),
    "split path is a folder": (_edit("data/test.npz", "models"), "is a directory"),
    "trust not a bool": (_edit('session = "session"', 'session = "session"\ntrust = "yes"'), "true or false"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOMLS))
def test_invalid_toml_is_one_line_input_error(study, case):
    edit, fragment = BAD_TOMLS[case]
    toml = study / "ptytui.toml"
    toml.write_text(edit(FULL_TOML))
    with pytest.raises(InputError) as info:
        load_workspace(study)
    message = str(info.value)
    assert "\n" not in message
    assert "ptytui.toml" in message
    assert "expected" in message and "found" in message
    assert fragment in message


def test_folder_without_toml_is_input_error(tmp_path):
    with pytest.raises(InputError, match="folder containing ptytui.toml"):
        load_workspace(tmp_path)


def test_missing_workspace_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_workspace(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------
# hash()
# --------------------------------------------------------------------------------------------


def test_hash_is_stable_across_loads(study):
    assert load_workspace(study).hash() == load_workspace(study).hash()


def test_hash_changes_when_a_data_file_changes(study):
    before = load_workspace(study).hash()
    data = study / "data" / "test.npz"
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert load_workspace(study).hash() != before


def test_hash_changes_when_a_file_inside_a_bundle_changes(study):
    before = load_workspace(study).hash()
    (study / "models" / "baseline_gs1" / "wts.h5.zip").write_bytes(b"retrained bundle")
    assert load_workspace(study).hash() != before


def test_hash_changes_when_the_toml_changes(study):
    before = load_workspace(study).hash()
    toml = study / "ptytui.toml"
    toml.write_text(toml.read_text() + "\n# a comment\n")
    assert load_workspace(study).hash() != before


# --------------------------------------------------------------------------------------------
# --model / --data flags
# --------------------------------------------------------------------------------------------


def test_flags_with_named_splits(study, monkeypatch):
    monkeypatch.chdir(study)
    ws = workspace_from_flags(["models/pinn_gs2.keras"], ["train=data/train.npz", "test=data/test.npz"],
                              positions="zero")
    assert isinstance(ws, Workspace) and ws.toml_path is None
    assert ws.splits == {"train": study / "data" / "train.npz", "test": study / "data" / "test.npz"}
    model = ws.models["pinn_gs2"]
    assert (model.path, model.positions, model.gridsize, model.intensity_scale) == (
        study / "models" / "pinn_gs2.keras", "zero", None, "apply")
    assert ws.session_dir == study / "ptytui-session"


def test_flags_single_plain_path_is_named_data(study, monkeypatch):
    monkeypatch.chdir(study)
    assert list(workspace_from_flags([], ["data/test.npz"]).splits) == ["data"]


def test_flags_several_plain_paths_are_named_by_stem(study, monkeypatch):
    monkeypatch.chdir(study)
    assert list(workspace_from_flags([], ["data/train.npz", "data/test.npz"]).splits) == ["train", "test"]


def test_flags_same_model_twice_gets_distinct_names(study, monkeypatch):
    monkeypatch.chdir(study)
    ws = workspace_from_flags(["models/pinn_gs2.keras", "models/pinn_gs2.keras"], ["data/test.npz"])
    assert list(ws.models) == ["pinn_gs2", "pinn_gs2_2"]


def test_flags_hash_depends_on_positions(study, monkeypatch):
    monkeypatch.chdir(study)
    a = workspace_from_flags([], ["data/test.npz"], positions="zero").hash()
    b = workspace_from_flags([], ["data/test.npz"], positions="absolute").hash()
    assert a != b


@pytest.mark.parametrize(("models", "data", "positions", "fragment"), [
    ([], [], None, "at least one NPZ"),
    ([], ["test=data/absent.npz"], None, "no such file"),
    (["models/absent.keras"], ["data/test.npz"], None, "no such file"),
    ([], ["data/test.npz"], "centred", "'centred'"),
    ([], ["a=data/test.npz", "a=data/train.npz"], None, "given twice"),
    ([], ["test=data"], None, "a directory"),
])
def test_bad_flags_are_input_errors(study, monkeypatch, models, data, positions, fragment):
    monkeypatch.chdir(study)
    with pytest.raises(InputError) as info:
        workspace_from_flags(models, data, positions=positions)
    assert "\n" not in str(info.value) and fragment in str(info.value)
