"""The context length a model was trained for (its config's ``max_position_embeddings``), carried by
the model and stated next to the longest context that fits in memory (issue 20 item 18)."""


import pytest

from symcost import Model, models
from symcost.errors import ConfigError

# Qwen/Qwen2.5-7B config.json (https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json), whole
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 131072, "max_window_layers": 28,
    "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": True, "use_mrope": False,
    "use_sliding_window": False, "vocab_size": 152064,
}


@pytest.mark.parametrize(("name", "trained"), [
    ("llama-2-7b", 4096), ("llama-2-70b", 4096),            # Llama-2-*-hf config.json
    ("llama-3-8b", 8192), ("llama-3-70b", 8192),            # Meta-Llama-3-* config.json
    ("llama-3.1-405b", 131072), ("mistral-7b", 32768),      # Llama-3.1-405B, Mistral-7B-v0.1
    ("qwen2.5-72b", 131072), ("qwen3-8b", 40960),           # Qwen2.5-72B, Qwen3-8B
    ("phi-3-mini", 4096), ("mixtral-8x7b", 32768),          # Phi-3-mini-4k-instruct, Mixtral-8x7B-v0.1
    ("deepseek-v3", 163840), ("gpt2", 1024),                 # DeepSeek-V3; GPT-2's n_positions
    ("gpt3-175b", 2048),                                     # Brown et al. 2020, Table 2.1: n_ctx 2048
    ("mamba2-2.7b", None),                                   # no position limit in its config
])
def test_presets_carry_the_trained_length(name, trained):
    """Each preset's ``max_position_embeddings`` is its published config's."""
    assert models.get(name).max_position_embeddings == trained


def test_hf_config_reads_the_trained_length():
    """Qwen2.5-7B's config.json: 131,072; GPT-2's position table n_positions: 1,024; a config that
    states none gives None. Parallelism and windows keep it."""
    qwen = models.from_hf_config(QWEN25_7B, ignore_keys=("use_mrope",))
    assert qwen.max_position_embeddings == 131072
    assert qwen.with_parallelism({"tensor_parallel": 4}).max_position_embeddings == 131072
    assert qwen.with_window(4096).max_position_embeddings == 131072
    from hf_configs import GPT2

    assert models.from_hf_config(GPT2).max_position_embeddings == 1024
    del_key = {k: v for k, v in QWEN25_7B.items() if k != "max_position_embeddings"}
    assert models.from_hf_config(del_key, ignore_keys=("use_mrope",)).max_position_embeddings is None


def test_trained_length_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="max_position_embeddings must be a positive integer, got 0"):
        models.from_hf_config({**QWEN25_7B, "max_position_embeddings": 0}, ignore_keys=("use_mrope",))
    llama = Model.llama(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=1, vocab_size=128,
                        intermediate_size=128)
    with pytest.raises(ValueError, match="max_position_embeddings must be a positive integer"):
        llama.model_validate({**dict(llama), "max_position_embeddings": 2.5})
