"""The time model: a roofline per op, α–β collectives, summed (docs/conventions.md §13–§14).

Per op: compute ``matmul_flops / (peak * matmul_efficiency) + vector_flops / vector_flops``,
memory ``hbm_bytes / (hbm_bandwidth * memory_efficiency)``, time ``max(compute, memory)``.
A layer's time is the sum over its ops (not a roofline of the sum). Per collective call:
``α * steps + bytes_sent / link_bandwidth`` with ring steps (all-reduce ``2(n-1)``, all-gather,
reduce-scatter and all-to-all ``n-1``, p2p 1) on the scale-up link when the group's chips fit
in one scale-up domain, else on the scale-out link.

Communication adds to the compute time unless ``overlap=True``, where the layer takes
``max(op time, comm time)``.

>>> from symcost.ops import Collective
>>> from symcost import hardware
>>> c = Collective("all_reduce", "tp", 8, 10**9)          # 1 GB over 8 H100s (NVLink)
>>> t = collective_time(c, hardware.H100_SXM)              # 14 steps * 1 us + 1.75 GB / 450 GB/s
>>> t == sp.Rational(14, 10**6) + sp.Rational(7 * 10**9 // 4, 450 * 10**9)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import sympy as sp

from ._expr import as_expr, total
from .hardware import Hardware
from .ops import Collective, Op

__all__ = ["OpTime", "op_time", "collective_steps", "collective_time", "Times", "layer_times"]


@dataclass(frozen=True)
class OpTime:
    """One op's roofline terms in seconds."""

    compute: sp.Expr
    memory: sp.Expr

    @property
    def time(self) -> sp.Expr:
        """``max(compute, memory)``: the op waits for the slower of its units.

        NB: with symbols the ``Max`` is left unevaluated: SymPy's search for a provable order
        between two rational functions costs milliseconds per op and rarely succeeds; it
        evaluates as soon as numbers are substituted.
        """
        if self.compute.is_number and self.memory.is_number:
            return sp.Max(self.compute, self.memory)
        return sp.Max(self.compute, self.memory, evaluate=False)


def op_time(op: Op, hardware: Hardware, peak: sp.Expr) -> OpTime:
    """Roofline terms of ``op`` on ``hardware`` with matmul FLOP/s ``peak`` (efficiency applied)."""
    compute = op.matmul_flops / peak + op.vector_flops / hardware.vector_flops
    memory = op.hbm_bytes / hardware.effective_hbm_bandwidth
    return OpTime(compute, memory)


def collective_steps(kind: str, n: Any) -> sp.Expr:
    """Latency-bound steps of one ring collective over ``n`` chips."""
    n = as_expr(n, "group_size")
    if kind == "all_reduce":
        return 2 * (n - 1)
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return n - 1
    return sp.Integer(1)


def collective_time(c: Collective, hardware: Hardware) -> sp.Expr:
    """Seconds of all ``c.count`` calls: ``count * (α * steps) + bytes_sent / link bandwidth``."""
    count = as_expr(c.count, "count")
    steps = collective_steps(c.kind, c.group_size)
    sent = as_expr(c.bytes_sent_per_chip, "bytes_sent_per_chip")
    return count * hardware.collective_latency * steps + sent / hardware.link_bandwidth(c.span)


@dataclass(frozen=True)
class Times:
    """A layer's time terms in seconds."""

    compute_time: sp.Expr
    memory_time: sp.Expr
    comm_time: sp.Expr
    latency: sp.Expr


def layer_times(ops: Iterable[tuple[Op, Any]], collectives: Iterable[Collective],
                hardware: Hardware, peak: sp.Expr, overlap: bool = False) -> Times:
    """Sum the per-op rooflines and collective times; ``latency`` adds communication unless
    ``overlap``."""
    terms = [(op_time(op, hardware, peak), n) for op, n in ops]
    compute = total(t.compute * n for t, n in terms)
    memory = total(t.memory * n for t, n in terms)
    roofline = total(t.time * n for t, n in terms)
    comm = total(collective_time(c, hardware) for c in collectives)
    latency = sp.Max(roofline, comm) if overlap else roofline + comm
    return Times(compute, memory, comm, latency)
