"""The training loss's HBM passes and TP collectives (issue 22 item 6), by hand from the kernels.

LM head V = 32,000, h = 1,024 under TP 4 (no SP), one sequence of 2,048 tokens in bf16:
T = 2,048 rows, V/t = 8,000, L = T V/t = 16,384,000 logits on a chip.

- Transformer Engine's fused cross-entropy (transformer_engine/pytorch/triton/cross_entropy.py):
  online softmax reads the logits (2L) and writes m, d, X_y (12T); the loss kernel reads the
  logits (2L) and the gathered rows (12T * 4) and writes the fp32 gradient (4L) and the loss
  (4T); backward: element_mul reads the gradient and the loss's gradient (4L + 4T) and writes
  (4L); autograd's cast to bf16 reads 4L and writes 2L. 22 L + 68 T bytes.
- Megatron-Core's unfused vocab_parallel_cross_entropy (megatron/core/tensor_parallel/cross_entropy.py):
  .float() 2L + 4L, max 4L + 4T, -= max 4L + 4T + 4L, exp 8L, sum 4L + 4T, div_ 4L + 4T + 4L;
  backward mul_ 4L + 4T + 4L, cast 4L + 2L. 52 L + 20 T bytes.
"""

import symcost as sc

T, L = 2048, 2048 * 8000
KW = {"batch_size": 1, "seq_len": 2048, "phase": "training", "dtype": "bf16", "hardware": "H100_SXM"}


def _loss(head):
    m = head.compute_metrics(**KW)
    moved = sum(op.hbm_bytes * n for op, n in m.ops if op.name.startswith("cross_entropy"))
    return m, moved


def _loss_collectives(m):
    """The collectives besides Megatron's f: the input gradient's all-reduce (T h e bytes)."""
    return [(c.kind, c.count, c.payload_bytes) for c in m.collectives if c.payload_bytes != T * 1024 * 2]


def test_fused_cross_entropy_passes_and_gather():
    head = sc.LMHeadLayer(vocab_size=32000, hidden_size=1024, parallelism={"tensor_parallel": 4})
    m, moved = _loss(head)
    assert moved == 22 * L + 68 * T == 360_587_264
    assert _loss_collectives(m) == [("all_gather", 1, 12 * T * 4)]
    # saved: the input (T h e) and the fp32 logit gradient (4 L)
    assert m.activation_memory_per_chip == 2048 * 1024 * 2 + 4 * L


def test_unfused_cross_entropy_passes_and_all_reduces():
    head = sc.LMHeadLayer(vocab_size=32000, hidden_size=1024, fused_loss=False, parallelism={"tensor_parallel": 4})
    m, moved = _loss(head)
    assert moved == 52 * L + 20 * T == 852_008_960
    assert _loss_collectives(m) == [("all_reduce", 3, 4 * T)]
    assert m.activation_memory_per_chip == 2048 * 1024 * 2 + 4 * L
