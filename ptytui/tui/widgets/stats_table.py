"""Tensor statistics records (inputs and outputs of a run): a table and histogram sparklines.

One row per record: mean, std, min, max, nonzero fraction, NaN/Inf; the histograms go beneath
as sparklines of their occupied symlog bins, so the table fits 80 columns. No engine calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ptytui.present.format import (
    HEALTH_STYLE,
    compact,
    histogram_span_label,
    histogram_sparkline,
    percent,
    stats_health,
)

if TYPE_CHECKING:
    from ptytui.core.stats import TensorStats

COLUMNS = ("record", "mean", "std", "min", "max", "nonzero", "NaN/Inf")


class StatsTable(Static):
    """Records of one run: inputs first (as fed), then outputs (coloured by health).

    A Rich table in one Static rather than a DataTable: an overview holds one per run, and a
    single widget is far cheaper to restyle and redraw when the screen comes back into view.
    """

    DEFAULT_CSS = """
    StatsTable { height: auto; }
    """

    def show_records(self, inputs: Mapping[str, TensorStats], outputs: Mapping[str, TensorStats]) -> None:
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold", expand=False)
        for label in COLUMNS:
            table.add_column(label, justify="left" if label == "record" else "right", no_wrap=True,
                             overflow="ellipsis", max_width=24 if label == "record" else None)
        for role, records in (("in", inputs), ("out", outputs)):
            for name, record in records.items():
                level = stats_health(record, is_output=role == "out" and not name.endswith(".phase"))
                style = HEALTH_STYLE[level] if role == "out" and level != "healthy" else ""
                table.add_row(*record_cells(f"{role} {short_name(name)}", record, style))
        if not inputs and not outputs:
            self.update(Text("no statistics yet: they appear with the first batch", style="dim"))
        else:
            self.update(table)


def short_name(name: str) -> str:
    """Record names shortened for narrow cells: NAME.amplitude -> NAME.amp, NAME.phase -> NAME.ph."""
    if name.endswith(".amplitude"):
        return name[: -len("amplitude")] + "amp"
    if name.endswith(".phase"):
        return name[: -len("phase")] + "ph"
    return name


def record_cells(label: str, record: TensorStats, style: str = "") -> list:
    """The cells of one record's row."""
    nonfinite = record.nan_count + record.inf_count
    finite = record.finite_count > 0
    return [
        Text(label, style=style, overflow="ellipsis", no_wrap=True),
        *[Text(compact(value) if finite else "-", justify="right")
          for value in (record.mean, record.std, record.min, record.max)],
        Text(percent(record.nonzero_fraction), style=style, justify="right"),
        Text(f"{record.nan_count}/{record.inf_count}", style="bold red" if nonfinite else "",
             justify="right"),
    ]


def histogram_lines(inputs: Mapping[str, TensorStats], outputs: Mapping[str, TensorStats],
                    width: int = 24) -> Text:
    """One line per record: role and name, the histogram sparkline, the value span it covers."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for role, records in (("in", inputs), ("out", outputs)):
        for name, record in records.items():
            if text:
                text.append("\n")
            text.append(f"{role} {short_name(name)}"[:22].ljust(23), style="dim")
            text.append(histogram_sparkline(record, width))
            text.append(f" {histogram_span_label(record)}", style="dim")
    return text
