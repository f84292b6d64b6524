"""The study on Dask: start or join a cluster, submit one task per cell (rerun when a worker
dies), stream the records back as cells finish, cancel everything on Ctrl-C.

Dask is optional (``pip install "ptytui[cluster]"``): it is imported inside these functions,
and ``require_dask`` turns its absence into a one-line error with exit code 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from ptytui.errors import Cancelled, MissingDependency, UsageError

INSTALL_HINT = 'pip install "ptytui[cluster]"'
CELL_RETRIES = 2  # a task that raises is retried; a task whose worker dies is rescheduled anyway


def require_dask(what: str = "the study runs on dask.distributed") -> None:
    """Raise MissingDependency (exit 2, one line) when dask.distributed is not importable."""
    try:
        import dask  # noqa: F401, PLC0415
        import distributed  # noqa: F401, PLC0415
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "dask"
        raise MissingDependency(f"{missing} is not installed ({what}); install it with: {INSTALL_HINT}") from None


def require_jobqueue() -> None:
    try:
        import dask_jobqueue  # noqa: F401, PLC0415
    except ImportError:
        raise MissingDependency(f"dask-jobqueue is not installed ([cluster] kind slurm / pbs); "
                                f"install it with: {INSTALL_HINT}") from None


def local_gpu_count() -> int:
    """GPUs dask-cuda sees (0 when dask-cuda is not installed): one worker per GPU then."""
    try:
        from dask_cuda.utils import get_n_gpus  # noqa: PLC0415
    except ImportError:
        return 0
    try:
        return int(get_n_gpus())
    except Exception:  # noqa: BLE001 - no driver, no GPU
        return 0


def local_cluster(workers: int | None = None, *, threads: int | None = None):
    """A LocalCluster of single-threaded worker processes (one per core, or ``workers``); with
    dask-cuda and GPUs, a LocalCUDACluster (one worker per GPU). Returns (cluster, TF threads)."""
    from distributed import LocalCluster  # noqa: PLC0415

    cores = os.cpu_count() or 1
    gpus = local_gpu_count() if workers is None else 0
    if gpus:
        from dask_cuda import LocalCUDACluster  # noqa: PLC0415

        return LocalCUDACluster(dashboard_address=None, silence_logs=logging.ERROR), threads
    n = workers or cores
    threads = threads or max(1, cores // n)
    # Dask's nanny sets OMP/MKL/OpenBLAS threads to 1 in every worker; TensorFlow's oneDNN kernels
    # and numpy then use one core whatever TensorFlow is told. Give each worker its share instead.
    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, env=env)
    return cluster, threads


def jobqueue_cluster(spec):
    """A dask-jobqueue cluster (SLURMCluster / PBSCluster) from the study's [cluster] table;
    nothing is submitted until it is scaled (``spec.jobs`` jobs)."""
    require_jobqueue()
    from dask_jobqueue import PBSCluster, SLURMCluster  # noqa: PLC0415

    kind = {"slurm": SLURMCluster, "pbs": PBSCluster}[spec.kind]
    kwargs = {"cores": spec.cores or 1, "memory": spec.memory or "4GB", "processes": spec.processes or 1,
              "job_name": "ptytui-study", "silence_logs": "error", "scheduler_options": {"dashboard_address": None}}
    for key in ("queue", "account", "walltime", "python", "interface", "local_directory"):
        value = getattr(spec, key)
        if value is not None:
            kwargs[key] = value
    if spec.job_extra:
        kwargs["job_extra_directives"] = list(spec.job_extra)
    return kind(**kwargs)


@contextlib.contextmanager
def study_client(spec, *, scheduler: str | None = None, workers: int | None = None,
                 log: Callable[[str], None] | None = None) -> Iterator:
    """A ``distributed.Client`` for the study, its workers warmed (TensorFlow imported once each).

    ``scheduler`` (or ``[cluster] scheduler``) joins an existing cluster; ``[cluster] kind``
    slurm / pbs starts one through dask-jobqueue; otherwise a LocalCluster.
    """
    require_dask()
    from distributed import Client  # noqa: PLC0415

    from ptytui.study.worker import TensorFlowPreload  # noqa: PLC0415

    say = log or (lambda text: None)
    address = scheduler or spec.scheduler
    cluster = None
    threads = spec.threads
    if address:
        say(f"study: joining the scheduler at {address}")
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--scheduler: expected a reachable Dask scheduler, found none at "
                             f"{address} ({' '.join(str(exc).split())})") from None
        description = f"scheduler {address}"
    elif spec.kind in ("slurm", "pbs"):
        cluster = jobqueue_cluster(spec)
        jobs = spec.jobs or 1
        cluster.scale(jobs=jobs)
        client = Client(cluster)
        description = f"{spec.kind} ({jobs} jobs)"
        say(f"study: {description} submitted; cells start as jobs start")
    else:
        cluster, threads = local_cluster(workers or spec.workers, threads=threads)
        client = Client(cluster)
        description = f"local ({len(cluster.workers)} worker processes)"
        say(f"study: {description}; importing TensorFlow on each worker")
    try:
        # Warms every worker now (and each one that joins later: a batch job, a restarted worker).
        client.register_plugin(TensorFlowPreload(threads), name="ptytui-tensorflow")
        client.ptytui_description = description
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)


def stream_study(client, study, *, export_dir: str | Path | None = None,
                 retries: int = CELL_RETRIES) -> Iterator[dict]:
    """Submit every cell; yield each cell's record once, as it finishes.

    A worker killed mid-cell: the scheduler reruns the cell elsewhere (each cell is yielded
    once). Closing the iterator early (Ctrl-C, a cancel) sets the study's cancel event, which
    running cells check between batches, and cancels every task.
    """
    from distributed import Event, as_completed  # noqa: PLC0415

    from ptytui.study.matrix import CELLS_FOLDER, safe_name  # noqa: PLC0415
    from ptytui.study.worker import cell_task  # noqa: PLC0415

    token = uuid.uuid4().hex[:12]
    cancel_name = f"ptytui-study-cancel-{token}"
    options = study.run.to_dict()
    futures = {}
    for i, cell in enumerate(study.cells):
        cell_export = None
        if export_dir is not None:
            cell_export = str(Path(export_dir) / CELLS_FOLDER / safe_name(cell.id))
        future = client.submit(cell_task, str(cell.path), cell.id, dict(cell.labels), options, cancel_name,
                               cell_export, key=f"ptytui-cell-{token}-{i}", retries=retries, pure=False)
        futures[future.key] = (future, cell)
    yielded: set[str] = set()
    finished = False
    try:
        for future in as_completed([f for f, _ in futures.values()]):
            _, cell = futures[future.key]
            if cell.id in yielded:
                continue
            yielded.add(cell.id)
            yield _record_of(future, cell)
        finished = True
    finally:
        if not finished:
            with contextlib.suppress(Exception):
                Event(cancel_name, client=client).set()
            with contextlib.suppress(Exception):
                client.cancel([f for f, _ in futures.values()], force=True)


def _record_of(future, cell) -> dict:
    """The task's record, or an error record when the task itself failed (e.g. its workers kept
    dying: ``KilledWorker`` after the scheduler's allowed failures)."""
    base = {"cell": cell.id, "labels": dict(cell.labels), "workspace": str(cell.path), "row": None,
            "diagnosis": None, "comparison": None}
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        return {**base, "status": "cancelled", "error": "cancelled", "exit_code": 3}
    exc = future.exception()
    return {**base, "status": "error", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            "exit_code": 2}


def run_study(study, *, client=None, scheduler: str | None = None, workers: int | None = None,
              export_dir: str | Path | None = None, on_record: Callable[[dict], None] | None = None,
              log: Callable[[str], None] | None = None, save: bool = True):
    """Run the whole study and return its ``StudyResult`` (saved as study.json in the study's
    session folder; with ``export_dir``, the report written there). ``on_record`` is called
    with each cell's record as it arrives. KeyboardInterrupt cancels every task and raises
    ``Cancelled`` (exit 3) after saving what finished."""
    from ptytui.study.matrix import StudyResult  # noqa: PLC0415

    started = time.perf_counter()
    result = StudyResult.for_study(study)
    context = contextlib.nullcontext(client) if client is not None else study_client(
        study.cluster, scheduler=scheduler, workers=workers, log=log)
    try:
        with context as active:
            result.cluster = getattr(active, "ptytui_description", None) or str(getattr(active, "scheduler", ""))
            stream = stream_study(active, study, export_dir=export_dir)
            try:
                for record in stream:
                    if result.add(record) and on_record is not None:
                        on_record(record)
            except KeyboardInterrupt:
                stream.close()  # cancels every task before the cluster goes
                result.cancelled = True
    except KeyboardInterrupt:  # during cluster start or shutdown
        result.cancelled = True
    result.seconds = time.perf_counter() - started
    if save:
        with contextlib.suppress(OSError):
            result.save(study.session_dir)
    if export_dir is not None and not result.cancelled:
        result.write_report(Path(export_dir))
    if result.cancelled:
        exc = Cancelled("study")
        exc.result = result
        raise exc
    return result
