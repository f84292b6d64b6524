"""The chunked inference runner on real small Keras models and real NPZ files: statistics equal
numpy's, complex outputs, feeding of positions, out-of-memory back-off, cancellation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ptytui.core.events import BatchDone, BatchSizeReduced, FirstPatch, RunCancelled, RunFinished, RunStarted
from ptytui.core.stats import complex_stats_of_array, stats_of_array
from ptytui.core.tfload import keras, tf
from ptytui.inputs.grouping import group_split
from ptytui.inputs.models import LoadedModel, load_model, read_card
from ptytui.inputs.npz import open_split
from ptytui.running.inference import call_inputs, feed_inputs, position_tensor, run_inference, run_to_result
from tests.helpers_npz import make_arrays, write_npz

N = 8


@pytest.fixture(scope="module")
def split_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inference")
    return write_npz(folder / "split.npz", make_arrays(N, nx=5, ny=4))  # 20 patterns


@pytest.fixture(scope="module")
def position_model_path(tmp_path_factory):
    """A gs1 model with a position input: output = relu(conv(diffraction)) + mean(positions)."""
    k = keras()
    diffraction = k.Input((N, N, 1), name="input")
    positions = k.Input((1, 2, 1), name="input_positions")
    h = k.layers.Conv2D(2, 3, padding="same", activation="relu")(diffraction)
    shift = k.layers.Reshape((1, 1, 2))(positions)
    out = k.layers.Add(name="obj")([h, k.layers.Dense(2, use_bias=False)(shift)])
    model = k.Model([diffraction, positions], out)
    path = tmp_path_factory.mktemp("models") / "position_model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def complex_model_path(tmp_path_factory):
    """A single-input model whose output is complex64 (amplitude * exp(i phase))."""
    from ptytui.networks.layers import CombineComplex

    k = keras()
    inp = k.Input((N, N, 1), name="input")
    amp = k.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)
    phase = k.layers.Conv2D(1, 3, padding="same", activation="tanh")(inp)
    out = CombineComplex(name="object")(amp, phase)
    model = k.Model(inp, out)
    path = tmp_path_factory.mktemp("models") / "complex_model.keras"
    model.save(path)
    return path


def drain(events):
    return list(events)


def test_output_statistics_equal_numpy_on_the_same_outputs(split_path, position_model_path):
    split = open_split(split_path, name="test")
    grouping = group_split(split, 1)
    loaded = load_model(position_model_path)
    events = drain(run_inference(loaded, split, grouping, model_name="m", positions="absolute",
                                 intensity_scale="none", batch_size=6))
    result = events[-1].result
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert result.batches == 4 and result.n_samples == 20  # 6 + 6 + 6 + 2
    batch = grouping.batch(split, np.arange(20))
    fed = feed_inputs(loaded, batch, positions="absolute", intensity_scale="none")
    expected = loaded.model.predict(call_inputs(fed), verbose=0)
    ours, numpy_record = result.outputs["obj"], stats_of_array(expected)
    assert ours.count == numpy_record.count and ours.zero_count == numpy_record.zero_count
    assert ours.mean == pytest.approx(numpy_record.mean, rel=1e-6)
    assert ours.std == pytest.approx(numpy_record.std, rel=1e-5)
    assert ours.min == pytest.approx(numpy_record.min, rel=1e-6)
    assert ours.max == pytest.approx(numpy_record.max, rel=1e-6)
    fed_record = stats_of_array(fed["input_positions"])
    assert result.inputs["input_positions"] == fed_record  # inputs are exact: no arithmetic on them


def test_first_patch_and_batch_events(split_path, position_model_path):
    split = open_split(split_path, name="test")
    loaded = load_model(position_model_path)
    events = drain(run_inference(loaded, split, group_split(split, 1), model_name="m", batch_size=8))
    patches = [e for e in events if isinstance(e, FirstPatch)]
    assert len(patches) == 1 and patches[0].outputs["obj"].shape == (N, N, 2)
    done = [e.done for e in events if isinstance(e, BatchDone)]
    assert done == [8, 16, 20]


def test_complex_outputs_are_amplitude_and_phase(split_path, complex_model_path):
    split = open_split(split_path, name="train")
    grouping = group_split(split, 1)
    loaded = load_model(complex_model_path)
    result = run_to_result(run_inference(loaded, split, grouping, model_name="c", batch_size=7))
    assert set(result.outputs) == {"object.amplitude", "object.phase"}
    fed = feed_inputs(loaded, grouping.batch(split, np.arange(20)))
    expected = complex_stats_of_array(loaded.model.predict(call_inputs(fed), verbose=0))
    assert result.outputs["object.amplitude"].mean == pytest.approx(expected["amplitude"].mean, rel=1e-5)
    assert result.outputs["object.phase"].max == pytest.approx(expected["phase"].max, rel=1e-5)


def test_position_feeding_modes_hand_computed(split_path):
    split = open_split(split_path)
    grouping = group_split(split, 2, seed=3)
    batch = grouping.batch(split, np.arange(3))
    absolute = position_tensor(batch, "absolute")
    relative = position_tensor(batch, "relative")
    assert absolute.shape == relative.shape == (3, 1, 2, 4)
    members = batch.indices[0]
    np.testing.assert_allclose(absolute[0, 0, 0], split.xcoords[members])
    np.testing.assert_allclose(absolute[0, 0, 1], split.ycoords[members])
    mean_x = split.xcoords[members].mean()
    np.testing.assert_allclose(relative[0, 0, 0], -(split.xcoords[members] - mean_x), rtol=1e-6)
    assert not position_tensor(batch, "zero").any()


class OOMAboveBatch:
    """Builds a model that raises ResourceExhaustedError for batches above ``limit``, like a GPU
    that runs out of memory at a large batch size."""

    @staticmethod
    def build(limit: int):
        k, t = keras(), tf()

        def check(n):
            if int(n) > limit:
                raise t.errors.ResourceExhaustedError(None, None, f"OOM when allocating batch {int(n)}")
            return n

        class OOMLayer(k.layers.Layer):
            def call(self, x):
                n = t.py_function(check, [t.shape(x)[0]], t.int32)
                with t.control_dependencies([n]):
                    return t.identity(x)

        inp = k.Input((N, N, 1), name="input")
        out = k.layers.Conv2D(1, 3, padding="same", name="out")(OOMLayer()(inp))
        return k.Model(inp, out)


def test_out_of_memory_halves_the_batch_and_continues(split_path, complex_model_path):
    split = open_split(split_path)
    grouping = group_split(split, 1)
    model = OOMAboveBatch.build(limit=5)
    card = read_card(complex_model_path)
    card.outputs = [{"name": "out", "shape": [None, N, N, 1], "dtype": "float32"}]
    loaded = LoadedModel(model=model, card=card, intensity_scale=None, kind="keras",
                         loaded_from="memory", fallback=None)
    events = drain(run_inference(loaded, split, grouping, model_name="oom", batch_size=16))
    reductions = [(e.old, e.new) for e in events if isinstance(e, BatchSizeReduced)]
    assert reductions == [(16, 8), (8, 4)]
    result = events[-1].result
    assert isinstance(events[-1], RunFinished)
    assert result.n_samples == 20 and result.outputs["out"].count == 20 * N * N
    assert result.batch_size == 4 and len(result.notes) == 2


def test_cancellation_stops_between_batches(split_path, position_model_path):
    split = open_split(split_path)
    loaded = load_model(position_model_path)
    cancel = threading.Event()
    seen = []
    for event in run_inference(loaded, split, group_split(split, 1), model_name="m", batch_size=4,
                               cancel=cancel):
        seen.append(event)
        if isinstance(event, BatchDone) and event.done == 8:
            cancel.set()
    assert isinstance(seen[-1], RunCancelled) and seen[-1].done == 8
    assert not any(isinstance(e, RunFinished) for e in seen)


def test_gridsize_mismatch_is_one_line_bad_input(split_path, position_model_path):
    from ptytui.errors import InputError

    split = open_split(split_path)
    loaded = load_model(position_model_path)
    with pytest.raises(InputError) as info:
        drain(run_inference(loaded, split, group_split(split, 2), model_name="m", batch_size=4))
    assert "\n" not in str(info.value) and "gridsize" in str(info.value)
