"""The diagnosis of a model that merges the samples of every call of 2 or more (a real saved Keras
model summing over the batch axis): it streams one group per call, its 16-group trace is flagged,
and no activation test reads the merged layers as per-sample statistics."""

from __future__ import annotations

import pytest

from ptytui.core.events import DiagnosisFinished, TraceDone
from ptytui.diagnosis.diagnose import diagnose_events

N = 8


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    from ptytui.core.tfload import keras as _keras
    from ptytui.inputs.workspace import workspace_from_flags
    from tests.helpers_merging import sum_samples_layer
    from tests.helpers_npz import make_arrays, write_npz

    SumAllSamples = sum_samples_layer()  # seeds Keras too: the same conv weights on every run
    k = _keras()

    folder = tmp_path_factory.mktemp("diagnose_count")
    x = k.Input((N, N, 1), name="input")
    h = k.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(x)
    merged = SumAllSamples(name="canvas")(h)
    # all zero after the merge: read as per-sample, a collapse and two dead channels
    out = k.layers.ReLU(name="clip")(k.layers.Rescaling(-1.0, name="negate")(merged))
    k.Model(x, out).save(folder / "merging.keras")
    data = write_npz(folder / "test.npz", make_arrays(N, nx=5, ny=5, seed=2))
    workspace = workspace_from_flags([str(folder / "merging.keras")], [f"test={data}"])
    return list(diagnose_events(workspace))


def test_the_trace_is_flagged_and_no_activation_test_reads_the_merged_layers(events):
    assert isinstance(events[-1], DiagnosisFinished)
    diagnosis = events[-1].diagnosis
    trace = next(e for e in events if isinstance(e, TraceDone)).trace
    count = trace["output_count"]
    assert (count["inputs"], count["returned"], count["matches"], count["lost_at"]) == (16, 1, False, "canvas")
    assert trace["first_collapse"] is None
    merged = set(count["not_per_sample"])
    assert merged == {"canvas", "negate", "clip"}
    # the streamed run (one group per call) keeps the sample axis: its per-sample findings stand
    streamed = [f for f in diagnosis.findings if f.layer in merged]
    assert [f.id for f in streamed] == ["sample-collapse"] and streamed[0].evidence["batches"] == 25
    assert not diagnosis.findings_with("activation-collapse") and not diagnosis.findings_with("dead-units")
    # the merge itself is reported (batch coupling), and the output dead one group per call
    assert diagnosis.findings_with("output-count-mismatch") and diagnosis.findings_with("output-all-zero")
    hypotheses = {h.id: h for h in diagnosis.hypotheses}
    for name in ("underflow", "dead-weights", "architecture-clipping"):
        assert hypotheses[name].evidence["layers_left_out_merged_samples"] == {"test": count["not_per_sample"]}
    assert hypotheses["batch-size"].verdict == "supported"
