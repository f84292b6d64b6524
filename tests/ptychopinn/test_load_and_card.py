"""Loading PtychoPINN's bundle the way its own loader does, per bundle, with stdout kept clean."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ptytui.errors import InputError
from tests.ptychopinn.conftest import subprocess_env

PTYCHO_CLASSES = {"IntensityScaler", "ActivationLayer", "CombineComplexLayer", "ReassemblePatchesLayer",
                  "TrimReconstructionLayer", "CenterMaskLayer"}


def test_card_under_trust_shows_the_training_parameters(ptycho_on_path, bundle):
    from ptytui.inputs.models import read_card

    card = read_card(bundle, trust=True)
    training = card.training
    assert (training["N"], training["gridsize"], training["offset"], training["batch_size"]) == (64, 1, 4, 16)
    assert training["nphotons"] == pytest.approx(1e9)
    assert training["intensity_scale"] == pytest.approx(988.2117, rel=1e-5)
    assert (training["bigN"], training["padded_size"]) == (64, 74)  # = the layer's padded_size
    assert {c.class_name for c in card.custom_classes if c.importable} == PTYCHO_CLASSES
    assert read_card(bundle).training is None  # nothing unpickled without trust


def test_without_trust_the_one_line_names_trust_and_the_missing_key(ptycho_on_path, bundle):
    from ptytui.inputs.models import load_model

    with pytest.raises(InputError) as failed:
        load_model(bundle)
    line = failed.value.one_line()
    assert "'intensity_scale'" in line and "params.dill" in line and "--trust" in line
    assert "could not be deserialized" not in line
    assert failed.value.exit_code == 2


def test_bundles_keep_their_own_configuration(ptycho_on_path, bundle, loaded, splits):
    """A second bundle with another intensity scale loaded and run in the same process: each
    keeps its own scale, the first's outputs do not change, the global config is put back."""
    import ptycho.params as params

    from ptytui.inputs import ptychopinn
    from ptytui.inputs.models import load_model

    before = dict(params.cfg)
    feed = np.load(splits["test"])
    x = feed["diff3d"][:4, ..., None].astype(np.float32) * np.float32(loaded.intensity_scale)
    zero = np.zeros((4, 1, 2, 1), np.float32)
    first = np.asarray(loaded.model([x, zero], training=False))
    other = load_model(bundle, trust=True)
    scaler = next(layer for layer in other.model.layers if type(layer).__name__ == "IntensityScaler")
    configuration = ptychopinn.BundleConfiguration({**other.params, "intensity_scale": 4 * 988.2117})
    with configuration.active() as cfg:
        assert cfg["intensity_scale"] == pytest.approx(4 * 988.2117)
    assert scaler is not None
    np.asarray(other.model([x, zero], training=False))
    np.testing.assert_array_equal(np.asarray(loaded.model([x, zero], training=False)), first)
    assert dict(params.cfg).keys() == before.keys()
    assert "intensity_scale" not in params.cfg or params.cfg["intensity_scale"] == before.get("intensity_scale")


def test_stats_json_is_one_document_and_the_cwd_stays_empty(ptycho_on_path, bundle, splits, tmp_path):
    import json

    result = subprocess.run(
        [sys.executable, "-m", "ptytui", "stats", "--model", str(bundle), "--data", f"test={splits['test']}",
         "--trust", "--json", "--n-groups", "24"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)  # nothing PtychoPINN printed reached stdout
    assert document["runs"][0]["n_samples"] == 24
    assert "No GPU found" in result.stderr or "DEBUG" in result.stderr or result.stderr
    assert list(tmp_path.iterdir()) == []  # no memoized_data/


def test_card_command_under_trust_prints_the_training_parameters(ptycho_on_path, bundle):
    from typer.testing import CliRunner

    from ptytui.cli import app

    result = CliRunner().invoke(app, ["card", str(bundle), "--trust"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("nphotons", "intensity_scale", "offset", "batch_size", "padded_size", "988.212"):
        assert name in result.output
