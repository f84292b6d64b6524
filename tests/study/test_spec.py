"""The study file: cells from a pattern (labels, numeric order), listed cells, refused keys."""

from __future__ import annotations

import pytest

from ptytui.errors import InputError
from ptytui.study.spec import load_study


def _workspace(folder):
    folder.mkdir(parents=True)
    (folder / "ptytui.toml").write_text("[workspace]\n")
    return folder


def test_pattern_finds_cells_with_labels_in_numeric_order(tmp_path):
    for dose in ("1e5", "1e3", "1e4"):
        for view in ("dense", "sparse"):
            _workspace(tmp_path / "runs" / f"dose_{dose}" / view)
    _workspace(tmp_path / "runs" / "elsewhere")
    (tmp_path / "ptytui-study.toml").write_text('[study]\nname = "s"\ncells = "runs/dose_{dose}/{view}/ptytui.toml"\n')
    study = load_study(tmp_path)
    assert study.label_names == ("dose", "view")
    assert [(c.labels["dose"], c.labels["view"]) for c in study.cells] == [
        ("1e3", "dense"), ("1e3", "sparse"), ("1e4", "dense"), ("1e4", "sparse"), ("1e5", "dense"), ("1e5", "sparse")]
    assert study.cells[0].id == "runs/dose_1e3/dense"
    assert study.cells[0].path == tmp_path / "runs" / "dose_1e3" / "dense" / "ptytui.toml"


def test_listed_cells_keep_their_labels_and_may_not_exist_yet(tmp_path):
    (tmp_path / "ptytui-study.toml").write_text(
        '[study]\nname = "s"\n[[cell]]\npath = "a"\nlabels = { dose = 1000.0, view = "dense" }\n'
        '[[cell]]\npath = "b/ptytui.toml"\nid = "second"\n[cluster]\nkind = "slurm"\njobs = 3\n')
    study = load_study(tmp_path / "ptytui-study.toml")
    assert [c.id for c in study.cells] == ["a", "second"]
    assert study.cells[0].labels == {"dose": "1000", "view": "dense"}
    assert study.cluster.kind == "slurm" and study.cluster.jobs == 3


@pytest.mark.parametrize("text, named", [
    ('[study]\ncels = "x"\n', "cels"),
    ('[study]\ncells = "r/{a}"\n[run]\nbatchsize = 3\n', "batchsize"),
    ('[study]\ncells = "r/{a}"\n[cluster]\nqueu = "q"\n', "queu"),
    ('[study]\n[[cell]]\npath = "a"\nlabel = {}\n', "label"),
])
def test_unknown_keys_are_refused_by_name(tmp_path, text, named):
    _workspace(tmp_path / "r" / "x")
    (tmp_path / "ptytui-study.toml").write_text(text)
    with pytest.raises(InputError, match=f"unknown keys \\['{named}'\\]") as info:
        load_study(tmp_path)
    assert "ptytui-study.toml" in info.value.one_line()


def test_a_pattern_that_matches_nothing_is_bad_input(tmp_path):
    (tmp_path / "ptytui-study.toml").write_text('[study]\ncells = "runs/dose_{dose}/ptytui.toml"\n')
    with pytest.raises(InputError, match="to match at least one workspace"):
        load_study(tmp_path)
