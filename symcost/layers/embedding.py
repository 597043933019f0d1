"""Token embedding and the language-model head, both vocabulary-parallel under TP.

Per chip with t-way TP: the embedding table and the LM head hold ``V/t`` rows each (Megatron's
vocab-parallel layers). The embedding looks up its rows and sums the partial outputs with one TP
all-reduce (a reduce-scatter under sequence parallelism); learned position embeddings (GPT) are
replicated and added. The LM head computes ``(T x h) @ (h x V/t)`` logits and, in training, the
vocab-parallel cross-entropy (three fp32 all-reduces of ``T`` values: max, sum of exponentials,
target logit); in inference it computes logits for the last token of each sequence only.

>>> from symcost import LMHeadLayer
>>> head = LMHeadLayer(vocab_size=32000, hidden_size=4096)
>>> head.compute_metrics(batch_size=1, seq_len=2048, phase="training", dtype="bf16"
...                      ).matmul_flops_per_chip == 3 * 2 * 2048 * 4096 * 32000
True
"""

from __future__ import annotations

from typing import Optional

import sympy as sp
from pydantic import model_validator

from ..core import symbols as sym
from ..core._expr import check_divides
from ..core.ops import DROPOUT_MASK_BYTES, VECTOR_FLOPS, Collective, Matmul, Vector, dropout
from .base import Context, Dim, Layer

__all__ = ["EmbeddingLayer", "LMHeadLayer"]

# NB: the cross-entropy's reductions run in fp32 whatever the activation dtype.
_FP32 = sp.Integer(4)


class EmbeddingLayer(Layer):
    """Token embedding ``V x h`` (vocab-parallel), optional learned positions ``P x h``
    (``max_positions``, replicated), optional dropout on the output in training.

    Parameters ``V*h + P*h``; no matmul FLOPs (a lookup); the positions add one FLOP per element.
    """

    vocab_size: Dim = sym.vocab_size
    hidden_size: Dim = sym.hidden_size
    max_positions: Optional[Dim] = None
    dropout: bool = False

    @model_validator(mode="after")
    def _check_sharding(self) -> "EmbeddingLayer":
        check_divides(self.vocab_size, self.parallelism.tp, "vocab_size", by="tensor_parallel")
        return self

    @property
    def num_params(self) -> sp.Expr:
        positions = self.max_positions * self.hidden_size if self.max_positions is not None else 0
        return self.vocab_size * self.hidden_size + positions

    def forward_ops(self, ctx: Context):
        T, h, e = ctx.tokens, self.hidden_size, ctx.e
        # each chip writes a T x h partial (zeros outside its V/t rows): read rows, write output
        ops: list = [Vector("embedding", elements=T * h, flops_per_element=sp.Integer(0),
                            read_bytes=T * h * e / ctx.tp, write_bytes=T * h * e)]
        ops.extend(self.tp_exit(ctx, T * h * e))
        T_out = ctx.sharded_tokens
        if self.max_positions is not None:
            ops.append(Vector("positions", elements=T_out * h, flops_per_element=VECTOR_FLOPS["bias"],
                              read_bytes=2 * T_out * h * e, write_bytes=T_out * h * e))
        if self.dropout and ctx.training:
            ops.append(dropout("dropout", T_out * h, e))
        return ops

    def weight_memory(self, ctx: Context) -> sp.Expr:
        positions = self.max_positions * self.hidden_size if self.max_positions is not None else 0
        return (self.vocab_size / ctx.tp * self.hidden_size + positions) * ctx.e

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # token ids are not counted; the output dropout mask is (Korthikanti et al. 2022)
        if self.dropout and ctx.recompute != "full":
            return DROPOUT_MASK_BYTES * ctx.sharded_tokens * self.hidden_size
        return sp.Integer(0)

    def peak_activations(self, ctx: Context) -> sp.Expr:
        return ctx.tokens * self.hidden_size * ctx.e  # the output (partial sums before the reduce)


class LMHeadLayer(Layer):
    """Logits ``(T x h) @ (h x V/t)``, column-parallel, with the vocab-parallel cross-entropy in
    training. ``tied=True`` shares the embedding's table: no parameters of its own.

    Training matmul FLOPs ``3 * 2*T*h*V/t`` (forward, dX, dW); cross-entropy 5 vector FLOPs per
    logit (softmax) forward. Inference: logits of the last token of each sequence (``b`` rows).
    """

    vocab_size: Dim = sym.vocab_size
    hidden_size: Dim = sym.hidden_size
    tied: bool = False
    bias: bool = False
    """A bias on the logits (GPT-J's ``lm_head``): ``V`` parameters of its own, tied or not."""

    @model_validator(mode="after")
    def _check_sharding(self) -> "LMHeadLayer":
        check_divides(self.vocab_size, self.parallelism.tp, "vocab_size", by="tensor_parallel")
        return self

    @property
    def num_params(self) -> sp.Expr:
        return (sp.Integer(0) if self.tied else self.vocab_size * self.hidden_size) + self._bias_params

    @property
    def _bias_params(self) -> sp.Expr:
        return self.vocab_size if self.bias else sp.Integer(0)

    def _rows(self, ctx: Context) -> sp.Expr:
        """Tokens whose logits are computed: all in training, the last per sequence otherwise."""
        return ctx.tokens if ctx.training else ctx.batch_size

    def forward_ops(self, ctx: Context):
        h, e, V_t = self.hidden_size, ctx.e, self.vocab_size / ctx.tp
        rows = self._rows(ctx)
        # under Megatron SP the hidden states arrive sequence-sharded: gather them first
        ops: list = list(self.tp_enter(ctx, ctx.tokens * h * e))
        # (rows x h) @ (h x V/t)
        ops.append(Matmul("logits", m=rows, n=V_t, k=h, dtype_bytes=e, bias=self.bias))
        if ctx.training:
            # softmax cross-entropy over the chip's V/t logits: read the logits, write the loss
            ops.append(Vector("cross_entropy", elements=rows * V_t, flops_per_element=VECTOR_FLOPS["softmax"],
                              read_bytes=rows * V_t * e, write_bytes=rows * _FP32))
            if ctx.tp != 1:
                # vocab-parallel: the max, the sum of exponentials and the target logit, fp32
                ops.append(Collective("all_reduce", "tp", ctx.tp, rows * _FP32, count=3))
        elif ctx.tp != 1:
            # inference: gather the vocabulary shards of the last tokens' logits to sample
            ops.append(Collective("all_gather", "tp", ctx.tp, rows * self.vocab_size * e))
        return ops

    def table_memory(self, dtype_bytes: sp.Expr) -> sp.Expr:
        """Bytes of the ``V/t x h`` output table on one chip, whether its own or the tied
        embedding's (a pipeline's last stage holds a copy of a tied one: symcost.plan.pipeline).

        >>> LMHeadLayer(vocab_size=32000, hidden_size=4096, tied=True,
        ...             parallelism={"tensor_parallel": 8}).table_memory(2) == 32000 // 8 * 4096 * 2
        True
        """
        return self.vocab_size / self.parallelism.tp * self.hidden_size * dtype_bytes

    def weight_memory(self, ctx: Context) -> sp.Expr:
        bias = self._bias_params / ctx.tp * ctx.e
        if self.tied:
            return bias  # the embedding's table, counted there
        return self.table_memory(ctx.e) + bias

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # the input (for dW) and the logits (for the cross-entropy's backward), per chip
        inputs = ctx.sharded_tokens * self.hidden_size * ctx.e
        if ctx.recompute == "full":
            return inputs
        return inputs + ctx.tokens * self.vocab_size / ctx.tp * ctx.e

    def peak_activations(self, ctx: Context) -> sp.Expr:
        rows = self._rows(ctx)
        return (ctx.tokens * self.hidden_size + rows * self.vocab_size / ctx.tp) * ctx.e
