"""``symcost latex``: the formulas of a model or a layer type as LaTeX."""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    UsageError,
    add_model_options,
    emit,
    model_arg,
)

LAYER_CHOICES = ("mlp", "gated-mlp", "attention", "gqa", "norm", "rmsnorm", "mamba2")


def latex_cmd(args: argparse.Namespace) -> int:
    from ..report import latex

    if args.notation not in latex.NOTATIONS:
        raise UsageError(f"argument --notation: invalid choice {args.notation!r} (choose from "
                         f"{', '.join(latex.NOTATIONS)})")
    if args.layer:
        for option in ("window", "global_every", "kv_dtype"):
            if getattr(args, option) is not None:
                raise UsageError(f"argument --{option.replace('_', '-')}: applies to --model "
                                 "(a whole model's attention layers)")
        from ..layers import catalogue

        target: Any = catalogue.build(args.layer)
    else:
        target = model_arg(args.model, args) if args.model else None
    text = latex.model_document(target, phase=args.phase, notation=args.notation, standalone=args.standalone)
    data = {"latex": text, "layer": args.layer, "model": None if target is None or args.layer else target.name,
            "phase": args.phase, "notation": args.notation, "standalone": args.standalone}
    emit(args, data, [text])
    return 0


def register(sub: Any) -> None:
    """Add the subcommand's parser to ``sub`` (the command's subparsers)."""
    p = sub.add_parser("latex", help="formulas for a model or layer as LaTeX")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--model", default=None, help="preset name or config.json")
    group.add_argument("--layer", choices=LAYER_CHOICES, default=None, help="one symbolic layer type")
    p.add_argument("--phase", choices=["prefill", "decode", "training"], default="training")
    p.add_argument("--notation", default="megatron", help="megatron or scaling-book")
    p.add_argument("--standalone", action="store_true", help="a complete, compilable document")
    add_model_options(p, symbolic=True)
    p.add_argument("--json", action="store_true", help="the LaTeX and what it shows, as JSON")
    p.set_defaults(func=latex_cmd)
