"""Positions a model was fed, drawn against its reassembly canvas as a character grid.

A patch shifted by (dx, dy) still overlaps the centre crop only while |dx| < N and |dy| < N:
that window is shaded, offsets inside it are drawn '•' and offsets outside it '×' (their patch
leaves the crop entirely and the output there is exactly zero). y grows downward (image rows).
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from ptytui.present.format import percent
from ptytui.tui.state import PositionsView

WINDOW_STYLE = "on #1d3b2a"
VISIBLE_STYLE = "bold green"
OFF_STYLE = "bold red"


def grid_lines(view: PositionsView, width: int, height: int) -> list[Text]:
    """The grid as ``height`` lines of ``width`` cells."""
    import numpy as np  # noqa: PLC0415

    offsets = view.offsets
    half = float(view.patch or 0)
    xs = offsets[:, 0] if offsets.size else np.zeros(0)
    ys = offsets[:, 1] if offsets.size else np.zeros(0)
    # The drawn extent holds the window and every offset, with a one-pixel margin.
    x_low, x_high = min(-half, xs.min(initial=0.0)) - 1, max(half, xs.max(initial=0.0)) + 1
    y_low, y_high = min(-half, ys.min(initial=0.0)) - 1, max(half, ys.max(initial=0.0)) + 1

    def column(x: np.ndarray | float) -> np.ndarray:
        return np.clip(((np.asarray(x) - x_low) / (x_high - x_low) * width).astype(int), 0, width - 1)

    def row(y: np.ndarray | float) -> np.ndarray:
        return np.clip(((np.asarray(y) - y_low) / (y_high - y_low) * height).astype(int), 0, height - 1)

    cells = [[" "] * width for _ in range(height)]
    styles = [[""] * width for _ in range(height)]
    if half > 0:
        c0, c1 = int(column(-half + 1e-9)), int(column(half - 1e-9))
        r0, r1 = int(row(-half + 1e-9)), int(row(half - 1e-9))
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                cells[r][c] = "·"
                styles[r][c] = WINDOW_STYLE
    origin_r, origin_c = int(row(0.0)), int(column(0.0))
    cells[origin_r][origin_c] = "+"
    if offsets.size:
        visible = (np.abs(xs) < half) & (np.abs(ys) < half)
        # Off-canvas marks first so that a cell holding both shows the visible one.
        for mask, mark, style in ((~visible, "×", OFF_STYLE), (visible, "•", VISIBLE_STYLE)):
            for r, c in zip(row(ys[mask]), column(xs[mask])):
                cells[r][c] = mark
                styles[r][c] = style + (f" {WINDOW_STYLE}" if styles[r][c].endswith(WINDOW_STYLE) else "")
    lines = []
    for r in range(height):
        line = Text(no_wrap=True, overflow="crop")
        for c in range(width):
            line.append(cells[r][c], style=styles[r][c])
        lines.append(line)
    return lines


def legend(view: PositionsView) -> Text:
    """One line: how many offsets fall off the canvas, predicted vs observed visible fraction."""
    import numpy as np  # noqa: PLC0415

    offsets = view.offsets
    half = float(view.patch or 0)
    off = 0
    if offsets.size and half:
        off = int((~((np.abs(offsets[:, 0]) < half) & (np.abs(offsets[:, 1]) < half))).sum())
        count = f"{off}/{len(offsets)} off canvas"
    else:
        count = "no offsets"
    style = OFF_STYLE if offsets.size and off == len(offsets) else ""
    canvas = f" P={view.canvas}" if view.canvas else ""
    return Text(f"N={view.patch}{canvas} · {count}", style=style, no_wrap=True, overflow="ellipsis")


class PositionsGrid(Widget):
    """Offsets as fed, against the window |dx|, |dy| < N in which a patch still reaches the crop."""

    DEFAULT_CSS = """
    PositionsGrid { width: 1fr; min-width: 24; height: auto; border: round $panel-lighten-2; }
    """
    GRID_ROWS = 9  # plus one legend line

    def __init__(self, view: PositionsView | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: PositionsView | None = None
        if view is not None:
            self.show(view)

    def show(self, view: PositionsView) -> None:
        self.view = view
        self.border_title = f"{view.model} × {view.split}"
        self.border_subtitle = (f"visible: pred {percent(view.predicted_visible_fraction)}"
                                f" obs {percent(view.observed_nonzero_fraction)}")
        self.refresh()

    def get_content_height(self, container, viewport, width: int) -> int:
        # A fixed height, so grid containers with auto rows size it right too.
        return self.GRID_ROWS + 1

    def render(self) -> RenderableType:
        width, height = self.content_size
        if self.view is None or width < 4 or height < 3:
            return Text("positions not measured yet", style="dim")
        lines = grid_lines(self.view, width, height - 1)
        lines.append(legend(self.view))
        return Text("\n").join(lines)
