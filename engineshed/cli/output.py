"""How the commands print: readable tables for people, JSON for scripts (``--json``), errors on stderr.

rich draws the tables and the progress bars: column widths, truncation on narrow terminals, plain output when
stdout is not a terminal, and bars with rate and ETA are a sizeable job it does well and that hand-written
ANSI code would get wrong on the edges (resizes, pipes, non-UTF-8 terminals).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

# Exit statuses every command shares (documented in docs/tutorial.md and the README's command table).
OK = 0
FAILED = 1  # some of the work failed (files not imported, a job that failed)
USAGE = 2  # bad arguments or input (argparse uses 2 as well)
AUTH = 3  # the server refused the token
UNREACHABLE = 4  # the server could not be reached or answered an error
MISSING = 5  # train --wait: the model completed but left an entity with no usable identifier (--allow-missing: 0)
NOT_FOUND = 6  # what the command names (a library, job or model) does not exist, or the library has no trained model
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it



def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        # Piped or captured: no terminal width to fit, and a reader (or grep) wants whole lines and paths.
        console = Console(stderr=stderr, soft_wrap=True, width=max(console.width, 200))
    return console


stdout = _console(False)
stderr = _console(True)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    stdout.print(t)


def human_bytes(size: float) -> str:
    """``12825665`` -> ``12.2 MiB``: binary prefixes, one decimal above bytes."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def fail(message: str) -> None:
    stderr.print(f"[bold red]engineshed:[/] {message}", highlight=False, markup=True)


def note(message: str) -> None:
    stderr.print(message, highlight=False)
