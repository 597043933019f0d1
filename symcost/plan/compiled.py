"""Compiled whole-model steps: one program per (model, chip, parallelism, dtype, options).

A step of one configuration is compiled once with the batch and sequence sizes free
(:class:`symcost.core.compiled.Program`): the same expressions as the symbolic step, evaluated
exactly (ints and Fractions) or in float64. The fullest stage is chosen in Python, as the numeric
step chooses it. The configuration is validated when its program is built (the symbolic step runs
then); a call checks only its sizes: an input that is not a positive int, or that breaks a
divisibility rule, takes the uncompiled path, which raises its own error. The programs are built
by :mod:`symcost.plan.inference` and :mod:`symcost.plan.training`; this module holds what both
share: the cache in front of them, the call and the results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, cast

import sympy as sp

from ..core.binding import on_register
from ..core.compiled import Program, normal
from ..core.parallelism import Parallelism
from ..errors import ConfigError
from ..hardware import Hardware
from ..layers.base import is_numeric
from ..models.model import Model
from .pipeline import InferenceStep, TrainingStep

__all__ = ["USE_COMPILED", "CompiledStep", "LazyRows", "compilable", "front", "run", "sizes"]

_FRONT: dict[tuple, tuple[tuple, Any]] = {}
_FRONT_SIZE = 256
USE_COMPILED = True
"""Whether the steps take their compiled programs for int sizes (tests switch it off to compare)."""

@dataclass(frozen=True)
class CompiledStep:
    """One compiled step configuration; call it with the sizes (see :func:`compile_step`)."""

    kind: str
    program: Program
    stages: int
    """Distinct pipeline stages whose memory terms the program returns."""
    chip: Hardware
    split: Optional[tuple[int, ...]]
    rows: Callable[..., list]
    """``rows(*sizes)``: the step's breakdown rows (inference: prefill and decode), built lazily."""
    _static: dict[str, Any] = dataclasses.field(init=False, repr=False, compare=False)
    _keys: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # NB: what every result of this step shares, laid out once: the defaults and fixed fields
        # (``static``) and the result's field names in the order of the program's values (``keys``)
        training = self.kind == "training"
        static = {**_DEFAULTS[TrainingStep if training else InferenceStep], "hardware": self.chip,
                  "stage_layers": self.split}
        if training:
            keys = self.program.names[:len(self.program.names) - 4 * self.stages] + _TRAINING_MEMORY
        else:
            keys = ("ttft", "tpot", "activation_memory", "tokens_per_second") + _INFERENCE_MEMORY
        object.__setattr__(self, "_static", static)
        object.__setattr__(self, "_keys", keys)

    def __call__(self, *sizes: Any, exact: bool = True) -> Any:
        """The step at ``sizes`` (inference: batch_size, seq_len; training: seq_len, global_batch,
        micro_batch): exact ints/Fractions, or floats with ``exact=False``."""
        for x in sizes:
            if type(x) is not int or x <= 0:
                return None
        if not self.program.holds(*sizes):
            return None
        if exact:
            values = tuple(map(normal, self.program.exact(*sizes)))
        else:
            values = self.program.floats(*sizes)
        return (_inference_result if self.kind == "inference" else _training_result)(self, sizes, values)


_TRAINING_MEMORY = ("weight_memory", "gradient_memory", "optimizer_memory", "activation_memory")
_INFERENCE_MEMORY = ("weight_memory", "kv_cache_memory")


def sizes(*values: Any) -> Optional[tuple[int, ...]]:
    """The sizes as ints when each is a positive whole number (int or SymPy Integer), else None."""
    out = []
    for x in values:
        if type(x) is int and x > 0:
            out.append(x)
        elif isinstance(x, sp.Integer) and x > 0:
            out.append(int(x))
        else:
            return None
    return tuple(out)


_PLAIN = frozenset({str, int, type(None)})


def _token(value: Any) -> tuple[Any, bool]:
    """A cache-key part for ``value`` and whether it stands for the object's identity."""
    kind = type(value)
    if kind in _PLAIN:
        return value, False
    if kind is bool:
        return ("bool", value), False
    if kind is dict:
        try:
            return ("dict", tuple(sorted(value.items(), key=lambda kv: kv[0]))), False
        except TypeError:
            return ("id", id(value)), True
    if kind is tuple and all(type(x) in _PLAIN for x in value) or isinstance(value, sp.Basic):
        return value, False
    return ("id", id(value)), True


_LAST: dict[str, tuple[tuple, tuple, Optional[CompiledStep]]] = {}
"""Per kind, the last call's arguments (dicts copied), their types and its compiled step."""


def front(kind: str, build: Callable[[], Optional[CompiledStep]], *objs: Any) -> Optional[CompiledStep]:
    """The compiled step of ``objs`` (the call's own arguments), looked up without hashing models
    or chips (their identity; the entry keeps them alive) and built by ``build`` on a miss.

    NB: a call with the arguments of the kind's last call (the same types, equal values: tuple
    equality, which takes the same object as equal without calling its ``__eq__``) skips the key."""
    last = _LAST.get(kind)
    types = tuple(map(type, objs))
    if last is not None and last[1] == types:
        try:
            if last[0] == objs:
                return last[2]
        except Exception:  # an argument without a plain equality: the keyed lookup decides
            pass
    compiled = _keyed(kind, build, objs)
    _LAST[kind] = (tuple(dict(o) if type(o) is dict else o for o in objs), types, compiled)
    return compiled


def _keyed(kind: str, build: Callable[[], Optional[CompiledStep]], objs: tuple) -> Optional[CompiledStep]:
    key: list[Any] = [kind]
    refs = []
    for o in objs:
        token, by_id = _token(o)
        key.append(token)
        if by_id:
            refs.append(o)
    hit = _FRONT.get(tuple(key))
    if hit is not None and all(a is b for a, b in zip(hit[0], refs)):
        return hit[1]
    compiled = build()
    if len(_FRONT) >= _FRONT_SIZE:
        _FRONT.clear()
    _FRONT[tuple(key)] = (tuple(refs), compiled)
    return compiled


def compilable(model: Model, par: Parallelism, chip: Hardware) -> bool:
    # NB: a symbolic block count (num_layers = L) is not compiled: a program's free sizes are the
    # sequence and batch sizes only, and L left in it is an unbound name at the call
    degrees = (par.tp, par.sp, par.cp, par.pp, par.dp, par.ep, par.etp)
    return (not chip.is_symbolic and all(sp.sympify(x).is_Integer for x in degrees)
            and all(is_numeric(layer) and sp.sympify(n).is_Integer for _, layer, n in model.parts()))


_DEFAULTS: dict[type, dict[str, Any]] = {
    cls: {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    for cls in (InferenceStep, TrainingStep)}


def _inference_result(compiled: CompiledStep, sizes: tuple, values: tuple) -> InferenceStep:
    n = compiled.stages
    if n == 1:
        fields = values
    else:  # the fullest stage's weights and KV cache (the first of equals, as max gives it)
        weights, kv = values[4:4 + n], values[4 + n:4 + 2 * n]
        i = max(range(n), key=lambda j: weights[j] + kv[j])
        fields = values[:4] + (weights[i], kv[i])
    obj: Any = object.__new__(InferenceStep)
    state = obj.__dict__
    state.update(compiled._static)
    state.update(zip(compiled._keys, fields))
    state["memory_per_chip"] = fields[4] + fields[5] + fields[2]  # (weights + KV) + activations
    rows = LazyRows(compiled.rows, sizes)
    state["prefill_rows"], state["decode_rows"] = _RowsView(rows, 0), _RowsView(rows, 1)
    return cast(InferenceStep, obj)


class LazyRows:
    """Breakdown rows built on first use (a compiled step rarely needs them)."""

    def __init__(self, make: Callable[..., list], sizes: tuple) -> None:
        self._make, self.sizes = make, sizes
        self._rows: Optional[list] = None

    def get(self) -> list:
        if self._rows is None:
            self._rows = self._make(*self.sizes)
        return self._rows

    def part(self, i: int) -> "_RowsView":
        return _RowsView(self, i)


class _RowsView(Sequence):
    """One list of a :class:`LazyRows`: a read-only sequence equal to the tuple of its rows."""

    def __init__(self, lazy: LazyRows, i: int) -> None:
        self._lazy, self._i = lazy, i

    def _rows(self) -> tuple:
        return tuple(self._lazy.get()[self._i])

    def __getitem__(self, i: Any) -> Any:
        return self._rows()[i]

    def __len__(self) -> int:
        return len(self._rows())

    def __eq__(self, other: object) -> bool:
        return self._rows() == (other._rows() if isinstance(other, _RowsView) else other)

    def __hash__(self) -> int:
        return hash(self._rows())

    def __repr__(self) -> str:
        return repr(self._rows())


def _training_result(compiled: CompiledStep, sizes: tuple, values: tuple) -> TrainingStep:
    n = compiled.stages
    if n == 1:
        fields = values
    else:  # the fullest stage's four memory terms (the first of equals, as max gives it)
        first = len(values) - 4 * n
        per_stage = [values[first + 4 * i:first + 4 * i + 4] for i in range(n)]
        i = max(range(n), key=lambda j: per_stage[j][0] + per_stage[j][1] + per_stage[j][2] + per_stage[j][3])
        fields = values[:first] + per_stage[i]
    obj: Any = object.__new__(TrainingStep)
    state = obj.__dict__
    state.update(compiled._static)
    state.update(zip(compiled._keys, fields))
    state["memory_per_chip"] = fields[-4] + fields[-3] + fields[-2] + fields[-1]
    return cast(TrainingStep, obj)


def run(compiled: Optional[CompiledStep], sizes: Optional[tuple], exact: bool) -> Any:
    """The compiled step at ``sizes``, or ``None`` (then the uncompiled step runs: ``exact`` only).
    ``exact=False`` with sizes that break one of the program's rules raises that rule's own message
    (the exact path's error), not the float path's."""
    result = None if compiled is None or sizes is None else compiled(*sizes, exact=exact)
    if result is None and not exact:
        broken = None if compiled is None or sizes is None else compiled.program.broken(*sizes)
        if broken is not None:
            raise broken
        raise ConfigError("exact=False (the float path) needs a compiled step: positive int sizes, numeric model, "
                          "parallelism and chip, and no prefill_chunk")
    return result


@on_register
def _forget_programs() -> None:
    """Empty the compiled steps: their times are the registered time model's."""
    _FRONT.clear()
    _LAST.clear()
