"""Engine events survive a JSON round trip (the TUI tests replay recorded events)."""

import json

import numpy as np

from ptytui.core.events import BatchDone, FirstPatch, RunFinished, RunResult, event_from_dict, event_to_dict
from ptytui.core.stats import stats_of_array


def test_events_round_trip_through_json():
    rec = {"out.amplitude": stats_of_array(np.arange(5.0))}
    events = [
        BatchDone("m", "test", done=3, total=9, inputs={"input": stats_of_array(np.ones(4))}, outputs=rec),
        FirstPatch("m", "test", inputs={"input": np.ones((2, 2, 1), np.float32)},
                   outputs={"out": np.array([[1 + 1j]], np.complex64)}),
        RunFinished("m", "test", result=RunResult("m", "test", "absolute", 9, 3, 0.5, {}, rec, 4)),
    ]
    for event in events:
        again = event_from_dict(json.loads(json.dumps(event_to_dict(event))))
        assert type(again) is type(event)
    patch = event_from_dict(json.loads(json.dumps(event_to_dict(events[1]))))
    assert patch.outputs["out"].dtype == np.complex64 and patch.outputs["out"][0, 0] == 1 + 1j
    done = event_from_dict(json.loads(json.dumps(event_to_dict(events[0]))))
    assert done.outputs["out.amplitude"] == rec["out.amplitude"]
