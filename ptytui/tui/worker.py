"""The workbench's background threads: the engine feed's loop and the export writer.

The app runs both as Textual thread workers (groups "engine" and "export"). Nothing here touches
the UI: the feed's loop hands events to an ``EventBatcher`` and posts messages
(``ptytui.tui.messages``); the export returns the paths it wrote as the worker's result.
"""

from __future__ import annotations

import os
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from textual.message import Message
from textual.worker import get_current_worker

from ptytui.errors import Cancelled, PtytuiError, one_line
from ptytui.tui.feeds import EngineFeed, EventBatcher
from ptytui.tui.messages import EngineEventsReady, EngineFeedEnded

if TYPE_CHECKING:
    from ptytui.tui.state import WorkbenchState

ENGINE_NICENESS = 5


@contextmanager
def lower_thread_priority(increment: int = ENGINE_NICENESS) -> Iterator[None]:
    """Run the block at a lower CPU priority for the calling thread (Linux: per-thread nice).

    The engine worker runs the feed inside it: TensorFlow's thread pools, started from that
    thread, inherit the nice value, so while inference keeps every core busy the scheduler still
    gives the UI thread the CPU for keys. The priority is restored after, since worker threads
    are reused.
    """
    tid = threading.get_native_id() if hasattr(threading, "get_native_id") else None
    previous = None
    if tid is not None and hasattr(os, "setpriority"):
        try:
            previous = os.getpriority(os.PRIO_PROCESS, tid)
            # Relative to the process (the main thread), so a reused thread is not lowered twice.
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + increment)
            if target != previous:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:  # not permitted or not supported: run at the normal priority
            previous = None
    try:
        yield
    finally:
        if previous is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, previous)
            except OSError:  # raising a priority back may need privileges: leave it lower
                pass


class ThreadsInside:
    """Whether any thread is still inside a block of work, however its worker ended.

    Textual's worker API answers this while the app runs. When the app exits it cancels every
    worker: their state turns CANCELLED and they leave ``app.workers`` at once, but a thread
    cannot be stopped, only told to stop, so one importing TensorFlow or writing an export is
    still inside. ``run_workbench`` asks this after the app has closed.
    """

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @contextmanager
    def inside(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    @property
    def busy(self) -> bool:
        return self._count > 0

    def wait_until_idle(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._count == 0)


@dataclass(frozen=True)
class FeedRun:
    """One run of the engine feed: its number (messages from older runs are ignored), the event
    that tells the feed to stop, and the inbox its events wait in for the UI thread."""

    generation: int
    cancel: threading.Event = field(default_factory=threading.Event)
    batcher: EventBatcher = field(default_factory=EventBatcher)


def run_feed(feed: EngineFeed, run: FeedRun, post: Callable[[Message], object], threads: ThreadsInside) -> None:
    """The engine worker's body (in its thread): consume the feed at a lower priority."""
    with threads.inside(), lower_thread_priority():
        consume_feed(feed, run, post)


def consume_feed(feed: EngineFeed, run: FeedRun, post: Callable[[Message], object]) -> None:
    """Read the feed, coalesce, ring the UI; report how it ended (in the worker's thread)."""
    worker = get_current_worker()
    events = None
    try:
        events = feed(run.cancel)
        for event in events:
            if worker.is_cancelled or run.cancel.is_set():
                break
            if run.batcher.add(event):
                post(EngineEventsReady(run.generation))
    except Exception as exc:  # noqa: BLE001 - any engine error is shown, the app stays up
        if run.cancel.is_set() or isinstance(exc, Cancelled):  # the engine's way to stop when asked
            post(EngineFeedEnded(run.generation, cancelled=True))
        else:
            # ptytui's own errors (bad input) word themselves in one line; a traceback is for bugs.
            details = "" if isinstance(exc, PtytuiError) else traceback.format_exc(limit=8)
            post(EngineFeedEnded(run.generation, cancelled=False, error=one_line(exc), details=details))
        return
    finally:
        close = getattr(events, "close", None)
        if close is not None:  # run the engine's cleanup now, in this thread
            close()
    post(EngineFeedEnded(run.generation, cancelled=worker.is_cancelled or run.cancel.is_set()))


def write_export(writer: Callable[[WorkbenchState], list[str]], state: WorkbenchState,
                 threads: ThreadsInside) -> tuple[str, ...]:
    """The export worker's body (in its thread): the paths the writer wrote."""
    with threads.inside():
        return tuple(writer(state))
