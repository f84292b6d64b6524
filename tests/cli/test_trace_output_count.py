"""`ptytui trace` on a model that merges the samples of a call (a real saved Keras model with a
layer summing over the batch axis): the JSON flag, the text's line and marks, exit 2; one sample
per call and the tiny scenario pass."""

from __future__ import annotations

import json

import pytest

from ptytui.cli import main
from tests.helpers_merging import sum_samples_layer
from tests.helpers_npz import make_arrays, write_npz

N = 8


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from ptytui.core.tfload import keras as _keras

    SumSamples = sum_samples_layer()
    k = _keras()
    folder = tmp_path_factory.mktemp("trace_count")
    x = k.Input((N, N, 1), name="input")
    h = k.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(x)
    out = k.layers.Conv2D(1, 1, name="head")(SumSamples(name="canvas")(h))
    model_path = folder / "merging.keras"
    k.Model(x, out).save(model_path)
    data = write_npz(folder / "test.npz", make_arrays(N, nx=4, ny=3, seed=2))
    return str(model_path), str(data)


def test_json_flags_the_mismatch_and_exits_2(files, capsys):
    model, data = files
    code = main(["trace", "--model", model, "--data", data, "--n-samples", "8", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    document = json.loads(captured.out)
    count = document["output_count"]
    assert (count["inputs"], count["returned"], count["matches"], count["lost_at"]) == (8, 1, False, "canvas")
    assert count["not_per_sample"] == ["canvas", "head"]
    assert {layer["path"]: layer["per_sample"] for layer in document["layers"]} == {
        "input": True, "conv": True, "canvas": False, "head": False}
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "output-count-mismatch" in err[0] and "merging.keras" in err[0]
    assert "returned 1 output for 8 inputs" in err[0] and "--n-samples" in err[0]


def test_text_marks_the_merged_layers_in_one_line_and_exits_2(files, capsys):
    model, data = files
    code = main(["trace", "--model", model, "--data", data, "--n-samples", "8"])
    captured = capsys.readouterr()
    assert code == 2
    text = " ".join(captured.out.split())  # the sentence wraps at the console's width
    assert text.count("output-count-mismatch") == 1
    assert "output-count-mismatch: 1 output for 8 inputs; the sample axis is lost at canvas (SumSamples)" in text
    marked = [line.split()[0] for line in captured.out.splitlines() if line.split()[2:3] == ["*"]]
    assert marked == ["canvas", "head"]
    assert "first collapse among the per-sample layers" in text


def test_one_sample_per_call_is_a_valid_trace(files, capsys):
    model, data = files
    code = main(["trace", "--model", model, "--data", data, "--n-samples", "1", "--json"])
    assert code == 0
    count = json.loads(capsys.readouterr().out)["output_count"]
    assert count["matches"] is True and count["message"] is None


def test_the_tiny_scenario_traces_one_output_per_input(tiny_workspace, capsys):
    code = main(["trace", str(tiny_workspace), "--model-name", "pinn_gs2", "--split", "test",
                 "--n-samples", "5", "--json"])
    assert code == 0
    count = json.loads(capsys.readouterr().out)["output_count"]
    assert (count["inputs"], count["returned"], count["matches"]) == (5, 5, True)
