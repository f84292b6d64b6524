"""Study scaling benchmark: the tiny demo study (6 cells) on a local Dask cluster of 1 and of 2
worker processes, and the per-cell Dask overhead against a plain loop of the same cells in one
warm process. Clusters are started and warmed (TensorFlow imported) before timing; every run
works on a fresh copy of the study (a cached comparison would change the next diagnosis).

    .venv/bin/python bench/study_scaling.py [--cache-dir DIR]
Targets: 2 workers <= 0.6x the wall time of 1 worker (on 2 cores); Dask overhead <= 10% per cell.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def fresh_copy(source: Path, target: Path) -> Path:
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, ignore=shutil.ignore_patterns("session", "study-session"))
    for toml in target.glob("runs/*/*/ptytui.toml"):
        (toml.parent / "session").mkdir(exist_ok=True)
    return target


def timed_cluster_run(client, build: Path, scratch: Path, tag: str) -> float:
    from ptytui.study.cluster import run_study
    from ptytui.study.spec import load_study

    study = load_study(fresh_copy(build, scratch / tag))
    started = time.perf_counter()
    result = run_study(study, client=client, save=False)
    seconds = time.perf_counter() - started
    assert all(r["status"] == "done" for r in result.records.values())
    return seconds


def timed_plain_loop(build: Path, scratch: Path, tag: str) -> float:
    from ptytui.study.cell import run_cell
    from ptytui.study.spec import load_study

    study = load_study(fresh_copy(build, scratch / tag))
    started = time.perf_counter()
    for cell in study.cells:
        record = run_cell(cell.path, cell_id=cell.id, options=study.run.to_dict())
        assert record["status"] == "done", record["error"]
    return time.perf_counter() - started


def main() -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"  # the plain loop gets what one worker gets: one core
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="scenario cache (default $PTYTUI_CACHE_DIR)")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds (the minimum is kept)")
    args = parser.parse_args()
    from ptytui.core.tfload import tf
    from ptytui.study.cluster import study_client
    from ptytui.study.demo import build_demo_study
    from ptytui.study.spec import ClusterSpec

    # Before anything runs TensorFlow here (a build from an empty cache trains models): the
    # thread settings cannot change once TensorFlow is initialized.
    tf().config.threading.set_intra_op_parallelism_threads(1)  # the plain loop: one worker's share
    tf().config.threading.set_inter_op_parallelism_threads(1)
    build = build_demo_study(cache_dir=args.cache_dir)
    cells = len(list(build.glob("runs/*/*/ptytui.toml")))
    times = {"one": [], "two": [], "plain": []}
    with tempfile.TemporaryDirectory() as folder, \
            study_client(ClusterSpec(threads=1), workers=1) as one_client, \
            study_client(ClusterSpec(threads=1), workers=2) as two_client:
        scratch = Path(folder)
        # round 0 warms every process (graph traces, first loads); rounds 1.. are measured,
        # interleaved so that load from other work on the machine hits every configuration
        for round_ in range(args.rounds + 1):
            for name, run in (("one", lambda t: timed_cluster_run(one_client, build, scratch, t)),
                              ("two", lambda t: timed_cluster_run(two_client, build, scratch, t)),
                              ("plain", lambda t: timed_plain_loop(build, scratch, t))):
                seconds = run(f"{name}-{round_}")
                if round_:
                    times[name].append(seconds)
    one, two, plain = (min(times[k]) for k in ("one", "two", "plain"))
    print(f"tiny study, {cells} cells, {os.cpu_count()} cores; clusters warm (TensorFlow imported); "
          f"each worker and the plain loop use 1 thread")
    print(f"  minimum of {args.rounds} interleaved rounds; all: " +
          ", ".join(f"{k} {[round(t, 1) for t in v]}" for k, v in times.items()))
    print(f"  1 worker : {one:7.2f} s")
    print(f"  2 workers: {two:7.2f} s   ratio {two / one:.2f}x   (target <= 0.60x)")
    print(f"  plain loop in one process: {plain:7.2f} s")
    print(f"  Dask overhead per cell (1 worker vs plain loop): {(one - plain) / cells:+.3f} s "
          f"= {100 * (one - plain) / plain:+.1f}%   (target <= 10%)")


if __name__ == "__main__":
    main()
