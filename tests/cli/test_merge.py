"""`ptytui merge`: sharded `stats --json` documents combine into the whole run's records exactly;
any partition of the groups into shards merges to the same records; overlapping shards, shards
of other groupings and other histogram bins are refused with one line (exit 2)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptytui.cli import main
from ptytui.core.events import RunResult
from ptytui.core.stats import TensorStats, stats_from_reduction
from ptytui.core.tfload import keras
from ptytui.inputs.grouping import group_split
from ptytui.inputs.models import load_model
from ptytui.inputs.npz import open_split
from ptytui.running.inference import _Step, feed_inputs, run_inference, run_to_result
from ptytui.running.merge import merge_documents
from ptytui.running.session import index_ranges
from tests.helpers_npz import make_arrays, write_npz

N = 8
EXACT = ("count", "finite_count", "zero_count", "nan_count", "inf_count", "min", "max",
         "nonzero_fraction", "histogram")


def assert_records_equal(whole: dict, merged: dict) -> None:
    assert set(whole) == set(merged)
    for name in whole:
        a = whole[name] if isinstance(whole[name], dict) else whole[name].to_dict()
        b = merged[name] if isinstance(merged[name], dict) else merged[name].to_dict()
        for key in EXACT:
            assert a[key] == b[key], (name, key)
        # Chan's merge in another grouping of the same values: equal up to float64 rounding.
        assert b["mean"] == pytest.approx(a["mean"], rel=1e-12, abs=1e-14)
        assert b["std"] == pytest.approx(a["std"], rel=1e-9, abs=1e-14)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("merge")
    data = write_npz(folder / "test.npz", make_arrays(N, nx=5, ny=4, seed=3))  # 20 patterns
    k = keras()
    diffraction = k.Input((N, N, 4), name="input")
    positions = k.Input((1, 2, 4), name="input_positions")
    # Elementwise layers only: a convolution's float32 result can change with the batch size
    # (CPU kernels block differently), which would blur what this file tests, the merge.
    h = k.layers.ReLU()(k.layers.Rescaling(-1.0, offset=0.6)(diffraction))
    shift = k.layers.Rescaling(0.1)(k.layers.Cropping2D(((0, 0), (0, 1)))(positions))
    model_path = folder / "gs2.keras"
    k.Model([diffraction, positions], k.layers.Add(name="obj")([h, shift])).save(model_path)
    return {"folder": folder, "data": data, "model": model_path}


def stats_json(files, *extra):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["stats", "--model", str(files["model"]), "--data", f"test={files['data']}",
                     "--batch-size", "3", "--json", *extra])
    assert code == 0
    return json.loads(buffer.getvalue())


@pytest.fixture(scope="module")
def sharded(files):
    """The whole run and its three shards, each a `stats --json` document written to a file."""
    whole = stats_json(files)
    paths = {}
    for k in range(3):
        paths[k] = files["folder"] / f"shard{k}.json"
        paths[k].write_text(json.dumps(stats_json(files, "--shard", f"{k}/3")))
    return whole, paths


def merge_cli(capsys, *argv):
    code = main(["merge", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_three_shards_merge_to_the_whole_run(files, sharded, capsys):
    whole, paths = sharded
    assert json.loads(paths[1].read_text())["runs"][0]["coverage"]["shard"] == "1/3"
    code, out, err = merge_cli(capsys, paths[2], paths[0], paths[1], "--json")  # any order
    assert code == 0, err
    run, whole_run = json.loads(out)["runs"][0], whole["runs"][0]
    assert run["n_samples"] == whole_run["n_samples"] == 20
    assert run["batches"] == 3 + 2 + 3  # shards of 7 / 6 / 7 groups at batch size 3
    assert run["coverage"]["complete"] and run["coverage"]["ranges"] == [[0, 20]]
    assert_records_equal(whole_run["inputs"], run["inputs"])
    assert_records_equal(whole_run["outputs"], run["outputs"])
    # The merged document is a stats document again: merged alone it is unchanged.
    again = files["folder"] / "merged.json"
    again.write_text(out)
    code, out_again, _ = merge_cli(capsys, again, "--json")
    assert code == 0
    assert_records_equal(run["outputs"], json.loads(out_again)["runs"][0]["outputs"])


def test_missing_shards_are_reported_not_hidden(sharded, capsys):
    _, paths = sharded
    code, out, err = merge_cli(capsys, paths[0], paths[2], "--json")
    document = json.loads(out)
    assert code == 0 and document["merge"]["complete"] is False
    assert document["runs"][0]["coverage"]["ranges"] == [[0, 7], [13, 20]]
    assert "14 of 20 groups" in err


def test_merging_a_shard_twice_is_refused(sharded, capsys):
    _, paths = sharded
    code, _, err = merge_cli(capsys, paths[1], paths[1])
    assert code == 2 and "overlap" in err and "shard1.json" in err and len(err.strip().splitlines()) == 1


def test_a_merged_file_with_its_own_shard_is_refused(files, sharded, capsys):
    _, paths = sharded
    code, out, _ = merge_cli(capsys, paths[0], paths[1], "--json")
    merged = files["folder"] / "merged01.json"
    merged.write_text(out)
    code, _, err = merge_cli(capsys, merged, paths[1])
    assert code == 2 and "overlap" in err and len(err.strip().splitlines()) == 1


def test_shards_of_different_groupings_are_refused(files, sharded, capsys):
    _, paths = sharded
    other = json.loads(paths[1].read_text())
    other["runs"][0]["coverage"]["seed"] = 7  # as if run with --seed 7: other groups
    path = files["folder"] / "seed7.json"
    path.write_text(json.dumps(other))
    code, _, err = merge_cli(capsys, paths[0], path)
    assert code == 2 and "seed" in err and "seed7.json" in err and len(err.strip().splitlines()) == 1


def test_other_histogram_bins_are_refused(files, sharded, capsys):
    _, paths = sharded
    document = json.loads(paths[0].read_text())
    record = document["runs"][0]["outputs"]["obj"]
    record["histogram"]["edges"] = record["histogram"]["edges"][::2]
    record["histogram"]["counts"] = record["histogram"]["counts"][: len(record["histogram"]["edges"]) - 1]
    path = files["folder"] / "bins.json"
    path.write_text(json.dumps(document))
    code, _, err = merge_cli(capsys, path)
    assert code == 2 and "bins" in err and "bins.json" in err and len(err.strip().splitlines()) == 1


# ---- property: any partition of the groups into shards merges to the whole run --------------


@pytest.fixture(scope="module")
def per_group(files):
    """Records of every single group through the engine's own step (traced once), and the whole
    run's records through the streaming runner."""
    split = open_split(files["data"], name="test")
    grouping = group_split(split, 2)
    loaded = load_model(files["model"])
    step = _Step(loaded)
    input_names = {spec["name"] for spec in loaded.card.inputs}
    groups = []
    for g in range(len(grouping.indices)):
        fed = feed_inputs(loaded, grouping.batch(split, [g]), positions="relative")
        reductions, _ = step(fed)
        records = {name: stats_from_reduction(r) for name, r in reductions[0].items()}
        groups.append(({k: v for k, v in records.items() if k.split(".")[0] in input_names},
                       {k: v for k, v in records.items() if k.split(".")[0] not in input_names}))
    whole = run_to_result(run_inference(loaded, split, grouping, model_name="gs2", split_name="test",
                                        positions="relative", batch_size=64))
    return groups, whole


def shard_document(groups, ids: list[int], total: int, label: str) -> dict:
    inputs = {name: TensorStats.merge_all(groups[g][0][name] for g in ids) for name in groups[0][0]}
    outputs = {name: TensorStats.merge_all(groups[g][1][name] for g in ids) for name in groups[0][1]}
    run = RunResult(model="gs2", split="test", positions="relative", n_samples=len(ids),
                    batches=len(ids), seconds=0.01, inputs=inputs, outputs=outputs, batch_size=1).to_dict()
    run["coverage"] = {"shard": label, "ranges": index_ranges(np.asarray(ids)), "total_groups": total,
                       "gridsize": 2, "seed": 0, "n_groups": None}
    return {"runs": [run], "gate": {"zero_fraction_max": None, "tripped": False}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_partition_of_groups_merges_to_the_whole_run(per_group, data):
    groups, whole = per_group
    total = len(groups)
    n_shards = data.draw(st.integers(1, 6), label="shards")
    labels = data.draw(st.lists(st.integers(0, n_shards - 1), min_size=total, max_size=total), label="labels")
    order = data.draw(st.permutations(range(n_shards)), label="file order")
    documents = []
    for k in order:
        ids = [g for g in range(total) if labels[g] == k]
        if ids:
            documents.append((f"shard{k}.json", shard_document(groups, ids, total, f"{k}/{n_shards}")))
    result = merge_documents(documents)
    run = result.document["runs"][0]
    assert run["n_samples"] == total and run["coverage"]["complete"]
    assert_records_equal(whole.inputs, run["inputs"])
    assert_records_equal(whole.outputs, run["outputs"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_group_in_two_shards_is_always_refused(per_group, data):
    from ptytui.errors import InputError

    groups, _ = per_group
    total = len(groups)
    first = sorted(data.draw(st.sets(st.integers(0, total - 1), min_size=1), label="first"))
    shared = data.draw(st.sampled_from(first), label="shared")
    rest = sorted(set(data.draw(st.sets(st.integers(0, total - 1)), label="second")) | {shared})
    documents = [("a.json", shard_document(groups, first, total, "a")),
                 ("b.json", shard_document(groups, rest, total, "b"))]
    with pytest.raises(InputError, match="overlap"):
        merge_documents(copy.deepcopy(documents))
