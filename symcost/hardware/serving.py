"""What a serving engine does with the chip's memory and its steps by default: the token budget per
step (``max_num_batched_tokens``), the share of HBM it fills and how that share is counted, and
the KV cache's block size. One :class:`ServingDefaults` per engine profile, read from the profile's
``serving`` entries (``symcost/hardware/engines/*.json``, a source beside each value).

The KV cache room of an engine on a chip of ``M`` bytes of HBM holding ``W`` bytes of weights and
``A`` bytes of activations (its largest step), by the engine's rule (:attr:`ServingDefaults.memory_rule`)
with the fraction ``phi``:

- ``"total"`` (vLLM's ``gpu_memory_utilization``): everything the engine allocates fits ``phi M``,
  room ``phi M - W - A``;
- ``"free"`` (TensorRT-LLM's ``free_gpu_memory_fraction``): the KV cache takes ``phi`` of what the
  weights and a profiled step leave, room ``phi (M - W - A)``;
- ``"static"`` (SGLang's ``mem_fraction_static``): weights and KV cache fit ``phi M``, the
  activations live in the rest, room ``phi M - W``.

Each room is the same bound on the total bytes ``W + A + KV <= phi M + extra``, ``extra`` 0,
``(1 - phi)(W + A)`` and ``A`` (:func:`memory_bound`).

``M`` is the chip's ``hbm_capacity``: the physical memory in binary units (80 GiB on an H100, the
presets' sources). The engines take their fraction of the total the device reports, which the
driver's own reserve makes a little smaller (nvidia-smi shows 81,559 of 81,920 MiB on an H100 SXM,
0.44 % less; CUDA's ``cudaMemGetInfo`` total, vLLM's, some 79.1-79.3 GiB), and each process's CUDA
context takes a few hundred MiB more; neither is subtracted here: the KV room is that much larger
than the engine's (about 0.4-0.9 GiB on 80 GiB).

An engine runs at most :attr:`ServingDefaults.max_num_seqs` requests at once (vLLM's
``max_num_seqs``, SGLang's ``max_running_requests``, TensorRT-LLM's ``max_batch_size``), whatever
room its KV cache leaves.

A paged KV cache (:attr:`ServingDefaults.kv_block_tokens` ``B``) holds a request of ``n`` tokens in
``ceil(n/B)`` blocks: ``ceil(n/B) B`` tokens' worth of bytes (:func:`paged_tokens`).

What a running request holds (:attr:`ServingDefaults.kv_allocation`): ``"reserved"``, the blocks of
its whole length from admission (TensorRT-LLM's default ``GUARANTEED_NO_EVICT`` capacity scheduler
admits a request only when the blocks it needs to completion are free, so a started request is never
evicted), or ``"on_demand"``, the blocks of its tokens so far (vLLM V1's scheduler allocates each
step's new tokens only and preempts the newest running request when none are free).

>>> paged_tokens(1000, 16), paged_tokens(1024, 16), paged_tokens(1000, 1)
(1008, 1024, 1000)
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Optional

import sympy as sp

from ..errors import HardwareError

__all__ = ["KV_ALLOCATIONS", "MEMORY_RULES", "ServingDefaults", "Tier", "memory_bound", "paged_tokens"]

MEMORY_RULES = ("total", "free", "static")
"""How an engine's memory fraction is counted (the module's docstring)."""

KV_ALLOCATIONS = ("reserved", "on_demand")
"""What a running request holds of the KV cache (the module's docstring)."""


def paged_tokens(tokens: Any, block: Any) -> Any:
    """``ceil(tokens/block) * block``: the tokens' worth of KV cache a request of ``tokens`` holds
    in blocks of ``block`` tokens."""
    return sp.ceiling(sp.Rational(tokens, 1) / block) * block if block != 1 else tokens


def memory_bound(rule: str, fraction: Any, hbm: Any, weights: Any, activations: Any) -> Any:
    """The bytes ``W + A + KV`` may reach on a chip of ``hbm`` bytes under ``rule`` and
    ``fraction`` (the module's docstring): ``phi M`` plus 0 (``total``), ``(1 - phi)(W + A)``
    (``free``) or ``A`` (``static``).

    >>> memory_bound("free", sp.Rational(9, 10), 100, 40, 10) - 40 - 10      # KV room 0.9 (100 - 50)
    45
    """
    base = fraction * hbm
    if rule == "total":
        return base
    if rule == "free":
        return base + (1 - fraction) * (weights + activations)
    if rule == "static":
        return base + activations
    raise HardwareError(f"memory_rule must be one of {', '.join(MEMORY_RULES)}, got {rule!r}")


@dataclass(frozen=True)
class Tier:
    """A value that holds on the chips it matches: HBM below ``hbm_below`` bytes, a name containing
    ``name_contains`` (case-insensitive), replicas of fewer than ``gpus_below`` chips; ``None``
    matches every chip. Of a list of tiers the first that matches applies."""

    value: Fraction
    hbm_below: Optional[Fraction] = None
    name_contains: Optional[str] = None
    gpus_below: Optional[int] = None

    def matches(self, name: str, hbm: Any, gpus: int) -> bool:
        """Whether this tier holds for a chip called ``name`` with ``hbm`` bytes in a replica of ``gpus``."""
        return ((self.hbm_below is None or hbm < self.hbm_below)
                and (self.name_contains is None or self.name_contains.lower() in name.lower())
                and (self.gpus_below is None or gpus < self.gpus_below))


def _pick(tiers: tuple[Tier, ...], name: str, hbm: Any, gpus: int) -> Optional[Fraction]:
    return next((t.value for t in tiers if t.matches(name, hbm, gpus)), None)


@dataclass(frozen=True)
class ServingDefaults:
    """An engine's serving defaults (the module's docstring): ``token_budget`` tiers (tokens per
    step), ``memory_fraction`` tiers (``phi``) or, for an engine that derives ``phi`` from a
    reserve, ``memory_reserve`` tiers (bytes) plus ``memory_reserve_per_gpu`` bytes per chip of the
    replica, ``phi = 1 - reserve/M`` rounded to ``memory_fraction_digits`` decimals;
    ``memory_rule``; ``kv_block_tokens``; ``max_num_seqs`` tiers (the most running requests);
    ``kv_allocation`` (what a running request holds of the KV cache, the module's docstring).

    >>> d = ServingDefaults(token_budget=(Tier(Fraction(2048), name_contains="a100"), Tier(Fraction(8192))))
    >>> d.budget("H100_SXM", 80 * 10**9, 1), d.budget("A100_SXM_80GB", 80 * 10**9, 1)
    (8192, 2048)
    """

    token_budget: tuple[Tier, ...] = ()
    memory_fraction: tuple[Tier, ...] = ()
    memory_reserve: tuple[Tier, ...] = ()
    memory_reserve_per_gpu: Fraction = Fraction(0)
    memory_fraction_digits: Optional[int] = None
    memory_rule: Literal["total", "free", "static"] = "total"
    kv_block_tokens: int = 1
    max_num_seqs: tuple[Tier, ...] = ()
    kv_allocation: Literal["reserved", "on_demand"] = "reserved"

    def __post_init__(self) -> None:
        # NB: a dataclass does not check its Literal fields: a misspelt rule would run as another
        for field, allowed in (("memory_rule", MEMORY_RULES), ("kv_allocation", KV_ALLOCATIONS)):
            if getattr(self, field) not in allowed:
                raise HardwareError(f"{field} must be one of {', '.join(allowed)}, got {getattr(self, field)!r}")

    def seqs(self, name: str, hbm: Any, gpus: int) -> Optional[int]:
        """The most requests the engine runs at once on a chip called ``name`` with ``hbm`` bytes
        (``None``: no cap but the KV cache's)."""
        value = _pick(self.max_num_seqs, name, hbm, gpus)
        return None if value is None else int(value)

    def budget(self, name: str, hbm: Any, gpus: int) -> Optional[int]:
        """Tokens per step on a chip called ``name`` with ``hbm`` bytes (``None``: no default here)."""
        value = _pick(self.token_budget, name, hbm, gpus)
        return None if value is None else int(value)

    def fraction(self, name: str, hbm: Any, gpus: int) -> Optional[sp.Expr]:
        """``phi`` on a chip called ``name`` with ``hbm`` bytes in a replica of ``gpus`` chips
        (``None``: no default here)."""
        value = _pick(self.memory_fraction, name, hbm, gpus)
        if value is not None:
            return sp.Rational(value)
        reserve = _pick(self.memory_reserve, name, hbm, gpus)
        if reserve is None:
            return None
        phi = 1 - (sp.Rational(reserve) + gpus * sp.Rational(self.memory_reserve_per_gpu)) / sp.Rational(hbm)
        if self.memory_fraction_digits is not None:  # Python's round() of a decimal: half to even
            scale = 10**self.memory_fraction_digits
            phi = sp.Rational(round(Fraction(int(phi.p), int(phi.q)) * scale), scale)
        return phi
