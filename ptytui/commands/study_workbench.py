"""``ptytui STUDY``: the Study screen over a live run. The study runs on Dask in a background
thread for the whole session; enter on a cell leaves the Study screen for that cell's
workbench, and quitting the workbench (q) comes back to the matrix, which kept updating."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

_DONE = object()


class LiveStudy:
    """The study run in a thread; records queue up until the Study screen takes them."""

    def __init__(self, study, **options) -> None:
        self.study = study
        self.options = options
        self.records: queue.Queue = queue.Queue()
        self.error: str | None = None
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ptytui-study", daemon=True)

    def start(self) -> "LiveStudy":
        self.thread.start()
        return self

    def _run(self) -> None:
        from ptytui.errors import Cancelled, PtytuiError  # noqa: PLC0415
        from ptytui.study.cluster import run_study  # noqa: PLC0415

        def on_record(record):
            self.records.put(record)
            if self.cancel.is_set():
                raise KeyboardInterrupt  # run_study cancels the remaining cells

        try:
            run_study(self.study, on_record=on_record, **self.options)
        except Cancelled:
            pass
        except PtytuiError as exc:
            self.error = exc.one_line()
        except Exception as exc:  # noqa: BLE001 - shown on the Study screen
            self.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        finally:
            self.records.put(_DONE)

    def feed(self):
        """Records as they arrive, until the run ends (for one Study screen at a time)."""
        while True:
            item = self.records.get()
            if item is _DONE:
                self.records.put(_DONE)  # the next screen sees the end too
                if self.error:
                    raise RuntimeError(self.error)
                return
            yield item


def launch_study(path: str | Path, *, theme: str | None = None, scheduler: str | None = None,
                 workers: int | None = None) -> int:
    """Open the Study screen on a study file or folder; return the study's exit code."""
    from ptytui.study.cluster import require_dask  # noqa: PLC0415
    from ptytui.study.matrix import StudyResult  # noqa: PLC0415
    from ptytui.study.spec import load_study  # noqa: PLC0415
    from ptytui.tui.screens.study import StudyApp  # noqa: PLC0415

    study = load_study(path)
    require_dask()
    live = LiveStudy(study, scheduler=scheduler, workers=workers).start()
    result = StudyResult.for_study(study)
    selected = None
    while True:
        app = StudyApp(result, feed=live.feed(), theme=theme, selected=selected, on_quit=live.cancel.set)
        cell_id = app.run()
        if cell_id is None:
            break
        selected = cell_id
        _open_cell(study, cell_id, theme=theme)
    live.cancel.set()
    return result.exit_code if result.complete else 3


def _open_cell(study, cell_id: str, *, theme: str | None) -> None:
    """The cell's workbench (its own screens); q returns here instead of leaving the process."""
    from ptytui.commands.workbench import DeferredExportWriter, resolve_workspace  # noqa: PLC0415
    from ptytui.tui.app import WorkbenchApp  # noqa: PLC0415
    from ptytui.tui.feeds import workspace_feed  # noqa: PLC0415

    cell = next(c for c in study.cells if c.id == cell_id)
    label, path, session_dir = resolve_workspace(cell.path)
    opts = {"trust": study.run.trust, "seed": study.run.seed, "batch_size": study.run.batch_size}
    feed = workspace_feed(path, n_groups=study.run.n_groups, **opts)
    app = WorkbenchApp(feed, workspace_label=f"{label} ({cell_id})", session_dir=session_dir, theme=theme,
                       export_writer=DeferredExportWriter(path, **opts))
    app.run()
