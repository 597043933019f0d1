"""Calibrating the efficiency model on published inference measurements (docs/conventions.md §17).

The data, ``symcost/data/inference_calibration.csv``, holds 20 measured runs copied from public
documents, each with its source and the source's own definition of the metric: TensorRT-LLM's
performance tables (static-batching throughput on A100 FP16 and H100 FP8; batch-1 first-token
latency) and FasterTransformer's GPT-175B and GPT-6.7B end-to-end latencies on A100.

Each row is predicted with :meth:`~symcost.models.model.Model.inference_step` on the realistic chip under
the row's engine profile: a request batch takes ``TTFT + n * TPOT`` where ``n`` is the engine's
decode-step count (:meth:`~symcost.hardware.Runtime.decode_steps`) and TPOT is the mean over the
contexts the steps attend to (exact where the step time is affine in the context, as it is when
decode attention streams the KV cache: the mean of the first and last step). The fit chooses the
efficiency parameters (:data:`PARAMETERS`) on exact rational grids by coordinate descent,
minimising the sum of squared log errors of the predicted times; every other number is a cited
datasheet figure. The chips are built with the parameters as symbols, so each row's prediction
is one expression, compiled once and evaluated for every candidate.

>>> rows = load_rows()
>>> len(rows), rows[0].model, rows[0].metric
(20, 'Llama-2-7B', 'throughput_out_tok_per_s_per_gpu')
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any, Callable, Mapping, Sequence

import sympy as sp

from ..core import symbols as sym
from ..hardware import Hardware, runtime
from ..hardware import get as get_hardware
from ..models.model import Model
from .descent import coordinate_descent

__all__ = ["PARAMETERS", "START", "Fit", "InferenceRow", "build_model", "engine", "fit", "leave_one_source_out",
           "load_rows", "predict", "regime", "row_time_expr", "shipped", "validation_table", "write_profiles"]

# The fitted parameters: the symbol each stands for and its grid (exact rationals). Every kernel
# term comes from the per-op tables (symcost.hardware.fit); these runs fit only what per-op tables
# cannot show: the engines' time outside the kernels.
_MICRO = tuple(Fraction(k, 10**7) for k in range(0, 301))      # 0 .. 30 us in 0.1 us steps
_COLL = tuple(Fraction(k, 2 * 10**6) for k in range(0, 201))   # 0 .. 100 us in 0.5 us steps
_MILLI = tuple(Fraction(k, 10**4) for k in range(0, 51))       # 0 .. 5 ms in 0.1 ms steps
PARAMETERS: dict[str, tuple[sp.Symbol, tuple[Fraction, ...]]] = {
    "launch_time": (sym.launch_time, _MICRO),
    "matmul_efficiency_8bit": (sym.matmul_efficiency_8bit, tuple(Fraction(k, 100) for k in range(20, 101))),
    "collective_overhead": (sym.collective_overhead, _COLL),
    "step_overhead": (sym.step_overhead, _MILLI),
}
"""Name -> (symbol, grid) of every fitted parameter."""

_GPU = {"A100_SXM_80GB": "A100_SXM_80GB", "H100_SXM_80GB": "H100_SXM"}
_ENGINE_PARAMETERS = {"step_overhead": ("tensorrt-llm-0.x",),
                      "collective_overhead": ("tensorrt-llm-0.x", "fastertransformer"),
                      "launch_time": ("tensorrt-llm-0.x", "fastertransformer"),
                      "matmul_efficiency_8bit": ("tensorrt-llm-0.x",)}
"""The parameters and the engines whose rows fit them: TensorRT-LLM's step overhead
(FasterTransformer has no scheduler); both engines' time per collective call beyond NCCL's own
base latency and their host time per kernel launch (both launch from C++ without CUDA graphs):
one shared value each."""


@dataclass(frozen=True)
class InferenceRow:
    """One measured run of ``inference_calibration.csv``."""

    id: int
    model: str
    gpu: str
    tp: int
    batch: int
    input_len: int
    output_len: int
    dtype: str
    framework: str
    metric: str
    value: Fraction
    unit: str
    source: str

    @property
    def source_key(self) -> str:
        """The table the row comes from (what leave-one-source-out holds out)."""
        if self.framework.startswith("FasterTransformer"):
            return "FasterTransformer " + self.model.split(" ")[0]
        return "TensorRT-LLM " + ("first-token latency" if self.metric == "ttft" else "throughput")

    @property
    def measured_seconds(self) -> Fraction:
        """The measured time of the request batch (throughput converted by the source's own
        definition ``batch * output_len / total_latency / tp``)."""
        if self.metric == "throughput_out_tok_per_s_per_gpu":
            return Fraction(self.batch * self.output_len) / (self.value * self.tp)
        return self.value / 1000  # ms


def load_rows() -> list[InferenceRow]:
    """The 20 rows of ``inference_calibration.csv``."""
    text = resources.files("symcost.data").joinpath("inference_calibration.csv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [InferenceRow(int(r["id"]), r["model"], r["gpu"], int(r["tp"]), int(r["batch"]), int(r["input_len"]),
                         int(r["output_len"]), r["dtype"], r["framework"], r["metric"], Fraction(r["value"]),
                         r["unit"], r["source"]) for r in csv.DictReader(lines)]


def engine(row: InferenceRow) -> str:
    """The engine profile of ``row``'s framework (its version's)."""
    return "fastertransformer" if row.framework.startswith("FasterTransformer") else "tensorrt-llm-0.x"


def dtype(row: InferenceRow) -> str:
    """The GEMM dtype of ``row`` (FP8 rows: e4m3 weights and activations)."""
    return "fp8_e4m3" if row.dtype == "fp8" else "fp16"


def build_model(row: InferenceRow) -> Model:
    """The model of ``row`` with its tensor parallelism. Llama 2 from its config.json; FP8 rows
    keep an FP8 KV cache (``--fp8_kv_cache``) and TensorRT-LLM's fused context attention
    (``--enable_context_fmha``). The Megatron GPT shapes as FasterTransformer runs them: no dropout,
    vocabulary 51200, and unfused context attention, its scores written to and read from HBM
    (docs/gpt_guide.md: "the sequence length of query in the ``ContextSelfAttention`` is maximum
    input length, so we use cuBLAS to leverage the tensor core"; ``GptContextAttentionLayer.cc``:
    Q Kᵀ and P V by ``stridedBatchedGemm`` around ``invokeMaskedSoftMax``, and v4.0's
    ``open_decoder.h`` alike).

    NB: v5.0 writes the scores in fp32 (``is_context_qk_buf_float_``) and the softmax reads a
    ``[b, 1, s, s]`` mask; both are costed at the model's 2 bytes per score and without the mask."""
    par = {"tensor_parallel": row.tp}
    kv = "fp8_e4m3" if row.dtype == "fp8" else None
    shapes: dict[str, dict[str, Any]] = {
        "Llama-2-7B": dict(hidden_size=4096, num_heads=32, num_kv_heads=32, num_layers=32, vocab_size=32000,
                           intermediate_size=11008),
        "Llama-2-70B": dict(hidden_size=8192, num_heads=64, num_kv_heads=8, num_layers=80, vocab_size=32000,
                            intermediate_size=28672),
    }
    if row.model in shapes:
        return Model.llama(name=row.model, kv_cache_dtype=kv, parallelism=par, **shapes[row.model])
    gpt = {"GPT-175B": (12288, 96, 96), "GPT-6.7B": (4096, 32, 32)}[row.model.split(" ")[0]]
    return Model.gpt(name=row.model, hidden_size=gpt[0], num_heads=gpt[1], num_layers=gpt[2], vocab_size=51200,
                     seq_len=2048, flash_attention=False, dropout=False, parallelism=par)


def _chip(row: InferenceRow, values: Mapping[str, Any]) -> Hardware:
    """The row's realistic chip under its engine profile, with the fitted parameters ``values``
    (numbers or symbols) in place of the profile's."""
    name = engine(row)
    chip = get_hardware(_GPU[row.gpu]).with_runtime(name)
    mine = {k: v for k, v in values.items() if name in _ENGINE_PARAMETERS[k]}
    terms = {k: v for k, v in mine.items() if k in ("step_overhead", "collective_overhead")}
    fields = {k: v for k, v in mine.items() if k not in terms}
    return chip.with_efficiency(**fields, runtime=chip.runtime.model_copy(update=terms))


def row_time_expr(row: InferenceRow, chip: Hardware) -> sp.Expr:
    """The predicted seconds of ``row``'s request batch on ``chip`` (symbols allowed in the
    chip's efficiency fields): ``TTFT + n * (TPOT(first) + TPOT(last)) / 2``."""
    model = build_model(row)
    dt = dtype(row)
    first = model.inference_step(chip, row.batch, row.input_len, dt, parallelism={"tensor_parallel": row.tp})
    ttft = sp.sympify(first.ttft)
    if row.metric == "ttft":
        return ttft
    n = chip.runtime.decode_steps(row.output_len)
    if n == 0:
        return ttft
    par = {"tensor_parallel": row.tp}
    lo = model.inference_step(chip, row.batch, row.input_len + 1, dt, parallelism=par).tpot
    hi = model.inference_step(chip, row.batch, row.input_len + n, dt, parallelism=par).tpot
    return ttft + n * (sp.sympify(lo) + sp.sympify(hi)) / 2


def _symbolic_values(names: Sequence[str]) -> dict[str, sp.Symbol]:
    return {name: PARAMETERS[name][0] for name in names}


@dataclass(frozen=True)
class Fit:
    """Fitted parameter values with each row's predicted and measured seconds."""

    values: dict[str, Fraction]
    predicted: dict[int, float]
    rows: tuple[InferenceRow, ...]

    def relative_error(self, row: InferenceRow) -> float:
        """Predicted over measured time, minus one (positive: the model is too slow)."""
        return self.predicted[row.id] / float(row.measured_seconds) - 1


@functools.lru_cache(maxsize=4)
def _compiled(names: tuple[str, ...]) -> dict[int, Callable[..., float]]:
    """Every shipped row's predicted seconds as a compiled function of the parameters ``names``."""
    symbols = [PARAMETERS[n][0] for n in names]
    out = {}
    for row in load_rows():
        expr = row_time_expr(row, _chip(row, _symbolic_values(names)))
        out[row.id] = sp.lambdify(symbols, expr, modules="math", cse=True)
    return out


def _loss(functions: Mapping[int, Callable[..., float]], rows: Sequence[InferenceRow], x: Sequence[float]) -> float:
    total = 0.0
    for row in rows:
        total += math.log(functions[row.id](*x) / float(row.measured_seconds)) ** 2
    return total


START: dict[str, Fraction] = {
    "launch_time": Fraction(5, 10**6), "matmul_efficiency_8bit": Fraction(7, 10), "collective_overhead": Fraction(0),
    "step_overhead": Fraction(1, 1000),
}
"""Where the descent starts: a few microseconds per host launch, no engine time per collective
call beyond NCCL's and a millisecond per step."""


def fit(rows: Sequence[InferenceRow] | None = None, start: Mapping[str, Fraction] | None = None,
        names: Sequence[str] = tuple(PARAMETERS)) -> Fit:
    """Coordinate descent over the exact grids of :data:`PARAMETERS` from :data:`START` until no
    single parameter change lowers the sum of squared log errors on ``rows`` (default: all).
    Deterministic. Every shipped row is predicted with the result."""
    rows = list(load_rows() if rows is None else rows)
    functions = _compiled(tuple(names))
    start = dict(START, **(start or {}))
    current, x = coordinate_descent({n: PARAMETERS[n][1] for n in names}, start,
                                    lambda trial: _loss(functions, rows, trial))
    predicted = {row.id: functions[row.id](*x) for row in load_rows()}
    return Fit(current, predicted, tuple(load_rows()))


def predict(row: InferenceRow, chip: Hardware | str | None = None) -> Fraction:
    """The predicted seconds of ``row`` on ``chip`` (default: the realistic preset of its GPU)
    under its engine profile, exactly."""
    base = get_hardware(_GPU[row.gpu] if chip is None else chip)
    value = sp.Rational(row_time_expr(row, base.with_runtime(engine(row))))
    return Fraction(int(value.p), int(value.q))


def leave_one_source_out() -> dict[str, Fit]:
    """For each source table: the fit on the other tables (predicting every row)."""
    rows = load_rows()
    return {key: fit([r for r in rows if r.source_key != key]) for key in dict.fromkeys(r.source_key for r in rows)}


def regime(row: InferenceRow) -> str:
    """The row's regime: prefill (first-token latency), small-batch decode (batch <= 8, the
    end-to-end latency dominated by decode steps), large batch (the rest)."""
    if row.metric == "ttft":
        return "prefill"
    return "decode, small batch" if row.batch <= 8 else "large batch"


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def validation_table(result: Fit | None = None, loso: Mapping[str, Fit] | None = None) -> str:
    """The validation tables of docs/explanation/fidelity.md (markdown): each row measured vs
    predicted by the shipped defaults (the fit), the mean absolute and signed error per regime, and
    leave-one-source-out."""
    result = fit() if result is None else result
    loso = leave_one_source_out() if loso is None else loso
    lines = ["| id | model | GPU | TP | batch | in/out | dtype | engine | measured | predicted | error |",
             "|---:|---|---|---:|---:|---|---|---|---:|---:|---:|"]
    for row in result.rows:
        measured, predicted = float(row.measured_seconds), result.predicted[row.id]
        lines.append(f"| {row.id} | {row.model.split(' ')[0]} | {row.gpu.split('_')[0]} | {row.tp} | {row.batch} | "
                     f"{row.input_len}/{row.output_len} | {row.dtype} | {engine(row)} | {measured:.4g} s | "
                     f"{predicted:.4g} s | {_pct(result.relative_error(row))} |")
    lines += ["", "| regime | rows | mean abs error | mean signed error |", "|---|---:|---:|---:|"]
    groups: dict[str, list[float]] = {}
    for row in result.rows:
        groups.setdefault(regime(row), []).append(result.relative_error(row))
    groups["all"] = [result.relative_error(r) for r in result.rows]
    for name, errs in groups.items():
        lines.append(f"| {name} | {len(errs)} | {sum(map(abs, errs)) / len(errs):.1%} | "
                     f"{_pct(sum(errs) / len(errs))} |")
    lines += ["", "| held-out source | rows | mean abs error | mean signed error |", "|---|---:|---:|---:|"]
    for key, held in loso.items():
        errs = [held.relative_error(r) for r in held.rows if r.source_key == key]
        lines.append(f"| {key} | {len(errs)} | {sum(map(abs, errs)) / len(errs):.1%} | "
                     f"{_pct(sum(errs) / len(errs))} |")
    return "\n".join(lines)


_SOURCE = ("fitted on symcost/data/inference_calibration.csv by symcost.plan.calibration_inference.fit() "
           "(benchmarks/calibrate.py)")
_IN_US = ("launch_time", "collective_overhead")


def shipped() -> dict[str, Fraction]:
    """The fitted parameters as the engine profiles ship them (what :func:`fit` must reproduce)."""
    values: dict[str, Fraction] = {}
    for name, engines in _ENGINE_PARAMETERS.items():
        profile = runtime(engines[0])
        value = profile.overrides_for("*").get(name, getattr(profile, name, None))
        values[name] = Fraction(str(sp.Rational(value)))
    return values


def write_profiles(result: Fit, folder: Any = None) -> list[str]:
    """Write ``result``'s values into the engine profiles that fit them
    (``symcost/hardware/engines/<engine>.json``): the profiles' terms, and the chip fields for every
    chip (``"*"``); the names of the files written."""
    import json
    from decimal import Decimal
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "hardware" / "engines" if folder is None else Path(folder)
    written = []
    for name in dict.fromkeys(e for engines in _ENGINE_PARAMETERS.values() for e in engines):
        path = folder / f"{name}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        for field, engines in _ENGINE_PARAMETERS.items():
            if name not in engines:
                continue
            value = result.values[field] * (10**6 if field in _IN_US else 1)
            text = str((Decimal(value.numerator) / Decimal(value.denominator)).normalize())
            entry: dict[str, Any] = {"value": format(Decimal(text), "f")}
            if field in _IN_US:
                entry["unit"] = "us"
            elif field == "step_overhead":
                entry["unit"] = "s"
            entry["source"] = _SOURCE
            if field in ("step_overhead", "collective_overhead"):
                data["fields"][field] = entry
            else:
                data.setdefault("chips", {}).setdefault("*", {})[field] = entry
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(str(path))
    return written

