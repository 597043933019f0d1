"""The :func:`symcost.models.from_hf_config` branches of the GPT-2, GPT-NeoX and Falcon families:
LayerNorm with biases, biased projections, learned positions (GPT-2), parallel attention and MLP
(GPT-NeoX, Falcon), multi-query and grouped KV heads (Falcon).

Each reads its keys with the loader's reader (one-line errors, every key accounted for); ``flash``
is the kernel ``_attn_implementation`` names (the loader reads it).
"""

from __future__ import annotations

from typing import Any, Optional

from ..layers.attention import AttentionLayer, GroupedQueryAttentionLayer
from ..layers.embedding import EmbeddingLayer, LMHeadLayer
from ..layers.mlp import MLPLayer
from ..layers.norm import NormLayer
from .model import Model, TransformerBlock, resolve_causal

__all__ = ["falcon", "gpt2", "gpt_neox", "gptj"]

def _layernorm_model(block: TransformerBlock, num_layers: int, vocab_size: int, hidden_size: int, tied: bool,
                     max_positions: Optional[int] = None, embedding_dropout: bool = False,
                     head_bias: bool = False) -> Model:
    """Embedding (learned positions when ``max_positions``), ``num_layers`` blocks, a final
    LayerNorm (scale and bias) and the LM head (a bias with ``head_bias``)."""
    return Model(
        embedding=EmbeddingLayer(vocab_size=vocab_size, hidden_size=hidden_size, max_positions=max_positions,
                                 dropout=embedding_dropout),
        blocks=((block, num_layers),),
        final_norm=NormLayer(hidden_size=hidden_size, kind="layernorm"),
        lm_head=LMHeadLayer(vocab_size=vocab_size, hidden_size=hidden_size, tied=tied, bias=head_bias))


def gpt2(reader: Any, causal: Optional[bool], flash: bool) -> Model:
    """GPT-2 (HF ``GPT2LMHeadModel``): learned positions (``n_positions``), LayerNorm, multi-head
    attention (fused ``c_attn``) and a GELU MLP (``n_inner``, default ``4h``) with biases,
    dropout where the rates are non-zero, the LM head tied to the token embedding.

    Parameters ``12 L h^2 + 13 L h + (V + P) h + 2h`` at ``n_inner = 4h``."""
    h, a, L = reader.positive("n_embd"), reader.positive("n_head"), reader.positive("n_layer")
    positions, vocab = reader.positive("n_positions"), reader.positive("vocab_size")
    reader.divides("n_embd", "n_head")
    f = reader.positive("n_inner", None, nullable=True) or 4 * h
    if reader.flag("add_cross_attention"):
        raise reader.error("add_cross_attention = true is not modelled (an encoder-decoder's cross-attention)")
    attn_p, resid_p = (reader.rate(k) for k in ("attn_pdrop", "resid_pdrop"))
    if attn_p != resid_p:
        raise reader.error("attn_pdrop and resid_pdrop must be both zero or both non-zero (dropout on the "
                           "attention probabilities without dropout on its output, or the reverse, is not modelled)")
    block = TransformerBlock(
        attention=AttentionLayer(hidden_size=h, num_heads=a, bias=True, dropout=attn_p, flash_attention=flash,
                                 causal=resolve_causal(causal, flash)),
        mlp=MLPLayer(hidden_size=h, intermediate_size=f, bias=True, dropout=resid_p,
                     activation=reader.activation("activation_function")),
        norm_kind="layernorm")
    return _layernorm_model(block, L, vocab, h, reader.flag("tie_word_embeddings", True), max_positions=positions,
                            embedding_dropout=reader.rate("embd_pdrop"))


def gpt_neox(reader: Any, common: dict[str, Any], flash: bool) -> Model:
    """GPT-NeoX (HF ``GPTNeoXForCausalLM``): LayerNorm, multi-head attention (fused QKV; biases
    with ``attention_bias``, GPTNeoXConfig's default true), a GELU MLP with biases, attention and
    MLP side by side (``use_parallel_residual``, default true), an untied ``embed_out``. The
    partial rotary embedding (``rotary_pct``) is not counted, as no RoPE is."""
    reader.divides("hidden_size", "num_attention_heads")
    reader.zero("hidden_dropout", "dropout on the attention's and MLP's outputs in training")
    h = common["hidden_size"]
    block = TransformerBlock(
        attention=AttentionLayer(hidden_size=h, num_heads=common["num_heads"], bias=reader.flag("attention_bias", True),
                                 flash_attention=flash, causal=resolve_causal(common["causal"], flash)),
        mlp=MLPLayer(hidden_size=h, intermediate_size=common["intermediate_size"], bias=True,
                     activation=common["activation"]),
        norm_kind="layernorm", parallel=reader.flag("use_parallel_residual", True))
    return _layernorm_model(block, common["num_layers"], common["vocab_size"], h, common["tied"])


def falcon(reader: Any, causal: Optional[bool], flash: bool) -> Model:
    """Falcon (HF ``FalconForCausalLM``): LayerNorm, attention and MLP (``ffn_hidden_size``,
    default ``4h``) with biases only when ``bias``; multi-query attention (``multi_query``),
    or ``num_kv_heads`` groups with ``new_decoder_architecture`` (Falcon-40B); attention and
    MLP side by side (``parallel_attn``) from one shared norm, or from two
    (``num_ln_in_parallel_attn`` 2, the new architecture's default); a tied LM head by default."""
    h, a = reader.positive("hidden_size"), reader.positive("num_attention_heads")
    layers, vocab = reader.positive("num_hidden_layers"), reader.positive("vocab_size")
    reader.divides("hidden_size", "num_attention_heads")
    new = reader.flag("new_decoder_architecture")
    parallel = reader.flag("parallel_attn", True)  # FalconConfig's defaults: parallel, multi-query
    if new and not parallel:
        raise reader.error("new_decoder_architecture with parallel_attn = false is not modelled")
    kv = reader.positive("num_kv_heads", None, nullable=True) or a
    multi_query = reader.flag("multi_query", True)  # FalconConfig writes it even where new overrides it
    kv = kv if new or not multi_query else 1
    reader.derived("num_key_value_heads", kv, "num_kv_heads with new_decoder_architecture and multi_query")
    if a % kv:
        raise reader.error(f"num_attention_heads ({a}) must be divisible by num_kv_heads ({kv})")
    norms = reader.positive("num_ln_in_parallel_attn", None, nullable=True) or (2 if new else 1)
    if norms not in (1, 2):
        raise reader.error(f"num_ln_in_parallel_attn must be 1 or 2, got {norms!r}")
    if reader.flag("alibi"):
        raise reader.error("alibi = true is not modelled (ALiBi's position bias on the attention scores)")
    reader.zero("hidden_dropout", "dropout on the attention's and MLP's outputs in training")
    reader.zero("attention_dropout", "dropout on the attention probabilities in training")
    bias = reader.flag("bias")
    block = TransformerBlock(
        attention=GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=kv, bias=bias,
                                             flash_attention=flash, causal=resolve_causal(causal, flash)),
        mlp=MLPLayer(hidden_size=h, intermediate_size=reader.positive("ffn_hidden_size", None, nullable=True) or 4 * h,
                     bias=bias, activation=reader.activation("activation")),
        norm_kind="layernorm", parallel=parallel, shared_norm=parallel and norms == 1)
    return _layernorm_model(block, layers, vocab, h, reader.flag("tie_word_embeddings", True))


def gptj(reader: Any, causal: Optional[bool], flash: bool) -> Model:
    """GPT-J (HF ``GPTJForCausalLM``): one LayerNorm feeding attention and MLP side by side,
    multi-head attention without biases, a GELU MLP (``n_inner``, default ``4h``) with biases, an
    untied LM head with a bias; the partial rotary embedding (``rotary_dim``) is not counted, as
    no RoPE is. Parameters ``L (12 h^2 + 7h) + 2 V h + V + 2h`` at ``n_inner = 4h``."""
    h, a, L = reader.positive("n_embd"), reader.positive("n_head"), reader.positive("n_layer")
    vocab = reader.positive("vocab_size")
    reader.divides("n_embd", "n_head")
    f = reader.positive("n_inner", None, nullable=True) or 4 * h
    for key in ("attn_pdrop", "resid_pdrop", "embd_pdrop"):
        reader.zero(key, "dropout in training")
    block = TransformerBlock(
        attention=AttentionLayer(hidden_size=h, num_heads=a, flash_attention=flash,
                                 causal=resolve_causal(causal, flash)),
        mlp=MLPLayer(hidden_size=h, intermediate_size=f, bias=True,
                     activation=reader.activation("activation_function")),
        norm_kind="layernorm", parallel=True, shared_norm=True)
    return _layernorm_model(block, L, vocab, h, reader.flag("tie_word_embeddings"), head_bias=True)
