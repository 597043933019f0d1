"""A ``CommDebugMode`` that keeps symcost's record of each collective torch counts, shared by the
tensor- and context-parallel cross-checks (import it after ``pytest.importorskip("torch")``)."""

from __future__ import annotations

from typing import Callable

from torch.distributed.tensor.debug import CommDebugMode


class RecordingCommMode(CommDebugMode):
    """``CommDebugMode`` that also keeps ``record(func, args, kwargs, out)`` of each collective it
    counts, in call order, in ``records``."""

    def __init__(self, record: Callable[..., tuple]):
        super().__init__()
        self.record = record
        self.records: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        counted = self.get_total_counts()
        out = super().__torch_dispatch__(func, types, args, kwargs)
        # NotImplemented: a DTensor op, which DTensor then desugars into plain-tensor ops
        if out is not NotImplemented and self.get_total_counts() > counted:
            self.records.append(self.record(func, args, kwargs, out))
        return out
