"""State-space and hybrid models: the mamba2-2.7b preset, MixerBlock, hybrid stacks, and the state
cache in the inference step."""

from __future__ import annotations

import pytest

from symcost import MixerBlock, Model, TransformerBlock, models
from symcost.layers.mamba2 import Mamba2Layer
from symcost.layers.moe import MoELayer
from symcost.models import ssm

SMALL_SSM = dict(ssm_head_dim=32, state_size=16, chunk_size=8)


def small_hybrid(**kw):
    """h = 64, V = 100: 4 Mamba-2 blocks (H = 4 heads of 32, N = 16, G = 1, k = 4), 1 GQA block
    (a = 4, g = 2, d = 16), 5 MLP blocks (f = 256), untied."""
    return ssm.hybrid(hidden_size=64, vocab_size=100, mamba_layers=4, attention_layers=1, mlp_layers=5,
                      num_heads=4, num_kv_heads=2, intermediate_size=256, **{**SMALL_SSM, **kw})


def test_mamba2_27b_parameter_count():
    """state-spaces/mamba2-2.7b (config.json: d_model 2560, n_layer 64, vocab 50277 padded to a
    multiple of 16 = 50288, tied; mixer defaults expand 2, headdim 64, d_state 128, ngroups 1,
    d_conv 4), counted from mamba_ssm's module definitions:
    mixer = in_proj 2560*(2*5120 + 2*128 + 80) = 27,074,560 + conv 5376*4 + 5376 = 26,880
            + dt_bias, A_log, D 3*80 = 240 + norm 5120 + out_proj 5120*2560 = 13,107,200
          = 40,214,000; block = mixer + RMSNorm 2560 = 40,216,560;
    total = 64 * 40,216,560 + embedding 50288*2560 = 128,737,280 + norm_f 2560 = 2,702,599,680
    ("2.7B", the checkpoint's name and the paper's Table 3 row)."""
    model = models.get("mamba2-2.7b")
    assert model.parameter_count == 64 * 40_216_560 + 128_737_280 + 2560 == 2_702_599_680
    mixer = model.blocks[0][0].mixer
    assert (mixer.num_heads, mixer.head_dim, mixer.state_size, mixer.chunk_size) == (80, 64, 128, 256)


def test_mamba2_27b_state_cache_in_the_inference_step():
    """b = 8: 64 layers x 8 x (3*5376 + 80*64*128) x 2 bytes = 687,603,712, the same at s = 4096 and
    s = 65536; the memory is weights + state cache + the activation peak."""
    model = models.get("mamba2-2.7b")
    short = model.inference_step("H100_SXM", batch_size=8, seq_len=4096)
    long = model.inference_step("H100_SXM", batch_size=8, seq_len=65536)
    want = 64 * 8 * (3 * 5376 + 80 * 64 * 128) * 2
    assert short.kv_cache_memory == long.kv_cache_memory == want == 687_603_712
    assert short.memory_per_chip == short.weight_memory + want + short.activation_memory
    assert short.tpot == long.tpot  # a decode step costs the same at any context length


def test_mamba2_tp_needs_groups_divisible():
    """Megatron's rule: ngroups (1 here) must split t ways; a clear error names the field."""
    with pytest.raises(ValueError, match="num_groups must be divisible by tensor_parallel"):
        models.get("mamba2-2.7b").with_parallelism({"tensor_parallel": 2})
    grouped = ssm.mamba2(hidden_size=2560, num_layers=2, vocab_size=50288, num_groups=8)
    assert grouped.with_parallelism({"tensor_parallel": 8}).blocks[0][0].mixer.parallelism.tp == 8


def test_builder_checks_expand_and_head_dim():
    with pytest.raises(ValueError, match="head_dim"):
        ssm.mamba2(hidden_size=100, num_layers=1, vocab_size=10, head_dim=64)


def test_hybrid_parameter_count_by_hand():
    """Mamba block 64*292 + 160*5 + 12 + 128 + 128*64 + 64 = 27,884 (x4); GQA block
    64*(4 + 2*2)*16 + 64*64 + 64 = 12,352; MLP block 2*64*256 + 64 = 32,832 (x5); embedding and
    LM head 100*64 each, final norm 64: 300,912."""
    model = small_hybrid()
    assert model.parameter_count == 4 * 27_884 + 12_352 + 5 * 32_832 + 2 * 6400 + 64 == 300_912
    assert model.num_layers == 10


def test_hybrid_cache_is_kv_plus_state():
    """b = 2, bf16: the GQA block's KV cache grows with s (2*b*s*g*d*e), the 4 Mamba-2 blocks'
    state cache does not (4 * b * (3*160 + 4*32*16) * e)."""
    model = small_hybrid()
    state = 4 * 2 * (3 * 160 + 4 * 32 * 16) * 2

    def kv(s_):
        return model.compute_metrics(batch_size=2, seq_len=s_, phase="decode", dtype="bf16").kv_cache_memory_per_chip

    assert kv(64) == 2 * 2 * 64 * 2 * 16 * 2 + state
    assert kv(128) - kv(64) == 2 * 2 * 64 * 2 * 16 * 2


def test_jamba_like_block_is_a_transformer_block_with_a_mamba_mixer():
    """Jamba: each layer a mixer (Mamba or attention) then an MLP or MoE, in one block."""
    mixer = Mamba2Layer(hidden_size=64, num_heads=4, head_dim=32, state_size=16, num_groups=1,
                        conv_kernel=4, chunk_size=8)
    moe = MoELayer(hidden_size=64, expert_intermediate_size=128, num_experts=4, top_k=2)
    block = TransformerBlock(attention=mixer, mlp=moe)
    assert block.num_params == mixer.num_params + moe.num_params + 2 * 64
    assert block.num_routed_experts == 4 and block.query_heads == 4 and block.kv_heads is None
    base = small_hybrid()
    model = Model(name="jamba-like", embedding=base.embedding, final_norm=base.final_norm,
                  lm_head=base.lm_head, blocks=((block, 3), base.blocks[1]))
    m = model.compute_metrics(batch_size=1, seq_len=16, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 3 * (3 * 160 + 4 * 32 * 16) * 2 + 2 * 16 * 2 * 16 * 2


def test_mixer_block_contract():
    """Norm + mixer + residual: the block's FLOPs are its parts' plus b*s*h for the residual add."""
    block = small_hybrid().blocks[0][0]
    assert isinstance(block, MixerBlock)
    kw = dict(batch_size=2, seq_len=16, phase="prefill", dtype="bf16")
    parts = [p.compute_metrics(**kw).flops_per_chip for p in block.parts]
    assert block.compute_metrics(**kw).flops_per_chip == sum(parts) + 2 * 16 * 64
    full = block.compute_metrics(**{**kw, "phase": "training"}, recompute="full")
    assert full.activation_memory_per_chip == 2 * 16 * 64 * 2


def test_training_and_search_run_on_a_hybrid():
    model = small_hybrid(num_groups=2)
    step = model.training_step("H100_SXM", seq_len=64, global_batch=8, micro_batch=1,
                               parallelism={"tensor_parallel": 2, "data_parallel": 4})
    assert step.fits
    from symcost import search

    result = search.parallelism(model, "H100_SXM", num_chips=2, global_batch=8, seq_len=64, phase="training")
    assert result.num_candidates > 0
