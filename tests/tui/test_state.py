"""The UI's plain-data side: folding engine events into WorkbenchState, recordings, the batcher
that throttles UI updates, and the decision log (no Textual app needed)."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from ptytui.core.events import BatchDone, FirstPatch, LayerHealthUpdate, RunCancelled, RunFinished, RunStarted
from ptytui.core.health import health_to_dict
from ptytui.core.stats import stats_of_array
from ptytui.tui.decision_log import record_decision
from ptytui.tui.feeds import (
    EventBatcher,
    event_from_record,
    event_to_record,
    load_recording,
    recording_feed,
    replay_feed,
    write_recording,
)
from ptytui.tui.live_layers import LiveTraces, batches_total, live_trace, progress_label
from ptytui.tui.state import RecordedEvent, WorkbenchState, event_type_name
from tests.tui.conftest import INCIDENT, events_until


def folded(events) -> WorkbenchState:
    state = WorkbenchState(feed_status="loading")
    state.apply_all(events)
    return state


def test_the_incident_recording_folds_into_runs_findings_and_traces(incident_events):
    state = folded(incident_events)
    assert list(state.runs) == [("pinn_gs2", "train"), ("pinn_gs2", "test"), ("baseline_gs1", "train"),
                                ("baseline_gs1", "test"), ("supervised_unet", "train"),
                                ("supervised_unet", "test")]
    assert state.runs[("baseline_gs1", "test")].output_nonzero_fraction() == 0.0
    assert state.runs[("pinn_gs2", "test")].output_nonzero_fraction() > 0.99
    assert [f["severity"] for f in state.findings] == sorted(
        (f["severity"] for f in state.findings), key=["error", "warning", "info"].index)
    assert state.traces[("baseline_gs1", "test")]["first_collapse"]["type"] == "ReassemblePatches"
    assert set(state.cards) == {"pinn_gs2", "baseline_gs1", "supervised_unet"}
    assert state.events_ignored == 0


def test_unknown_events_are_counted_and_ignored():
    state = folded([RecordedEvent("SomethingNew", {"model": "m", "split": "s"}),
                    SimpleNamespace(model="m", split="s")])
    assert state.events_ignored == 2
    assert not state.runs and state.feed_status == "running"


def test_batch_updates_keep_the_latest_records_and_a_nonzero_trend():
    zeros = stats_of_array(np.zeros(8, dtype=np.float32))
    half = stats_of_array(np.array([0, 1] * 4, dtype=np.float32))
    state = folded([
        RunStarted("m", "test", n_samples=16, batch_size=8, positions="absolute"),
        BatchDone("m", "test", done=8, total=16, inputs={}, outputs={"out.amplitude": half}),
        BatchDone("m", "test", done=16, total=16, inputs={}, outputs={"out.amplitude": half.merge(zeros)}),
    ])
    run = state.runs[("m", "test")]
    assert (run.done, run.total, run.positions) == (16, 16, "absolute")
    assert run.nonzero_trend == [0.5, 0.25]


def test_a_run_finished_from_a_recording_replaces_the_live_records(incident_events):
    finished = [e for e in incident_events if isinstance(e, RunFinished)]
    state = folded(finished)
    assert all(run.status == "finished" for run in state.runs.values())
    assert state.runs[("baseline_gs1", "train")].outputs["trimmed_obj.amplitude"].count > 0


def test_layer_health_updates_keep_the_latest_records_and_the_batches_seen(live_events):
    updates = [e for e in live_events if isinstance(e, LayerHealthUpdate)]
    assert [u.batches for u in updates] == [1, 2, 4]  # the engine updates after batches 1, 2, 4
    state = WorkbenchState()
    assert state.apply(updates[0]) >= {"health"}
    state.apply(updates[1])
    view = state.live_health[("baseline_gs1", "train")]
    assert (view.batches, view.updates, view.samples) == (2, 2, 128)
    assert view.records is not updates[0].records and view.records == updates[1].records
    assert "trimmed_obj:output.phase" in view.records and "trimmed_obj:output.phase" not in view.layers()
    # exact over the batches so far: 125 of the 128 samples streamed are all zero at the reassembly
    assert view.layers()["trimmed_obj"].zero_sample_count == 125
    state.reset_results()
    assert not state.live_health


def test_layer_health_replayed_as_plain_dicts_folds_the_same(live_events):
    update = events_until(live_events, "LayerHealthUpdate", batches=2)[-1]
    recorded = RecordedEvent("LayerHealthUpdate", {"model": update.model, "split": update.split,
                                                   "batches": 2, "records": health_to_dict(update.records)})
    state = folded([recorded])
    assert state.live_health[("baseline_gs1", "train")].records == update.records
    assert state.events_ignored == 0


def test_the_live_trace_finds_the_collapse_mid_run_and_counts_the_batches_left(live_events):
    state = folded(events_until(live_events, "LayerHealthUpdate", batches=2))
    key = ("baseline_gs1", "train")
    assert batches_total(state, key) == 4  # 128 of 200 samples at 64 a batch: 2 seen, 2 left
    trace = live_trace(state, key)
    assert progress_label(trace) == "live · 2 of 4 batches"
    paths = [layer["path"] for layer in trace["layers"]]
    assert paths[:2] == ["input", "input_positions"] and paths[-1] == "trimmed_obj" and len(paths) == 22
    assert [layer["input"] for layer in trace["layers"][:3]] == [True, True, False]  # the card's inputs
    # no probe trace yet: the collapse is found with the trace's rule, its input taken in run order
    collapse = trace["first_collapse"]
    assert (collapse["path"], collapse["upstream_path"], collapse["upstream_by"]) == ("trimmed_obj", "obj", "order")
    assert collapse["upstream_nonzero_fraction"] == 1.0 and 0 < collapse["nonzero_fraction"] < 0.01
    assert trace["layers"][-1]["zero_sample_count"] == 125


def test_the_probe_trace_gives_the_live_collapse_its_graph_on_every_split(live_events):
    events = events_until(live_events, "TraceDone")
    state = folded(events)
    key = ("baseline_gs1", "train")
    trace = live_trace(state, key)
    assert progress_label(trace) == "all 4 batches"
    assert trace["first_collapse"]["upstream_by"] == "graph"
    assert trace["first_collapse"]["path"] == state.traces[key]["first_collapse"]["path"]
    assert {layer["type"] for layer in trace["layers"]} >= {"Conv2D", "ReassemblePatches"}
    # a later split of the same model streams with the graph the train trace gave
    update = events_until(live_events, "LayerHealthUpdate", batches=1)[-1]
    state.apply(RunStarted("baseline_gs1", "test", n_samples=200, batch_size=64, positions="absolute"))
    state.apply(LayerHealthUpdate("baseline_gs1", "test", batches=1, records=update.records))
    other = live_trace(state, ("baseline_gs1", "test"))
    assert progress_label(other) == "live · 1 of 4 batches"
    assert (other["first_collapse"]["path"], other["first_collapse"]["upstream_by"]) == ("trimmed_obj", "graph")


def test_live_traces_rebuild_only_the_runs_that_moved(live_events):
    mid_run = events_until(live_events, "LayerHealthUpdate", batches=2)
    state, traces = folded(mid_run[:-2]), LiveTraces()  # up to the first update
    before = traces(state)["baseline_gs1"]["train"]
    state.apply(mid_run[-2])
    assert event_type_name(mid_run[-2]) == "BatchDone"
    assert traces(state)["baseline_gs1"]["train"] is before  # a batch alone changes no layer
    state.apply(mid_run[-1])
    assert traces(state)["baseline_gs1"]["train"]["batches"] == 2


def test_a_cancelled_run_says_where_its_live_health_stopped(live_events):
    state = folded(events_until(live_events, "LayerHealthUpdate", batches=2))
    state.apply(RunCancelled("baseline_gs1", "train", done=128))
    assert progress_label(live_trace(state, ("baseline_gs1", "train"))) == "cancelled after 2 of 4 batches"
    assert live_trace(state, ("baseline_gs1", "test")) is None


def test_an_engine_trace_object_with_a_preview_lands_on_its_layer():
    layer = {"path": "model/reassemble", "type": "ReassemblePatches", "output": {}, "channels": 1,
             "dead_channels": 0, "weights": {}}
    trace = SimpleNamespace(to_dict=lambda: {"model": "m", "split": "test", "layers": [layer],
                                             "first_collapse": None},
                            preview=SimpleNamespace(path="model/reassemble", image=np.full((4, 4), 1j)))
    state = folded([RecordedEvent("TraceDone", {"model": "m", "split": "test", "trace": trace})])
    preview = state.traces[("m", "test")]["layers"][0]["preview"]
    assert np.allclose(preview, 1.0)


def test_engine_geometry_gives_positions_and_the_observed_fraction_of_the_run():
    geometry = SimpleNamespace(offsets=np.array([[[100.0, 3.0]], [[0.0, 0.0]]]),
                               canvas=SimpleNamespace(patch=32, canvas=42), predicted_visible_fraction=0.5)
    half = stats_of_array(np.array([0, 1], dtype=np.float32))
    state = folded([BatchDone("m", "test", done=2, total=2, inputs={}, outputs={"o.amplitude": half}),
                    RecordedEvent("GeometryMeasured", {"model": "m", "split": "test", "geometry": geometry})])
    view = state.positions[("m", "test")]
    assert view.offsets.shape == (2, 2) and (view.patch, view.canvas) == (32, 42)
    assert (view.predicted_visible_fraction, view.observed_nonzero_fraction) == (0.5, 0.5)


def test_metrics_absent_until_the_engine_reports_them(incident_events, events_before_metrics):
    assert folded(events_before_metrics).metrics is None
    metrics = folded(incident_events).metrics
    assert {"PtychoPINN", "Baseline"} <= {row["model"] for row in metrics.rows}
    curve = metrics.frc["PtychoPINN"]
    assert len(curve["bins"]) == len(curve["amplitude"]) == len(curve["phase"]) > 1
    assert any(flag["model"] == "Baseline" for flag in metrics.flags)


def test_recordings_round_trip_known_and_unknown_events(tmp_path):
    patch = FirstPatch("m", "s", inputs={"input": np.arange(4.0).reshape(2, 2)},
                       outputs={"o": np.ones((2, 2), np.complex64)})
    other = RecordedEvent("CardRead", {"model": "m", "split": "", "card": {"kind": "keras"},
                                       "offsets": np.arange(6.0).reshape(3, 2)})
    path = write_recording([patch, other], tmp_path / "events.jsonl")
    back = load_recording(path)
    assert isinstance(back[0], FirstPatch) and np.array_equal(back[0].inputs["input"], patch.inputs["input"])
    assert back[1].type_name == "CardRead" and np.array_equal(back[1].offsets, other.data["offsets"])
    assert event_to_record(event_from_record(event_to_record(other))) == event_to_record(other)


def test_a_broken_recording_line_names_the_file_and_line(tmp_path):
    from ptytui.errors import InputError

    path = tmp_path / "broken.jsonl"
    path.write_text('{"type": "RunStarted"\n')
    with pytest.raises(InputError, match="broken.jsonl:1"):
        load_recording(path)


def test_the_recording_feed_writes_what_it_yields(tmp_path):
    events = load_recording(INCIDENT)[:5]
    feed = recording_feed(replay_feed(events), tmp_path / "rec.jsonl")
    assert len(list(feed(threading.Event()))) == 5
    assert len(load_recording(tmp_path / "rec.jsonl")) == 5


def test_the_batcher_coalesces_batches_and_rings_at_most_ten_times_a_second():
    now = [0.0]
    batcher = EventBatcher(interval_s=0.1, clock=lambda: now[0])  # at most ~10 a second
    record = stats_of_array(np.ones(4, dtype=np.float32))
    doorbells = 0
    for i in range(200):  # 200 batches in one second of engine time, nobody draining
        now[0] = i * 0.005
        doorbells += batcher.add(BatchDone("m", "s", done=i + 1, total=200, inputs={}, outputs={"o": record}))
    assert doorbells == 1  # the first rang; the UI has not drained since
    queued = batcher.drain()
    assert [e.done for e in queued] == [200]  # only the latest merged records matter
    rings = 0
    for i in range(200):  # now the UI drains after every doorbell
        now[0] = 1.0 + i * 0.005
        if batcher.add(BatchDone("m", "s", done=i, total=200, inputs={}, outputs={"o": record})):
            rings += 1
            batcher.drain()
    assert rings <= 10


def test_the_batcher_keeps_the_latest_layer_health_of_each_run():
    from ptytui.core.events import LayerHealthUpdate

    batcher = EventBatcher(interval_s=0.1, clock=lambda: 0.0)
    record = stats_of_array(np.ones(4, dtype=np.float32))
    for batches in (1, 2, 4):
        batcher.add(LayerHealthUpdate("m", "train", batches=batches, records={}))
        batcher.add(LayerHealthUpdate("m", "test", batches=batches, records={}))
        batcher.add(BatchDone("m", "train", done=batches, total=8, inputs={}, outputs={"o": record}))
    queued = batcher.drain()
    health = [(e.split, e.batches) for e in queued if isinstance(e, LayerHealthUpdate)]
    assert health == [("train", 4), ("test", 4)]  # one per run, the latest, in arrival order
    assert [e.done for e in queued if isinstance(e, BatchDone)] == [4]


def test_decisions_are_appended_one_json_line_each(tmp_path):
    for option in ("skip-baseline", "apply-fix"):
        record_decision(tmp_path, {"option": option, "rationale": "why", "when": "2025-01-31T12:00:00+00:00",
                                   "intervention": "zero-positions" if option == "apply-fix" else None})
    lines = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(line)["option"] for line in lines] == ["skip-baseline", "apply-fix"]


def test_an_invalid_counterfactual_shows_as_invalid_with_its_reason():
    """A re-run that merged samples is neither a recovery nor a failure to recover."""
    from rich.console import Console

    from ptytui.core.events import CounterfactualDone
    from ptytui.tui.screens.findings import counterfactual_table

    state = WorkbenchState()
    state.apply(CounterfactualDone("bundle", "test", intervention="zero-positions", nonzero_before=0.2,
                                   nonzero_after=None, invalid="returned 1 output for 64 inputs"))
    state.apply(CounterfactualDone("bundle", "test", intervention="swap-xy", nonzero_before=0.2,
                                   nonzero_after=0.9))
    assert state.counterfactuals[0]["invalid"] == "returned 1 output for 64 inputs"
    console = Console(width=100, record=True)
    console.print(counterfactual_table(state.counterfactuals))
    text = console.export_text()
    lines = text.splitlines()
    assert lines[2].split()[-1] == "invalid" and lines[3].split()[-1] == "90.00%"
    assert "invalid: bundle test zero-positions: returned 1 output for 64 inputs" in " ".join(
        line.strip() for line in lines[4:])
