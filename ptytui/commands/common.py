"""Pieces the headless commands share: opening a session from a workspace or flags, progress on
stderr, JSON on stdout. Imports neither TensorFlow nor Textual at import time."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ptytui.errors import UsageError
from ptytui.inputs.workspace import POSITION_MODES

DEVICES = ("cpu", "gpu", "all")


def select_devices(devices: str | None) -> str:
    """Apply ``--devices`` before TensorFlow touches a device; return a label for reports."""
    if devices is None or devices == "auto":
        return "auto"
    if devices not in DEVICES:
        raise UsageError(f"--devices: expected one of {', '.join(DEVICES)}, found {devices!r}")
    from ptytui.core.tfload import tf as _tf  # noqa: PLC0415

    tf = _tf()
    if devices == "cpu":
        try:
            tf.config.set_visible_devices([], "GPU")
        except (RuntimeError, ValueError):
            pass  # devices already initialized; nothing to hide
    elif devices == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise UsageError("--devices gpu: expected a GPU visible to TensorFlow, found none "
                         "(run 'ptytui doctor')")
    return devices


def device_set_for(devices: str):
    """The ``distribute.DeviceSet`` (MirroredStrategy over every GPU, else the CPU devices) that
    ``--devices all`` runs under; None for any other choice. Call after ``select_devices``."""
    if devices != "all":
        return None
    from ptytui.running.devices import build_strategy  # noqa: PLC0415

    return build_strategy()


def open_session(workspace: Path | None, model: list[str] | None, data: list[str] | None, *,
                 positions: str | None = None, trust: bool = False, seed: int = 0,
                 n_groups: int | None = None, batch_size: int | None = None, shard: str | None = None):
    """A Session from WORKSPACE, or from --model/--data flags (not both)."""
    from ptytui.inputs.workspace import load_workspace, workspace_from_flags  # noqa: PLC0415
    from ptytui.running.session import Session, Shard  # noqa: PLC0415

    if positions is not None and positions not in POSITION_MODES:
        raise UsageError(f"--positions: expected {', '.join(POSITION_MODES[:-1])} or {POSITION_MODES[-1]}, "
                         f"found {positions!r}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, found {batch_size}")
    if n_groups is not None and n_groups < 1:
        raise UsageError(f"--n-groups: expected a positive integer, found {n_groups}")
    if model or data:
        if workspace is not None:
            raise UsageError("give either WORKSPACE or --model/--data, not both")
        if not model or not data:
            raise UsageError("--model and --data go together: give both (or a WORKSPACE)")
        ws = workspace_from_flags(model, data, positions=positions)
    else:
        ws = load_workspace(workspace if workspace is not None else Path.cwd())
    return Session(ws, trust=trust, seed=seed, n_groups=n_groups, batch_size=batch_size,
                   shard=Shard.parse(shard))


def emit_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False, default=_json_default))
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(value: Any):
    import numpy as np  # noqa: PLC0415

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class StderrProgress:
    """Progress of engine runs on stderr: a Rich bar on a terminal, sparse lines otherwise."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console  # noqa: PLC0415

        self.console = Console(stderr=True)
        self.quiet = quiet
        self._progress = None
        self._tasks: dict[tuple[str, str], Any] = {}

    def __enter__(self):
        if not self.quiet and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def log(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    def __call__(self, event) -> None:
        from ptytui.core import events as ev  # noqa: PLC0415

        key = (event.model, event.split)
        if isinstance(event, ev.RunStarted):
            # Off a terminal nothing is printed until a run ends, so that bad input found while
            # the first batch is prepared stays the one line on stderr.
            if self._progress is not None:
                self._tasks[key] = self._progress.add_task(f"{event.model} / {event.split}",
                                                           total=event.n_samples)
        elif isinstance(event, ev.BatchDone) and self._progress is not None and key in self._tasks:
            self._progress.update(self._tasks[key], completed=event.done)
        elif isinstance(event, ev.BatchSizeReduced):
            reason = event.reason if event.reason.startswith("batch size") else \
                f"out of memory, batch size {event.old} -> {event.new}"
            self.log(f"{event.model} / {event.split}: {reason}")
        elif isinstance(event, ev.RunFailed):
            self.log(f"{event.model} / {event.split}: failed: {event.message}")
        elif isinstance(event, ev.RunFinished) and self._progress is None:
            result = event.result
            self.log(f"{event.model} / {event.split}: {result.n_samples} groups, positions "
                     f"{result.positions}, done in {result.seconds:.2f} s")
