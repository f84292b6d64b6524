"""export: the report's sections and numbers, no invented findings without a diagnosis, the root
cause from a diagnosis (predicted against observed), escaping of names, the CSV/JSON/NPZ/PNG
artifacts, and atomic writes."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from ptytui.core.atomic import atomic_open, atomic_write_text
from ptytui.errors import UsageError
from ptytui.inputs.decisions import DIAGNOSIS_FILE, append_decision
from ptytui.outcome.export import WorkspaceExportWriter, export_workspace, md_escape, parse_formats
from ptytui.quality.compare import compare_workspace
from ptytui.quality.metrics import CSV_COLUMNS, FRC_CSV_COLUMNS
from ptytui.running.session import Session
from tests.helpers_compare import shared_workspace

SECTIONS = ["## Summary", "## Evidence", "## Analysis", "## Root cause", "## Commands to reproduce",
            "## Decision", "## Status", "## Artifacts"]

DIAGNOSIS = {
    "workspace": "ws",
    "findings": [
        {"id": "positions-off-canvas", "severity": "error", "model": "baseline_gs1", "split": "test",
         "layer": None, "summary": "absolute offsets move patches off the canvas",
         "evidence": {"predicted_visible_fraction": {"train": 0.0040, "test": 0.0},
                      "observed_nonzero_fraction": {"train": 0.0042, "test": 0.0}},
         "actions": []},
    ],
    "hypotheses": [{"id": "underflow", "name": "numerical underflow", "model": "baseline_gs1",
                    "test": "subnormal activations", "verdict": "rejected", "evidence": {"count": 0}}],
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return shared_workspace(tmp_path_factory)


@pytest.fixture()
def folder(tmp_path, synthetic):
    target = tmp_path / "ws"
    shutil.copytree(synthetic, target)
    return target


def test_md_escape_neutralizes_markdown_and_html():
    text = md_escape("evil|name`<script>alert(1)</script>` *x* [a](b)\n# h & more")
    assert "|" not in text.replace("\\|", "")
    assert "<" not in text and ">" not in text and "\n" not in text
    assert "\\`" in text and "&amp;" in text and "\\*x\\*" in text and "\\[a\\]" in text


def test_parse_formats():
    assert parse_formats("png, md") == ("md", "png")
    assert parse_formats(None) == ("md", "csv", "json", "npz", "png")
    with pytest.raises(UsageError):
        parse_formats("md,pdf")


def test_export_without_a_diagnosis_reports_measurements_only(folder, tmp_path):
    out = tmp_path / "out"
    result = export_workspace(Session.open(folder), out_dir=out, diagnosis=None)
    names = sorted(p.name for p in result.files)
    assert names == sorted(["report.md", "comparison_metrics.csv", "frc_curves.csv", "session.json",
                            "debug_baseline_gs1_train.npz", "debug_baseline_gs1_test.npz", "reconstructions.png",
                            "layer_nonzero_fraction.png", "positions_vs_canvas.png"])
    report = (out / "report.md").read_text()
    positions = [report.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "The diagnosis was not run (not requested)" in report
    assert "Not established" in report and "### Findings" in report
    assert "positions-off-canvas" not in report  # no invented finding
    # the measured zero output is in the evidence: baseline_gs1 on test, 0 of 25088 nonzero
    assert "| baseline\\_gs1 | test | absolute | out: trimmed\\_obj.amplitude |" in report
    assert "0.00% (0/25088)" in report
    with open(out / "comparison_metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and {r["model"] for r in rows} == {"PtychoPINN", "Baseline", "PtyChi"}
    with open(out / "frc_curves.csv", newline="") as handle:
        assert tuple(next(csv.reader(handle))) == FRC_CSV_COLUMNS
    document = json.loads((out / "session.json").read_text())
    assert document["diagnosis"] == {"run": False, "note": "not run (not requested)"}
    assert document["comparison"]["split"] == "test" and "report.md" in document["files"]
    with np.load(out / "debug_baseline_gs1_test.npz", allow_pickle=False) as dump:
        assert not dump["output__trimmed_obj"].any()  # the failing batch: exactly zero
        assert dump["input__input_positions"].shape == (16, 1, 2, 1)
        assert dump["positions_absolute"].shape == (16, 1, 2)
        assert json.loads(str(dump["meta_json"]))["positions"] == "absolute"
    for name in ("reconstructions.png", "layer_nonzero_fraction.png", "positions_vs_canvas.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_diagnosis_gives_the_root_cause_with_predicted_against_observed(folder, tmp_path):
    session = Session.open(folder)
    comparison = compare_workspace(session, decision=None)
    append_decision(session.workspace.session_dir, {"option": "apply-fix:zero-positions",
                                                    "rationale": "feed | zero <offsets>"})
    result = export_workspace(session, formats="md", out_dir=tmp_path / "out", comparison=comparison,
                              diagnosis=DIAGNOSIS, stats=None)
    report = (tmp_path / "out" / "report.md").read_text()
    root = report[report.index("## Root cause"):report.index("## Commands to reproduce")]
    assert "| test | 0.00% | 0.00% |" in root and "| train | 0.40% | 0.42% |" in root
    assert "numerical underflow" in report and "**rejected**" in report
    assert "feed \\| zero &lt;offsets&gt;" in report  # the rationale, escaped
    assert "**Resolved.**" in report and "zero-positions" in report
    assert [p.name for p in result.files] == ["report.md"]


def test_the_saved_diagnosis_of_the_same_inputs_is_used(folder, tmp_path):
    session = Session.open(folder)
    saved = dict(DIAGNOSIS, workspace_hash=session.workspace.hash())
    session.workspace.session_dir.mkdir(parents=True, exist_ok=True)
    (session.workspace.session_dir / DIAGNOSIS_FILE).write_text(json.dumps(saved))
    result = export_workspace(session, formats="json", out_dir=tmp_path / "out", stats=None)
    assert result.inputs.diagnosis_note == "read from the session's saved diagnosis.json"
    document = json.loads((tmp_path / "out" / "session.json").read_text())
    assert document["diagnosis"]["findings"][0]["id"] == "positions-off-canvas"


def test_names_from_models_are_escaped(folder, tmp_path):
    toml = folder / "ptytui.toml"
    toml.write_text(toml.read_text().replace('label = "PtychoPINN"', 'label = "PINN|`<b>x</b>`"'))
    export_workspace(Session.open(folder), formats="md", out_dir=tmp_path / "out", diagnosis=None, stats=None)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "<b>" not in report
    assert "| PINN\\|\\`&lt;b&gt;x&lt;/b&gt;\\` | evaluated |" in report  # one cell of the metric table


def test_the_workbench_writer_plans_and_writes_with_its_findings(folder):
    from types import SimpleNamespace

    writer = WorkspaceExportWriter(folder, formats="md,csv", collect_stats=False)
    planned = writer.plan(None)
    assert planned == [str(folder / "session" / "export" / name)
                       for name in ("report.md", "comparison_metrics.csv", "frc_curves.csv")]
    state = SimpleNamespace(findings=[dict(DIAGNOSIS["findings"][0])])
    written = writer(state)
    assert sorted(written) == sorted(planned)
    report = (folder / "session" / "export" / "report.md").read_text()
    assert "| test | 0.00% | 0.00% |" in report  # the root cause from the workbench's finding


def test_atomic_write_replaces_whole_files_or_leaves_the_old_one(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_the_workbench_export_reuses_the_runs_and_metrics_of_its_session(tiny_workspace_copy, monkeypatch):
    # A finished workbench run: statistics in its state, metrics cached in the session folder.
    # The export must write from those rather than stream the models again.
    from ptytui.outcome.export import gather as export_module
    from ptytui.quality import compare as compare_module
    from ptytui.quality import comparison_store
    from ptytui.running.session import Session
    from ptytui.tui.state import WorkbenchState

    state = WorkbenchState()
    from ptytui.diagnosis.workbench import workbench_events

    state.apply_all(workbench_events(Session.open(tiny_workspace_copy)))
    assert (tiny_workspace_copy / "session" / comparison_store.COMPARISON_JSON).is_file()

    def must_not_run(*args, **kwargs):
        raise AssertionError("the export recomputed what the workbench had")

    monkeypatch.setattr(export_module, "collect_stats", must_not_run)
    monkeypatch.setattr(compare_module, "compare_workspace", must_not_run)
    written = WorkspaceExportWriter(tiny_workspace_copy, formats="md,csv")(state)
    report = (tiny_workspace_copy / "session" / "export" / "report.md").read_text()
    assert len(written) == 3 and "| baseline\\_gs1 | test | absolute |" in report
    assert "Amplitude SSIM on split test" in report


def test_the_export_dumps_the_samples_a_sample_collapse_finding_names(tiny_workspace_copy, tmp_path, capsys):
    # The tiny incident: the Baseline fed absolute positions; the diagnosis names the samples all
    # zero after its reassembly layer, per split. The export dumps them; the dump must hold
    # exactly those samples, read from the split as it is on disk.
    from ptytui.cli import main
    from ptytui.core.health import run_indices
    from ptytui.inputs.grouping import GroupBatch
    from ptytui.outcome.export.markdown import code
    from ptytui.running.inference import call_inputs, feed_inputs, flat_outputs

    session = Session.open(tiny_workspace_copy)
    out = tmp_path / "out"
    result = export_workspace(session, formats="md,json,npz", out_dir=out)
    findings = [f for f in result.inputs.findings if f["id"] == "sample-collapse"]
    assert {(f["model"], f["split"]) for f in findings} == {("baseline_gs1", "train"), ("baseline_gs1", "test")}
    records = {(r["model"], r["split"]): r for r in result.inputs.collapsed_samples}
    assert set(records) == {("baseline_gs1", "train"), ("baseline_gs1", "test")}
    report = (out / "report.md").read_text()
    document = json.loads((out / "session.json").read_text())
    assert document["collapsed_samples"] == result.inputs.collapsed_samples
    assert result.to_dict()["collapsed_samples"] == result.inputs.collapsed_samples
    loaded = session.model("baseline_gs1")
    for finding in findings:
        split = finding["split"]
        name = f"collapsed_baseline_gs1_{split}.npz"
        assert out / name in result.files and name in document["files"]
        named = run_indices([tuple(r) for r in finding["evidence"]["ranges"]])
        record = records[("baseline_gs1", split)]
        assert record == {"file": name, "model": "baseline_gs1", "split": split, "layer": "trimmed_obj",
                          "samples": named.size, "of": finding["evidence"]["of"]}
        artifact = next(line for line in report.splitlines() if line.startswith(f"- {code(name)}: "))
        assert md_escape(f"{named.size} of {record['of']} samples of baseline_gs1 on {split} are all zero "
                         f"after trimmed_obj") in artifact
        with np.load(out / name, allow_pickle=False) as dump:
            arrays = {key: dump[key] for key in dump.files}
        assert arrays["group_indices"].tolist() == named.tolist()
        assert str(arrays["layer"]) == finding["layer"] == "trimmed_obj"
        assert json.loads(str(arrays["meta_json"]))["ranges"] == finding["evidence"]["ranges"]
        # the split's own arrays: gs1, so group i is pattern i
        with np.load(tiny_workspace_copy / "data" / f"{split}.npz", allow_pickle=False) as raw:
            patterns = arrays["pattern_indices"][:, 0]
            assert patterns.tolist() == named.tolist()
            assert np.array_equal(arrays["diffraction"][..., 0], raw["diffraction"][patterns])
            assert np.array_equal(arrays["positions"][:, 0], np.stack([raw["xcoords"], raw["ycoords"]], -1)[patterns])
        # and they are the samples that die: fed as the workspace feeds the Baseline, every one is
        # exactly zero at the output (trimmed_obj is the output layer)
        batch = GroupBatch(diffraction=arrays["diffraction"],
                           global_offsets=arrays["positions"].mean(axis=1)[:, None, :, None].astype(np.float32),
                           relative_offsets=arrays["relative_offsets"], positions=arrays["positions"],
                           ground_truth=None, indices=arrays["pattern_indices"], group_indices=arrays["group_indices"])
        fed = feed_inputs(loaded, batch, positions="absolute", intensity_scale="apply")
        output = np.asarray(flat_outputs(loaded.model(call_inputs(fed), training=False))[0])
        assert not output.reshape(len(named), -1).any(axis=1).any()

    # `ptytui export --json` (the saved diagnosis and cached metrics now): the same records
    again = tmp_path / "again"
    assert main(["export", str(tiny_workspace_copy), "--format", "npz", "--no-stats", "--out", str(again),
                 "--json"]) == 0
    emitted = json.loads(capsys.readouterr().out)
    assert emitted["collapsed_samples"] == result.inputs.collapsed_samples
    assert {str(again / r["file"]) for r in emitted["collapsed_samples"]} <= set(emitted["files"])
