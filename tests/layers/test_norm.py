"""NormLayer: hand-derived FLOPs, bytes and memory."""

import symcost as sc
from symcost import symbols as S
from symcost.testing import assert_expr_equal

b, s, h, t, e = S.batch_size, S.seq_len, S.hidden_size, S.tp, S.dtype_bytes


def test_layernorm_prefill():
    """LayerNorm: 7 FLOPs per element, reads x and gamma/beta, writes y; 2h parameters."""
    m = sc.NormLayer(hidden_size=4096).compute_metrics(batch_size=2, seq_len=1024, dtype="bf16")
    n = 2 * 1024 * 4096
    assert m.flops_per_chip == 7 * n and m.matmul_flops_per_chip == 0
    assert m.hbm_bytes_per_chip == 2 * (n + 2 * 4096) + 2 * n
    assert m.weight_memory_per_chip == 2 * 4096 * 2
    assert m.activation_memory_per_chip == 2 * n * 2  # input and output
    assert m.collectives == () and m.comm_bytes_per_chip == 0


def test_rmsnorm_symbolic():
    """RMSNorm: 4 b s h FLOPs and h e bytes of weights."""
    m = sc.NormLayer(kind="rmsnorm").compute_metrics()
    assert_expr_equal(m.flops_per_chip, 4 * b * s * h)
    assert_expr_equal(m.weight_memory_per_chip, h * e)


def test_norm_replicated_under_tp_and_sharded_under_sequence_parallel():
    """Plain TP replicates the norm's work; Megatron SP splits its tokens t ways."""
    tp_only = sc.NormLayer(parallelism={"tensor_parallel": t}).compute_metrics()
    sp_tp = sc.NormLayer(parallelism={"tensor_parallel": t, "sequence_parallel": "tp"}
                         ).compute_metrics(phase="training")
    assert_expr_equal(tp_only.flops_per_chip, 7 * b * s * h)
    # training: forward 7 + backward 14 FLOPs per element on b s h / t elements
    assert_expr_equal(sp_tp.flops_per_chip, 21 * b * s * h / t)
    assert_expr_equal(sp_tp.activation_memory_per_chip, b * s * h * e / t)
    assert_expr_equal(sp_tp.weight_memory_per_chip, 2 * h * e)
    assert sp_tp.collectives == ()


def test_decode_normalizes_one_token_per_sequence():
    """Decode: b tokens, whatever seq_len."""
    m = sc.NormLayer(hidden_size=8, kind="rmsnorm").compute_metrics(
        batch_size=3, seq_len=4096, phase="decode", dtype="fp32")
    assert m.flops_per_chip == 4 * 3 * 8
