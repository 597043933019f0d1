"""LayerMetrics: a layer's per-chip costs as exact numbers or SymPy expressions.

Metrics compose: ``a + b`` is a block that runs ``a`` then ``b``; ``m * L`` repeats a block ``L``
times (``L`` an integer or a symbol), in O(1) however deep. FLOPs, traffic, weights, KV cache and
communication add. Activations combine by their nature (docs/conventions.md §7 and §8): saved
activations in training add; inference activations are a transient peak and combine by ``max``,
and repeating a block does not raise its peak.

>>> from symcost import MLPLayer
>>> m = MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16")
>>> m.matmul_flops_per_chip                      # 2 matmuls of 2 * 2048 * 4096 * 16384
549755813888
>>> (m * 32).matmul_flops_per_chip == 32 * m.matmul_flops_per_chip
True
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, cast

import sympy as sp

from ..errors import ConfigError, HardwareError, UnboundSymbolError
from . import display
from . import symbols as sym
from ._expr import Value, as_expr, exact_value, total
from .assumptions import Assumption, check_all, merge
from .binding import Chip, time_model
from .dtypes import DataType, wire_format
from .notation import aligned
from .ops import Collective, Op, merge_collectives, substitute_collectives
from .phase import Phase

__all__ = ["LayerMetrics", "METRIC_FIELDS"]

METRIC_FIELDS = (
    "flops_per_chip",
    "matmul_flops_per_chip",
    "hbm_bytes_per_chip",
    "weight_memory_per_chip",
    "activation_memory_per_chip",
    "kv_cache_memory_per_chip",
    "comm_bytes_per_chip",
    "compute_time",
    "memory_time",
    "comm_time",
    "latency",
)
"""The expression-valued fields of :class:`LayerMetrics`, in display order."""

_HARDWARE_SYMBOLS = {sym.peak_flops, sym.vector_flops, sym.hbm_capacity, sym.hbm_bandwidth,
                     sym.scale_up_bandwidth, sym.scale_up_domain, sym.scale_out_bandwidth,
                     sym.collective_latency, sym.scale_out_latency} | set()
_MODEL_SYMBOLS = {sym.compute_units, sym.matmul_efficiency, sym.matmul_efficiency_8bit,
                  sym.memory_efficiency, sym.attention_memory_efficiency, sym.attention_efficiency,
                  sym.network_efficiency, sym.kernel_time, sym.launch_time, sym.collective_base_latency,
                  sym.step_overhead, sym.collective_overhead, sym.moe_sync_time, sym.a2a_overlap_efficiency,
                  sym.tp_overlap_efficiency,
                  sym.tree_latency, sym.tree_efficiency, sym.nvls_latency, sym.nvls_efficiency,
                  sym.nvls_arch_efficiency}
"""The efficiency model's symbols (the realistic symbolic chip, docs/conventions.md §17)."""
_HARDWARE_SYMBOLS |= _MODEL_SYMBOLS | {sym.peak_flops_16bit}

BOUNDS = {"compute_time": "compute", "memory_time": "memory", "comm_time": "communication"}


def _peak(a: Value, b: Value) -> Value:
    if isinstance(a, sp.Basic) or isinstance(b, sp.Basic):
        return exact_value(sp.Max(a, b))
    return max(a, b)


def _exact_all(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: exact_value(sp.sympify(v)) if not isinstance(v, int) else v for k, v in values.items()}


def _merge_ops(ops: Iterable[tuple[Op, Any]]) -> tuple[tuple[Op, Any], ...]:
    merged: dict[Op, Any] = {}
    for op, mult in ops:
        merged[op] = merged[op] + mult if op in merged else mult
    return tuple(merged.items())


class _Deferred:
    """A value built on first read: :attr:`LayerMetrics.roofline` (see :class:`_DeferredField`)
    and :attr:`LayerMetrics.op_source`. ``deps`` are the metrics whose own deferred value of the
    same slot ``build`` reads (a sum's operands), built first by :func:`_settle`."""

    __slots__ = ("build", "deps")

    def __init__(self, build: Callable[[], Any], deps: tuple = ()):
        self.build, self.deps = build, deps


def _later(build: Callable[[], Any], *deps: Any) -> Any:
    """``build()`` as the value of a deferred slot, built on first read after ``deps``' (typed
    ``Any``: readers of the field get what ``build`` returns)."""
    return _Deferred(build, tuple(d for d in deps if isinstance(d, LayerMetrics)))


def _settle(obj: Any, slot: str) -> Any:
    """Build ``obj``'s deferred ``slot``, the deferred slots it reads first, with a stack instead
    of recursion: a sum of 1,000 metrics nests 1,000 deferred values."""
    stack = [obj]
    while stack:
        top = stack[-1]
        pending = top.__dict__[slot]
        if type(pending) is not _Deferred:
            stack.pop()
            continue
        waiting = [d for d in pending.deps if type(d.__dict__[slot]) is _Deferred]
        if waiting:
            stack.extend(waiting)
            continue
        value = pending.build()
        top.__dict__[slot] = tuple(value) if slot == "op_source" else value
        stack.pop()
    return obj.__dict__[slot]


class _DeferredField:
    """The descriptor of a dataclass field that also takes a :class:`_Deferred`: built on first
    read and kept, so that equality, hashing and every reader see the built value."""

    def __init__(self, name: str):
        self.slot = f"_{name}_value"

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return None
        value = obj.__dict__[self.slot]
        if type(value) is _Deferred:
            value = _settle(obj, self.slot)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


def _ideal_terms(model: Any, compute: tuple[tuple[Op, Any], ...], collectives: tuple[Collective, ...],
                 hardware: Chip, peak_flops: sp.Expr, overlap: bool,
                 datatype: DataType | None) -> Optional[tuple[Value, ...]]:
    """:attr:`LayerMetrics.roofline` of :meth:`LayerMetrics.from_ops`, by the time model that
    timed the layer (the one registered when the metrics were built, not when this is read)."""
    rt = model.roofline_times(compute, collectives, hardware, peak_flops, overlap, datatype)
    return None if rt is None else tuple(exact_value(sp.sympify(v)) for v in (rt.compute_time, rt.memory_time,
                                                                        rt.comm_time))


def _same_structure(a: tuple[tuple[str, Any], ...], b: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """The chip structure of a sum: its operands' (one may be a numeric chip's, empty); operands
    timed on symbolic chips of other structures are refused."""
    if a and b and a != b:
        raise ConfigError(f"cannot add metrics timed on symbolic chips of other settings ({dict(a)} and {dict(b)})")
    return a or b


def _bind_formats(collectives: tuple[Collective, ...], dtype: DataType,
                  structure: tuple[tuple[str, Any], ...]) -> tuple[Collective, ...]:
    """``collectives`` (the shape's values already substituted) with the model's activations
    (:attr:`~symcost.core.ops.Collective.model_format`) given ``dtype``'s wire format where they had
    none (metrics computed with the dtype a symbol). Timed on a symbolic chip under vLLM's switch
    (structure ``symm_allreduce``: symmetric memory's windows ``(n, lo, hi)``), such an all-reduce
    took symmetric memory's time where ``e <= 2`` (that kernel takes bf16 only; fp32, e = 4, runs
    NCCL there): fp16, as wide as bf16, is refused in one line where the window may hold a TP
    all-reduce (vLLM's engine forms run on the TP group only; its group or payload a symbol, or
    ``lo <= M <= hi``), not given bf16's time."""
    fmt = wire_format(dtype)
    windows = dict(structure).get("symm_allreduce") or ()
    if fmt is DataType.FP16 and any(c.model_format and c.element_format is None and c.kind == "all_reduce"
                                    and c.axis == "tp" and _in_window(c, windows) for c in collectives):
        raise ConfigError(f"subs: dtype {dtype.value}: these metrics were timed on a symbolic chip under vLLM's "
                          "all-reduce switch with the format unknown, read as bf16 (its symmetric-memory "
                          f"all-reduce takes bf16 only); compute them with dtype={dtype.value!r} instead")
    return tuple(dataclasses.replace(c, element_format=fmt) if c.model_format and c.element_format is None else c
                 for c in collectives)


def _in_window(c: Collective, windows: tuple[tuple[int, int, int], ...]) -> bool:
    """Whether ``c`` may fall in one of vLLM's symmetric-memory windows ``(n, lo, hi)``: yes where
    its group size or payload is still a symbol."""
    n, payload = sp.sympify(c.group_size), sp.sympify(c.payload_bytes)
    if not (n.is_Number and payload.is_Number):
        return bool(windows)
    return any(n == k and lo <= payload <= hi for k, lo, hi in windows)


def _check_structure(structure: tuple[tuple[str, Any], ...], chip: Chip) -> None:
    """Refuse to bind ``chip`` to metrics timed on a symbolic chip whose non-symbol settings (GEMM
    tiles, tile scheduler, grouped-GEMM mode, compute capability) differ from its own, or a
    realistic one without the compute capability the bound chip's structure has, or with one the
    bound chip's structure lacks: the expressions would keep the symbolic chip's structure under the
    bound chip's rates."""
    bound = chip.structure
    for name, value in structure:
        if name in bound and bound[name] != value:
            raise HardwareError(
                f"subs: {name}: the symbolic chip has {value!r}, the bound chip {chip.name} has {bound[name]!r}; "
                f"build it with Hardware.symbolic(realistic=True, {name}={bound[name]!r})")
    # (and a capability the symbolic chip's structure has, the bound chip's not: NCCL's ring rule)
    own = dict(structure).get("compute_capability")
    if own is not None and "compute_capability" not in bound:
        raise HardwareError(f"subs: compute_capability: the symbolic chip has {own!r}, the bound chip {chip.name} "
                            f"has none in its structure; build it with Hardware.symbolic(realistic=True, "
                            f"**chip.structure)")
    # NB: a setting the bound chip has and the (realistic) symbolic one lacks shapes the bound chip's
    # expressions too (a 10.x compute capability: the prefill's overlap and whole tiles)
    if structure and "compute_capability" in bound and "compute_capability" not in dict(structure):
        raise HardwareError(
            f"subs: compute_capability: the symbolic chip has none, the bound chip {chip.name} has "
            f"{bound['compute_capability']!r}; build it with Hardware.symbolic(realistic=True, "
            f"compute_capability={bound['compute_capability']!r})")


@dataclass(frozen=True)
class LayerMetrics:
    """Per-chip costs of one layer, a block or a model, for one phase.

    Fields (bytes and FLOPs, per chip): ``flops_per_chip`` (matmul + vector),
    ``matmul_flops_per_chip``, ``hbm_bytes_per_chip`` (traffic), ``weight_memory_per_chip``,
    ``activation_memory_per_chip`` (saved for backward in training; the transient peak in
    inference), ``kv_cache_memory_per_chip``, ``comm_bytes_per_chip`` (bytes sent) and
    ``collectives``; ``ops`` lists each op with its multiplicity.

    ``assumptions`` lists the divisibility rules symbols left undecided (e.g. "num_heads must be
    divisible by tensor_parallel" for a symbolic ``t``); :meth:`subs`, :meth:`evaluate` and
    :meth:`lambdify` check them and raise :class:`~symcost.core.assumptions.AssumptionError` (a
    ``ValueError``) when a value breaks one. They are empty when every input is a number.
    """

    phase: Phase
    flops_per_chip: Value
    matmul_flops_per_chip: Value
    hbm_bytes_per_chip: Value
    weight_memory_per_chip: Value
    activation_memory_per_chip: Value
    kv_cache_memory_per_chip: Value
    comm_bytes_per_chip: Value
    compute_time: Value = 0
    memory_time: Value = 0
    comm_time: Value = 0
    latency: Value = 0
    collectives: tuple[Collective, ...] = ()
    peak_flops: Value = dataclasses.field(default=sym.peak_flops, repr=False)
    op_source: Any = dataclasses.field(default=(), repr=False, compare=False)
    """The ops as ``(op, multiplicity)`` pairs, or what produces them on first read (a function,
    or a deferred value of a sum's or repeat's operands): read :attr:`ops`."""
    assumptions: tuple[Assumption, ...] = ()
    """Divisibility rules the expressions rely on (see :mod:`symcost.core.assumptions`)."""
    chip_structure: tuple[tuple[str, Any], ...] = dataclasses.field(default=(), repr=False, compare=False)
    """The non-symbol settings of the symbolic chip the times were built on (its
    :attr:`~symcost.core.binding.Chip.structure`: GEMM tiles, tile scheduler, ...); empty once a
    chip is bound or for a numeric chip. :meth:`subs` refuses a chip whose settings differ."""
    roofline: Optional[tuple[Value, ...]] = dataclasses.field(default=None, repr=False)
    """``(compute, memory, comm)`` times of the same ops on the ideal chip (the pure roofline,
    :meth:`~symcost.hardware.Hardware.ideal`), what :attr:`bound` compares; ``None`` when the
    metrics were timed on an ideal chip (the fields themselves are the roofline).

    NB: built on first read (from :meth:`from_ops`, sums, repeats and substitutions): only
    :attr:`bound` and reports need it, and the ideal chip's timing is a third of a symbolic
    layer's cost (the parallelism search never reads it)."""

    @classmethod
    def from_ops(
        cls,
        phase: Phase,
        ops: Sequence[Op | Collective],
        *,
        weight_memory: sp.Expr,
        activation_memory: sp.Expr,
        kv_cache_memory: sp.Expr,
        hardware: Chip,
        peak_flops: sp.Expr,
        overlap: bool = False,
        datatype: DataType | None = None,
        assumptions: Sequence[Assumption] = (),
    ) -> "LayerMetrics":
        """Aggregate a layer's ops (collectives among them) and its memory terms, and time them
        on ``hardware`` with matmul FLOP/s ``peak_flops``."""
        compute = _merge_ops((op, sp.Integer(1)) for op in ops if isinstance(op, Op))
        collectives = merge_collectives(c for c in ops if isinstance(c, Collective))
        matmul = total(op.matmul_flops * n for op, n in compute)
        vector = total(op.vector_flops * n for op, n in compute)
        model = time_model()
        times = model.layer_times(compute, collectives, hardware, peak_flops, overlap, datatype)
        # bound classifies by the pure roofline (docs/conventions.md §17), built when read
        roofline = _later(functools.partial(_ideal_terms, model, compute, collectives, hardware, peak_flops,
                                            overlap, datatype))
        fields = _exact_all({
            "flops_per_chip": matmul + vector,
            "matmul_flops_per_chip": matmul,
            "hbm_bytes_per_chip": total(op.hbm_bytes * n for op, n in compute),
            "weight_memory_per_chip": weight_memory,
            "activation_memory_per_chip": activation_memory,
            "kv_cache_memory_per_chip": kv_cache_memory,
            "comm_bytes_per_chip": total(c.bytes_sent_per_chip for c in collectives),
            "compute_time": times.compute_time,
            "memory_time": times.memory_time,
            "comm_time": times.comm_time,
            "latency": times.latency,
        })
        structure = tuple(hardware.structure.items()) if hardware.is_symbolic else ()
        return cls(phase=phase, collectives=collectives, op_source=compute,
                   peak_flops=exact_value(sp.sympify(peak_flops)), assumptions=tuple(assumptions),
                   roofline=roofline, chip_structure=structure, **fields)

    # -- derived -----------------------------------------------------------------------------

    @property
    def ops(self) -> tuple[tuple[Op, Any], ...]:
        """Every op with its multiplicity (computed on first use for compiled metrics)."""
        source = self.op_source
        if type(source) is _Deferred:
            return cast(tuple, _settle(self, "op_source"))
        if callable(source):
            source = tuple(source())
            object.__setattr__(self, "op_source", source)
        return source

    def __getstate__(self) -> dict[str, Any]:
        """The fields with every deferred value built (a deferred value holds a closure)."""
        _ = (self.ops, self.roofline)  # built on read
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _roofline_terms(self) -> tuple[Any, ...]:
        if self.roofline is not None:
            return self.roofline
        return (self.compute_time, self.memory_time, self.comm_time)

    @property
    def bound(self) -> str | None:
        """``"compute"``, ``"memory"`` or ``"communication"``: the largest of the compute,
        memory and communication times of the pure roofline (the ideal chip's, :attr:`roofline`;
        the fields themselves on an ideal chip), while ``latency`` stays the realistic chip's;
        ``None`` while SymPy cannot order them."""
        terms = dict(zip(BOUNDS, (sp.sympify(v) for v in self._roofline_terms())))
        if not all(v.is_number for v in terms.values()):
            return None
        return BOUNDS[max(terms, key=lambda name: terms[name])]

    @property
    def memory_per_chip(self) -> Value:
        """Bytes that must fit in HBM: weights + activations + KV cache."""
        return exact_value(sp.sympify(self.weight_memory_per_chip)
                     + sp.sympify(self.activation_memory_per_chip)
                     + sp.sympify(self.kv_cache_memory_per_chip))

    @property
    def arithmetic_intensity(self) -> Value:
        """FLOPs per byte of HBM traffic: ``flops_per_chip / hbm_bytes_per_chip``."""
        return exact_value(sp.sympify(self.flops_per_chip) / sp.sympify(self.hbm_bytes_per_chip))

    @property
    def achieved_flops(self) -> Value:
        """FLOP/s the chip sustains: ``flops_per_chip / latency``."""
        return exact_value(sp.sympify(self.flops_per_chip) / sp.sympify(self.latency))

    @property
    def flops_utilization(self) -> Value:
        """Matmul FLOP/s achieved as a fraction of the peak used for timing:
        ``matmul_flops_per_chip / (latency * peak_flops)`` (MFU for one layer)."""
        return exact_value(sp.sympify(self.matmul_flops_per_chip)
                     / (sp.sympify(self.latency) * sp.sympify(self.peak_flops)))

    def elasticity(self, field: str, x: sp.Symbol | str) -> sp.Expr:
        """``∂ ln y / ∂ ln x = (∂y/∂x) * x / y`` for the field ``y`` named ``field``.

        An elasticity of -1 means 1 % more of ``x`` gives 1 % less ``y``.

        >>> from symcost import NormLayer, hardware, symbols as S
        >>> m = NormLayer(hidden_size=4096).compute_metrics(batch_size=8, seq_len=4096,
        ...                                                  dtype="bf16")   # symbolic chip
        >>> m.elasticity("latency", S.hbm_bandwidth).xreplace(
        ...     hardware.H100_SXM.ideal().symbol_values("bf16"))          # memory-bound
        -1
        """
        if field not in METRIC_FIELDS:
            raise ConfigError(f"elasticity: unknown field {field!r}; valid: {', '.join(METRIC_FIELDS)}")
        symbol = _resolve_key(x)
        y = sp.sympify(getattr(self, field))
        return exact_value(sp.cancel(sp.diff(y, symbol) * symbol / y))

    # -- composition -------------------------------------------------------------------------

    def __add__(self, other: "LayerMetrics") -> "LayerMetrics":
        if isinstance(other, int) and other == 0:  # sum() starts from 0
            return self
        if not isinstance(other, LayerMetrics):
            return NotImplemented
        if other.phase is not self.phase:
            raise ConfigError(f"cannot add {self.phase} metrics to {other.phase} metrics")
        if other.peak_flops != self.peak_flops:
            raise ConfigError("cannot add metrics timed with different peak FLOP/s "
                             f"({self.peak_flops} and {other.peak_flops})")
        fields = {name: getattr(self, name) + getattr(other, name) for name in METRIC_FIELDS}
        if not self.phase.is_training:
            fields["activation_memory_per_chip"] = _peak(
                self.activation_memory_per_chip, other.activation_memory_per_chip)
        return LayerMetrics(
            phase=self.phase,
            chip_structure=_same_structure(self.chip_structure, other.chip_structure),
            collectives=merge_collectives(self.collectives + other.collectives),
            op_source=_later(lambda: _merge_ops(self.ops + other.ops), self, other),
            peak_flops=self.peak_flops,
            assumptions=merge(self.assumptions, other.assumptions),
            roofline=_later(lambda: None if self.roofline is None and other.roofline is None else tuple(
                exact_value(sp.sympify(a) + sp.sympify(b))
                for a, b in zip(self._roofline_terms(), other._roofline_terms())),
                self, other),
            **_exact_all(fields),
        )

    __radd__ = __add__

    def __mul__(self, times: Any) -> "LayerMetrics":
        """``times`` repetitions (an int or an expression, positive)."""
        n = as_expr(times, "repetitions")
        if n.is_positive is False or n.is_integer is False:
            raise ConfigError(f"repetitions must be a positive integer, got {n}")
        fields = {name: getattr(self, name) * n for name in METRIC_FIELDS}
        if not self.phase.is_training:
            fields["activation_memory_per_chip"] = self.activation_memory_per_chip
        return LayerMetrics(
            phase=self.phase,
            chip_structure=self.chip_structure,
            collectives=tuple(c.scaled(n) for c in self.collectives),
            op_source=_later(lambda: tuple((op, mult * n) for op, mult in self.ops), self),
            peak_flops=self.peak_flops,
            assumptions=self.assumptions,
            roofline=_later(lambda: None if self.roofline is None else tuple(
                exact_value(sp.sympify(v) * n) for v in self.roofline), self),
            **_exact_all(fields),
        )

    __rmul__ = __mul__

    # -- symbolic operations -----------------------------------------------------------------

    @property
    def free_symbols(self) -> set[sp.Symbol]:
        """Every symbol any field still depends on."""
        out: set[sp.Symbol] = set()
        for name in METRIC_FIELDS:
            value = getattr(self, name)
            if isinstance(value, sp.Basic):
                out |= value.free_symbols
        return out

    def _check_training_dtype(self, dtype: DataType, table: Mapping[Any, Any]) -> None:
        """Refuse to bind one symbolic ``e`` to a training format narrower than 2 bytes: FP8
        training keeps bf16 tensors and runs FP8 GEMMs (docs/conventions.md §16), two byte counts."""
        if not self.phase.is_training or dtype.bytes >= 2 or sym.dtype_bytes in table:
            return
        if any(sym.dtype_bytes in sp.sympify(getattr(self, f)).free_symbols for f in METRIC_FIELDS):
            raise ConfigError(f"subs: training in {dtype.value} keeps bf16 tensors and runs {dtype.value} GEMMs "
                              "(Transformer Engine's recipes): two byte counts, not one e; compute the metrics "
                              "with that dtype instead")

    def subs(self, mapping: Mapping[Any, Any] | None = None, *, hardware: Any = None,
             dtype: Any = None, **values: Any) -> "LayerMetrics":
        """Replace symbols by values (numbers or expressions), exactly, with ``xreplace``.

        Keys are symbols or the names of canonical symbols (``seq_len=4096``); values are ints,
        ``Fraction``s or SymPy expressions, never floats or strings. ``dtype`` binds the bytes
        per element ``e``; ``hardware`` (a :class:`~symcost.hardware.Hardware` or preset name)
        binds the symbolic chip's rates for that ``dtype``. Raises
        :class:`~symcost.core.assumptions.AssumptionError` when the values break one of
        :attr:`assumptions` (``tp=3`` for 32 heads); those the values settle are dropped.

        >>> from symcost import NormLayer, symbols as S
        >>> m = NormLayer(hidden_size=S.hidden_size).compute_metrics(batch_size=1, seq_len=1,
        ...                                                          phase="prefill", dtype="fp32")
        >>> m.weight_memory_per_chip                     # gamma and beta, 4 bytes each
        8*h
        >>> m.subs(hidden_size=4096).weight_memory_per_chip
        32768
        """
        table = _substitutions(mapping, values)
        if dtype is not None:
            self._check_training_dtype(DataType.parse(dtype), table)
            table.setdefault(sym.dtype_bytes, DataType.parse(dtype).bytes)
        collectives = substitute_collectives(self.collectives, table)
        if dtype is not None:
            collectives = _bind_formats(collectives, DataType.parse(dtype), self.chip_structure)
        if hardware is not None:
            if dtype is None:
                raise ConfigError("subs: binding hardware needs dtype= (it picks the peak FLOP/s)")
            chip = time_model().resolve(hardware)
            if not chip.is_ideal and self._timed_on_ideal_chip():
                raise ConfigError(
                    f"subs: these metrics were timed on the ideal symbolic chip; binding {chip.name} would drop "
                    f"its efficiency model: bind {chip.name}.ideal(), or compute them with "
                    "hardware=Hardware.symbolic(realistic=True)")
            # NB: grouped_output shapes the experts' grouped GEMMs only: other metrics bind either chip
            grouped = any(getattr(op, "grouped", False) for op, _ in self.ops)
            _check_structure(tuple((k, v) for k, v in self.chip_structure if grouped or k != "grouped_output"),
                             chip)
            for symbol, value in chip.symbol_values(dtype).items():
                table.setdefault(symbol, value)
            _check_backward_share(self, chip, table)
        assumptions = check_all(a.xreplace(table) for a in self.assumptions)
        fields = {}
        for name in METRIC_FIELDS:
            value = getattr(self, name)
            fields[name] = value.xreplace(table) if isinstance(value, sp.Basic) else value
        peak = self.peak_flops
        return LayerMetrics(
            phase=self.phase,
            chip_structure=() if hardware is not None else self.chip_structure,
            collectives=collectives,
            op_source=_later(lambda: _merge_ops((op.xreplace(table), sp.sympify(m).xreplace(table))
                                                for op, m in self.ops), self),
            peak_flops=exact_value(peak.xreplace(table)) if isinstance(peak, sp.Basic) else peak,
            assumptions=assumptions,
            roofline=_later(lambda: None if self.roofline is None else tuple(
                exact_value(v.xreplace(table)) if isinstance(v, sp.Basic) else v for v in self.roofline), self),
            **_exact_all(fields),
        )

    def _timed_on_ideal_chip(self) -> bool:
        """True when the times hold hardware symbols but none of the efficiency model's."""
        symbols: set[sp.Symbol] = set()
        for name in ("compute_time", "memory_time", "comm_time", "latency"):
            value = getattr(self, name)
            if isinstance(value, sp.Basic):
                symbols |= value.free_symbols
        return bool(symbols & _HARDWARE_SYMBOLS) and not symbols & _MODEL_SYMBOLS

    def evaluate(self, mapping: Mapping[Any, Any] | None = None, *, hardware: Any = None,
                 dtype: Any = None, **values: Any) -> "LayerMetrics":
        """:meth:`subs`, then insist that every field is an exact number.

        Raises :class:`~symcost.errors.UnboundSymbolError` naming the symbols left unbound.
        """
        result = self.subs(mapping, hardware=hardware, dtype=dtype, **values)
        left = result.free_symbols
        if left:
            names = ", ".join(sorted(sym.describe(s) for s in left))
            hint = ""
            if left & _HARDWARE_SYMBOLS:
                hint = " (pass hardware= and dtype= to bind the chip)"
            raise UnboundSymbolError(f"evaluate: unbound symbols remain: {names}{hint}")
        return result

    def diff(self, symbol: sp.Symbol | str) -> "LayerMetrics":
        """The derivative of every field with respect to ``symbol``.

        A derivative carries no per-collective or per-op records (``collectives`` and ``ops``
        are empty); ``comm_bytes_per_chip`` holds the derivative of the bytes sent.

        >>> from symcost import MLPLayer, symbols as S
        >>> m = MLPLayer(hidden_size=4, intermediate_size=16).compute_metrics(phase="prefill",
        ...                                                                   dtype="bf16")
        >>> m.diff(S.seq_len).matmul_flops_per_chip      # 2 matmuls of 2*b*s*4*16, per token
        256*b
        """
        x = _resolve_key(symbol)
        fields = {}
        for name in METRIC_FIELDS:
            value = getattr(self, name)
            fields[name] = sp.diff(value, x) if isinstance(value, sp.Basic) else 0
        return LayerMetrics(phase=self.phase, peak_flops=self.peak_flops, assumptions=self.assumptions,
                            chip_structure=self.chip_structure, **_exact_all(fields))

    def lambdify(self, fields: Sequence[str] = ("latency", "memory_per_chip")):
        """A compiled :class:`~symcost.core.sweep.Sweeper` of the named fields (or derived
        quantities such as ``memory_per_chip``) for NumPy sweeps in float64; a swept value that
        breaks one of :attr:`assumptions` raises.

        >>> import numpy as np
        >>> from symcost import NormLayer
        >>> f = NormLayer(hidden_size=4096).compute_metrics(dtype="bf16").lambdify(["flops_per_chip"])
        >>> f(batch_size=np.arange(1, 4), seq_len=1024).flops_per_chip   # 7 * b * 1024 * 4096
        array([29360128., 58720256., 88080384.])
        """
        from .sweep import Sweeper

        known = set(METRIC_FIELDS) | {"memory_per_chip", "arithmetic_intensity", "achieved_flops",
                                      "flops_utilization"}
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise ValueError(f"lambdify: unknown fields {unknown}; valid: {', '.join(sorted(known))}")
        return Sweeper({name: getattr(self, name) for name in fields}, assumptions=self.assumptions)

    def to_latex(self, fields: Sequence[str] = METRIC_FIELDS, notation: str = "megatron") -> str:
        """The fields as one LaTeX ``aligned`` block, as stored, canonical symbols named by
        ``notation`` (see :mod:`symcost.report.latex`, whose ``align`` also presents and breaks them).

        >>> from symcost import NormLayer
        >>> m = NormLayer(kind="rmsnorm").compute_metrics(phase="prefill", dtype="bf16")
        >>> print(m.to_latex(["weight_memory_per_chip"]))
        \\begin{aligned}
        M_{\\mathrm{weights}} &= 2 h
        \\end{aligned}
        >>> print(m.to_latex(["weight_memory_per_chip"], notation="scaling-book"))
        \\begin{aligned}
        M_{\\mathrm{weights}} &= 2 D
        \\end{aligned}
        """
        chosen = [fields] if isinstance(fields, str) else list(fields)
        unknown = [f for f in chosen if f not in METRIC_FIELDS]
        if unknown:
            raise ConfigError(f"to_latex: unknown fields {unknown}; valid: {', '.join(METRIC_FIELDS)}")
        return aligned([(f, getattr(self, f)) for f in chosen], notation)

    # NB: for people (symcost.core.display): readable formulas (expanded, common factor out,
    # collected), numbers with units; the fields and to_latex() stay as stored
    def _repr_latex_(self) -> str:
        return display.metrics_latex(self)

    def _repr_html_(self) -> str:
        return display.metrics_html(self)

    def __repr__(self) -> str:
        return display.metrics_repr(self)

    def __str__(self) -> str:
        return display.metrics_text(self)


# NB: installed after @dataclass, which reads the field's default (None) from the class
setattr(LayerMetrics, "roofline", _DeferredField("roofline"))  # noqa: B010 (the field keeps its declared type)


def _resolve_key(key: Any) -> sp.Symbol:
    if isinstance(key, sp.Symbol):
        return key
    if isinstance(key, str):
        return sym.lookup(key)
    raise ConfigError(f"substitution keys must be symbols or canonical names, got {key!r}")


def _substitutions(mapping: Mapping[Any, Any] | None, values: Mapping[str, Any]) -> dict:
    table = {}
    for key, value in list((mapping or {}).items()) + list(values.items()):
        symbol = _resolve_key(key)
        table[symbol] = as_expr(value, str(key))
    return table


def _check_backward_share(metrics: LayerMetrics, chip: Any, table: Mapping[Any, Any]) -> None:
    """Refuse binding a 10.x chip without ``attention_backward_peak_efficiency`` to metrics whose
    times hold ``eta_abpk`` (a flash backward on the symbolic chip), as the numeric chip refuses them
    (:func:`symcost.hardware.kernels.attention_backward`): no value stands in for the cited share."""
    if sym.attention_backward_peak_efficiency in table:
        return
    for name in METRIC_FIELDS:
        value = getattr(metrics, name)
        if isinstance(value, sp.Basic) and sym.attention_backward_peak_efficiency in value.free_symbols:
            raise ConfigError(f"{chip.name}: attention_backward_peak_efficiency must be set on a chip of "
                              f"compute capability {chip.compute_capability} (its flash backward's share "
                              "of the 16-bit peak; B200's is 263/500)")
