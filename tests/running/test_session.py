"""Session: sharding and the workbench's single event stream (diagnosis, then metrics)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptytui.core.events import MetricsDone, RunFinished, event_from_dict, event_to_dict
from ptytui.errors import UsageError
from ptytui.running.session import Session, Shard


def test_shards_are_contiguous_and_cover_every_group_once():
    ids = np.arange(103)
    parts = [Shard(k, 4).select(ids) for k in range(4)]
    assert np.array_equal(np.concatenate(parts), ids)
    assert all(np.all(np.diff(p) == 1) for p in parts)


@pytest.mark.parametrize("text", ["4/4", "a/b", "1", "-1/3"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError):
        Shard.parse(text)


def test_workbench_stream_ends_with_the_metrics(tiny_workspace_copy):
    session = Session.open(tiny_workspace_copy)
    from ptytui.diagnosis.workbench import workbench_events

    events = list(workbench_events(session))
    names = [type(e).__name__ for e in events]
    assert names.index("DiagnosisFinished") < names.index("MetricsDone") == len(names) - 1
    finished = {(e.model, e.split) for e in events if isinstance(e, RunFinished)}
    assert ("baseline_gs1", "test") in finished and ("pinn_gs2", "train") in finished
    traces = [e for e in events if type(e).__name__ == "TraceDone" and e.model == "baseline_gs1"]
    previews = [layer for layer in traces[0].trace["layers"] if "preview" in layer]
    assert [layer["path"] for layer in previews] == ["trimmed_obj"]  # the reassembly layer
    metrics = events[-1]
    assert isinstance(metrics, MetricsDone)
    models = {row["model"] for row in metrics.metrics["rows"]}
    assert {"PtychoPINN", "Baseline"} <= models
    ssim = [r for r in metrics.metrics["rows"] if r["model"] == "Baseline" and r["metric"] == "ssim"]
    assert ssim and ssim[0]["amplitude"] is not None and ssim[0]["amplitude"] < 0.05  # all-zero output
    again = event_from_dict(json.loads(json.dumps(event_to_dict(metrics))))
    assert isinstance(again, MetricsDone) and again.metrics["rows"] == metrics.metrics["rows"]


@pytest.mark.parametrize("toml_trust, flag, read", [(False, False, False), (True, False, True), (False, True, True)])
def test_workspace_trust_in_the_toml_reads_pickled_split_metadata(tmp_path, toml_trust, flag, read):
    from tests.helpers_npz import write_with_metadata

    split = write_with_metadata(tmp_path, name="train.npz")
    (tmp_path / "ptytui.toml").write_text(
        f'[workspace]\nname = "t"\ntrust = {str(toml_trust).lower()}\n\n[splits]\ntrain = "{split.name}"\n')
    opened = Session.open(tmp_path, trust=flag).split("train")
    assert (opened.metadata is not None) is read
