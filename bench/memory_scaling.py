"""Does `ptytui stats` memory stay bounded by the batch on the study's dense split?

The `large` scenario's test split (N = 128, 5,216 groups at gridsize 2, like the study's dense
test split) is streamed by a PINN-sized gs2 model (the scenario's PINN family, untrained: memory
and throughput do not depend on the weights). Each size runs in a fresh process:

1. Peak RSS (ru_maxrss) of `ptytui stats` over 500 groups and over all 5,216. Target <= 1.1x.
2. Throughput (groups/s, from the run's own seconds, and wall time of the whole command) at both
   sizes. Target: linear (the same groups/s at both sizes).

The data come from the scenario's simulator (`ptytui.scenario.simulate`, the `large`
preset), written once to --cache (about 1 GB; ~90 s); `--synthetic` writes an equivalent contract
NPZ (same shapes and keys, smooth random patterns) in seconds instead.

Usage: python bench/memory_scaling.py [--cache DIR] [--synthetic] [--batch 64] [--small 500]
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

DOSE = 1e3
GRIDSIZE = 2


def scenario_split(path: Path) -> dict:
    """The `large` scenario's test split, written as the scenario writes it."""
    from ptytui.scenario.settings import PRESETS
    from ptytui.scenario.simulate import simulate, write_split

    preset = PRESETS["large"]
    scan = simulate(preset, dose=DOSE, seed=0)
    write_split(path, scan, scan.splits["test"], preset=preset, seed=0)
    return {"N": preset.N, "probe": scan.probe, "filters": preset.filters}


def synthetic_split(path: Path) -> dict:
    """A contract NPZ with the large preset's sizes: 5,216 patterns of 128 x 128 on a 480 px
    object, written member by member so the writer's own memory stays small."""
    import zipfile

    from ptytui.scenario.settings import PRESETS

    preset = PRESETS["large"]
    N, M, size = preset.N, preset.n_test, preset.object_size
    rng = np.random.default_rng(0)
    x = rng.uniform(N / 2, size - N / 2, M)
    y = rng.uniform(size / 2, size - N / 2, M)
    yy, xx = np.mgrid[0:N, 0:N] - (N - 1) / 2
    probe = np.exp(-(xx ** 2 + yy ** 2) / (2 * (N / 6) ** 2)).astype(np.complex64)
    base = np.abs(np.fft.fftshift(np.fft.fft2(probe))).astype(np.float32)
    base *= np.float32(N / 2 / np.sqrt((base ** 2).sum()))
    small = {"probeGuess": probe, "objectGuess": np.ones((size, size), np.complex64), "xcoords": x,
             "ycoords": y, "xcoords_start": x, "ycoords_start": y,
             "scan_index": np.arange(M, dtype=np.int64)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in small.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, value, allow_pickle=False)
        with zf.open("diffraction.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (M, N, N)})
            for start in range(0, M, 256):
                stop = min(M, start + 256)
                scale = rng.uniform(0.5, 1.5, size=(stop - start, 1, 1)).astype(np.float32)
                fh.write(np.ascontiguousarray(base[None] * scale).tobytes())
    return {"N": N, "probe": probe, "filters": preset.filters}


def write_model(path: Path, N: int, probe: np.ndarray, filters) -> None:
    """The scenario's gs2 PINN (inference graph, untrained) at N = 128."""
    from ptytui.networks.architectures import build_pinn, intensity_scale_for

    models = build_pinn(N, GRIDSIZE, intensity_scale_for(DOSE, N), filters, probe)
    models.diffraction_to_obj.save(path)


RSS_PROBE = """
import json, resource, sys, time
started = time.perf_counter()
from ptytui.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "wall_s": time.perf_counter() - started}), file=sys.stderr)
"""


def run_stats(model: Path, data: Path, groups: int | None, batch: int) -> dict:
    """`ptytui stats` in a fresh process: peak RSS, the run's seconds, the wall time."""
    cmd = [sys.executable, "-c", RSS_PROBE, "stats", "--model", str(model), "--data", str(data),
           "--batch-size", str(batch), "--json"]
    if groups is not None:
        cmd += ["--n-groups", str(groups)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    try:
        probe = json.loads(out.stderr.strip().splitlines()[-1])
        run = json.loads(out.stdout)["runs"][0]
    except (ValueError, IndexError, KeyError):
        raise SystemExit(f"ptytui stats failed:\n{out.stderr[-3000:]}") from None
    return {"groups": run["n_samples"], "peak_rss_mb": probe["maxrss_kb"] / 1024,
            "run_s": run["seconds"], "wall_s": probe["wall_s"],
            "groups_per_s": run["n_samples"] / run["seconds"], "exit": probe["code"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the split and the model here (default: a temporary folder)")
    parser.add_argument("--synthetic", action="store_true", help="synthesize the split (fast)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--small", type=int, default=500, help="groups of the small run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptytui-bench-") as tmp:
        folder = args.cache or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        kind = "synthetic" if args.synthetic else "scenario"
        data, model = folder / f"large_test_{kind}.npz", folder / f"pinn_gs2_N128_{kind}.keras"
        if not (data.exists() and model.exists()):
            started = time.perf_counter()
            made = synthetic_split(data) if args.synthetic else scenario_split(data)
            write_model(model, made["N"], made["probe"], made["filters"])
            print(f"wrote the {kind} large split and the model in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)
        # The small run goes before and after the large one: on a shared machine the load drifts,
        # and the faster of the two is the fairer throughput; the ratios use the smaller RSS.
        small_runs = [run_stats(model, data, args.small, args.batch)]
        large = run_stats(model, data, None, args.batch)
        small_runs.append(run_stats(model, data, args.small, args.batch))
        small = dict(min(small_runs, key=lambda r: r["run_s"]))
        small["peak_rss_mb"] = min(r["peak_rss_mb"] for r in small_runs)
        print(f"`ptytui stats` on the large scenario's test split ({kind} data, N = 128, gridsize 2, "
              f"batch {args.batch}), a fresh process each:")
        for label, r in (("small, before", small_runs[0]), ("large", large), ("small, after", small_runs[1])):
            print(f"  {r['groups']:5d} groups   peak RSS {r['peak_rss_mb']:8.1f} MB   "
                  f"{r['groups_per_s']:7.1f} groups/s (run {r['run_s']:.1f} s; command {r['wall_s']:.1f} s)"
                  f"   [{label}]")
        print(f"  peak RSS ratio     {large['peak_rss_mb'] / small['peak_rss_mb']:.3f}x   (target <= 1.1x)")
        print(f"  throughput ratio   {large['groups_per_s'] / small['groups_per_s']:.3f}x   "
              f"(1.0 = linear in the number of groups)")
        print(f"  groups ratio       {large['groups'] / small['groups']:.2f}x, run time ratio "
              f"{large['run_s'] / small['run_s']:.2f}x")
        # A run's seconds include a fixed start (the first batch traces the model); the marginal
        # rate past one batch separates that from the per-group cost that linearity is about.
        one = run_stats(model, data, args.batch, args.batch)
        marginal = {name: (r["groups"] - one["groups"]) / max(r["run_s"] - one["run_s"], 1e-9)
                    for name, r in (("small", small), ("large", large))}
        print(f"  one batch ({one['groups']} groups): run {one['run_s']:.1f} s (the fixed start); "
              f"marginal throughput {marginal['small']:.1f} groups/s at {small['groups']}, "
              f"{marginal['large']:.1f} groups/s at {large['groups']} "
              f"(ratio {marginal['large'] / marginal['small']:.3f}x)")


if __name__ == "__main__":
    main()
