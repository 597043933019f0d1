"""What a serving engine is asked to do: a request mix (prompt and output lengths, a few weighted
points), and exact numbers for the serving options (rates, fractions, targets)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

import sympy as sp

from ...core._expr import as_expr
from ...errors import ConfigError

__all__ = ["Workload", "exact_number"]


def exact_number(value: Any, field: str, *, zero: bool = False) -> sp.Expr:
    """``value`` as an exact positive number (``zero``: or 0); a float by its decimal digits
    (``0.9`` is 9/10), as the command line writes it; anything else is one line naming ``field``.

    >>> exact_number(0.9, "memory_fraction")
    9/10
    """
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{field} must be a finite number, got {value}")
        value = Fraction(repr(value))
    x = as_expr(value, field)
    if not x.is_number or not (x >= 0 if zero else x > 0):
        raise ConfigError(f"{field} must be a {'non-negative' if zero else 'positive'} number, got {x}")
    return x


def _length(value: Any, field: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, sp.Integer)):
        raise ConfigError(f"{field} must be a whole number of tokens, got {value!r}")
    if int(value) < least:
        raise ConfigError(f"{field} must be at least {least}, got {value}")
    return int(value)


@dataclass(frozen=True)
class Workload:
    """A request mix: ``points`` of ``(isl, osl, weight)``, prompt tokens, output tokens (the first
    from the prefill) and the share of requests, the weights exact and summing to 1. Build one
    with :meth:`of` (one length pair) or :meth:`mix` (weights normalized).

    Means over requests: :attr:`prompt_len` ``I``, :attr:`output_len` ``O``; over the decode
    tokens: :meth:`decode_context`, the keys a decode step attends to on average.

    >>> w = Workload.mix([(1000, 100, 3), (3000, 300, 1)])
    >>> w.prompt_len, w.output_len
    (1500, 150)
    """

    points: tuple[tuple[int, int, sp.Rational], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("workload: needs at least one (isl, osl, weight) point")
        for isl, osl, weight in self.points:
            _length(isl, "isl", 2)  # a mixed step carries (isl - 1)-token prompts beside decode tokens
            _length(osl, "osl", 2)  # the prefill emits the first token; at least one decode step
            if not (isinstance(weight, sp.Rational) and weight > 0):
                raise ConfigError(f"workload: weights must be positive exact numbers, got {weight!r}")
        if sp.Add(*(w for _, _, w in self.points)) != 1:
            raise ConfigError("workload: the weights must sum to 1 (Workload.mix normalizes them)")

    @classmethod
    def of(cls, isl: int, osl: int) -> "Workload":
        """Every request ``isl`` prompt tokens and ``osl`` output tokens."""
        return cls(((_length(isl, "isl", 2), _length(osl, "osl", 2), sp.Integer(1)),))

    @classmethod
    def mix(cls, points: Sequence[tuple[int, int, Any]]) -> "Workload":
        """``(isl, osl, weight)`` points, weights in any exact positive units (normalized here)."""
        if not points:
            raise ConfigError("workload: needs at least one (isl, osl, weight) point")
        weights = [exact_number(w, "weight") for *_, w in points]
        total = sp.Add(*weights)
        return cls(tuple((_length(i, "isl", 2), _length(o, "osl", 2), w / total)
                         for (i, o, _), w in zip(points, weights)))

    @property
    def prompt_len(self) -> sp.Expr:
        """``I``: prompt tokens per request, the mean over requests."""
        return sp.Add(*(w * i for i, _, w in self.points))

    @property
    def output_len(self) -> sp.Expr:
        """``O``: output tokens per request, the mean over requests."""
        return sp.Add(*(w * o for _, o, w in self.points))

    def decode_steps(self, runtime: Any) -> sp.Expr:
        """``D``: decode steps per request, the mean (``osl - 1`` when the engine's prefill emits the
        first token: :meth:`~symcost.hardware.runtime.Runtime.decode_steps`)."""
        return sp.Add(*(w * runtime.decode_steps(o) for _, o, w in self.points))

    def decode_context(self, runtime: Any) -> sp.Expr:
        """``K``: the keys a decode step attends to, the mean over every decode token: a request of
        ``I`` prompt tokens attends to ``I + j`` keys at its ``j``-th decode step (the cache with
        the new token), ``j = 1 .. D``, so ``I + (D + 1)/2`` on average, weighted by ``D``.

        >>> from symcost.hardware import runtime
        >>> Workload.of(1000, 101).decode_context(runtime("vllm"))      # 100 steps: 1001 ... 1100
        2101/2
        """
        tokens = [(w * runtime.decode_steps(o), i + sp.Rational(runtime.decode_steps(o) + 1, 2))
                  for i, o, w in self.points]
        return sp.Add(*(n * k for n, k in tokens)) / sp.Add(*(n for n, _ in tokens))

    def final_contexts(self, runtime: Any) -> tuple[tuple[int, sp.Rational], ...]:
        """``(keys, weight)`` of each point's last decode step: the KV cache a request holds at its
        end, ``isl + D`` tokens."""
        return tuple((i + int(runtime.decode_steps(o)), w) for i, o, w in self.points)

    def held_tokens(self, runtime: Any, block: int) -> sp.Expr:
        """The tokens' worth of KV blocks of ``block`` tokens a running request holds on average where
        the engine allocates them on demand (``kv_allocation = "on_demand"``): at its ``j``-th decode
        step ``ceil((I + j)/B) B``, ``j = 1 .. D``, the mean over its decode steps, each point weighted
        by ``weight x D`` (the share of the running requests it makes up). With ``S(n) = sum(ceil(k/B)
        for k in 1 .. n) = B q (q + 1)/2 + r (q + 1)``, ``q, r = divmod(n, B)``, a point's steps hold
        ``B (S(I + D) - S(I))`` token-steps; at ``B = 1`` the mean is :meth:`decode_context`.

        >>> from symcost.hardware import runtime
        >>> Workload.of(1000, 101).held_tokens(runtime("vllm"), 1)      # 100 steps: 1001 ... 1100
        2101/2
        >>> Workload.of(30, 5).held_tokens(runtime("vllm"), 16)         # 31 .. 34: 32, 32, 48, 48
        40
        """
        if isinstance(block, bool) or not isinstance(block, (int, sp.Integer)) or block <= 0:
            raise ConfigError(f"block must be a positive whole number (tokens per KV block), got {block!r}")
        block = int(block)

        def blocks(n: int) -> int:
            q, r = divmod(n, block)
            return block * q * (q + 1) // 2 + r * (q + 1)

        steps = [(w, i, int(runtime.decode_steps(o))) for i, o, w in self.points]
        held = sp.Add(*(w * block * (blocks(i + d) - blocks(i)) for w, i, d in steps))
        return held / sp.Add(*(w * d for w, _, d in steps))

    def label(self) -> str:
        """``"ISL 4000 / OSL 500"`` (or the points of a mix with their weights)."""
        if len(self.points) == 1:
            isl, osl, _ = self.points[0]
            return f"ISL {isl} / OSL {osl}"
        return ", ".join(f"{isl}/{osl} x {w}" for isl, osl, w in self.points)
