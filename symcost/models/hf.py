"""The Hugging Face ``config.json`` loader: :func:`from_hf_config` builds a :class:`Model` from a
checkpoint's configuration, every key modelled, known cost-free, or refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from ..errors import ConfigError, one_line
from .hf_defaults import CLASS_DEFAULTS
from .model import Model

__all__ = ["from_hf_config", "ConfigError", "MODELLED", "COST_FREE", "COST_FREE_FOR", "HF_ACTIVATIONS"]


# -- the key table -------------------------------------------------------------------------------
# Every key of a config.json is either modelled (MODELLED, per model_type), known to change no
# cost symcost counts (COST_FREE, with the reason), or refused: a key that is null (HF's "unset")
# is skipped, and a key modelled for another model_type that HF's class for this one does not
# read is accepted only when null or false (it switches nothing on). ``ignore_keys`` lets a caller
# acknowledge any other key as cost-free.

_SIZES = ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "intermediate_size")
_COMMON = ("model_type", "_name_or_path", *_SIZES, "tie_word_embeddings", "hidden_act", "attention_dropout")
_GQA = ("num_key_value_heads", "head_dim", "_attn_implementation")
_QWEN_WINDOWS = ("sliding_window", "use_sliding_window", "max_window_layers", "layer_types")
_DEEPSEEK = ("moe_intermediate_size", "n_routed_experts", "n_shared_experts", "num_experts_per_tok",
             "first_k_dense_replace", "moe_layer_freq", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
             "qk_rope_head_dim", "v_head_dim", "attention_bias", "qk_head_dim")
MODELLED: dict[str, tuple[str, ...]] = {
    "llama": (*_COMMON, *_GQA, "attention_bias", "mlp_bias"),
    "mistral": (*_COMMON, *_GQA, "sliding_window"),
    "mixtral": (*_COMMON, *_GQA, "sliding_window", "num_local_experts", "num_experts_per_tok",
                "router_jitter_noise"),
    "qwen2": (*_COMMON, *_GQA, *_QWEN_WINDOWS),
    "qwen3": (*_COMMON, *_GQA, *_QWEN_WINDOWS, "attention_bias"),
    "qwen3_moe": (*_COMMON, *_GQA, *_QWEN_WINDOWS, "attention_bias", "moe_intermediate_size", "num_experts",
                  "num_local_experts", "num_experts_per_tok", "decoder_sparse_step", "mlp_only_layers"),
    "qwen2_moe": (*_COMMON, *_GQA, *_QWEN_WINDOWS, "qkv_bias", "moe_intermediate_size", "num_experts",
                  "num_local_experts", "num_experts_per_tok", "decoder_sparse_step", "mlp_only_layers",
                  "shared_expert_intermediate_size"),
    "phi3": (*_COMMON, *_GQA, "sliding_window", "resid_pdrop", "embd_pdrop"),
    "gpt_oss": (*(k for k in _COMMON if k != "hidden_act"), *_GQA, "attention_bias", "sliding_window", "layer_types",
                "num_local_experts", "num_experts", "num_experts_per_tok", "experts_per_token"),
    "gemma2": (*(k for k in _COMMON if k != "hidden_act"), "hidden_activation", *_GQA, "attention_bias",
               "sliding_window", "layer_types"),
    "deepseek_v2": (*_COMMON, *_DEEPSEEK),
    "deepseek_v3": (*_COMMON, *_DEEPSEEK),
    "gpt2": ("model_type", "_name_or_path", "n_embd", "n_head", "n_layer", "n_positions", "n_inner", "vocab_size",
             "activation_function", "attn_pdrop", "embd_pdrop", "resid_pdrop", "tie_word_embeddings",
             "add_cross_attention", "_attn_implementation"),
    "gptj": ("model_type", "_name_or_path", "n_embd", "n_head", "n_layer", "n_inner", "vocab_size",
             "activation_function", "attn_pdrop", "embd_pdrop", "resid_pdrop", "tie_word_embeddings",
             "_attn_implementation"),
    "llama4_text": (*_COMMON, *_GQA, "attention_bias", "intermediate_size_mlp", "num_local_experts",
                    "num_experts_per_tok", "moe_layers", "interleave_moe_layer_step", "use_qk_norm", "no_rope_layers",
                    "no_rope_layer_interval", "attention_chunk_size", "layer_types", "router_jitter_noise"),
    "llama4": ("model_type", "_name_or_path", "text_config", "vision_config", "tie_word_embeddings"),
    "gpt_neox": (*_COMMON, "use_parallel_residual", "attention_bias", "hidden_dropout", "_attn_implementation"),
    "falcon": ("model_type", "_name_or_path", "hidden_size", "num_attention_heads", "num_hidden_layers",
               "vocab_size", "ffn_hidden_size", "activation", "bias", "multi_query", "num_kv_heads",
               "num_key_value_heads", "new_decoder_architecture", "parallel_attn", "num_ln_in_parallel_attn", "alibi",
               "tie_word_embeddings", "attention_dropout", "hidden_dropout", "_attn_implementation"),
}
"""The keys each ``model_type`` reads into the model; its keys are the supported model types."""

_SUPPORTED = tuple(MODELLED)

_METADATA = "metadata: names, ids and bookkeeping of the checkpoint or of transformers"
_RUNTIME = "a transformers runtime switch: what the forward returns or caches, not what it computes"
_PRECISION = "precision: symcost costs the dtype each call passes (dtype=..., kv_cache_dtype=...)"
_ROPE = ("RoPE parameters: the attention layers do not count rotary embeddings (an elementwise pass over "
         "Q and K), whatever their base or scaling")
_ROUTING = ("routing rule: which experts a token picks, not how many (num_experts_per_tok is modelled); every "
            "scoring rule is priced as the router's softmax-and-top-k pass (5 FLOPs per logit, layers.moe)")
_AUX_LOSS = ("training-loss weight of the router's load-balancing loss: a reduction over the T x E router "
             "probabilities, not counted (small next to the router's own pass)")
COST_FREE: dict[str, str] = {
    **dict.fromkeys(("architectures", "transformers_version", "auto_map", "bos_token_id", "eos_token_id",
                     "pad_token_id", "sep_token_id", "decoder_start_token_id", "tokenizer_class", "id2label",
                     "label2id", "initializer_range", "_commit_hash", "finetuning_task", "problem_type",
                     "task_specific_params", "prefix"), _METADATA),
    **dict.fromkeys(("use_cache", "return_dict", "output_attentions", "output_hidden_states",
                     "torchscript", "output_router_logits", "_attn_implementation_autoset",
                     "is_encoder_decoder", "is_decoder", "use_return_dict", "tie_encoder_decoder"), _RUNTIME),
    **dict.fromkeys(("max_length", "min_length", "do_sample", "temperature", "top_p", "top_k", "num_beams",
                     "num_return_sequences", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
                     "early_stopping"), "generation settings (older transformers save them in config.json): "
                                       "symcost costs the batch and lengths each call passes"),
    **dict.fromkeys(("torch_dtype", "dtype", "quantization_config", "use_bfloat16"), _PRECISION),
    **dict.fromkeys(("rope_theta", "rope_scaling", "rope_interleave", "rope_parameters", "partial_rotary_factor",
                     "rotary_pct", "rotary_emb_base", "original_max_position_embeddings"), _ROPE),
    **dict.fromkeys(("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"),
                    "a constant inside the norm: the same arithmetic for any epsilon"),
    "classifier_dropout": "the sequence-classification head's dropout: that head is not part of the LM",
    "pretraining_tp": "HF's reference code slices each projection into this many matmuls: the same FLOPs",
    "router_aux_loss_coef": _AUX_LOSS,
    "aux_loss_alpha": _AUX_LOSS,
    "seq_aux": _AUX_LOSS,
}
"""Keys that change no cost symcost counts, with the reason (any model_type)."""

_DEEPSEEK_FREE = {
    **dict.fromkeys(("n_group", "topk_group", "topk_method", "norm_topk_prob", "scoring_func",
                     "routed_scaling_factor"), _ROUTING),
    "num_key_value_heads": "multi-head latent attention has no KV-head count: K and V come from the latent",
    "head_dim": "the RoPE width (HF sets it to qk_rope_head_dim); the head widths are the qk_*/v_head_dim keys",
    "ep_size": "parallelism: symcost takes it per call (parallelism=...)",
    "num_nextn_predict_layers": "the multi-token-prediction module, which HF's DeepseekV3ForCausalLM "
                                "does not build either: not part of the model",
}
_SCORE_SCALE = ("a scale of the attention scores inside the attention kernel, as the 1/sqrt(d) scale is: "
                "not counted (docs/conventions.md §16, item 15)")
_SOFTCAP = ("tanh soft-capping, cap * tanh(x / cap): elementwise, 3 FLOPs per score (inside the flash kernel, "
            "as the score scale) or per logit (about 3 / (2h) of the LM head's matmul FLOPs, 0.04 % at "
            "h = 3584); not counted, as the score scale and RoPE are not (docs/conventions.md §16, item 15)")
_MROPE = ("Qwen2-VL's multimodal RoPE switch (M-RoPE splits the rotary angles over time, height and width), "
          "written into Qwen2.5's text configs as false; Qwen2Config does not read it, and no RoPE is counted")
COST_FREE_FOR: dict[str, dict[str, str]] = {
    "qwen2": {"use_mrope": _MROPE},
    "deepseek_v2": _DEEPSEEK_FREE,
    "deepseek_v3": _DEEPSEEK_FREE,
    "qwen3_moe": {"norm_topk_prob": _ROUTING},
    "qwen2_moe": {"norm_topk_prob": _ROUTING, "use_mrope": _MROPE},
    "gpt_oss": {
        "hidden_act": "not read by transformers' GptOssExperts, which apply their clamped SwiGLU (priced as "
                      "SiLU, builders.gpt_oss)",
        **dict.fromkeys(("swiglu_limit", "swiglu_alpha"),
                        "the clamps and the sigmoid's scale inside gpt-oss's SwiGLU: elementwise, about 5 FLOPs per "
                        "element of the experts' intermediate (0.03 % of their matmul FLOPs at h = 2880); not "
                        "counted, as RoPE and the score scale are not (docs/conventions.md §16, item 15)"),
        "initial_context_length": _ROPE,
    },
    "llama4_text": {
        **dict.fromkeys(("attn_temperature_tuning", "floor_scale", "attn_scale"),
                        "Llama 4's temperature tuning of the queries on its NoPE layers (arXiv:2501.19399): a scale "
                        "per position, one multiply per element of Q, as the score scale is not counted "
                        "(docs/conventions.md §16, item 15)"),
        "cache_implementation": "generation's cache class (a hybrid chunked/static cache): the KV cache sizes "
                                "come from the per-layer attention chunks, which are modelled",
        "for_llm_compressor": "a switch of the llm-compressor export: the same modules and shapes",
    },
    "llama4": {
        **dict.fromkeys(("boi_token_index", "eoi_token_index", "image_token_index"), _METADATA),
    },
    "gemma2": {
        "attn_logit_softcapping": _SOFTCAP, "final_logit_softcapping": _SOFTCAP,
        "query_pre_attn_scalar": _SCORE_SCALE,
        "hidden_act": "not read by transformers' Gemma 2 MLP, which applies hidden_activation (modelled)",
        "sliding_window_size": "an older duplicate of sliding_window that Gemma2Config does not read "
                               "(sliding_window is modelled)",
        "cache_implementation": "generation's cache class (a hybrid sliding/static cache): the KV cache "
                                "sizes come from the per-layer windows, which are modelled",
    },
    "gpt2": {
        "n_ctx": "the original release's context length, which GPT2Config keeps but does not read "
                 "(n_positions sizes the position table and is modelled)",
        **dict.fromkeys(("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"),
                        _SCORE_SCALE),
        **dict.fromkeys(("summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
                         "summary_first_dropout"), "the sequence-summary head of GPT2DoubleHeadsModel and the "
                                                   "classifiers: not part of GPT2LMHeadModel"),
    },
    "gptj": {
        **dict.fromkeys(("rotary_dim", "rotary"), _ROPE),
        "n_positions": "RoPE has no position table; the context length is the caller's seq_len",
        "scale_attn_weights": _SCORE_SCALE,
        "gradient_checkpointing": "a training switch of older transformers: symcost takes recompute per call",
        **dict.fromkeys(("summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
                         "summary_first_dropout"), "the sequence-summary head of the classifiers: not part of "
                                                   "GPTJForCausalLM"),
    },
    "falcon": {
        "apply_residual_connection_post_layernorm": "which tensor the residual adds (the norm's input or "
                                                    "output): the same ops either way",
    },
}
"""Per ``model_type``: keys that change no cost for that type only, with the reason."""

# hidden_act values and the activation symcost prices (ops.VECTOR_FLOPS). NB: HF's "gelu" is the
# exact erf form; it is priced as the table's GELU (the tanh form's 8 FLOPs per element).
HF_ACTIVATIONS: dict[str, str] = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_new": "gelu",
                                  "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu"}
# the key that names the activation where it is not hidden_act
_ACTIVATION_KEY = {"gemma2": "hidden_activation", "gpt2": "activation_function", "gptj": "activation_function",
                   "falcon": "activation"}

# transformers' attention implementations: "eager" computes and stores the whole score matrix;
# the others are fused kernels that do not (flash_attention=True)
HF_ATTENTION_KERNELS: dict[str, bool] = {"eager": False, "sdpa": True, "flash_attention_2": True,
                                         "flash_attention_3": True, "flex_attention": True}
_TRAINED_LENGTH = {"gpt2": "n_positions"}
"""The key holding the trained length where it is not ``max_position_embeddings`` (GPT-2's position
table; GPT2Config maps max_position_embeddings to it)."""
_LAYER_TYPES = ("full_attention", "sliding_attention")
_REQUIRED = object()


class ConfigReader:
    """Reads keys of one config with one-line errors, and remembers which it read."""

    def __init__(self, config: Mapping[str, Any], source: str, defaults: Mapping[str, Any] = {}):
        self.config, self.source, self.defaults = config, source, defaults
        self.read: set[str] = set()

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")

    def get(self, key: str, default: Any) -> Any:
        """``key``'s value; absent, the config class's default (hf_defaults), else ``default``."""
        self.read.add(key)
        if key not in self.config:
            if key in self.defaults:
                return self.defaults[key]
            if default is _REQUIRED:
                raise self.error(f"config.json has no {key!r}")
            return default
        return self.config[key]

    def positive(self, key: str, default: Any = _REQUIRED, nullable: bool = False) -> Any:
        """A positive integer (``null`` allowed only when ``nullable``: then ``None``)."""
        value = self.get(key, default)
        if value is None and (nullable or key not in self.config):
            return None
        if type(value) is not int or value <= 0:
            raise self.error(f"{key} must be a positive integer, got {value!r}")
        return value

    def count(self, key: str, default: Any = _REQUIRED) -> int:
        """A non-negative integer."""
        value = self.get(key, default)
        if type(value) is not int or value < 0:
            raise self.error(f"{key} must be a non-negative integer, got {value!r}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        """true or false (never a string's truthiness); ``null`` is the default."""
        value = self.get(key, None)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, got {value!r}")
        return value

    def zero(self, key: str, what: str) -> None:
        """A rate that symcost models only at 0 (``what`` it would add otherwise)."""
        value = self.get(key, None)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"{key} must be a number, got {value!r}")
        if value != 0:
            raise self.error(f"{key} = {value!r} is not modelled ({what}); only 0 is")

    def rate(self, key: str, default: float = 0.0) -> bool:
        """A dropout rate: whether it is non-zero (absent: ``default``, the config class's; null: 0)."""
        value = self.get(key, default)
        if value is None:
            return False
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise self.error(f"{key} must be a number in [0, 1), got {value!r}")
        return value != 0

    def activation(self, key: str = "hidden_act") -> str:
        """The activation ``key`` names (absent: the config class's default)."""
        value = self.get(key, _REQUIRED)
        if not isinstance(value, str):
            raise self.error(f"{key} must be a string, got {value!r}")
        if value not in HF_ACTIVATIONS:
            raise self.error(f"{key} {value!r} is not modelled; known: {', '.join(HF_ACTIVATIONS)}")
        return HF_ACTIVATIONS[value]

    def spelled(self, keys: tuple[str, str], default: Any = _REQUIRED) -> Any:
        """A positive integer saved under either of two names (transformers 4.x's and 5.x's); both
        present must agree."""
        old, new = keys
        if old in self.config and new in self.config and self.config[old] != self.config[new]:
            raise self.error(f"{old} ({self.config[old]!r}) and {new} ({self.config[new]!r}) name the same "
                             "value and must agree")
        self.read.add(old)
        return self.positive(new if new in self.config else old, default)

    def derived(self, key: str, value: Any, rule: str) -> None:
        """A key transformers derives from others and writes too: when present, it must equal ``value``."""
        self.read.add(key)
        given = self.config.get(key)
        if given is not None and given != value:
            raise self.error(f"{key} is {given!r}, but {rule} gives {value!r}")

    def divides(self, big: str, small: str) -> None:
        a, b = self.config[big], self.config[small]
        if a % b:
            raise self.error(f"{big} ({a}) must be divisible by {small} ({b})")

    def check_unread(self, model_type: str, ignore: set[str]) -> None:
        """Refuse every key neither read, cost-free, null nor acknowledged in ``ignore``."""
        free = {**COST_FREE, **COST_FREE_FOR.get(model_type, {})}
        modelled_elsewhere = {k for keys in MODELLED.values() for k in keys}
        for key, value in self.config.items():
            if key in self.read or key in free or key in ignore or value is None:
                continue
            if key in modelled_elsewhere:
                if value is False:
                    continue  # switches nothing on
                raise self.error(f"{key} is not read by model_type {model_type!r} (transformers would "
                                 f"ignore it, so its cost would be dropped); remove it or fix model_type")
            raise self.error(f"unknown key {key!r} for model_type {model_type!r}: not known to be cost-free; "
                             f"if it changes no cost, pass ignore_keys=({key!r},) (command line: "
                             f"--ignore-hf-keys {key})")


def _read_config(path_or_dict: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str, Optional[str]]:
    """The parsed config, the source for messages and the folder's name (None for a dict)."""
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict), "config", None
    path = Path(path_or_dict)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path}: no config.json in this folder")
        path = path / "config.json"
    source = str(path)
    try:
        config = json.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"{source}: cannot read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}: malformed JSON ({err})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    return config, source, path.resolve().parent.name or None


def from_hf_config(path_or_dict: str | Path | Mapping[str, Any], *, name: str | None = None,
                   causal: Optional[bool] = None, ignore_keys: Iterable[str] = ()) -> Model:
    """A :class:`Model` from a Hugging Face ``config.json``: a path, its folder, or the parsed dict.

    Supported ``model_type``: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, qwen2_moe, phi3,
    gemma2, gpt_oss, deepseek_v2, deepseek_v3, gpt2, gpt_neox, falcon, gptj, llama4_text and llama4
    (Llama 4's chunked local attention, NoPE layers and interleaved MoE; of a ``llama4`` config the
    text model is costed, the vision encoder's parameters kept in :attr:`Model.vision_parameters`,
    :mod:`symcost.models.llama4`). A key the file leaves out takes
    the default of transformers' config class (:data:`~symcost.models.hf_defaults.CLASS_DEFAULTS`),
    the sizes excepted, which are required. Every key is modelled (:data:`MODELLED`:
    sizes, KV heads, head_dim, biases, the activation, tied embeddings, sliding windows -- Qwen2's
    and Qwen3's per layer, Gemma 2's and gpt-oss's alternating -- gpt-oss's attention sinks and
    biased experts, Qwen3's Q/K norms, Gemma 2's post-norms,
    GPT-2's learned positions and dropout, GPT-NeoX's and Falcon's parallel attention and MLP,
    Falcon's KV heads and shared norm, the MoE/MLA shapes, and the trained length
    ``max_position_embeddings``: :attr:`Model.max_position_embeddings`), known to be cost-free
    (:data:`COST_FREE`, per type :data:`COST_FREE_FOR`, each with its reason: RoPE settings, token ids,
    precision, soft-capping, ...), or refused with a one-line :class:`ConfigError` naming the key; so is a
    wrong type or value. ``ignore_keys`` acknowledges extra keys as cost-free. The model is
    named ``name``, else ``_name_or_path``, else the folder's name, else the model_type.
    ``causal`` as in :func:`symcost.models.model.resolve_causal`: ``None`` follows the kernel, a fused
    one unless ``_attn_implementation`` is ``"eager"``, so it counts only the unmasked pairs.

    >>> m = from_hf_config({"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
    ...     "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32,
    ...     "vocab_size": 32000, "sliding_window": 4096, "rope_theta": 10000.0})
    >>> m.compute_metrics(batch_size=1, seq_len=32768, phase="decode", dtype="bf16").kv_cache_memory_per_chip
    536870912
    """
    config, source, folder = _read_config(path_or_dict)
    model_type = config.get("model_type")
    if model_type not in _SUPPORTED:
        raise ConfigError(f"{source}: unsupported model_type {model_type!r}; supported: {', '.join(_SUPPORTED)}")
    if causal is not None and not isinstance(causal, bool):
        raise ConfigError(f"{source}: causal must be True, False or None, got {causal!r}")
    reader = ConfigReader(config, source, CLASS_DEFAULTS[model_type])
    reader.read.update({"model_type", "_name_or_path"})
    label = config.get("_name_or_path")
    if label is not None and not isinstance(label, str):
        raise reader.error(f"_name_or_path must be a string, got {label!r}")
    try:
        if model_type == "llama4":
            model = _llama4_conditional(reader, causal, set(ignore_keys))
        else:
            model = _build(reader, model_type, causal)
            # the trained length (not a cost: the limit Model.max_position_embeddings states)
            trained = reader.positive(_TRAINED_LENGTH.get(model_type, "max_position_embeddings"), None, nullable=True)
            model = model.model_copy(update={"max_position_embeddings": trained})
        reader.check_unread(model_type, set(ignore_keys))
    except ConfigError:
        raise
    except ValueError as err:  # a layer's own rule (pydantic's ValidationError is a ValueError)
        raise reader.error(one_line(err)) from None
    return model.model_copy(update={"name": name or label or folder or model_type})


def _llama4_conditional(reader: ConfigReader, causal: Optional[bool], ignore: set[str]) -> Model:
    """``llama4`` (``Llama4ForConditionalGeneration``): the ``text_config``'s model, costed alone
    (text only), with the vision encoder's and projector's parameters in ``vision_parameters``
    (:mod:`symcost.models.llama4`). Each nested config's keys are checked as a top-level one's."""
    from .hf_defaults import VISION_DEFAULTS
    from .llama4 import VISION_FREE, sub_config, vision_parameters

    if reader.flag("tie_word_embeddings"):
        raise reader.error("tie_word_embeddings = true on the llama4 config is not modelled (the text_config's is)")
    text = ConfigReader(sub_config(reader, "text_config", "llama4_text"), f"{reader.source}: text_config",
                        CLASS_DEFAULTS["llama4_text"])
    text.read.add("model_type")
    model = _build(text, "llama4_text", causal)
    trained = text.positive("max_position_embeddings", None, nullable=True)
    text.check_unread("llama4_text", ignore)
    vision = ConfigReader(sub_config(reader, "vision_config", "llama4_vision_model"),
                          f"{reader.source}: vision_config", VISION_DEFAULTS)
    vision.read.add("model_type")
    params = vision_parameters(vision, model.hidden_size)
    for key in vision.config:
        if key not in vision.read and key not in VISION_FREE and key not in COST_FREE and key not in ignore:
            raise vision.error(f"unknown key {key!r} for the llama4 vision_config: not known to be cost-free; "
                               f"if it changes no cost, pass ignore_keys=({key!r},) (command line: "
                               f"--ignore-hf-keys {key})")
    return model.model_copy(update={"max_position_embeddings": trained, "vision_parameters": params})


def _build(reader: ConfigReader, model_type: str, causal: Optional[bool]) -> Model:
    if model_type in ("gpt2", "falcon", "gptj"):  # their own size keys
        from .hf_builders import falcon, gpt2, gptj

        return {"gpt2": gpt2, "falcon": falcon, "gptj": gptj}[model_type](reader, causal, _kernel(reader))
    sizes = {key: reader.positive(key) for key in _SIZES}
    common = {
        "hidden_size": sizes["hidden_size"], "num_heads": sizes["num_attention_heads"],
        "num_layers": sizes["num_hidden_layers"], "vocab_size": sizes["vocab_size"],
        "intermediate_size": sizes["intermediate_size"],
        "tied": reader.flag("tie_word_embeddings"),
        "activation": "silu" if model_type == "gpt_oss" else reader.activation(_ACTIVATION_KEY.get(model_type,
                                                                                                   "hidden_act")),
        "causal": causal,
    }
    reader.zero("attention_dropout", "dropout on the attention probabilities in training")
    if model_type == "gpt_neox":
        from .hf_builders import gpt_neox

        return gpt_neox(reader, common, _kernel(reader))
    if model_type in ("deepseek_v2", "deepseek_v3"):
        from .builders import from_moe_config

        return from_moe_config(model_type, reader, common)
    common.update(_heads(reader, sizes["num_attention_heads"]), flash_attention=_kernel(reader))
    if model_type in ("mixtral", "qwen3_moe", "qwen2_moe"):
        from .builders import from_moe_config

        return from_moe_config(model_type, reader, common)
    if model_type == "llama4_text":
        from .llama4 import text_config

        return text_config(reader, common)
    if model_type == "gpt_oss":
        from .builders import from_moe_config

        common["windows"] = _layer_windows(reader, model_type, sizes["num_hidden_layers"])
        return from_moe_config(model_type, reader, common)
    bias: Any = False
    if model_type in ("llama", "qwen3", "gemma2"):
        bias = reader.flag("attention_bias")
    if model_type == "llama":
        common["mlp_bias"] = reader.flag("mlp_bias")
    elif model_type == "qwen2":
        bias = "qkv"  # HF Qwen2Attention: biases on q_proj, k_proj, v_proj always, none on o_proj
    elif model_type == "phi3":  # dropout on the residual branches and the embedding, in training
        reader.zero("resid_pdrop", "dropout on the attention's and MLP's outputs in training")
        reader.zero("embd_pdrop", "dropout on the embedding's output in training")
    windows = _layer_windows(reader, model_type, sizes["num_hidden_layers"])
    # Qwen3's q_norm/k_norm (RMSNorm per head); Gemma 2's norms after attention and MLP
    extra = {"qk_norm": model_type == "qwen3", "post_norms": model_type == "gemma2"}
    return _llama_with_windows(windows, attention_bias=bias, **extra, **common)


def _heads(reader: ConfigReader, heads: int) -> dict[str, Any]:
    """``num_kv_heads`` (absent or null: ``heads``, multi-head, as the classes do) and ``head_dim``
    (null: ``hidden_size / heads``, which must divide)."""
    kv = reader.positive("num_key_value_heads", None, nullable=True)
    kv = heads if kv is None else kv
    if heads % kv:
        raise reader.error(f"num_attention_heads ({heads}) must be divisible by num_key_value_heads ({kv})")
    head_dim = reader.positive("head_dim", None, nullable=True)
    if head_dim is None:
        reader.divides("hidden_size", "num_attention_heads")
    return {"num_kv_heads": kv, "head_dim": head_dim}


def _kernel(reader: ConfigReader) -> bool:
    """flash_attention from ``_attn_implementation`` (absent: a fused kernel, transformers' sdpa)."""
    value = reader.get("_attn_implementation", None)
    if value is None:
        return True
    if value not in HF_ATTENTION_KERNELS:
        raise reader.error(f"_attn_implementation {value!r} is not modelled; known: {', '.join(HF_ATTENTION_KERNELS)}")
    return HF_ATTENTION_KERNELS[value]


def _layer_windows(reader: ConfigReader, model_type: str, num_layers: int) -> list[Optional[int]]:
    """The sliding window of each layer (None: full attention), as transformers builds them."""
    if model_type == "llama":
        return [None] * num_layers
    if model_type in ("mistral", "phi3"):  # one window on every layer (absent: the class's default)
        return [reader.positive("sliding_window", None, nullable=True)] * num_layers
    if model_type in ("gemma2", "gpt_oss"):
        # Gemma2DecoderLayer, GptOssConfig: even layers slide, odd ones attend globally (unless
        # layer_types says)
        window = reader.positive("sliding_window", None, nullable=True)
        alternating = [_LAYER_TYPES[1 - i % 2] for i in range(num_layers)]
        return _typed_windows(reader, window, num_layers, alternating)
    # qwen2, qwen3: the config class drops sliding_window (absent: 4096) unless use_sliding_window;
    # layer i slides when layer_types says so, by default when i >= max_window_layers (absent: 28)
    window = reader.positive("sliding_window", None, nullable=True)
    window = window if reader.flag("use_sliding_window") else None
    if reader.config.get("layer_types") is None:
        first = reader.count("max_window_layers")
        return [window if i >= first else None for i in range(num_layers)]
    reader.read.add("max_window_layers")  # layer_types overrides it
    return _typed_windows(reader, window, num_layers, None)


def _typed_windows(reader: ConfigReader, window: Optional[int], num_layers: int,
                   default: Optional[list[str]]) -> list[Optional[int]]:
    """``window`` on the layers ``layer_types`` (else ``default``) calls sliding_attention."""
    types = reader.get("layer_types", None)
    types = default if types is None else types
    if not isinstance(types, list) or len(types) != num_layers:
        raise reader.error(f"layer_types must list {num_layers} entries (one per layer), got {types!r}")
    for kind in types:
        if kind not in _LAYER_TYPES:
            raise reader.error(f"layer_types entries must be one of {', '.join(_LAYER_TYPES)}, got {kind!r}")
    return [window if kind == "sliding_attention" else None for kind in types]


def _llama_with_windows(windows: list[Optional[int]], **kw: Any) -> Model:
    """Model.llama, with consecutive layers of the same window grouped into one ``(block, count)``."""
    runs: list[tuple[Optional[int], int]] = []
    for window in windows:
        if runs and runs[-1][0] == window:
            runs[-1] = (window, runs[-1][1] + 1)
        else:
            runs.append((window, 1))
    built = {window: Model.llama(window=window, **{**kw, "num_layers": 1}) for window, _ in runs}
    base = built[runs[0][0]]
    return Model(name=base.name, embedding=base.embedding, final_norm=base.final_norm, lm_head=base.lm_head,
                 blocks=tuple((built[window].blocks[0][0], n) for window, n in runs))
