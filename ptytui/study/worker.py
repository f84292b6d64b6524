"""What runs on a Dask worker: the TensorFlow warm-up plugin (TF imported once per worker
process, not per task) and the cell task. Imports dask.distributed: load it only once Dask is
known to be installed (``ptytui.study.cluster.require_dask``)."""

from __future__ import annotations

import os
import threading

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "ptytui-tensorflow"
CANCEL_POLL_SECONDS = 1.0  # each long poll of the cancel event waits this long on the scheduler


class TensorFlowPreload(WorkerPlugin):
    """Import TensorFlow (and the engine) when a worker starts, including a worker the nanny
    restarts after a crash, so a cell never pays the import.

    ``threads``: TensorFlow's intra-op threads per worker (None: TensorFlow's default, all
    cores). Worker processes sharing a machine should split its cores between them.
    """

    name = PLUGIN_NAME

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def setup(self, worker=None):
        from ptytui.core.tfload import tf  # noqa: PLC0415

        if self.threads:
            os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
        module = tf()
        if self.threads:
            try:
                module.config.threading.set_intra_op_parallelism_threads(self.threads)
                module.config.threading.set_inter_op_parallelism_threads(min(2, self.threads))
            except RuntimeError:
                pass  # TensorFlow already initialized in this process: keep its threads
        import ptytui.diagnosis.diagnose  # noqa: F401, PLC0415
        import ptytui.quality.compare  # noqa: F401, PLC0415 - the cell's modules, warm


def cell_task(workspace: str, cell_id: str, labels: dict, options: dict, cancel_name: str | None,
              export_dir: str | None) -> dict:
    """A Dask task: ``run_cell`` with the study's cancel event (a ``distributed.Event``)."""
    from ptytui.errors import Cancelled  # noqa: PLC0415
    from ptytui.study.cell import run_cell  # noqa: PLC0415

    watch = CancelWatch(cancel_name) if cancel_name else None
    try:
        return run_cell(workspace, cell_id=cell_id, labels=labels, options=options, cancel=watch,
                        export_dir=export_dir)
    except Cancelled:
        return {"cell": cell_id, "labels": labels, "workspace": workspace, "status": "cancelled",
                "error": "cancelled", "exit_code": 3, "row": None}
    finally:
        if watch is not None:
            watch.close()


class CancelWatch:
    """Whether the study's cancel event is set, as a plain flag: a side thread long-polls the
    scheduler (``Event.wait``), so the cell's checks between batches cost nothing and never wait
    on the network. Without a scheduler (a plain call) it is never set."""

    def __init__(self, name: str) -> None:
        self._set = threading.Event()
        self._stop = threading.Event()
        try:
            from distributed import Event  # noqa: PLC0415

            event = Event(name)  # made in the task's thread: it finds the worker's client
        except Exception:  # noqa: BLE001 - not on a worker
            return
        threading.Thread(target=self._poll, args=(event,), name="ptytui-cancel-watch", daemon=True).start()

    def _poll(self, event) -> None:
        while not self._stop.is_set():
            try:
                if event.wait(timeout=CANCEL_POLL_SECONDS):
                    self._set.set()
                    return
            except Exception:  # noqa: BLE001 - scheduler unreachable for a moment: ask again
                self._stop.wait(CANCEL_POLL_SECONDS)

    def __call__(self) -> bool:
        return self._set.is_set()

    def close(self) -> None:
        self._stop.set()
