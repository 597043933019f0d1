"""The layer types by name: where a layer type is registered, and how the stages above
``layers/`` that do not compose models (the CLI, the LaTeX tables) make one without importing it.

Adding a layer type is its module here plus one line in :data:`LAYER_TYPES` (and its tests).

>>> from symcost.layers import catalogue
>>> catalogue.build("gqa").kv_heads
g
>>> catalogue.build("rmsnorm", hidden_size=8).num_params
8
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from ..errors import ConfigError
from .attention import AttentionLayer, GroupedQueryAttentionLayer
from .base import Layer
from .embedding import EmbeddingLayer, LMHeadLayer
from .mamba2 import Mamba2Layer
from .mla import MLALayer
from .mlp import GatedMLPLayer, MLPLayer
from .moe import MoELayer
from .norm import NormLayer

__all__ = ["LAYER_TYPES", "build", "names"]

LAYER_TYPES: dict[str, Callable[..., Layer]] = {
    "mlp": MLPLayer,
    "gated-mlp": GatedMLPLayer,
    "attention": AttentionLayer,
    "gqa": GroupedQueryAttentionLayer,
    "mla": MLALayer,
    "moe": MoELayer,
    "norm": NormLayer,
    "rmsnorm": functools.partial(NormLayer, kind="rmsnorm"),
    "embedding": EmbeddingLayer,
    "lm-head": LMHeadLayer,
    "mamba2": Mamba2Layer,
}
"""Every layer type by its name (``rmsnorm`` is :class:`NormLayer` with ``kind="rmsnorm"``)."""


def names() -> list[str]:
    """The registered layer names."""
    return list(LAYER_TYPES)


def build(name: str, **fields: Any) -> Layer:
    """A layer of the registered type ``name`` with ``fields`` (the rest symbolic)."""
    if name not in LAYER_TYPES:
        raise ConfigError(f"layer: unknown layer type {name!r}; known: {', '.join(LAYER_TYPES)}")
    return LAYER_TYPES[name](**fields)
