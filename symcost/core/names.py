"""Preset names as people spell them: case, spaces and punctuation ignored, and a chip name's
``-ideal`` suffix (its roofline bound). Light (no SymPy): :func:`symcost.hardware.get` resolves a
chip's name with it, and the command checks a ``--hardware`` name with it before loading anything.

>>> lookup(" H100-SXM5 (ideal) ", keyed(["H100_SXM", "B200"]), {"h100sxm5": "H100_SXM"})
('H100_SXM', True)
>>> lookup("h800", keyed(["H100_SXM"]), {}) is None
True
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

__all__ = ["IDEAL_SUFFIXES", "keyed", "lookup", "name_key", "split_ideal"]

IDEAL_SUFFIXES = ("-ideal", ":ideal", " (ideal)")
"""What a chip name may end in to ask for the pure roofline bound (any case)."""


def name_key(name: str) -> str:
    """``name`` lower-cased, letters and digits only: ``"H100-SXM"`` and ``"h100_sxm"`` are ``"h100sxm"``."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def split_ideal(name: str) -> tuple[str, bool]:
    """``name`` stripped, without an :data:`IDEAL_SUFFIXES` suffix, and whether it had one."""
    text = name.strip()
    if not text.lower().endswith(IDEAL_SUFFIXES):
        return text, False
    return text[: text.lower().rfind("ideal") - 1].rstrip(" ("), True


def keyed(names: Iterable[str]) -> dict[str, str]:
    """``{name_key(name): name}`` for the presets' names."""
    return {name_key(n): n for n in names}


def lookup(name: str, by_key: Mapping[str, str], aliases: Mapping[str, str]) -> Optional[tuple[str, bool]]:
    """The preset ``name`` means (by its :func:`name_key`: a name of ``by_key``, else an alias, both
    keyed so) and whether it asks for the ideal chip; ``None`` when it names none."""
    text, ideal = split_ideal(name)
    key = name_key(text)
    target = by_key.get(key) or aliases.get(key)
    return None if target is None else (target, ideal)
