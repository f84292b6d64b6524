"""Errors the user can act on, and the exit codes they map to (the one place that owns them).

Every problem with the user's input (files, workspace, flags) is raised as an ``InputError``
whose message is exactly one line naming the file, what was expected and what was found.
The CLI prints that line to stderr and exits 2; the TUI shows it and stays up.
"""

from __future__ import annotations

import re
from pathlib import Path

EXIT_OK = 0
EXIT_FINDING = 1  # an error finding was raised or a gate tripped
EXIT_BAD_INPUT = 2  # bad usage or bad input
EXIT_CANCELLED = 3  # cancelled or interrupted


class PtytuiError(Exception):
    """Base class of errors that end a command with a clear message and an exit code."""

    exit_code = EXIT_BAD_INPUT

    def one_line(self) -> str:
        """The message as one line (newlines folded), ready for stderr or a notification."""
        return " ".join(str(self).split())


class InputError(PtytuiError):
    """Bad input: a file, a workspace entry or a flag is not what ptytui expects.

    Build it with the parts so every message has the same shape::

        InputError("data/test.npz", "key 'diffraction' (M, N, N) float32",
                   "keys ['foo', 'bar']", hint="is this a ptychography NPZ?")
        -> "data/test.npz: expected key 'diffraction' (M, N, N) float32, found keys ['foo', 'bar'] (is this ...)"
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, where: str | Path | None, expected: str, found: str, hint: str | None = None):
        self.where = str(where) if where is not None else None
        self.expected = expected
        self.found = found
        self.hint = hint
        prefix = f"{self.where}: " if self.where else ""
        msg = f"{prefix}expected {expected}, found {found}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class UsageError(PtytuiError):
    """Bad command-line usage that is not about a file (conflicting flags, bad values)."""

    exit_code = EXIT_BAD_INPUT


class MissingDependency(PtytuiError):
    """An optional dependency (TensorFlow, the ptycho package, ...) is not installed."""

    exit_code = EXIT_BAD_INPUT


class Cancelled(PtytuiError):
    """The user cancelled a run (Ctrl-C in the CLI, a cancel in the TUI)."""

    exit_code = EXIT_CANCELLED

    def __init__(self, what: str = "run"):
        super().__init__(f"{what} cancelled")


# TensorFlow wraps errors raised inside a graph in its own traceback and node tags; a user needs
# what went wrong, not where in Keras.
_TF_TAGS = re.compile(r"\{\{function_node [^}]*\}\}|\[\[\{\{node [^\]]*\}\}\]\]|\[Op:[^\]]*\]")
_MODULE_PATH = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Z]\w*(?:Error|Exception)\b)")
_TRACE_HEADERS = ("Graph execution error:", "Detected at node", "Traceback (most recent call last)",
                  "Hint: If you want to see a list of allocated tensors")
ONE_LINE_LIMIT = 400


def one_line(exc: BaseException) -> str:
    """Any error as one readable line: a ``PtytuiError`` as it words itself; anything else as
    ``Type: message`` with TensorFlow's graph tracebacks, node tags and module paths dropped.

    The one formatter for errors shown to the user (stderr lines, run failures, TUI messages).
    """
    if isinstance(exc, PtytuiError):
        return exc.one_line()
    text = str(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
    kept: list[str] = []
    in_frame = False
    for raw in text.splitlines():
        line = _TF_TAGS.sub("", raw).strip()
        if line.startswith('File "'):
            in_frame = True  # a traceback frame: its code and caret lines follow, indented
            continue
        if in_frame and raw.startswith("    "):
            continue
        in_frame = False
        if not line or line.startswith(_TRACE_HEADERS) or not line.strip("^~ "):
            continue
        line = _MODULE_PATH.sub("", line)
        if line not in kept:  # py_function errors repeat the Python error after its traceback
            kept.append(line)
    summary = " ".join(" ".join(kept).split()) or type(exc).__name__
    if not summary.startswith(type(exc).__name__):
        summary = f"{type(exc).__name__}: {summary}"
    return summary[:ONE_LINE_LIMIT]
