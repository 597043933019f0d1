"""Where hardware-free costs meet a chip: the protocols core and the layers need of hardware.

Layers emit hardware-free costs (ops, collectives, memory terms); :mod:`symcost.hardware` binds
them to a chip. The stages below ``hardware/`` never import it: they call the methods of the
:class:`TimeModel` that ``symcost.hardware`` registers here when it is imported (always, by
``import symcost``), so ``layer.compute_metrics(hardware="H100_SXM")`` stays the convenient entry
while the dependency points downward only.

>>> from symcost.core import binding
>>> chip = binding.time_model().resolve("H100_SXM")
>>> chip.name, chip.is_symbolic
('H100_SXM', False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Protocol

from ..errors import SymcostError

if TYPE_CHECKING:  # NB: no SymPy at run time: ``import symcost`` imports this module and stays light
    import sympy as sp

    from .dtypes import DataType
    from .ops import Collective, Op

__all__ = ["Chip", "LayerTimes", "TimeModel", "load_registrations", "on_register", "register", "register_loader",
           "time_model"]


class Chip(Protocol):
    """What the layers and the metrics ask of a chip (:class:`symcost.hardware.Hardware` is one)."""

    @property
    def name(self) -> str: ...

    def __hash__(self) -> int:  # the compiled numeric path caches per chip
        ...

    @property
    def is_symbolic(self) -> bool: ...

    @property
    def is_ideal(self) -> bool: ...

    @property
    def structure(self) -> Mapping[str, Any]:
        """The settings that shape the chip's time expressions without being symbols (GEMM tiles,
        tile scheduler, ...), by name: a symbolic chip's must be the bound chip's."""
        ...

    def effective_peak(self, dtype: Any) -> sp.Expr:
        """Matmul FLOP/s the timing uses for ``dtype``."""
        ...

    def symbol_values(self, dtype: Any) -> Mapping[sp.Symbol, sp.Expr]:
        """Values of the hardware symbols for this chip and ``dtype``."""
        ...


class LayerTimes(Protocol):
    """The four times of one layer."""

    @property
    def compute_time(self) -> sp.Expr: ...

    @property
    def memory_time(self) -> sp.Expr: ...

    @property
    def comm_time(self) -> sp.Expr: ...

    @property
    def latency(self) -> sp.Expr: ...


class TimeModel(Protocol):
    """Turns a ``hardware=`` argument into a chip and times a layer's ops on it."""

    def resolve(self, hardware: Any) -> Chip:
        """The chip a ``hardware=`` argument names: ``None`` is the symbolic chip, a string a preset."""
        ...

    def layer_times(self, ops: Iterable[tuple[Op, Any]], collectives: Iterable[Collective], chip: Chip,
                    peak: sp.Expr, overlap: bool = False, datatype: Optional[DataType] = None) -> LayerTimes:
        """The summed op and collective times of one layer on ``chip``."""
        ...

    def roofline_times(self, ops: Iterable[tuple[Op, Any]], collectives: Iterable[Collective], chip: Chip,
                       peak: sp.Expr, overlap: bool = False,
                       datatype: Optional[DataType] = None) -> Optional[LayerTimes]:
        """The same layer's times on the pure roofline of ``chip`` (``peak`` without the matmul
        efficiency), or ``None`` when ``chip`` already is the roofline: what ``bound`` classifies by."""
        ...


_REGISTERED: list[TimeModel] = []
_LOADERS: list[Callable[[], None]] = []
_FORGETS: list[Callable[[], None]] = []


def register_loader(loader: Callable[[], None]) -> None:
    """``loader`` imports the stages that register into the ones below (``symcost.hardware`` its
    time model here, ``symcost.plan.step`` the steps behind ``Model.training_step``); ``import
    symcost`` registers one and loads those stages lazily, so ``from symcost.layers import ...``
    still finds the chips. :func:`load_registrations` calls it."""
    _LOADERS[:] = [loader]


def load_registrations() -> None:
    """Run the registered loader (see :func:`register_loader`); nothing when there is none."""
    for loader in _LOADERS:
        loader()


def on_register(forget: Callable[[], None]) -> Callable[[], None]:
    """Call ``forget`` on every :func:`register`: a stage above core that remembers costs timed by
    the registered model (the layers' memo and compiled templates, the planners' programs) empties
    them there, so a model registered later applies to every later ``compute_metrics``, even of a
    layer costed before. Returns ``forget`` (usable as a decorator); registering one twice is one.

    >>> from symcost.core import binding
    >>> calls = []
    >>> forget = binding.on_register(lambda: calls.append("forgot"))
    >>> binding.register(binding.time_model())
    >>> calls
    ['forgot']
    >>> binding._FORGETS.remove(forget)
    """
    if forget not in _FORGETS:
        _FORGETS.append(forget)
    return forget


def register(model: TimeModel) -> None:
    """Make ``model`` the time model of every later ``compute_metrics`` (``symcost.hardware`` calls
    this); the caches registered with :func:`on_register` are emptied."""
    _REGISTERED[:] = [model]
    for forget in _FORGETS:
        forget()


def time_model() -> TimeModel:
    """The registered time model; raises :class:`~symcost.errors.SymcostError` before one is."""
    if not _REGISTERED:
        load_registrations()
    if not _REGISTERED:
        raise SymcostError("no time model registered: import symcost (symcost.hardware registers one)")
    return _REGISTERED[0]
