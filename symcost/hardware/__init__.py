"""Hardware: chips, engine profiles and the time model that binds costs to them.

Stages (each imports only the ones before it): ``validate`` (exact field values), ``runtime``
(the engine profile type), ``chip`` (:class:`Hardware`), ``datafile`` (reading the data files),
``engines`` (the engine profiles: one data file per backend and version), ``presets`` (the chips:
one data file each, a source per number), ``kernels`` (one time function per kernel class),
``timing`` (per-op times and collectives, docs/conventions.md §13, §14, §17).

``get(name)`` returns the realistic chip (the efficiency model with its cited or fitted
defaults); ``get(name).ideal()`` is the pure roofline bound.

>>> from symcost import hardware
>>> h100 = hardware.get("h100")
>>> h100.name, h100.peak("bf16")
('H100_SXM', 989400000000000)
>>> h100.hbm_bandwidth
3350000000000
>>> h100.ideal().memory_efficiency
1
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core import binding as _core_binding
from ..core.names import keyed, lookup
from ..errors import HardwareError
from .binding import HardwareTimeModel
from .chip import GIGA, KILO, MEGA, PETA, TERA, Hardware
from .presets import PRESETS
from .presets import load as load_preset
from .runtime import RUNTIMES, Runtime, runtime, runtimes

__all__ = ["GIGA", "KILO", "MEGA", "PETA", "PRESETS", "RUNTIMES", "TERA", "Hardware", "Runtime", "get",
           "is_known", "load_file", "names", "runtime", "runtimes"]

__all__ += list(PRESETS)


def __getattr__(name: str) -> Hardware:
    """A preset chip by its name (``hardware.H100_SXM``), read on first use (:data:`PRESETS`)."""
    if name in PRESETS:
        return PRESETS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PRESETS])


def names() -> list[str]:
    """The preset names."""
    return list(PRESETS)


_BY_KEY = keyed(PRESETS)

_ALIASES: dict[str, str] = json.loads((Path(__file__).parent / "presets" / "index.json").read_text(encoding="utf-8"))[
    "aliases"]
"""Other spellings of the presets' names (``presets/index.json``; the command reads them there)."""


def load_file(path: "str | Path") -> Hardware:
    """A chip from a file: a preset data file (``name``, ``note``, ``fields`` with a value and a
    source per number, as ``symcost/hardware/presets/*.json``) or a flat mapping of
    :class:`Hardware` fields (JSON or YAML, :meth:`Hardware.from_file`).

    Raises :class:`~symcost.errors.HardwareError`, one line naming the file and the field.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            preset_format = "fields" in json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            preset_format = False  # from_file reports what is wrong with the file
        if preset_format:
            return load_preset(path)
    return Hardware.from_file(path)


def is_known(name: str) -> bool:
    """Whether :func:`get` knows ``name`` (case, punctuation and an ``-ideal`` suffix as it takes
    them), without reading the preset's file (presets are read on first use).

    >>> is_known("h100"), is_known("H100_SXM-ideal"), is_known("h1000")
    (True, True, False)
    """
    return lookup(str(name), _BY_KEY, _ALIASES) is not None


def get(name: "str | Hardware") -> Hardware:
    """A preset by name, case and punctuation ignored (``"h100"``, ``"H100_SXM"``, ``"tpu-v5e"``):
    the realistic chip. A name ending in ``"-ideal"`` or ``":ideal"`` gives its roofline.

    Raises :class:`~symcost.errors.HardwareError` listing the known names.
    """
    if isinstance(name, Hardware):
        return name
    found = lookup(str(name), _BY_KEY, _ALIASES)
    if found is None:
        raise HardwareError(field="hardware", rule=f"unknown chip {name!r}; known: {', '.join(PRESETS)}")
    chip = PRESETS[found[0]]
    return chip.ideal() if found[1] else chip


# NB: the layers and the metrics reach the chips through this registration, never by import
# (symcost.core.binding): hardware sits above them in the stage order.
_core_binding.register(HardwareTimeModel(get))
