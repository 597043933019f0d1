"""symcost's deployment plan against AIConfigurator's own search, on the same question.

    pip install aiconfigurator      (NVIDIA's peer tool, in the benchmark's environment only;
                                     never a symcost dependency)
    python benchmarks/plan_compare.py           both searches, the block on stdout
    python benchmarks/plan_compare.py --docs    also writes it into docs/how-to/serving.md

The question (issue 23): Llama-3.1-70B on 8 H200 SXM, prompts of 4,000 tokens and 500 outputs,
mean TTFT <= 1 s and TPOT <= 30 ms, bf16, TensorRT-LLM, aggregated and disaggregated: which
deployment serves the most output tokens/s per GPU?

- AIConfigurator: ``aiconfigurator.cli.api.cli_default`` (``aiconfigurator cli default``), its
  search over TP/PP layouts, batch sizes and worker counts on its measured per-op tables (the
  table version its ``trtllm`` backend resolves to), best rows by tokens/s/GPU; its aggregated rows
  are one replica (``num_total_gpus`` GPUs), its disaggregated rows whole deployments.
- symcost: :func:`symcost.plan.serving.deploy.plan_deployment` (``symcost plan``) on the
  ``tensorrt-llm`` engine profile, every TP layout, concurrency 1..512 per replica; the preset
  ``llama-3-70b`` (Llama 3.1 has Llama 3's shapes). Its aggregated rows are the whole 8 GPUs
  (``2 x TP 4`` is two replicas), so a concurrency per replica is printed beside the total.

Times are wall seconds of each search in this process, after each tool's import (symcost's first
plan is cold: every cache empty; warm is the median of the next three). A ratio of answers is
symcost's over AIConfigurator's. Nothing is fitted on AIConfigurator's tables or its
``silicon_sample.csv``: the two are independent estimates of the same question.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import logging
import os
import statistics
import sys
import time
from typing import Any, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling module readme_blocks
from readme_blocks import dated_run, page, replace_between

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # benchmark the checkout this script is in, not an installed symcost

INSTALL_HINT = ("aiconfigurator is not installed: pip install aiconfigurator (NVIDIA's peer tool, for this "
                "benchmark only; it is never a symcost dependency)")
BEGIN = "<!-- plan-compare:begin (written by python benchmarks/plan_compare.py --docs) -->"
END = "<!-- plan-compare:end -->"


@dataclasses.dataclass(frozen=True)
class Question:
    """The deployment question both tools answer."""

    hf_model: str = "meta-llama/Meta-Llama-3.1-70B"
    model: str = "llama-3-70b"  # symcost's preset: Llama 3.1 has Llama 3's shapes
    system: str = "h200_sxm"
    chip: str = "H200_SXM"
    backend: str = "trtllm"
    profile: str = "tensorrt-llm"
    gpus: int = 8
    isl: int = 4000
    osl: int = 500
    ttft_ms: int = 1000
    tpot_ms: int = 30

    def label(self) -> str:
        return (f"Llama-3.1-70B on {self.gpus} x H200 SXM, ISL {self.isl} / OSL {self.osl}, TTFT <= "
                f"{self.ttft_ms / 1000:g} s, TPOT <= {self.tpot_ms} ms, bf16, TensorRT-LLM")


@dataclasses.dataclass(frozen=True)
class Best:
    """One tool's best deployment of a kind: its layout, GPUs, concurrency (all of it, and per
    replica for an aggregated one), tokens/s per GPU and per user, TTFT and TPOT in seconds."""

    layout: str
    gpus: int
    concurrency: float
    per_replica: Optional[float]
    tokens_per_gpu: float
    tokens_per_user: float
    ttft: float
    tpot: float

    def line(self) -> str:
        load = f"concurrency {self.concurrency:.4g}"
        if self.per_replica is not None and self.per_replica != self.concurrency:
            load += f" ({self.per_replica:.4g} per replica)"
        return (f"{self.layout} ({self.gpus} GPUs), {load}: {self.tokens_per_gpu:,.1f} tokens/s/GPU, "
                f"{self.tokens_per_user:.1f} tokens/s/user, TTFT {self.ttft * 1e3:.0f} ms, "
                f"TPOT {self.tpot * 1e3:.1f} ms")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One tool's answer: the best of each kind (``None``: none meets the targets), the search's
    wall seconds (cold; ``warm``: the median of later runs, where measured) and what ran."""

    tool: str
    aggregated: Optional[Best]
    disaggregated: Optional[Best]
    seconds: float
    warm: Optional[float] = None
    note: str = ""


def run_symcost(q: Question, warm_runs: int = 3) -> Answer:
    """symcost's plan on the question (the module's docstring), timed cold and warm."""
    from symcost import hardware, models
    from symcost.plan.serving.deploy import plan_deployment

    model, chip = models.get(q.model), hardware.get(q.chip).with_runtime(q.profile)
    times = []
    for _ in range(1 + warm_runs):
        start = time.perf_counter()
        plan = plan_deployment(model, chip, (q.isl, q.osl), q.gpus, q.ttft_ms / 1000, q.tpot_ms / 1000)
        times.append(time.perf_counter() - start)

    def best(d: Any) -> Optional[Best]:
        if d is None:
            return None
        replicas = int(d.layout.split(" x ")[0]) if d.kind == "aggregated" else None
        per = float(d.concurrency) / replicas if replicas else None
        return Best(d.layout, d.gpus, float(d.concurrency), per, float(d.tokens_per_second_per_gpu),
                    float(d.tokens_per_second_per_user), float(d.ttft), float(d.tpot))

    return Answer(f"symcost ({plan.engine} profile)", best(plan.best_aggregated), best(plan.best_disaggregated),
                  times[0], statistics.median(times[1:]) if warm_runs else None,
                  f"{len(plan.columns['ttft']):,} deployments evaluated")


def _par(row: Any, prefix: str = "") -> str:
    """``TP t`` (and ``x PP p`` when p > 1) of an AIConfigurator row (``(p)``/``(d)`` columns by ``prefix``)."""
    tp, pp = int(row[f"{prefix}tp"]), int(row[f"{prefix}pp"])
    return f"TP {tp}" + (f" x PP {pp}" if pp != 1 else "")


def aic_best(row: Any, kind: str) -> Best:
    """An AIConfigurator best row (a pandas row or a mapping) as :class:`Best`: its aggregated rows
    are one replica of ``num_total_gpus`` GPUs at ``concurrency``; its disaggregated rows name the
    prefill and decode workers; times in milliseconds."""
    if kind == "aggregated":
        layout = f"1 x {_par(row)}"
        per: Optional[float] = float(row["concurrency"])
    else:
        layout = (f"prefill {int(row['(p)workers'])} x {_par(row, '(p)')} + decode {int(row['(d)workers'])} x "
                  f"{_par(row, '(d)')}")
        per = None
    return Best(layout, int(row["num_total_gpus"]), float(row["concurrency"]), per, float(row["tokens/s/gpu"]),
                float(row["tokens/s/user"]), float(row["ttft"]) / 1e3, float(row["tpot"]) / 1e3)


def run_aiconfigurator(q: Question) -> Answer:
    """AIConfigurator's default search on the question (the module's docstring), timed."""
    start = time.perf_counter()
    try:
        from aiconfigurator.cli.api import cli_default
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None
    imported = time.perf_counter() - start
    for name in ("aiconfigurator", "aiconfigurator_core"):  # its table loader's warnings
        logging.getLogger(name).setLevel(logging.ERROR)
    start = time.perf_counter()
    result = cli_default(q.hf_model, q.gpus, q.system, backend=q.backend, isl=q.isl, osl=q.osl,
                         ttft=float(q.ttft_ms), tpot=float(q.tpot_ms), top_n=1)
    seconds = time.perf_counter() - start
    found = {}
    version = ""
    for key, kind in (("agg", "aggregated"), ("disagg", "disaggregated")):
        table = result.best_configs.get(key)
        found[kind] = None if table is None or len(table) == 0 else aic_best(table.iloc[0], kind)
        if table is not None and len(table):
            version = str(table.iloc[0].get("version", table.iloc[0].get("(p)version", "")))
    return Answer(f"AIConfigurator {importlib.metadata.version('aiconfigurator')} (trtllm tables {version})",
                  found["aggregated"], found["disaggregated"], seconds,
                  note=f"import {imported:.1f} s, not counted")


def _ratio(a: Optional[Best], b: Optional[Best], field: str) -> str:
    if a is None or b is None:
        return "n/a"
    return f"{getattr(a, field) / getattr(b, field):.2f}"


def block(q: Question, ours: Answer, theirs: Answer) -> str:
    """The printed comparison: the question, each tool's time and best deployments, the ratios."""
    warm = "" if ours.warm is None else f", warm {ours.warm:.2f} s"
    lines = [f"question: {q.label()}",
             f"{ours.tool}: search {ours.seconds:.2f} s cold{warm} ({ours.note})",
             f"{theirs.tool}: search {theirs.seconds:.1f} s ({theirs.note})",
             f"time: AIConfigurator / symcost (cold) {theirs.seconds / ours.seconds:.1f}x"]
    for kind in ("aggregated", "disaggregated"):
        a, b = getattr(ours, kind), getattr(theirs, kind)
        lines += [f"best {kind}:",
                  f"  symcost         {a.line() if a else 'none meets the targets'}",
                  f"  AIConfigurator  {b.line() if b else 'none meets the targets'}",
                  f"  symcost / AIConfigurator: tokens/s/GPU {_ratio(a, b, 'tokens_per_gpu')}, "
                  f"tokens/s/user {_ratio(a, b, 'tokens_per_user')}"]
    gains = [f"{name} {_ratio(x.disaggregated, x.aggregated, 'tokens_per_gpu')}"
             for name, x in (("symcost", ours), ("AIConfigurator", theirs))]
    lines.append("disaggregated / aggregated tokens/s/GPU: " + ", ".join(gains))
    return "\n".join(lines)


def write_docs(path: str, output: str, command: str, today: Optional[str] = None) -> None:
    """Replace the block between :data:`BEGIN` and :data:`END` in ``path`` with ``output``."""
    replace_between(path, BEGIN, END, dated_run(f"```text\n{output.strip()}\n```", command, today))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", "--readme", dest="docs", action="store_true",
                        help="also write the block into docs/how-to/serving.md (between its plan-compare markers)")
    args = parser.parse_args(argv)
    q = Question()
    theirs = run_aiconfigurator(q)  # first: without the package, one line before any work
    ours = run_symcost(q)
    text = block(q, ours, theirs)
    print(text)
    if args.docs:
        write_docs(page("plan-compare"), text, "python benchmarks/plan_compare.py")


if __name__ == "__main__":
    main()
