"""Layer types. Each is a frozen pydantic model; see :class:`symcost.layers.base.Layer`."""

from .attention import AttentionLayer as AttentionLayer
from .attention import GroupedQueryAttentionLayer as GroupedQueryAttentionLayer
from .base import Context as Context
from .base import Layer as Layer
from .base import Phase as Phase
from .embedding import EmbeddingLayer as EmbeddingLayer
from .embedding import LMHeadLayer as LMHeadLayer
from .mamba2 import Mamba2Layer as Mamba2Layer
from .mla import MLALayer as MLALayer
from .mlp import GatedMLPLayer as GatedMLPLayer
from .mlp import MLPLayer as MLPLayer
from .moe import MoELayer as MoELayer
from .norm import NormLayer as NormLayer

__all__ = [
    "AttentionLayer",
    "Context",
    "EmbeddingLayer",
    "LMHeadLayer",
    "GatedMLPLayer",
    "GroupedQueryAttentionLayer",
    "Layer",
    "Mamba2Layer",
    "MLALayer",
    "MLPLayer",
    "MoELayer",
    "NormLayer",
    "Phase",
]
