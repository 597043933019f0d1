"""MkDocs hook (``hooks:`` in mkdocs.yml): the reference pages' generated parts, made from the code at
build time so they cannot go stale. A page asks for one with a marker line:

- ``<!-- generated: cli -->``: every ``symcost`` subcommand's ``--help``, from the argparse parser;
- ``<!-- generated: symbols -->``: the canonical symbol table (``symcost.core.symbols``);
- ``<!-- generated: chips -->``: the preset chips (``symcost.hardware.PRESETS``);
- ``<!-- generated: fitted -->``: every field of the H100 SXM preset with its value and source.

tests/test_docs.py checks that they cover every subcommand, option, symbol and chip."""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKERS = {"<!-- generated: cli -->": "cli_reference", "<!-- generated: symbols -->": "symbol_table",
           "<!-- generated: chips -->": "chip_table", "<!-- generated: fitted -->": "fitted_table"}


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix} {name}")
    return found


def cli_reference() -> str:
    """A section per command (``## symcost report`` ...) holding its ``--help``, 100 columns wide."""
    from symcost.cli.main import build_parser

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parts = [f"## {name}\n\n```text\n{parser.format_help().rstrip()}\n```\n"
                 for name, parser in _commands(build_parser(), "symcost")]
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    return "\n".join(parts)


def symbol_names() -> list[str]:
    """The names of ``symcost.core.symbols.__all__`` that are symbols (rows of its table)."""
    from symcost.core import symbols

    return [name for name in symbols.__all__ if name in symbols.TABLE]


def _assumptions(symbol: Any) -> str:
    """What SymPy assumes of ``symbol``, in the words of the symbols module."""
    known = symbol.assumptions0
    kind = next((k for k in ("integer", "rational", "real") if known.get(k)), "")
    sign = "positive" if known.get("positive") else "nonnegative" if known.get("nonnegative") else ""
    return " ".join(w for w in (sign, kind) if w) or "none"


def symbol_table() -> str:
    """One row per canonical symbol: attribute, printed name, LaTeX, assumptions, meaning."""
    from symcost.core import symbols

    rows = ["| name | prints as | LaTeX | assumptions | meaning |", "|---|---|---|---|---|"]
    for name in symbol_names():
        info = symbols.TABLE[name]
        latex = info.latex.replace("|", "\\|")
        rows.append(f"| `{name}` | `{info.symbol}` | `{latex}` | {_assumptions(info.symbol)} | {info.meaning} |")
    return "\n".join(rows) + "\n"


def chip_table() -> str:
    """One row per preset chip: dense 16-bit peak, HBM, HBM bandwidth, scale-up link and domain."""
    from symcost.core.units import format_bytes, format_rate
    from symcost.hardware import PRESETS

    rows = ["| preset | 16-bit peak | HBM | HBM bandwidth | scale-up link (per direction) | scale-up domain |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, chip in PRESETS.items():
        peak = next((v for k, v in chip.peak_flops.items() if k.value == "bf16"), None)
        rows.append(f"| `{name}` | {format_rate(peak, 'FLOP') if peak else '-'} | {format_bytes(chip.hbm_capacity)} "
                    f"| {format_rate(chip.hbm_bandwidth, 'B')} | {format_rate(chip.scale_up_bandwidth, 'B')} "
                    f"| {chip.scale_up_domain} |")
    return "\n".join(rows) + "\n"


def fitted_table(name: str = "H100_SXM") -> str:
    """One row per field of the preset ``name``: its exact value and the source beside it."""
    from symcost.hardware import PRESETS
    from symcost.hardware.presets import field_sources

    chip = PRESETS[name]
    rows = ["| field | value | source |", "|---|---|---|"]
    for field, source in field_sources(name).items():
        if "[" in field:
            base, dtype = field.rstrip("]").split("[")
            value = next(v for k, v in getattr(chip, base).items() if k.value == dtype)
        else:
            value = getattr(chip, field)
        text = source.replace("|", "\\|")
        rows.append(f"| `{field}` | `{value}` | {text} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each marker line with what it names."""
    for marker, function in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, globals()[function]())
    return markdown
