"""What streaming statistics cost, measured side by side in one run.

1. Throughput: the streaming runner (model + on-device reductions of inputs and outputs, host
   merge, events) against bare ``tf.function`` inference of the same model on the same batches
   read the same way. Target: statistics cost at most 5%.
2. Memory: peak RSS of ``ptytui stats`` over 500 and over 5,000 groups of the same split, each in
   a fresh process. Target: at most 1.1x (memory bounded by the batch, not the split).

Usage: python bench/stats_overhead.py [--n 64] [--groups 5200] [--batch 64] [--repeats 3]
       python bench/stats_overhead.py --model WS/models/pinn_gs2.keras --data WS/data/test.npz
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_split(path: Path, n_patterns: int, n: int, seed: int = 0) -> None:
    """A contract NPZ (uncompressed, so it memory-maps) with smooth random diffraction."""
    rng = np.random.default_rng(seed)
    size = 8 * n
    diffraction = np.empty((n_patterns, n, n), np.float32)
    base = np.abs(np.fft.fftshift(np.fft.fft2(rng.normal(size=(n, n))))).astype(np.float32)
    for start in range(0, n_patterns, 512):
        stop = min(n_patterns, start + 512)
        diffraction[start:stop] = base * rng.uniform(0.5, 1.5, size=(stop - start, 1, 1)).astype(np.float32)
    x = rng.uniform(n / 2, size - n / 2, n_patterns)
    y = rng.uniform(n / 2, size - n / 2, n_patterns)
    probe = np.ones((n, n), np.complex64)
    obj = np.ones((size, size), np.complex64)
    np.savez(path, diffraction=diffraction, probeGuess=probe, objectGuess=obj, xcoords=x, ycoords=y,
             xcoords_start=x, ycoords_start=y, scan_index=np.zeros(n_patterns, np.int64))


def write_model(path: Path, n: int) -> None:
    """A PINN-sized conv encoder/decoder (diffraction -> amplitude) to give inference real work."""
    from ptytui.core.tfload import keras

    k = keras()
    inp = k.Input((n, n, 1), name="input")
    h = inp
    for filters in (16, 32, 64):
        h = k.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = k.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = k.layers.MaxPooling2D()(h)
    for filters in (64, 32, 16):
        h = k.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = k.layers.UpSampling2D()(h)
    out = k.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="amplitude")(h)
    k.Model(inp, out).save(path)


def throughput(model_path: Path, data_path: Path, batch: int, groups: int, repeats: int) -> dict:
    from ptytui.core.events import RunFinished
    from ptytui.core.tfload import tf
    from ptytui.inputs.grouping import group_split
    from ptytui.inputs.models import load_model
    from ptytui.inputs.npz import open_split
    from ptytui.running.inference import feed_inputs, run_inference

    loaded = load_model(model_path)
    split = open_split(data_path, name="bench")
    grouping = group_split(split, int(loaded.card.gridsize or 1), n_groups=groups)
    ids = np.arange(len(grouping.indices))
    bare = tf().function(lambda inputs: loaded.model(inputs, training=False), reduce_retracing=True)

    def run_bare() -> float:
        start = time.perf_counter()
        for lo in range(0, ids.size, batch):
            fed = feed_inputs(loaded, grouping.batch(split, ids[lo:lo + batch]))
            out = bare(fed)
            _ = out.shape
        return time.perf_counter() - start

    def run_stats() -> float:
        start = time.perf_counter()
        for event in run_inference(loaded, split, grouping, model_name="bench", batch_size=batch):
            if isinstance(event, RunFinished):
                pass
        return time.perf_counter() - start

    run_bare(), run_stats()  # warm up: trace both functions once
    bare_times, stats_times = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        bare_times.append(run_bare())
        stats_times.append(run_stats())
    bare_s, stats_s = float(np.median(bare_times)), float(np.median(stats_times))
    return {"groups": int(ids.size), "batch": batch, "bare_s": bare_s, "stats_s": stats_s,
            "bare_groups_per_s": ids.size / bare_s, "stats_groups_per_s": ids.size / stats_s,
            "overhead": stats_s / bare_s - 1.0}


RSS_PROBE = """
import json, resource, sys
from ptytui.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)
"""


def peak_rss(model_path: Path, data_path: Path, groups: int, batch: int) -> dict:
    cmd = [sys.executable, "-c", RSS_PROBE, "stats", "--model", str(model_path), "--data", str(data_path),
           "--n-groups", str(groups), "--batch-size", str(batch), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    probe = json.loads(out.stderr.strip().splitlines()[-1])
    runs = json.loads(out.stdout)["runs"]
    return {"groups": runs[0]["n_samples"], "peak_rss_mb": probe["maxrss_kb"] / 1024, "exit": probe["code"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="pattern size N")
    parser.add_argument("--groups", type=int, default=5200, help="patterns in the split")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--throughput-groups", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, help="measure this model (e.g. a scenario's pinn_gs2.keras) ...")
    parser.add_argument("--data", type=Path, help="... on this split, instead of the synthetic pair")
    args = parser.parse_args()
    if args.model and args.data:
        result = throughput(args.model, args.data, args.batch, args.throughput_groups, args.repeats)
        print(f"throughput of {args.model.name} over {result['groups']} groups (batch {args.batch}, median of {args.repeats}):")
        print(f"  bare tf.function      {result['bare_groups_per_s']:9.1f} groups/s")
        print(f"  streaming + stats     {result['stats_groups_per_s']:9.1f} groups/s")
        print(f"  statistics overhead   {result['overhead']:+.1%}   (target <= +5%)")
        return
    with tempfile.TemporaryDirectory(prefix="ptytui-bench-") as tmp:
        tmp_path = Path(tmp)
        data_path, model_path = tmp_path / "split.npz", tmp_path / "model.keras"
        write_split(data_path, args.groups, args.n)
        write_model(model_path, args.n)
        result = throughput(model_path, data_path, args.batch, args.throughput_groups, args.repeats)
        print(f"throughput over {result['groups']} groups (N={args.n}, batch {args.batch}, median of {args.repeats}):")
        print(f"  bare tf.function      {result['bare_groups_per_s']:9.1f} groups/s  ({result['bare_s']:.3f} s)")
        print(f"  streaming + stats     {result['stats_groups_per_s']:9.1f} groups/s  ({result['stats_s']:.3f} s)")
        print(f"  statistics overhead   {result['overhead']:+.1%}   (target <= +5%)")
        small = peak_rss(model_path, data_path, 500, args.batch)
        large = peak_rss(model_path, data_path, 5000, args.batch)
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
        print("peak RSS of `ptytui stats` (fresh process each):")
        print(f"  {small['groups']:5d} groups   {small['peak_rss_mb']:8.1f} MB")
        print(f"  {large['groups']:5d} groups   {large['peak_rss_mb']:8.1f} MB")
        print(f"  ratio                {ratio:.3f}x   (target <= 1.1x)")


if __name__ == "__main__":
    main()
