"""What every workbench screen shares: the navigation bar (number keys), the status line (what
the engine is doing) and the hook through which the app hands it the state after each update."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.events import ScreenResume
from textual.screen import Screen
from textual.widgets import Footer, Static

from ptytui.tui.state import PARTS, WorkbenchState


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's scans (``gc.freeze``).

    Modules, classes and screens built at start (and TensorFlow's objects once the engine has
    loaded) live as long as the app; without this, each full collection walks them all and
    stalls a key press by a hundred milliseconds or more on a slow core.
    """
    import gc  # noqa: PLC0415

    gc.freeze()

SCREENS = (
    ("1", "overview", "Overview"),
    ("2", "layers", "Layers"),
    ("3", "findings", "Findings"),
    ("4", "metrics", "Metrics"),
    ("5", "export", "Export"),
)
EVERYTHING = frozenset(PARTS)


class NavBar(Static):
    """One line: the screens with their keys (current one highlighted) and the workspace."""

    def show(self, current: str, workspace: str) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        for key, mode, label in SCREENS:
            style = "reverse bold" if mode == current else ""
            text.append(f" {key} {label} ", style=style)
        if workspace:
            text.append(f"  {workspace}", style="dim")
        self.update(text, layout=False)  # one line, fixed height: repaint only


class StatusLine(Static):
    """What the engine is doing now: loading TensorFlow, running model x split, done, failed.

    One line, cut with an ellipsis; an engine error or an unreadable input is shown whole
    (wrapped over as many lines as it takes): that message is what the user must act on.
    """

    def show(self, state: WorkbenchState) -> None:
        whole = state.feed_status == "failed" or bool(state.input_errors())
        self.set_class(state.feed_status == "loading", "-loading")
        self.set_class(whole, "-failed")
        self.set_class(state.feed_status == "running" and not whole, "-running")
        prefix = {"loading": "⧗ ", "running": "▶ ", "done": "■ ", "failed": "✗ ", "cancelled": "■ "}
        text = Text(prefix.get(state.feed_status, "") + state.summary_line(), no_wrap=not whole,
                    overflow="fold" if whole else "ellipsis")
        # Fixed height: repaint only; a whole message may change the height, so lay out again.
        self.update(text, layout=whole or self.has_class("-whole"))
        self.set_class(whole, "-whole")


class WorkbenchFooter(Footer):
    """Textual's footer, rebuilt only when the keys it shows change.

    Textual's Footer recomposes (a dozen FooterKey widgets, each styled) every time its screen
    publishes its bindings, which a mode switch does even when the keys are the same. That was
    most of a switch's UI-thread time (113 ms -> 27 ms without it, 15 ms without the restyle on
    resume as well, at 120x40). The keys shown are compared first.
    """

    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        if not (screen.app.app_focus and self.is_attached and screen is self.screen):
            super().bindings_changed(screen)  # Textual's footer does nothing now; nothing to remember
            return
        shown = self._keys_shown(screen)
        if shown == self._shown:
            self._bindings_ready = True
            return
        self._shown = shown
        super().bindings_changed(screen)

    def _keys_shown(self, screen: Screen) -> tuple:
        keys = tuple((binding.key, binding.key_display, binding.description, binding.action, binding.group,
                      enabled, tooltip)
                     for _, binding, enabled, tooltip in screen.active_bindings.values() if binding.show)
        return keys, self.show_command_palette, self.compact


def app_style_signature(app) -> tuple:
    """What the app contributes to every widget's style: its classes (-wide), pseudo-classes
    (dark/light, focus), theme and ANSI mode. A screen styled under the same signature is current."""
    return (frozenset(app.classes), frozenset(app.pseudo_classes), app.theme, app.ansi_color)


class WorkbenchScreen(Screen):
    """Base of the five top-level screens (one Textual mode each).

    The app hands a screen its state through ``show_state`` after each update; a screen built or
    brought back into view reads ``app.state`` once to catch up, and keeps the state last shown
    (``shown_state``) for its actions. What a screen asks of the app it posts as a message
    (``ptytui.tui.messages``); it never changes the state itself.
    """

    MODE: ClassVar[str] = ""
    shown_state: WorkbenchState  # the state this screen last showed (set by show_state)
    _styled_under: tuple | None = None  # app_style_signature when the screen was last restyled

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        yield StatusLine(id="status")
        yield from self.compose_body()
        yield WorkbenchFooter()

    def compose_body(self) -> ComposeResult:  # pragma: no cover - every screen overrides it
        yield from ()

    def on_mount(self) -> None:
        # Textual calls on_mount of every class in the MRO: subclasses use setup_body instead.
        self._drawn_versions: dict[str, int] = {}
        self.setup_body()
        self.show_state(self.app.state, EVERYTHING)
        # A screen lives as long as the app: keep its widgets out of the collector's full scans.
        self.call_after_refresh(freeze_heap)

    def setup_body(self) -> None:
        """Screens override this for one-time setup after compose (columns, caches)."""

    def on_screen_resume(self, event: ScreenResume) -> None:
        # Textual restyles the whole screen on every resume (the handler below ours in the MRO
        # runs after this one). Widgets restyle themselves when their own classes change, so a
        # full pass is needed only when the app's style inputs changed since the last one.
        signature = app_style_signature(self.app)
        if self.is_mounted and signature == self._styled_under:
            event.refresh_styles = False
        elif event.refresh_styles:
            self._styled_under = signature
        if self.is_mounted:  # back into view: redraw only what moved while it was hidden
            state = self.app.state
            moved = {part for part, version in state.versions.items()
                     if self._drawn_versions.get(part) != version}
            self.show_state(state, moved)

    def show_state(self, state: WorkbenchState, changed: set[str] | frozenset[str]) -> None:
        """Bring the screen up to date with ``state``; ``changed`` names the parts that moved."""
        self.shown_state = state
        self.query_one(NavBar).show(self.MODE, getattr(self.app, "workspace_label", ""))
        self.query_one(StatusLine).show(state)
        self.update_body(state, changed)
        for part in changed:
            if part in state.versions:
                self._drawn_versions[part] = state.versions[part]

    def update_body(self, state: WorkbenchState, changed: set[str] | frozenset[str]) -> None:
        """Screens override this to update their widgets."""
