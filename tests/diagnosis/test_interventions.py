"""Counterfactual re-runs on the tiny incident scenario: the Baseline fed absolute offsets is dead
on the test split; zero positions bring it back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptytui.diagnosis.interventions import INTERVENTIONS, applicable, feed_variant, run_interventions


@pytest.fixture(scope="module")
def session(tiny_workspace):
    from ptytui.running.session import Session

    return Session.open(tiny_workspace)


@pytest.fixture(scope="module")
def baseline_report(session):
    loaded = session.model("baseline_gs1")
    grouping = session.grouping("test", 1)
    return run_interventions(loaded, session.split("test"), grouping, model="baseline_gs1",
                             positions="absolute", intensity_scale="apply", n_samples=12)


def test_as_fed_is_dead_and_zero_positions_recover(baseline_report):
    assert baseline_report.n_samples == 12
    assert baseline_report.as_fed.nonzero_fraction == 0.0
    assert baseline_report.result("zero-positions").nonzero_fraction == 1.0
    assert baseline_report.recoveries()[0].name == "zero-positions"


def test_every_applicable_intervention_is_reported(baseline_report):
    names = [r.name for r in baseline_report.results]
    assert names == list(INTERVENTIONS)  # the Baseline takes positions and has a scale
    for result in baseline_report.results:
        assert {k.rsplit(".", 1)[-1] for k in result.outputs} == {"amplitude", "phase"}
    d = baseline_report.to_dict()
    assert d["nonzero_before"] == 0.0 and d["nonzero_after"]["zero-positions"] == 1.0


def test_centred_positions_keep_only_patches_near_the_mean(baseline_report):
    centred = baseline_report.result("centred-positions").nonzero_fraction
    assert 0.0 < centred < 1.0  # the recorded "fix": partly visible, still wrong


def test_feed_variants(session):
    loaded = session.model("baseline_gs1")
    split = session.split("train")
    grouping = session.grouping("train", 1)
    batch = grouping.batch(split, np.arange(3))
    swapped = feed_variant(loaded, batch, INTERVENTIONS["swap-xy"], positions="absolute",
                           intensity_scale="apply")["input_positions"]
    np.testing.assert_allclose(swapped[:, 0, 0, 0], split.ycoords[batch.indices[:, 0]])
    np.testing.assert_allclose(swapped[:, 0, 1, 0], split.xcoords[batch.indices[:, 0]])
    centred = feed_variant(loaded, batch, INTERVENTIONS["centred-positions"], positions="zero",
                           intensity_scale="apply", split_mean=np.array([10.0, 20.0]))
    np.testing.assert_allclose(centred["input_positions"][:, 0, 0, 0], split.xcoords[batch.indices[:, 0]] - 10)
    plain = feed_variant(loaded, batch, INTERVENTIONS["no-intensity-scale"], positions="zero",
                         intensity_scale="apply")["input"]
    np.testing.assert_allclose(plain, batch.diffraction)


def test_models_without_positions_or_scale_get_no_such_interventions(session):
    unet = session.model("supervised_unet")
    assert not any(iv.needs_positions for iv in applicable(unet))
    if not unet.intensity_scale or math.isclose(unet.intensity_scale, 1.0):
        assert applicable(unet) == []
