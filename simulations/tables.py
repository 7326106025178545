"""The simulator's tables on stdout (`list`, the `sweep` and `experiment` summaries, `mutants`).

On a terminal a rich table (rich is imported only then); into a pipe or a file, plain text
aligned in columns separated by two spaces, with no box drawing and no colour, so that `grep`,
`cut` and `awk` see one row a line. Numbers are right-aligned.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    header: str
    #: Right-aligned (a number) rather than left-aligned (a name).
    right: bool = False


def plain(columns: Sequence[Column], rows: Sequence[Sequence[object]], *,
          header: bool = True) -> str:
    """The rows as aligned text, one a line (the header first if `header`), without trailing
    spaces. Raises ValueError if a row has not one cell per column."""
    cells = _cells(columns, rows)
    lines = ([[c.header for c in columns]] if header else []) + cells
    widths = [max((len(line[i]) for line in lines), default=0) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.rjust(width) if column.right else text.ljust(width)
                  for text, width, column in zip(line, widths, columns)).rstrip()
        for line in lines)


def _cells(columns: Sequence[Column], rows: Sequence[Sequence[object]]) -> list[list[str]]:
    cells = [[str(cell) for cell in row] for row in rows]
    for row in cells:
        if len(row) != len(columns):
            raise ValueError(f"a row of {len(row)} cells for {len(columns)} columns: {row}")
    return cells


def show(columns: Sequence[Column], rows: Sequence[Sequence[object]], *,
         header: bool = True) -> None:
    """Print the table on stdout: rich's rendering on a terminal, `plain` otherwise. Raises
    ValueError if a row has not one cell per column."""
    cells = _cells(columns, rows)
    try:
        terminal = sys.stdout.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stdout
        terminal = False
    if not terminal:
        text = plain(columns, rows, header=header)
        if text:
            print(text)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_header=header, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column.header, justify="right" if column.right else "left")
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # Text: a "[...]" in a cell is not markup
    Console(file=sys.stdout, highlight=False).print(table)
