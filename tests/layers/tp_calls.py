"""Shapes and a counter shared by the TP collective tests (test_sp_regather, test_te_fp8_gather)."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import symcost as sc

B, S, H, F, A = 1, 8, 16, 32, 4
M = B * S * H * 2  # the full (b, s, h) activation in bf16: 1 * 8 * 16 * 2 = 256 bytes
SP2 = {"tensor_parallel": 2, "sequence_parallel": "tp"}


def tp_calls(m: sc.LayerMetrics) -> Counter:
    """Calls per (kind, payload bytes, exact) of the TP collectives."""
    got: Counter = Counter()
    for c in m.collectives:
        if c.axis == "tp":
            got[(c.kind, Fraction(str(c.payload_bytes)))] += int(c.count)
    return got
