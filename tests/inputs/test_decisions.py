"""The decision log: options, records with evidence, durable appends, a torn last line ignored,
and what the current decision asks of compare (no TensorFlow needed)."""

from __future__ import annotations

import json
import threading
import warnings

import pytest

from ptytui.errors import UsageError
from ptytui.inputs.decisions import (
    DECISIONS_FILE,
    DIAGNOSIS_FILE,
    OPTIONS,
    append_decision,
    current_decision,
    evidence_from_diagnosis,
    feeding_override,
    key_numbers,
    load_saved_diagnosis,
    make_decision,
    model_policy,
    parse_option,
    read_decision_log,
    read_decisions,
    record_decision,
    save_diagnosis,
)
from ptytui.inputs.workspace import load_workspace

DIAGNOSIS = {
    "workspace": "ws",
    "findings": [
        {"id": "positions-drift", "severity": "warning", "model": None, "split": "test", "summary": "drift",
         "evidence": {"train_mean_y": 185.0, "test_mean_y": 273.0}},
        {"id": "positions-off-canvas", "severity": "error", "model": "baseline_gs1", "split": "test",
         "summary": "patches leave the canvas",
         "evidence": {"predicted_visible_fraction": {"train": 0.0045, "test": 0.0},
                      "observed_nonzero_fraction": {"train": 0.0042, "test": 0.0}, "patch": 128}},
        {"id": "dead-units", "severity": "info", "model": "pinn", "split": "train", "summary": "-", "evidence": {}},
    ],
}


@pytest.fixture()
def workspace(tmp_path):
    """A workspace whose files exist (never opened here): enough for hashes and session paths."""
    (tmp_path / "data").mkdir()
    for name in ("train", "test"):
        (tmp_path / "data" / f"{name}.npz").write_bytes(b"placeholder")
    (tmp_path / "m.keras").write_bytes(b"placeholder")
    (tmp_path / "ptytui.toml").write_text(
        '[splits]\ntrain = "data/train.npz"\ntest = "data/test.npz"\n'
        '[models.baseline_gs1]\npath = "m.keras"\nlabel = "Baseline"\n')
    return load_workspace(tmp_path)


def test_parse_option_accepts_the_options_and_names_the_intervention():
    assert parse_option("skip-baseline") == ("skip-baseline", None)
    assert parse_option("apply-fix:zero-positions") == ("apply-fix", "zero-positions")
    assert parse_option("apply-fix", "positions=zero") == ("apply-fix", "positions=zero")


@pytest.mark.parametrize("text, intervention", [
    ("retrain", None),                      # unknown option
    ("apply-fix", None),                    # apply-fix needs its intervention
    ("skip-baseline:zero-positions", None),  # only apply-fix takes one
    ("apply-fix:zero-positions", "relative-positions"),  # two different interventions
    ("apply-fix:rm -rf", None),             # not an intervention name
])
def test_parse_option_refuses_bad_options(text, intervention):
    with pytest.raises(UsageError):
        parse_option(text, intervention)


def test_a_recorded_decision_carries_who_when_hash_and_the_saved_diagnosis(workspace):
    session = workspace.session_dir
    session.mkdir()
    saved = dict(DIAGNOSIS, workspace_hash=workspace.hash())
    (session / DIAGNOSIS_FILE).write_text(json.dumps(saved))
    record, log = record_decision(workspace, "apply-fix:zero-positions", "  the Baseline wants\nzero offsets ")
    assert log == session / DECISIONS_FILE
    assert record["option"] == "apply-fix" and record["intervention"] == "zero-positions"
    assert record["rationale"] == "the Baseline wants zero offsets"
    assert "@" in record["who"] and record["when"].endswith("+00:00")
    assert record["workspace_hash"] == workspace.hash()
    ids = [f["id"] for f in record["evidence"]["findings"]]
    assert ids == ["positions-off-canvas", "positions-drift"]  # errors first, info left out
    numbers = record["evidence"]["findings"][0]["numbers"]
    assert numbers["predicted_visible_fraction.train"] == 0.0045
    assert numbers["observed_nonzero_fraction.test"] == 0.0
    assert read_decisions(session) == [json.loads(json.dumps(record))]


def test_a_saved_diagnosis_of_other_inputs_is_not_evidence(workspace):
    session = workspace.session_dir
    session.mkdir()
    (session / DIAGNOSIS_FILE).write_text(json.dumps(dict(DIAGNOSIS, workspace_hash="0" * 64)))
    record = make_decision("skip-baseline", "no time", workspace=workspace)
    assert record["evidence"]["findings"] == []
    assert "no diagnosis" in record["evidence"]["note"]


def test_without_a_diagnosis_no_findings_are_invented():
    evidence = evidence_from_diagnosis(None)
    assert evidence["findings"] == [] and evidence["source"] is None


def test_an_empty_rationale_is_refused(workspace):
    with pytest.raises(UsageError):
        make_decision("skip-baseline", "   ", workspace=workspace)


def test_a_torn_last_line_is_ignored_and_earlier_lines_are_intact(tmp_path):
    first = append_decision(tmp_path, {"option": "debug-baseline", "rationale": "look closer"})
    append_decision(tmp_path, {"option": "skip-baseline", "rationale": "no time left"})
    whole = first.read_bytes()
    with open(first, "ab") as handle:  # a crash in the middle of the third append
        handle.write(b'{"option": "retrain-baseline", "rationa')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decisions = read_decisions(tmp_path)
    assert [d["option"] for d in decisions] == ["debug-baseline", "skip-baseline"]
    assert any("torn last line" in str(w.message) for w in caught)
    assert first.read_bytes().startswith(whole)
    assert current_decision(tmp_path)["option"] == "skip-baseline"
    # The next append starts on its own line: the torn fragment stays a damaged line of its own.
    append_decision(tmp_path, {"option": "accept-train-only", "rationale": "train is enough"})
    log = read_decision_log(tmp_path)
    assert [d["option"] for d in log.decisions] == ["debug-baseline", "skip-baseline", "accept-train-only"]
    assert len(log.warnings) == 1 and "damaged line 3" in log.warnings[0]


def test_the_workbench_spelling_is_accepted_and_gets_the_saved_evidence(tmp_path):
    (tmp_path / DIAGNOSIS_FILE).write_text(json.dumps(DIAGNOSIS))
    append_decision(tmp_path, {"option": "apply-fix", "reason": "zero them", "intervention": "positions=zero",
                               "time": "2025-01-01T00:00:00+00:00", "source": "tui", "findings": ["x"]})
    record = current_decision(tmp_path)
    assert record["rationale"] == "zero them" and record["when"] == "2025-01-01T00:00:00+00:00"
    assert record["source"] == "tui" and record["findings"] == ["x"] and "who" in record
    assert [f["id"] for f in record["evidence"]["findings"]] == ["positions-off-canvas", "positions-drift"]


def test_concurrent_appends_keep_every_line_whole(tmp_path):
    def worker(k):
        for i in range(15):
            append_decision(tmp_path, {"option": "debug-baseline", "rationale": f"worker {k} entry {i} " + "x" * 300})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = read_decision_log(tmp_path)
    assert len(log.decisions) == 90 and not log.warnings


def test_model_policy_follows_the_decision():
    skip = {"option": "skip-baseline", "rationale": "r", "when": "t"}
    assert model_policy(skip, "baseline_gs1", "Baseline").action == "skip"
    assert model_policy(skip, "pinn_gs2", "PtychoPINN").action == "run"
    assert model_policy({"option": "accept-train-only"}, "b", "Baseline").action == "train-only"
    fix = model_policy({"option": "apply-fix", "intervention": "zero-positions"}, "b", "Baseline")
    assert fix.action == "run" and fix.feeding == {"positions": "zero"}
    named = {"option": "apply-fix", "intervention": "positions=relative", "models": ["pinn_gs2"]}
    assert model_policy(named, "pinn_gs2", "PtychoPINN").feeding == {"positions": "relative"}
    assert model_policy(named, "baseline_gs1", "Baseline").feeding == {}
    other = model_policy({"option": "apply-fix", "intervention": "swap-xy"}, "b", "Baseline")
    assert other.feeding == {} and "not a feeding change" in other.note
    assert model_policy(None, "b", "Baseline").note is None


def test_feeding_override_spellings():
    assert feeding_override("no-intensity-scale") == {"intensity_scale": "none"}
    assert feeding_override("intensity_scale=0.5") == {"intensity_scale": 0.5}
    assert feeding_override("positions=sideways") is None
    assert feeding_override(None) is None


def test_every_option_has_each_of_its_texts():
    for name, option in OPTIONS.items():
        assert option.name == name and option.usage.startswith(name)
        assert all([option.description, option.label, option.action, option.outcome])
    assert OPTIONS["apply-fix"].outcome_text("zero-positions") == "the input fix zero-positions is applied"


def test_a_saved_diagnosis_reads_back_for_its_inputs_only(tmp_path):
    document = dict(DIAGNOSIS, workspace_hash="a" * 64)
    path = save_diagnosis(document, tmp_path)
    assert path == tmp_path / DIAGNOSIS_FILE and path.read_text().endswith("\n")
    assert load_saved_diagnosis(tmp_path, "a" * 64) == document
    assert load_saved_diagnosis(tmp_path, "b" * 64) is None
    with pytest.raises(ValueError):
        save_diagnosis(dict(DIAGNOSIS, bad=float("nan")), tmp_path)
    assert load_saved_diagnosis(tmp_path) == document  # the failed save left the old file


def test_key_numbers_flattens_per_split_evidence_one_level():
    numbers = key_numbers({"patch": 128, "observed": {"train": 0.5, "test": float("nan")},
                           "deep": {"a": {"b": 1}}, "flag": True, "values": [1, 2]})
    assert numbers == {"patch": 128, "observed.train": 0.5, "observed.test": "nan", "flag": True}
