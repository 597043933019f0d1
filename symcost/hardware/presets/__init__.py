"""Hardware presets: one data file per chip (``symcost/hardware/presets/<chip>.json``), every
number beside its source, read through :func:`load` in the order of ``presets/index.json``.

Conventions: dense peaks (no 2:4 sparsity: NVIDIA datasheets print H100/H200/B200 tensor peaks
"with sparsity", so we halve them); bytes and bytes/s with decimal prefixes as printed (GB = 10^9
bytes; NVIDIA's "80GB" is taken at its printed value although the parts carry 80 GiB, so capacity
is slightly conservative); link bandwidth per chip **per direction** (NVLink and Infinity Fabric
figures are bidirectional totals and are halved); scale-out per chip is one NIC's line rate.

A chip file holds ``name``, an optional ``note`` and ``fields``: each :class:`Hardware` field (and
each dtype of ``peak_flops``) is ``{"value": ..., "unit": ..., "source": "..."}`` or
``{"shared": NAME}``, a fact stated once in ``presets/shared.json`` (NCCL's collective figures,
the fitted and measured efficiencies; ``references`` there spells out the bracketed citation
keys). A value is an integer or an exact string read by :class:`fractions.Fraction` (``"37/50"``,
``"989.4"``), never a float (a tile, ``matmul_tile`` or ``matmul_tile_4bit``: a list of two
integers); ``unit`` (:data:`UNITS`) scales it to base units. A malformed file
raises :class:`~symcost.errors.HardwareError` (a ``ConfigError``) naming the file and the field.

>>> PRESETS["H100_SXM"].peak("bf16"), ALPHA
(989400000000000, Fraction(3, 5000000))
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from pydantic import ValidationError

from ...errors import HardwareError
from .. import engines as _engines  # noqa: F401  (registers the engine profiles the presets name)
from ..chip import Hardware
from ..datafile import UNITS, read, resolve, value

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["PRESETS", "REFERENCES", "SHARED", "UNITS", "Presets", "field_sources", "load", "load_shared"]

_FOLDER = resources.files(__name__)
# fields whose value is a name or a flag, not a number
_NAME_FIELDS = ("runtime", "matmul_stream_k", "compute_capability")
_TILE_FIELDS = ("matmul_tile", "matmul_tile_4bit")  # fields whose value is a list of two integers


def load_shared(file: Traversable | Path | None = None) -> dict[str, Any]:
    """The shared facts of ``shared.json`` (or ``file``) by name, exact."""
    file = _FOLDER.joinpath("shared.json") if file is None else file
    data = read(file)
    unknown = set(data) - {"note", "references", "constants"}
    if unknown or not isinstance(data.get("constants"), dict):
        raise HardwareError(f"{file.name}: expected keys note, references, constants (an object); "
                            f"got {', '.join(sorted(data))}")
    return {name: value(entry, f"{file.name}: {name}") for name, entry in data["constants"].items()}


def _fields(raw: Any, where: str, shared: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise HardwareError(f"{where}: fields must be an object of Hardware fields")
    fields: dict[str, Any] = {}
    for field, entry in raw.items():
        if field == "name" or field not in Hardware.model_fields:
            raise HardwareError(f"{where}: unknown field {field!r}; known: "
                                f"{', '.join(f for f in Hardware.model_fields if f != 'name')}")
        if field == "peak_flops":
            if not isinstance(entry, dict):
                raise HardwareError(f"{where}: peak_flops must be an object of dtype to entry")
            fields[field] = {dt: resolve(e, f"{where}: peak_flops[{dt}]", shared) for dt, e in entry.items()}
        else:
            fields[field] = resolve(entry, f"{where}: {field}", shared, field in _NAME_FIELDS + _TILE_FIELDS)
    return fields


def load(file: Traversable | Path, shared: Mapping[str, Any] | None = None) -> Hardware:
    """The chip of one preset data file, checked: known fields, a source for every number, exact
    values; the :class:`Hardware` constructor's rules with the file's name on the error.

    >>> load(_FOLDER.joinpath("b200.json")).name
    'B200'
    """
    shared = SHARED if shared is None else shared
    data = read(file)
    unknown = set(data) - {"name", "note", "fields"}
    if unknown or not isinstance(data.get("name"), str):
        raise HardwareError(f"{file.name}: expected keys name (a string), note, fields; got {', '.join(sorted(data))}")
    fields = _fields(data.get("fields"), file.name, shared)
    try:
        return Hardware(name=data["name"], **fields)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise HardwareError(f"{file.name}: {field}: {first['msg'].removeprefix('Value error, ')}") from None


def field_sources(name: str) -> dict[str, str]:
    """The source written beside each number of the preset chip ``name`` (its ``name`` in the data
    file, e.g. ``"H100_SXM"``), by field; a dtype's peak is ``"peak_flops[bf16]"``; a shared fact
    is its ``shared.json`` source. Raises :class:`~symcost.errors.HardwareError` for another name.

    >>> field_sources("H100_SXM")["hbm_capacity"].split(",")[0]
    '[H100-DS] 80GB HBM3'
    """
    shared = read(_FOLDER.joinpath("shared.json"))["constants"]
    for file in read(_FOLDER.joinpath("index.json"))["presets"]:
        data = read(_FOLDER.joinpath(f"{file}.json"))
        if data.get("name") != name:
            continue
        out: dict[str, str] = {}
        for field, entry in data["fields"].items():
            items = entry.items() if field == "peak_flops" else [(None, entry)]
            for dtype, one in items:
                key = field if dtype is None else f"{field}[{dtype}]"
                one = shared[one["shared"]] if "shared" in one else one
                out[key] = one["source"]
        return out
    raise HardwareError(f"field_sources: no preset chip is named {name!r}; known: {', '.join(PRESETS)}")


SHARED: dict[str, Any] = load_shared()
"""The facts several presets share (``presets/shared.json``), by name."""
REFERENCES: dict[str, str] = dict(read(_FOLDER.joinpath("shared.json"))["references"])
"""What each bracketed citation key of a source (``[H100-DS]``) stands for (``shared.json``)."""

# The shared facts under the names the library and its tests use.
ALPHA = SHARED["ALPHA"]
NET_ALPHA = SHARED["NET_ALPHA"]
TREE_ALPHA = SHARED["TREE_ALPHA"]
TREE_EFFICIENCY = SHARED["TREE_EFFICIENCY"]
COLLECTIVE_BASE_LATENCY = SHARED["COLLECTIVE_BASE_LATENCY"]
MEMORY_EFFICIENCY = SHARED["MEMORY_EFFICIENCY"]
HOPPER_MATMUL_EFFICIENCY = SHARED["HOPPER_MATMUL_EFFICIENCY"]
ATTENTION_OTHER = SHARED["ATTENTION_OTHER"]
class Presets(Mapping[str, Hardware]):
    """The preset chips by name, in the order of ``files`` (``index.json``'s file names): the names
    are read from the files as plain JSON; a chip's file is read and checked (:func:`load`) when the
    chip is first asked for, then kept, so that a command naming one chip checks one file.

    >>> chips = Presets(["h200-sxm", "b200"])
    >>> list(chips), chips["B200"] is chips["B200"]
    (['H200_SXM', 'B200'], True)
    """

    def __init__(self, files: Iterable[str]) -> None:
        self._files: dict[str, str] = {}
        for file in files:
            name = read(_FOLDER.joinpath(f"{file}.json")).get("name")
            if not isinstance(name, str):
                load(_FOLDER.joinpath(f"{file}.json"))  # raises its one-line error naming the file
            self._files[str(name)] = file
        self._chips: dict[str, Hardware] = {}

    def __getitem__(self, name: str) -> Hardware:
        chip = self._chips.get(name)
        if chip is None:
            chip = self._chips[name] = load(_FOLDER.joinpath(f"{self._files[name]}.json"))
        return chip

    def __contains__(self, name: object) -> bool:  # by name: reads no chip
        return name in self._files

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


PRESETS: Mapping[str, Hardware] = Presets(read(_FOLDER.joinpath("index.json"))["presets"])
"""Every preset chip by name, in the order of ``presets/index.json``; each is also a module
attribute (``presets.H100_SXM``), read on first use."""


def __getattr__(name: str) -> Hardware:
    if name in PRESETS:
        return PRESETS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PRESETS])
