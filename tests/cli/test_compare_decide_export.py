"""`ptytui compare`, `decide`, `retrain` and `export` on the synthetic incident workspace: files,
JSON keys, exit codes, the decision shaping the comparison, one-line errors."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from ptytui.cli import main
from ptytui.inputs.workspace import load_workspace
from tests.helpers_compare import shared_workspace


@pytest.fixture()
def folder(tmp_path, tmp_path_factory):
    target = tmp_path / "ws"
    shutil.copytree(shared_workspace(tmp_path_factory), target)
    return target


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_writes_the_csvs_and_exits_1_on_the_all_zero_baseline(folder, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["compare", folder, "--out", out, "--json"], capsys)
    assert code == 1
    document = json.loads(stdout)
    assert {"workspace", "split", "models", "rows", "frc_rows", "findings", "files", "decision"} <= set(document)
    assert [m["model_id"] for m in document["models"]] == ["PtychoPINN", "Baseline", "PtyChi"]
    errors = [f for f in document["findings"] if f["severity"] == "error"]
    assert errors and all(f["id"] == "metric-degenerate" and f["model"] == "baseline_gs1" for f in errors)
    with open(out / "comparison_metrics.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["model", "metric", "amplitude", "phase", "value"]
    assert (out / "frc_curves.csv").is_file() and (out / "comparison.json").is_file()
    assert (folder / "session" / "comparison.json").is_file()  # the session cache


def test_decide_skip_baseline_then_compare_leaves_the_baseline_rows_empty(folder, capsys):
    code, stdout, _ = run_cli(["decide", folder, "--option", "skip-baseline", "--reason",
                               "compare the PINN with the reference only", "--json"], capsys)
    assert code == 0
    recorded = json.loads(stdout)["decision"]
    assert recorded["option"] == "skip-baseline" and recorded["workspace_hash"]
    code, stdout, _ = run_cli(["compare", folder, "--json"], capsys)
    assert code == 0
    document = json.loads(stdout)
    assert document["decision"]["option"] == "skip-baseline"
    baseline = [m for m in document["models"] if m["model_id"] == "Baseline"][0]
    assert baseline["status"] == "skipped" and "reference only" in baseline["note"]
    assert all(r["amplitude"] == "" for r in document["rows"] if r["model"] == "Baseline")


def test_decide_with_a_bad_option_is_one_line_and_exit_2(folder, capsys):
    code, stdout, stderr = run_cli(["decide", folder, "--option", "apply-fix", "--reason", "x"], capsys)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "intervention" in stderr
    assert not (folder / "session" / "decisions.jsonl").exists()


def test_compare_without_a_workspace_is_exit_2(tmp_path, capsys):
    code, _, stderr = run_cli(["compare", tmp_path], capsys)
    assert code == 2 and "ptytui.toml" in stderr and len(stderr.strip().splitlines()) == 1


def test_export_writes_the_chosen_formats(folder, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run_cli(["export", folder, "--format", "md,csv", "--out", out, "--no-diagnosis",
                               "--no-stats", "--json"], capsys)
    assert code == 0
    files = sorted(p.split("/")[-1] for p in json.loads(stdout)["files"])
    assert files == ["comparison_metrics.csv", "frc_curves.csv", "report.md"]
    assert "## Root cause" in (out / "report.md").read_text()


def test_retrain_saves_beside_the_old_model_and_rewires_the_workspace(folder, capsys):
    code, stdout, stderr = run_cli(["retrain", folder, "--epochs", "1", "--no-verify", "--json"], capsys)
    assert code == 0, stderr
    document = json.loads(stdout)
    assert len(document["epochs"]) == 1 and document["verification"] is None
    new_name = document["retrain"]["new_name"]
    workspace = load_workspace(folder)
    assert workspace.models[new_name].label == "Baseline"
    assert workspace.models["baseline_gs1"].label == "Baseline (superseded)"
    assert workspace.models["baseline_gs1"].path.is_file()
