"""Model loading and model cards on real small Keras models saved in every supported format,
on a synthetic PtychoPINN-style bundle (with a booby-trapped pickle) and on PtychoPINN's own bundle."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptytui.errors import InputError, MissingDependency
from ptytui.inputs.models import (
    KIND_BUNDLE,
    KIND_H5,
    KIND_KERAS,
    KIND_SAVEDMODEL,
    MissingCustomClasses,
    input_roles,
    load_model,
    read_card,
)

REPO = Path(__file__).resolve().parents[2]
CLI_CARD_KEYS = {"path", "kind", "loaded_from", "fallback", "inputs", "outputs", "takes_positions",
                 "layers", "custom_classes", "missing_classes", "reassembly", "intensity_scale",
                 "parameters"}


def ptychopinn_fixtures() -> Path | None:
    """PtychoPINN's real artifacts (see their README), wherever this checkout keeps them."""
    candidates = [os.environ.get("PTYTUI_PTYCHOPINN_FIXTURES"), REPO / "tests" / "fixtures" / "ptychopinn",
                  REPO / "shared" / "fixtures" / "ptychopinn", REPO.parent / "shared" / "fixtures" / "ptychopinn",
                  Path("/work/shared/fixtures/ptychopinn")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "bundle_gs1" / "wts.h5.zip").is_file():
            return Path(candidate)
    return None


def ptycho_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("ptycho") is not None


class _TouchOnUnpickle:
    """A pickle payload that creates a marker file when unpickled: proof that code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _register_test_layers(keras):
    """Two position-consuming layers, registered under a test package (not ptytui's names).

    ``ReassemblePatches`` stores canvas and patch sizes in its config; ``TranslationLayer`` does
    not, so the card must infer them from the padding before and the crop after it.
    """
    package = "ptytui_models_test"
    existing = keras.saving.get_registered_object(f"{package}>ReassemblePatches")
    if existing is not None:
        return existing, keras.saving.get_registered_object(f"{package}>TranslationLayer")

    @keras.saving.register_keras_serializable(package=package)
    class ReassemblePatches(keras.layers.Layer):
        def __init__(self, canvas_size, patch_size, gridsize=1, **kwargs):
            super().__init__(**kwargs)
            self.canvas_size, self.patch_size, self.gridsize = canvas_size, patch_size, gridsize

        def call(self, inputs):
            patches, offsets = inputs
            return patches[..., :1] + 0.0 * keras.ops.sum(offsets)

        def get_config(self):
            return {**super().get_config(), "canvas_size": self.canvas_size,
                    "patch_size": self.patch_size, "gridsize": self.gridsize}

    @keras.saving.register_keras_serializable(package=package)
    class TranslationLayer(keras.layers.Layer):
        def call(self, inputs):
            padded, offsets = inputs
            return padded + 0.0 * keras.ops.sum(offsets)

    return ReassemblePatches, TranslationLayer


@pytest.fixture(scope="module")
def keras():
    from ptytui.core.tfload import keras as load_keras

    return load_keras()


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """Small real models saved as .keras, .h5 and SavedModel, with reference outputs."""
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    feed = {"diffraction": rng.normal(size=(3, 8, 8, 1)).astype("float32"),
            "positions": rng.normal(size=(3, 1, 2, 1)).astype("float32")}

    diffraction = keras.Input((8, 8, 1), name="diffraction")
    positions = keras.Input((1, 2, 1), name="positions")
    features = keras.layers.Conv2D(2, 3, padding="same", name="features")(diffraction)
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(features), keras.layers.Flatten()(positions)])
    two_inputs = keras.Model([diffraction, positions], [keras.layers.Dense(3, name="head")(joined), features],
                             name="two_inputs")
    two_inputs.save(root / "two_inputs.keras")
    two_inputs.save(root / "two_inputs.h5")
    two_inputs.export(str(root / "two_inputs_savedmodel"), verbose=False)

    sequential = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                                   keras.layers.Dense(4)], name="plain_sequential")
    sequential.save(root / "sequential.keras")
    sequential.save(root / "sequential.h5")

    inner_sequential = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, padding="same"),
                                         keras.layers.ReLU()], name="encoder")
    inner_input = keras.Input((8, 8, 2))
    inner_functional = keras.Model(inner_input, keras.layers.Conv2D(1, 1)(inner_input), name="decoder")
    outer_input = keras.Input((8, 8, 1), name="input")
    nested = keras.Model(outer_input, inner_functional(inner_sequential(outer_input)), name="autoencoder")
    nested.save(root / "nested.keras")
    nested.save(root / "nested.h5")

    reassemble_cls, translation_cls = _register_test_layers(keras)
    patches_in = keras.Input((8, 8, 1), name="input")
    offsets_in = keras.Input((1, 2, 1), name="input_positions")
    patches = keras.layers.Conv2D(1, 3, padding="same")(patches_in)
    placed = reassemble_cls(canvas_size=18, patch_size=8, gridsize=1, name="reassemble")([patches, offsets_in])
    padded = keras.layers.ZeroPadding2D(2, name="pad")(patches)
    shifted = translation_cls(name="translate")([padded, offsets_in])
    cropped = keras.layers.Cropping2D(2, name="crop")(shifted)
    pinn_like = keras.Model([patches_in, offsets_in], [keras.layers.Identity(name="object")(placed), cropped],
                            name="pinn_like")
    pinn_like.save(root / "pinn_like.keras")

    lambda_in = keras.Input((8, 8, 1), name="diffraction")
    with_lambda = keras.Model(lambda_in, keras.layers.Lambda(lambda t: t * 2.0, name="double")(lambda_in),
                              name="with_lambda")
    with_lambda.save(root / "with_lambda.keras")

    return {
        "root": root, "feed": feed,
        "two_inputs": two_inputs, "two_inputs_out": [np.asarray(o) for o in two_inputs(feed)],
        "sequential": sequential, "sequential_out": np.asarray(sequential(feed["diffraction"])),
        "nested": nested, "nested_out": np.asarray(nested(feed["diffraction"])),
        "with_lambda_out": np.asarray(with_lambda(feed["diffraction"])),
    }


def _as_list(outputs):
    if isinstance(outputs, dict):
        return [np.asarray(outputs[k]) for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(o) for o in outputs]
    return [np.asarray(outputs)]


def _write_bundle(zip_path: Path, model_keras: Path, *, intensity_scale: float | None, marker: Path | None,
                  member_dir: str = "diffraction_to_obj") -> None:
    """A PtychoPINN-style wts.h5.zip around a real .keras model (pickles booby-trapped)."""
    scale_file = io.BytesIO()
    with h5py.File(scale_file, "w") as handle:
        if intensity_scale is not None:
            handle.attrs["intensity_scale"] = intensity_scale
    payload = pickle.dumps(_TouchOnUnpickle(marker)) if marker is not None else pickle.dumps({})
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.dill", payload)
        archive.write(model_keras, f"{member_dir}/model.keras")
        archive.writestr(f"{member_dir}/model.h5", scale_file.getvalue())
        archive.writestr(f"{member_dir}/params.dill", payload)
        archive.writestr(f"{member_dir}/custom_objects.dill", payload)


# ---------------------------------------------------------------------------------------------
# Cards and loading, per format
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kind", [("two_inputs.keras", KIND_KERAS), ("two_inputs.h5", KIND_H5),
                                        ("two_inputs_savedmodel", KIND_SAVEDMODEL)])
def test_card_of_two_input_model_names_inputs_outputs_and_parameters(saved, name, kind):
    card = read_card(saved["root"] / name)
    assert card.kind == kind
    assert [(s["name"], s["shape"], s["dtype"]) for s in card.inputs] == [
        ("diffraction", [None, 8, 8, 1], "float32"), ("positions", [None, 1, 2, 1], "float32")]
    assert [s["shape"] for s in card.outputs] == [[None, 3], [None, 8, 8, 2]]
    assert card.takes_positions is True
    assert card.gridsize == 1
    assert card.parameters == saved["two_inputs"].count_params()
    assert card.loaded_from == str(saved["root"] / name)
    assert card.fallback is None
    assert CLI_CARD_KEYS <= set(card.to_dict())


@pytest.mark.parametrize("name", ["two_inputs.keras", "two_inputs.h5", "two_inputs_savedmodel"])
def test_loaded_two_input_model_reproduces_the_original_outputs(saved, name):
    loaded = load_model(saved["root"] / name)
    outputs = _as_list(loaded.model(saved["feed"], training=False))
    assert len(outputs) == 2
    for got, want in zip(outputs, saved["two_inputs_out"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert loaded.kind == loaded.card.kind
    assert loaded.intensity_scale is None


def test_savedmodel_wrapper_also_takes_a_list_in_card_order(saved):
    loaded = load_model(saved["root"] / "two_inputs_savedmodel")
    ordered = [saved["feed"][spec["name"]] for spec in loaded.card.inputs]
    outputs = _as_list(loaded.model(ordered))
    np.testing.assert_allclose(outputs[0], saved["two_inputs_out"][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_sequential_card_and_load(saved, suffix):
    path = saved["root"] / f"sequential{suffix}"
    card = read_card(path)
    assert card.inputs[0]["shape"] == [None, 8, 8, 1]
    assert card.outputs[0]["shape"] == [None, 4]
    assert card.layers == {"InputLayer": 1, "Conv2D": 1, "Flatten": 1, "Dense": 1}
    assert card.takes_positions is False
    assert card.parameters == saved["sequential"].count_params()
    got = np.asarray(load_model(path).model(saved["feed"]["diffraction"]))
    np.testing.assert_allclose(got, saved["sequential_out"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_nested_models_are_recursed_into(saved, suffix):
    path = saved["root"] / f"nested{suffix}"
    card = read_card(path)
    assert card.layers["Sequential"] == 1 and card.layers["Functional"] == 1
    assert card.layers["Conv2D"] == 2 and card.layers["ReLU"] == 1
    assert card.outputs == [{"name": "decoder", "shape": [None, 8, 8, 1], "dtype": "float32"}]
    assert card.parameters == saved["nested"].count_params()
    got = np.asarray(load_model(path).model(saved["feed"]["diffraction"]))
    np.testing.assert_allclose(got, saved["nested_out"], rtol=1e-5, atol=1e-6)


def test_reassembly_layers_from_config_and_inferred_from_neighbours(saved):
    card = read_card(saved["root"] / "pinn_like.keras")
    by_type = {r.type: r for r in card.reassembly}
    assert set(by_type) == {"ReassemblePatches", "TranslationLayer"}
    from_config = by_type["ReassemblePatches"]
    assert (from_config.path, from_config.canvas, from_config.patch, from_config.gridsize,
            from_config.inferred) == ("pinn_like/reassemble", 18, 8, 1, False)
    inferred = by_type["TranslationLayer"]
    assert (inferred.canvas, inferred.patch, inferred.inferred) == (12, 8, True)
    assert {c.class_name for c in card.custom_classes} == {"ReassemblePatches", "TranslationLayer"}
    assert card.missing_classes == []  # registered in this process
    assert input_roles(card) == {"diffraction": "input", "positions": "input_positions"}


def test_savedmodel_inputs_keep_the_model_order_not_name_order(keras, tmp_path):
    second = keras.Input((1, 2, 1), name="a_positions")
    first = keras.Input((4, 4, 1), name="z_diffraction")
    model = keras.Model([first, second], keras.layers.Flatten()(first)[:, :2] + keras.layers.Flatten()(second))
    model.export(str(tmp_path / "exported"), verbose=False)
    card = read_card(tmp_path / "exported")
    assert [s["name"] for s in card.inputs] == ["z_diffraction", "a_positions"]
    feed = [np.ones((2, 4, 4, 1), "float32"), np.full((2, 1, 2, 1), 3.0, "float32")]
    np.testing.assert_allclose(np.asarray(load_model(tmp_path / "exported").model(feed)), np.asarray(model(feed)))


def test_model_of_ptytui_layers_card_and_load(keras, tmp_path):
    layers = pytest.importorskip("ptytui.networks.layers")
    diffraction = keras.Input((8, 8, 1), name="input")
    offsets = keras.Input((1, 2, 1), name="input_positions")
    unscaled = layers.IntensityScale(scale=4.0, invert=True)(diffraction)
    amplitude = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(unscaled)
    phase = layers.ScaledTanh()(keras.layers.Conv2D(1, 3, padding="same")(unscaled))
    obj = layers.CombineComplex()(amplitude, phase)
    placed = layers.ReassemblePatches(patch_size=8, canvas_size=18, gridsize=1, name="reassemble")(obj, offsets)
    model = keras.Model([diffraction, offsets], placed, name="ptytui_pinn")
    model.save(tmp_path / "ours.keras")

    card = read_card(tmp_path / "ours.keras")
    assert card.missing_classes == []
    assert {c.module for c in card.custom_classes} == {"ptytui.networks.layers"}
    assert [(r.path, r.canvas, r.patch, r.inferred) for r in card.reassembly] == [
        ("ptytui_pinn/reassemble", 18, 8, False)]
    assert card.outputs == [{"name": "reassemble", "shape": [None, 8, 8, 1], "dtype": "complex64"}]
    assert card.intensity_scale == pytest.approx(4.0)
    feed = {"input": np.ones((2, 8, 8, 1), "float32"), "input_positions": np.zeros((2, 1, 2, 1), "float32")}
    loaded = load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(np.asarray(loaded.model(feed)), np.asarray(model(feed)), rtol=1e-5, atol=1e-6)
    assert loaded.intensity_scale == pytest.approx(4.0)


def test_lambda_layers_need_trust(saved):
    path = saved["root"] / "with_lambda.keras"
    card = read_card(path)
    assert card.unsafe_layers == ["with_lambda/double"]
    with pytest.raises(InputError) as refused:
        load_model(path)
    assert "--trust" in refused.value.one_line() and str(path) in refused.value.one_line()
    trusted = load_model(path, trust=True)
    np.testing.assert_allclose(np.asarray(trusted.model(saved["feed"]["diffraction"])),
                               saved["with_lambda_out"])


def test_legacy_keras2_h5_config_is_read_without_keras_deserializing_it(tmp_path):
    """A Keras 2 style model_config (list inbound nodes, batch_input_shape, Custom>Class)."""
    config = {"class_name": "Functional", "config": {
        "name": "model", "layers": [
            {"class_name": "InputLayer", "name": "input_1",
             "config": {"batch_input_shape": [None, 16, 16, 1], "dtype": "float32", "name": "input_1"},
             "inbound_nodes": []},
            {"class_name": "Conv2D", "name": "conv2d",
             "config": {"name": "conv2d", "filters": 4, "kernel_size": [3, 3], "padding": "same",
                        "activation": "relu"},
             "inbound_nodes": [[["input_1", 0, 0, {}]]]},
            {"class_name": "Custom>SquashLayer", "name": "squash", "config": {"name": "squash"},
             "inbound_nodes": [[["conv2d", 0, 0, {}]]]},
        ],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["squash", 0, 0]]}}
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = "2.11.0"
        handle.create_dataset("model_weights/conv2d/conv2d/kernel:0", data=np.zeros((3, 3, 1, 4), "float32"))
        handle.create_dataset("model_weights/conv2d/conv2d/bias:0", data=np.zeros(4, "float32"))
    card = read_card(path)
    assert card.inputs == [{"name": "input_1", "shape": [None, 16, 16, 1], "dtype": "float32"}]
    assert card.layers == {"Conv2D": 1, "InputLayer": 1, "SquashLayer": 1}
    assert card.missing_classes == ["Custom>SquashLayer"]
    assert card.parameters == 3 * 3 * 4 + 4
    assert any("Keras 2.11.0" in w for w in card.warnings)
    with pytest.raises(MissingCustomClasses) as missing:
        load_model(path)
    assert "SquashLayer" in missing.value.one_line()


def test_input_roles_by_name_then_by_shape(saved):
    assert input_roles(load_model(saved["root"] / "two_inputs.keras").model) == {
        "diffraction": "diffraction", "positions": "positions"}
    by_shape = {"inputs": [{"name": "a", "shape": [None, 1, 2, 4], "dtype": "float32"},
                           {"name": "b", "shape": [None, 64, 64, 4], "dtype": "float32"}]}
    assert input_roles(by_shape) == {"diffraction": "b", "positions": "a"}
    single = {"inputs": [{"name": "img", "shape": [None, 64, 64, 1], "dtype": "float32"}]}
    assert input_roles(single) == {"diffraction": "img", "positions": None}


# ---------------------------------------------------------------------------------------------
# Bundles, trust, fallbacks
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def trapped_bundle(saved, tmp_path):
    folder = tmp_path / "pinn_bundle"
    folder.mkdir()
    marker = tmp_path / "pickle_ran.marker"
    _write_bundle(folder / "wts.h5.zip", saved["root"] / "two_inputs.keras", intensity_scale=123.5, marker=marker)
    return folder, marker


def test_bundle_card_and_load_never_unpickle_without_trust(saved, trapped_bundle):
    folder, marker = trapped_bundle
    card = read_card(folder)
    loaded = load_model(folder)
    assert not marker.exists(), "a pickle in the bundle was executed without --trust"
    assert card.kind == KIND_BUNDLE
    assert card.loaded_from == f"{folder / 'wts.h5.zip'}!/diffraction_to_obj/model.keras"
    assert card.intensity_scale == pytest.approx(123.5)
    assert loaded.intensity_scale == pytest.approx(123.5)
    assert any("--trust" in w for w in card.warnings)
    for got, want in zip(_as_list(loaded.model(saved["feed"])), saved["two_inputs_out"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bundle_zip_path_is_accepted_and_extraction_stays_private(trapped_bundle):
    folder, marker = trapped_bundle
    before = sorted(p.name for p in folder.iterdir())
    loaded = load_model(folder / "wts.h5.zip")
    assert loaded.kind == KIND_BUNDLE
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing unpacked next to the user's files
    assert not marker.exists()


def test_unpacked_bundle_folder_is_a_bundle(trapped_bundle, tmp_path):
    folder, marker = trapped_bundle
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(folder / "wts.h5.zip") as archive:
        archive.extractall(unpacked)
    card = read_card(unpacked)
    assert (card.kind, card.fallback) == (KIND_BUNDLE, None)
    assert card.loaded_from == str(unpacked / "diffraction_to_obj" / "model.keras")
    assert card.intensity_scale == pytest.approx(123.5)
    assert load_model(unpacked).kind == KIND_BUNDLE
    assert not marker.exists()


def test_trust_without_dill_says_so(trapped_bundle):
    try:
        import dill  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("dill is installed: the missing-dependency path cannot be shown here")
    folder, marker = trapped_bundle
    with pytest.raises(MissingDependency) as missing:
        load_model(folder, trust=True)
    assert "dill" in missing.value.one_line()
    assert not marker.exists()


def test_bundle_without_inference_member_reports_the_member_fallback(saved, tmp_path):
    _write_bundle(tmp_path / "wts.h5.zip", saved["root"] / "two_inputs.keras", intensity_scale=2.0,
                  marker=None, member_dir="autoencoder")
    card = read_card(tmp_path / "wts.h5.zip")
    assert card.loaded_from.endswith("!/autoencoder/model.keras")
    assert card.fallback and "diffraction_to_obj/model.keras" in card.fallback


def test_expected_file_absent_gives_a_loud_fallback(saved, tmp_path):
    """The incident: baseline_model.h5 was absent and a PINN bundle was loaded in its place."""
    _write_bundle(tmp_path / "wts.h5.zip", saved["root"] / "two_inputs.keras", intensity_scale=5.0, marker=None)
    card = read_card(tmp_path, expected=["baseline_model.h5"])
    assert card.kind == KIND_BUNDLE
    assert card.fallback and "baseline_model.h5" in card.fallback and "wts.h5.zip" in card.fallback
    loaded = load_model(tmp_path, expected=["baseline_model.h5"])
    assert loaded.fallback == card.fallback

    shutil.copy(saved["root"] / "sequential.h5", tmp_path / "baseline_model.h5")
    chosen = read_card(tmp_path, expected=["baseline_model.h5"])
    assert (chosen.kind, chosen.fallback) == (KIND_H5, None)
    assert chosen.loaded_from == str(tmp_path / "baseline_model.h5")


def test_folder_with_several_models_says_which_was_chosen(saved, tmp_path):
    shutil.copy(saved["root"] / "sequential.h5", tmp_path / "b.h5")
    one = read_card(tmp_path)
    assert one.fallback is None and one.loaded_from == str(tmp_path / "b.h5")
    shutil.copy(saved["root"] / "nested.keras", tmp_path / "a.keras")
    several = read_card(tmp_path)
    assert several.loaded_from == str(tmp_path / "a.keras")
    assert several.fallback and "2 models" in several.fallback and "chose a.keras" in several.fallback


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file, exit code 2
# ---------------------------------------------------------------------------------------------


def _malformed(kind: str, root: Path, saved_root: Path) -> Path:
    if kind == "not a zip":
        path = root / "notes.keras"
        path.write_text("this is not a model\n")
    elif kind == "truncated .keras":
        path = root / "truncated.keras"
        data = (saved_root / "two_inputs.keras").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == ".h5 without model_config":
        path = root / "weights_only.h5"
        with h5py.File(path, "w") as handle:
            handle.create_dataset("dense/kernel", data=np.zeros((2, 2)))
    elif kind == "empty folder":
        path = root / "empty"
        path.mkdir()
    elif kind == "nonexistent":
        path = root / "missing_model.keras"
    elif kind == "invalid config.json":
        path = root / "badjson.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{not json")
            archive.writestr("metadata.json", "{}")
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


MALFORMED = ["not a zip", "truncated .keras", ".h5 without model_config", "empty folder", "nonexistent",
             "invalid config.json"]


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_model_files_raise_one_line_naming_the_file(saved, tmp_path, kind):
    path = _malformed(kind, tmp_path, saved["root"])
    for action in (read_card, load_model):
        with pytest.raises(InputError) as bad:
            action(path)
        line = bad.value.one_line()
        assert str(path) in line, line
        assert "\n" not in str(bad.value)
        assert bad.value.exit_code == 2


# ---------------------------------------------------------------------------------------------
# PtychoPINN's own bundle (real files)
# ---------------------------------------------------------------------------------------------

PTYCHO_CLASSES = {"IntensityScaler", "ActivationLayer", "CombineComplexLayer", "ReassemblePatchesLayer",
                  "TrimReconstructionLayer", "CenterMaskLayer"}


@pytest.fixture(scope="module")
def real_bundle() -> Path:
    fixtures = ptychopinn_fixtures()
    if fixtures is None:
        pytest.skip("PtychoPINN fixtures not found")
    return fixtures / "bundle_gs1"


def test_real_ptychopinn_bundle_card_without_ptycho(real_bundle):
    card = read_card(real_bundle)
    assert card.kind == KIND_BUNDLE and card.fallback is None
    assert card.loaded_from.endswith("wts.h5.zip!/diffraction_to_obj/model.keras")
    assert [(s["name"], s["shape"]) for s in card.inputs] == [
        ("input", [None, 64, 64, 1]), ("input_positions", [None, 1, 2, 1])]
    assert card.outputs == [{"name": "trimmed_obj", "shape": [None, 64, 64, 1], "dtype": "complex64"}]
    assert card.takes_positions and card.gridsize == 1
    assert [(r.type, r.canvas, r.patch, r.inferred) for r in card.reassembly] == [
        ("ReassemblePatchesLayer", 74, 64, False)]
    assert card.intensity_scale == pytest.approx(988.2, rel=1e-3)
    assert {c.class_name for c in card.custom_classes} == PTYCHO_CLASSES
    assert card.parameters and card.parameters > 1_000_000
    assert card.layers["Conv2D"] > 10
    if not ptycho_importable():
        assert {m.rsplit(".", 1)[-1] for m in card.missing_classes} == PTYCHO_CLASSES


def test_real_ptychopinn_bundle_load_names_the_missing_classes(real_bundle):
    if ptycho_importable():
        pytest.skip("PtychoPINN is installed: its classes resolve")
    with pytest.raises(MissingCustomClasses) as missing:
        load_model(real_bundle)
    line = missing.value.one_line()
    assert missing.value.exit_code == 2
    assert "IntensityScaler (ptycho.model)" in line and "ptycho" in line
    for name in PTYCHO_CLASSES:
        assert name in line
