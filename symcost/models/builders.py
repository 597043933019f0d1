"""Builders for mixture-of-experts and latent-attention models (Mixtral, Qwen3-MoE, DeepSeek-V2/V3,
gpt-oss)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import sympy as sp

from ..core.parallelism import Parallelism, ParallelismLike
from ..layers.attention import GroupedQueryAttentionLayer
from ..layers.embedding import EmbeddingLayer, LMHeadLayer
from ..layers.mla import MLALayer
from ..layers.mlp import Activation, GatedMLPLayer
from ..layers.moe import MoELayer
from ..layers.norm import NormLayer
from .model import Model, TransformerBlock, resolve_causal

__all__ = ["deepseek_v3", "from_moe_config", "gpt_oss", "mixtral", "qwen3_moe"]


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

    Flash attention by default, so ``causal`` resolves to ``True`` (see :func:`symcost.models.model.resolve_causal`);
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
                router_bias: bool = True, name: str = "deepseek-v3") -> Model:
    """DeepSeek-V3: MLA attention; the first ``first_dense_layers`` blocks with a dense SwiGLU MLP,
    the rest with a MoE of routed and shared experts (router score bias included, a buffer without
    gradient; DeepSeek-V2 has none: ``router_bias=False``). The
    multi-token-prediction module is not part of the model. Flash attention, so ``causal``
    resolves to ``True`` (see :func:`symcost.models.model.resolve_causal`)."""
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
                                        num_shared_experts=num_shared_experts, router_bias=router_bias,
                                        router_bias_buffer=router_bias,  # e_score_correction_bias
                                        activation=activation, parallelism=par))
    # a group of provably no layers is left out (a config may have no dense or no MoE layer)
    blocks = tuple((blk, n) for blk, n in ((dense, first_dense_layers), (moe, num_layers - first_dense_layers))
                   if not sp.sympify(n).is_zero)
    return Model(name=name, blocks=blocks, **_ends(par, hidden_size, vocab_size, tied))


def qwen3_moe(hidden_size: Any, num_heads: Any, num_kv_heads: Any, head_dim: Any, vocab_size: Any,
              intermediate_size: Any, moe_intermediate_size: Any, num_experts: Any, top_k: Any,
              moe_layers: list[bool], attention_bias: Union[bool, Literal["qkv"]] = False, tied: bool = False,
              causal: Optional[bool] = None, activation: Activation = "silu", flash_attention: bool = True,
              qk_norm: bool = True, shared_intermediate_size: Any = None, name: str = "qwen3-moe") -> Model:
    """Qwen3-MoE: Qwen3's attention (GQA, RMSNorm on each Q and K head) and, on the layers
    ``moe_layers`` marks, a top-k MoE of SwiGLU experts without shared experts (a dense SwiGLU
    MLP of ``intermediate_size`` on the others). Flash attention by default, so ``causal``
    resolves to ``True``. Qwen2-MoE: ``qk_norm=False``, ``attention_bias="qkv"`` and one shared
    expert of ``shared_intermediate_size`` behind a sigmoid gate."""
    par = Parallelism.coerce(None)
    attention = GroupedQueryAttentionLayer(hidden_size=hidden_size, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                           head_dim=head_dim, bias=attention_bias, qk_norm=qk_norm,
                                           flash_attention=flash_attention,
                                           causal=resolve_causal(causal, flash_attention), parallelism=par)
    shared = {} if shared_intermediate_size is None else {
        "num_shared_experts": 1, "shared_intermediate_size": shared_intermediate_size, "shared_gate": True}
    moe = MoELayer(hidden_size=hidden_size, expert_intermediate_size=moe_intermediate_size, num_experts=num_experts,
                   top_k=top_k, activation=activation, parallelism=par, **shared)
    dense = GatedMLPLayer(hidden_size=hidden_size, intermediate_size=intermediate_size, activation=activation,
                          parallelism=par)
    runs: list[list[Any]] = []
    for is_moe in moe_layers:  # consecutive layers of one kind: one (block, count) group
        if runs and runs[-1][0] == is_moe:
            runs[-1][1] += 1
        else:
            runs.append([is_moe, 1])
    blocks = tuple((TransformerBlock(attention=attention, mlp=moe if is_moe else dense, norm_kind="rmsnorm",
                                     parallelism=par), n) for is_moe, n in runs)
    return Model(name=name, blocks=blocks, **_ends(par, hidden_size, vocab_size, tied))


def gpt_oss(hidden_size: Any, num_heads: Any, num_kv_heads: Any, head_dim: Any, vocab_size: Any,
            intermediate_size: Any, num_experts: Any, top_k: Any, windows: list[Any], tied: bool = False,
            causal: Optional[bool] = None, flash_attention: bool = True, name: str = "gpt-oss") -> Model:
    """gpt-oss (HF ``GptOssForCausalLM``): per layer GQA with biases on Q, K, V and O and a sink
    logit per head, over the window ``windows`` gives that layer (``None``: all keys), and a top-k
    MoE of gated experts with biases, behind a router with a bias; no shared expert. The experts'
    clamped SwiGLU, ``(clamp(up) + 1) * g * sigmoid(1.702 g)`` with ``g = clamp(gate)``, is
    priced as SiLU and its gate multiply (the clamps, the scale and the ``+ 1`` are elementwise
    passes left out, docs/conventions.md §16, item 15). Layers of one window in a row form one
    ``(block, count)`` group.

    Parameters per layer ``2h(a + g)d + (a + 2g)d + h + a + E(3hf + 2f + h) + E(h + 1) + 2h``."""
    par = Parallelism.coerce(None)
    moe = MoELayer(hidden_size=hidden_size, expert_intermediate_size=intermediate_size, num_experts=num_experts,
                   top_k=top_k, router_bias=True, expert_bias=True, parallelism=par)

    def block(window: Any) -> TransformerBlock:
        attention = GroupedQueryAttentionLayer(
            hidden_size=hidden_size, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
            window=window, bias=True, sinks=True, flash_attention=flash_attention,
            causal=resolve_causal(causal, flash_attention), parallelism=par)
        return TransformerBlock(attention=attention, mlp=moe, norm_kind="rmsnorm", parallelism=par)

    runs: list[list[Any]] = []
    for window in windows:
        if runs and runs[-1][0] == window:
            runs[-1][1] += 1
        else:
            runs.append([window, 1])
    built = {window: block(window) for window, _ in runs}
    return Model(name=name, blocks=tuple((built[window], n) for window, n in runs),
                 **_ends(par, hidden_size, vocab_size, tied))


def _gpt_oss_config(reader: Any, common: dict[str, Any], windows: list[Any]) -> Model:
    """The gpt_oss branch: ``num_local_experts`` (or its alias ``num_experts``), top-k, biases on
    the attention (``attention_bias``, GptOssConfig's default true; false is not modelled) and
    ``experts_per_token``, the original release's name of ``num_experts_per_tok``, which must agree."""
    experts = reader.spelled(("num_local_experts", "num_experts"))  # GptOssConfig's attribute_map alias
    top_k = reader.positive("num_experts_per_tok")
    if top_k > experts:
        raise reader.error(f"num_experts_per_tok ({top_k}) must not exceed num_local_experts ({experts})")
    reader.derived("experts_per_token", top_k, "num_experts_per_tok")
    if not reader.flag("attention_bias", True):
        raise reader.error("attention_bias = false is not modelled for gpt_oss")
    kw = {k: common[k] for k in ("hidden_size", "num_heads", "num_kv_heads", "head_dim", "vocab_size",
                                 "intermediate_size", "tied", "causal", "flash_attention")}
    return gpt_oss(num_experts=experts, top_k=top_k, windows=windows, **kw)


def _qwen3_moe_config(reader: Any, common: dict[str, Any], qwen2: bool = False) -> Model:
    """The qwen3_moe and qwen2_moe branches: HF Qwen3MoeDecoderLayer puts the MoE on layer i
    unless i is in ``mlp_only_layers`` and ``(i + 1) % decoder_sparse_step == 0`` (``num_experts``
    0, which would make every layer dense, is refused). Qwen2-MoE adds a gated shared expert and
    Q, K, V biases (``qkv_bias``), without Q/K norms."""
    experts = reader.spelled(("num_experts", "num_local_experts"))  # transformers 5.x: num_local_experts
    top_k = reader.positive("num_experts_per_tok")
    if top_k > experts:
        raise reader.error(f"num_experts_per_tok ({top_k}) must not exceed the experts ({experts})")
    step = reader.positive("decoder_sparse_step", 1)
    dense_only = reader.get("mlp_only_layers", None)
    dense_only = [] if dense_only is None else dense_only  # Qwen3MoeConfig: None -> []
    if not isinstance(dense_only, list) or not all(type(i) is int for i in dense_only):
        raise reader.error(f"mlp_only_layers must be a list of layer indices, got {dense_only!r}")
    if reader.flag("use_sliding_window"):
        raise reader.error(f"use_sliding_window = true is not modelled for {'qwen2' if qwen2 else 'qwen3'}_moe")
    reader.read.update({"sliding_window", "max_window_layers", "layer_types"})  # no window without it
    moe_layers = [i not in dense_only and (i + 1) % step == 0 for i in range(common["num_layers"])]
    del common["num_layers"]
    extra: dict[str, Any] = {"attention_bias": reader.flag("attention_bias")}
    if qwen2:  # Qwen2MoeAttention: biases on q, k, v (qkv_bias), none on o; no Q/K norms
        extra = {"attention_bias": "qkv" if reader.flag("qkv_bias", True) else False, "qk_norm": False,
                 "shared_intermediate_size": reader.positive("shared_expert_intermediate_size")}
    return qwen3_moe(moe_intermediate_size=reader.positive("moe_intermediate_size"), num_experts=experts,
                     top_k=top_k, moe_layers=moe_layers, **extra, **common)


def from_moe_config(model_type: str, reader: Any, common: dict[str, Any]) -> Model:
    """The mixtral, qwen3_moe, qwen2_moe, gpt_oss, deepseek_v2 and deepseek_v3 branches of
    :func:`symcost.models.from_hf_config` (``reader`` reads keys with one-line errors; ``common``
    holds what every type shares)."""
    if model_type in ("qwen3_moe", "qwen2_moe"):
        return _qwen3_moe_config(reader, common, qwen2=model_type == "qwen2_moe")
    if model_type == "gpt_oss":
        return _gpt_oss_config(reader, common, common.pop("windows"))
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
    # DeepseekV3DecoderLayer: the MoE on layer i >= first_k_dense_replace (every layer dense past L)
    first_dense = min(reader.count("first_k_dense_replace"), common["num_layers"])
    nope, rope = reader.positive("qk_nope_head_dim"), reader.positive("qk_rope_head_dim")
    reader.derived("qk_head_dim", nope + rope, "qk_nope_head_dim + qk_rope_head_dim")  # written by transformers 5.x
    return deepseek_v3(
        moe_intermediate_size=reader.positive("moe_intermediate_size"), num_experts=experts, top_k=top_k,
        num_shared_experts=reader.count("n_shared_experts"), first_dense_layers=first_dense,
        q_lora_rank=reader.positive("q_lora_rank", None, nullable=True),
        kv_lora_rank=reader.positive("kv_lora_rank"), qk_nope_head_dim=nope,
        qk_rope_head_dim=rope, v_head_dim=reader.positive("v_head_dim"),
        router_bias=model_type == "deepseek_v3", **common)
