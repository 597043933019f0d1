"""Llama 4 (Scout 17B-16E, Maverick 17B-128E): the :func:`llama4` builder and the
:func:`symcost.models.from_hf_config` branches of ``llama4_text`` (``Llama4ForCausalLM``) and
``llama4`` (``Llama4ForConditionalGeneration``: the text model plus a vision encoder).

The text model, as transformers 5.25's ``modeling_llama4.py`` builds it: per layer GQA over
``head_dim`` heads, on its RoPE layers chunked local attention (``attention_chunk_size``: each
query sees only the keys of its own chunk, :func:`~symcost.core.ops.chunk_pairs`) and a weightless
RMSNorm on each Q and K head (``use_qk_norm``), on every ``no_rope_layer_interval``-th layer (by
default every 4th) global attention without RoPE; on the layers ``moe_layers`` names (by default
every ``interleave_moe_layer_step``-th) a MoE of ``num_local_experts`` SwiGLU experts of
``intermediate_size`` behind a top-k router (top 1, sigmoid scores, no bias) plus one ungated
shared expert of ``intermediate_size``; on the others a dense SwiGLU MLP of
``intermediate_size_mlp``.

The vision part: a ``llama4`` config's vision encoder and multimodal projector run only on
images. symcost costs the text path (what a text-only request runs); their parameters are
counted by :func:`vision_parameters` and kept in :attr:`Model.vision_parameters`, so
:attr:`Model.checkpoint_parameter_count` is the whole checkpoint's (transformers' count of
``Llama4ForConditionalGeneration``) while every cost, :attr:`Model.parameter_count` included, is
the text model's.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..core.parallelism import Parallelism
from ..layers.attention import GroupedQueryAttentionLayer
from ..layers.embedding import EmbeddingLayer, LMHeadLayer
from ..layers.mlp import Activation, GatedMLPLayer
from ..layers.moe import MoELayer
from ..layers.norm import NormLayer
from .model import Model, TransformerBlock, resolve_causal

__all__ = ["llama4", "vision_parameters", "LlamaLayer", "VISION_FREE"]

LlamaLayer = tuple[Optional[int], bool, bool]
"""One Llama 4 layer: ``(attention_chunk or None for global attention, Q/K norm, MoE)``."""

_CHUNKED, _FULL = "chunked_attention", "full_attention"


def llama4(hidden_size: Any, num_heads: Any, num_kv_heads: Any, head_dim: Any, vocab_size: Any,
           intermediate_size: Any, intermediate_size_mlp: Any, num_experts: Any, top_k: Any,
           layers: Sequence[LlamaLayer], tied: bool = False, attention_bias: bool = False,
           causal: Optional[bool] = None, activation: Activation = "silu", flash_attention: bool = True,
           name: str = "llama4") -> Model:
    """Llama 4's text model, one ``(attention_chunk, qk_norm, moe)`` entry per layer
    (:data:`LlamaLayer`); consecutive equal layers form one ``(block, count)`` group. Flash
    attention by default, so ``causal`` resolves to ``True``.

    Parameters per layer: attention ``2h(a + g)d`` (plus ``(a + 2g)d + h`` biases with
    ``attention_bias``), two RMSNorms ``2h``, and a MoE ``E(3hf) + hE + 3hf`` (experts, router,
    shared expert) or a dense MLP ``3h f_mlp``; the Q/K norms are weightless.

    >>> m = llama4(64, 4, 2, 16, 128, 32, 48, 4, 1, [(8, True, True), (None, False, False)])
    >>> [(blk.attention.attention_chunk, blk.attention.qk_norm, type(blk.mlp).__name__) for blk, _ in m.blocks]
    [(8, 'weightless', 'MoELayer'), (None, False, 'GatedMLPLayer')]
    """
    par = Parallelism.coerce(None)
    moe = MoELayer(hidden_size=hidden_size, expert_intermediate_size=intermediate_size, num_experts=num_experts,
                   top_k=top_k, num_shared_experts=1, shared_intermediate_size=intermediate_size,
                   activation=activation, parallelism=par)
    dense = GatedMLPLayer(hidden_size=hidden_size, intermediate_size=intermediate_size_mlp, activation=activation,
                          parallelism=par)

    def block(chunk: Optional[int], qk_norm: bool, is_moe: bool) -> TransformerBlock:
        attention = GroupedQueryAttentionLayer(
            hidden_size=hidden_size, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
            attention_chunk=chunk, qk_norm="weightless" if qk_norm else False, bias=attention_bias,
            flash_attention=flash_attention, causal=resolve_causal(causal, flash_attention), parallelism=par)
        return TransformerBlock(attention=attention, mlp=moe if is_moe else dense, norm_kind="rmsnorm",
                                parallelism=par)

    runs: list[list[Any]] = []
    for layer in layers:
        if runs and runs[-1][0] == layer:
            runs[-1][1] += 1
        else:
            runs.append([layer, 1])
    built = {layer: block(*layer) for layer, _ in runs}
    return Model(name=name, blocks=tuple((built[layer], n) for layer, n in runs),
                 embedding=EmbeddingLayer(vocab_size=vocab_size, hidden_size=hidden_size, parallelism=par),
                 final_norm=NormLayer(hidden_size=hidden_size, kind="rmsnorm", parallelism=par),
                 lm_head=LMHeadLayer(vocab_size=vocab_size, hidden_size=hidden_size, tied=tied, parallelism=par))


def _int_list(reader: Any, key: str, num_layers: int, values: Optional[tuple[int, ...]] = None) -> Optional[list]:
    """``key``'s list (``None`` when absent, null or empty, as the config class treats it):
    layer indices below ``num_layers``, or with ``values`` one entry of those per layer."""
    given = reader.get(key, None)
    if given is None or given == []:
        return None
    if not isinstance(given, list) or not all(type(i) is int for i in given):
        raise reader.error(f"{key} must be a list of integers, got {given!r}")
    if values is None:
        if any(not 0 <= i < num_layers for i in given):
            raise reader.error(f"{key} must list layer indices below num_hidden_layers ({num_layers}), got {given!r}")
    elif len(given) != num_layers or any(i not in values for i in given):
        raise reader.error(f"{key} must list {num_layers} entries (one per layer) of {values}, got {given!r}")
    return given


def _layer_types(reader: Any, rope: list[int], chunk: Optional[int]) -> list[str]:
    """Llama4TextConfig: ``chunked_attention`` on the RoPE layers when a chunk size is set, else
    ``full_attention`` (unless ``layer_types`` says)."""
    given = reader.get("layer_types", None)
    if given is None:
        return [_CHUNKED if use and chunk is not None else _FULL for use in rope]
    if not isinstance(given, list) or len(given) != len(rope) or any(t not in (_CHUNKED, _FULL) for t in given):
        raise reader.error(f"layer_types must list {len(rope)} entries (one per layer) of {_CHUNKED}, {_FULL}, "
                           f"got {given!r}")
    if chunk is None and _CHUNKED in given:
        raise reader.error("layer_types names chunked_attention, but attention_chunk_size is null")
    return given


def text_layers(reader: Any, num_layers: int) -> list[LlamaLayer]:
    """Each layer's ``(attention_chunk, qk_norm, moe)`` from a ``llama4_text`` config, as
    ``Llama4TextConfig.__post_init__`` and ``Llama4TextAttention`` derive them: layer i uses RoPE
    unless ``no_rope_layers[i]`` is 0 (default: every ``no_rope_layer_interval``-th layer, i + 1
    divisible by it, is NoPE), attends in chunks when ``layer_types`` says ``chunked_attention``
    (default: its RoPE layers, when ``attention_chunk_size`` is set), norms Q and K when
    ``use_qk_norm`` and it uses RoPE, and is MoE when in ``moe_layers`` (default: i + 1 divisible by
    ``interleave_moe_layer_step``)."""
    interval = reader.positive("no_rope_layer_interval")
    rope = _int_list(reader, "no_rope_layers", num_layers, (0, 1))
    rope = [int((i + 1) % interval != 0) for i in range(num_layers)] if rope is None else rope
    chunk = reader.positive("attention_chunk_size", nullable=True)
    types = _layer_types(reader, rope, chunk)
    step = reader.positive("interleave_moe_layer_step")
    moe = _int_list(reader, "moe_layers", num_layers)
    moe_set = set(range(step - 1, num_layers, step) if moe is None else moe)
    qk_norm = reader.flag("use_qk_norm", True)
    return [(chunk if kind == _CHUNKED else None, qk_norm and bool(use), i in moe_set)
            for i, (use, kind) in enumerate(zip(rope, types))]


def text_config(reader: Any, common: dict[str, Any]) -> Model:
    """The ``llama4_text`` branch: ``common`` holds the sizes, KV heads, head_dim, tied, activation,
    causal and kernel the loader read."""
    experts, top_k = reader.positive("num_local_experts"), reader.positive("num_experts_per_tok")
    if top_k > experts:
        raise reader.error(f"num_experts_per_tok ({top_k}) must not exceed num_local_experts ({experts})")
    reader.zero("router_jitter_noise", "multiplicative noise on the router's input in training")
    layers = text_layers(reader, common.pop("num_layers"))
    return llama4(intermediate_size_mlp=reader.positive("intermediate_size_mlp"), num_experts=experts, top_k=top_k,
                  layers=layers, attention_bias=reader.flag("attention_bias"), **common)


# -- the vision part -------------------------------------------------------------------------

VISION_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_channels", "intermediate_size",
                "vision_output_dim", "image_size", "patch_size", "projector_input_dim", "projector_output_dim")
"""The keys of a ``vision_config`` that size its parameters (:func:`vision_parameters`)."""


_VISION_ONLY = ("the vision encoder's computation on images, which the text-only costs do not run "
                "(its parameters are counted: Model.vision_parameters)")
VISION_FREE: dict[str, str] = {
    **dict.fromkeys(("hidden_act", "norm_eps", "pixel_shuffle_ratio", "vision_feature_select_strategy",
                     "vision_feature_layer", "projector_dropout", "attention_dropout", "rope_theta",
                     "rope_parameters", "initializer_range", "_attn_implementation", "_attn_implementation_autoset"),
                    _VISION_ONLY),
    "multi_modal_projector_bias": "not read by transformers' Llama4MultiModalProjector (its linear has no bias)",
}
"""Keys of a Llama 4 ``vision_config`` that change no parameter count, with the reason."""


def vision_parameters(reader: Any, text_hidden: int) -> int:
    """Parameters of ``Llama4VisionModel`` and ``Llama4MultiModalProjector`` (transformers 5.25),
    with H the vision width, F its MLP width, L its layers, P the patch and I the image size:

    - the patch embedding (an unfold and a linear without bias) ``C P^2 H``, the class embedding
      ``H``, the positions ``((I // P)^2 + 1) H``, the pre and post LayerNorms ``4H``;
    - per encoder layer: Q, K, V, O with biases ``4(H^2 + H)``, the GELU MLP with biases
      ``2HF + F + H``, two LayerNorms ``4H``;
    - the pixel-shuffle adapter ``F x projector_input_dim`` and ``projector_output_dim^2`` (no
      biases), and the projector ``vision_output_dim x h`` (no bias; ``multi_modal_projector_bias``
      is not read by transformers).
    """
    v = {key: reader.positive(key) for key in VISION_SIZES}
    h, f = v["hidden_size"], v["intermediate_size"]
    if h % v["num_attention_heads"]:
        raise reader.error(f"hidden_size ({h}) must be divisible by num_attention_heads ({v['num_attention_heads']})")
    patches = (v["image_size"] // v["patch_size"]) ** 2 + 1
    embed = v["num_channels"] * v["patch_size"] ** 2 * h + h + patches * h + 4 * h
    layer = 4 * (h * h + h) + 2 * h * f + f + h + 4 * h
    adapter = f * v["projector_input_dim"] + v["projector_output_dim"] ** 2
    return int(embed + v["num_hidden_layers"] * layer + adapter + v["vision_output_dim"] * int(text_hidden))


def sub_config(reader: Any, key: str, model_type: str) -> Mapping[str, Any]:
    """The nested ``text_config`` or ``vision_config`` (absent: the class's defaults, ``{}``)."""
    value = reader.get(key, None)
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise reader.error(f"{key} must be a JSON object, got {value!r}")
    if value.get("model_type", model_type) != model_type:
        raise reader.error(f"{key}.model_type must be {model_type!r}, got {value['model_type']!r}")
    return value
