"""The documentation blocks the benchmark scripts write (once the README's; now the site's pages
under docs/): one place that names the page each block lives on and replaces the text between a
script's two marker lines, so every script checks its markers and dates its run alike."""

from __future__ import annotations

import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = {
    "benchmarks": "docs/explanation/performance.md",
    "aic-compare": "docs/explanation/fidelity.md",
    "serving-silicon": "docs/explanation/fidelity.md",
    "per-op-errors": "docs/explanation/fidelity.md",
    "inference-validation": "docs/explanation/fidelity.md",
    "training-validation": "docs/explanation/fidelity.md",
    "plan-compare": "docs/how-to/serving.md",
}
"""The page (relative to the repository) that holds each block, by the name in its markers."""


def page(block: str) -> str:
    """The absolute path of the page holding ``block`` (a key of :data:`PAGES`)."""
    return os.path.join(ROOT, PAGES[block])


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
