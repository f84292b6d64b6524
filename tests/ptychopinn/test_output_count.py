"""PtychoPINN's bundle merges a call of 64 patches into one canvas: the trace of a 64-group probe
is flagged (from the reassembly layer on, the layers are marked), ``ptytui trace`` exits 2, and
the counterfactual re-runs of 64 groups are invalid. 16 groups keep one output per input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

MERGED = ["padded_obj_2", "trimmed_obj"]  # the reassembly layer and the trim after it


@pytest.fixture(scope="module")
def feed(ptycho_on_path, bundle, splits, loaded):
    from ptytui.inputs.workspace import workspace_from_flags
    from tests.ptychopinn.conftest import session_sharing

    workspace = workspace_from_flags([str(bundle)], [f"test={splits['test']}"], positions="relative")
    session = session_sharing(workspace, loaded)
    plan = session.plan()[0]
    split = session.split("test")
    grouping = session.grouping("test", session.gridsize(plan.model))

    def fed(n: int):
        from ptytui.running.inference import feed_inputs

        return feed_inputs(loaded, grouping.batch(split, np.arange(n)), positions=plan.positions,
                           intensity_scale=plan.intensity_scale)

    return fed, split, grouping, plan


def test_the_64_group_trace_is_flagged_at_the_reassembly(feed, loaded):
    from ptytui.running.trace import trace_model

    fed, *_ = feed
    trace = trace_model(loaded.model, fed(64), compiled=False)
    count = trace.output_count
    assert (count.inputs, count.returned, count.matches) == (64, 1, False)
    assert count.lost_at == "padded_obj_2" and count.not_per_sample == MERGED
    assert trace.layer("padded_obj_2").type == "ReassemblePatchesLayer"
    layers = {layer["path"]: layer["per_sample"] for layer in trace.to_dict()["layers"]}
    assert [path for path, per_sample in layers.items() if not per_sample] == MERGED
    assert trace.first_collapse is None or trace.first_collapse.path not in MERGED
    small = trace_model(loaded.model, fed(16), compiled=False)
    assert small.output_count.matches and small.output_count.not_per_sample == []


def test_trace_cli_with_64_groups_exits_2_with_the_flag(ptycho_on_path, bundle, splits, capsys):
    from ptytui.cli import main

    code = main(["trace", "--model", str(bundle), "--data", f"test={splits['test']}", "--trust",
                 "--n-samples", "64", "--eager", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    count = json.loads(captured.out)["output_count"]
    assert (count["returned"], count["inputs"], count["lost_at"]) == (1, 64, "padded_obj_2")
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "output-count-mismatch" in err[0] and "returned 1 output for 64 inputs" in err[0]


def test_64_group_reruns_are_invalid_16_are_valid(feed, loaded):
    from ptytui.diagnosis.interventions import run_interventions

    _, split, grouping, plan = feed
    report = run_interventions(loaded, split, grouping, model=plan.model, positions="absolute",
                               intensity_scale=plan.intensity_scale, n_samples=64)
    assert report.invalid() == [report.as_fed, *report.results]  # the merge happens whatever the feed
    assert all(r.returned == 1 and math.isnan(r.nonzero_fraction) for r in report.invalid())
    assert report.recoveries() == [] and report.to_dict()["nonzero_before"] is None
    small = run_interventions(loaded, split, grouping, model=plan.model, positions="absolute",
                              intensity_scale=plan.intensity_scale, n_samples=16,
                              names=["zero-positions"])
    assert small.invalid() == [] and small.result("zero-positions").returned == 16
