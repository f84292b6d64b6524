"""What runs on a Dask worker: the TensorFlow warm-up plugin (TF imported once per worker
process, not per task) and the cell task. Imports dask.distributed: load it only once Dask is
known to be installed (``ptytui.study.cluster.require_dask``)."""

from __future__ import annotations

import os
import time

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "ptytui-tensorflow"
CANCEL_CHECK_SECONDS = 0.5  # the cancel event is asked at most this often (a scheduler round trip)


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
        from ptytui.engine.tfload import tf  # noqa: PLC0415

        if self.threads:
            os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
        module = tf()
        if self.threads:
            try:
                module.config.threading.set_intra_op_parallelism_threads(self.threads)
                module.config.threading.set_inter_op_parallelism_threads(min(2, self.threads))
            except RuntimeError:
                pass  # TensorFlow already initialized in this process: keep its threads
        import ptytui.engine.compare  # noqa: F401, PLC0415 - the cell's modules, warm
        import ptytui.engine.diagnose  # noqa: F401, PLC0415


def cell_task(workspace: str, cell_id: str, labels: dict, options: dict, cancel_name: str | None,
              export_dir: str | None) -> dict:
    """A Dask task: ``run_cell`` with the study's cancel event (a ``distributed.Event``)."""
    from ptytui.errors import Cancelled  # noqa: PLC0415
    from ptytui.study.cell import run_cell  # noqa: PLC0415

    cancel = _cancel_checker(cancel_name) if cancel_name else None
    try:
        return run_cell(workspace, cell_id=cell_id, labels=labels, options=options, cancel=cancel,
                        export_dir=export_dir)
    except Cancelled:
        return {"cell": cell_id, "labels": labels, "workspace": workspace, "status": "cancelled",
                "error": "cancelled", "exit_code": 3, "row": None}


def _cancel_checker(name: str):
    """A callable that says whether the study's cancel event is set (asked at most every
    CANCEL_CHECK_SECONDS; an unreachable scheduler counts as not cancelled)."""
    from distributed import Event  # noqa: PLC0415

    state = {"last": 0.0, "set": False, "event": None}

    def cancelled() -> bool:
        if state["set"]:
            return True
        now = time.monotonic()
        if now - state["last"] < CANCEL_CHECK_SECONDS:
            return False
        state["last"] = now
        try:
            if state["event"] is None:
                state["event"] = Event(name)
            state["set"] = bool(state["event"].is_set())
        except Exception:  # noqa: BLE001 - no scheduler (a plain call): never cancelled
            state["set"] = False
        return state["set"]

    return cancelled
