"""Counterfactual re-runs must return one output per input: a re-run that merges the samples is
invalid, neither a recovery nor a failure to recover. A real Keras model built here merges the
samples of a call exactly when its positions are all zero (and is dead otherwise), so the
zero-positions re-run would read as a recovery if its output count went unchecked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptytui.diagnosis.interventions import run_interventions

N = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ptytui.core.tfload import keras as _keras
    from ptytui.core.tfload import tf as _tf
    from ptytui.inputs.grouping import group_split
    from ptytui.inputs.models import load_model
    from ptytui.inputs.npz import open_split
    from tests.helpers_npz import make_arrays, write_npz

    k, tf = _keras(), _tf()
    k.utils.set_random_seed(0)  # initial weights: the same numbers on every run

    @k.saving.register_keras_serializable(package="ptytui_tests")
    class MergeWhenCentred(k.layers.Layer):
        """Zero output for offset samples; all samples summed into one when every offset is zero."""

        def call(self, x, positions):
            centred = tf.reduce_all(tf.equal(positions, 0.0))
            return tf.cond(centred, lambda: tf.reduce_sum(x, axis=0, keepdims=True), lambda: 0.0 * x)

        def compute_output_shape(self, x_shape, positions_shape):
            return x_shape

    folder = tmp_path_factory.mktemp("interventions_count")
    diffraction = k.Input((N, N, 1), name="input")
    positions = k.Input((1, 2, 1), name="input_positions")
    h = k.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="conv")(diffraction)
    out = MergeWhenCentred(name="canvas")(h, positions)
    path = folder / "merge_when_centred.keras"
    k.Model([diffraction, positions], out).save(path)
    split = open_split(write_npz(folder / "s.npz", make_arrays(N=N, nx=4, ny=4)), "s")
    return load_model(path), split, group_split(split, 1)


def test_a_merging_rerun_is_invalid_not_a_recovery(setup):
    loaded, split, grouping = setup
    report = run_interventions(loaded, split, grouping, model="m", positions="absolute",
                               intensity_scale="none", n_samples=6)
    assert report.as_fed.valid and report.as_fed.nonzero_fraction == 0.0  # dead as fed
    # gridsize 1: relative offsets are zero too, so both re-runs merge the 6 samples into one
    invalid = {r.name for r in report.results if not r.valid}
    assert invalid == {"zero-positions", "relative-positions"}
    zero = report.result("zero-positions")
    assert (zero.inputs, zero.returned) == (6, 1) and math.isnan(zero.nonzero_fraction)
    assert next(iter(zero.outputs.values())).nonzero_fraction == 1.0  # the merged canvas, no recovery
    assert "output-count-mismatch" in zero.invalid_reason and "returned 1 output for 6 inputs" in zero.invalid_reason
    assert report.recoveries() == []
    document = report.to_dict()
    assert document["nonzero_after"]["zero-positions"] is None
    assert set(document["invalid"]) == invalid
    row = next(r for r in document["results"] if r["intervention"] == "zero-positions")
    assert row["valid"] is False and row["returned"] == 1 and row["nonzero_fraction"] is None
    swap = report.result("swap-xy")
    assert swap.valid and swap.nonzero_fraction == 0.0  # a valid re-run that does not recover


def test_an_invalid_as_fed_run_leaves_nothing_to_recover(setup):
    loaded, split, grouping = setup
    report = run_interventions(loaded, split, grouping, model="m", positions="zero",
                               intensity_scale="none", n_samples=6)
    assert not report.as_fed.valid and math.isnan(report.as_fed.nonzero_fraction)
    assert report.recoveries() == [] and "as-fed" in report.to_dict()["invalid"]
    assert report.to_dict()["nonzero_before"] is None


def test_the_tiny_scenario_reruns_are_valid(tiny_workspace):
    from ptytui.running.session import Session

    session = Session.open(tiny_workspace)
    report = run_interventions(session.model("baseline_gs1"), session.split("test"), session.grouping("test", 1),
                               model="baseline_gs1", positions="absolute", intensity_scale="apply", n_samples=5)
    assert report.invalid() == [] and all(r.returned == 5 for r in [report.as_fed, *report.results])
    assert report.recoveries()[0].name == "zero-positions"
    assert np.isclose(report.result("zero-positions").nonzero_fraction, 1.0)


def test_the_batch_coupling_rerun_reports_the_output_count(setup):
    from ptytui.diagnosis.hypotheses import batch_coupling_check

    loaded, split, grouping = setup
    merged = batch_coupling_check(loaded, split, grouping, model="m", positions="zero",
                                  intensity_scale="none", batch_size=4)
    assert merged.returned == 1 and merged.coupled and not merged.same_shapes
    assert "returned 1 output for 4 inputs" in merged.to_dict()["output_count_mismatch"]
    offset = batch_coupling_check(loaded, split, grouping, model="m", positions="absolute",
                                  intensity_scale="none", batch_size=4)
    assert offset.returned == 4 and offset.to_dict()["output_count_mismatch"] is None
