"""Per-sample collapse: the rule on synthetic records, and on the tiny incident (absolute positions
through the Baseline's reassembly layer) against the model's own outputs; the samples' dump; the
trace --json shape (every key it had, plus the per-sample fields)."""

from __future__ import annotations

import json

import numpy as np

from ptytui.cli import main
from ptytui.core.health import LayerHealth, run_indices
from ptytui.diagnosis.sample_collapse import (
    collapsed_from_findings,
    collapsed_sample_ids,
    dump_samples,
    format_ranges,
    sample_collapse_findings,
)


def _rec(path: str, zero=(), nonfinite=(), samples: int = 10) -> LayerHealth:
    return LayerHealth(path, count=samples * 4, samples=samples, batches=2, zero_samples=list(zero),
                       nonfinite_samples=list(nonfinite))


def test_rule_names_the_first_layer_and_only_layers_that_kill_more():
    records = {"x": _rec("x"), "conv": _rec("conv", zero=[(3, 4)]), "conv:output.phase": _rec("p", zero=[(0, 10)]),
               "relu": _rec("relu", zero=[(3, 4)]), "reassemble": _rec("reassemble", zero=[(0, 2), (3, 6)]),
               "out": _rec("out", zero=[(0, 2), (3, 6)], nonfinite=[(7, 8)])}
    findings = sample_collapse_findings("m", "test", records, 10, label="Baseline")
    collapse = [f for f in findings if f.id == "sample-collapse"]
    assert [f.layer for f in collapse] == ["conv", "reassemble"]
    assert collapse[1].summary == ("m on test: 5 of 10 samples are all zero after reassemble "
                                   "(indices 0-1, 3-5); 4 of them first here")
    assert collapse[1].evidence["ranges"] == [[0, 2], [3, 6]] and collapse[1].evidence["new_samples"] == 4
    nonfinite = [f for f in findings if f.id == "sample-nonfinite"]
    assert [f.layer for f in nonfinite] == ["out"] and nonfinite[0].severity == "warning"
    assert sample_collapse_findings("m", "test", None) == []
    assert collapsed_sample_ids(records, "reassemble").tolist() == [0, 1, 3, 4, 5]
    assert format_ranges([(i, i + 1) for i in range(0, 40, 2)], limit=3) == "0, 2, 4, ... (17 more ranges)"


def test_collapsed_samples_read_back_from_the_findings_as_json_holds_them():
    records = {"x": _rec("x"), "conv": _rec("conv", zero=[(3, 4)]), "relu": _rec("relu", zero=[(3, 4)]),
               "reassemble": _rec("reassemble", zero=[(0, 2), (3, 6)])}
    findings = [json.loads(json.dumps(f.to_dict())) for f in sample_collapse_findings("m", "test", records, 10)]
    other = dict(findings[0], split="train", evidence=dict(findings[0]["evidence"], ranges=[[7, 9]]))
    broken = dict(findings[0], model="n", evidence={"ranges": [[5, 2]]})  # not a range: skipped
    collapsed = collapsed_from_findings(findings + [other, broken, {"id": "output-all-zero"}])
    assert [(c.model, c.split) for c in collapsed] == [("m", "test"), ("m", "train")]
    test = collapsed[0]
    assert test.layer == "conv" and test.total == 10  # the first layer where samples die
    assert test.ranges == [(0, 2), (3, 6)] and test.count == 5 and test.group_ids().tolist() == [0, 1, 3, 4, 5]
    assert [(entry["layer"], entry["samples"], entry["new_ranges"]) for entry in test.layers] == [
        ("conv", 1, [[3, 4]]), ("reassemble", 5, [[0, 2], [4, 6]])]
    assert collapsed[1].group_ids().tolist() == [7, 8]


def test_incident_names_the_samples_all_zero_after_the_reassembly(tiny_workspace, tmp_path):
    from ptytui.inputs.workspace import load_workspace
    from ptytui.running.inference import call_inputs, feed_inputs, flat_outputs, run_to_result
    from ptytui.running.session import Session

    session = Session(load_workspace(tiny_workspace), batch_size=16)
    plan = session.plan(models=["baseline_gs1"], splits=["train"])[0]
    assert plan.positions == "absolute"
    result = run_to_result(session.run(plan))
    findings = sample_collapse_findings("baseline_gs1", "train", result.layer_health, result.n_samples)
    collapse = [f for f in findings if f.id == "sample-collapse"]
    assert collapse and collapse[0].layer == "trimmed_obj"

    # the truth: the model's own output (trimmed_obj is its output layer), sample by sample
    loaded, split = session.model("baseline_gs1"), session.split("train")
    grouping = session.grouping("train", session.gridsize("baseline_gs1"))
    dead = []
    for start in range(0, result.n_samples, 16):
        ids = np.arange(start, min(start + 16, result.n_samples))
        fed = feed_inputs(loaded, grouping.batch(split, ids, ground_truth=False), positions="absolute",
                          intensity_scale=plan.intensity_scale)
        out = np.asarray(flat_outputs(loaded.model(call_inputs(fed), training=False))[0])
        dead += ids[np.abs(out.reshape(len(ids), -1)).max(axis=1) == 0].tolist()
    assert 0 < len(dead) < result.n_samples  # the tiny incident kills most, not all, train samples
    assert run_indices(result.layer_health["trimmed_obj"].zero_samples).tolist() == dead
    assert collapse[0].evidence["samples"] == len(dead)
    assert collapse[0].summary.startswith(f"baseline_gs1 on train: {len(dead)} of {result.n_samples} samples "
                                          "are all zero after trimmed_obj (indices ")

    path = dump_samples(tmp_path / "collapsed.npz", split, grouping,
                        collapsed_sample_ids(result.layer_health, "trimmed_obj"))
    with np.load(path) as dump:
        assert dump["group_indices"].tolist() == dead
        assert dump["diffraction"].shape[0] == len(dead) and dump["positions"].shape[0] == len(dead)
        assert "layer" not in dump.files and "meta_json" not in dump.files
    path = dump_samples(tmp_path / "named.npz", split, grouping, dead[:3], layer="trimmed_obj", meta={"seed": 0})
    with np.load(path, allow_pickle=False) as dump:
        assert str(dump["layer"]) == "trimmed_obj" and json.loads(str(dump["meta_json"])) == {"seed": 0}
        assert dump["group_indices"].tolist() == dead[:3]


OLD_TRACE_KEYS = {"model", "split", "positions", "n_samples", "seconds", "layers", "first_collapse"}
OLD_LAYER_KEYS = {"activation", "channels", "config", "container", "dead_channels", "depth", "dtypes",
                  "input", "inputs", "name", "output", "outputs", "parent", "path", "shapes", "type",
                  "underflow_count", "weights"}
OLD_STATS_KEYS = {"count", "finite_count", "histogram", "inf_count", "m2", "max", "mean", "min",
                  "nan_count", "nonzero_fraction", "std", "zero_count"}


def test_trace_json_keeps_its_shape_and_adds_the_samples(tiny_workspace, capsys):
    code = main(["trace", str(tiny_workspace), "--model-name", "baseline_gs1", "--split", "test",
                 "--n-samples", "6", "--json"])
    assert code == 0
    trace = json.loads(capsys.readouterr().out)
    assert OLD_TRACE_KEYS <= set(trace)
    for layer in trace["layers"]:
        assert OLD_LAYER_KEYS <= set(layer)
        assert OLD_STATS_KEYS <= set(layer["output"])
        assert all(OLD_STATS_KEYS <= set(rec) for rec in layer["outputs"].values())
    reassembly = next(layer for layer in trace["layers"] if layer["path"] == "trimmed_obj")
    assert reassembly["zero_samples"] == [[0, 6]] and reassembly["zero_sample_count"] == 6
    assert {"every", "batches", "hist_samples_per_batch", "hist_elements"} <= set(reassembly["sampled"])
