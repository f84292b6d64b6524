"""``--devices all``: the live layer-health records of a run split across 2 logical CPU devices
(``LiveLayerHealth.across`` over a ``DistributedStep``) equal the single-device records.

The CPU split must happen before TensorFlow initializes, so the runs happen in a fresh
subprocess that prints the records as JSON (as tests/running/test_devices.py does).

What is compared, and how:

- exact on every batch (counts, zero/nonzero per sample and per channel, NaN/Inf, samples,
  batches): the mirrored run against the single-device run as ``run_inference`` makes it.
- the moments, min/max and histograms: a single-device run samples them on every 8th batch
  (``SAMPLE_EVERY``) while a mirrored run has them on every batch, so they are compared against
  a single-device ``LiveLayerHealth(sample_every=1)`` driven batch by batch like
  ``run_inference``. min, max and the histograms are then exact (every output here has at most
  ``hist_rows`` samples per batch, so the histogram sees every sample on both sides); the mean and
  variance merge float32 partial sums in another order: equal to 1e-6 relative.

The model is elementwise layers and ptytui's reassembly layer fed absolute positions (the
incident's mechanism: some samples leave the window and are all zero), with gridsize 2 so the
early layers have 4 channels. No convolution: a CPU convolution's float32 result may change with
the per-replica batch size, which would blur what is tested here.
"""

from __future__ import annotations

import pytest

from tests.running.replica_script import run_report_script

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
from ptytui.running.devices import build_strategy, split_cpu
assert split_cpu(2), "TF initialized too early"
from ptytui.core.tfload import keras
from ptytui.inputs.grouping import group_split
from ptytui.inputs.models import load_model
from ptytui.inputs.npz import open_split
from ptytui.networks.layers import CombineComplex, ReassemblePatches
from ptytui.running.batching import Batch, run_batches
from ptytui.running.inference import _compiled_step, feed_inputs, run_inference, run_to_result
from ptytui.running.layer_health import LiveLayerHealth
from tests.helpers_npz import make_arrays, write_npz

folder = Path(sys.argv[1])
N, GS = 8, 2
arrays = make_arrays(N, nx=5, ny=5, seed=7)  # 25 patterns
data = write_npz(folder / "split.npz", arrays)
k = keras()
diffraction = k.Input((N, N, GS * GS), name="input")
positions = k.Input((1, 2, GS * GS), name="input_positions")
bright = k.layers.ReLU(name="bright")(k.layers.Rescaling(1.0, offset=-0.5, name="shift")(diffraction))
phase = k.layers.Rescaling(0.25, name="phase")(diffraction)
obj = CombineComplex(name="obj")(bright, phase)
# positions at half scale: the raster's patches are partly inside the window, partly outside
offsets = k.layers.Rescaling(0.5, name="half")(positions)
out = ReassemblePatches(N, N + 4, GS, crop=True, name="trimmed_obj")(obj, offsets)
model_path = folder / "model.keras"
k.Model([diffraction, positions], out).save(model_path)

device_set = build_strategy()
split = open_split(data, name="test")
grouping = group_split(split, GS, seed=0)
BATCH = 12  # 25 groups: 12 (6 + 6 per replica), 12, then 1 (smaller than the replicas: whole)

def records(health_records):
    return {key: rec.to_dict() for key, rec in health_records.items()}

def streamed(loaded, device_set):
    result = run_to_result(run_inference(loaded, split, grouping, model_name="m", positions="absolute",
                                         batch_size=BATCH, device_set=device_set))
    return {"batches": result.batches, "n_samples": result.n_samples, "records": records(result.layer_health)}

def every_batch(loaded):
    # run_inference's loop with the live health sampling moments on every batch
    health = LiveLayerHealth(loaded, _compiled_step(loaded), "m", "test", sample_every=1)
    ids = np.arange(len(grouping.indices))
    prepare = lambda chunk: feed_inputs(loaded, grouping.batch(split, chunk, ground_truth=False),
                                        positions="absolute")
    for outcome in run_batches(ids, BATCH, health, prepare=prepare):
        assert isinstance(outcome, Batch), outcome
        health.update(outcome.indices, last=outcome.done >= ids.size)
    return {"batches": health.batches, "records": records(health.records())}

single = load_model(model_path)
with device_set.scope():
    mirrored = load_model(model_path)
report = {"replicas": device_set.replicas, "single": streamed(single, None),
          "single_every_batch": every_batch(single), "mirrored": streamed(mirrored, device_set)}
print("REPORT " + json.dumps(report))
"""

# LayerHealth.to_dict keys exact on every batch (its "exact" list, the counts they derive from,
# and how many samples and batches were seen), and the sampled ones that are exact when both
# sides sample the same rows (min, max and histograms: no rounding; "sampled": how they were).
EXACT = ("count", "zero_count", "nan_count", "inf_count", "nonzero_fraction", "samples", "batches",
         "channels", "channel_nonzero", "dead_channels", "zero_samples", "zero_sample_count",
         "nonfinite_samples", "nonfinite_sample_count")
SAMPLED_EXACT = ("finite_count", "min", "max", "histogram", "underflow_count", "sampled")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_report_script(SCRIPT, tmp_path_factory.mktemp("health_devices"))


def test_the_run_spans_two_replicas_and_streams_every_group(report):
    assert report["replicas"] == 2
    assert report["mirrored"]["n_samples"] == report["single"]["n_samples"] == 25
    assert report["mirrored"]["batches"] == report["single"]["batches"] == 3


def test_mirrored_records_equal_the_single_device_ones_exactly_where_counted(report):
    single, mirrored = report["single"]["records"], report["mirrored"]["records"]
    assert set(mirrored) == set(single) and "trimmed_obj" in single and "obj:output.phase" in single
    for key, record in single.items():
        for name in EXACT:
            assert mirrored[key][name] == record[name], (key, name)
    # not trivially equal: some samples leave the window, the channels' counts differ
    assert 0 < single["trimmed_obj"]["zero_sample_count"] < 25
    assert single["bright"]["channels"] == 4 and len(set(single["bright"]["channel_nonzero"])) > 1


def test_mirrored_moments_equal_a_single_device_run_sampling_every_batch(report):
    single, mirrored = report["single_every_batch"]["records"], report["mirrored"]["records"]
    assert report["single_every_batch"]["batches"] == 3
    assert set(mirrored) == set(single)
    for key, record in single.items():
        other = mirrored[key]
        for name in EXACT + SAMPLED_EXACT:
            assert other[name] == record[name], (key, name)
        assert other["mean"] == pytest.approx(record["mean"], rel=1e-6, abs=1e-12), key
        assert other["std"] == pytest.approx(record["std"], rel=1e-6, abs=1e-12), key
