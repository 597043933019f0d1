"""What transformers' config classes put in place of a key a ``config.json`` leaves out.

:data:`CLASS_DEFAULTS` maps each supported ``model_type`` to the defaults of its config class for
every key :func:`symcost.models.from_hf_config` reads, but the sizes (``hidden_size``,
``num_attention_heads``, ``num_hidden_layers``, ``vocab_size``, ``intermediate_size`` and their
GPT-2 names), which every checkpoint writes and which stay required: a file without them
describes the class's example model, not a checkpoint.

Source: the dataclass fields of ``transformers/models/<type>/configuration_<type>.py``,
transformers 5.25.0 (``tests/models/test_hf_defaults.py`` compares every entry with the installed
classes). ``None`` is the class's own "derive it" value, resolved as the class and its model do:
``num_key_value_heads`` -> ``num_attention_heads``, ``head_dim`` -> ``hidden_size //
num_attention_heads``, GPT-2's ``n_inner`` and Falcon's ``ffn_hidden_size`` -> ``4 h``, Falcon's
``num_kv_heads`` -> ``num_attention_heads``, ``mlp_only_layers`` -> none. A key that is not a field
of the class (Qwen2's ``head_dim``, read by its attention with ``getattr``; the remote-code
DeepSeek ``moe_layer_freq``) takes the value the model code falls back to.

>>> CLASS_DEFAULTS["qwen3"]["head_dim"], CLASS_DEFAULTS["gemma2"]["head_dim"]
(128, 256)
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLASS_DEFAULTS", "VISION_DEFAULTS"]

_WINDOWS = {"use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28, "layer_types": None}
_LLAMA_LIKE = {"tie_word_embeddings": False, "hidden_act": "silu", "attention_dropout": 0.0}
_DEEPSEEK = {"attention_bias": False, "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
             "qk_rope_head_dim": 64, "v_head_dim": 128, "moe_layer_freq": 1, **_LLAMA_LIKE}

CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {**_LLAMA_LIKE, "num_key_value_heads": None, "head_dim": None, "attention_bias": False,
              "mlp_bias": False},
    "mistral": {**_LLAMA_LIKE, "num_key_value_heads": 8, "head_dim": None, "sliding_window": 4096},
    "mixtral": {**_LLAMA_LIKE, "num_key_value_heads": 8, "head_dim": None, "sliding_window": None,
                "num_local_experts": 8, "num_experts_per_tok": 2, "router_jitter_noise": 0.0},
    "qwen2": {**_LLAMA_LIKE, **_WINDOWS, "num_key_value_heads": 32, "head_dim": None},
    "qwen3": {**_LLAMA_LIKE, **_WINDOWS, "num_key_value_heads": 32, "head_dim": 128, "attention_bias": False},
    "qwen3_moe": {**_LLAMA_LIKE, "use_sliding_window": False, "sliding_window": 4096, "num_key_value_heads": 4,
                  "head_dim": None, "attention_bias": False, "decoder_sparse_step": 1, "moe_intermediate_size": 768,
                  "num_experts_per_tok": 8, "num_experts": 128, "mlp_only_layers": None},
    "qwen2_moe": {**_LLAMA_LIKE, "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28,
                  "layer_types": None, "num_key_value_heads": 16, "head_dim": None, "decoder_sparse_step": 1,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "num_experts_per_tok": 4,
                  "num_experts": 60, "mlp_only_layers": None, "qkv_bias": True},
    "phi3": {**_LLAMA_LIKE, "num_key_value_heads": None, "head_dim": None, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
             "sliding_window": None},
    "gpt_oss": {"tie_word_embeddings": False, "attention_dropout": 0.0, "num_key_value_heads": 8, "head_dim": 64,
                "attention_bias": True, "sliding_window": 128, "layer_types": None, "num_local_experts": 128,
                "num_experts_per_tok": 4},
    "gemma2": {"tie_word_embeddings": True, "attention_dropout": 0.0, "num_key_value_heads": 4, "head_dim": 256,
               "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False, "sliding_window": 4096,
               "layer_types": None},
    "deepseek_v2": {**_DEEPSEEK, "first_k_dense_replace": 0, "n_routed_experts": 64, "n_shared_experts": 2,
                    "moe_intermediate_size": 1407},
    "deepseek_v3": {**_DEEPSEEK, "first_k_dense_replace": 3, "n_routed_experts": 256, "n_shared_experts": 1,
                    "moe_intermediate_size": 2048, "num_experts_per_tok": 8},
    "llama4_text": {"tie_word_embeddings": False, "hidden_act": "silu", "attention_dropout": 0.0,
                    "num_key_value_heads": 8, "head_dim": 128, "attention_bias": False, "intermediate_size_mlp": 16384,
                    "num_local_experts": 16, "num_experts_per_tok": 1, "moe_layers": None,
                    "interleave_moe_layer_step": 1, "use_qk_norm": True, "no_rope_layers": None,
                    "no_rope_layer_interval": 4, "attention_chunk_size": 8192, "layer_types": None,
                    "router_jitter_noise": 0.0},
    "llama4": {"tie_word_embeddings": False, "text_config": None, "vision_config": None},
    "gpt2": {"n_positions": 1024, "n_inner": None, "activation_function": "gelu_new", "attn_pdrop": 0.1,
             "resid_pdrop": 0.1, "embd_pdrop": 0.1, "tie_word_embeddings": True, "add_cross_attention": False},
    "gptj": {"n_inner": None, "activation_function": "gelu_new", "attn_pdrop": 0.0, "resid_pdrop": 0.0,
             "embd_pdrop": 0.0, "tie_word_embeddings": False},
    "gpt_neox": {"hidden_act": "gelu", "attention_bias": True, "use_parallel_residual": True, "hidden_dropout": 0.0,
                 "attention_dropout": 0.0, "tie_word_embeddings": False},
    "falcon": {"num_kv_heads": None, "new_decoder_architecture": False, "multi_query": True, "parallel_attn": True,
               "bias": False, "ffn_hidden_size": None, "activation": "gelu", "tie_word_embeddings": True,
               "num_ln_in_parallel_attn": None, "alibi": False, "hidden_dropout": 0.0, "attention_dropout": 0.0},
}
"""Per ``model_type``: the config class's default of each key symcost reads (sizes excepted)."""

VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "num_hidden_layers": 34, "num_attention_heads": 16, "num_channels": 3,
    "intermediate_size": 5632, "vision_output_dim": 7680, "image_size": 448, "patch_size": 14,
    "projector_input_dim": 4096, "projector_output_dim": 4096,
}
"""``Llama4VisionConfig``'s defaults of the keys that size the Llama 4 vision encoder (its sizes
too: a ``llama4`` config without ``vision_config`` builds the class's default encoder)."""
