"""The time model ``symcost.hardware`` registers in :mod:`symcost.core.binding`: chips by name,
and :func:`~symcost.hardware.timing.layer_times` as the binding of a layer's costs to a chip."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import sympy as sp

from ..core.dtypes import DataType
from ..core.ops import Collective, Op
from .chip import Hardware
from .timing import Times, layer_times

__all__ = ["HardwareTimeModel", "SYMBOLIC"]

SYMBOLIC = Hardware.symbolic()
"""The unbound chip that ``hardware=None`` means."""


class HardwareTimeModel:
    """Resolves ``hardware=`` arguments with ``get`` (a preset) and times ops with the per-op roofline."""

    def __init__(self, get: Any):
        self._get = get

    def resolve(self, hardware: Any) -> Hardware:
        return SYMBOLIC if hardware is None else self._get(hardware)

    def layer_times(self, ops: Iterable[tuple[Op, Any]], collectives: Iterable[Collective], chip: Any,
                    peak: sp.Expr, overlap: bool = False, datatype: Optional[DataType] = None) -> Times:
        return layer_times(ops, collectives, chip, peak, overlap, datatype)

    def roofline_times(self, ops: Iterable[tuple[Op, Any]], collectives: Iterable[Collective], chip: Any,
                       peak: sp.Expr, overlap: bool = False,
                       datatype: Optional[DataType] = None) -> Optional[Times]:
        if chip.is_ideal:
            return None
        ideal_peak = sp.sympify(peak) / chip.matmul_efficiency_for(datatype)
        return layer_times(ops, collectives, chip.ideal(), ideal_peak, overlap, datatype)
