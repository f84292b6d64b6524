"""Tables and lines of the headless commands that read at 80 columns: numbers never split, names
never cut (a long name breaks at its separators and keeps every character), paths printed whole
for copy and paste, prose wrapped at spaces (``format.wrap_words``).

A ``Grid`` is laid out as a table when its columns fit the console; otherwise as records, one
block per row with the column headers as field names, so nothing is ever cropped or ellipsized.
Off a terminal the width is ``COLUMNS`` when set, else 80 (a log file reads the same wherever it
was written); on a terminal it is the terminal's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Union

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ptytui.present.format import wrap_words

DEFAULT_WIDTH = 80
GAP = 2  # columns between two table columns (one padding, one separator)
INDENT = "  "  # records' field indent and a broken name's continuation indent

# A name breaks after one of these (a path, a dotted record name, a registered name, words).
_NAME_PIECES = re.compile(r"[^/._>\- ]*[/._>\- ]?")

Cell = Union[str, Text]


def results_console(*, stderr: bool = False) -> Console:
    """A Rich console for a command's results: a terminal's own width, else COLUMNS, else 80."""
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=_env_width() or DEFAULT_WIDTH)


def _env_width() -> int | None:
    try:
        width = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return None
    return width if width > 0 else None


def print_prose(console: Console, text: Cell, *, style: str | None = None) -> None:
    """A sentence or a title, wrapped at spaces to the console width; a word (a path, a number)
    longer than the line stays whole on a line of its own."""
    line = Text(text, style=style or "") if isinstance(text, str) else text
    for piece in wrap_words(line, max(console.width, 20)):
        console.print(piece, soft_wrap=True, markup=False, highlight=False)


def print_whole(console: Console, text: Cell, *, style: str | None = None) -> None:
    """One line never wrapped nor folded by Rich (``wrote <path>``): the terminal may wrap it
    visually, but a copied path stays one piece."""
    console.print(Text(text, style=style or "") if isinstance(text, str) else text,
                  soft_wrap=True, markup=False, highlight=False)


def print_fields(console: Console, fields: Iterable[tuple[str, Cell]], *, indent: str = INDENT) -> None:
    """``key  value`` lines with aligned keys; values printed whole (paths stay one piece)."""
    fields = list(fields)
    if not fields:
        return
    key_width = max(cell_len(key) for key, _ in fields)
    for key, value in fields:
        line = Text(f"{indent}{key.ljust(key_width)}  ", style="bold")
        line.append_text(value if isinstance(value, Text) else Text(str(value)))
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def break_name(name: str, width: int, *, indent: str = "") -> list[str]:
    """``indent + name`` as lines of at most ``width`` cells, broken after separators
    (``/ . _ > - space``); continuation lines are indented two more. A piece longer than a line
    is folded (never dropped), so every character of the name is kept."""
    first, rest = indent, indent + INDENT
    lines: list[str] = []
    current = first
    for piece in (p for p in _NAME_PIECES.findall(name) if p):
        prefix = first if not lines else rest
        if cell_len(current) + cell_len(piece.rstrip()) <= width or current == prefix:
            current += piece
        else:
            lines.append(current.rstrip())
            current = rest + piece
        while cell_len(current.rstrip()) > width and width > cell_len(rest):  # one long piece
            lines.append(current[:width])
            current = rest + current[width:]
    lines.append(current.rstrip())
    return lines


def _longest_piece(name: str) -> int:
    return max((cell_len(p.rstrip()) for p in _NAME_PIECES.findall(name) if p), default=0)


@dataclass
class Column:
    """One column: ``kind`` is "name" (breaks at separators when narrow), "text" (kept whole,
    left) or "number" (kept whole, right)."""

    header: str
    kind: str = "number"
    style: str | None = None


@dataclass
class Grid:
    """Rows of cells under columns, rendered by ``render_grid``."""

    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    styles: list[str | None] = field(default_factory=list)
    indents: list[str] = field(default_factory=list)  # per row, for the first name column

    def add_row(self, *cells: Cell, style: str | None = None, indent: str = "") -> None:
        self.rows.append(list(cells))
        self.styles.append(style)
        self.indents.append(indent)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _natural(grid: Grid, index: int) -> int:
    cells = [cell_len(grid.indents[r] if index == _first_name(grid) else "") +
             max(cell_len(line) for line in _plain(row[index]).split("\n") or [""])
             for r, row in enumerate(grid.rows)]
    return max([cell_len(grid.columns[index].header)] + cells)


def _minimum(grid: Grid, index: int) -> int:
    column = grid.columns[index]
    if column.kind != "name":
        return _natural(grid, index)
    first = index == _first_name(grid)
    pieces = [cell_len(grid.indents[r] if first else "") + cell_len(INDENT) + _longest_piece(_plain(row[index]))
              for r, row in enumerate(grid.rows)]
    return max([cell_len(column.header)] + pieces)


def _first_name(grid: Grid) -> int | None:
    return next((i for i, c in enumerate(grid.columns) if c.kind == "name"), None)


def grid_widths(grid: Grid, width: int) -> list[int] | None:
    """Column widths that fit ``width`` (names narrowed, numbers and text whole), or None."""
    natural = [_natural(grid, i) for i in range(len(grid.columns))]
    gaps = GAP * (len(grid.columns) - 1)
    if sum(natural) + gaps <= width:
        return natural
    widths = [_minimum(grid, i) for i in range(len(grid.columns))]
    spare = width - gaps - sum(widths)
    if spare < 0:
        return None
    names = [i for i, c in enumerate(grid.columns) if c.kind == "name"]
    while spare > 0 and names:  # widen the names one cell at a time, shortest need first
        growing = [i for i in names if widths[i] < natural[i]]
        if not growing:
            break
        for i in growing:
            if spare == 0:
                break
            widths[i] += 1
            spare -= 1
    return widths


def render_grid(console: Console, grid: Grid) -> None:
    """The grid as a table when it fits the console, else as records (never cropped)."""
    if grid.title:
        print_prose(console, Text(grid.title, style="bold"))
    widths = grid_widths(grid, console.width)
    if widths is None:
        _render_records(console, grid)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="bold")
    for column, width in zip(grid.columns, widths):
        table.add_column(column.header, justify="right" if column.kind == "number" else "left",
                         no_wrap=True, overflow="fold", min_width=width if column.kind != "name" else None,
                         style=column.style)
    first = _first_name(grid)
    for r, row in enumerate(grid.rows):
        cells = []
        for i, (column, cell) in enumerate(zip(grid.columns, row)):
            if column.kind == "name":
                indent = grid.indents[r] if i == first else ""
                cell = _broken(cell, widths[i], indent)
            cells.append(cell)
        table.add_row(*cells, style=grid.styles[r])
    console.print(table)
    console.print()


def _broken(cell: Cell, width: int, indent: str) -> Text:
    """A name cell broken to ``width`` with its indent, styles of a Text cell kept."""
    text = cell if isinstance(cell, Text) else Text(str(cell))
    lines = break_name(text.plain, width, indent=indent)
    if len(lines) == 1 and not indent:
        return text
    out, position = Text(), 0
    for n, line in enumerate(lines):
        lead = len(line) - len(line.lstrip(" "))
        body = line[lead:]
        start = text.plain.find(body, position) if body else position
        out.append(line[:lead])
        out.append_text(text[start:start + len(body)])
        position = start + len(body)
        if n < len(lines) - 1:
            out.append("\n")
    return out


def _render_records(console: Console, grid: Grid) -> None:
    """One block per row: the first cell as its heading, the other cells as fields."""
    for r, row in enumerate(grid.rows):
        heading = Text(grid.indents[r]) + (row[0] if isinstance(row[0], Text) else Text(str(row[0])))
        heading.stylize(grid.styles[r] or "")
        print_whole(console, heading)
        fields = [(c.header or "-", cell) for c, cell in zip(grid.columns[1:], row[1:])]
        print_fields(console, fields, indent=grid.indents[r] + INDENT)
    console.print()

