"""Builders for mixture-of-experts and latent-attention models (Mixtral, DeepSeek-V3)."""

from __future__ import annotations

from typing import Any, Optional

import sympy as sp

from ..core.parallelism import Parallelism, ParallelismLike
from ..layers.attention import GroupedQueryAttentionLayer
from ..layers.embedding import EmbeddingLayer, LMHeadLayer
from ..layers.mla import MLALayer
from ..layers.mlp import Activation, GatedMLPLayer
from ..layers.moe import MoELayer
from ..layers.norm import NormLayer
from .model import Model, TransformerBlock, resolve_causal

__all__ = ["deepseek_v3", "from_moe_config", "mixtral"]


def _ends(par: Parallelism, hidden_size: Any, vocab_size: Any, tied: bool) -> dict[str, Any]:
    return {
        "embedding": EmbeddingLayer(vocab_size=vocab_size, hidden_size=hidden_size, parallelism=par),
        "final_norm": NormLayer(hidden_size=hidden_size, kind="rmsnorm", parallelism=par),
        "lm_head": LMHeadLayer(vocab_size=vocab_size, hidden_size=hidden_size, tied=tied, parallelism=par),
    }


def mixtral(hidden_size: Any, num_heads: Any, num_kv_heads: Any, num_layers: Any, vocab_size: Any,
            intermediate_size: Any, num_experts: Any, top_k: Any, parallelism: ParallelismLike = None,
            tied: bool = False, head_dim: Any = None, window: Any = None, causal: Optional[bool] = None,
            activation: Activation = "silu", flash_attention: bool = True, name: str = "mixtral") -> Model:
    """Mixtral: a Llama/Mistral block whose SwiGLU MLP is a top-k mixture of experts.

    Flash attention by default, so ``causal`` resolves to ``True`` (see :func:`symcost.model.resolve_causal`);
    ``window`` a sliding window as Mistral's (Mixtral-8x7B has none)."""
    par = Parallelism.coerce(parallelism)
    block = TransformerBlock(
        attention=GroupedQueryAttentionLayer(hidden_size=hidden_size, num_heads=num_heads,
                                             num_kv_heads=num_kv_heads, head_dim=head_dim, window=window,
                                             flash_attention=flash_attention,
                                             causal=resolve_causal(causal, flash_attention), parallelism=par),
        mlp=MoELayer(hidden_size=hidden_size, expert_intermediate_size=intermediate_size,
                     num_experts=num_experts, top_k=top_k, activation=activation, parallelism=par),
        norm_kind="rmsnorm", parallelism=par)
    return Model(name=name, blocks=((block, num_layers),), **_ends(par, hidden_size, vocab_size, tied))


def deepseek_v3(hidden_size: Any, num_heads: Any, num_layers: Any, vocab_size: Any, intermediate_size: Any,
                moe_intermediate_size: Any, num_experts: Any, top_k: Any, num_shared_experts: Any,
                first_dense_layers: Any, q_lora_rank: Any, kv_lora_rank: Any, qk_nope_head_dim: Any,
                qk_rope_head_dim: Any, v_head_dim: Any, parallelism: ParallelismLike = None,
                tied: bool = False, causal: Optional[bool] = None, activation: Activation = "silu",
                name: str = "deepseek-v3") -> Model:
    """DeepSeek-V3: MLA attention; the first ``first_dense_layers`` blocks with a dense SwiGLU MLP,
    the rest with a MoE of routed and shared experts (router score bias included). The
    multi-token-prediction module is not part of the model. Flash attention, so ``causal``
    resolves to ``True`` (see :func:`symcost.model.resolve_causal`)."""
    par = Parallelism.coerce(parallelism)
    attention = MLALayer(hidden_size=hidden_size, num_heads=num_heads, q_lora_rank=q_lora_rank,
                         kv_lora_rank=kv_lora_rank, qk_nope_head_dim=qk_nope_head_dim,
                         qk_rope_head_dim=qk_rope_head_dim, v_head_dim=v_head_dim,
                         causal=resolve_causal(causal, True), parallelism=par)
    dense = TransformerBlock(attention=attention, norm_kind="rmsnorm", parallelism=par,
                             mlp=GatedMLPLayer(hidden_size=hidden_size, intermediate_size=intermediate_size,
                                               activation=activation, parallelism=par))
    moe = TransformerBlock(attention=attention, norm_kind="rmsnorm", parallelism=par,
                           mlp=MoELayer(hidden_size=hidden_size, expert_intermediate_size=moe_intermediate_size,
                                        num_experts=num_experts, top_k=top_k,
                                        num_shared_experts=num_shared_experts, router_bias=True,
                                        activation=activation, parallelism=par))
    # a group of provably no layers is left out (a config may have no dense or no MoE layer)
    blocks = tuple((blk, n) for blk, n in ((dense, first_dense_layers), (moe, num_layers - first_dense_layers))
                   if not sp.sympify(n).is_zero)
    return Model(name=name, blocks=blocks, **_ends(par, hidden_size, vocab_size, tied))


def from_moe_config(model_type: str, reader: Any, common: dict[str, Any]) -> Model:
    """The mixtral and deepseek_v3 branches of :func:`symcost.models.from_hf_config` (``reader``
    reads keys with one-line errors; ``common`` holds what every type shares)."""
    if model_type == "mixtral":
        experts, top_k = reader.positive("num_local_experts"), reader.positive("num_experts_per_tok")
        if top_k > experts:
            raise reader.error(f"num_experts_per_tok ({top_k}) must not exceed num_local_experts ({experts})")
        reader.zero("router_jitter_noise", "multiplicative noise on the router's input in training")
        return mixtral(num_experts=experts, top_k=top_k, window=reader.positive("sliding_window", None, nullable=True),
                       **common)
    experts, top_k = reader.positive("n_routed_experts"), reader.positive("num_experts_per_tok")
    if top_k > experts:
        raise reader.error(f"num_experts_per_tok ({top_k}) must not exceed n_routed_experts ({experts})")
    if reader.positive("moe_layer_freq", 1) != 1:
        raise reader.error(f"moe_layer_freq = {reader.config['moe_layer_freq']!r} is not modelled: "
                           "only 1 (every layer after first_k_dense_replace is MoE)")
    if reader.flag("attention_bias"):
        raise reader.error("attention_bias = true is not modelled for multi-head latent attention")
    first_dense = reader.count("first_k_dense_replace")
    if first_dense > common["num_layers"]:
        raise reader.error(f"first_k_dense_replace ({first_dense}) must not exceed num_hidden_layers "
                           f"({common['num_layers']})")
    return deepseek_v3(
        moe_intermediate_size=reader.positive("moe_intermediate_size"), num_experts=experts, top_k=top_k,
        num_shared_experts=reader.count("n_shared_experts"), first_dense_layers=first_dense,
        q_lora_rank=reader.positive("q_lora_rank", None, nullable=True),
        kv_lora_rank=reader.positive("kv_lora_rank"), qk_nope_head_dim=reader.positive("qk_nope_head_dim"),
        qk_rope_head_dim=reader.positive("qk_rope_head_dim"), v_head_dim=reader.positive("v_head_dim"),
        **common)
