"""Help (`?`): every key of the workbench, global and per screen, read from the bindings
themselves so the list cannot drift from what the keys do; and the error dialog."""

from __future__ import annotations

from typing import Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

FOCUS_KEYS = (
    ("tab / shift+tab", "move focus between panels, lists and fields"),
    ("up / down, pgup / pgdn", "move in a list or tree; scroll a focused panel"),
    ("enter / space", "expand a tree node, press a button, pick a radio option"),
    ("escape", "close this help or a dialog"),
)


def binding_rows(bindings: Iterable) -> list[tuple[str, str]]:
    """(keys, what they do) of bindings: the tooltip when there is one, else the description."""
    rows = []
    for binding in bindings:
        if isinstance(binding, tuple):
            binding = Binding(*binding)
        keys = binding.key_display or " / ".join(k.strip() for k in binding.key.split(","))
        rows.append((keys, binding.tooltip or binding.description or binding.action))
    return rows


def keys_table(sections: list[tuple[str, list[tuple[str, str]]]]) -> Group:
    parts = []
    for title, rows in sections:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, style="bold", min_width=12)
        grid.add_column(overflow="fold")
        for keys, description in rows:
            grid.add_row(f"  {keys}", description)
        parts += [Text(title, style="bold underline"), grid, Text("")]
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    """Every key, grouped: global, then each screen's own."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss_help", "Close help")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static("ptytui keys", classes="section-title")
            with VerticalScroll(id="help-keys"):
                yield Static(keys_table(self.sections + [("focus and lists", list(FOCUS_KEYS))]))
            yield Static("escape, ? or q closes", classes="dim-note")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class ErrorScreen(ModalScreen[None]):
    """An engine error, in one line plus details; the workbench stays up behind it."""

    BINDINGS = [Binding("escape,enter", "dismiss_error", "Close")]

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__()
        self.message = message
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical(id="error-dialog"):
            yield Static(Text("engine error", style="bold red"), classes="section-title")
            yield Static(Text(self.message), id="error-message")
            if self.details:
                with VerticalScroll(id="error-details"):
                    yield Static(Text(self.details, style="dim"))
            yield Static("the workbench is still running: r runs again, escape closes", classes="dim-note")
            yield Button("Close", id="error-close", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_dismiss_error(self) -> None:
        self.dismiss(None)
