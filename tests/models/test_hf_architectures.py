"""Architectures added to from_hf_config (issue 20, item 15): exact parameter counts derived by
hand and equal to transformers' on the meta device, and matmul FLOPs equal to FlopCounterMode's
on tiny variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symcost import models

# Qwen/Qwen1.5-MoE-A2.7B's config.json: the shapes of the model card (14.3B parameters, 2.7B
# active): 24 layers, h 2048, 16 heads (no GQA), 60 experts of 1408 (top 4), one shared expert of
# 5632 with a sigmoid gate, vocabulary 151,936, untied
QWEN1_5_MOE = {
    "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "decoder_sparse_step": 1, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192, "max_window_layers": 21,
    "model_type": "qwen2_moe", "moe_intermediate_size": 1408, "norm_topk_prob": False, "num_attention_heads": 16,
    "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 16,
    "output_router_logits": False, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
    "shared_expert_intermediate_size": 5632, "sliding_window": 32768, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.39.0.dev0", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 151936,
}
# EleutherAI/gpt-j-6b's config.json (GPTJConfig's keys; the task-specific generation settings left out)
GPTJ_6B = {
    "activation_function": "gelu_new", "architectures": ["GPTJForCausalLM"], "attn_pdrop": 0.0, "bos_token_id": 50256,
    "embd_pdrop": 0.0, "eos_token_id": 50256, "gradient_checkpointing": False, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "gptj", "n_embd": 4096, "n_head": 16, "n_inner": None, "n_layer": 28,
    "n_positions": 2048, "resid_pdrop": 0.0, "rotary": True, "rotary_dim": 64, "scale_attn_weights": True,
    "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
    "summary_type": "cls_index", "summary_use_proj": True, "tie_word_embeddings": False,
    "tokenizer_class": "GPT2Tokenizer", "transformers_version": "4.18.0.dev0", "use_cache": True, "vocab_size": 50400,
}

# openai/gpt-oss-20b's config.json (tests/models/published/, with its source there) and
# openai/gpt-oss-120b's: https://huggingface.co/openai/gpt-oss-120b/raw/main/config.json, as a
# public test vendors it (code index file 71368259812)
GPT_OSS_20B = json.loads((Path(__file__).parent / "published" / "openai--gpt-oss-20b.json").read_text())
GPT_OSS_120B = {
    "architectures": ["GptOssForCausalLM"], "attention_bias": True, "attention_dropout": 0.0, "eos_token_id": 200002,
    "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
    "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
    "layer_types": ["sliding_attention", "full_attention"] * 18, "max_position_embeddings": 131072,
    "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 36,
    "num_key_value_heads": 8, "num_local_experts": 128, "output_router_logits": False, "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                       "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                     "rope_type": "yarn", "truncate": False},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": False, "transformers_version": "4.55.0.dev0", "use_cache": True, "vocab_size": 201088,
}


def _meta_count(config):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fields = {k: v for k, v in config.items() if k != "model_type"}
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(config["model_type"], **fields))
    return sum(p.numel() for p in model.parameters())


def test_qwen2_moe_parameters():
    """Per layer: Q K V O 4h^2 with Q, K, V biases 3h; 60 experts 60 x 3 x h x 1408; the router
    h x 60; the shared expert 3 x h x 5632 and its gate h; two norms 2h. With both embeddings
    2 x V h and the final norm: 24 x 570,560,512 + 622,329,856 + 2,048 = 14,315,784,192 (the
    model card's 14.3B)."""
    h = 2048
    layer = 4 * h * h + 3 * h + 60 * 3 * h * 1408 + h * 60 + 3 * h * 5632 + h + 2 * h
    assert layer == 570_560_512
    assert models.from_hf_config(QWEN1_5_MOE).parameter_count == 24 * layer + 2 * 151936 * h + h == 14_315_784_192


def test_qwen2_moe_dense_layers_and_transformers():
    """mlp_only_layers [0]: layer 0 takes a dense MLP of 5632; transformers counts the same."""
    dense = {**QWEN1_5_MOE, "mlp_only_layers": [0]}
    h = 2048
    moe = 60 * 3 * h * 1408 + h * 60 + 3 * h * 5632 + h
    assert models.from_hf_config(dense).parameter_count == 14_315_784_192 - moe + 3 * h * 5632
    assert models.from_hf_config(dense).parameter_count == _meta_count(dense)
    assert models.from_hf_config(QWEN1_5_MOE).parameter_count == _meta_count(QWEN1_5_MOE)


def test_gptj_parameters():
    """GPT-J: per layer one LayerNorm 2h, Q K V O 4h^2 without biases, a GELU MLP of 4h with
    biases 8h^2 + 5h; the embedding V h, the final LayerNorm 2h and an untied LM head with a
    bias V h + V: 28 x (12 h^2 + 7h) + 2 V h + V + 2h = 6,050,882,784 at h = 4096, V = 50,400
    (transformers 5.25 on the meta device: the same)."""
    h, V = 4096, 50400
    expected = 28 * (12 * h * h + 7 * h) + 2 * V * h + V + 2 * h
    assert models.from_hf_config(GPTJ_6B).parameter_count == expected == 6_050_882_784
    assert models.from_hf_config(GPTJ_6B).parameter_count == _meta_count(GPTJ_6B)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu_pytorch_tanh", "gelu"])
def test_layers_take_hf_activation_names(activation):
    """gelu_new and gelu_pytorch_tanh are the tanh GELU the table prices (8 FLOPs per element)."""
    from symcost import MLPLayer

    named = MLPLayer(hidden_size=64, intermediate_size=256, activation=activation)
    plain = MLPLayer(hidden_size=64, intermediate_size=256, activation="gelu")
    kw = {"batch_size": 1, "seq_len": 8, "phase": "prefill", "dtype": "bf16"}
    assert named.compute_metrics(**kw).flops_per_chip == plain.compute_metrics(**kw).flops_per_chip


def _gpt_oss_layer(experts):
    """One gpt-oss layer (transformers' GptOssDecoderLayer) at h 2880, 64 query heads and 8 KV
    heads of 64, experts of 2880: Q and O 2 x 2880 x 4096, K and V 2 x 2880 x 512, their biases
    4096 + 2 x 512 + 2880, one sink logit per head 64; the router 2880 E + E (a bias); per expert
    gate_up 2880 x 5760 + 5760 and down 2880 x 2880 + 2880 (biases); two RMSNorms 2 x 2880."""
    h, f = 2880, 2880
    attention = 2 * h * 4096 + 2 * h * 512 + 4096 + 2 * 512 + h + 64
    assert attention == 26_550_144
    return attention + experts * (h + 1) + experts * (h * 2 * f + 2 * f + f * h + h) + 2 * h


def test_gpt_oss_parameters():
    """With the untied embedding and head 2 x 201,088 x 2880 and the final norm: gpt-oss-20b
    24 layers of 32 experts, 20,914,757,184; gpt-oss-120b 36 layers of 128, 116,829,156,672 --
    the model card's 20.91B and 116.83B total parameters (OpenAI, gpt-oss-120b & gpt-oss-20b
    Model Card, arXiv:2508.10925, Table 1)."""
    ends = 2 * 201_088 * 2880 + 2880
    assert 24 * _gpt_oss_layer(32) + ends == 20_914_757_184
    assert 36 * _gpt_oss_layer(128) + ends == 116_829_156_672
    assert models.from_hf_config(GPT_OSS_20B).parameter_count == 20_914_757_184
    assert models.from_hf_config(GPT_OSS_120B).parameter_count == 116_829_156_672


@pytest.mark.parametrize("config", [GPT_OSS_20B, GPT_OSS_120B], ids=["20b", "120b"])
def test_gpt_oss_transformers_counts_the_same(config):
    assert models.from_hf_config(config).parameter_count == _meta_count(config)


def test_gpt_oss_alternates_windows_of_128():
    """layer_types: even layers slide over 128 keys, odd ones attend to all. KV cache of one
    sequence at 8,192 tokens: 12 layers x 2 x 128 + 12 x 2 x 8192 tokens, x 8 KV heads x 64 x 2 bytes."""
    model = models.from_hf_config(GPT_OSS_20B)
    windows = [blk.attention.window for blk, n in model.blocks for _ in range(n)]
    assert windows == [128, None] * 12
    m = model.compute_metrics(batch_size=1, seq_len=8192, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 12 * 2 * (128 + 8192) * 8 * 64 * 2


def test_gpt_oss_block_has_sinks_biases_and_biased_experts():
    block = models.from_hf_config(GPT_OSS_20B).blocks[0][0]
    assert block.attention.sinks and block.attention.bias is True and block.attention.num_kv_heads == 8
    assert block.mlp.router_bias and block.mlp.expert_bias and block.mlp.num_experts == 32
    assert block.mlp.top_k == 4 and block.mlp.num_shared_experts == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"experts_per_token": 2}, "experts_per_token is 2, but num_experts_per_tok gives 4"),
    ({"attention_dropout": 0.1}, "attention_dropout = 0.1 is not modelled"),
    ({"swiglu_limit": "7"}, "unknown"),
])
def test_gpt_oss_bad_keys(change, message):
    if "swiglu_limit" in change:  # a cost-free key: any value loads
        assert models.from_hf_config({**GPT_OSS_20B, **change}).parameter_count == 20_914_757_184
        return
    with pytest.raises(models.ConfigError, match=message):
        models.from_hf_config({**GPT_OSS_20B, **change})


TINY = {
    "qwen2_moe": {**QWEN1_5_MOE, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
                  "num_hidden_layers": 2, "vocab_size": 128, "intermediate_size": 96, "moe_intermediate_size": 32,
                  "shared_expert_intermediate_size": 48, "num_experts": 4, "num_experts_per_tok": 2,
                  "_attn_implementation": "eager"},
    "gptj": {**GPTJ_6B, "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 128, "rotary_dim": 8,
             "_attn_implementation": "eager"},
    "gpt_oss": {**{k: v for k, v in GPT_OSS_20B.items() if k != "quantization_config"}, "hidden_size": 64,
                "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2,
                "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 8, "vocab_size": 128,
                "intermediate_size": 32, "num_local_experts": 4, "num_experts_per_tok": 2, "experts_per_token": 2,
                "pad_token_id": 0, "eos_token_id": 1, "_attn_implementation": "eager"},
}


@pytest.mark.parametrize("name", list(TINY))
def test_flop_counter_matches_on_tiny_variants(name):
    """As tests/models/test_hf_more.py: symcost's matmul FLOPs (causal=False, as eager attention
    computes the full square) equal FlopCounterMode's for a forward (plus the logits of the 15
    tokens symcost's prefill does not compute: 2 x 15 x h x V) and for a forward and backward."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from test_hf_more import _torch_flops

    forward, training = _torch_flops(TINY[name], torch, transformers)
    model = models.from_hf_config(TINY[name], causal=False)
    ours = model.compute_metrics(batch_size=1, seq_len=16, phase="prefill", dtype="fp32").matmul_flops_per_chip
    assert ours + 2 * 15 * 64 * 128 == forward
    train = model.compute_metrics(batch_size=1, seq_len=16, phase="training", dtype="fp32")
    assert train.matmul_flops_per_chip == training
