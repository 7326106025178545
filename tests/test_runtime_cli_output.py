"""Issue 16, item 5: tables and progress with rich, stdout kept machine-readable. Progress goes
to stderr, only to a terminal unless forced; a table sent to a pipe keeps its natural width."""

from __future__ import annotations

import io
import sys

from pbft.runtime.cli_common import Progress, make_table, print_table, render_table


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_progress_when_stderr_is_not_a_terminal():
    stderr = io.StringIO()
    with Progress(file=stderr) as progress:
        assert not progress.enabled
        task = progress.task("rows", 10)
        task.advance(10)
    assert stderr.getvalue() == ""


def test_forced_progress_on_a_non_terminal_is_a_line_per_tenth():
    stderr = io.StringIO()
    with Progress(True, file=stderr) as progress:
        task = progress.task("rows", 100)
        for _ in range(100):
            task.advance()
    lines = stderr.getvalue().splitlines()
    assert lines[0] == "rows: 0/100" and lines[-1] == "rows: 100/100"
    assert len(lines) == 11


def test_progress_never_when_told_not_to_even_on_a_terminal():
    terminal = Terminal()
    with Progress(False, file=terminal) as progress:
        progress.task("rows", 3).advance(3)
    assert terminal.getvalue() == ""


def test_a_progress_bar_on_a_terminal_leaves_redirected_stdout_alone(monkeypatch):
    """rich redirects stdout into its display by default: a table printed while the bar is
    drawn would land on the terminal instead of the file stdout was sent to."""
    terminal, stdout = Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    with Progress(file=terminal) as progress:
        task = progress.task("rows", 2)
        print("the table")
        task.advance(2)
    assert stdout.getvalue() == "the table\n"
    assert "rows" in terminal.getvalue() and "the table" not in terminal.getvalue()


def test_a_table_to_a_pipe_keeps_its_natural_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    health = "other cluster (cluster id 0123456789abcdef…)"
    wide = make_table(["replica", "state digest", "health"], [[0, "ab" * 32, health]])
    out = io.StringIO()
    print_table(wide, out)
    [header, rule, row] = out.getvalue().splitlines()
    assert row.split(maxsplit=2) == ["0", "ab" * 32, health]
    assert len(rule) > 40, "not wrapped to the 40 columns of a terminal"
    assert render_table(make_table(["x"], [])).splitlines()[-1] == "(none)"
