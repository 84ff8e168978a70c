"""cli/tables.py and cli/words.py: what a table and a value look like on a terminal and in a
pipe."""

from __future__ import annotations

import io

from rich.console import Console

from cli.tables import Cell, Column, print_table
from cli.words import human

LONG = ("a note that is much wider than any terminal " * 5).strip()


def _printed(tty: bool, no_headers: bool = False) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=tty, width=60, color_system=None)
    rows: list[list[str | Cell]] = [
        ["s1", Cell("ok", "green"), "", LONG],
        ["s2", "error", "12", "two\nlines"],
    ]
    print_table(
        console, ["id", "result", Column("n", "right"), "args / error"], rows, no_headers=no_headers
    )
    return out.getvalue()


def test_piped_rows_are_whole_aligned_lines_under_one_word_headers() -> None:
    lines = _printed(tty=False).splitlines()
    assert lines[0].split() == ["ID", "RESULT", "N", "ARGS_ERROR"]
    assert lines[1].split()[:3] == ["s1", "ok", "-"]  # an empty cell keeps the columns
    assert lines[1].endswith(LONG) and "…" not in lines[1]
    assert lines[2].endswith("two ; lines")  # one row, one line
    assert lines[1].index(LONG[:6]) == lines[2].index("two")  # aligned
    assert len(lines) == 3 and not any(c in "".join(lines) for c in "┃│━")


def test_no_headers_drops_the_header_line_on_a_pipe_and_on_a_terminal() -> None:
    assert [line.split()[0] for line in _printed(tty=False, no_headers=True).splitlines()] == [
        "s1",
        "s2",
    ]
    boxed = _printed(tty=True)
    assert "┃ id" in boxed and "s1" in boxed
    assert "┃ id" not in _printed(tty=True, no_headers=True)


def test_values_in_words() -> None:
    assert [human(v) for v in (None, True, False, 0, 1.50, "x")] == [
        "-",
        "yes",
        "no",
        "0",
        "1.5",
        "x",
    ]
    assert human({"pods": 3, "ready": True, "hpa": None}) == "pods 3, ready yes, hpa -"
    assert human(["a", "b"]) == "a, b" and human([]) == "-"
