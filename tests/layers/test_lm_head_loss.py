"""The training loss's HBM passes and TP collectives (issue 22 item 6), by hand from the kernels.

LM head V = 32,000, h = 1,024 under TP 4 (no SP), one sequence of 2,048 tokens in bf16:
T = 2,048 rows, V/t = 8,000, L = T V/t = 16,384,000 logits on a chip.

- Transformer Engine's fused cross-entropy (transformer_engine/pytorch/triton/cross_entropy.py):
  online_softmax_kernel reads the logits (2L) and writes m, d, X_y (12T); cross_entropy_kernel
  reads the logits (2L) and the gathered rows (12T * 4) and writes the gradient IN PLACE into the
  logits in their own dtype (``grad_dtype = X_block.dtype``; ``tl.store(X_ptr + X_offsets,
  X_block.to(grad_dtype))``: 2L) and the loss (4T); backward: element_mul_kernel scales the stored
  gradient in place by the per-token fp32 loss gradient (read 2L + 4T, write 2L); the gradient is
  already bf16, so no cast. 10 L + 68 T bytes. Saved: the head's input (T h e) and the logits
  buffer now holding the bf16 gradient (2L).
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
    assert moved == 10 * L + 68 * T == 163_979_264
    assert _loss_collectives(m) == [("all_gather", 1, 12 * T * 4)]
    # saved: the input (T h e) and the bf16 logit gradient written over the logits (2 L)
    assert m.activation_memory_per_chip == 2048 * 1024 * 2 + 2 * L


def test_unfused_cross_entropy_passes_and_all_reduces():
    head = sc.LMHeadLayer(vocab_size=32000, hidden_size=1024, fused_loss=False, parallelism={"tensor_parallel": 4})
    m, moved = _loss(head)
    assert moved == 52 * L + 20 * T == 852_008_960
    assert _loss_collectives(m) == [("all_reduce", 3, 4 * T)]
    # the reduced tensors are T rows of one fp32 value each (max, sum of exponentials, target logit)
    assert [c.tokens for c in m.collectives if c.payload_bytes == 4 * T] == [T]
    assert m.activation_memory_per_chip == 2048 * 1024 * 2 + 4 * L


def test_full_recompute_reruns_neither_head_nor_loss():
    """Megatron-Core checkpoints the transformer layers only (TransformerBlock's
    _checkpointed_forward, megatron/core/transformer/transformer_block.py); GPTModel runs the
    embedding, the output layer and compute_language_model_loss outside it. So under
    recompute="full" the head's FLOPs, bytes and saved tensors are those of recompute="none":
    3 * 2 T h V/t matmul FLOPs, and the saved input plus the bf16 gradient (T h e + 2L)."""
    head = sc.LMHeadLayer(vocab_size=32000, hidden_size=1024, parallelism={"tensor_parallel": 4})
    full = head.compute_metrics(**KW, recompute="full")
    assert full.matmul_flops_per_chip == 3 * 2 * T * 1024 * 8000
    assert not [op.name for op, _ in full.ops if op.name.endswith(".recompute")]
    assert full.activation_memory_per_chip == 2048 * 1024 * 2 + 2 * L
    assert [(c.kind, c.count) for c in full.collectives] == [
        (c.kind, c.count) for c in head.compute_metrics(**KW).collectives]


def test_full_recompute_keeps_the_embedding_dropout_mask():
    """The embedding runs outside the checkpointed block too: its dropout mask (1 byte per
    element, Korthikanti et al. 2022) is saved, T h = 2,048 * 1,024 bytes, and nothing reruns."""
    emb = sc.EmbeddingLayer(vocab_size=32000, hidden_size=1024, dropout=True)
    full = emb.compute_metrics(**KW, recompute="full")
    assert full.activation_memory_per_chip == 2048 * 1024
    assert not [op.name for op, _ in full.ops if op.name.endswith(".recompute")]
