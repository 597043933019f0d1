"""Hugging Face ``config.json`` loading: every key that changes cost is modelled or refused.

The configs below are the published ``config.json`` files on the Hugging Face Hub (whole, not
abridged), so every key a real file carries is exercised. Expected values are derived by hand
in the comments, or are the published parameter counts of ``tests/models/test_models.py``.
"""

from __future__ import annotations

import json
import re

import pytest

from symcost import models
from symcost.models import ConfigError

# https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json
LLAMA_3_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0",
    "use_cache": True, "vocab_size": 128256,
}
# https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json: the same shapes, with
# mlp_bias, a list of eos tokens, RoPE scaling and a 128K position limit
LLAMA_3_1_8B = {
    **LLAMA_3_8B, "eos_token_id": [128001, 128008, 128009], "max_position_embeddings": 131072,
    "mlp_bias": False, "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "transformers_version": "4.43.0.dev0",
}
# https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json
MISTRAL_7B_V01 = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000,
}
# https://huggingface.co/Qwen/Qwen2.5-72B/blob/main/config.json
QWEN2_5_72B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 8192, "initializer_range": 0.02,
    "intermediate_size": 29568, "max_position_embeddings": 131072, "max_window_layers": 80,
    "model_type": "qwen2", "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 152064,
}
# https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
    "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "output_router_logits": False, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
    "router_aux_loss_coef": 0.02, "sliding_window": None, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0", "use_cache": True, "vocab_size": 32000,
}
# https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                 "AutoModel": "modeling_deepseek.DeepseekV3Model",
                 "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
    "aux_loss_alpha": 0.001, "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3,
    "hidden_act": "silu", "hidden_size": 7168, "initializer_range": 0.02, "intermediate_size": 18432,
    "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
    "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 61, "num_key_value_heads": 128, "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
    "rms_norm_eps": 1e-06, "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40,
                                            "mscale": 1.0, "mscale_all_dim": 1.0,
                                            "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "seq_aux": True,
    "tie_word_embeddings": False, "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1", "use_cache": True, "v_head_dim": 128, "vocab_size": 129280,
}

# Published parameter counts (tests/models/test_models.py cites each)
PUBLISHED = {"llama-3-8b": 8_030_261_248, "mistral-7b": 7_241_732_096, "qwen2.5-72b": 72_706_203_648,
             "mixtral-8x7b": 46_702_792_704, "deepseek-v3": 671_026_419_200}


def decode(model, seq_len, batch_size=1):
    return model.compute_metrics(batch_size=batch_size, seq_len=seq_len, phase="decode", dtype="bf16")


@pytest.mark.parametrize(("config", "preset"), [(LLAMA_3_8B, "llama-3-8b"), (LLAMA_3_1_8B, "llama-3-8b"),
                                                (MISTRAL_7B_V01, "mistral-7b"), (QWEN2_5_72B, "qwen2.5-72b"),
                                                (MIXTRAL_8X7B, "mixtral-8x7b"), (DEEPSEEK_V3, "deepseek-v3")])
def test_whole_published_configs_load(config, preset):
    """Every key of the published files is known: each loads with its published parameter count."""
    assert models.from_hf_config(config).parameter_count == PUBLISHED[preset]


# -- sliding window ----------------------------------------------------------------------------

def test_mistral_kv_cache_is_capped_at_the_sliding_window():
    """Mistral-7B-v0.1 at 32,768 tokens keeps the last 4,096: 32 layers x 2 x 8 KV heads x 128 x
    2 bytes x 4096 = 536,870,912 bytes per sequence, not 4,294,967,296."""
    model = models.from_hf_config(MISTRAL_7B_V01)
    assert decode(model, 32768).kv_cache_memory_per_chip == 32 * 2 * 8 * 128 * 2 * 4096 == 536_870_912
    # attention work likewise: a decode step at 32,768 costs what one at 4,096 does
    assert decode(model, 32768).flops_per_chip == decode(model, 4096).flops_per_chip
    assert decode(models.get("mistral-7b"), 32768).kv_cache_memory_per_chip == 536_870_912


def test_mistral_prefill_counts_only_pairs_inside_the_window():
    """Prefill of 8,192 tokens, causal (the default): with the 4,096 window the core keeps
    4096 x 4097 / 2 + 4096 x 4096 = 25,167,872 pairs per head instead of 8192 x 8193 / 2 =
    33,558,528; at 4 d FLOPs per pair and head (a d = 4096), 32 layers: 32 x 4 x 4096 x
    8,390,656 = 4,399,120,252,928 fewer matmul FLOPs."""
    kw = {"batch_size": 1, "seq_len": 8192, "phase": "prefill", "dtype": "bf16"}
    windowed = models.from_hf_config(MISTRAL_7B_V01).compute_metrics(**kw)
    full = models.from_hf_config({**MISTRAL_7B_V01, "sliding_window": None}).compute_metrics(**kw)
    assert 8192 * 8193 // 2 - (4096 * 4097 // 2 + 4096 * 4096) == 8_390_656
    assert full.matmul_flops_per_chip - windowed.matmul_flops_per_chip == 32 * 4 * 4096 * 8_390_656
    assert 32 * 4 * 4096 * 8_390_656 == 4_399_120_252_928


def test_qwen2_window_is_off_unless_use_sliding_window():
    """Qwen2.5-72B ships sliding_window 131072 with use_sliding_window false: no window, the full
    cache at 32,768 tokens: 80 x 2 x 8 x 128 x 2 x 32768 = 10,737,418,240 bytes."""
    m = decode(models.from_hf_config(QWEN2_5_72B), 32768)
    assert m.kv_cache_memory_per_chip == 80 * 2 * 8 * 128 * 2 * 32768 == 10_737_418_240


SMALL_QWEN2 = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
               "num_key_value_heads": 2, "num_hidden_layers": 4, "vocab_size": 100, "sliding_window": 8,
               "use_sliding_window": True, "max_window_layers": 1}


def test_qwen2_windows_the_layers_from_max_window_layers_on():
    """HF Qwen2: layer i uses the window when i >= max_window_layers. Decode at s = 32, b = 1,
    bf16, d = 16: a full layer keeps 2 x 32 x 2 x 16 x 2 = 4096 bytes, a windowed one
    2 x 8 x 2 x 16 x 2 = 1024; layer 0 full, layers 1-3 windowed: 4096 + 3 x 1024 = 7168."""
    assert decode(models.from_hf_config(SMALL_QWEN2), 32).kv_cache_memory_per_chip == 7168
    explicit = {**SMALL_QWEN2, "layer_types": ["full_attention", "sliding_attention", "full_attention",
                                               "sliding_attention"]}
    assert decode(models.from_hf_config(explicit), 32).kv_cache_memory_per_chip == 2 * 4096 + 2 * 1024


def test_sliding_window_on_a_type_that_ignores_it_is_an_error():
    """HF's Llama has no sliding window: the key would be dropped, so it is refused."""
    with pytest.raises(ConfigError, match="sliding_window"):
        models.from_hf_config({**LLAMA_3_8B, "sliding_window": 4096})


# -- modelled keys ---------------------------------------------------------------------------

def test_mlp_bias_adds_the_mlp_biases():
    """mlp_bias on Llama-3-8B: gate and up biases (f each) and a down bias (h) per layer:
    32 x (2 x 14336 + 4096) = 1,048,576 more parameters."""
    model = models.from_hf_config({**LLAMA_3_1_8B, "mlp_bias": True})
    assert model.parameter_count == 8_030_261_248 + 32 * (2 * 14336 + 4096)


def test_attention_bias_adds_every_projections_bias():
    """attention_bias on Llama: Q, K, V ((32 + 2 x 8) x 128) and O (4096) biases per layer."""
    model = models.from_hf_config({**LLAMA_3_8B, "attention_bias": True})
    assert model.parameter_count == 8_030_261_248 + 32 * ((32 + 2 * 8) * 128 + 4096)


@pytest.mark.parametrize("act", ["gelu", "gelu_pytorch_tanh", "gelu_new"])
def test_gelu_builds_a_gelu_mlp(act):
    """hidden_act gelu: the gate goes through GELU (8 FLOPs per element against SiLU's 4): one
    prefill token costs 32 layers x 14336 x (8 - 4) = 1,835,008 more FLOPs."""
    silu, gelu = models.from_hf_config(LLAMA_3_8B), models.from_hf_config({**LLAMA_3_8B, "hidden_act": act})
    assert gelu.blocks[0][0].mlp.activation == "gelu"
    kw = {"batch_size": 1, "seq_len": 1, "phase": "prefill", "dtype": "bf16"}
    diff = gelu.compute_metrics(**kw).flops_per_chip - silu.compute_metrics(**kw).flops_per_chip
    assert diff == 32 * 14336 * 4 == 1_835_008


def test_moe_experts_take_the_activation():
    """Mixtral's experts use hidden_act too."""
    model = models.from_hf_config({**MIXTRAL_8X7B, "hidden_act": "gelu"})
    assert model.blocks[0][0].mlp.activation == "gelu"


def test_head_dim_sets_the_attention_width():
    """head_dim 64 instead of 4096/32 = 128: Q, K, V, O lose 2 x 4096 x (32 + 8) x 64 parameters
    per layer: 32 x 20,971,520 = 671,088,640."""
    model = models.from_hf_config({**LLAMA_3_8B, "head_dim": 64})
    assert model.parameter_count == 8_030_261_248 - 671_088_640


def test_tied_embeddings_drop_the_lm_head():
    """tie_word_embeddings true: the LM head's 128256 x 4096 weights are the embedding's."""
    model = models.from_hf_config({**LLAMA_3_8B, "tie_word_embeddings": True})
    assert model.parameter_count == 8_030_261_248 - 128256 * 4096


def test_null_kv_heads_mean_multi_head():
    """num_key_value_heads null is MHA (HF's default): K and V grow from 8 to 32 heads:
    32 layers x 2 x 4096 x 24 x 128 = 805,306,368 more parameters."""
    model = models.from_hf_config({**LLAMA_3_8B, "num_key_value_heads": None})
    assert model.parameter_count == 8_030_261_248 + 805_306_368


def test_eager_attention_implementation_costs_the_full_square():
    """_attn_implementation "eager": no flash kernel, so the full s^2 is counted (causal's default
    follows the kernel) and the score matrices are stored: 32 layers x 2 x 8192 x 8191 x 4096
    more matmul FLOPs for one prefill of 8,192 tokens than sdpa."""
    kw = {"batch_size": 1, "seq_len": 8192, "phase": "prefill", "dtype": "bf16"}
    eager = models.from_hf_config({**LLAMA_3_8B, "_attn_implementation": "eager"})
    sdpa = models.from_hf_config({**LLAMA_3_8B, "_attn_implementation": "sdpa"})
    assert eager.blocks[0][0].attention.flash_attention is False
    diff = eager.compute_metrics(**kw).matmul_flops_per_chip - sdpa.compute_metrics(**kw).matmul_flops_per_chip
    assert diff == 32 * 2 * 8192 * 8191 * 4096


def test_cost_free_keys_change_nothing():
    """rope_scaling, rope_theta, max_position_embeddings, eos lists: the same costs."""
    kw = {"batch_size": 2, "seq_len": 1024, "phase": "prefill", "dtype": "bf16"}
    a = models.from_hf_config(LLAMA_3_8B).compute_metrics(**kw)
    b = models.from_hf_config(LLAMA_3_1_8B).compute_metrics(**kw)
    assert (a.flops_per_chip, a.hbm_bytes_per_chip) == (b.flops_per_chip, b.hbm_bytes_per_chip)


# -- names and paths -------------------------------------------------------------------------

def test_name_comes_from_name_or_path_or_the_folder(tmp_path):
    """_name_or_path names the model; without it the folder does; a folder holding config.json loads."""
    folder = tmp_path / "Mistral-7B-v0.1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MISTRAL_7B_V01))
    assert models.from_hf_config(folder).name == "Mistral-7B-v0.1"
    assert models.from_hf_config(folder / "config.json").name == "Mistral-7B-v0.1"
    named = {**MISTRAL_7B_V01, "_name_or_path": "mistralai/Mistral-7B-v0.1"}
    assert models.from_hf_config(named).name == "mistralai/Mistral-7B-v0.1"
    assert models.from_hf_config(named, name="mine").name == "mine"


def test_a_folder_without_config_json_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        models.from_hf_config(tmp_path)


# -- errors: one line, naming the key --------------------------------------------------------

BAD = [
    ({**LLAMA_3_8B, "tie_word_embeddings": "false"}, "tie_word_embeddings must be true or false"),
    ({**LLAMA_3_8B, "num_key_value_heads": 0}, "num_key_value_heads must be a positive integer"),
    ({**LLAMA_3_8B, "num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
    ({**LLAMA_3_8B, "num_key_value_heads": 5},
     r"num_attention_heads \(32\) must be divisible by num_key_value_heads \(5\)"),
    ({**LLAMA_3_8B, "hidden_size": 4100}, r"hidden_size \(4100\) must be divisible by num_attention_heads"),
    ({**LLAMA_3_8B, "hidden_size": 4096.0}, "hidden_size must be a positive integer, got 4096.0"),
    ({**LLAMA_3_8B, "vocab_size": True}, "vocab_size must be a positive integer, got True"),
    ({**LLAMA_3_8B, "hidden_act": "quick_gelu"}, "hidden_act 'quick_gelu' is not modelled; known: "),
    ({**LLAMA_3_8B, "hidden_act": 3}, "hidden_act must be a string"),
    ({**LLAMA_3_8B, "num_local_experts": 8}, "num_local_experts"),
    ({**LLAMA_3_8B, "mystery_width": 128}, "unknown key 'mystery_width'"),
    ({**LLAMA_3_8B, "attention_dropout": 0.1}, "attention_dropout"),
    ({**LLAMA_3_8B, "mlp_bias": "no"}, "mlp_bias must be true or false"),
    ({**LLAMA_3_8B, "_attn_implementation": "paged"}, "_attn_implementation 'paged' is not modelled"),
    ({**MISTRAL_7B_V01, "mlp_bias": True}, "mlp_bias"),
    ({**MISTRAL_7B_V01, "sliding_window": 0}, "sliding_window must be a positive integer"),
    ({**QWEN2_5_72B, "attention_bias": True}, "attention_bias"),
    ({**SMALL_QWEN2, "layer_types": ["full_attention"]}, "layer_types must list 4 entries"),
    ({**SMALL_QWEN2, "layer_types": ["full_attention", "x", "full_attention", "full_attention"]},
     "layer_types"),
    ({**MIXTRAL_8X7B, "num_local_experts": 0}, "num_local_experts must be a positive integer"),
    ({**MIXTRAL_8X7B, "num_experts_per_tok": 9}, "num_experts_per_tok"),
    ({**DEEPSEEK_V3, "moe_layer_freq": 2}, "moe_layer_freq"),
    ({**DEEPSEEK_V3, "attention_bias": True}, "attention_bias"),
    ({"model_type": "t5"}, "unsupported model_type 't5'"),
    ({k: v for k, v in LLAMA_3_8B.items() if k != "vocab_size"}, "no 'vocab_size'"),
]


@pytest.mark.parametrize(("config", "message"), BAD)
def test_bad_configs_are_one_line_errors(config, message):
    """Each refusal is a ConfigError (a ValueError) of one line naming the key and the rule."""
    with pytest.raises(ConfigError, match=message) as info:
        models.from_hf_config(config)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("config: ")


def test_ignore_keys_acknowledges_an_unknown_key():
    """A key the caller knows to be cost-free can be named in ignore_keys."""
    model = models.from_hf_config({**LLAMA_3_8B, "mystery_flag": 1}, ignore_keys=("mystery_flag",))
    assert model.parameter_count == 8_030_261_248


def test_file_errors_name_the_path(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="malformed JSON"):
        models.from_hf_config(path)
    path.write_text(json.dumps({**LLAMA_3_8B, "num_hidden_layers": 0}))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: num_hidden_layers"):
        models.from_hf_config(path)


def test_the_key_table_is_consistent():
    """Every cost-free key carries a reason, and no key is both modelled and cost-free for a type."""
    for model_type, keys in models.MODELLED.items():
        free = {**models.COST_FREE, **models.COST_FREE_FOR.get(model_type, {})}
        assert not set(keys) & set(free), model_type
        assert all(isinstance(reason, str) and len(reason) > 20 for reason in free.values())
