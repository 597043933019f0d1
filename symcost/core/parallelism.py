"""Parallelism: the degrees a layer is split by, with their validation.

Semantics (``../shared/DESIGN.md``):

- ``tensor_parallel`` *t*: Megatron-LM column/row sharding; heads and FFN width split *t* ways.
  KV heads fewer than *t* are replicated, one whole KV head per chip.
- ``sequence_parallel``: an integer is an independent (DeepSpeed-Ulysses) axis splitting the
  tokens; attention switches between sequence and head sharding with all-to-alls, and a replica
  spans ``t * sp`` chips. The string ``"tp"`` is Megatron-LM sequence parallelism over the TP
  group: no extra chips, each TP all-reduce becomes an all-gather plus a reduce-scatter, and
  norm/dropout activations shrink by *t*.
- ``context_parallel`` *cp* (Megatron-LM context parallelism): every activation of every layer
  holds ``s/cp`` tokens per chip (the sequence cut into ``2 cp`` chunks, chip i keeping chunks i
  and ``2cp - 1 - i``, so causal attention is load-balanced); attention exchanges K and V around
  the CP ring (``cp_comm_type="p2p"``, ``cp - 1`` sends of each chip's KV chunk) or all-gathers
  them (``"all_gather"``). A replica spans ``t * sp * cp`` chips; CP ranks hold the same weights,
  so the data-parallel gradient reduction spans ``dp * cp`` ranks. (Megatron's ``"a2a"`` is
  the Ulysses ``sequence_parallel`` degree above.)
- ``pipeline_parallel``, ``expert_parallel``, ``data_parallel``: recorded here; they change no
  per-layer metric of a dense layer (models use them).
- ``expert_tensor_parallel`` (Megatron-Core's ``expert_tensor_parallel_size``): the degree that
  splits each routed expert's width, ``None`` meaning ``tensor_parallel`` (Megatron's default).
  Given, the MoE layer runs on Megatron's expert grid: ETP x EP x expert-DP laid over the
  TP x CP x DP ranks of a pipeline stage, so TP 2 x EP 32 x DP 16 with ETP 1 is a layout
  (:class:`~symcost.layers.moe.MoELayer`).

>>> from symcost import Parallelism
>>> p = Parallelism(tensor_parallel=2, sequence_parallel=4)
>>> p.tp, p.sp, p.megatron_sp, p.chips_per_replica
(2, 4, False, 8)
>>> Parallelism(tensor_parallel=2, context_parallel=4).chips_per_replica
8
>>> Parallelism(tensor_parallel=8, sequence_parallel="tp").sp
1
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import sympy
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from ..errors import ConfigError
from ._expr import dim

__all__ = ["Parallelism", "ParallelismLike", "Degree"]


def _degree(value: Any, info: ValidationInfo) -> sympy.Expr:
    if isinstance(value, bool):
        hint = ""
        if info.field_name == "sequence_parallel":
            hint = ' (use "tp" for Megatron sequence parallelism)'
        raise ConfigError(f"{info.field_name} must be a positive integer degree, got {value}{hint}")
    return dim(value, str(info.field_name))


def _sequence_degree(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        if value == "tp":
            return value
        raise ConfigError(
            f'sequence_parallel must be a positive integer degree or "tp" (Megatron sequence '
            f"parallelism over the TP group), got {value!r}"
        )
    return _degree(value, info)


def _cp_comm_type(value: Any) -> str:
    if value in ("p2p", "all_gather"):
        return value
    hint = ' (Megatron\'s "a2a" is Ulysses: use sequence_parallel)' if value in ("a2a", "a2a+p2p") else ""
    raise ConfigError(f'cp_comm_type must be "p2p" or "all_gather", got {value!r}{hint}')


Degree = Annotated[Any, BeforeValidator(_degree)]


def _optional_degree(value: Any, info: ValidationInfo) -> Any:
    return None if value is None else _degree(value, info)


class Parallelism(BaseModel):
    """How one layer replica is split across chips; every degree is an int or an expression.

    Unknown keys, zero, negative or fractional degrees are refused with an error naming the field.
    """

    # NB: defer_build: pydantic builds a class's validator on its first instance, so a command
    # that costs no MLA, MoE or Mamba layer builds none of theirs (issue 23: start-up)
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, defer_build=True)

    tensor_parallel: Degree = sympy.Integer(1)
    sequence_parallel: Annotated[Union[Literal["tp"], Any], BeforeValidator(_sequence_degree)] = sympy.Integer(1)
    context_parallel: Degree = sympy.Integer(1)
    cp_comm_type: Annotated[Literal["p2p", "all_gather"], BeforeValidator(_cp_comm_type)] = "p2p"
    """How attention gets the other CP ranks' K and V: around a ring (``"p2p"``, Megatron's
    default) or in one all-gather (``"all_gather"``)."""
    pipeline_parallel: Degree = sympy.Integer(1)
    expert_parallel: Degree = sympy.Integer(1)
    data_parallel: Degree = sympy.Integer(1)
    expert_tensor_parallel: Annotated[Any, BeforeValidator(_optional_degree)] = None
    """Megatron-Core's ``expert_tensor_parallel_size``: the degree splitting each routed expert's
    width; ``None``: ``tensor_parallel``, with the MoE layer's default token flow (see
    :class:`~symcost.layers.moe.MoELayer`)."""

    @property
    def tp(self) -> sympy.Expr:
        """Tensor-parallel degree *t*."""
        return self.tensor_parallel

    @property
    def etp(self) -> sympy.Expr:
        """Expert tensor-parallel degree: ``expert_tensor_parallel``, else *t*.

        >>> Parallelism(tensor_parallel=2).etp, Parallelism(tensor_parallel=2, expert_tensor_parallel=1).etp
        (2, 1)
        """
        return self.tensor_parallel if self.expert_tensor_parallel is None else self.expert_tensor_parallel

    @property
    def expert_grid(self) -> bool:
        """The routed experts run on Megatron-Core's expert grid: ``expert_tensor_parallel`` is given."""
        return self.expert_tensor_parallel is not None

    @property
    def megatron_sp(self) -> bool:
        """True for Megatron-LM sequence parallelism over the TP group (``"tp"``)."""
        return isinstance(self.sequence_parallel, str)

    @property
    def sp(self) -> sympy.Expr:
        """The independent (Ulysses) sequence degree; 1 under Megatron sequence parallelism."""
        return sympy.Integer(1) if self.megatron_sp else self.sequence_parallel

    @property
    def cp(self) -> sympy.Expr:
        """Context-parallel degree (Megatron CP / ring attention)."""
        return self.context_parallel

    @property
    def pp(self) -> sympy.Expr:
        """Pipeline-parallel degree."""
        return self.pipeline_parallel

    @property
    def ep(self) -> sympy.Expr:
        """Expert-parallel degree."""
        return self.expert_parallel

    @property
    def dp(self) -> sympy.Expr:
        """Data-parallel degree."""
        return self.data_parallel

    @property
    def chips_per_replica(self) -> sympy.Expr:
        """Chips that hold one copy of a dense layer: ``t * sp * cp``."""
        return self.tp * self.sp * self.cp

    @property
    def seq_multiple(self) -> sympy.Expr:
        """What a prefill's ``seq_len`` must be a multiple of: the tokens' split, ``sp`` (``t``
        under Megatron sequence parallelism), times ``2 * cp`` with context parallelism (the
        load-balanced chunks, each split that way; docs/conventions.md §3b).

        >>> Parallelism(tensor_parallel=8, sequence_parallel="tp", context_parallel=4).seq_multiple
        64
        """
        split = self.tp if self.megatron_sp else self.sp
        return split if self.cp == 1 else 2 * self.cp * split

    @property
    def sequence_shards(self) -> sympy.Expr:
        """Ways the tokens of a sequence are split outside attention: ``sp * cp``."""
        return self.sp * self.cp

    @classmethod
    def coerce(cls, value: "ParallelismLike") -> "Parallelism":
        """A ``Parallelism`` from itself, a dict with its keys, or ``None`` (no parallelism)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ConfigError(
            f"parallelism must be a Parallelism or a dict of degrees, got {type(value).__name__}"
        )


ParallelismLike = Union[Parallelism, dict, None]
