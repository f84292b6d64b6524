"""Bad-input campaign: malformed NPZ files, workspace files, model files, stats records and
command-line arguments, each driven through the CLI. Every one must end with exit 2 and exactly
one stderr line that names the file (or flag) and the problem, never a traceback; a few run in a
real `python -m ptytui` subprocess, and hypothesis generates NPZ contents of random keys, shapes,
dtypes and values."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ptytui.cli import main
from tests.helpers_npz import make_arrays, write_npz

N = 8
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Base:
    folder: Path
    arrays: dict
    good: Path
    model: Path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    from ptytui.core.tfload import keras

    folder = tmp_path_factory.mktemp("bad_inputs")
    arrays = make_arrays(N, nx=4, ny=3)  # 12 patterns of 8 x 8
    good = write_npz(folder / "good.npz", arrays)
    k = keras()
    inp = k.Input((N, N, 1), name="input")
    model = folder / "model.keras"
    k.Model(inp, k.layers.ReLU(name="amplitude")(k.layers.Rescaling(-1.0, offset=0.5)(inp))).save(model)
    return Base(folder, arrays, good, model)


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(code, out, err, *needles):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err and out == ""
    assert len(lines) == 1, err
    assert lines[0].startswith("ptytui: ")
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


# ---- NPZ files ----------------------------------------------------------------------------------


def _save(path: Path, arrays: dict, compressed: bool = False) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def _mutated(arrays: dict, **changes) -> dict:
    out = dict(arrays)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _zip_members(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _truncated(base: Base, path: Path) -> Path:
    data = base.good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_compressed(base: Base, path: Path) -> Path:
    _save(path, base.arrays, compressed=True)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("diffraction.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    for i in range(middle, middle + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _hdf5(path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as fh:
        fh["diffraction"] = np.zeros((2, N, N), np.float32)
    return path


def _with_nan_in(arrays, key, value=np.nan, where=(3, 2, 2)):
    array = np.array(arrays[key], copy=True)
    array[where] = value
    return _mutated(arrays, **{key: array})


# name -> (writer(base, path) -> path, words the message must contain besides the file name)
NPZ_CASES = {
    "empty_file": (lambda b, p: (p.write_bytes(b""), p)[1], ["empty"]),
    "text_file": (lambda b, p: (p.write_text("x,y\n1,2\n"), p)[1], ["not a zip"]),
    "truncated": (_truncated, ["truncated"]),
    "single_npy": (lambda b, p: (p.write_bytes(_npy_bytes(b.arrays["diffraction"])), p)[1], [".npy"]),
    "hdf5": (lambda b, p: _hdf5(p), ["HDF5"]),
    "no_diffraction": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=None)), ["diffraction"]),
    "no_probe": (lambda b, p: _save(p, _mutated(b.arrays, probeGuess=None)), ["probeGuess"]),
    "no_xcoords": (lambda b, p: _save(p, _mutated(b.arrays, xcoords=None)), ["xcoords"]),
    "unrelated_keys": (lambda b, p: _save(p, {"foo": np.zeros(3), "bar": np.ones(2)}), ["ptychography"]),
    "no_arrays_at_all": (lambda b, p: _zip_members(p, {"readme.txt": b"hello"}), ["no arrays"]),
    "uint16_counts": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=(b.arrays["diffraction"] * 100).astype(np.uint16))), ["uint16"]),
    "complex_diffraction": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=b.arrays["diffraction"].astype(np.complex64))), ["complex"]),
    "bool_diffraction": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=b.arrays["diffraction"] > 1)), ["bool"]),
    "diffraction_2d": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=b.arrays["diffraction"][0])), ["shape"]),
    "diffraction_grouped_4d": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=np.repeat(b.arrays["diffraction"][..., None], 4, -1))), ["grouped"]),
    "pattern_size_mismatch": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=np.ones((12, 6, 6), np.float32))), ["8 x 8"]),
    "diffraction_nan": (lambda b, p: _save(p, _with_nan_in(b.arrays, "diffraction")), ["NaN", "pattern 3"]),
    "diffraction_inf": (lambda b, p: _save(p, _with_nan_in(b.arrays, "diffraction", np.inf)), ["Inf"]),
    "diffraction_negative": (lambda b, p: _save(p, _with_nan_in(b.arrays, "diffraction", -2.0)), [">= 0"]),
    "zero_patterns": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=np.zeros((0, N, N), np.float32),
                                                     xcoords=np.zeros(0), ycoords=np.zeros(0))), ["empty split"]),
    "probe_not_square": (lambda b, p: _save(p, _mutated(b.arrays, probeGuess=np.ones((N, N + 1), np.complex64))), ["probeGuess", "shape"]),
    "probe_integer": (lambda b, p: _save(p, _mutated(b.arrays, probeGuess=np.ones((N, N), np.int32))), ["probeGuess", "int32"]),
    "probe_nan": (lambda b, p: _save(p, _with_nan_in(b.arrays, "probeGuess", where=(1, 1))), ["probeGuess", "NaN"]),
    "xcoords_short": (lambda b, p: _save(p, _mutated(b.arrays, xcoords=b.arrays["xcoords"][:5])), ["xcoords", "(12,)"]),
    "xcoords_nan": (lambda b, p: _save(p, _with_nan_in(b.arrays, "xcoords", where=(4,))), ["xcoords", "index 4"]),
    "xcoords_strings": (lambda b, p: _save(p, _mutated(b.arrays, xcoords=np.array(["a"] * 12))), ["xcoords", "dtype"]),
    "pickled_diffraction": (lambda b, p: _save(p, _mutated(b.arrays, diffraction=np.array(list(b.arrays["diffraction"]) + [None], dtype=object)[:12])), ["pickled", "--trust"]),
    "structured_dtype": (lambda b, p: _save(p, _mutated(b.arrays, xcoords=np.zeros(12, dtype=[("a", "f8"), ("b", "f8")]))), ["xcoords", "structured"]),
    "object_3d": (lambda b, p: _save(p, _mutated(b.arrays, objectGuess=np.ones((2, 30, 30), np.complex64))), ["objectGuess"]),
    "object_integer": (lambda b, p: _save(p, _mutated(b.arrays, objectGuess=np.ones((30, 30), np.uint8))), ["objectGuess", "uint8"]),
    "garbage_npy_header": (lambda b, p: _zip_members(p, {"diffraction.npy": b"not an array at all", "probeGuess.npy": b"junk",
                                                         "xcoords.npy": b"", "ycoords.npy": b""}), ["header"]),
    "corrupt_compressed_member": (_corrupt_compressed, ["corrupt"]),
    "directory": (lambda b, p: (p.mkdir(), p)[1], ["directory"]),
    "gs2_with_three_patterns": (None, ["at least 4 patterns"]),  # built in its own test below
}


@pytest.mark.parametrize("case", [c for c in NPZ_CASES if NPZ_CASES[c][0] is not None])
def test_malformed_npz_is_one_line_exit_2(base, capsys, case):
    writer, needles = NPZ_CASES[case]
    path = writer(base, base.folder / f"{case}.npz")
    code, out, err = run_cli(["stats", "--model", base.model, "--data", path], capsys)
    assert_one_line(code, out, err, f"{case}.npz", *needles)


def test_missing_npz_is_one_line_exit_2(base, capsys):
    code, out, err = run_cli(["stats", "--model", base.model, "--data", base.folder / "nowhere.npz"], capsys)
    assert_one_line(code, out, err, "nowhere.npz", "no such file")


def test_gridsize_2_with_fewer_patterns_than_a_group(base, capsys):
    from ptytui.core.tfload import keras

    arrays = make_arrays(N, nx=3, ny=1)
    path = write_npz(base.folder / "three.npz", arrays)
    k = keras()
    inp, pos = k.Input((N, N, 4), name="input"), k.Input((1, 2, 4), name="input_positions")
    gs2 = base.folder / "gs2.keras"
    shift = k.layers.Cropping2D(((0, 0), (0, 1)))(pos)
    k.Model([inp, pos], k.layers.Add()([k.layers.ReLU()(inp), shift])).save(gs2)
    code, out, err = run_cli(["stats", "--model", gs2, "--data", path], capsys)
    assert_one_line(code, out, err, "three.npz", *NPZ_CASES["gs2_with_three_patterns"][1])


# ---- workspace files (ptytui.toml) --------------------------------------------------------------

GOOD_MODEL_TABLE = '[models.m]\npath = "model.keras"\n'

TOML_CASES = {
    "syntax_error": ('[splits\ntest = "good.npz"\n', ["valid TOML"]),
    "unknown_top_table": ('[splits]\ntest = "good.npz"\n[modles.m]\npath = "model.keras"\n', ["modles"]),
    "unknown_model_key": ('[splits]\ntest = "good.npz"\n[models.m]\npath = "model.keras"\ngrid_size = 2\n', ["grid_size"]),
    "no_splits": (GOOD_MODEL_TABLE, ["[splits]"]),
    "empty_splits": ("[splits]\n" + GOOD_MODEL_TABLE, ["empty"]),
    "split_missing_file": ('[splits]\ntest = "missing.npz"\n' + GOOD_MODEL_TABLE, ["splits.test", "missing.npz"]),
    "split_is_directory": ('[splits]\ntest = "."\n' + GOOD_MODEL_TABLE, ["splits.test", "directory"]),
    "split_not_a_string": ('[splits]\ntest = 42\n' + GOOD_MODEL_TABLE, ["splits.test", "42"]),
    "model_without_path": ('[splits]\ntest = "good.npz"\n[models.m]\nlabel = "PtychoPINN"\n', ["models.m.path"]),
    "model_path_missing": ('[splits]\ntest = "good.npz"\n[models.m]\npath = "gone.keras"\n', ["models.m.path", "gone.keras"]),
    "bad_positions": ('[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE + 'positions = "sideways"\n', ["positions", "sideways"]),
    "gridsize_zero": ('[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE + "gridsize = 0\n", ["gridsize"]),
    "gridsize_string": ('[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE + 'gridsize = "two"\n', ["gridsize", "two"]),
    "negative_scale": ('[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE + "intensity_scale = -3.0\n", ["intensity_scale"]),
    "bad_expected_kind": ('[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE + 'expected_kind = "oracle"\n', ["expected_kind"]),
    "trust_not_boolean": ('[workspace]\ntrust = "yes"\n[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE, ["trust"]),
    "model_not_a_table": ('[splits]\ntest = "good.npz"\n[models]\nm = "model.keras"\n', ["models.m", "table"]),
    "reference_unknown_split": ('[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE
                                + '[reference]\npath = "good.npz"\nsplit = "validation"\n', ["reference.split", "validation"]),
    "reference_without_path": ('[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE + '[reference]\nlabel = "PtyChi"\n', ["reference.path"]),
}


def _workspace(base: Base, name: str, text: str | bytes) -> Path:
    folder = base.folder / f"ws_{name}"
    folder.mkdir(exist_ok=True)
    for src in (base.good, base.model):
        target = folder / src.name
        if not target.exists():
            os.symlink(src, target)
    toml = folder / "ptytui.toml"
    (toml.write_bytes if isinstance(text, bytes) else toml.write_text)(text)
    return folder


@pytest.mark.parametrize("case", list(TOML_CASES))
def test_malformed_workspace_is_one_line_exit_2(base, capsys, case):
    text, needles = TOML_CASES[case]
    folder = _workspace(base, case, text)
    code, out, err = run_cli(["stats", folder], capsys)
    assert_one_line(code, out, err, "ptytui.toml", *needles)


def test_workspace_toml_that_is_not_utf8(base, capsys):
    folder = _workspace(base, "binary", b"\xff\xfe[splits]\x00\x81")
    code, out, err = run_cli(["stats", folder], capsys)
    assert_one_line(code, out, err, "ptytui.toml", "UTF-8")


def test_folder_without_workspace(base, capsys):
    empty = base.folder / "no_workspace_here"
    empty.mkdir(exist_ok=True)
    code, out, err = run_cli(["stats", empty], capsys)
    assert_one_line(code, out, err, "no_workspace_here", "ptytui.toml")


def test_unknown_model_name_in_workspace(base, capsys):
    folder = _workspace(base, "good", '[splits]\ntest = "good.npz"\n' + GOOD_MODEL_TABLE)
    code, out, err = run_cli(["stats", folder, "--model-name", "nosuch"], capsys)
    assert_one_line(code, out, err, "ptytui.toml", "nosuch")


# ---- model files ------------------------------------------------------------------------------------


def _keras_with_config(base: Base, path: Path, edit) -> Path:
    with zipfile.ZipFile(base.model) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            payload = src.read(item.filename)
            if item.filename == "config.json":
                payload = edit(payload)
            dst.writestr(item, payload)
    return path


def _unknown_class(payload: bytes) -> bytes:
    config = json.loads(payload)
    layer = config["config"]["layers"][-1]
    layer["class_name"] = "WarpDrive"
    layer["module"] = "starship.engines"
    layer["registered_name"] = "starship>WarpDrive"
    return json.dumps(config).encode()


def _weights_only_h5(base: Base, path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as fh:
        fh.create_group("model_weights")["dense"] = np.zeros((2, 2), np.float32)
    return path


MODEL_CASES = {
    "empty.keras": (lambda b, p: (p.write_bytes(b""), p)[1], []),
    "text.keras": (lambda b, p: (p.write_text("not a model\n"), p)[1], []),
    "no_config.keras": (lambda b, p: _zip_members(p, {"metadata.json": b"{}"}), ["config.json"]),
    "bad_json.keras": (lambda b, p: _keras_with_config(b, p, lambda raw: raw[: len(raw) // 2]), ["JSON"]),
    "list_config.keras": (lambda b, p: _keras_with_config(b, p, lambda raw: b"[1, 2, 3]"), []),
    "truncated.keras": (lambda b, p: (p.write_bytes(b.model.read_bytes()[:200]), p)[1], []),
    "unknown_class.keras": (lambda b, p: _keras_with_config(b, p, _unknown_class), ["WarpDrive"]),
    "weights_only.h5": (_weights_only_h5, []),
    "empty_folder": (lambda b, p: (p.mkdir(), p)[1], []),
    "model.pkl": (lambda b, p: (p.write_bytes(b"\x80\x04K\x01."), p)[1], []),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_malformed_model_is_one_line_exit_2(base, capsys, case):
    writer, needles = MODEL_CASES[case]
    path = writer(base, base.folder / case)
    code, out, err = run_cli(["stats", "--model", path, "--data", base.good], capsys)
    assert_one_line(code, out, err, case, *needles)


@pytest.mark.parametrize("case", ["empty.keras", "no_config.keras", "unknown_class.keras", "weights_only.h5"])
def test_malformed_model_card_is_one_line_exit_2(base, capsys, case):
    path = base.folder / f"card_{case}"
    MODEL_CASES[case][0](base, path)
    code, out, err = run_cli(["card", path], capsys)
    if case == "unknown_class.keras":  # the card reads it fine and names the missing class
        assert code == 0 and "WarpDrive" in out
        return
    assert_one_line(code, out, err, f"card_{case}")


def test_model_that_does_not_fit_the_data(base, capsys):
    from ptytui.core.tfload import keras

    k = keras()
    inp = k.Input((N + 2, N + 2, 1), name="input")
    path = base.folder / "ten_by_ten.keras"
    k.Model(inp, k.layers.ReLU()(inp)).save(path)
    code, out, err = run_cli(["stats", "--model", path, "--data", base.good], capsys)
    assert_one_line(code, out, err, "ten_by_ten.keras", "10x10")


# ---- stats records for ptytui merge ---------------------------------------------------------


def _stats_document(base: Base) -> dict:
    record = {"count": 4, "finite_count": 4, "mean": 1.0, "std": 0.0, "m2": 0.0, "min": 1.0, "max": 1.0,
              "nonzero_fraction": 1.0, "zero_count": 0, "nan_count": 0, "inf_count": 0}
    from ptytui.core.stats import HIST_EDGES, N_BINS

    counts = [0] * N_BINS
    counts[N_BINS // 2 + 1 + 24] = 4  # the bin of 1.0
    record["histogram"] = {"edges": HIST_EDGES.tolist(), "counts": counts}
    run = {"model": "m", "split": "test", "positions": "relative", "n_samples": 1, "batches": 1,
           "seconds": 0.1, "inputs": {"input": record}, "outputs": {"amplitude": record}}
    return {"runs": [run], "gate": {"zero_fraction_max": None, "tripped": False}}


def _edit(edit):
    def write(base: Base, path: Path) -> Path:
        document = _stats_document(base)
        result = edit(document)
        path.write_text(result if isinstance(result, str) else json.dumps(document))
        return path
    return write


RECORD_CASES = {
    "not_json": (lambda b, p: (p.write_text("{runs: oops"), p)[1], ["invalid JSON"]),
    "empty": (lambda b, p: (p.write_text(""), p)[1], ["empty"]),
    "a_list": (lambda b, p: (p.write_text("[1, 2]"), p)[1], ["list"]),
    "no_runs": (lambda b, p: (p.write_text('{"findings": []}'), p)[1], ["findings"]),
    "nan_literal": (_edit(lambda d: json.dumps(d).replace('"mean": 1.0', '"mean": NaN', 1)), ["NaN"]),
    "run_without_outputs": (_edit(lambda d: d["runs"][0].pop("outputs")), ["outputs"]),
    "negative_count": (_edit(lambda d: d["runs"][0]["inputs"]["input"].update(count=-4)), ["count"]),
    "inconsistent_counts": (_edit(lambda d: d["runs"][0]["inputs"]["input"].update(nan_count=2)), ["consistent"]),
    "other_bins": (_edit(lambda d: d["runs"][0]["outputs"]["amplitude"]["histogram"].update(edges=[0.0, 1.0])), ["bins"]),
    "binary": (lambda b, p: (p.write_bytes(b"\xff\xfe\x00\x81"), p)[1], ["binary"]),
}


@pytest.mark.parametrize("case", list(RECORD_CASES))
def test_malformed_stats_record_is_one_line_exit_2(base, capsys, case):
    writer, needles = RECORD_CASES[case]
    path = writer(base, base.folder / f"record_{case}.json")
    code, out, err = run_cli(["merge", path], capsys)
    assert_one_line(code, out, err, f"record_{case}.json", *needles)


# ---- command-line arguments ---------------------------------------------------------------------

FLAG_CASES = {
    "batch_size_zero": (["--batch-size", "0"], ["--batch-size"]),
    "batch_size_text": (["--batch-size", "many"], ["--batch-size"]),
    "n_groups_zero": (["--n-groups", "0"], ["--n-groups"]),
    "shard_reversed": (["--shard", "3/2"], ["--shard"]),
    "shard_text": (["--shard", "half"], ["--shard"]),
    "positions_unknown": (["--positions", "sideways"], ["--positions"]),
    "zero_gate_above_one": (["--zero-gate", "1.5"], ["--zero-gate"]),
    "devices_unknown": (["--devices", "tpu"], ["--devices"]),
    "unknown_option": (["--frobnicate"], ["--frobnicate"]),
    "split_unknown": (["--split", "validation"], ["validation"]),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_bad_flags_are_one_line_exit_2(base, capsys, case):
    tail, needles = FLAG_CASES[case]
    code, out, err = run_cli(["stats", "--model", base.model, "--data", base.good, *tail], capsys)
    assert_one_line(code, out, err, *needles)


@pytest.mark.parametrize("argv, needles", [
    (["stats", "--model", "MODEL"], ["--data"]),
    (["stats", "WORKSPACE", "--model", "MODEL", "--data", "DATA"], ["not both"]),
    (["stats", "--model", "MODEL", "--data", "a=DATA", "--data", "a=DATA"], ["twice"]),
    (["merge"], ["RECORD.json"]),
])
def test_conflicting_or_missing_arguments(base, capsys, argv, needles):
    swap = {"MODEL": str(base.model), "DATA": str(base.good), "a=DATA": f"a={base.good}",
            "WORKSPACE": str(base.folder)}
    code, out, err = run_cli([swap.get(a, a) for a in argv], capsys)
    assert_one_line(code, out, err, *needles)


# ---- a real terminal: no traceback reaches it -------------------------------------------------


@pytest.mark.parametrize("kind", ["npz", "toml", "record"])
def test_python_dash_m_prints_one_line_and_no_traceback(base, kind):
    if kind == "npz":
        path = NPZ_CASES["diffraction_nan"][0](base, base.folder / "sub_nan.npz")
        argv, needle = ["stats", "--model", str(base.model), "--data", str(path)], "sub_nan.npz"
    elif kind == "toml":
        folder = _workspace(base, "sub_syntax", TOML_CASES["syntax_error"][0])
        argv, needle = ["stats", str(folder)], "ptytui.toml"
    else:
        path = RECORD_CASES["not_json"][0](base, base.folder / "sub_record.json")
        argv, needle = ["merge", str(path), "--json"], "sub_record.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "ptytui", *argv], capture_output=True, text=True,
                         env=env, cwd=base.folder, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and out.stdout == ""
    assert "Traceback" not in out.stderr and len(lines) == 1 and needle in lines[0], out.stderr


# ---- hypothesis: random NPZ contents ----------------------------------------------------------

CONTRACT_KEYS = ["diffraction", "diff3d", "probeGuess", "objectGuess", "xcoords", "ycoords",
                 "xcoords_start", "ycoords_start", "scan_index", "Y", "ground_truth_patches", "_metadata"]
DTYPES = [np.float32, np.float64, np.float16, np.int16, np.uint16, np.uint8, np.complex64, np.bool_]


def random_arrays():
    dtype = st.sampled_from(DTYPES)
    shape = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)
    return dtype.flatmap(lambda d: hnp.arrays(d, shape, elements=None if d in (np.bool_,) else
                                              hnp.from_dtype(np.dtype(d), allow_nan=True, allow_infinity=True)
                                              if np.dtype(d).kind in "fc" else None))


@st.composite
def mutated_contract(draw):
    """A valid small split with a few random mutations: a key dropped, replaced by a random array,
    cast to another dtype, reshaped, or poisoned with NaN/Inf/negative values."""
    M = draw(st.integers(1, 5))
    arrays = make_arrays(N, nx=M, ny=1)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(CONTRACT_KEYS + ["junk"]))
        action = draw(st.sampled_from(["drop", "random", "cast", "reshape", "poison", "object"]))
        if action == "drop":
            arrays.pop(key, None)
        elif action == "random" or key not in arrays or np.asarray(arrays[key]).dtype.kind == "O":
            # (an object member, e.g. _metadata holding a dict, cannot be cast or reshaped)
            arrays[key] = draw(random_arrays())
        elif action == "cast":
            arrays[key] = np.asarray(arrays[key]).real.astype(draw(st.sampled_from(DTYPES))) \
                if np.asarray(arrays[key]).dtype.kind == "c" else np.asarray(arrays[key]).astype(draw(st.sampled_from(DTYPES)))
        elif action == "reshape":
            flat = np.asarray(arrays[key]).reshape(-1)
            arrays[key] = flat[: draw(st.integers(0, flat.size))]
        elif action == "poison":
            value = np.array(arrays[key], copy=True)
            if value.size and value.dtype.kind in "fc":
                value.reshape(-1)[draw(st.integers(0, value.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0]))
            arrays[key] = value
        else:
            arrays[key] = np.array([{"payload": 1}, None], dtype=object)
    return arrays


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(arrays=st.one_of(mutated_contract(),
                        st.dictionaries(st.sampled_from(CONTRACT_KEYS + ["x"]), random_arrays(), max_size=6)),
       compressed=st.booleans())
def test_random_npz_contents_never_escape_as_a_traceback(base, capsys, arrays, compressed):
    path = base.folder / "random.npz"
    if path.exists():
        path.unlink()
    _save(path, arrays, compressed)
    code, out, err = run_cli(["stats", "--model", base.model, "--data", path, "--json"], capsys)
    assert "Traceback" not in err
    if code == 0:  # the mutations left a valid split: a normal run
        assert json.loads(out)["runs"]
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == "" and len(lines) == 1, err
    assert "random.npz" in lines[0] or "model.keras" in lines[0], lines[0]
