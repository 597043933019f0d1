"""The README blocks the benchmark scripts write: one place that replaces the text between a
script's two marker lines, so every script checks its markers and dates its run alike."""

from __future__ import annotations

import time


def replace_between(path: str, begin: str, end: str, block: str) -> None:
    """Replace what stands between the ``begin`` and ``end`` lines of ``path`` with ``block``;
    each marker must stand exactly once (one line ``SystemExit`` otherwise)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"{path}: needs exactly one {begin!r} and one {end!r} line")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{begin}\n{block.strip()}\n{end}{tail}")


def dated_run(output: str, command: str, today: str | None = None, note: str = "") -> str:
    """A block for one run's ``output``: ``command`` and the date first (``note`` after them)."""
    day = today or time.strftime("%Y-%m-%d")
    return f"`{command}` on {day}, one run{note}:\n\n{output.strip()}"
