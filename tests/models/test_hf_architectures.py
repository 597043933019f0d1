"""Architectures added to from_hf_config (issue 20, item 15): exact parameter counts derived by
hand and equal to transformers' on the meta device, and matmul FLOPs equal to FlopCounterMode's
on tiny variants."""

from __future__ import annotations

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


TINY = {
    "qwen2_moe": {**QWEN1_5_MOE, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
                  "num_hidden_layers": 2, "vocab_size": 128, "intermediate_size": 96, "moe_intermediate_size": 32,
                  "shared_expert_intermediate_size": 48, "num_experts": 4, "num_experts_per_tok": 2,
                  "_attn_implementation": "eager"},
    "gptj": {**GPTJ_6B, "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 128, "rotary_dim": 8,
             "_attn_implementation": "eager"},
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
