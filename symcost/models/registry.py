"""Model presets: one data file each (``symcost/models/presets/<name>.json``), every number
beside its source (the model's ``config.json`` on the Hugging Face Hub, or the paper for GPT-3),
built by the builder the file names; ``tests/models/test_models.py`` checks every parameter count
against the published figure.

>>> from symcost import models
>>> models.get("llama-3-8b").parameter_count
8030261248
>>> models.get("Llama-2-7B").parameter_count
6738415616
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Callable, Optional

from ..errors import ConfigError
from . import builders, ssm
from .model import Model

__all__ = ["BUILDERS", "PRESETS", "get", "load", "names"]

BUILDERS: dict[str, Callable[..., Model]] = {
    "llama": Model.llama,
    "gpt": Model.gpt,
    "mixtral": builders.mixtral,
    "deepseek_v3": builders.deepseek_v3,
    "mamba2": ssm.mamba2,
}
"""The builders a preset file may name. Each takes ``causal`` (``None``: the kernel's default, see
:func:`symcost.models.model.resolve_causal`: every preset but gpt3-175b runs flash attention, so
counts only the unmasked pairs; gpt3-175b is Megatron-LM 2021's eager attention, full s^2)."""


def _read(name: str) -> Any:
    return json.loads(resources.files("symcost.models").joinpath("presets").joinpath(name).read_text(encoding="utf-8"))


def load(name: str) -> Callable[..., Model]:
    """The builder of preset ``name`` (its data file's fields bound), checked: a known builder and
    a source for every number. ``max_position_embeddings``, the trained length, is the model's own
    field (:class:`Model`), set on what the builder returns."""
    data = _read(f"{name}.json")
    if data.get("builder") not in BUILDERS:
        raise ConfigError(f"{name}.json: builder must be one of {', '.join(BUILDERS)}, got {data.get('builder')!r}")
    fields = {}
    for key, entry in data["fields"].items():
        if not entry.get("source"):
            raise ConfigError(f"{name}.json: {key} has no source")
        fields[key] = entry["value"]
    trained = fields.pop("max_position_embeddings", None)
    return functools.partial(_build, BUILDERS[data["builder"]], trained, name=data["name"], **fields)


def _build(builder: Callable[..., Model], trained: Optional[int], **fields: Any) -> Model:
    model = builder(**fields)
    return Model.model_validate({**dict(model), "max_position_embeddings": trained})


PRESETS: dict[str, Callable[..., Model]] = {name: load(name) for name in _read("index.json")["presets"]}
"""Every preset's builder by name, in the order of ``presets/index.json``."""

_CACHE: dict[tuple[str, Optional[bool]], Model] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def names() -> list[str]:
    """The preset names."""
    return list(PRESETS)


def get(name: str, causal: Optional[bool] = None) -> Model:
    """A preset by name (case-insensitive); ``ValueError`` listing the known names otherwise.

    ``causal`` as in :func:`symcost.models.model.resolve_causal`: ``None`` follows the preset's kernel
    (flash, so causal, for all but the eager ``gpt3-175b``).
    """
    key = _key(name)
    if key not in PRESETS:
        raise ConfigError(f"models: unknown model {name!r}; known: {', '.join(PRESETS)}")
    if causal is not None and not isinstance(causal, bool):
        raise ConfigError(f"causal must be True, False or None, got {causal!r}")
    if (key, causal) not in _CACHE:
        _CACHE[key, causal] = PRESETS[key]() if causal is None else PRESETS[key](causal=causal)
    return _CACHE[key, causal]
