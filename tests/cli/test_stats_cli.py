"""`ptytui stats`: JSON keys of CLI.md, numbers equal numpy's, the zero gate, bad input exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptytui.cli import main
from ptytui.core.stats import stats_of_array
from ptytui.core.tfload import keras
from tests.helpers_npz import make_arrays, write_npz

N = 8
STATS_KEYS = {"count", "mean", "std", "min", "max", "nonzero_fraction", "zero_count", "nan_count",
              "inf_count", "histogram"}
RUN_KEYS = {"model", "split", "positions", "n_samples", "batches", "seconds", "inputs", "outputs"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stats_cli")
    train = write_npz(folder / "train.npz", make_arrays(N, nx=4, ny=3, seed=1))
    test = write_npz(folder / "test.npz", make_arrays(N, nx=4, ny=3, seed=2))
    k = keras()
    inp = k.Input((N, N, 1), name="input")
    # ReLU of a negated input: exact zeros wherever the amplitude is positive (most pixels).
    out = k.layers.ReLU(name="amplitude")(k.layers.Rescaling(-1.0, offset=0.05)(inp))
    model_path = folder / "mostly_zero.keras"
    k.Model(inp, out).save(model_path)
    return {"train": train, "test": test, "model": model_path}


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stats_json_has_every_key_and_numpy_numbers(files, capsys):
    code, out, _ = run_cli(["stats", "--model", str(files["model"]), "--data", f"train={files['train']}",
                            "--data", f"test={files['test']}", "--json"], capsys)
    assert code == 0
    document = json.loads(out)
    assert set(document["gate"]) >= {"zero_fraction_max", "tripped"}
    assert len(document["runs"]) == 2
    for run in document["runs"]:
        assert RUN_KEYS <= set(run)
        for record in list(run["inputs"].values()) + list(run["outputs"].values()):
            assert STATS_KEYS <= set(record)
    run = next(r for r in document["runs"] if r["split"] == "test")
    diffraction = np.load(files["test"])["diffraction"].astype(np.float32)
    expected_out = stats_of_array(np.maximum(0.05 - diffraction, 0.0))
    got = run["outputs"]["amplitude"]
    assert got["zero_count"] == expected_out.zero_count
    assert got["nonzero_fraction"] == pytest.approx(expected_out.nonzero_fraction)
    assert got["mean"] == pytest.approx(expected_out.mean, rel=1e-5, abs=1e-9)
    assert got["max"] == pytest.approx(expected_out.max, rel=1e-6)
    expected_in = stats_of_array(diffraction)  # intensity scale: none carried by this model
    assert run["inputs"]["input"]["mean"] == pytest.approx(expected_in.mean, rel=1e-9)
    assert run["inputs"]["input"]["histogram"]["counts"] == expected_in.hist_counts.tolist()


def test_zero_gate_trips_with_exit_1(files, capsys):
    code, out, _ = run_cli(["stats", "--model", str(files["model"]), "--data", str(files["test"]),
                            "--zero-gate", "0.0", "--json"], capsys)
    document = json.loads(out)
    zero_fraction = 1 - document["runs"][0]["outputs"]["amplitude"]["nonzero_fraction"]
    assert 0 < zero_fraction < 1
    assert code == 1 and document["gate"]["tripped"] is True
    code, out, _ = run_cli(["stats", "--model", str(files["model"]), "--data", str(files["test"]),
                            "--zero-gate", str(zero_fraction - 1e-3), "--json"], capsys)
    assert code == 1
    code, out, _ = run_cli(["stats", "--model", str(files["model"]), "--data", str(files["test"]),
                            "--zero-gate", "1.0", "--json"], capsys)
    assert code == 0 and json.loads(out)["gate"]["tripped"] is False


def test_table_output_without_json(files, capsys):
    code, out, _ = run_cli(["stats", "--model", str(files["model"]), "--data", str(files["test"])], capsys)
    assert code == 0 and "amplitude" in out and "nonzero" in out


@pytest.mark.parametrize("argv_tail, needle", [
    (["--zero-gate", "1.5"], "--zero-gate"),
    (["--positions", "sideways"], "--positions"),
    (["--batch-size", "0"], "--batch-size"),
    (["--shard", "3/2"], "--shard"),
    (["--split", "nope"], "nope"),
])
def test_bad_flags_exit_2_with_one_line(files, capsys, argv_tail, needle):
    code, out, err = run_cli(["stats", "--model", str(files["model"]), "--data", str(files["test"]),
                              *argv_tail], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert out == ""


def test_missing_data_file_exits_2_naming_it(files, capsys, tmp_path):
    missing = tmp_path / "nowhere.npz"
    code, _, err = run_cli(["stats", "--model", str(files["model"]), "--data", str(missing)], capsys)
    assert code == 2 and "nowhere.npz" in err and len(err.strip().splitlines()) == 1


def test_wrong_model_inputs_exit_2(files, capsys, tmp_path):
    k = keras()
    inp = k.Input((N + 2, N + 2, 1), name="input")
    path = tmp_path / "wrong_size.keras"
    k.Model(inp, k.layers.ReLU()(inp)).save(path)
    code, _, err = run_cli(["stats", "--model", str(path), "--data", str(files["test"])], capsys)
    assert code == 2 and "wrong_size.keras" in err and "10x10" in err
    assert len(err.strip().splitlines()) == 1
