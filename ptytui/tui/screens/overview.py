"""Overview: the root-cause verdict first (status, cause, its numbers, the suggested decision),
then the runs table (a cursor: enter shows a run's panel; f the failing run's, p its positions
against the canvas); per model x split the progress, live input/output statistics, the output's nonzero
trend, the first patch as half-block images; then the model cards and the positions per split
against each model's reassembly canvas."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Group
from rich.progress_bar import ProgressBar as RichProgressBar
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ItemGrid, Vertical, VerticalScroll
from textual.widgets import DataTable, Sparkline, Static

from ptytui.present.format import HEALTH_STYLE, percent, stats_health
from ptytui.present.verdict import VERDICT_STATUS_STYLE, verdict_brief
from ptytui.tui.messages import DecideRequested
from ptytui.tui.screens.base import WorkbenchScreen
from ptytui.tui.state import RunKey, RunView, WorkbenchState
from ptytui.tui.widgets.patch_image import PatchStrip
from ptytui.tui.widgets.positions_grid import PositionsGrid
from ptytui.tui.widgets.stats_table import StatsTable, histogram_lines

STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "bold red", "cancelled": "yellow",
                "waiting": "dim"}


def _key_id(prefix: str, key: RunKey) -> str:
    """A DOM id for a model x split (ids allow letters, digits, '-' and '_')."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{key[0]}--{key[1]}")
    return f"{prefix}-{safe}"


class RunPanel(Vertical):
    """One model x split: progress, statistics table, nonzero trend and the first patch."""

    def __init__(self, run: RunView, **kwargs) -> None:
        super().__init__(classes="run-panel", **kwargs)
        self.run = run
        self._drawn_version = -1

    def compose(self) -> ComposeResult:
        # Few widgets per panel: restyling cost grows with the number of widgets on screen.
        # Kept by reference: on_mount may run before the nested ones are attached (no query).
        self._progress = Static("", classes="run-progress")
        self._stats = StatsTable()
        self._histograms = Static("", classes="run-histograms")
        self._trend = Sparkline([], summary_function=max)
        self._patches = PatchStrip([("input", "log"), ("amplitude", "amplitude"), ("phase", "phase")],
                                   classes="run-patches")
        yield self._progress
        yield self._stats
        with Horizontal(classes="run-lower"):
            with Vertical(classes="run-charts"):
                yield self._histograms
                yield self._trend
            yield self._patches

    def on_mount(self) -> None:
        self._draw()

    def show(self, run: RunView) -> None:
        self.run = run
        if self.is_mounted and run.version != self._drawn_version:  # before mount, on_mount draws
            self._draw()

    def _draw(self) -> None:
        run = self.run
        self._drawn_version = run.version
        positions = f"positions {run.positions}" if run.positions else "positions -"
        batch = f" · batch {run.batch_size}" if run.batch_size else ""
        self.border_title = f"{run.model} × {run.split}"
        self.border_subtitle = f"{positions}{batch}"
        progress = Table.grid(padding=(0, 1))
        progress.add_column(width=32)
        progress.add_column()
        progress.add_row(RichProgressBar(total=run.total or 1, completed=run.done, width=32),
                         Text(f"{run.done}/{run.total} {run.status}", style=STATUS_STYLE.get(run.status, "")))
        self._progress.update(progress, layout=False)
        self._stats.show_records(run.inputs, run.outputs)
        # The sparkline scales to its own min..max: say what that range is.
        trend = run.nonzero_trend
        low, high = (percent(min(trend)), percent(max(trend))) if trend else ("-", "-")
        span = f" {low}..{high}" if low != high else f" {high}"
        charts = histogram_lines(run.inputs, run.outputs)
        charts.append(f"\noutput nonzero per update{span}", style="dim")
        self._histograms.update(charts)
        # Rounded as the label is (0.01%), so noise below what is printed does not draw cliffs.
        self._trend.data = [round(value, 4) for value in trend]
        inputs, outputs = run.first_patch_inputs, run.first_patch_outputs
        diffraction = next((v for k, v in inputs.items() if "position" not in k), None)
        output = next(iter(outputs.values()), None)
        self._patches.show([diffraction, output, output])
        self.set_class(run.status == "failed", "-failed")
        if run.message or run.notes:
            self.border_subtitle = (run.message or run.notes[-1])[:60]


def card_renderable(model: str, card: Mapping[str, Any]) -> Group:
    """A model card (``card --json``) as a compact grid."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")

    def io_line(specs) -> str:
        return ", ".join(f"{s.get('name')} {tuple(s.get('shape') or ())} {s.get('dtype', '')}".strip()
                         for s in specs or []) or "-"

    grid.add_row("kind", str(card.get("kind", "-")))
    grid.add_row("loaded from", str(card.get("loaded_from", card.get("path", "-"))))
    if card.get("fallback"):
        grid.add_row("fallback", Text(str(card["fallback"]), style=HEALTH_STYLE["warning"]))
    grid.add_row("inputs", io_line(card.get("inputs")))
    grid.add_row("outputs", io_line(card.get("outputs")))
    takes = card.get("takes_positions")
    grid.add_row("positions", Text("takes positions" if takes else "no position input",
                                   style=HEALTH_STYLE["warning"] if takes else ""))
    for block in card.get("reassembly") or []:
        grid.add_row("reassembly", f"{block.get('type')} canvas {block.get('canvas')} patch {block.get('patch')}"
                                   f" ({block.get('path')})")
    if card.get("gridsize") is not None:
        grid.add_row("gridsize", str(card["gridsize"]))
    scale = card.get("intensity_scale")
    grid.add_row("intensity scale", f"{scale:.4g}" if isinstance(scale, (int, float)) else "-")
    if card.get("parameters") is not None:
        grid.add_row("parameters", f"{card['parameters']:,}")
    if card.get("missing_classes"):
        grid.add_row("missing", Text(", ".join(card["missing_classes"]), style=HEALTH_STYLE["error"]))
    return Group(Text(model, style="bold"), grid)


class OverviewScreen(WorkbenchScreen):
    MODE = "overview"
    AUTO_FOCUS = "#runs-summary"  # arrows move the runs cursor at once, enter shows the panel
    BINDINGS = [
        Binding("f", "failing_run", "Failing run", tooltip="the panel of the run the verdict names"),
        Binding("p", "failing_positions", "Its positions",
                tooltip="the failing run's positions against its canvas"),
        Binding("d", "decide", "Decide", tooltip="the decision panel (Findings screen)"),
    ]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="overview-body", classes="body"):
            yield Static("", id="verdict-brief")
            yield DataTable(id="runs-summary", cursor_type="row")
            yield Static("", id="runs-empty", classes="empty-slot")
            yield ItemGrid(id="run-panels", min_column_width=78)
            yield Static("Models", classes="section-title")
            yield Static("model cards not read yet", id="cards-empty", classes="empty-slot")
            yield ItemGrid(id="cards", min_column_width=58)
            yield Static("Positions against the canvas", classes="section-title")
            yield Static("positions not measured yet", id="positions-empty", classes="empty-slot")
            yield ItemGrid(id="positions", min_column_width=36, stretch_height=False)

    def setup_body(self) -> None:
        self._summary_widths: tuple[int, int] | None = None
        self._set_summary_columns(["model"], ["split"])
        self._panels: dict[RunKey, RunPanel] = {}
        self._cards: dict[str, Static] = {}
        self._grids: dict[RunKey, PositionsGrid] = {}
        # Focusing the runs table scrolls it into view; the verdict above it is what comes first.
        self.call_after_refresh(self.query_one("#overview-body", VerticalScroll).scroll_home, animate=False)

    def update_body(self, state: WorkbenchState, changed) -> None:
        if changed & {"findings", "decisions", "status"}:
            self._show_verdict(state)
        if "runs" in changed:
            self._show_runs(state)
        if "cards" in changed:
            self._show_cards(state)
        if "positions" in changed:
            self._show_positions(state)

    def _set_summary_columns(self, models: list[str], splits: list[str]) -> None:
        """Columns sized from the values here, not measured by the DataTable when idle: its
        header keeps the width it had when first drawn if a later measurement widens a column."""
        widths = (max(map(len, models)), max(map(len, splits)))
        if widths == self._summary_widths:
            return
        self._summary_widths = widths
        summary = self.query_one("#runs-summary", DataTable)
        summary.clear(columns=True)
        for label, width in (("model", widths[0]), ("split", widths[1]), ("positions", 9), ("done", 9),
                             ("out nonzero", 11), ("status", 9)):
            summary.add_column(label, key=label, width=width)

    def _show_runs(self, state: WorkbenchState) -> None:
        self._set_summary_columns(["model", *(run.model for run in state.runs.values())],
                                  ["split", *(run.split for run in state.runs.values())])
        summary = self.query_one("#runs-summary", DataTable)
        cursor = summary.cursor_row
        summary.clear()
        for key, run in state.runs.items():
            nonzero = run.output_nonzero_fraction()
            first_output = next((r for n, r in run.outputs.items() if not n.endswith(".phase")), None)
            level = stats_health(first_output) if first_output is not None else "unknown"
            summary.add_row(
                run.model, run.split, run.positions or "-", f"{run.done}/{run.total}",
                Text(percent(nonzero), style=HEALTH_STYLE[level] if level in ("error", "warning") else ""),
                Text(run.status, style=STATUS_STYLE.get(run.status, "")), key=_key_id("row", key))
        if state.runs:
            summary.move_cursor(row=min(cursor, len(state.runs) - 1), scroll=False)
        empty = self.query_one("#runs-empty", Static)
        empty.display = not state.runs
        if not state.runs:
            empty.update("no runs yet: the statistics of each model x split appear here as batches complete"
                         if state.feed_status in ("loading", "running") else
                         "no runs: press r to run the workspace")
        container = self.query_one("#run-panels", ItemGrid)
        for key, run in state.runs.items():
            panel = self._panels.get(key)
            if panel is None:
                # No DOM ids: after a restart the same model x split comes back while the old
                # panel is still being removed.
                panel = self._panels[key] = RunPanel(run)
                container.mount(panel)
            else:
                panel.show(run)
        for key in [k for k in self._panels if k not in state.runs]:
            self._panels.pop(key).remove()

    def _show_verdict(self, state: WorkbenchState) -> None:
        brief = self.query_one("#verdict-brief", Static)
        verdict = state.verdict
        brief.update(verdict_brief(verdict, state.current_decision,
                                   running=state.feed_status in ("loading", "running")))
        brief.border_title = "verdict" if verdict is None else f"verdict: {verdict.status}"
        for status in VERDICT_STATUS_STYLE:
            brief.set_class(verdict is not None and verdict.status == status, f"-{status}")
        keys = "f failing run · p its positions · d decide" if state.failing_run() is not None else "d decide"
        brief.border_subtitle = keys if verdict is not None else ""

    # ---- jumping to a run ------------------------------------------------------------------
    def _scroll_to(self, widget) -> None:
        self.query_one("#overview-body", VerticalScroll).scroll_to_widget(widget, animate=False, top=True)

    def show_run_panel(self, key: RunKey) -> bool:
        """Scroll the run's panel to the top of the view; False when there is none."""
        panel = self._panels.get(key)
        if panel is None:
            return False
        self._scroll_to(panel)
        return True

    def action_failing_run(self) -> None:
        key = self.shown_state.failing_run()
        if key is None or not self.show_run_panel(key):
            self.notify("no failing run: nothing the verdict names, no failed or empty run", severity="information")
            return
        rows = list(self.shown_state.runs)
        self.query_one("#runs-summary", DataTable).move_cursor(row=rows.index(key), scroll=False)

    def action_failing_positions(self) -> None:
        key = self.shown_state.failing_run()
        grid = self._grids.get(key) if key is not None else None
        if grid is None:
            self.notify("no positions measured for a failing run", severity="information")
            return
        self._scroll_to(grid)

    def action_decide(self) -> None:
        self.post_message(DecideRequested())

    @on(DataTable.RowSelected, "#runs-summary")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        rows = list(self.shown_state.runs)
        if 0 <= event.cursor_row < len(rows):
            self.show_run_panel(rows[event.cursor_row])

    def _show_cards(self, state: WorkbenchState) -> None:
        container = self.query_one("#cards", ItemGrid)
        for model, card in state.cards.items():
            if model not in self._cards:
                self._cards[model] = Static(classes="model-card")
                container.mount(self._cards[model])
            self._cards[model].update(card_renderable(model, card))
        for model in [m for m in self._cards if m not in state.cards]:
            self._cards.pop(model).remove()
        self.query_one("#cards-empty", Static).display = not state.cards

    def _show_positions(self, state: WorkbenchState) -> None:
        container = self.query_one("#positions", ItemGrid)
        for key, view in state.positions.items():
            if key not in self._grids:
                self._grids[key] = PositionsGrid()
                container.mount(self._grids[key])
            self._grids[key].show(view)
        for key in [k for k in self._grids if k not in state.positions]:
            self._grids.pop(key).remove()
        self.query_one("#positions-empty", Static).display = not state.positions
