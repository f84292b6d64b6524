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


def on_cluster(build: Path, scratch: Path, workers: int) -> float:
    from ptytui.study.cluster import run_study, study_client
    from ptytui.study.spec import ClusterSpec, load_study

    # one TensorFlow / OpenMP thread per worker: a worker is one core's worth of work
    with study_client(ClusterSpec(threads=1), workers=workers) as client:
        # warm-up: the cells' first TensorFlow graph traces are per process, as in a plain loop
        study = load_study(fresh_copy(build, scratch / f"warm-{workers}"))
        run_study(study, client=client, save=False)
        study = load_study(fresh_copy(build, scratch / f"run-{workers}"))
        started = time.perf_counter()
        result = run_study(study, client=client, save=False)
        seconds = time.perf_counter() - started
    assert all(r["status"] == "done" for r in result.records.values())
    return seconds


def plain_loop(build: Path, scratch: Path) -> float:
    from ptytui.engine.tfload import tf
    from ptytui.study.cell import run_cell
    from ptytui.study.spec import load_study

    tf().config.threading.set_intra_op_parallelism_threads(1)  # as one worker (OMP set in main)
    tf().config.threading.set_inter_op_parallelism_threads(1)
    study = load_study(fresh_copy(build, scratch / "warm-plain"))
    for cell in study.cells:
        run_cell(cell.path, cell_id=cell.id, options=study.run.to_dict())
    study = load_study(fresh_copy(build, scratch / "run-plain"))
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
    args = parser.parse_args()
    from ptytui.study.demo import build_demo_study

    build = build_demo_study(cache_dir=args.cache_dir)
    cells = len(list(build.glob("runs/*/*/ptytui.toml")))
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        one = on_cluster(build, scratch, 1)
        two = on_cluster(build, scratch, 2)
        plain = plain_loop(build, scratch)
    print(f"tiny study, {cells} cells, {os.cpu_count()} cores; clusters warm (TensorFlow imported); "
          f"each worker and the plain loop use 1 thread")
    print(f"  1 worker : {one:7.2f} s")
    print(f"  2 workers: {two:7.2f} s   ratio {two / one:.2f}x   (target <= 0.60x)")
    print(f"  plain loop in one process: {plain:7.2f} s")
    print(f"  Dask overhead per cell (1 worker vs plain loop): {(one - plain) / cells:+.3f} s "
          f"= {100 * (one - plain) / plain:+.1f}%   (target <= 10%)")


if __name__ == "__main__":
    main()
