"""Moved: the time model lives in :mod:`symcost.hardware.timing`; this name stays importable."""

from .hardware.timing import (
    OpTime,
    Times,
    collective_steps,
    collective_time,
    layer_times,
    op_time,
)

__all__ = ["OpTime", "Times", "collective_steps", "collective_time", "layer_times", "op_time"]
