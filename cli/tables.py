"""Every table the text output prints, made in one place.

On a terminal: rich's boxed table, folding long cells to fit the screen. Anywhere else (a pipe,
a file, a CI log): whitespace-aligned columns, one row per line, no cell wrapped or cut, so
``imctl history | grep drill-failover`` finds every row whole and ``awk '{print $2}'`` works;
an empty cell is "-" there, or the columns after it would shift. A title shows on a terminal
only. ``no_headers`` drops the header line (and the title), as ``kubectl get --no-headers``
does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Between plain columns: wide enough that a space inside a cell does not look like a border.
GAP = "   "


@dataclass(frozen=True)
class Cell:
    """A cell with a rich style on a terminal (a colour, say), plain text elsewhere."""

    text: str
    style: str = ""


@dataclass(frozen=True)
class Column:
    header: str
    justify: Literal["left", "right"] = "left"


def _text(cell: str | Cell) -> str:
    return cell.text if isinstance(cell, Cell) else cell


def print_table(
    console: Any,
    columns: Sequence[str | Column],
    rows: Sequence[Sequence[str | Cell]],
    *,
    title: str | None = None,
    no_headers: bool = False,
) -> None:
    """Print ``rows`` (text, never markup) under ``columns`` on ``console`` (rich's)."""
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    if console.is_terminal:
        _rich_table(console, cols, rows, title, no_headers)
    else:
        _plain_table(console, cols, rows, no_headers)


def _rich_table(
    console: Any,
    cols: Sequence[Column],
    rows: Sequence[Sequence[str | Cell]],
    title: str | None,
    no_headers: bool,
) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=None if no_headers else title, show_header=not no_headers)
    for c in cols:
        table.add_column(c.header, justify=c.justify, overflow="fold")
    for row in rows:
        table.add_row(
            *(Text(c.text, style=c.style) if isinstance(c, Cell) else Text(c) for c in row)
        )
    console.print(table)


def _plain_header(header: str) -> str:
    """One word ("started (UTC)" -> "STARTED_UTC"), so a header line splits like its rows."""
    return "_".join(re.sub(r"[^\w\s]", " ", header).split()).upper()


def _plain_table(
    console: Any, cols: Sequence[Column], rows: Sequence[Sequence[str | Cell]], no_headers: bool
) -> None:
    from rich.cells import cell_len

    # One row per line: a newline inside a cell (a message's second line) becomes a separator.
    lines = [[" ; ".join(_text(c).splitlines()) or "-" for c in row] for row in rows]
    if not no_headers:
        lines.insert(0, [_plain_header(c.header) for c in cols])
    widths = [max((cell_len(line[i]) for line in lines), default=0) for i in range(len(cols))]
    for line in lines:
        cells = []
        for i, (text, col) in enumerate(zip(line, cols, strict=True)):
            pad = " " * (widths[i] - cell_len(text))
            if col.justify == "right":
                cells.append(pad + text)
            elif i < len(cols) - 1:  # no trailing blanks after the last column
                cells.append(text + pad)
            else:
                cells.append(text)
        console.out(GAP.join(cells), highlight=False)
