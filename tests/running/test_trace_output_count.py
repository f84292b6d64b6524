"""The trace checks one output per input: real Keras models that merge the samples of a call (a
layer summing over the batch axis), traced compiled and eagerly, and the tiny scenario's models,
which keep the sample axis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptytui.running.trace import trace_model
from tests.helpers_merging import sum_samples_layer

keras = pytest.importorskip("keras")
N = 8


def _merging_model():
    """conv -> nested model (ReLU, merge) -> negated ReLU (all zero: a 'collapse' of the merged
    canvas), and a per-sample side output."""
    from ptytui.core.tfload import keras as _keras

    k = _keras()
    merge = sum_samples_layer()
    x = k.Input((N, N, 1), name="diffraction")
    h = k.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv",
                        kernel_initializer="ones")(x)
    inner_in = k.Input((N, N, 2))
    inner = k.Model(inner_in, merge(name="merge")(k.layers.ReLU(name="relu")(inner_in)), name="canvas")
    merged = inner(h)
    dead = k.layers.ReLU(name="dead")(k.layers.Rescaling(-1.0, name="negate")(merged))
    side = k.layers.Conv2D(1, 1, name="side")(h)
    return k.Model(x, [dead, side])


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).random((16, N, N, 1)).astype(np.float32) + 0.1


@pytest.mark.parametrize("compiled", [True, False])
def test_a_merging_model_is_flagged_and_its_merged_layers_marked(batch, compiled):
    trace = trace_model(_merging_model(), batch, compiled=compiled)
    count = trace.output_count
    assert (count.inputs, count.returned, count.matches) == (16, 1, False)
    assert count.lost_at == "canvas/merge"
    assert count.not_per_sample == ["canvas", "canvas/merge", "negate", "dead"]
    assert "output-count-mismatch" in count.message() and "returned 1 output for 16 inputs" in count.message()
    assert "the sample axis is lost at canvas/merge" in count.message()
    # the merged canvas negated is all zero: not a per-sample collapse
    assert trace.layer("dead").output.nonzero_fraction == 0.0 and trace.first_collapse is None
    document = json.loads(json.dumps(trace.to_dict()))
    assert document["output_count"]["matches"] is False and document["output_count"]["returned"] == 1
    per_sample = {layer["path"]: layer["per_sample"] for layer in document["layers"]}
    assert per_sample["conv"] and per_sample["canvas/relu"] and per_sample["side"]
    assert not per_sample["canvas/merge"] and not per_sample["dead"]


def test_one_sample_and_per_sample_models_match(batch):
    one = trace_model(_merging_model(), batch[:1])
    assert one.output_count.matches and one.output_count.message() is None
    assert one.output_count.not_per_sample == [] and one.first_collapse is not None  # per sample now

    from ptytui.core.tfload import keras as _keras

    k = _keras()
    x = k.Input((N, N, 1), name="diffraction")
    model = k.Model(x, k.layers.Conv2D(1, 3, padding="same", name="conv")(x))
    trace = trace_model(model, batch)
    assert trace.output_count.to_dict() == {"inputs": 16, "returned": 16, "matches": True, "lost_at": None,
                                            "not_per_sample": [], "message": None}
    assert all(layer["per_sample"] for layer in trace.to_dict()["layers"])


def test_the_tiny_scenario_keeps_one_output_per_input(tiny_workspace):
    """Both kinds of the scenario's models (gridsize 2 regroups patches inside the model)."""
    from ptytui.running.inference import feed_inputs
    from ptytui.running.session import Session

    session = Session.open(tiny_workspace)
    for name in ("pinn_gs2", "baseline_gs1"):
        plan = next(p for p in session.plan(models=[name]) if p.split == "test")
        loaded = session.model(name)
        grouping = session.grouping("test", session.gridsize(name))
        fed = feed_inputs(loaded, grouping.batch(session.split("test"), np.arange(6)),
                          positions=plan.positions, intensity_scale=plan.intensity_scale)
        trace = trace_model(loaded.model, fed, model_name=name, split="test")
        assert trace.output_count.matches and trace.output_count.returned == 6, name
    assert trace.first_collapse is not None and trace.first_collapse.path == "trimmed_obj"  # the Baseline's
