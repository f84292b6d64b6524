"""The Study screen: the matrix of a study's cells, coloured by worst severity, updated live as
cells finish; enter opens a cell's workbench, q quits. Textual only: no engine, no Dask (the
records arrive through a feed run in a thread worker)."""

from __future__ import annotations

from typing import Callable, Iterable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from ptytui.study.matrix import StudyResult

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", "ok": "green",
                  "failed": "red", "pending": "dim", "running": "dim", "cancelled": "dim"}


class StudyRecord(Message):
    """A cell finished (its record), posted from the feed's thread."""

    def __init__(self, record: dict) -> None:
        super().__init__()
        self.record = record


class StudyFeedDone(Message):
    """The feed ended (every cell finished, or the run stopped with ``error``)."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error


class StudyApp(App):
    """``StudyApp(result, feed=...)``: ``result`` holds the cells (and any records already in);
    ``feed`` is an iterable of records consumed in a thread worker. The app exits with the id of
    the cell to open (enter), or None (q)."""

    CSS = """
    #title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    #matrix { height: 1fr; }
    #detail { height: auto; max-height: 6; padding: 0 1; border-top: solid $panel; }
    """
    BINDINGS = [
        Binding("enter", "open_cell", "Open cell", show=False),
        Binding("o", "open_cell", "Open cell (enter)"),
        Binding("q", "quit_study", "Quit"),
    ]

    def __init__(self, result: StudyResult, *, feed: Iterable[dict] | None = None, theme: str | None = None,
                 selected: str | None = None, on_quit: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.result = result
        self.feed = feed
        self.selected = selected
        self.on_quit = on_quit
        self.feed_error: str | None = None
        self.feed_done = feed is None
        if theme:
            self.theme = theme

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="title")
        yield DataTable(id="matrix", cursor_type="row", zebra_stripes=False)
        yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in self.result.header():
            table.add_column(name, key=name)
        for row, cells in zip(self.result.rows(), self.result.table()):
            table.add_row(*self._styled(row, cells), key=row["cell"])
        if self.selected is not None:
            ids = [c["cell"] for c in self.result.cells]
            if self.selected in ids:
                table.move_cursor(row=ids.index(self.selected))
        table.focus()
        self._show_detail()
        if self.feed is not None:
            self.run_worker(self._pump, thread=True, exit_on_error=False, group="study")

    def _pump(self) -> None:
        try:
            for record in self.feed:
                self.post_message(StudyRecord(record))
        except Exception as exc:  # noqa: BLE001 - the matrix stays up and says so
            self.post_message(StudyFeedDone(" ".join(str(exc).split())))
            return
        self.post_message(StudyFeedDone())

    def on_study_record(self, message: StudyRecord) -> None:
        self.result.add(message.record)
        self._refresh_row(message.record["cell"])

    def on_study_feed_done(self, message: StudyFeedDone) -> None:
        self.feed_done = True
        self.feed_error = message.error
        self.query_one("#title", Static).update(self._title())

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_cell()  # the table takes enter before the app's binding

    def _refresh_row(self, cell_id: str) -> None:
        table = self.query_one(DataTable)
        index = [c["cell"] for c in self.result.cells].index(cell_id)
        row = self.result.rows()[index]
        cells = self.result.table()[index]
        for column, value in zip(self.result.header(), self._styled(row, cells)):
            table.update_cell(cell_id, column, value)
        self.query_one("#title", Static).update(self._title())
        self._show_detail()

    def _styled(self, row: dict, cells: list[str]) -> list[Text]:
        style = SEVERITY_STYLE.get(self.result.severity_of(row), "")
        return [Text(str(value), style=style, no_wrap=True) for value in cells]

    def _title(self) -> Text:
        rows = self.result.rows()
        counts = {}
        for row in rows:
            state = self.result.severity_of(row)
            counts[state] = counts.get(state, 0) + 1
        text = Text(f"study {self.result.name}: {len(rows)} cells  ")
        for state in ("error", "warning", "info", "ok", "failed", "pending"):
            if counts.get(state):
                text.append(f"{counts[state]} {state}  ", style=SEVERITY_STYLE[state])
        if self.feed_error:
            text.append(f"run stopped: {self.feed_error}", style="red")
        elif not self.feed_done:
            text.append("running…", style="dim")
        return text

    def _current_cell(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.result.cells or table.cursor_row is None:
            return None
        return self.result.cells[min(table.cursor_row, len(self.result.cells) - 1)]["cell"]

    def _show_detail(self) -> None:
        cell_id = self._current_cell()
        detail = self.query_one("#detail", Static)
        if cell_id is None:
            detail.update("")
            return
        row = self.result.rows()[[c["cell"] for c in self.result.cells].index(cell_id)]
        text = Text(f"{cell_id}: ", style="bold")
        if row["status"] == "done":
            if row.get("root_cause"):
                text.append(f"{row['worst_severity']} {row['root_cause']}: ",
                            style=SEVERITY_STYLE.get(row["worst_severity"], ""))
                text.append(row.get("root_cause_summary") or "")
            else:
                text.append("no finding", style="green")
            text.append("   enter: open this cell's workbench", style="dim")
        elif row["status"] == "error":
            text.append(f"not diagnosed: {row['error']}", style="red")
        else:
            text.append(row["status"], style="dim")
        detail.update(text)

    def action_open_cell(self) -> None:
        cell_id = self._current_cell()
        if cell_id is not None and self.result.status(cell_id) == "done":
            self.exit(cell_id)
        elif cell_id is not None:
            self.notify(f"{cell_id}: not diagnosed yet" if self.result.status(cell_id) == "pending"
                        else f"{cell_id}: {self.result.status(cell_id)}", severity="warning")

    def action_quit_study(self) -> None:
        if self.on_quit is not None:
            self.on_quit()
        self.exit(None)
