"""``symcost hardware list`` and ``symcost models list``: the presets."""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    Parser,
    emit,
    human,
    num,
)


def hardware_list(args: argparse.Namespace) -> int:
    from .. import hardware

    rows = []
    # one name per column, two spaces at least between columns (the scale-up link per direction, the
    # chips in its domain)
    lines = [f"{'name':15s} {'bf16 peak':>12s} {'HBM':>9s} {'HBM bw':>10s} {'scale-up bw':>12s} "
             f"{'domain (chips)':>15s}"]
    for name in hardware.names():
        hw = hardware.get(name)
        rows.append(num(hw.to_dict()))
        lines.append(f"{name:15s} {human(hw.peak('bf16'), 'FLOP/s'):>12s} {human(hw.hbm_capacity, 'B'):>9s} "
                     f"{human(hw.hbm_bandwidth, 'B/s'):>10s} {human(hw.scale_up_bandwidth, 'B/s'):>12s} "
                     f"{int(hw.scale_up_domain):>15,d}")
    emit(args, {"hardware": rows}, lines)
    return 0


def models_list(args: argparse.Namespace) -> int:
    from .. import models

    rows = [{"name": n, "parameters": models.get(n).parameter_count, "layers": num(models.get(n).num_layers)}
            for n in models.names()]
    lines = [f"{r['name']:16s} {r['parameters']:>18,} parameters  {r['layers']} layers" for r in rows]
    emit(args, {"models": rows}, lines)
    return 0


def register(sub: Any) -> None:
    """Add the subcommand's parser to ``sub`` (the command's subparsers)."""
    p = sub.add_parser("hardware", help="hardware presets")
    hs = p.add_subparsers(dest="action", parser_class=Parser, required=True)
    q = hs.add_parser("list", help="list the presets")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=hardware_list)

    p = sub.add_parser("models", help="model presets")
    ms = p.add_subparsers(dest="action", parser_class=Parser, required=True)
    q = ms.add_parser("list", help="list the presets")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=models_list)
