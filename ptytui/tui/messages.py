"""What reports upward to the app: workers (the engine feed) and screens post these messages,
and the app's handlers, on the UI thread, own every change to the workbench's state.

Each message carries plain, immutable values (ints, strings, bools): nothing a handler receives
is shared with the thread or the widget that sent it.
"""

from __future__ import annotations

from textual.message import Message


class EngineEventsReady(Message):
    """Doorbell from the engine worker: events wait in the batcher of run ``generation``."""

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class EngineFeedEnded(Message):
    """The feed of run ``generation`` stopped: finished, cancelled, or failed with ``error`` (one
    line) and ``details`` (the traceback, for the error dialog)."""

    def __init__(self, generation: int, *, cancelled: bool, error: str = "", details: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.cancelled = cancelled
        self.error = error
        self.details = details


class DecisionConfirmed(Message):
    """The Findings screen's decision panel was confirmed with a valid decision.

    ``option`` is one of ``ptytui.inputs.decisions.DECISION_OPTIONS``; ``intervention`` is given
    for ``apply-fix`` only (None otherwise); ``rationale`` is non-empty.
    """

    def __init__(self, option: str, rationale: str, intervention: str | None = None) -> None:
        super().__init__()
        self.option = option
        self.rationale = rationale
        self.intervention = intervention


class ExportRequested(Message):
    """The Export screen asks for the report and artifacts to be written (key `w`)."""


class DecideRequested(Message):
    """A screen asks for the decision panel (the Overview's `d`): the app switches to Findings."""
