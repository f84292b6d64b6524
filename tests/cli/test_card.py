"""`ptytui card`: JSON with every CLI.md key, a readable table, a loud fallback line, and exit 2
with one line naming the file for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ptytui.cli import main

REPO = Path(__file__).resolve().parents[2]
CLI_CARD_KEYS = {"path", "kind", "loaded_from", "fallback", "inputs", "outputs", "takes_positions",
                 "layers", "custom_classes", "missing_classes", "reassembly", "intensity_scale",
                 "parameters"}
PTYCHO_CLASSES = {"IntensityScaler", "ActivationLayer", "CombineComplexLayer", "ReassemblePatchesLayer",
                  "TrimReconstructionLayer", "CenterMaskLayer"}


def real_bundle() -> Path | None:
    candidates = [os.environ.get("PTYTUI_PTYCHOPINN_FIXTURES"), REPO / "tests" / "fixtures" / "ptychopinn",
                  REPO / "shared" / "fixtures" / "ptychopinn", REPO.parent / "shared" / "fixtures" / "ptychopinn",
                  Path("/work/shared/fixtures/ptychopinn")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "bundle_gs1" / "wts.h5.zip").is_file():
            return Path(candidate) / "bundle_gs1"
    return None


def ptycho_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("ptycho") is not None


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A two-input .keras model and a folder holding two models."""
    from ptytui.core.tfload import keras as load_keras

    keras = load_keras()
    root = tmp_path_factory.mktemp("card_models")
    diffraction = keras.Input((8, 8, 1), name="diffraction")
    positions = keras.Input((1, 2, 1), name="positions")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(diffraction), keras.layers.Flatten()(positions)])
    model = keras.Model([diffraction, positions], keras.layers.Dense(2, name="head")(joined), name="tiny")
    model.save(root / "tiny.keras")
    several = root / "several"
    several.mkdir()
    shutil.copy(root / "tiny.keras", several / "a.keras")
    model.save(several / "b.h5")
    return {"keras": root / "tiny.keras", "several": several, "parameters": model.count_params()}


@pytest.fixture()
def bundle() -> Path:
    path = real_bundle()
    if path is None:
        pytest.skip("PtychoPINN fixtures not found")
    return path


def test_card_json_of_real_bundle_has_every_cli_key(bundle, capsys):
    assert main(["card", str(bundle), "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert CLI_CARD_KEYS <= set(document)
    assert document["kind"] == "ptychopinn-bundle"
    assert document["fallback"] is None
    assert document["takes_positions"] is True
    assert [i["name"] for i in document["inputs"]] == ["input", "input_positions"]
    assert document["inputs"][1]["shape"] == [None, 1, 2, 1]
    assert document["reassembly"][0]["type"] == "ReassemblePatchesLayer"
    assert document["reassembly"][0]["canvas"] == 74 and document["reassembly"][0]["patch"] == 64
    assert document["intensity_scale"] == pytest.approx(988.2, rel=1e-3)
    assert {c.rsplit(".", 1)[-1] for c in document["custom_classes"]} == PTYCHO_CLASSES
    if not ptycho_importable():
        assert {c.rsplit(".", 1)[-1] for c in document["missing_classes"]} == PTYCHO_CLASSES
    assert isinstance(document["parameters"], int)


def test_card_json_of_the_zip_itself(bundle, capsys):
    assert main(["card", str(bundle / "wts.h5.zip"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["path"] == str(bundle / "wts.h5.zip")
    assert document["loaded_from"].endswith("!/diffraction_to_obj/model.keras")


def test_card_table_of_a_keras_model(tiny_models, capsys):
    assert main(["card", str(tiny_models["keras"])]) == 0
    out = capsys.readouterr().out
    for text in ("kind", "keras", "diffraction", "positions", "(None, 1, 2, 1)", "head",
                 f"{tiny_models['parameters']:,}"):
        assert text in out, text
    assert "FALLBACK" not in out


def test_fallback_is_loud_in_table_stderr_and_json(tiny_models, capsys):
    folder = str(tiny_models["several"])
    assert main(["card", folder]) == 0
    captured = capsys.readouterr()
    assert "WARNING: FALLBACK" in captured.out
    assert "WARNING: FALLBACK" in captured.err and "chose a.keras" in captured.err
    assert main(["card", folder, "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # stdout stays one JSON document
    assert document["fallback"] and "2 models" in document["fallback"]
    assert "WARNING: FALLBACK" in captured.err


def test_bad_model_paths_exit_2_with_one_line_naming_the_file(tmp_path, capsys):
    not_a_zip = tmp_path / "broken.keras"
    not_a_zip.write_text("not a model")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    for path in (not_a_zip, empty, tmp_path / "nowhere.h5"):
        assert main(["card", str(path), "--json"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], captured.err


def test_card_of_a_bundle_imports_no_tensorflow(bundle):
    """Reading a card is file parsing: no TensorFlow import for a .keras-based bundle."""
    code = ("import sys, json\nfrom ptytui.cli import main\n"
            f"code = main(['card', {str(bundle)!r}, '--json'])\n"
            "print('EXIT', code, 'TF', 'tensorflow' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "EXIT 0 TF False" in done.stderr, done.stderr[-1000:]
    json.loads(done.stdout)


def test_loading_the_real_bundle_without_ptycho_exits_2_naming_the_classes(bundle, capsys):
    """A command that loads the model (not only its card) stops with one line naming the classes."""
    if ptycho_importable():
        pytest.skip("PtychoPINN is installed: its classes resolve")
    data = bundle.parent / "lines_N64_test.npz"
    if not data.is_file():
        pytest.skip("PtychoPINN test split not found")
    assert main(["stats", "--model", str(bundle), "--data", str(data), "--json"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "IntensityScaler (ptycho.model)" in lines[0] and "ReassemblePatchesLayer" in lines[0]
    assert captured.out == ""
