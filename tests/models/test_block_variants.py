"""TransformerBlock variants: post-norms (Gemma 2), parallel attention and MLP (GPT-NeoX,
Falcon) and one shared input norm (Falcon-7B), derived by hand.

Shapes: h = 64, a = 4, f = 256, b = 1, s = 8 (T = 8 tokens), bf16 (e = 2).
"""

from __future__ import annotations

import pytest

from symcost import AttentionLayer, MLPLayer, Model, TransformerBlock

H, T, E = 64, 8, 2


def block(**kw):
    return TransformerBlock(attention=AttentionLayer(hidden_size=H, num_heads=4),
                            mlp=MLPLayer(hidden_size=H, intermediate_size=256), norm_kind="layernorm", **kw)


def metrics(layer, phase="prefill"):
    return layer.compute_metrics(batch_size=1, seq_len=T, phase=phase, dtype="bf16")


def test_post_norms_add_two_norms():
    """Two more RMSNorms per block: 2 x 64 parameters and 2 x 4 x 8 x 64 = 4,096 FLOPs per
    layer; 3 layers: 384 parameters, 12,288 FLOPs."""
    kw = {"hidden_size": H, "num_heads": 4, "num_kv_heads": 2, "num_layers": 3, "vocab_size": 128,
          "intermediate_size": 256}
    plain, post = Model.llama(**kw), Model.llama(**kw, post_norms=True)
    assert post.blocks[0][0].num_norms == 4
    assert post.parameter_count - plain.parameter_count == 3 * 2 * 64
    diff = metrics(post).flops_per_chip - metrics(plain).flops_per_chip
    assert diff == 3 * 2 * 4 * T * H == 12288


def test_parallel_block_has_the_sequential_ops_and_holds_one_more_output():
    """x + attn(norm(x)) + mlp(norm(x)): the same norms, layers and two residual adds (same
    parameters, FLOPs and bytes); in inference the attention's output (8 x 64 x 2 = 1,024
    bytes) stays alive while the MLP runs."""
    seq, par = block(), block(parallel=True)
    assert par.num_params == seq.num_params
    a, b = metrics(seq), metrics(par)
    assert (a.flops_per_chip, a.hbm_bytes_per_chip) == (b.flops_per_chip, b.hbm_bytes_per_chip)
    assert b.activation_memory_per_chip - a.activation_memory_per_chip == T * H * E == 1024
    ta, tb = metrics(seq, "training"), metrics(par, "training")
    assert ta.flops_per_chip == tb.flops_per_chip
    assert ta.activation_memory_per_chip == tb.activation_memory_per_chip


def test_shared_norm_drops_one_layernorm():
    """Falcon-7B's one input norm: 2 x 64 = 128 fewer parameters, 7 x 8 x 64 = 3,584 fewer
    forward FLOPs, and in training one saved norm input fewer (8 x 64 x 2 = 1,024 bytes)."""
    two, one = block(parallel=True), block(parallel=True, shared_norm=True)
    assert one.num_norms == 1
    assert two.num_params - one.num_params == 128
    assert metrics(two).flops_per_chip - metrics(one).flops_per_chip == 3584
    saved = metrics(two, "training").activation_memory_per_chip - metrics(one, "training").activation_memory_per_chip
    assert saved == 1024


def test_shared_norm_needs_the_parallel_layout():
    with pytest.raises(ValueError, match="shared_norm needs parallel=True"):
        block(shared_norm=True)


def test_tensor_parallel_collectives_are_those_of_two_layers():
    """Under TP 2 a parallel block still reduces the attention's and the MLP's outputs apart
    (HF's GPT-NeoX and Falcon do): the same collectives as the sequential block."""
    par = {"tensor_parallel": 2}
    seq = TransformerBlock(attention=AttentionLayer(hidden_size=H, num_heads=4, parallelism=par),
                           mlp=MLPLayer(hidden_size=H, intermediate_size=256, parallelism=par), parallelism=par)
    both = seq.model_copy(update={"parallel": True})
    assert metrics(both).comm_bytes_per_chip == metrics(seq).comm_bytes_per_chip != 0


def test_parallel_block_holds_the_sequence_sharded_output_under_megatron_sp():
    """TP 2 with Megatron SP: the attention's output leaves its reduce-scatter sharded over the
    sequence, 8 / 2 x 64 x 2 = 512 bytes held while the MLP runs."""
    par = {"tensor_parallel": 2, "sequence_parallel": "tp"}
    seq = TransformerBlock(attention=AttentionLayer(hidden_size=H, num_heads=4, parallelism=par),
                           mlp=MLPLayer(hidden_size=H, intermediate_size=256, parallelism=par), parallelism=par)
    both = seq.model_copy(update={"parallel": True})
    assert metrics(both).activation_memory_per_chip - metrics(seq).activation_memory_per_chip == 512
