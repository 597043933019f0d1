"""Causal attention on whole models: every builder, preset and the config loader take ``causal``.

Per attention layer (a heads of d, h = a d, TP 1) the prefill core costs 4 b h s^2 matmul FLOPs
over the full score matrix and 4 b h s(s+1)/2 = 2 b h s (s+1) over the causal triangle, so
``causal=True`` saves 2 b h s (s - 1) per layer and forward (docs/conventions.md §3). Training
multiplies that by 3 with eager attention (backward 2x) and by 7/2 with flash (backward 5/2x).

Defaults: the kernel decides. Flash kernels skip the fully masked tiles (so a model built with
``flash_attention=True`` -- Llama, Mistral, Qwen2, Mixtral, DeepSeek-V3 -- defaults to
``causal=True``); eager attention, Megatron-LM 2021's, computes every score and then masks (so
``Model.gpt`` -- eager -- defaults to ``causal=False``, which keeps Narayanan et al.'s formulas).
"""

from __future__ import annotations

import pytest

from symcost import models
from symcost import symbols as S
from symcost.models.builders import deepseek_v3, mixtral
from symcost.models.model import Model
from symcost.testing import assert_expr_equal

b, s, h, L = S.batch_size, S.seq_len, S.hidden_size, S.num_layers


def prefill(model, **kw):
    return model.compute_metrics(phase="prefill", dtype="bf16", **kw).matmul_flops_per_chip


def attention(model):
    return model.blocks[0][0].attention


def test_llama_builder_takes_causal():
    """Model.llama(causal=...): the symbolic prefill differs by L * 2 b h s (s - 1)."""
    full, causal = Model.llama(causal=False), Model.llama(causal=True)
    assert_expr_equal(prefill(full) - prefill(causal), L * 2 * b * h * s * (s - 1))


def test_gpt_builder_takes_causal_and_defaults_to_the_full_square():
    """Model.gpt (eager) defaults to causal=False, so Narayanan's 72 B s l h^2 (1 + s/(6h) + ...)
    holds; causal=True saves 3 x L x 2 b h s (s - 1) in training (forward + eager backward)."""
    assert attention(Model.gpt()).causal is False
    full = Model.gpt(seq_len=s).compute_metrics(phase="training", dtype="bf16")
    causal = Model.gpt(seq_len=s, causal=True).compute_metrics(phase="training", dtype="bf16")
    assert_expr_equal(full.matmul_flops_per_chip - causal.matmul_flops_per_chip, 3 * L * 2 * b * h * s * (s - 1))
    explicit = Model.gpt(seq_len=s, causal=False).compute_metrics(phase="training", dtype="bf16")
    assert_expr_equal(explicit.matmul_flops_per_chip - full.matmul_flops_per_chip, 0)


def test_defaults_follow_the_attention_kernel():
    """Flash-attention builders default to causal=True, eager ones to causal=False."""
    assert attention(Model.llama()).causal is True
    assert attention(Model.llama(flash_attention=False)).causal is False
    assert attention(Model.gpt(flash_attention=True)).causal is True
    assert attention(models.get("llama-3-8b")).causal is True
    assert attention(models.get("gpt3-175b")).causal is False
    assert attention(models.get("deepseek-v3")).causal is True
    assert attention(models.get("mixtral-8x7b")).causal is True


def test_presets_take_causal():
    """Llama-3-8B prefill, b = 1, s = 8192: causal=False costs 32 x 2 x 4096 x 8192 x 8191 more."""
    default = models.get("llama-3-8b")
    full = models.get("llama-3-8b", causal=False)
    assert attention(full).causal is False
    kw = {"batch_size": 1, "seq_len": 8192}
    assert prefill(full, **kw) - prefill(default, **kw) == 32 * 2 * 4096 * 8192 * 8191 == 17_590_038_560_768
    assert models.get("llama-3-8b") is default  # the cache keeps both
    assert attention(models.get("gpt3-175b", causal=True)).causal is True


def test_moe_builders_take_causal():
    """Mixtral (GQA) and DeepSeek-V3 (MLA): causal=False adds the masked pairs' core FLOPs."""
    kw = dict(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=100, intermediate_size=32,
              num_experts=4, top_k=2)
    run = {"batch_size": 1, "seq_len": 16}
    diff = prefill(mixtral(causal=False, **kw), **run) - prefill(mixtral(**kw), **run)
    assert diff == 2 * 2 * 1 * 64 * 16 * 15  # layers x 2 b h s (s - 1)
    ds = models.get("deepseek-v3")
    ds_full = models.get("deepseek-v3", causal=False)
    # MLA core per layer: 2 b a pairs (d_qk + d_v); masked pairs s(s-1)/2 at s = 1024
    masked = 1024 * 1023 // 2
    diff = prefill(ds_full, batch_size=1, seq_len=1024) - prefill(ds, batch_size=1, seq_len=1024)
    assert diff == 61 * 2 * 1 * 128 * masked * (192 + 128)
    dense = dict(hidden_size=64, num_heads=4, num_layers=2, vocab_size=100, intermediate_size=32,
                 moe_intermediate_size=16, num_experts=4, top_k=2, num_shared_experts=1, first_dense_layers=1,
                 q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
    assert attention(deepseek_v3(causal=False, **dense)).causal is False


def test_config_loader_takes_causal():
    """from_hf_config(..., causal=False) costs the full square; the default is causal."""
    config = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 2, "num_hidden_layers": 3, "vocab_size": 100}
    run = {"batch_size": 2, "seq_len": 32}
    full, default = models.from_hf_config(config, causal=False), models.from_hf_config(config)
    assert attention(default).causal is True
    assert prefill(full, **run) - prefill(default, **run) == 3 * 2 * 2 * 64 * 32 * 31


def test_causal_must_be_a_bool():
    """A string is not read as a truth value."""
    with pytest.raises(ValueError, match="causal must be True, False or None"):
        Model.llama(causal="false")


def test_mfu_counts_the_models_own_flops():
    """MFU's numerator is the model's own training matmul FLOPs (its causal setting): for
    Llama-3-8B, 16 sequences of 4096, flash (3.5x forward) the causal model counts
    16 x 32 x 7/2 x 2 x 4096 x 4096 x 4095 fewer FLOPs than the full-square one."""
    kw = dict(seq_len=4096, global_batch=16, micro_batch=1, parallelism={"tensor_parallel": 8, "data_parallel": 2})
    causal = models.get("llama-3-8b").training_step("H100_SXM", **kw)
    full = models.get("llama-3-8b", causal=False).training_step("H100_SXM", **kw)
    assert full.model_flops - causal.model_flops == 16 * 32 * 7 * 4096 * 4096 * 4095
    peak = 989_400_000_000_000  # H100 SXM dense bf16, 989.4 TFLOPS (NVIDIA Hopper whitepaper)
    assert causal.mfu == causal.model_flops / (causal.step_time * causal.num_chips * peak)


def test_mfu_numerator_per_token():
    """model_flops per token: Llama-3-8B (flash, causal) 6 N + 7 L h (s + 1), with N its matmul
    weights (all but the embedding table and the 2L + 1 RMSNorm weights); GPT-3 (eager, full
    square) PaLM's 6 N + 12 L h s with N = 12 L h^2 + V h (tied head)."""
    s_ = 4096
    n_llama = 8_030_261_248 - 128256 * 4096 - (2 * 32 + 1) * 4096
    step = models.get("llama-3-8b").training_step("H100_SXM", seq_len=s_, global_batch=8,
                                                   parallelism={"tensor_parallel": 8})
    assert step.model_flops == 8 * s_ * (6 * n_llama + 7 * 32 * 4096 * (s_ + 1))
    s_ = 2048
    n_gpt = 12 * 96 * 12288**2 + 51200 * 12288
    step = models.get("gpt3-175b").training_step("H100_SXM", seq_len=s_, global_batch=8,
                                                  parallelism={"tensor_parallel": 8, "pipeline_parallel": 8})
    assert step.model_flops == 8 * s_ * (6 * n_gpt + 12 * 96 * 12288 * s_)
