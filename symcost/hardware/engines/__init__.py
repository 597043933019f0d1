"""Engine profiles as data: one file per backend and version (``engines/<name>.json``), read in the
order of ``engines/index.json`` and registered by name (:func:`symcost.hardware.runtime`).

A file holds ``name``, ``backend``, ``version``, an optional ``note``, ``fields`` (the
:class:`~symcost.hardware.Runtime` terms: ``cuda_graphs``, ``step_overhead``,
``collective_overhead``, ``prefill_emits_first_token``, ``allreduce``, ``allreduce_chips``,
``grouped_gemm``, ``moe_sync_time``) and ``chips``: per chip name (or ``"*"`` for every chip) the
:class:`~symcost.hardware.Hardware` fields measured with this engine's own kernels, which
:meth:`~symcost.hardware.Hardware.with_runtime` puts in place of the chip's. Every value is an
entry with a source (:mod:`symcost.hardware.datafile`); the fitted ones are written by
``symcost.hardware.fit`` (``benchmarks/calibrate_ops.py``), never by hand.

>>> from symcost.hardware import runtime
>>> runtime("vllm").backend, runtime("fastertransformer").cuda_graphs
('vllm', False)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ...errors import HardwareError
from ..chip import Hardware
from ..datafile import read, resolve
from ..runtime import Runtime, register
from ..serving import KV_ALLOCATIONS, MEMORY_RULES, ServingDefaults, Tier

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["ENGINES", "field_sources", "load"]

_FOLDER = resources.files(__name__)
_TERMS = ("cuda_graphs", "step_overhead", "collective_overhead", "prefill_emits_first_token", "allreduce",
          "allreduce_chips", "grouped_gemm", "moe_sort", "moe_sync_time", "a2a_overlap_efficiency",
          "tp_overlap_efficiency")
# values that are not numbers
_NAMES = ("cuda_graphs", "prefill_emits_first_token", "allreduce", "allreduce_chips", "grouped_gemm", "moe_sort")
_FLAGS = ("matmul_stream_k",)  # chip fields an engine may set that are flags, not numbers
_TIERED = ("token_budget", "max_num_seqs", "memory_fraction", "memory_reserve")
_SERVING = (*_TIERED, "memory_reserve_per_gpu", "memory_fraction_digits", "memory_rule", "kv_block_tokens",
            "kv_allocation")
_CHOICES = {"memory_rule": MEMORY_RULES, "kv_allocation": KV_ALLOCATIONS}  # serving entries that name a rule
_TIER_KEYS = {"value", "hbm_below_gib", "name_contains", "gpus_below"}


def _tiers(entry: Any, where: str) -> tuple[Tier, ...]:
    """A ``serving`` entry whose value is a number or a list of tiers (``{"value", "hbm_below_gib",
    "name_contains", "gpus_below"}``, the first that matches a chip applies), the entry's unit on
    every value."""
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), list):
        return (Tier(resolve(entry, where, {})),)
    out = []
    for i, tier in enumerate(entry["value"]):
        if not isinstance(tier, dict) or set(tier) - _TIER_KEYS or "value" not in tier:
            raise HardwareError(f"{where}[{i}]: a tier is an object of {', '.join(sorted(_TIER_KEYS))} "
                                "(value required)")
        number = resolve({"value": tier["value"], "unit": entry.get("unit"), "source": entry.get("source")},
                         f"{where}[{i}]", {})
        below = tier.get("hbm_below_gib")
        out.append(Tier(number, None if below is None else resolve({"value": below, "unit": "GiB", "source": "-"},
                                                                    f"{where}[{i}].hbm_below_gib", {}),
                        tier.get("name_contains"), tier.get("gpus_below")))
    if entry.get("source") is None:
        raise HardwareError(f"{where} has no source")
    return tuple(out)


def _serving(raw: Any, where: str) -> ServingDefaults:
    """The ``serving`` object of a profile file (:class:`~symcost.hardware.serving.ServingDefaults`)."""
    if not isinstance(raw, dict) or set(raw) - set(_SERVING):
        raise HardwareError(f"{where}: serving must be an object of {', '.join(_SERVING)}")
    values: dict[str, Any] = {}
    for field, entry in raw.items():
        here = f"{where}: serving.{field}"
        if field in _TIERED:
            values[field] = _tiers(entry, here)
        elif field in _CHOICES:
            values[field] = resolve(entry, here, {}, name_field=True)
            if values[field] not in _CHOICES[field]:
                raise HardwareError(f"{here} must be one of {', '.join(_CHOICES[field])}, got {values[field]!r}")
        else:
            number = resolve(entry, here, {})
            values[field] = number if field == "memory_reserve_per_gpu" else int(number)
    return ServingDefaults(**values)


def _chips(raw: Any, where: str, shared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise HardwareError(f"{where}: chips must map a chip name (or \"*\") to an object of chip fields")
    out: dict[str, dict[str, Any]] = {}
    for chip, fields in raw.items():
        if not isinstance(fields, dict):
            raise HardwareError(f"{where}: chips[{chip!r}] must be an object of chip fields")
        for field in fields:
            if field not in Hardware.model_fields or field in ("name", "runtime", "peak_flops"):
                raise HardwareError(f"{where}: chips[{chip!r}]: {field!r} is not a chip field an engine sets")
        out[chip] = {f: resolve(e, f"{where}: chips[{chip!r}].{f}", shared, f in _FLAGS) for f, e in fields.items()}
    return out


def load(file: "Traversable | Path", shared: dict[str, Any] | None = None) -> Runtime:
    """The profile of one engine data file, checked: known terms and chip fields, a source for
    every value; one-line :class:`~symcost.errors.HardwareError` naming the file otherwise."""
    data = read(file)
    unknown = set(data) - {"name", "backend", "version", "note", "fields", "chips", "serving"}
    if unknown or not isinstance(data.get("name"), str):
        raise HardwareError(f"{file.name}: expected keys name (a string), backend, version, note, fields, chips, "
                            "serving; "
                            f"got {', '.join(sorted(data))}")
    shared = {} if shared is None else shared
    terms = data.get("fields", {})
    if not isinstance(terms, dict) or set(terms) - set(_TERMS):
        raise HardwareError(f"{file.name}: fields must be an object of {', '.join(_TERMS)}")
    values = {t: resolve(e, f"{file.name}: {t}", shared, t in _NAMES) for t, e in terms.items()}
    try:
        return Runtime(name=data["name"], backend=str(data.get("backend", "")), version=str(data.get("version", "")),
                       overrides=_chips(data.get("chips", {}), file.name, shared),
                       serving=_serving(data.get("serving", {}), file.name), **values)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise HardwareError(f"{file.name}: {field}: {first['msg'].removeprefix('Value error, ')}") from None


def field_sources(name: str) -> dict[str, str]:
    """The source written beside each value of the engine profile ``name``: its terms by name,
    its chip fields as ``"CHIP.field"``."""
    for file in read(_FOLDER.joinpath("index.json"))["engines"]:
        data = read(_FOLDER.joinpath(f"{file}.json"))
        if data.get("name") != name:
            continue
        out = {t: e["source"] for t, e in data.get("fields", {}).items()}
        out.update({f"serving.{t}": e["source"] for t, e in data.get("serving", {}).items()})
        for chip, fields in data.get("chips", {}).items():
            out.update({f"{chip}.{f}": e["source"] for f, e in fields.items()})
        return out
    raise HardwareError(f"field_sources: no engine profile is named {name!r}")


ENGINES: dict[str, Runtime] = {}
"""Every engine profile read from the data files, by name, in the order of ``engines/index.json``."""
for _file in read(_FOLDER.joinpath("index.json"))["engines"]:
    _profile = register(load(_FOLDER.joinpath(f"{_file}.json")))
    ENGINES[_profile.name] = _profile
