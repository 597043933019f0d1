"""The defaults of transformers' config classes (issue 20, item 12): a key a config.json leaves
out costs what the config class puts in its place, for every key symcost reads but the sizes.

Each case is a config of only the keys every checkpoint writes (the five sizes; DeepSeek's
num_experts_per_tok, whose class default ``None`` builds no model); everything else comes from
the class. Expected values are transformers' own: the installed transformers builds the model on
the meta device and counts its parameters, and its config object says the KV heads, the head
width and the windows. Hand-derived values for the cases issue 20 names are below as well.
"""

from __future__ import annotations

import pytest

from symcost import models

SIZES = {"hidden_size": 64, "num_attention_heads": 8, "num_hidden_layers": 2, "vocab_size": 128,
         "intermediate_size": 96}
ONLY_SIZES = {
    "llama": SIZES, "mistral": SIZES, "mixtral": SIZES, "qwen2": {**SIZES, "num_attention_heads": 32},
    "qwen3": {**SIZES, "num_attention_heads": 32}, "qwen3_moe": SIZES, "gemma2": SIZES,
    "phi3": {**SIZES, "pad_token_id": None},  # Phi3Config's pad id 32000 is outside a vocabulary of 128
    "deepseek_v2": {**SIZES, "num_experts_per_tok": 2}, "deepseek_v3": SIZES,
    "gpt2": {"n_embd": 64, "n_head": 8, "n_layer": 2, "vocab_size": 128},
    "gpt_neox": SIZES, "falcon": {k: v for k, v in SIZES.items() if k != "intermediate_size"},
    "qwen2_moe": {**SIZES, "num_attention_heads": 16},
    "gptj": {"n_embd": 64, "n_head": 8, "n_layer": 2, "vocab_size": 128},
    "gpt_oss": {**SIZES, "pad_token_id": None},  # GptOssConfig's pad id is None; keep the vocabulary small
}


def _config(model_type, **extra):
    return {"model_type": model_type, **ONLY_SIZES[model_type], **extra}


def _transformers_model(config):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.AutoConfig.for_model(config["model_type"],
                                                  **{k: v for k, v in config.items() if k != "model_type"})
    with torch.device("meta"):
        return hf_config, transformers.AutoModelForCausalLM.from_config(hf_config)


@pytest.mark.parametrize("model_type", list(ONLY_SIZES))
def test_absent_keys_take_the_config_class_defaults(model_type):
    """Parameters equal transformers' meta-device count (unique tensors, a tied head once)."""
    config = _config(model_type)
    _, model = _transformers_model(config)
    assert models.from_hf_config(config).parameter_count == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_type", ["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "phi3",
                                        "gemma2", "gpt_oss"])
def test_absent_kv_heads_and_head_dim_take_the_config_class_defaults(model_type):
    """The KV cache of a decode step at 16 tokens: 2 x layers x KV heads x head width x 2 bytes
    x 16, with the heads and width transformers' config object holds (head_dim, else h / a)."""
    config = _config(model_type)
    hf, _ = _transformers_model(config)
    d = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    want = 2 * hf.num_hidden_layers * hf.num_key_value_heads * d * 2 * 16
    got = models.from_hf_config(config).compute_metrics(batch_size=1, seq_len=16, phase="decode", dtype="bf16")
    assert got.kv_cache_memory_per_chip == want


@pytest.mark.parametrize(("model_type", "extra", "window"), [
    ("qwen2", {"use_sliding_window": True, "max_window_layers": 1}, 4096),
    ("qwen3", {"use_sliding_window": True, "max_window_layers": 1}, 4096),
    ("mistral", {}, 4096), ("gemma2", {}, 4096), ("gpt_oss", {}, 128)])
def test_absent_sliding_window_takes_the_config_class_default(model_type, extra, window):
    """The window of each layer: transformers' layer_types (or, for Mistral, every layer) with
    its sliding_window (4096 in Qwen2Config, Qwen3Config, MistralConfig, Gemma2Config; 128 in
    GptOssConfig)."""
    config = _config(model_type, **extra)
    hf, _ = _transformers_model(config)
    types = getattr(hf, "layer_types", None) or ["sliding_attention"] * hf.num_hidden_layers
    want = [hf.sliding_window if kind == "sliding_attention" else None for kind in types]
    got = [blk.attention.window for blk, n in models.from_hf_config(config).blocks for _ in range(n)]
    assert got == want and window in want


def test_qwen3_head_dim_defaults_to_128():
    """Qwen3Config(head_dim=128), not h / a = 8: per layer Q and O 2 x 64 x (32 x 128), K and V
    2 x 64 x (32 x 128) (32 KV heads by default), Q/K norms 2 x 128, the MLP 3 x 64 x 96 and two
    norms 2 x 64; with the embedding, the untied head and the final norm (2 x 128 x 64 + 64):
    2 x (4 x 64 x 4096 + 256 + 18432 + 128) + 16448 = 2,151,232."""
    config = _config("qwen3")
    assert models.from_hf_config(config).parameter_count == 2 * (4 * 64 * 4096 + 256 + 18432 + 128) + 16448
    assert models.from_hf_config(config).parameter_count == 2_151_232


def test_gemma2_head_dim_defaults_to_256():
    """Gemma2Config(head_dim=256, num_key_value_heads=4): per layer Q and O 2 x 64 x (8 x 256),
    K and V 2 x 64 x (4 x 256), the gated MLP 3 x 64 x 96, four norms 4 x 64; the tied embedding
    128 x 64 and the final norm 64: 2 x (393,216 + 18,432 + 256) + 8,256 = 832,064."""
    assert models.from_hf_config(_config("gemma2")).parameter_count == 2 * (393_216 + 18_432 + 256) + 8_256


def test_use_sliding_window_without_a_window_takes_4096():
    """Qwen2Config(sliding_window=4096): with use_sliding_window and max_window_layers 1, layer 1
    keeps 4,096 of 8,192 tokens: KV cache (8192 + 4096) x 2 x 32 KV heads x 2 x 2 bytes."""
    model = models.from_hf_config(_config("qwen2", use_sliding_window=True, max_window_layers=1))
    m = model.compute_metrics(batch_size=1, seq_len=8192, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == (8192 + 4096) * 2 * 32 * 2 * 2


def test_the_defaults_table_is_the_config_classes():
    """Every entry of hf_defaults.CLASS_DEFAULTS equals the installed config class's field default
    (entries that are not fields of the class are what its model code falls back to, checked by
    the parameter counts above)."""
    import dataclasses

    transformers = pytest.importorskip("transformers")
    from symcost.models.hf_defaults import CLASS_DEFAULTS

    checked = 0
    for model_type, defaults in CLASS_DEFAULTS.items():
        fields = {f.name: f.default for f in dataclasses.fields(transformers.CONFIG_MAPPING[model_type])}
        for key, value in defaults.items():
            if key in fields:
                assert (model_type, key, fields[key]) == (model_type, key, value)
                checked += 1
    assert checked > 100
