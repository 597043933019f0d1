"""Normalization layers: LayerNorm (gamma and beta) and RMSNorm (gamma).

Per chip, over the chip's tokens T (``b*s/sp``, divided by t under Megatron sequence
parallelism; ``b`` in decode): FLOPs ``T*h*c`` with c = 7 (LayerNorm) or 4 (RMSNorm) from
:data:`symcost.core.ops.VECTOR_FLOPS`; weights are replicated across TP.

>>> from symcost import NormLayer
>>> m = NormLayer(hidden_size=4096).compute_metrics(batch_size=1, seq_len=2048,
...                                                  phase="prefill", dtype="bf16")
>>> m.flops_per_chip == 7 * 2048 * 4096, m.matmul_flops_per_chip
(True, 0)
"""

from __future__ import annotations

from typing import Literal

import sympy as sp

from ..core import symbols as sym
from ..core.ops import VECTOR_FLOPS, Vector
from .base import Context, Dim, Layer

__all__ = ["NormLayer"]


class NormLayer(Layer):
    """``kind="layernorm"`` (scale and shift) or ``"rmsnorm"`` (scale only) over ``hidden_size``."""

    hidden_size: Dim = sym.hidden_size
    kind: Literal["layernorm", "rmsnorm"] = "layernorm"

    @property
    def num_params(self) -> sp.Expr:
        """Parameters: ``2h`` for LayerNorm, ``h`` for RMSNorm."""
        return (2 if self.kind == "layernorm" else 1) * self.hidden_size

    def forward_ops(self, ctx: Context):
        T, h, e = ctx.sharded_tokens, self.hidden_size, ctx.e
        return [Vector(self.kind, elements=T * h, flops_per_element=VECTOR_FLOPS[self.kind],
                       read_bytes=(T * h + self.num_params) * e, write_bytes=T * h * e)]

    @property
    def tp_summed_params(self) -> sp.Expr:
        """Under Megatron sequence parallelism, all its parameters: each TP rank normalizes its own
        ``T/t`` tokens (Megatron-Core's norms mark their weight and bias ``sequence_parallel``,
        ``fusions/fused_layer_norm.py``; Transformer Engine's ``TENorm`` likewise).

        >>> sp_tp8 = {"tensor_parallel": 8, "sequence_parallel": "tp"}
        >>> NormLayer(hidden_size=4096, kind="rmsnorm", parallelism=sp_tp8).tp_summed_params   # h
        4096
        >>> NormLayer(hidden_size=4096, parallelism={"tensor_parallel": 8}).tp_summed_params
        0
        """
        return self.num_params if self.parallelism.megatron_sp else sp.Integer(0)

    def weight_memory(self, ctx: Context) -> sp.Expr:
        return self.num_params * ctx.e

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # Korthikanti et al. 2022: each norm saves its input (2sbh at e = 2); statistics ignored.
        return ctx.sharded_tokens * self.hidden_size * ctx.e

    def peak_activations(self, ctx: Context) -> sp.Expr:
        # input and output
        return 2 * ctx.sharded_tokens * self.hidden_size * ctx.e
