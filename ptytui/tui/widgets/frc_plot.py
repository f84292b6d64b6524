"""FRC curves (Fourier ring correlation per frequency bin) of each model, drawn with textual-plot.

Imported only when metrics exist, so the workbench's first frame does not pay for the plot
library. The 0.5 and 1/7 thresholds are drawn as reference lines.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from textual_plot import HiResMode, LegendLocation, PlotWidget

CURVE_STYLES = ("bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "bright_red")


class FRCPlot(PlotWidget):
    """Amplitude (or phase) FRC of every model against the frequency bin."""

    DEFAULT_CSS = """
    FRCPlot { height: 16; min-height: 10; }
    """

    def __init__(self, part: str = "amplitude", **kwargs) -> None:
        super().__init__(allow_pan_and_zoom=False, **kwargs)
        self.part = part
        self._curves: Mapping[str, Mapping[str, list[float]]] = {}

    def on_mount(self) -> None:
        # PlotWidget's own on_mount (called after this one) clears the plot: draw after it.
        self.call_after_refresh(self._draw)

    def show(self, curves: Mapping[str, Mapping[str, list[float]]]) -> None:
        self._curves = curves
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        self.clear()
        longest = 1.0
        for i, (model, curve) in enumerate(self._curves.items()):
            bins = np.asarray(curve["bins"], dtype=float)
            values = np.asarray(curve[self.part], dtype=float)
            longest = max(longest, float(bins.max(initial=1.0)))
            self.plot(bins, values, line_style=CURVE_STYLES[i % len(CURVE_STYLES)],
                      hires_mode=HiResMode.BRAILLE, label=model)
        for threshold, label in ((0.5, "0.5"), (1 / 7, "1/7")):
            self.plot([0.0, longest], [threshold, threshold], line_style="grey50",
                      hires_mode=HiResMode.BRAILLE, label=label)
        self.set_ylimits(0.0, 1.05)
        self.set_xlabel("frequency bin")
        self.set_ylabel(f"{self.part} FRC")
        # FRC starts near 1 at low frequency (left) and falls: the top right is the empty corner.
        self.show_legend(LegendLocation.TOPRIGHT)
