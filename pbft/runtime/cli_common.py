"""What the project's command lines share (`pbft`, `python -m tradeapp.cli`, the benchmarks):
reading the files a command is given with one-line errors, refusing a replica's key where a
client key belongs, tables and progress drawn with `rich`, and the wrapper that turns mistakes
into one line on stderr and an exit code instead of a traceback.

Output discipline: tables and results go to stdout, progress to stderr, so that stdout stays
machine-readable (a benchmark's last line is its JSON object). On a terminal, tables fit its
width; piped, a table keeps its natural width (no wrapping, no colour). Progress is drawn only
when stderr is a terminal, unless asked for (`Progress(force=True)`: a plain line per tenth of
the way on a non-terminal, for CI logs).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pbft import config as config_module
from pbft.config import ClusterConfig, ConfigError
from pbft.ed25519 import Ed25519Signer, KeyFileError, read_key_file

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

# rich is imported where a table or a bar is drawn: a command that draws none (`pbft submit`,
# `pbft replica`) does not pay for importing it at every start.

__all__ = [
    "CONNECT_TIMEOUT_S",
    "CommandError",
    "add_call_timeouts",
    "positive_seconds",
    "Progress",
    "check_client_key",
    "load_client_key",
    "load_config",
    "load_key",
    "make_table",
    "print_table",
    "render_table",
    "run_command",
]


class CommandError(Exception):
    """A mistake the user can fix: printed as one line (`prog: message`), exit code `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------- client calls

#: How long a shell client's call waits, by default, when no replica at all is reachable.
CONNECT_TIMEOUT_S = 5.0


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero (else argparse's usage error, exit 2)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def add_call_timeouts(parser: argparse.ArgumentParser, *, timeout_s: float) -> None:
    """`--timeout` (the call's `timeout_s`, default `timeout_s`) and `--connect-timeout`
    (`unreachable_timeout_s` of `pbft.runtime.client.connect`, default CONNECT_TIMEOUT_S): the
    options of every command line that makes client calls. A value that is not a positive
    number of seconds is a usage error naming the option."""
    parser.add_argument("--timeout", type=positive_seconds, default=timeout_s,
                        help=f"seconds a call may take (default {timeout_s:g})")
    parser.add_argument("--connect-timeout", type=positive_seconds, default=CONNECT_TIMEOUT_S,
                        help="fail once no replica has been reachable for this long "
                             f"(default {CONNECT_TIMEOUT_S:g} s)")  # fmt: skip


# ---------------------------------------------------------------------------- files


def load_config(path: str | os.PathLike[str], option: str = "--config") -> ClusterConfig:
    """The cluster configuration at `path`. Raises CommandError naming `option` and the file
    if it is missing, unreadable or invalid."""
    try:
        return config_module.load(path)
    except FileNotFoundError:
        raise CommandError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{option} {path}: is a directory (give its cluster.toml)") from None
    except OSError as e:
        raise CommandError(f"{option} {path}: cannot read it: {e.strerror or e}") from None
    except ConfigError as e:
        text = str(e)
        raise CommandError(text if text.startswith(str(path)) else f"{option} {path}: {text}"
                           ) from None  # fmt: skip


def load_key(path: str | os.PathLike[str], option: str = "--key") -> Ed25519Signer:
    """The Ed25519 key file at `path`. Raises CommandError naming `option` and the file if it
    is missing, unreadable, readable by others or not a key."""
    try:
        return read_key_file(path)
    except KeyFileError as e:
        raise CommandError(f"{option} {e}") from None


def check_client_key(public_key: bytes, config: ClusterConfig, what: str) -> None:
    """Raise CommandError if `public_key` is one of `config`'s replicas' keys: a replica's key
    never signs a client's requests (see `pbft.runtime.client.connect`). `what` names the key
    in the message (e.g. "--key keys/replica-0.key")."""
    for info in config.replicas:
        if info.public_key == public_key:
            raise CommandError(
                f"{what} holds replica {info.id}'s key, not a client's: the replicas take a "
                "connection with that key for replica "
                f"{info.id} itself and never answer it as a client. Use a client key "
                "(`pbft keygen` writes keys/client-N.key)"
            )


def load_client_key(path: str | os.PathLike[str], config: ClusterConfig,
                    option: str = "--key") -> Ed25519Signer:  # fmt: skip
    """`load_key`, refusing a replica's key (`check_client_key`)."""
    signer = load_key(path, option)
    check_client_key(signer.public_key, config, f"{option} {path}")
    return signer


# ---------------------------------------------------------------------------- tables


def _cell(value: Any) -> Text:
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))


def make_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "",
               numeric: Sequence[bool] | None = None, empty: str = "(none)") -> Table:  # fmt: skip
    """A table of `rows` under `columns`; numeric columns (by default: those whose every cell
    is an int or float, bools excepted) are right-aligned. Cells are shown as text, never
    interpreted as rich markup. An empty table shows one row saying `empty`."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if numeric is None:
        numeric = [
            bool(rows) and all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
                               for row in rows)
            for i in range(len(columns))
        ]  # fmt: skip
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, title_justify="left",
                  show_edge=False, pad_edge=False, highlight=False)  # fmt: skip
    for name, right in zip(columns, numeric):
        table.add_column(Text(name), justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    if not rows and columns:
        table.add_row(Text(empty), *([Text("")] * (len(columns) - 1)))
    return table


def _console(file: TextIO, width: int | None = None) -> Console:
    from rich.console import Console

    return Console(file=file, width=width, highlight=False, emoji=False, markup=False,
                   soft_wrap=False)  # fmt: skip


def render_table(table: Table, width: int | None = None) -> str:
    """The table as plain text, at its natural width (or `width`), no colour."""
    import io

    from rich.console import Console

    measure = _console(io.StringIO(), width=100_000)
    natural = measure.measure(table).maximum
    buffer = io.StringIO()
    console = Console(file=buffer, width=width or max(natural, 20), highlight=False,
                      emoji=False, markup=False, color_system=None)  # fmt: skip
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def print_table(table: Table, file: TextIO | None = None) -> None:
    """Print `table` to `file` (stdout): fitted to the terminal, or at its natural width when
    `file` is not one (so that a pipe or a log gets whole lines)."""
    file = file or sys.stdout
    if _isatty(file):
        _console(file).print(table)
    else:
        print(render_table(table), file=file, flush=True)


def _isatty(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------- progress


class Progress:
    """Progress of a long run, on stderr. Use as a context manager; `task(description,
    total)` returns a handle whose `update(completed)` / `advance(n)` move it.

    `force`: None (default) draws a rich progress bar when stderr is a terminal and nothing
    otherwise; True also reports on a non-terminal, as a plain line each tenth of the way;
    False never draws."""

    def __init__(self, force: bool | None = None, *, file: TextIO | None = None) -> None:
        self._file = file or sys.stderr
        terminal = _isatty(self._file)
        self._mode = "off" if force is False else "bar" if terminal else \
            "lines" if force else "off"  # fmt: skip
        self._rich: Any = None  # a rich.progress.Progress when drawing a bar
        if self._mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=Console(file=self._file), transient=False,
                # Printing to stdout while the bar is drawn: on the same terminal rich prints
                # above the bar; redirected, stdout must stay where it was sent.
                redirect_stdout=_isatty(sys.stdout), redirect_stderr=False,
            )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self._mode != "off"

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def task(self, description: str, total: float) -> _Task:
        return _Task(self, description, total)


class _Task:
    def __init__(self, progress: Progress, description: str, total: float) -> None:
        self._progress = progress
        self.description = description
        self.total = total
        self.completed = 0.0
        self._tenths_reported = -1
        self._id = None
        if progress._rich is not None:
            self._id = progress._rich.add_task(description, total=total)
        self._report()

    def update(self, completed: float) -> None:
        self.completed = min(completed, self.total)
        self._report()

    def advance(self, amount: float = 1) -> None:
        self.update(self.completed + amount)

    def _report(self) -> None:
        progress = self._progress
        if progress._rich is not None and self._id is not None:
            progress._rich.update(self._id, completed=self.completed)
        elif progress._mode == "lines":
            tenths = int(10 * self.completed / self.total) if self.total else 10
            if tenths != self._tenths_reported:
                self._tenths_reported = tenths
                print(f"{self.description}: {self.completed:g}/{self.total:g}",
                      file=progress._file, flush=True)  # fmt: skip


# ---------------------------------------------------------------------------- main


def run_command(prog: str, handler: Callable[[], int],
                mistakes: tuple[type[BaseException], ...] = ()) -> int:  # fmt: skip
    """Run `handler` and return its exit code, turning what a user can cause into one line on
    stderr: CommandError (its code), `mistakes` (2), Ctrl-C (130, silently), and a reader of
    stdout that went away (`--json | head`: BrokenPipeError, exit 1, no traceback; stdout is
    pointed at /dev/null so that the interpreter's final flush does not complain)."""
    try:
        return handler()
    except CommandError as e:
        _error(prog, str(e))
        return e.code
    except mistakes as e:
        _error(prog, str(e))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 1


def _error(prog: str, message: str) -> None:
    try:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    except BrokenPipeError:
        pass


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


@contextmanager
def stdout_guard() -> Iterator[None]:
    """Turn a BrokenPipeError while writing stdout into a quiet exit (see `run_command`)."""
    try:
        yield
    except BrokenPipeError:
        _silence_stdout()
        raise SystemExit(1) from None


def existing_file(path: str, option: str) -> Path:
    """`path` if it is a file; raises CommandError naming `option` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise CommandError(f"{option} {path}: no such file")
    return p
