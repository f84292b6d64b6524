"""``--devices all``: MirroredStrategy over 2 logical CPU devices gives the same records and the
same event stream as one device. The CPU split must happen before TensorFlow initializes, so the
measurements run in a fresh subprocess that prints them as JSON."""

from __future__ import annotations

import pytest

from tests.running.replica_script import run_report_script

SCRIPT = r"""
import contextlib, io, json, sys
from pathlib import Path
from ptytui.running.devices import build_strategy, split_cpu
assert split_cpu(2), "TF initialized too early"
from ptytui.inputs.grouping import group_split
from ptytui.inputs.npz import open_split
from ptytui.running.inference import run_inference
from ptytui.core.stats import records_to_dict
from ptytui.core.tfload import keras
from ptytui.inputs.models import load_model
from ptytui.cli import main
from tests.helpers_npz import make_arrays, write_npz

folder = Path(sys.argv[1])
N = 8
data = write_npz(folder / "split.npz", make_arrays(N, nx=5, ny=4, seed=4))  # 20 patterns
k = keras()
diffraction = k.Input((N, N, 1), name="input")
positions = k.Input((1, 2, 1), name="input_positions")
# Elementwise layers only: a convolution's float32 result may change with the per-replica batch
# size (CPU kernels block differently), which would blur what is tested here.
h = k.layers.ReLU()(k.layers.Rescaling(-1.0, offset=0.6)(diffraction))
shift = k.layers.Rescaling(0.1)(k.layers.Cropping2D(((0, 0), (0, 1)))(positions))
out = k.layers.Add(name="obj")([h, shift])
model_path = folder / "model.keras"
k.Model([diffraction, positions], out).save(model_path)

device_set = build_strategy()
split = open_split(data, name="test")
grouping = group_split(split, 1)
report = {"devices": device_set.devices, "replicas": device_set.replicas}

def run(loaded, batch_size, device_set):
    events = list(run_inference(loaded, split, grouping, model_name="m", positions="absolute",
                                batch_size=batch_size, device_set=device_set))
    result = events[-1].result
    return {"types": [type(e).__name__ for e in events],
            "done": [getattr(e, "done", None) for e in events],
            "batches": result.batches, "n_samples": result.n_samples,
            "inputs": records_to_dict(result.inputs), "outputs": records_to_dict(result.outputs)}

single = load_model(model_path)
with device_set.scope():
    mirrored = load_model(model_path)
# batch 19 over 20 groups: a 10/9 split, then a 1-group tail smaller than the replica count
report["single"] = run(single, 19, None)
report["mirrored"] = run(mirrored, 19, device_set)

def cli(extra):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["stats", "--model", str(model_path), "--data", str(data), "--batch-size", "6",
                     "--json", *extra])
    return code, json.loads(buffer.getvalue())

report["cli_all"] = cli(["--devices", "all"])
print("REPORT " + json.dumps(report))
"""

EXACT = ("count", "finite_count", "zero_count", "nan_count", "inf_count", "min", "max",
         "nonzero_fraction", "histogram")


def assert_same_records(one: dict, other: dict) -> None:
    assert set(one) == set(other)
    for name in one:
        for key in EXACT:
            assert one[name][key] == other[name][key], (name, key)
        # Per-replica partial sums merge in another order: equal up to float64 rounding.
        assert other[name]["mean"] == pytest.approx(one[name]["mean"], rel=1e-12, abs=1e-15)
        assert other[name]["std"] == pytest.approx(one[name]["std"], rel=1e-9, abs=1e-15)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_report_script(SCRIPT, tmp_path_factory.mktemp("distribute"))


def test_strategy_spans_two_logical_cpu_devices(report):
    assert report["replicas"] == 2 and len(report["devices"]) == 2
    assert all("CPU" in d for d in report["devices"])


def test_mirrored_run_gives_the_same_records_as_one_device(report):
    single, mirrored = report["single"], report["mirrored"]
    assert mirrored["n_samples"] == single["n_samples"] == 20
    assert mirrored["batches"] == single["batches"] == 2
    assert_same_records(single["inputs"], mirrored["inputs"])
    assert_same_records(single["outputs"], mirrored["outputs"])


def test_mirrored_run_yields_the_same_event_stream(report):
    assert report["mirrored"]["types"] == report["single"]["types"]
    assert report["mirrored"]["done"] == report["single"]["done"]
    assert report["single"]["types"][-1] == "RunFinished"


def test_cli_devices_all_reports_the_replicas_and_the_same_records(report):
    code, document = report["cli_all"]
    assert code == 0 and document["devices"].startswith("all: 2 x CPU")
    run = document["runs"][0]
    assert run["n_samples"] == 20 and run["batches"] == 4  # batch size 6: 3+3 per replica, tail 1+1
    # The CLI feeds relative positions; the engine run above fed absolute ones: compare diffraction.
    assert_same_records({"input": report["single"]["inputs"]["input"]}, {"input": run["inputs"]["input"]})
