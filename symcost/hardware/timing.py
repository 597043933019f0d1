"""The time model: a roofline per op plus an explicit efficiency model (docs/conventions.md §13, §14, §17).

Per op, on a chip whose fields give the efficiencies (all 1 and overheads 0 on the ideal chip):

- matmul: ``2 k * T_M T_N * waves * U / (peak * eta_mm)`` where the product is cut into
  ``tiles = batch * ceil(m/T_M) * ceil(n/T_N)`` output tiles run ``U`` at a time
  (``waves = ceil(tiles/U)``; fewer tiles than compute units are spread over the chip by
  split-K, ``waves = tiles/U``): tile and wave quantization, and the small-M regime of decode
  GEMMs, whose M is padded to a whole tile;
- attention core: FLOPs at the 16-bit peak times ``eta_attn`` (flash kernels), its bytes at
  ``hbm_bandwidth * eta_attn_mem`` when it streams a KV cache (decode);
- every op: bytes at ``hbm_bandwidth * eta_mem``; vector FLOPs at the vector units' rate;
- time ``max(compute, memory) + kernels * t_k``, and without CUDA graphs at least
  ``kernels * t_launch`` (the host launches each kernel), where ``kernels`` is the op's kernel
  count in a fusing engine (:data:`FUSED_OPS` run inside another op's kernel).

Collectives, per call: ``alpha_0 + t_coll + alpha * steps + bytes_sent / (link * eta_net)`` (``t_coll``
the engine's own time per call, :class:`~symcost.hardware.Runtime`) with ring
steps (all-reduce ``2(n-1)``, all-gather, reduce-scatter and all-to-all ``n-1``, p2p 1) on the
scale-up link when the group fits in one scale-up domain, else on the scale-out link.

Communication adds to the compute time unless ``overlap=True`` (``max(op time, comm time)``).

>>> from symcost.ops import Collective
>>> from symcost import hardware
>>> c = Collective("all_reduce", "tp", 8, 10**9)          # 1 GB over 8 H100s (NVLink)
>>> t = collective_time(c, hardware.H100_SXM.ideal())     # 14 steps * 1 us + 1.75 GB / 450 GB/s
>>> t == sp.Rational(14, 10**6) + sp.Rational(7 * 10**9 // 4, 450 * 10**9)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import sympy as sp

from ..core._expr import Ceil, as_expr, total
from ..core.dtypes import DataType
from ..core.ops import AttentionCore, AttentionCoreBackward, Collective, Matmul, Op
from .chip import Hardware

__all__ = ["FUSED_OPS", "OpTime", "Times", "collective_steps", "collective_time", "kernels", "layer_times",
           "matmul_compute_flops", "op_time"]

FUSED_OPS = frozenset({
    # NB: what a fusing engine (TensorRT-LLM, vLLM, FasterTransformer) runs inside another
    # kernel: the residual add inside the next norm (fused add + RMSNorm/LayerNorm), the up
    # projection inside one gate_up GEMM, the gate multiply inside the activation (SiLU·gate),
    # bias adds in the GEMM epilogue, position embeddings inside the embedding gather.
    "residual", "up", "gate_multiply", "out_bias", "down_bias", "positions",
})
"""Op names (before any ``.`` suffix) that add no kernel of their own."""


def kernels(op: Op) -> int:
    """Kernels ``op`` launches: 0 when fused into another op's kernel (:data:`FUSED_OPS`), else 1."""
    return 0 if op.name.split(".")[0] in FUSED_OPS else 1


@dataclass(frozen=True)
class OpTime:
    """One op's time terms in seconds: roofline terms and the fixed overhead of its kernels."""

    compute: sp.Expr
    memory: sp.Expr
    overhead: sp.Expr = sp.Integer(0)
    launch: sp.Expr = sp.Integer(0)

    @property
    def time(self) -> sp.Expr:
        """``max(compute, memory) + overhead``, at least ``launch``: the op waits for the slower of
        its units, then for its kernels' fixed cost; without CUDA graphs the host's launches
        can pace it.

        NB: with symbols the ``Max`` is left unevaluated: SymPy's search for a provable order
        between two rational functions costs milliseconds per op and rarely succeeds; it
        evaluates as soon as numbers are substituted.
        """
        evaluate = self.compute.is_number and self.memory.is_number
        busy = sp.Max(self.compute, self.memory, evaluate=evaluate) + self.overhead
        if self.launch == 0:
            return busy
        return sp.Max(busy, self.launch, evaluate=evaluate and self.overhead.is_number)


def matmul_compute_flops(op: Matmul, hardware: Hardware) -> sp.Expr:
    """FLOPs the matrix units spend on ``op``, tiles and waves included (the op's own FLOPs on
    a chip without ``compute_units``)."""
    if hardware.compute_units is None:
        return op.matmul_flops
    tm, tn = hardware.matmul_tile
    units = hardware.compute_units
    tiles = op.batch * Ceil(op.m / tm) * Ceil(op.n / tn)
    # waves = tiles/U below one full wave (split-K spreads the tiles over every unit), else
    # ceil(tiles/U); written without a Piecewise: min(tiles/U, 1) + ceil(max(tiles - U, 0)/U)
    waves = sp.Min(tiles / units, 1) + Ceil(sp.Max(tiles - units, 0) / units)
    # each wave: every unit computes one T_M x T_N tile over the whole k
    return 2 * op.k * tm * tn * units * waves


def op_time(op: Op, hardware: Hardware, peak: sp.Expr, datatype: Optional[DataType] = None) -> OpTime:
    """Time terms of ``op`` on ``hardware`` with matmul FLOP/s ``peak`` (efficiency applied);
    ``datatype`` picks the attention kernels' rate (the 16-bit peak for 8-bit models)."""
    bandwidth = hardware.effective_hbm_bandwidth
    if isinstance(op, Matmul):
        compute = matmul_compute_flops(op, hardware) / peak
    elif isinstance(op, (AttentionCore, AttentionCoreBackward)):
        compute = op.matmul_flops / hardware.attention_peak(datatype)
        core = op.forward if isinstance(op, AttentionCoreBackward) else op
        if core.q_len == 1:  # decode: streams the KV cache
            bandwidth = hardware.attention_hbm_bandwidth
    else:
        compute = op.matmul_flops / peak
    compute = compute + op.vector_flops / hardware.vector_flops
    n = kernels(op)
    launch = 0 if hardware.runtime.cuda_graphs else n * hardware.launch_time
    return OpTime(compute, op.hbm_bytes / bandwidth, n * hardware.kernel_time, sp.sympify(launch))


def collective_steps(kind: str, n: Any) -> sp.Expr:
    """Latency-bound steps of one ring collective over ``n`` chips."""
    n = as_expr(n, "group_size")
    if kind == "all_reduce":
        return 2 * (n - 1)
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return n - 1
    return sp.Integer(1)


def collective_time(c: Collective, hardware: Hardware) -> sp.Expr:
    """Seconds of all ``c.count`` calls: ``count * ((alpha_0 + t_coll) * min(1, n - 1) + alpha *
    steps) + bytes_sent / (link bandwidth * eta_net)`` (a group of one costs nothing)."""
    count = as_expr(c.count, "count")
    steps = collective_steps(c.kind, c.group_size)
    sent = as_expr(c.bytes_sent_per_chip, "bytes_sent_per_chip")
    # a group of one sends nothing and waits for nothing: min(1, n - 1) switches the base off
    n = as_expr(c.group_size, "group_size")
    base = hardware.collective_base_latency + hardware.runtime.collective_overhead
    calls = sp.Min(1, n - 1) if base != 0 else 0
    latency = base * calls + hardware.collective_latency * steps
    return count * latency + sent / hardware.link_bandwidth(c.span)


@dataclass(frozen=True)
class Times:
    """A layer's time terms in seconds (``overhead``: the kernels' fixed costs)."""

    compute_time: sp.Expr
    memory_time: sp.Expr
    comm_time: sp.Expr
    latency: sp.Expr


def layer_times(ops: Iterable[tuple[Op, Any]], collectives: Iterable[Collective],
                hardware: Hardware, peak: sp.Expr, overlap: bool = False,
                datatype: Optional[DataType] = None) -> Times:
    """Sum the per-op times and collective times; ``latency`` adds communication unless
    ``overlap``."""
    terms = [(op_time(op, hardware, peak, datatype), n) for op, n in ops]
    compute = total(t.compute * n for t, n in terms)
    memory = total(t.memory * n for t, n in terms)
    ops_time = total(t.time * n for t, n in terms)
    comm = total(collective_time(c, hardware) for c in collectives)
    if overlap:
        latency = sp.Max(ops_time, comm, evaluate=bool(ops_time.is_number and comm.is_number))
    else:
        latency = ops_time + comm
    return Times(compute, memory, comm, latency)
