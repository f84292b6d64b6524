"""Engine feeds for the workbench: the live workspace session, recorded replays, and the batcher
that coalesces a fast event stream into at most 4 UI updates a second (no Textual here).

A feed is any callable ``feed(cancel: threading.Event) -> Iterator[event]``. The app runs it in
a thread worker; tests and screenshots replay a JSON-lines recording instead of the engine.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from ptytui.tui.state import RecordedEvent, event_type_name


class EngineFeed(Protocol):
    """What the app runs in its engine worker: a callable taking a cancel event, yielding engine events.

    ``Session.events`` fits, and so do ``replay_feed``, ``workspace_feed`` and ``recording_feed``.
    The feed should check ``cancel.is_set()`` between steps; the app also stops reading when it is set.
    """

    def __call__(self, cancel: threading.Event) -> Iterator[object]: ...


# At most 4 UI updates a second however fast the engine is: numbers stay readable (btop refreshes
# about twice a second) and the UI thread keeps time for keys while inference runs.
UI_UPDATE_INTERVAL_S = 0.25


# ---- recordings --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready form of an event field (arrays as base64 .npy under ``__ndarray__``)."""
    import numpy as np  # noqa: PLC0415

    from ptytui.core.events import _encode_array  # noqa: PLC0415

    if isinstance(value, np.ndarray):
        return {"__ndarray__": _encode_array(value)}
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def event_to_record(event: object) -> dict[str, Any]:
    """A JSON-ready dict of any engine event (known types via the engine's own encoder)."""
    from ptytui.core.events import EVENT_TYPES, event_to_dict  # noqa: PLC0415

    if isinstance(event, RecordedEvent):
        return {"type": event.type_name, **{k: _plain(v) for k, v in event.data.items()}}
    if type(event).__name__ in EVENT_TYPES:
        return event_to_dict(event)
    if not is_dataclass(event):
        raise TypeError(f"not an engine event: {type(event).__name__}")
    record: dict[str, Any] = {"type": type(event).__name__}
    for name in event.__dataclass_fields__:  # type: ignore[attr-defined]
        record[name] = _plain(getattr(event, name))
    return record


def event_from_record(record: dict[str, Any]) -> object:
    """Rebuild an event: the engine's own class when it knows the type, else a RecordedEvent."""
    from ptytui.core.events import EVENT_TYPES, _decode_array, event_from_dict  # noqa: PLC0415

    if record.get("type") in EVENT_TYPES:
        return event_from_dict(record)

    def arrays(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"__ndarray__"}:
                return _decode_array(value["__ndarray__"])
            return {k: arrays(v) for k, v in value.items()}
        if isinstance(value, list):
            return [arrays(v) for v in value]
        return value

    data = {k: arrays(v) for k, v in record.items() if k != "type"}
    return RecordedEvent(str(record.get("type", "?")), data)


def load_recording(path: str | Path) -> list[object]:
    """Events of a JSON-lines recording (one event per line; blank lines and # comments skipped)."""
    from ptytui.errors import InputError  # noqa: PLC0415

    events = []
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(path, "a readable JSON-lines event recording", f"an unreadable file ({exc.strerror})")
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            events.append(event_from_record(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{number}", "one engine event as a JSON object",
                             f"{type(exc).__name__}: {exc}") from None
    return events


def write_recording(events: Iterable[object], path: str | Path) -> Path:
    """Write events as a JSON-lines recording (replace the file atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event_to_record(event), allow_nan=True) + "\n")
    temporary.replace(path)
    return path


# ---- feeds --------------------------------------------------------------------------------------


def replay_feed(events_or_path: Iterable[object] | str | Path, *, delay_s: float = 0.0) -> EngineFeed:
    """A feed that replays recorded events (optionally paced by ``delay_s`` between events).

    A recording given by path is read when the feed runs (in the worker), not before the first frame.
    """
    given = None if isinstance(events_or_path, (str, Path)) else list(events_or_path)

    def feed(cancel: threading.Event) -> Iterator[object]:
        events = given if given is not None else load_recording(events_or_path)
        for event in events:
            if cancel.is_set():
                return
            if delay_s:
                cancel.wait(delay_s)
            yield event

    return feed


def workspace_feed(workspace: str | Path, **session_options: Any) -> EngineFeed:
    """The live engine on a workspace: stats for every model x split, then trace and diagnosis.

    The engine (and TensorFlow) is imported inside the feed, i.e. in the worker thread, so the
    first frame never waits for it.
    """

    def feed(cancel: threading.Event) -> Iterator[object]:
        from ptytui.inputs.workspace import load_workspace  # noqa: PLC0415 - in the worker

        loaded = load_workspace(workspace)
        from ptytui.core.events import RunsPlanned  # noqa: PLC0415 - numpy loads in the worker

        yield RunsPlanned("", "", runs=[(model, split) for model in loaded.models for split in loaded.splits])

        from ptytui.diagnosis.workbench import workbench_events  # noqa: PLC0415 - in the worker
        from ptytui.running.session import Session  # noqa: PLC0415 - in the worker

        yield from workbench_events(Session(loaded, **session_options), cancel, on_bad_split="report")

    return feed


def recording_feed(feed: EngineFeed, path: str | Path) -> EngineFeed:
    """Wrap a feed so every event it yields is also appended to a JSON-lines recording."""

    def recorded(cancel: threading.Event) -> Iterator[object]:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8") as handle:
            for event in feed(cancel):
                handle.write(json.dumps(event_to_record(event), allow_nan=True) + "\n")
                handle.flush()
                yield event

    return recorded


# ---- throttling ---------------------------------------------------------------------------------


# events that carry everything their run measured so far: a newer one of a run replaces the last
_CUMULATIVE = ("BatchDone", "LayerHealthUpdate")


class EventBatcher:
    """A thread-safe inbox between the engine worker and the UI thread.

    The worker ``add``s every event; consecutive ``BatchDone`` (or ``LayerHealthUpdate``) events
    of one run replace each other (each carries the records merged so far, so only the latest
    matters). ``add`` returns
    True when the worker should post a doorbell message: nothing is waiting on the UI side and
    at least ``interval_s`` passed since the last doorbell. The UI thread ``drain``s.
    """

    def __init__(self, interval_s: float = UI_UPDATE_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[object] = []
        self._doorbell_pending = False
        self._last_doorbell = -float("inf")

    def add(self, event: object) -> bool:
        with self._lock:
            kind = event_type_name(event)
            if kind in _CUMULATIVE:
                key = (getattr(event, "model", None), getattr(event, "split", None))
                for i, queued in enumerate(self._events):
                    if (event_type_name(queued) == kind
                            and (getattr(queued, "model", None), getattr(queued, "split", None)) == key):
                        del self._events[i]
                        break
            self._events.append(event)
            now = self._clock()
            if self._doorbell_pending or now - self._last_doorbell < self.interval_s:
                return False
            self._doorbell_pending = True
            self._last_doorbell = now
            return True

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def drain(self) -> list[object]:
        with self._lock:
            events, self._events = self._events, []
            self._doorbell_pending = False
            return events
