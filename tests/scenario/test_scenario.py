"""The tiny incident scenario: data contract, saved models, the incident's numbers, planted defects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from ptytui.errors import InputError, UsageError
from ptytui.scenario import (
    DEFECTS,
    INCIDENT_DEFECTS,
    PRESETS,
    build_scenario,
    parse_defects,
    predicted_visible_fraction,
    read_manifest,
    scenario_key,
)

TINY = PRESETS["tiny"]


# ---------------------------------------------------------------- settings (no build needed)


def test_parse_defects_defaults_to_the_incident():
    assert parse_defects(None) == tuple(sorted(INCIDENT_DEFECTS))
    assert parse_defects(["none"]) == ()
    assert parse_defects(()) == ()
    assert parse_defects(["incident", "nan-weights"]) == tuple(sorted({*INCIDENT_DEFECTS, "nan-weights"}))


@pytest.mark.parametrize("names", [["bogus"], ["none", "dead-layer"]])
def test_parse_defects_refuses_unknown_or_contradictory(names):
    with pytest.raises(UsageError):
        parse_defects(names)


def test_cache_key_depends_on_every_setting():
    keys = {
        scenario_key("tiny"),
        scenario_key("tiny", defects=()),
        scenario_key("tiny", dose=1e4),
        scenario_key("tiny", seed=1),
        scenario_key("default"),
        scenario_key("tiny", defects=["nan-weights"]),
    }
    assert len(keys) == 6
    assert scenario_key("tiny") == scenario_key("tiny", defects=["incident"])


# ---------------------------------------------------------------- the workspace


def test_layout_and_toml_wiring(tiny_workspace):
    from ptytui.inputs.workspace import load_workspace

    for rel in ("ptytui.toml", "data/train.npz", "data/test.npz", "models/pinn_gs2.keras", "models/pinn_gs2.json",
                "models/baseline_gs1/wts.h5.zip", "models/supervised_unet.keras", "reference/epie_test.npz",
                "scenario/manifest.json", "scenario/fingerprints.npz"):
        assert (tiny_workspace / rel).is_file(), rel
    assert (tiny_workspace / "session").is_dir()
    ws = load_workspace(tiny_workspace)
    assert list(ws.splits) == ["train", "test"]
    assert ws.models["pinn_gs2"].positions == "relative"
    assert ws.models["pinn_gs2"].intensity_scale == "apply"
    assert ws.models["baseline_gs1"].positions == "absolute"  # the incident
    assert ws.models["baseline_gs1"].expected_kind == "supervised"  # what the study believed
    assert ws.models["baseline_gs1"].label == "Baseline"
    assert ws.models["supervised_unet"].intensity_scale == "none"
    assert ws.reference.split == "test"


def test_splits_pass_the_data_contract(tiny_workspace):
    from ptytui.inputs.npz import open_split

    for name, M in (("train", TINY.n_train), ("test", TINY.n_test)):
        split = open_split(tiny_workspace / "data" / f"{name}.npz", name)
        assert (split.M, split.N) == (M, TINY.N)
        assert split.diffraction.dtype == np.float32
        assert split.probe.dtype == np.complex64 and split.probe.shape == (TINY.N, TINY.N)
        assert split.object.shape == (TINY.object_size, TINY.object_size)
        assert split.ground_truth is not None and split.ground_truth.shape == (M, TINY.N, TINY.N)
        assert split.warnings == []
        # per-split normalization: mean per-pattern energy (N/2)^2
        assert split.normalization.factor == pytest.approx(1.0, rel=1e-4)


def test_splits_are_uncompressed_and_pickle_free(tiny_workspace):
    for path in [*tiny_workspace.glob("data/*.npz"), tiny_workspace / "reference" / "epie_test.npz"]:
        with zipfile.ZipFile(path) as zf:
            assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}, path
        with np.load(path, allow_pickle=False) as npz:  # raises on any object array
            for key in npz.files:
                npz[key]
    assert not [p for p in tiny_workspace.rglob("*") if p.suffix in (".dill", ".pkl", ".pickle")]


def test_split_along_y_with_drift(tiny_workspace):
    with np.load(tiny_workspace / "data" / "train.npz") as train, np.load(tiny_workspace / "data" / "test.npz") as test:
        assert train["ycoords"].max() < TINY.object_size / 2 <= test["ycoords"].min()
        for split in (train, test):
            for axis in ("xcoords", "ycoords"):
                assert TINY.N / 2 <= split[axis].min() and split[axis].max() <= TINY.object_size - TINY.N / 2
        drift = (test["ycoords"].mean() - train["ycoords"].mean()) / TINY.object_size
        assert 0.25 < drift < 0.45  # "about a third of the object"
        assert not set(train["scan_index"]) & set(test["scan_index"])


def test_reference_in_ptychi_layout(tiny_workspace):
    with np.load(tiny_workspace / "reference" / "epie_test.npz") as ref:
        assert ref["reconstructed_object"].ndim == 2 and ref["reconstructed_object"].dtype == np.complex64
        assert ref["reconstructed_probe"].shape == (TINY.N, TINY.N)
        assert str(ref["algorithm"]) == "ePIE (ptytui)"
        assert json.loads(str(ref["metadata"]))["split"] == "test"
        assert np.isfinite(ref["reconstructed_object"]).all()


def test_reference_resembles_the_object(tiny_workspace):
    """The ePIE amplitude correlates with the ground truth inside the scanned area."""
    with np.load(tiny_workspace / "reference" / "epie_test.npz") as ref, \
            np.load(tiny_workspace / "data" / "test.npz") as test:
        meta = json.loads(str(ref["metadata"]))
        oy, ox = meta["canvas_origin_yx"]
        recon = ref["reconstructed_object"]
        pad = TINY.N
        truth = np.pad(test["objectGuess"], pad)[oy + pad : oy + pad + recon.shape[0], ox + pad : ox + pad + recon.shape[1]]
    m = TINY.N // 2 + 4
    corr = np.corrcoef(np.abs(recon[m:-m, m:-m]).ravel(), np.abs(truth[m:-m, m:-m]).ravel())[0, 1]
    assert corr > 0.7


def test_bundle_layout_and_intensity_scale(tiny_workspace):
    import h5py

    manifest = read_manifest(tiny_workspace)
    with zipfile.ZipFile(tiny_workspace / "models" / "baseline_gs1" / "wts.h5.zip") as zf:
        assert sorted(zf.namelist()) == ["diffraction_to_obj/model.h5", "diffraction_to_obj/model.keras"]
        import io

        with h5py.File(io.BytesIO(zf.read("diffraction_to_obj/model.h5")), "r") as h5:
            assert float(h5.attrs["intensity_scale"]) == pytest.approx(manifest["intensity_scale"])
    assert manifest["intensity_scale"] == pytest.approx(np.sqrt(1e3) / (TINY.N / 2))
    sidecar = json.loads((tiny_workspace / "models" / "pinn_gs2.json").read_text())
    assert sidecar["intensity_scale"] == pytest.approx(manifest["intensity_scale"])


def test_keras_configs_name_our_reassembly_layer(tiny_workspace):
    with zipfile.ZipFile(tiny_workspace / "models" / "pinn_gs2.keras") as zf:
        config = json.loads(zf.read("config.json"))
    layers = {layer["config"]["name"]: layer for layer in config["config"]["layers"]}
    reassembly = layers["trimmed_obj"]
    assert reassembly["registered_name"] == "ptytui>ReassemblePatches"
    assert reassembly["config"]["canvas_size"] == TINY.N + 4 + 10
    assert [i[0] for i in config["config"]["input_layers"]] == ["input", "input_positions"]


_RELOAD_SCRIPT = textwrap.dedent("""
    import io, json, sys, tempfile, zipfile
    from pathlib import Path
    import numpy as np
    import ptytui.networks.layers  # registers the ptytui layers
    import keras

    root = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        inner = Path(tmp) / "model.keras"
        with zipfile.ZipFile(root / "models" / "baseline_gs1" / "wts.h5.zip") as zf:
            inner.write_bytes(zf.read("diffraction_to_obj/model.keras"))
        models = {
            "pinn_gs2": keras.saving.load_model(root / "models" / "pinn_gs2.keras"),
            "baseline_gs1": keras.saving.load_model(inner),
            "supervised_unet": keras.saving.load_model(root / "models" / "supervised_unet.keras"),
        }
    prints = np.load(root / "scenario" / "fingerprints.npz")
    result = {}
    for name, model in models.items():
        inputs = [prints[f"{name}.input.{k}"] for k in range(len(model.inputs))]
        outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        result[name] = [float(np.max(np.abs(np.asarray(o) - prints[f"{name}.output.{k}"])))
                        for k, o in enumerate(outputs)]
    print(json.dumps(result))
""")


def test_fresh_process_reloads_every_model_with_identical_outputs(tiny_workspace):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _RELOAD_SCRIPT, str(tiny_workspace)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    differences = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(differences) == {"pinn_gs2", "baseline_gs1", "supervised_unet"}
    for name, per_output in differences.items():
        assert max(per_output) <= 1e-5, (name, per_output)


# ---------------------------------------------------------------- the incident's numbers


@pytest.fixture(scope="module")
def tiny_outputs(tiny_workspace):
    """Outputs of baseline_gs1 (absolute and zero offsets) and pinn_gs2 (relative) on both splits."""
    from ptytui.inputs.grouping import group_split
    from ptytui.inputs.npz import open_split
    from ptytui.scenario.zoo import load_scenario_model

    scale = read_manifest(tiny_workspace)["intensity_scale"]
    baseline = load_scenario_model(tiny_workspace / "models" / "baseline_gs1")
    pinn = load_scenario_model(tiny_workspace / "models" / "pinn_gs2.keras")
    outputs = {}
    for name in ("train", "test"):
        split = open_split(tiny_workspace / "data" / f"{name}.npz", name)
        b1 = group_split(split, 1).batch(split, slice(None))
        b2 = group_split(split, 2).batch(split, slice(None))
        outputs[name] = {
            "absolute": baseline([b1.diffraction * scale, b1.global_offsets]).numpy(),
            "zero": baseline([b1.diffraction * scale, np.zeros_like(b1.global_offsets)]).numpy(),
            "pinn": pinn([b2.diffraction * scale, b2.relative_offsets]).numpy(),
            "positions": b1.global_offsets[:, 0, :, 0],
        }
    return outputs


def _nonzero_fraction(a):
    return np.count_nonzero(a) / a.size


def test_absolute_offsets_zero_every_test_pixel(tiny_outputs):
    assert _nonzero_fraction(tiny_outputs["test"]["absolute"]) == 0.0


def test_absolute_offsets_leave_a_train_sliver_the_geometry_predicts(tiny_outputs):
    observed = _nonzero_fraction(tiny_outputs["train"]["absolute"])
    predicted = predicted_visible_fraction(tiny_outputs["train"]["positions"], TINY.N)
    # tiny: positions in [16, 112], split at y = 64; only patterns with x < 32 and y < 32 keep a
    # sliver (~1/18 of train, ~1/16 of each crop): ~0.3%, far below the 2% of "mostly zero".
    assert 0 < observed < 0.02
    # bilinear interpolation lights one more partial row/column per sliver than the area formula
    assert predicted <= observed < 1.5 * predicted


def test_zero_offsets_recover_the_baseline(tiny_outputs):
    for name in ("train", "test"):
        assert _nonzero_fraction(tiny_outputs[name]["zero"]) > 0.5


def test_pinn_is_healthy_on_both_splits(tiny_outputs):
    for name in ("train", "test"):
        out = tiny_outputs[name]["pinn"]
        assert _nonzero_fraction(out) > 0.5
        assert not np.isnan(out).any()
        assert np.abs(out).std(axis=(1, 2, 3)).mean() > 1e-3  # not collapsed to a constant


# ---------------------------------------------------------------- cache, --out


def test_second_build_is_a_cache_hit(tiny_workspace, tiny_scenario):
    stamp = (tiny_workspace / "scenario" / "manifest.json").stat().st_mtime_ns
    assert tiny_scenario(None) == tiny_workspace
    assert (tiny_workspace / "scenario" / "manifest.json").stat().st_mtime_ns == stamp


def test_out_copies_the_workspace(tiny_workspace, tmp_path):
    cache_dir = tiny_workspace.parent.parent  # <cache>/scenarios/<key>
    out = build_scenario("tiny", cache_dir=cache_dir, out=tmp_path / "demo")
    assert out == tmp_path / "demo"
    assert read_manifest(out)["scenario_key"] == read_manifest(tiny_workspace)["scenario_key"]
    assert build_scenario("tiny", cache_dir=cache_dir, out=out) == out  # same scenario: reused
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError):
        build_scenario("tiny", cache_dir=cache_dir, out=tmp_path / "busy")


def test_demo_headless_prints_the_workspace_and_the_diagnosis(tiny_workspace, monkeypatch, capsys, tmp_path):
    from ptytui.cli import main

    monkeypatch.setenv("PTYTUI_CACHE_DIR", str(tiny_workspace.parent.parent))
    monkeypatch.setenv("COLUMNS", "80")  # a batch job's log: one block per finding, ids whole
    monkeypatch.chdir(tmp_path)
    # Exit 0: the demonstration ran as intended, i.e. the diagnosis found the planted incident
    # (an error finding, for which `diagnose` itself exits 1).
    assert main(["demo", "--preset", "tiny", "--headless"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"workspace: {os.path.join('ptytui-demo', 'incident-tiny')}"
    # The verdict leads: the cause named with its numbers, before the findings it explains.
    assert lines[1] == "verdict: explained" and "positions-off-canvas" in lines[2]
    heads = [line.split()[:3] for line in lines if line.lstrip().startswith("✗ error")]
    assert ["✗", "error", "output-all-zero"] in heads and ["✗", "error", "positions-off-canvas"] in heads
    off_canvas = lines.index(next(line for line in lines
                                  if "positions-off-canvas" in line and line.lstrip().startswith("✗")))
    assert "predicted" in lines[off_canvas + 1] or "predicted" in lines[off_canvas + 2]  # the numbers
    assert all(line == line.rstrip() for line in lines)  # no padding to the width in a log


@pytest.mark.parametrize("argv", [["demo", "--preset", "huge"], ["demo", "--defect", "bogus"],
                                  ["demo", "--dose=-5", "--preset", "tiny"]])
def test_demo_command_usage_errors(argv, capsys):
    from ptytui.cli import main

    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ---------------------------------------------------------------- planted defects


@pytest.fixture(scope="module")
def healthy(tiny_scenario):
    return tiny_scenario(())


def test_every_defect_is_covered_below():
    covered = {"absolute-positions", "model-kind", "dead-layer", "nan-weights", "missing-scale", "double-scale",
               "swapped-xy", "uint16-intensity"}
    assert covered == set(DEFECTS)


def test_healthy_wiring(healthy):
    from ptytui.inputs.workspace import load_workspace

    ws = load_workspace(healthy)
    assert ws.models["baseline_gs1"].positions == "relative"
    assert ws.models["baseline_gs1"].expected_kind == "pinn"
    assert read_manifest(healthy)["defects"] == []


@pytest.mark.parametrize("defect, model, field, value", [
    ("absolute-positions", "baseline_gs1", "positions", "absolute"),
    ("model-kind", "baseline_gs1", "expected_kind", "supervised"),
    ("missing-scale", "pinn_gs2", "intensity_scale", "none"),
])
def test_wiring_defects(tiny_scenario, healthy, defect, model, field, value):
    from ptytui.inputs.workspace import load_workspace

    planted = load_workspace(tiny_scenario([defect])).models[model]
    assert getattr(planted, field) == value
    assert getattr(load_workspace(healthy).models[model], field) != value


def test_double_scale_feeds_the_scale_squared(tiny_scenario, healthy):
    from ptytui.inputs.workspace import load_workspace

    scale = read_manifest(healthy)["intensity_scale"]
    planted = load_workspace(tiny_scenario(["double-scale"])).models["pinn_gs2"]
    assert planted.intensity_scale == pytest.approx(scale * scale)
    assert scale > 1.5  # tiny (N = 32, 1e3 photons): s = 1.98, so the mistake changes the input ~2x


def _pinn_outputs(workspace):
    from ptytui.inputs.grouping import group_split
    from ptytui.inputs.npz import open_split
    from ptytui.scenario.zoo import load_scenario_model

    split = open_split(workspace / "data" / "test.npz", "test")
    batch = group_split(split, 2).batch(split, slice(0, 32))
    model = load_scenario_model(workspace / "models" / "pinn_gs2.keras")
    scale = read_manifest(workspace)["intensity_scale"]
    return model, [batch.diffraction * scale, batch.relative_offsets]


def test_nan_weights(tiny_scenario, healthy):
    model, inputs = _pinn_outputs(tiny_scenario(["nan-weights"]))
    # the NaN channel covers nearly every pixel of the crop (relative offsets are a few pixels)
    assert np.isnan(model(inputs).numpy()).mean() > 0.5
    assert sum(int(np.isnan(w).sum()) for w in model.get_weights()) == 1
    healthy_model, _ = _pinn_outputs(healthy)
    assert not np.isnan(healthy_model(inputs).numpy()).any()


def test_dead_layer(tiny_scenario, healthy):
    from ptytui.scenario.zoo import DEAD_LAYER

    keras = pytest.importorskip("ptytui.networks.layers").keras
    for workspace, expect_dead in ((tiny_scenario(["dead-layer"]), True), (healthy, False)):
        model, inputs = _pinn_outputs(workspace)
        probe = keras.Model(model.inputs, [model.get_layer(DEAD_LAYER).output, model.get_layer("amp").output])
        activations, amplitude = (np.asarray(t) for t in probe(inputs))
        assert bool(np.count_nonzero(activations) == 0) == expect_dead
        # the head sees only zeros: each channel is the constant sigmoid(bias)
        assert bool(np.ptp(amplitude, axis=(0, 1, 2)).max() == 0.0) == expect_dead


def test_swapped_xy(tiny_scenario, healthy):
    planted = tiny_scenario(["swapped-xy"])
    for name in ("train", "test"):
        with np.load(planted / "data" / f"{name}.npz") as bad, np.load(healthy / "data" / f"{name}.npz") as good:
            np.testing.assert_array_equal(bad["xcoords"], good["ycoords"])
            np.testing.assert_array_equal(bad["ycoords_start"], good["xcoords_start"])
            np.testing.assert_array_equal(bad["diffraction"], good["diffraction"])


def test_uint16_intensity(tiny_scenario, healthy):
    from ptytui.inputs.npz import open_split

    planted = tiny_scenario(["uint16-intensity"])
    bad = open_split(planted / "data" / "test.npz", "test")
    good = open_split(healthy / "data" / "test.npz", "test")
    raw = np.asarray(bad.diffraction)
    assert np.array_equal(raw, np.rint(raw)) and raw.max() <= np.iinfo(np.uint16).max
    # raw counts = (normalized amplitude / the split's amplitude factor)^2
    factor = read_manifest(healthy)["splits"]["test"]["normalization"]["amplitude_factor"]
    np.testing.assert_array_equal(raw, np.rint((np.asarray(good.diffraction, np.float64) / factor) ** 2))
    assert any("intensity stored as amplitude" in w for w in bad.warnings)
    assert good.warnings == []


def test_variants_share_the_healthy_models(tiny_scenario, healthy):
    """Unchanged files are shared (hard links); a planted model defect never touches the healthy file."""
    healthy_model = healthy / "models" / "pinn_gs2.keras"
    before = healthy_model.read_bytes()
    planted = tiny_scenario(["swapped-xy"])
    assert (planted / "models" / "pinn_gs2.keras").read_bytes() == before
    dead = tiny_scenario(["dead-layer"])
    assert not os.path.samefile(dead / "models" / "pinn_gs2.keras", healthy_model)
    assert healthy_model.read_bytes() == before


# ---------------------------------------------------------------- the default preset (slow)


@pytest.mark.slow
def test_default_preset_reproduces_the_incident(scenario_cache_dir):
    """The demo's numbers: exact zeros on test, a sliver under 2% on train, healthy otherwise.

    Builds the default preset (about 1-2 minutes on 2 cores) into the test cache, then predicts
    every pattern of both splits (about a minute more).
    """
    from ptytui.scenario import measure_incident

    workspace = build_scenario("default", cache_dir=scenario_cache_dir)
    measured = measure_incident(workspace)
    absolute = measured["baseline_gs1"]["absolute"]
    assert absolute["test"]["nonzero_fraction"] == 0.0
    assert 0 < absolute["train"]["nonzero_fraction"] < 0.02
    assert absolute["train"]["predicted_visible_fraction"] <= absolute["train"]["nonzero_fraction"] \
        < 1.5 * absolute["train"]["predicted_visible_fraction"]
    for split in ("train", "test"):
        assert measured["baseline_gs1"]["relative"][split]["nonzero_fraction"] > 0.5
        assert measured["pinn_gs2"]["relative"][split]["nonzero_fraction"] > 0.5
        assert measured["pinn_gs2"]["relative"][split]["nan_count"] == 0
