"""``symcost sweep``: a grid of per-chip metrics written as CSV."""

from __future__ import annotations

import argparse
import csv
import itertools
from typing import Any

from .common import (
    DEFAULT_HARDWARE,
    DEFAULT_MODEL,
    DTYPES,
    UsageError,
    add_engine,
    add_model_options,
    check_out,
    emit,
    guarded_write,
    hardware_arg,
    int_list,
    model_arg,
    num,
    one_line,
)

SCOPE = "per chip, the whole layer stack on one chip: TP and CP only, no PP"
"""What a sweep row covers (printed with the result; docs/reference/cli.md says the same)."""


def sweep_cmd(args: argparse.Namespace) -> int:
    import sympy as sp

    model = model_arg(args.model, args)
    chip = hardware_arg(args.hardware, args.engine)
    out = check_out(args.out, "--out")
    rows = []
    for b, s, t, c in itertools.product(args.batch, args.seq, args.tp_list, args.cp_list):
        try:
            m = model.with_parallelism({"tensor_parallel": t, "context_parallel": c}).compute_metrics(
                b, s, args.phase, args.dtype, chip)
        except ValueError as err:
            raise UsageError(f"argument {'--cp' if c != 1 else '--tp'}: {one_line(err)}") from None
        rows.append({"batch_size": b, "seq_len": s, "tp": t, "cp": c,
                     "latency_s": float(sp.sympify(m.latency)),
                     "flops_per_chip": num(m.flops_per_chip), "memory_per_chip": num(m.memory_per_chip),
                     "bound": m.bound})

    def write_csv() -> None:
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    guarded_write(write_csv, "--out", args.out)
    emit(args, {"rows": len(rows), "path": str(out)},
         [f"wrote {len(rows):,} rows to {out} ({SCOPE})"])
    return 0


def register(sub: Any) -> None:
    """Add the subcommand's parser to ``sub`` (the command's subparsers)."""
    p = sub.add_parser("sweep", help="evaluate a grid and write CSV")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--hardware", default=DEFAULT_HARDWARE)
    add_engine(p)
    p.add_argument("--batch", type=int_list, default=[1], help="comma-separated batch sizes")
    p.add_argument("--seq", type=int_list, default=[2048], help="comma-separated sequence lengths")
    p.add_argument("--tp", dest="tp_list", type=int_list, default=[1], help="comma-separated TP degrees")
    p.add_argument("--cp", dest="cp_list", type=int_list, default=[1],
                   help="comma-separated context-parallel degrees (default 1)")
    p.add_argument("--phase", choices=["prefill", "decode", "training"], default="decode")
    p.add_argument("--dtype", choices=DTYPES, default="bf16")
    add_model_options(p)
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=sweep_cmd)
