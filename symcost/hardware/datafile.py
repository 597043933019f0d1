"""Reading the hardware data files (chip presets, engine profiles): every number an exact value
beside its source, with a unit from :data:`UNITS`.

An entry is ``{"value": ..., "unit": ..., "source": "..."}``: the value an integer or an exact
string read by :class:`fractions.Fraction` (``"37/50"``, ``"989.4"``), never a float, scaled to base
units by its unit; or ``{"shared": NAME}``, a fact stated once in ``presets/shared.json``.

>>> value({"value": "2.7", "unit": "us", "source": "a table"}, "f: t")
Fraction(27, 10000000)
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import HardwareError
from .chip import GIGA, MEGA, TERA

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["UNITS", "read", "resolve", "value"]

UNITS: dict[str, Fraction] = {
    "TFLOP/s": Fraction(TERA), "GB": Fraction(GIGA), "MB": Fraction(MEGA), "GiB": Fraction(2**30),
    "MiB": Fraction(2**20),
    "GB/s": Fraction(GIGA), "TB/s": Fraction(TERA), "T/s": Fraction(TERA), "Gb/s": Fraction(GIGA, 8),
    "us": Fraction(1, MEGA), "s": Fraction(1),
}
"""The units a preset value may carry, in base units (decimal prefixes, docs/conventions.md §14;
``Gb/s`` is bits: one byte per 8)."""

def read(file: Traversable | Path) -> dict[str, Any]:
    """The JSON object in ``file``; one-line :class:`~symcost.errors.HardwareError` otherwise."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HardwareError(f"{file.name}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise HardwareError(f"{file.name}: expected a JSON object, got {type(data).__name__}")
    return data


def value(entry: Any, where: str, name_field: bool = False) -> Any:
    """The exact value of one ``{"value", "unit", "source"}`` entry; ``where``: "file: field"."""
    if not isinstance(entry, dict):
        raise HardwareError(f"{where} must be {{\"value\", \"source\"}} or {{\"shared\"}}, got {entry!r}")
    unknown = set(entry) - {"value", "unit", "source"}
    if unknown:
        raise HardwareError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: value, unit, source")
    if not isinstance(entry.get("source"), str) or not entry["source"].strip():
        raise HardwareError(f"{where} has no source")
    if "value" not in entry:
        raise HardwareError(f"{where} has no value")
    raw, unit = entry["value"], entry.get("unit")
    if unit is not None and unit not in UNITS:
        raise HardwareError(f"{where}: unknown unit {unit!r}; known: {', '.join(UNITS)}")
    if raw is None or name_field:
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise HardwareError(f"{where} must be an integer or an exact string such as \"37/50\", "
                            f"got {raw!r} (no floats)")
    try:
        number = Fraction(raw.strip()) if isinstance(raw, str) else Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise HardwareError(f"{where} must be an integer or an exact string such as \"37/50\", "
                            f"got {raw!r}") from None
    return number * UNITS[unit] if unit is not None else number


def resolve(entry: Any, where: str, shared: Mapping[str, Any], name_field: bool = False) -> Any:
    """A field's value: a shared fact by name, or the entry's own value."""
    if isinstance(entry, dict) and "shared" in entry:
        if set(entry) != {"shared"} or entry["shared"] not in shared:
            raise HardwareError(f"{where}: \"shared\" must be the only key and name a constant of shared.json, "
                                f"got {entry!r}")
        return shared[entry["shared"]]
    return value(entry, where, name_field)
