"""`ptytui trace` and `ptytui diagnose` on the tiny incident scenario: JSON shapes, exit codes,
the saved diagnosis."""

from __future__ import annotations

import json

from ptytui.cli import main

ONE_MODEL_TOML = """
[workspace]
name = "baseline only"
session = "session"
[splits]
train = "data/train.npz"
test = "data/test.npz"
[models.baseline_gs1]
path = "models/baseline_gs1"
label = "Baseline"
gridsize = 1
positions = "absolute"
"""


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_trace_one_model_one_split(tiny_workspace, capsys):
    code = main(["trace", str(tiny_workspace), "--model-name", "baseline_gs1", "--split", "test",
                 "--n-samples", "6", "--json"])
    assert code == 0
    trace = _json(capsys)
    assert trace["model"] == "baseline_gs1" and trace["split"] == "test"
    assert trace["first_collapse"]["path"] == "trimmed_obj"
    assert trace["first_collapse"]["upstream_nonzero_fraction"] > 0.5
    layer = next(entry for entry in trace["layers"] if entry["path"] == "trimmed_obj")
    assert {"type", "output", "dead_channels", "channels", "weights"} <= set(layer)
    assert layer["output"]["nonzero_fraction"] == 0.0


def test_trace_two_splits_side_by_side_with_preview(tiny_workspace, capsys):
    code = main(["trace", str(tiny_workspace), "--model-name", "baseline_gs1", "--n-samples", "4",
                 "--positions", "zero", "--preview", "obj", "--json"])
    assert code == 0
    document = _json(capsys)
    assert [t["split"] for t in document["traces"]] == ["train", "test"]
    assert document["traces"][0]["first_collapse"] is None  # zero positions: nothing dies
    assert document["comparisons"][0]["splits"] == ["train", "test"]
    preview = document["traces"][0]["preview"]
    assert preview["path"] == "obj" and len(preview["amplitude"]) <= 64


def test_trace_unknown_preview_layer_is_bad_usage(tiny_workspace, capsys):
    code = main(["trace", str(tiny_workspace), "--model-name", "baseline_gs1", "--split", "test",
                 "--n-samples", "2", "--preview", "no_such_layer", "--json"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_layer" in err[0]


def test_diagnose_json_exit_code_and_saved_diagnosis(tiny_workspace_copy, capsys):
    from ptytui.inputs.workspace import load_workspace

    (tiny_workspace_copy / "ptytui.toml").write_text(ONE_MODEL_TOML)
    # a metrics comparison cached on these inputs: its flags come back as metric-degenerate
    session_dir = tiny_workspace_copy / "session"
    session_dir.mkdir(exist_ok=True)
    (session_dir / "comparison.json").write_text(json.dumps({
        "workspace_hash": load_workspace(tiny_workspace_copy).hash(),
        "findings": [{"id": "metric-degenerate", "severity": "warning", "model": "baseline_gs1",
                      "split": "test", "layer": None, "summary": "FRC lost at once",
                      "evidence": {"flag": "frc-lost-at-once"}, "actions": ["skip-baseline"]}]}))
    code = main(["diagnose", str(tiny_workspace_copy), "--n-groups", "40", "--json"])
    assert code == 1
    document = _json(capsys)
    assert {"workspace", "findings", "seconds"} <= set(document)
    ids = {(f["id"], f["split"]) for f in document["findings"]}
    assert {("output-all-zero", "test"), ("activation-collapse", "test"),
            ("counterfactual-recovers", "test")} <= ids
    off_canvas = next(f for f in document["findings"] if f["id"] == "positions-off-canvas")
    assert set(off_canvas["evidence"]["predicted_visible_fraction"]) == {"train", "test"}
    metric = next(f for f in document["findings"] if f["id"] == "metric-degenerate")
    assert metric["actions"][0]["option"] == "skip-baseline"
    saved = json.loads((tiny_workspace_copy / "session" / "diagnosis.json").read_text())
    assert saved["findings"] == document["findings"]
    assert saved["workspace_hash"]


def test_diagnose_without_a_workspace_is_bad_input(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
