"""A 2-D array drawn with half-block characters (two pixels per cell), no graphics protocol.

Amplitude is drawn in grey levels between its own min and max, diffraction on a log scale,
phase on a cyclic colour wheel; the border subtitle states the value range so that an all-zero
patch reads as "all zero" rather than as a dark picture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from ptytui.present.format import number

if TYPE_CHECKING:  # numpy loads with the first patch, not the first frame
    import numpy as np

KINDS = ("amplitude", "log", "phase")


def to_rgb(array: np.ndarray, kind: str) -> np.ndarray:
    """(H, W) real array -> (H, W, 3) uint8 image for the given kind."""
    import numpy as np  # noqa: PLC0415

    values = np.asarray(array, dtype=np.float64)
    values = np.where(np.isfinite(values), values, 0.0)
    if kind == "phase":
        hue = (values + np.pi) / (2 * np.pi)
        return _hsv_to_rgb(hue, 0.75, 0.95)
    if kind == "log":
        values = np.log1p(np.abs(values))
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    grey = np.round(scaled * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _hsv_to_rgb(hue: np.ndarray, saturation: float, value: float) -> np.ndarray:
    import numpy as np  # noqa: PLC0415

    h6 = (hue % 1.0) * 6
    sector = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    v = np.full_like(hue, value)
    p = np.full_like(hue, value * (1 - saturation))
    q = value * (1 - saturation * f)
    t = value * (1 - saturation * (1 - f))
    rgb = np.stack([np.choose(sector, [v, q, p, p, t, v]),
                    np.choose(sector, [t, v, v, q, p, p]),
                    np.choose(sector, [p, p, t, v, v, q])], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def plane(array: np.ndarray, kind: str) -> np.ndarray:
    """The 2-D plane to draw: first channel of channel-last data; |z| or angle(z) if complex."""
    import numpy as np  # noqa: PLC0415

    data = np.asarray(array)
    while data.ndim > 2:
        data = data[..., 0]
    if np.iscomplexobj(data):
        data = np.angle(data) if kind == "phase" else np.abs(data)
    return data.astype(np.float64)


class PatchImage(Widget):
    """One patch as half-block pixels, scaled to the widget's size (nearest neighbour)."""

    DEFAULT_CSS = """
    PatchImage { width: 18; height: 10; border: round $panel-lighten-2; }
    """

    def __init__(self, title: str = "", kind: str = "amplitude", **kwargs) -> None:
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.border_title = title
        self._plane: np.ndarray | None = None
        self._rendered: tuple[tuple[int, int], RenderableType] | None = None  # (size, pixels)

    def show(self, array: np.ndarray | None) -> None:
        """Draw this array (None: an empty slot)."""
        import numpy as np  # noqa: PLC0415

        self._rendered = None
        if array is None:
            self._plane = None
            self.border_subtitle = ""
        else:
            self._plane = plane(array, self.kind)
            low, high = float(np.nanmin(self._plane)), float(np.nanmax(self._plane))
            self.border_subtitle = "all zero" if low == high == 0 else f"{number(low, 2)}..{number(high, 2)}"
        self.refresh()

    def render(self) -> RenderableType:
        width, height = self.content_size
        if self._plane is None or width < 1 or height < 1:
            return Text("no patch yet", style="dim", justify="center")
        if self._rendered is not None and self._rendered[0] == (width, height):
            return self._rendered[1]
        from PIL import Image  # noqa: PLC0415 - Pillow only when an image is drawn
        from rich_pixels import Pixels  # noqa: PLC0415

        image = Image.fromarray(to_rgb(self._plane, self.kind))
        pixels = Pixels.from_image(image, resize=(width, height * 2))
        self._rendered = ((width, height), pixels)
        return pixels


class PatchStrip(Widget):
    """Several patches side by side (input, output amplitude, phase), each with its title and
    value range: one widget instead of one per image, so panels stay cheap to restyle."""

    DEFAULT_CSS = """
    PatchStrip { width: auto; height: auto; }
    """

    def __init__(self, panels: list[tuple[str, str]], *, cell: tuple[int, int] = (16, 8), **kwargs) -> None:
        """``panels``: (title, kind) of each image; ``cell``: (columns, rows) of each image."""
        super().__init__(**kwargs)
        for _, kind in panels:
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.panels = panels
        self.cell = cell
        self._planes: list[np.ndarray | None] = [None] * len(panels)
        self._rendered: RenderableType | None = None

    def show(self, arrays: list[np.ndarray | None]) -> None:
        self._planes = [None if a is None else plane(a, kind) for a, (_, kind) in zip(arrays, self.panels)]
        self._rendered = None
        self.refresh(layout=True)

    def get_content_width(self, container, viewport) -> int:
        return len(self.panels) * (self.cell[0] + 1) - 1

    def get_content_height(self, container, viewport, width: int) -> int:
        return self.cell[1] + 2

    def render(self) -> RenderableType:
        if self._rendered is None:
            self._rendered = self._build()
        return self._rendered

    def _build(self) -> RenderableType:
        import numpy as np  # noqa: PLC0415
        from rich.console import Group  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        columns, rows = self.cell
        grid = Table.grid(padding=(0, 1))
        cells = []
        for (title, kind), data in zip(self.panels, self._planes):
            grid.add_column(width=columns, no_wrap=True)
            heading = Text(title[:columns], style="bold", no_wrap=True)
            if data is None:
                body: RenderableType = Text("no patch yet\n" + "\n" * (rows - 1), style="dim")
                caption = Text("")
            else:
                from PIL import Image  # noqa: PLC0415 - Pillow only when an image is drawn
                from rich_pixels import Pixels  # noqa: PLC0415

                body = Pixels.from_image(Image.fromarray(to_rgb(data, kind)), resize=(columns, rows * 2))
                low, high = float(np.nanmin(data)), float(np.nanmax(data))
                caption = Text("all zero" if low == high == 0 else f"{number(low, 2)}..{number(high, 2)}",
                               style="dim", no_wrap=True, overflow="ellipsis")
            cells.append(Group(heading, body, caption))
        grid.add_row(*cells)
        return grid
