"""symcost's continuous batching against measured serving runs: TTFT and TPOT, run by run.

    python benchmarks/serving_silicon.py            every run, tables on stdout
    python benchmarks/serving_silicon.py --quick    Llama-3.1-8B on H100 (TensorRT-LLM) only
    python benchmarks/serving_silicon.py --docs     also writes the summary into docs/explanation/fidelity.md

The runs are the aggregated (one engine, in-flight batching) end-to-end serving benchmarks that
NVIDIA ships with AIConfigurator, ``aiconfigurator_core/systems/silicon_sample.csv`` (PyPI
``aiconfigurator-core``, Apache-2.0; installed in the benchmark's environment only, located with
``importlib.util.find_spec`` and never imported): each a fixed concurrency of clients sending ISL
prompt tokens for OSL output tokens, with the measured mean TTFT and TPOT. This evaluates; nothing
is fitted on these runs (the engine profiles come from AIConfigurator's per-op tables, another
data set).

Compared: Llama-3.1-8B, Llama-3.1-70B and Qwen3-32B on H100 SXM, H200 SXM and B200, TensorRT-LLM,
vLLM and SGLang, the runs symcost has a model, a chip and a format for (bf16, FP8, FP8 block
scaling costed as FP8, NVFP4), with the KV cache in bf16 for a bf16 checkpoint and in FP8 for an FP8
or NVFP4 one (the runs do not say; AIConfigurator, whose runs these are, costs them so:
``aiconfigurator_core/sdk/models/helpers.py``, ``_infer_quant_modes_from_raw_config``, an FP8,
FP8 block or NVFP4 checkpoint runs an FP8 KV cache and FP8 attention, "no FP4 KV cache";
TensorRT-LLM's ``KvCacheConfig.dtype = "auto"`` takes the checkpoint's ``kv_cache_quant_algo``).
symcost's estimate is the run's engine at its concurrency
(:func:`symcost.plan.serving.serving_curve`, under the engine profile of the backend, with that
profile's token budget, memory fraction and rule and KV block size for the chip, e.g. SGLang's
16384 tokens on B200). A run's measured TTFT is a mean over its requests, the first ``c`` sent at
once to an idle engine: it is compared with :meth:`~symcost.plan.serving.ServingCurve.benchmark_ttft`,
the first wave counted once in 10 requests per client (AIConfigurator's harness; the file does not
give its runs' request counts), with the first wave and the steady state beside it. Beside them
the static batch the issue measured first: TTFT the prefill of ``c`` prompts, TPOT one decode
step of ``c`` sequences at the mean context (``inference_step``). A ratio is symcost's over the measured value.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling module readme_blocks
from readme_blocks import dated_run, page, replace_between

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # benchmark the checkout this script is in, not an installed symcost

from symcost import hardware, models  # noqa: E402
from symcost.errors import SymcostError, one_line  # noqa: E402
from symcost.plan.serving import serving_curve  # noqa: E402

INSTALL_HINT = ("aiconfigurator-core is not installed: pip install aiconfigurator-core (NVIDIA's peer tool, for "
                "this benchmark only; it is never a symcost dependency)")

# Qwen3-32B's published shapes, https://huggingface.co/Qwen/Qwen3-32B/blob/main/config.json
QWEN3_32B = {"model_type": "qwen3", "hidden_size": 5120, "intermediate_size": 25600, "num_attention_heads": 64,
             "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 64, "vocab_size": 151936,
             "tie_word_embeddings": False}
# the run's checkpoint -> symcost's model (Llama 3.1 has Llama 3's shapes: RoPE scaling costs nothing)
MODELS = {"meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b", "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3.1-8b",
          "meta-llama/Llama-3.1-70B": "llama-3.1-70b", "Qwen/Qwen3-32B": "qwen3-32b"}
CHIPS = {"h100_sxm": "H100_SXM", "h200_sxm": "H200_SXM", "b200_sxm": "B200"}
BACKEND_PROFILES = {"trtllm": "tensorrt-llm", "vllm": "vllm", "sglang": "sglang"}
# the run's GEMM format (empty: bf16) -> symcost's dtype; FP8 block scaling is costed as per-tensor FP8
FORMATS = {"": "bf16", "fp8": "fp8_e4m3", "fp8_block": "fp8_e4m3", "nvfp4": "nvfp4"}
BUCKETS = ((1, 4), (5, 16), (17, 64), (65, 128), (129, 512))
"""Concurrency buckets of the summary (inclusive)."""


def silicon_csv() -> Path:
    """The shipped runs' path in the installed ``aiconfigurator-core``, found without importing it."""
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(INSTALL_HINT)
    path = Path(list(spec.submodule_search_locations)[0]) / "systems" / "silicon_sample.csv"
    if not path.exists():
        raise SystemExit(f"{path}: not in this aiconfigurator-core (the benchmark needs its silicon_sample.csv)")
    return path


@dataclass(frozen=True)
class Run:
    """One measured run: what ran, at which concurrency, and its mean TTFT and TPOT (seconds)."""

    model: str
    chip: str
    backend: str
    version: str
    dtype: str
    tp: int
    isl: int
    osl: int
    concurrency: int
    ttft: float
    tpot: float


def read_runs(path: Path) -> tuple[list[Run], Counter]:
    """The aggregated runs symcost can cost, and the others counted by why they are left out."""
    runs, left = [], Counter()
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["mode"] != "agg":
                continue
            reason = _left_out(row)
            if reason:
                left[reason] += 1
                continue
            milli = 1e-3
            runs.append(Run(MODELS[row["model_path"]], CHIPS[row["system"]], row["backend"],
                            row["backend_version"] or "?", FORMATS[row["gemm_quant_mode"]], int(float(row["tp_size"])),
                            int(row["isl"]), int(row["osl"]), int(float(row["batch_size"])),
                            float(row["silicon_ttft_ms"]) * milli, float(row["silicon_tpot_ms"]) * milli))
    return runs, left


def _left_out(row: dict[str, str]) -> str:
    if row["model_path"] not in MODELS:
        return "other models (MoE, multimodal or not in symcost)"
    if row["system"] not in CHIPS:
        return f"system {row['system']}"
    if row["gemm_quant_mode"] not in FORMATS:
        return f"format {row['gemm_quant_mode']}"
    if row["pp_size"] not in ("", "1", "1.0") or row["attention_dp_size"] not in ("", "1", "1.0"):
        return "pipeline or attention data parallelism"
    return ""


def symcost_model(name: str, dtype: str) -> Any:
    model = models.from_hf_config(QWEN3_32B) if name == "qwen3-32b" else models.get(
        {"llama-3.1-8b": "llama-3-8b", "llama-3.1-70b": "llama-3-70b"}[name])
    return model.with_kv_cache_dtype("fp8_e4m3") if dtype != "bf16" else model


@dataclass(frozen=True)
class Row:
    """A run and symcost's estimates of it (seconds): continuous batching and the static batch."""

    run: Run
    ttft: float
    tpot: float
    static_ttft: float
    static_tpot: float
    regime: str
    first_wave: float
    benchmark: float
    """The benchmark's mean TTFT: the first wave once in 10 requests per client (``benchmark_ttft``)."""


@dataclass
class Comparison:
    rows: list = None  # type: ignore[assignment]
    left: Counter = None  # type: ignore[assignment]
    errors: dict = None  # type: ignore[assignment]
    curves: int = 0
    seconds: float = 0.0


def estimate(runs: Sequence[Run]) -> Comparison:
    """symcost's estimate of every run (the runs it cannot cost are counted in ``left``)."""
    out = Comparison([], Counter(), {}, 0, 0.0)
    start = time.perf_counter()
    cache: dict[tuple, Any] = {}
    for run in runs:
        key = (run.model, run.chip, run.backend, run.dtype, run.tp, run.isl, run.osl)
        if key not in cache:
            cache[key] = _curve(run, out)
        curve = cache[key]
        if curve is None:
            continue
        model, chip, par = curve.model, curve.chip, {"tensor_parallel": run.tp}
        swept = curve.sweep([float(run.concurrency)])
        prefill = model.inference_step(chip, run.concurrency, run.isl, run.dtype, par, exact=False)
        decode = model.inference_step(chip, run.concurrency, run.isl + run.osl // 2, run.dtype, par, exact=False)
        out.rows.append(Row(run, float(swept.ttft[0]), float(swept.tpot[0]), float(prefill.ttft), float(decode.tpot),
                            curve.regime(run.concurrency), float(swept.first_wave_ttft[0]),
                            float(swept.benchmark_ttft[0])))
    out.curves = sum(1 for c in cache.values() if c is not None)
    out.seconds = time.perf_counter() - start
    return out


def _curve(run: Run, out: Comparison) -> Optional[Any]:
    chip = hardware.get(run.chip).with_runtime(BACKEND_PROFILES[run.backend])
    try:
        return serving_curve(symcost_model(run.model, run.dtype), chip, (run.isl, run.osl), dtype=run.dtype,
                             parallelism={"tensor_parallel": run.tp})
    except SymcostError as err:
        reason = "does not fit for symcost" if str(err).startswith("memory:") else "symcost refuses"
        out.left[reason] += 1
        out.errors.setdefault(reason, one_line(err))
        return None


# -- the tables ----------------------------------------------------------------------------------


def _stats(ratios: Sequence[float]) -> str:
    """``median ratio (mean |ln ratio|)``."""
    return f"{statistics.median(ratios):.2f} ({statistics.fmean(abs(math.log(r)) for r in ratios):.2f})"


def _bucket(c: int) -> str:
    lo, hi = next(b for b in BUCKETS if b[0] <= c <= b[1])
    return f"{lo}-{hi}"


def summary_table(rows: Sequence[Row], key: Any, names: Sequence[str]) -> str:
    """One line per value of ``key``: runs, then TTFT and TPOT ratios of continuous batching and
    of the static batch (median ratio and mean |ln ratio| each)."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    head = ("| " + " | ".join(names) + " | runs | TPOT | static TPOT | TTFT | TTFT first wave | TTFT steady | "
            "static TTFT |")
    lines = [head, "|" + "---|" * len(names) + "---:|" * 7]
    for k in sorted(groups, key=_sort_key):
        g = groups[k]
        cells = [_stats([r.tpot / r.run.tpot for r in g]), _stats([r.static_tpot / r.run.tpot for r in g]),
                 _stats([r.benchmark / r.run.ttft for r in g]), _stats([r.first_wave / r.run.ttft for r in g]),
                 _stats([r.ttft / r.run.ttft for r in g]),
                 _stats([r.static_ttft / r.run.ttft for r in g])]
        lines.append("| " + " | ".join(map(str, k)) + f" | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sort_key(k: tuple) -> tuple:
    return tuple(int(x.split("-")[0]) if isinstance(x, str) and x[:1].isdigit() else x for x in k)


def report(out: Comparison, path: Path, runs_table: bool = False) -> str:
    rows = out.rows
    versions = sorted({f"{r.run.backend} {r.run.version}" for r in rows})
    left = ", ".join(f"{reason} {n}" for reason, n in sorted(out.left.items())) or "none"
    parts = ["```text", f"runs: {path.name} of aiconfigurator-core {_version('aiconfigurator-core')}, "
             f"aggregated; compared {len(rows)}; left out: {left}"]
    parts += [f"  {reason}, e.g.: {message}" for reason, message in out.errors.items()]
    parts += [f"measured on: {', '.join(versions)}; symcost profiles: "
              + ", ".join(f"{b} -> {p} ({hardware.runtime(p).version})" for b, p in BACKEND_PROFILES.items()),
              f"time: {out.curves} serving curves and {len(rows)} runs in {out.seconds:.0f} s "
              f"(machine: {os.cpu_count()} cores)", "```", "",
              "Each cell: the median ratio symcost / measured (mean |ln ratio|: 0.10 is about 10 % off). "
              "TTFT: the benchmark's mean, the first wave once in 10 requests per client (benchmark_ttft); "
              "first wave: all c requests sent at once to an idle engine; steady: the closed loop's steady "
              "state; static: the issue's baseline, one static batch of c sequences (as TPOT).", "",
              "By backend and concurrency:", "",
              summary_table(rows, lambda r: (r.run.backend, _bucket(r.run.concurrency)), ("backend", "concurrency")),
              "", "By backend and regime:", "",
              summary_table(rows, lambda r: (r.run.backend, r.regime), ("backend", "regime")),
              "", "By model, GPU, backend and format:", "",
              summary_table(rows, lambda r: (r.run.model, r.run.chip, r.run.backend, r.run.dtype),
                            ("model", "GPU", "backend", "format")), "", "All runs:", "",
              summary_table(rows, lambda r: ("every run",), ("set",))]
    if runs_table:
        parts += ["", "Every run:", "", runs_markdown(rows)]
    return "\n".join(parts) + "\n"


def runs_markdown(rows: Sequence[Row]) -> str:
    lines = ["| run | regime | TTFT measured (ms) | symcost | first wave | steady | TPOT measured (ms) | symcost | "
             "static |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        u = r.run
        label = f"{u.model} {u.chip} {u.backend} {u.dtype} tp{u.tp} {u.isl}/{u.osl} c{u.concurrency}"
        lines.append(f"| {label} | {r.regime} | {u.ttft * 1e3:.1f} | {r.benchmark * 1e3:.1f} | "
                     f"{r.first_wave * 1e3:.1f} | {r.ttft * 1e3:.1f} | "
                     f"{u.tpot * 1e3:.2f} | "
                     f"{r.tpot * 1e3:.2f} | {r.static_tpot * 1e3:.2f} |")
    return "\n".join(lines)


def _version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


README_BEGIN = "<!-- serving-silicon:begin (written by python benchmarks/serving_silicon.py --docs) -->"
README_END = "<!-- serving-silicon:end -->"


def write_readme(path: str, output: str, command: str, today: Optional[str] = None) -> None:
    """Replace the block between :data:`README_BEGIN` and :data:`README_END` in ``path``."""
    replace_between(path, README_BEGIN, README_END, dated_run(output, command, today))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Llama-3.1-8B on H100 (TensorRT-LLM) only")
    parser.add_argument("--runs", action="store_true", help="also print every run")
    parser.add_argument("--docs", "--readme", dest="readme", action="store_true", help="also write the summary "
                        "into docs/explanation/fidelity.md between its serving-silicon markers")
    args = parser.parse_args(argv)
    path = silicon_csv()
    runs, left = read_runs(path)
    if args.quick:
        runs = [r for r in runs if r.model == "llama-3.1-8b" and r.chip == "H100_SXM"]
    out = estimate(runs)
    out.left.update(left)
    print(report(out, path, args.runs), end="")
    if args.readme:
        command = " ".join(["python benchmarks/serving_silicon.py",
                            *(a for a in (argv if argv is not None else sys.argv[1:])
                              if a not in ("--docs", "--readme"))])
        write_readme(page("serving-silicon"), report(out, path), command)


if __name__ == "__main__":
    main()
