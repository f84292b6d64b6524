"""`ptytui card` reads files only: no TensorFlow, Keras or ``ptycho`` import for a .keras archive,
an .h5 file, a ptytui bundle or PtychoPINN's bundle, and the static class lists and shape rules
it uses instead agree with the installed Keras and with ptytui's layers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptytui.inputs.models.known_classes import KERAS_LAYER_NAMES, PTYTUI_PACKAGE, PTYTUI_REGISTERED_CLASSES
from ptytui.inputs.models.shape_rules import builtin_output_shape
from tests.cli.test_card import real_bundle

REPO = Path(__file__).resolve().parents[2]
CLIENT = Path(os.environ.get("PTYTUI_SHARED", REPO.parent / "shared")) / "clients" / "ptychopinn"
PROBE = ("import json, sys\nfrom ptytui.cli import main\ncode = main(['card', sys.argv[1], '--json'])\n"
         "heavy = [m for m in ('tensorflow', 'keras', 'ptycho') if m in sys.modules]\n"
         "print(json.dumps({'exit': code, 'imported': heavy}), file=sys.stderr)\n")


def card_in_subprocess(model: Path, extra_path: Path | None = None) -> tuple[dict, dict]:
    """The card's JSON and {exit, imported} from a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (REPO, extra_path) if p)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(model)], capture_output=True, text=True,
                          timeout=120, env=env)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout), report


@pytest.fixture(scope="module")
def h5_and_keras(tmp_path_factory):
    """One model with the common built-in layers, saved as .keras and as legacy .h5."""
    from ptytui.core.tfload import keras as load_keras

    keras = load_keras()
    folder = tmp_path_factory.mktemp("card_light")
    image = keras.Input((16, 16, 1), name="diffraction")
    side = keras.Input((3,), name="extra")
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(image)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2DTranspose(2, 3, strides=2, name="up")(x)
    x = keras.layers.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Concatenate(name="join")([x, side])
    out = keras.layers.Reshape((-1, 2), name="pairs")(keras.layers.Dense(8, name="head")(x))
    model = keras.Model([image, side], out)
    model.save(folder / "m.keras")
    model.save(folder / "m.h5")
    return folder


def test_card_of_keras_h5_and_bundles_imports_no_tensorflow(tiny_workspace, h5_and_keras):
    models = [tiny_workspace / "models" / "pinn_gs2.keras", tiny_workspace / "models" / "baseline_gs1",
              h5_and_keras / "m.keras", h5_and_keras / "m.h5"]
    for model in models:
        document, report = card_in_subprocess(model)
        assert report == {"exit": 0, "imported": []}, model
        assert all(spec["shape"] is not None for spec in document["outputs"]), model
    for suffix in ("keras", "h5"):  # the rules give the shape Keras gives
        document, _ = card_in_subprocess(h5_and_keras / f"m.{suffix}")
        assert document["outputs"] == [{"name": "pairs", "shape": [None, 4, 2], "dtype": "float32"}]
    baseline, _ = card_in_subprocess(tiny_workspace / "models" / "baseline_gs1")
    assert baseline["missing_classes"] == [] and len(baseline["custom_classes"]) == 4


def test_card_of_ptychopinns_bundle_imports_neither_tensorflow_nor_ptycho():
    bundle = real_bundle()
    if bundle is None:
        pytest.skip("PtychoPINN fixtures not found")
    document, report = card_in_subprocess(bundle)
    assert report == {"exit": 0, "imported": []}
    if (CLIENT / "ptycho" / "__init__.py").is_file():  # installed: its classes are found by reading
        document, report = card_in_subprocess(bundle, CLIENT)
        assert report == {"exit": 0, "imported": []}
        assert document["missing_classes"] == [] and len(document["custom_classes"]) == 6


def test_keras_layer_names_cover_the_installed_keras():
    from ptytui.core.tfload import keras as load_keras

    live = {name for name in dir(load_keras().layers) if not name.startswith("_")}
    assert live - KERAS_LAYER_NAMES == set(), "add these to known_classes.KERAS_LAYER_NAMES"


def test_ptytui_registered_classes_are_those_of_networks_layers():
    import ptytui.networks.layers as layers
    from ptytui.core.tfload import keras as load_keras

    keras = load_keras()
    registered = {name.split(">", 1)[1] for name in keras.saving.get_custom_objects()
                  if name.startswith(f"{PTYTUI_PACKAGE}>")}
    assert layers.PACKAGE == PTYTUI_PACKAGE
    assert registered == set(PTYTUI_REGISTERED_CLASSES)


@pytest.mark.parametrize(("class_name", "config", "shape"), [
    ("Conv2D", {"filters": 5, "kernel_size": 3}, [None, 17, 13, 2]),
    ("Conv2D", {"filters": 5, "kernel_size": [3, 2], "strides": 2, "padding": "same"}, [None, 17, 13, 2]),
    ("Conv2D", {"filters": 3, "kernel_size": 3, "dilation_rate": 2}, [None, 17, 13, 2]),
    ("Conv1D", {"filters": 4, "kernel_size": 5, "strides": 2}, [None, 30, 3]),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2}, [None, 9, 7, 2]),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, [None, 9, 7, 2]),
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2}, [None, 9, 7, 2]),
    ("MaxPooling2D", {"pool_size": 2}, [None, 9, 7, 2]),
    ("AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}, [None, 9, 7, 2]),
    ("UpSampling2D", {"size": [2, 3]}, [None, 9, 7, 2]),
    ("GlobalAveragePooling2D", {}, [None, 9, 7, 2]),
    ("GlobalMaxPooling2D", {"keepdims": True}, [None, 9, 7, 2]),
    ("Dense", {"units": 6}, [None, 5, 3]),
    ("Flatten", {}, [None, 9, 7, 2]),
    ("Reshape", {"target_shape": [-1, 3]}, [None, 4, 6]),
    ("ZeroPadding2D", {"padding": [[1, 2], [0, 3]]}, [None, 9, 7, 2]),
    ("Cropping2D", {"cropping": 2}, [None, 9, 7, 2]),
    ("Permute", {"dims": [2, 1]}, [None, 4, 6]),
    ("RepeatVector", {"n": 3}, [None, 4]),
])
def test_shape_rules_agree_with_keras(class_name, config, shape):
    from ptytui.core.tfload import keras as load_keras

    keras = load_keras()
    layer = getattr(keras.layers, class_name).from_config(config)
    expected = list(layer.compute_output_spec(keras.KerasTensor(tuple(shape))).shape)
    assert builtin_output_shape(class_name, config, [shape]) == expected


def test_concatenate_rule_agrees_with_keras():
    from ptytui.core.tfload import keras as load_keras

    keras = load_keras()
    shapes = [[None, 4, 3], [None, 4, 5]]
    layer = keras.layers.Concatenate(axis=-1)
    expected = list(layer.compute_output_spec([keras.KerasTensor(tuple(s)) for s in shapes]).shape)
    assert builtin_output_shape("Concatenate", {"axis": -1}, shapes) == expected
