"""Metrics: first a side-by-side summary (models x key metrics, amplitude and phase), then per
model the amplitude and phase metrics against the ground truth, sanity flags and FRC curves. Until the engine computes metrics the slot says so; nothing is ever filled in."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, ItemGrid, VerticalScroll
from textual.widgets import Static

from ptytui.present.format import HEALTH_STYLE, compact
from ptytui.tui.screens.base import WorkbenchScreen
from ptytui.tui.state import MetricsView, WorkbenchState

EMPTY_TEXT = ("metrics not computed yet\n\n"
              "They come from the metrics engine (stitching, registration, MAE/MSE/PSNR/SSIM/MS-SSIM/FRC)\n"
              "against the ground truth: `ptytui compare WORKSPACE`. Nothing is shown until then.")


def _blank(value) -> bool:
    return value is None or value == ""


#: The metrics the summary compares side by side (each for amplitude and phase): structure,
#: signal-to-noise and resolution. At 80 columns six value columns and the model name fit.
KEY_METRICS = ("ssim", "psnr", "frc50")
#: Widest number ``compact`` writes (3 significant digits, short exponent: "-8.23e-5").
NUMBER_WIDTH = 8


def summary_table(rows: list[dict], flags: list[dict]) -> Table:
    """Models x key metrics, amplitude and phase side by side; the model's sanity flags counted."""
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(str(row.get("model")), {})[str(row.get("metric"))] = row
    # One space between columns (left padding only): the model and six numbers fit in 80 columns.
    table = Table(title="summary (amplitude / phase)", title_justify="left", title_style="bold",
                  box=None, padding=(0, 0, 0, 1), show_edge=False, header_style="bold")
    table.add_column("\nmodel", no_wrap=True)
    for metric in KEY_METRICS:
        for part in ("amp", "ph"):
            table.add_column(f"{metric}\n{part}", justify="right", no_wrap=True, min_width=NUMBER_WIDTH)
    table.add_column("\nflags", justify="right", no_wrap=True)
    for model, metrics in by_model.items():
        cells = [compact(metrics[m].get(k)) if m in metrics and not _blank(metrics[m].get(k)) else "-"
                 for m in KEY_METRICS for k in ("amplitude", "phase")]
        count = sum(str(f.get("model")) == model for f in flags)
        table.add_row(model, *cells, Text(str(count), style=HEALTH_STYLE["warning"]) if count else "0")
    return table


def model_table(model: str, rows: list[dict]) -> Table:
    """One model's metrics: amplitude and phase per metric, scalar rows in the value column."""
    failed = all(_blank(row.get(k)) for row in rows for k in ("amplitude", "phase", "value"))
    table = Table(title=Text(model + ("  (no values: the model failed)" if failed else ""),
                             style=HEALTH_STYLE["warning"] if failed else "bold"),
                  title_justify="left", box=None, padding=(0, 1), show_edge=False, header_style="bold")
    # Widths from the values: the grid's cell never squeezes a number into "0.89...".
    table.add_column("metric", no_wrap=True, min_width=max((len(str(r.get("metric"))) for r in rows), default=6))
    for column in ("amplitude", "phase", "value"):
        table.add_column(column, justify="right", no_wrap=True, min_width=max(len(column), NUMBER_WIDTH))
    for row in rows:
        table.add_row(str(row.get("metric")), *[("" if _blank(row.get(k)) else compact(row.get(k)))
                                                for k in ("amplitude", "phase", "value")])
    return table


#: A model's table at its widest: the longest metric name (22), three number columns, padding.
MODEL_TABLE_WIDTH = 58


class MetricsScreen(WorkbenchScreen):
    MODE = "metrics"

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="metrics-body", classes="body"):
            yield Static(EMPTY_TEXT, id="metrics-empty", classes="empty-slot")
            yield Static("", id="metrics-summary")
            yield ItemGrid(id="metrics-table", min_column_width=MODEL_TABLE_WIDTH)
            yield Static("", id="metrics-flags")
            yield Container(id="frc-plots")

    def setup_body(self) -> None:
        self._plots_mounted = False
        self._model_tables: dict[str, Static] = {}

    def update_body(self, state: WorkbenchState, changed) -> None:
        if "metrics" not in changed:
            return
        metrics = state.metrics
        has = metrics is not None
        self.query_one("#metrics-empty", Static).display = not has
        for selector in ("#metrics-summary", "#metrics-table", "#metrics-flags", "#frc-plots"):
            self.query_one(selector).display = has
        if metrics is not None:
            self._show(metrics)

    def _show(self, metrics: MetricsView) -> None:
        self.query_one("#metrics-summary", Static).update(summary_table(metrics.rows, metrics.flags))
        grid = self.query_one("#metrics-table", ItemGrid)
        by_model: dict[str, list[dict]] = {}
        for row in metrics.rows:
            by_model.setdefault(str(row.get("model")), []).append(row)
        for model, rows in by_model.items():
            if model not in self._model_tables:
                self._model_tables[model] = Static(classes="metrics-model")
                grid.mount(self._model_tables[model])
            self._model_tables[model].update(model_table(model, rows))
        for model in [m for m in self._model_tables if m not in by_model]:
            self._model_tables.pop(model).remove()
        flags = Text()
        for flag in metrics.flags:
            if flags:
                flags.append("\n")
            flags.append(f"! {flag.get('model')}: {flag.get('flag')}", style=HEALTH_STYLE["warning"])
            flags.append(f"  {flag.get('message', '')}")
        self.query_one("#metrics-flags", Static).update(flags or Text("no sanity flags", style="dim"))
        if metrics.frc:
            from ptytui.tui.widgets.frc_plot import FRCPlot  # noqa: PLC0415 - the plot library only when needed

            container = self.query_one("#frc-plots", Container)
            if not self._plots_mounted:
                container.mount(FRCPlot("amplitude", id="frc-amplitude"), FRCPlot("phase", id="frc-phase"))
                self._plots_mounted = True
            for plot in container.query(FRCPlot):
                plot.show(metrics.frc)
