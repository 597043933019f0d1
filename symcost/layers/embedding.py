"""Token embedding and the language-model head, both vocabulary-parallel under TP.

Per chip with t-way TP: the embedding table and the LM head hold ``V/t`` rows each (Megatron's
vocab-parallel layers). The embedding looks up its rows and sums the partial outputs with one TP
all-reduce (a reduce-scatter under sequence parallelism); learned position embeddings (GPT) are
replicated and added. The LM head computes ``(T x h) @ (h x V/t)`` logits and, in training, the
vocab-parallel cross-entropy (:meth:`LMHeadLayer.loss_ops`: Transformer Engine's fused kernels
and one fp32 all-gather, or Megatron-Core's unfused passes and three fp32 all-reduces of ``T``
values); in inference it computes logits for the last token of each sequence only.

Neither layer is recomputed under ``recompute="full"``: Megatron-Core checkpoints the transformer
layers only (``TransformerBlock._checkpointed_forward``, megatron/core/transformer/transformer_block.py),
and ``GPTModel`` runs the embedding, the output layer and the loss outside the block.

>>> from symcost import LMHeadLayer
>>> head = LMHeadLayer(vocab_size=32000, hidden_size=4096)
>>> head.compute_metrics(batch_size=1, seq_len=2048, phase="training", dtype="bf16"
...                      ).matmul_flops_per_chip == 3 * 2 * 2048 * 4096 * 32000
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Optional

import sympy as sp
from pydantic import model_validator

from ..core import symbols as sym
from ..core._expr import check_divides
from ..core.dtypes import DataType
from ..core.ops import DROPOUT_MASK_BYTES, VECTOR_FLOPS, Collective, Matmul, Op, Vector, dropout
from .base import Context, Dim, GradientCollective, Layer

__all__ = ["EmbeddingLayer", "LMHeadLayer"]

# NB: the cross-entropy's reductions run in fp32 whatever the activation dtype.
_FP32 = sp.Integer(4)
# NB: Transformer Engine's fused cross-entropy gathers three fp32 values per row from every TP rank:
# the running max m, the sum of exponentials d and the target logit X_y (triton/cross_entropy.py)
_ROW_STATS = sp.Integer(3)


@dataclass(frozen=True)
class _LossPass(Vector):
    """A forward pass of the loss whose backward is stated, not derived: nothing (``grad_read``
    zero), or the pass over the stored logit gradient (read ``grad_read``, write ``grad_write``)
    then, where it is fp32 (``cast_read`` non-zero), the autograd cast of that gradient to the
    logits' dtype (read ``cast_read``, write ``cast_write``)."""

    grad_read: sp.Expr = sp.Integer(0)
    grad_write: sp.Expr = sp.Integer(0)
    cast_read: sp.Expr = sp.Integer(0)
    cast_write: sp.Expr = sp.Integer(0)

    def backward(self) -> list[Op]:
        if self.grad_read == 0:
            return []
        ops: list[Op] = [Vector(self.name + ".bwd", elements=self.elements, flops_per_element=sp.Integer(1),
                                read_bytes=self.grad_read, write_bytes=self.grad_write)]
        if self.cast_read != 0:
            ops.append(Vector(self.name + ".cast", elements=self.elements, read_bytes=self.cast_read,
                              write_bytes=self.cast_write))
        return ops


def _not_recomputed(ctx: Context) -> Context:
    """``ctx`` with ``recompute="full"`` read as ``"none"``: the layer runs outside Megatron-Core's
    checkpointed transformer block (module docstring)."""
    return dataclasses.replace(ctx, recompute="none") if ctx.recompute == "full" else ctx


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
        ops.extend(self.tp_exit(ctx, T * h * e, userbuffers=False))
        T_out = ctx.sharded_tokens
        if self.max_positions is not None:
            ops.append(Vector("positions", elements=T_out * h, flops_per_element=VECTOR_FLOPS["bias"],
                              read_bytes=2 * T_out * h * e, write_bytes=T_out * h * e))
        if self.dropout and ctx.training:
            ops.append(dropout("dropout", T_out * h, e))
        return ops

    def ops(self, ctx: Context) -> list[Op | Collective]:
        """The layer's ops (:meth:`Layer.ops`), never recomputed (module docstring)."""
        return super().ops(_not_recomputed(ctx))

    def weight_memory(self, ctx: Context) -> sp.Expr:
        positions = self.max_positions * self.hidden_size if self.max_positions is not None else 0
        return (self.vocab_size / ctx.tp * self.hidden_size + positions) * ctx.e

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # token ids are not counted; the output dropout mask is (Korthikanti et al. 2022), under
        # full recomputation too (the embedding is not recomputed: module docstring)
        if self.dropout:
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

    _async_backward: ClassVar[bool] = True
    """Megatron-Core's output layer (its own ``ColumnParallelLinear``, core_v0.14.0
    megatron/core/models/gpt/gpt_model.py:213) re-gathers its input beside the dgrad GEMM and
    reduce-scatters (or all-reduces) the input gradient beside the wgrad GEMM, asynchronously
    (megatron/core/tensor_parallel/layers.py:487-620, ``LinearWithGradAccumulationAndAsyncCommunication``)."""

    vocab_size: Dim = sym.vocab_size
    hidden_size: Dim = sym.hidden_size
    tied: bool = False
    bias: bool = False
    """A bias on the logits (GPT-J's ``lm_head``): ``V`` parameters of its own, tied or not."""
    fused_loss: bool = True
    """Transformer Engine's fused cross-entropy (Megatron-Core's ``cross_entropy_loss_fusion`` with
    ``cross_entropy_fusion_impl="te"``: Megatron-Bridge's ``GPTModelProvider`` default and its
    performance recipes); ``False``: Megatron-Core's unfused ``vocab_parallel_cross_entropy``
    (:meth:`loss_ops`)."""

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
        # under Megatron SP the hidden states arrive sequence-sharded: gather them first (and
        # again in the backward: the head saves the shard). NB: the re-gather at 2 bytes even
        # under FP8 training: the output layer is Megatron-Core's own ColumnParallelLinear, outside
        # Transformer Engine's FP8 GEMMs, whose backward overlaps its collectives (_async_backward)
        ops: list = list(self.tp_enter(ctx, ctx.tokens * h * e, userbuffers=False, regather_bytes=ctx.wire_bytes,
                                       asynchronous=self._async_backward))
        # (rows x h) @ (h x V/t)
        ops.append(Matmul("logits", m=rows, n=V_t, k=h, dtype_bytes=e, bias=self.bias))
        if ctx.training:
            ops.extend(self.loss_ops(ctx))
        elif ctx.tp != 1:
            # inference: gather the vocabulary shards of the last tokens' logits to sample
            ops.append(Collective("all_gather", "tp", ctx.tp, rows * self.vocab_size * e))
        return ops

    def ops(self, ctx: Context) -> list[Op | Collective]:
        """The layer's ops (:meth:`Layer.ops`) less the backward's transpose of the fused loss's
        all-gather of row statistics: the loss kernel writes the logits' gradient in the forward,
        so nothing flows back through that gather. Never recomputed (module docstring).

        Dropped by position, not by value (its bytes ``T*3*4*t`` equal the input gradient's ``T*h*2``
        when ``h = 6t``): :meth:`Layer.ops` transposes the declared ops in reverse, and the loss's
        ops come last in :meth:`forward_ops` (its gather the only collective among them), so its
        transpose is the first collective of the backward."""
        ctx = _not_recomputed(ctx)
        ops = super().ops(ctx)
        if not (ctx.training and self.fused_loss and ctx.tp != 1):
            return ops
        # the forward's ops (Layer.ops leaves the backward-only GradientCollectives out of it)
        forward = sum(1 for op in self.forward_ops(ctx) if not isinstance(op, GradientCollective))
        first = next(i for i in range(forward, len(ops)) if isinstance(ops[i], Collective))
        return ops[:first] + ops[first + 1:]

    def loss_ops(self, ctx: Context) -> list:
        """The training loss over the chip's ``L = T V/t`` logits (``e`` bytes each) of ``T`` rows,
        every pass at its HBM bytes, the logit gradient kept from the forward to the backward, then
        multiplied by the loss's per-token (fp32) gradient for the head's GEMMs.

        - fused (``fused_loss``, Transformer Engine transformer_engine/pytorch/triton/cross_entropy.py,
          commit d0067d0): ``online_softmax_kernel`` reads the logits and writes ``m, d, X_y`` (3 fp32 per
          row); one all-gather of them over TP; ``cross_entropy_kernel`` reads the logits and the
          gathered rows and writes the loss and the gradient *in place* over the logits in their own
          dtype (``grad_dtype = X_block.dtype``; ``CrossEntropyFunction``: "the input gradients are
          upcasted to the datatype of the input"), ``e`` bytes; backward ``element_mul_kernel`` scales
          it in place (read e, write e), no cast: ``5e L`` bytes plus rows;
        - unfused (Megatron-Core megatron/core/tensor_parallel/cross_entropy.py, commit d98e8a6):
          ``.float()`` (read e, write 4), max (read 4), ``-= max`` (read 4, write 4), exp (read 4,
          write 4), sum (read 4), ``div_`` (read 4, write 4: the fp32 softmax, kept), the three fp32
          all-reduces of ``T`` values (max, target logit, sum of exponentials); backward ``mul_`` (read
          4, write 4) and autograd's cast of the ``.float()`` (read 4, write e): ``(2e + 48) L`` bytes
          plus rows.

        >>> head = LMHeadLayer(vocab_size=32000, hidden_size=1024)
        >>> from symcost.core.phase import Phase
        >>> ctx = Context(batch_size=sp.Integer(1), seq_len=sp.Integer(8), phase=Phase.TRAINING,
        ...               dtype_bytes=sp.Integer(2), parallelism=head.parallelism, recompute="none")
        >>> [op.name for op in head.loss_ops(ctx)]
        ['cross_entropy.online_softmax', 'cross_entropy']
        """
        rows, V_t, e, t = ctx.tokens, self.vocab_size / ctx.tp, ctx.e, ctx.tp
        logits = rows * V_t
        four = _FP32 * logits
        if self.fused_loss:
            stats = rows * _ROW_STATS * _FP32
            ops: list = [_LossPass("cross_entropy.online_softmax", elements=logits, read_bytes=logits * e,
                                   write_bytes=stats)]
            if t != 1:
                ops.append(Collective("all_gather", "tp", t, stats * t, element_format=DataType.FP32))
            # the gradient in the logits' dtype, in place; the backward scales it in place
            ops.append(_LossPass("cross_entropy", elements=logits, flops_per_element=VECTOR_FLOPS["softmax"],
                                 read_bytes=logits * e + stats * t, write_bytes=logits * e + rows * _FP32,
                                 grad_read=logits * e + rows * _FP32, grad_write=logits * e))
            return ops
        backward = {"grad_read": four + rows * _FP32, "grad_write": four, "cast_read": four, "cast_write": logits * e}
        row = rows * _FP32
        passes = [("float", logits * e, four), ("max", four, row), ("subtract_max", four + row, four),
                  ("exp", four, four), ("sum_exp", four, row)]
        ops = [_LossPass(f"cross_entropy.{name}", elements=logits, read_bytes=read, write_bytes=write)
               for name, read, write in passes]
        ops.append(_LossPass("cross_entropy", elements=logits, flops_per_element=VECTOR_FLOPS["softmax"],
                             read_bytes=four + row, write_bytes=four, **backward))
        if t != 1:
            # vocab-parallel: the max, the sum of exponentials and the target logit, fp32
            # (T rows of one fp32 each: tokens=T for an engine that reads rows)
            ops.append(Collective("all_reduce", "tp", t, row, count=3, tokens=rows, element_format=DataType.FP32))
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
        # the input (for dW) and the loss's logit gradient (TE's fused kernel: written over the
        # logits, e bytes) or fp32 softmax (Megatron-Core's unfused one: 4 bytes), kept for the
        # backward (loss_ops), under full recomputation too (the head is not recomputed)
        per_logit = ctx.e if self.fused_loss else _FP32
        return ctx.sharded_tokens * self.hidden_size * ctx.e + ctx.tokens * self.vocab_size / ctx.tp * per_logit

    def peak_activations(self, ctx: Context) -> sp.Expr:
        rows = self._rows(ctx)
        return (ctx.tokens * self.hidden_size + rows * self.vocab_size / ctx.tp) * ctx.e
