"""Builders for mixture-of-experts and latent-attention models (Mixtral, DeepSeek-V3)."""

from __future__ import annotations

from typing import Any, Mapping

from .errors import ConfigError
from .layers.attention import GroupedQueryAttentionLayer
from .layers.embedding import EmbeddingLayer, LMHeadLayer
from .layers.mla import MLALayer
from .layers.mlp import GatedMLPLayer
from .layers.moe import MoELayer
from .layers.norm import NormLayer
from .model import Model, TransformerBlock
from .parallel import Parallelism, ParallelismLike

__all__ = ["mixtral", "deepseek_v3", "from_moe_config", "require_int"]


def require_int(config: Mapping[str, Any], key: str, source: str) -> int:
    """``config[key]``, which must be a non-negative integer, for the Hugging Face config loaders
    (:func:`symcost.models.from_hf_config` and :func:`from_moe_config`); ``source`` names the file.

    >>> require_int({"hidden_size": 4096}, "hidden_size", "config")
    4096
    """
    if key not in config:
        raise ConfigError(f"{source}: config.json has no {key!r}")
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{source}: {key} must be a non-negative integer, got {value!r}")
    return value


def _ends(par: Parallelism, hidden_size: Any, vocab_size: Any, tied: bool) -> dict[str, Any]:
    return {
        "embedding": EmbeddingLayer(vocab_size=vocab_size, hidden_size=hidden_size, parallelism=par),
        "final_norm": NormLayer(hidden_size=hidden_size, kind="rmsnorm", parallelism=par),
        "lm_head": LMHeadLayer(vocab_size=vocab_size, hidden_size=hidden_size, tied=tied, parallelism=par),
    }


def mixtral(hidden_size: Any, num_heads: Any, num_kv_heads: Any, num_layers: Any, vocab_size: Any,
            intermediate_size: Any, num_experts: Any, top_k: Any, parallelism: ParallelismLike = None,
            tied: bool = False, name: str = "mixtral") -> Model:
    """Mixtral: a Llama/Mistral block whose SwiGLU MLP is a top-k mixture of experts."""
    par = Parallelism.coerce(parallelism)
    block = TransformerBlock(
        attention=GroupedQueryAttentionLayer(hidden_size=hidden_size, num_heads=num_heads,
                                             num_kv_heads=num_kv_heads, parallelism=par),
        mlp=MoELayer(hidden_size=hidden_size, expert_intermediate_size=intermediate_size,
                     num_experts=num_experts, top_k=top_k, parallelism=par),
        norm_kind="rmsnorm", parallelism=par)
    return Model(name=name, blocks=((block, num_layers),), **_ends(par, hidden_size, vocab_size, tied))


def deepseek_v3(hidden_size: Any, num_heads: Any, num_layers: Any, vocab_size: Any, intermediate_size: Any,
                moe_intermediate_size: Any, num_experts: Any, top_k: Any, num_shared_experts: Any,
                first_dense_layers: Any, q_lora_rank: Any, kv_lora_rank: Any, qk_nope_head_dim: Any,
                qk_rope_head_dim: Any, v_head_dim: Any, parallelism: ParallelismLike = None,
                tied: bool = False, name: str = "deepseek-v3") -> Model:
    """DeepSeek-V3: MLA attention; the first ``first_dense_layers`` blocks with a dense SwiGLU MLP,
    the rest with a MoE of routed and shared experts (router score bias included). The
    multi-token-prediction module is not part of the model."""
    par = Parallelism.coerce(parallelism)
    attention = MLALayer(hidden_size=hidden_size, num_heads=num_heads, q_lora_rank=q_lora_rank,
                         kv_lora_rank=kv_lora_rank, qk_nope_head_dim=qk_nope_head_dim,
                         qk_rope_head_dim=qk_rope_head_dim, v_head_dim=v_head_dim, parallelism=par)
    dense = TransformerBlock(attention=attention, norm_kind="rmsnorm", parallelism=par,
                             mlp=GatedMLPLayer(hidden_size=hidden_size, intermediate_size=intermediate_size,
                                               parallelism=par))
    moe = TransformerBlock(attention=attention, norm_kind="rmsnorm", parallelism=par,
                           mlp=MoELayer(hidden_size=hidden_size, expert_intermediate_size=moe_intermediate_size,
                                        num_experts=num_experts, top_k=top_k,
                                        num_shared_experts=num_shared_experts, router_bias=True,
                                        parallelism=par))
    blocks = ((dense, first_dense_layers), (moe, num_layers - first_dense_layers))
    return Model(name=name, blocks=blocks, **_ends(par, hidden_size, vocab_size, tied))


def from_moe_config(model_type: str, config: Mapping[str, Any], common: dict[str, Any], kv: int,
                    source: str) -> Model:
    """The mixtral and deepseek_v3 branches of :func:`symcost.models.from_hf_config`."""
    get = lambda key: require_int(config, key, source)  # noqa: E731
    if model_type == "mixtral":
        return mixtral(num_kv_heads=kv, intermediate_size=get("intermediate_size"),
                       num_experts=get("num_local_experts"), top_k=get("num_experts_per_tok"), **common)
    q_lora = config.get("q_lora_rank")
    return deepseek_v3(
        intermediate_size=get("intermediate_size"), moe_intermediate_size=get("moe_intermediate_size"),
        num_experts=get("n_routed_experts"), top_k=get("num_experts_per_tok"),
        num_shared_experts=get("n_shared_experts"), first_dense_layers=get("first_k_dense_replace"),
        q_lora_rank=q_lora, kv_lora_rank=get("kv_lora_rank"), qk_nope_head_dim=get("qk_nope_head_dim"),
        qk_rope_head_dim=get("qk_rope_head_dim"), v_head_dim=get("v_head_dim"), **common)
