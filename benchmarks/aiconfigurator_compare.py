"""symcost against AIConfigurator's own static estimate: whole-model TTFT and TPOT, point by point.

    pip install aiconfigurator      (NVIDIA's peer tool, in the benchmark's environment only;
                                     never a symcost dependency)
    python benchmarks/aiconfigurator_compare.py            every point, tables on stdout
    python benchmarks/aiconfigurator_compare.py --quick    H100, TensorRT-LLM only (seconds)
    python benchmarks/aiconfigurator_compare.py --docs     also writes the summary into docs/explanation/fidelity.md

AIConfigurator (PyPI ``aiconfigurator``) estimates serving latency from NVIDIA's measured per-op
tables. Its single-point static estimate, ``aiconfigurator.cli.api.cli_estimate(mode="static")``
(``aiconfigurator cli estimate --estimate-mode static``), runs one static batch without in-flight
batching: TTFT is one prefill of ``batch`` prompts of ISL tokens (logits of each prompt's last
token), TPOT the mean of the OSL - 1 decode steps after it (they attend to ISL + 1 ... ISL + OSL - 1
keys; AIConfigurator evaluates every 32nd step and sums them per op). symcost's counterpart is
``Model.inference_step``: TTFT from the step at ISL, TPOT from the one whose decode attends to the
mean context of those steps, ISL + OSL/2. Both in the same dtype and TP degree; the chip runs the
engine profile named in BACKEND_PROFILES for the backend. A ratio is symcost's time over
AIConfigurator's. A point is compared only where both tools say it fits in the GPU's memory;
the others are counted, by which tool refused them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from typing import Any, Callable, Iterable, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling module readme_blocks
from readme_blocks import dated_run, page, replace_between

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # benchmark the checkout this script is in, not an installed symcost

_START = time.perf_counter()
import symcost  # noqa: E402
from symcost import hardware, models  # noqa: E402
from symcost.errors import SymcostError, one_line  # noqa: E402

SYMCOST_IMPORT_S = time.perf_counter() - _START

# AIConfigurator backend -> symcost engine profile (symcost.hardware.runtimes()). A name this
# symcost does not have yet runs under FALLBACK_PROFILE, and the output says so.
BACKEND_PROFILES = {"trtllm": "tensorrt-llm", "vllm": "vllm", "sglang": "sglang"}
FALLBACK_PROFILE = "neutral"

INSTALL_HINT = ("aiconfigurator is not installed: pip install aiconfigurator (NVIDIA's peer tool, for this "
                "benchmark only; it is never a symcost dependency)")

# Qwen3-32B's published shapes, https://huggingface.co/Qwen/Qwen3-32B/blob/main/config.json
QWEN3_32B = {"model_type": "qwen3", "hidden_size": 5120, "intermediate_size": 25600, "num_attention_heads": 64,
             "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 64, "vocab_size": 151936,
             "tie_word_embeddings": False}


# name -> the Hugging Face id AIConfigurator knows it by (its package ships these config.json files)
MODELS = {"llama-3.1-8b": "meta-llama/Meta-Llama-3.1-8B", "llama-3.1-70b": "meta-llama/Meta-Llama-3.1-70B",
          "qwen3-32b": "Qwen/Qwen3-32B"}
# symcost chip -> AIConfigurator system
CHIPS = {"h100": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm"}
BACKENDS = ("trtllm", "vllm", "sglang")
# dtype -> (AIConfigurator's quantization modes, symcost's dtype). FP8: per-tensor FP8 GEMMs and an
# FP8 KV cache in both; AIConfigurator keeps bf16 attention math and bf16 ("half") all-reduces,
# symcost's fp8_e4m3 moves 1-byte activations through its all-reduces too.
DTYPES = {"bf16": ({"gemm_quant_mode": "bfloat16", "kvcache_quant_mode": "bfloat16"}, "bf16"),
          "fp8": ({"gemm_quant_mode": "fp8", "kvcache_quant_mode": "fp8"}, "fp8_e4m3")}
TPS, BATCHES, ISLS, OSLS = (1, 2, 4, 8), (1, 8, 64), (1024, 4096), (128, 512)


def _symcost_model(name: str) -> Any:
    """symcost's model of each compared checkpoint. Llama 3.1 has Llama 3's shapes (its config.json
    differs only in RoPE scaling and context length, which cost nothing): the presets serve."""
    if name == "qwen3-32b":
        return models.from_hf_config(QWEN3_32B)
    return models.get({"llama-3.1-8b": "llama-3-8b", "llama-3.1-70b": "llama-3-70b"}[name])


@dataclasses.dataclass(frozen=True)
class Point:
    """One configuration both tools estimate."""

    model: str
    chip: str
    backend: str
    dtype: str
    tp: int
    batch: int
    isl: int
    osl: int

    @property
    def label(self) -> str:
        return (f"{self.model} {self.chip} {self.backend} {self.dtype} tp{self.tp} b{self.batch} "
                f"{self.isl}/{self.osl}")


@dataclasses.dataclass(frozen=True)
class Row:
    """Both tools' times for one point, in seconds."""

    point: Point
    aic_ttft: float
    aic_tpot: float
    sc_ttft: float
    sc_tpot: float

    @property
    def ttft_ratio(self) -> float:
        return self.sc_ttft / self.aic_ttft

    @property
    def tpot_ratio(self) -> float:
        return self.sc_tpot / self.aic_tpot


@dataclasses.dataclass
class Comparison:
    """What :func:`compare` measured: rows, points left out (by reason), times, versions."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    skipped: Counter = dataclasses.field(default_factory=Counter)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # reason -> one example message
    seconds: Counter = dataclasses.field(default_factory=Counter)
    aic_calls: list[float] = dataclasses.field(default_factory=list)
    sc_calls: list[float] = dataclasses.field(default_factory=list)
    versions: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # (system, backend)
    profiles: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # backend -> (asked, used)


def grid(quick: bool = False) -> list[Point]:
    """The compared points: every model, GPU, backend, dtype, TP, batch, ISL and OSL (``quick``:
    H100 and TensorRT-LLM only)."""
    chips, backends = (("h100",), ("trtllm",)) if quick else (tuple(CHIPS), BACKENDS)
    return [Point(m, c, be, dt, tp, b, isl, osl) for m in MODELS for c in chips for be in backends for dt in DTYPES
            for tp in TPS for b in BATCHES for isl in ISLS for osl in OSLS]


def load_aiconfigurator() -> Callable[..., Any]:
    """AIConfigurator's single-point estimate (``aiconfigurator cli estimate``), or a one-line exit."""
    try:
        from aiconfigurator.cli.api import cli_estimate
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None
    # its table loader logs each fallback table it reads (and more) as warnings: keep the tables clean
    for name in ("aiconfigurator", "aiconfigurator_core"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return cli_estimate


def profile_for(backend: str, runtime: Optional[str] = None) -> tuple[str, str]:
    """The symcost engine profile asked for a backend's points (``runtime`` overrides
    :data:`BACKEND_PROFILES`) and the one they run under (:data:`FALLBACK_PROFILE` when this
    symcost has no profile of that name)."""
    wanted = runtime or BACKEND_PROFILES[backend]
    return wanted, wanted if wanted in hardware.runtimes() else FALLBACK_PROFILE


class _AIC:
    """AIConfigurator's static estimate on the current table version of each backend, timed."""

    def __init__(self, out: Comparison) -> None:
        start = time.perf_counter()
        self.estimate = load_aiconfigurator()
        out.seconds["aic import"] += time.perf_counter() - start
        self.out = out

    def __call__(self, p: Point) -> tuple[float, float, bool]:
        """TTFT and TPOT in seconds, and whether AIConfigurator finds the point out of memory."""
        system = CHIPS[p.chip]
        first = (system, p.backend) not in self.out.versions
        self.out.versions.setdefault((system, p.backend), "")
        start = time.perf_counter()
        try:  # "current": the table version AIConfigurator's own default resolves to (systems/query_versions.yaml)
            r = self.estimate(MODELS[p.model], system, mode="static", backend_name=p.backend,
                              backend_version="current", isl=p.isl, osl=p.osl, batch_size=p.batch, tp_size=p.tp,
                              **DTYPES[p.dtype][0])
        finally:
            took = time.perf_counter() - start
            if first:  # the first estimate on a system and backend loads its tables
                self.out.seconds["aic first calls"] += took
            else:
                self.out.aic_calls.append(took)
        self.out.versions[(system, p.backend)] = str(r.raw.get("version", ""))
        milli = 1e-3  # AIConfigurator reports milliseconds
        return r.ttft * milli, r.tpot * milli, bool(r.summary is not None and r.summary.check_oom())


def symcost_estimate(p: Point, runtime: str, cache: dict) -> tuple[float, float, bool]:
    """symcost's TTFT (prefill of ISL) and TPOT (a decode step at ISL + OSL/2) in seconds, and
    whether the point fits in the chip's memory with its last token's context, ISL + OSL (the
    context AIConfigurator checks too)."""
    key = (p.model, p.chip, runtime)
    if key not in cache:
        cache[key] = (_symcost_model(p.model), hardware.get(p.chip).with_runtime(runtime))
    model, chip = cache[key]
    dtype, par = DTYPES[p.dtype][1], {"tensor_parallel": p.tp}
    prefill = model.inference_step(chip, p.batch, p.isl, dtype, parallelism=par, exact=False)
    decode = model.inference_step(chip, p.batch, p.isl + p.osl // 2, dtype, parallelism=par, exact=False)
    last = model.inference_step(chip, p.batch, p.isl + p.osl, dtype, parallelism=par, exact=False)
    fits = float(last.memory_per_chip) <= float(chip.hbm_capacity)
    return float(prefill.ttft), float(decode.tpot), fits


def compare(points: Iterable[Point], runtime: Optional[str] = None) -> Comparison:
    """Both tools' estimates of every point that both can estimate and that fits in memory for
    both; the others are counted in ``skipped`` by reason (an example message in ``errors``)."""
    out = Comparison()
    wall, cpu = time.perf_counter(), time.process_time()
    aic, cache = _AIC(out), {}
    for p in points:
        out.profiles[p.backend] = profile_for(p.backend, runtime)
        try:
            aic_ttft, aic_tpot, aic_oom = aic(p)
        except Exception as err:  # the peer's errors: counted with one message each, not raised
            message = " ".join(str(err).split())
            _skip(out, f"AIConfigurator: {type(err).__name__}", message[:200] + ("..." if len(message) > 200 else ""))
            continue
        start = time.perf_counter()
        try:
            sc_ttft, sc_tpot, sc_fits = symcost_estimate(p, out.profiles[p.backend][1], cache)
        except SymcostError as err:
            _skip(out, "symcost refuses", one_line(err))
            continue
        out.sc_calls.append(time.perf_counter() - start)
        if not sc_fits or aic_oom:
            reason = ("out of memory for both" if not sc_fits and aic_oom else
                      "out of memory for symcost only" if not sc_fits else "out of memory for AIConfigurator only")
            out.skipped[reason] += 1
            continue
        out.rows.append(Row(p, aic_ttft, aic_tpot, sc_ttft, sc_tpot))
    out.seconds["wall"], out.seconds["cpu"] = time.perf_counter() - wall, time.process_time() - cpu
    return out


def _skip(out: Comparison, reason: str, message: str) -> None:
    out.skipped[reason] += 1
    out.errors.setdefault(reason, message)


# -- the tables ----------------------------------------------------------------------------------

def _stats(ratios: Sequence[float]) -> str:
    """``median | mean |ln r|`` of ``ratios``."""
    return f"{statistics.median(ratios):.2f} | {statistics.fmean(abs(math.log(r)) for r in ratios):.2f}"


def summary_table(rows: Sequence[Row], key: Callable[[Point], tuple], names: Sequence[str]) -> str:
    """One line per value of ``key``: points, TTFT and TPOT median ratio and mean |ln ratio|."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault(key(r.point), []).append(r)
    lines = ["| " + " | ".join(names) + " | points | TTFT median ratio | TTFT mean abs ln | TPOT median ratio "
             "| TPOT mean abs ln |", "|" + "---|" * len(names) + "---:|---:|---:|---:|---:|"]
    for k, group in groups.items():
        lines.append("| " + " | ".join(map(str, k)) + f" | {len(group)} | {_stats([r.ttft_ratio for r in group])} | "
                     f"{_stats([r.tpot_ratio for r in group])} |")
    return "\n".join(lines)


def points_table(rows: Sequence[Row]) -> str:
    """Every compared point: both tools' TTFT and TPOT in milliseconds and their ratio."""
    lines = ["| point | AIC TTFT (ms) | symcost TTFT (ms) | ratio | AIC TPOT (ms) | symcost TPOT (ms) | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.point.label} | {r.aic_ttft * 1e3:.2f} | {r.sc_ttft * 1e3:.2f} | {r.ttft_ratio:.2f} | "
              f"{r.aic_tpot * 1e3:.3f} | {r.sc_tpot * 1e3:.3f} | {r.tpot_ratio:.2f} |" for r in rows]
    return "\n".join(lines)


def _versions(out: Comparison) -> str:
    """aiconfigurator's package and table versions, symcost's version and commit."""
    tables: dict[str, set] = {}
    for (_system, backend), v in sorted(out.versions.items()):
        tables.setdefault(backend, set()).add(v or "none")
    table_text = ", ".join(f"{be} {'/'.join(sorted(vs))}" for be, vs in tables.items())
    return (f"aiconfigurator {_dist_version('aiconfigurator')} (aiconfigurator-core "
            f"{_dist_version('aiconfigurator-core')}; tables {table_text}); symcost "
            f"{getattr(symcost, '__version__', '?')} at {_revision()}")


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _revision() -> str:
    """The checkout's commit, with ``+changes`` when tracked files differ from it."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def _times(out: Comparison) -> str:
    s = out.seconds
    aic_total = s["aic import"] + s["aic first calls"] + sum(out.aic_calls)
    aic = (f"AIConfigurator {aic_total:.1f} s: import {s['aic import']:.1f} s, first estimate per GPU and backend "
           f"(loads its tables) {s['aic first calls']:.1f} s, {len(out.aic_calls)} more estimates "
           f"{sum(out.aic_calls):.1f} s")
    if out.aic_calls:
        aic += f" (median {statistics.median(out.aic_calls) * 1e3:.1f} ms)"
    sc = (f"symcost {SYMCOST_IMPORT_S + sum(out.sc_calls):.1f} s: import {SYMCOST_IMPORT_S:.1f} s, "
          f"{len(out.sc_calls)} points (three inference steps each) {sum(out.sc_calls):.1f} s")
    if out.sc_calls:
        sc += (f" (median {statistics.median(out.sc_calls) * 1e3:.2f} ms; the first per model, GPU, dtype and "
               "TP compiles the step)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"time: {aic}; {sc}\nmachine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} "
            f"at the end; the comparison took {s['wall']:.0f} s wall, {s['cpu']:.0f} s CPU (this process)")


def report(out: Comparison, points: bool = True) -> str:
    """The header lines, the summaries and (``points``) the per-point table, as markdown."""
    profiles = ", ".join(f"{be} -> {used}" + ("" if used == asked else f" (no '{asked}' profile in this symcost)")
                         for be, (asked, used) in out.profiles.items())
    skipped = ", ".join(f"{reason} {n}" for reason, n in out.skipped.items()) or "none"
    parts = ["```text", f"versions: {_versions(out)}", _times(out), f"symcost engine profiles: {profiles}",
             f"compared points: {len(out.rows)}; left out: {skipped}"]
    parts += [f"  {reason}, e.g.: {message}" for reason, message in out.errors.items()]
    parts += ["```", "",
              "Ratio = symcost / AIConfigurator; mean abs ln = mean |ln ratio| (0.10 is about 10 % off).", "",
              "By model, GPU, backend and dtype:", "",
              summary_table(out.rows, lambda p: (p.model, p.chip, p.backend, p.dtype),
                            ("model", "GPU", "backend", "dtype")), "",
              "By one axis at a time (all other axes pooled):", "", _axes_table(out.rows)]
    if points:
        parts += ["", "Every point (model GPU backend dtype TP batch ISL/OSL):", "", points_table(out.rows)]
    return "\n".join(parts) + "\n"


def _axes_table(rows: Sequence[Row]) -> str:
    """:func:`summary_table` over each axis in turn, one table."""
    tables = [summary_table(rows, lambda p, a=axis: (f"{a} {getattr(p, a)}",), ("slice",))
              for axis in ("backend", "dtype", "chip", "tp", "batch", "isl", "osl")]
    return "\n".join([tables[0]] + [t.split("\n", 2)[2] for t in tables[1:]])


# -- the docs page ---------------------------------------------------------------------------------

README_BEGIN = "<!-- aic-compare:begin (written by python benchmarks/aiconfigurator_compare.py --docs) -->"
README_END = "<!-- aic-compare:end -->"


def write_readme(path: str, output: str, command: str, today: Optional[str] = None) -> None:
    """Replace the block between :data:`README_BEGIN` and :data:`README_END` in ``path`` with
    ``output`` (one run's printed summary), under the date and ``command``."""
    replace_between(path, README_BEGIN, README_END, dated_run(output, command, today))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="H100 and TensorRT-LLM only")
    parser.add_argument("--runtime", metavar="PROFILE", help="run every backend under this symcost engine "
                        f"profile instead of BACKEND_PROFILES (one of: {', '.join(hardware.runtimes())})")
    parser.add_argument("--docs", "--readme", dest="readme", action="store_true", help="also write the summary "
                        "(not the per-point table) into docs/explanation/fidelity.md between its aic-compare markers")
    args = parser.parse_args(argv)
    if args.runtime and args.runtime not in hardware.runtimes():
        parser.error(f"--runtime: unknown profile {args.runtime!r}; known: {', '.join(hardware.runtimes())}")
    out = compare(grid(args.quick), args.runtime)
    print(report(out), end="")
    if args.readme:
        command = " ".join(["python benchmarks/aiconfigurator_compare.py",
                            *(a for a in (argv if argv is not None else sys.argv[1:])
                              if a not in ("--docs", "--readme"))])
        write_readme(page("aic-compare"), report(out, points=False), command)


if __name__ == "__main__":
    main()
