"""The op families the time model is fitted on, each against the measured rows of its table.

A family names its table, the rows it uses, the chip fields it fits and how a row becomes a
symcost op. The prediction is the library's own formula: the op is built with SymPy symbols for
the row's sizes, timed by :func:`symcost.hardware.timing.op_time` (or ``collective_time``) on the
preset chip with the fitted fields as symbols, and compiled once with
:func:`symcost.core.sweep.compile_numpy`; the fit (:func:`fit`) minimises the squared log error
over the rows with ``scipy.optimize.least_squares`` and rounds each value to three significant
digits (an exact decimal, so the presets stay exact).

Rows ("LLM-shaped" subsets of the full grids, where the time model is used; the error tables also
report the full grids):

- GEMM: ``n, k >= 1024`` and ``m`` a power of two from 1 to 16384;
- prefill attention: causal, no window, ``h`` a multiple of ``g``, ``b s <= 65536``, ``s >= 512``;
- decode attention: no window, grouped-query attention with 4 or 8 query heads per KV head and at
  most 8 KV heads per GPU, or multi-head attention with at most 64 heads per GPU; ``d = 128``,
  ``b <= 256``, 1 k to 16 k keys; not the rows measured faster than their KV cache at the
  datasheet HBM bandwidth (:func:`faster_than_hbm`);
- elementwise: quantizing an ``m x k`` 16-bit matrix to FP8 (read 2, write 1 byte per element), the
  passes of at most 65,536 elements and those of 100 MB and more (beyond the L2 cache);
- collectives: every measured size and GPU count (2 KB to 512 MB, 2 to 8 GPUs), 16-bit and
  graph-replayed (:func:`replayed_16bit`); an engine's all-reduce not the rows in its own NCCL
  window measured far slower than NCCL's table (:func:`slower_than_nccl`); all-to-all on its own
  (NCCL runs it as grouped sends, not a ring), with the robust loss: its small messages come in two
  modes (7 or 16 us on 8 H100s for neighbouring sizes), which no smooth form describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sympy as sp

from ...core.dtypes import DataType
from ...core.ops import VECTOR_FLOPS, AttentionCore, Collective, CollectiveKind, ExpertMapSort, Matmul, Vector
from ..chip import Hardware
from ..timing import collective_time, op_time
from .tables import Table, read

__all__ = ["Family", "FitResult", "GEMM_DTYPES", "NCCL_HARNESS_FACTOR", "SIZES", "faster_than_hbm", "fit", "predict",
           "replayed_16bit", "shaped_decode_rows", "slower_than_nccl"]

GEMM_DTYPES = {"bfloat16": "bf16", "fp8": "fp8_e4m3", "nvfp4": "nvfp4"}
"""The tables' GEMM dtypes and the symcost dtype each measures."""

_M = tuple(2**i for i in range(15))
SIZES = {name: sp.Symbol(name, positive=True, integer=True) for name in ("m", "n", "k", "b", "s", "h", "g", "d")}
"""The row sizes as symbols (positive integers), what the compiled predictions take."""
_E_KV = sp.Symbol("e_kv", positive=True, rational=True)
_BYTES = sp.Symbol("M", positive=True, integer=True)
COLLECTOR_ROW_BYTES = 4096 * 2
"""Bytes of one token's row in AIConfigurator's all-reduce tables: ``[size // 4096, 4096]`` 16-bit
elements (ai-dynamo/aiconfigurator collector/collect_all_reduce.py, ``get_input_shape_and_comm_size``;
below 4096 elements one row, which the token switch counts alike: fewer than 128 either way)."""

# fitted fields: (symbol, scale of the fit's variable, lower bound, upper bound) -- times in us
_US = Fraction(1, 10**6)
PARAMETERS: dict[str, tuple[sp.Symbol, Fraction, float, float]] = {
    "matmul_efficiency": (sp.Symbol("eta_p0", positive=True), Fraction(1), 0.05, 1.0),
    "matmul_efficiency_8bit": (sp.Symbol("eta_p1", positive=True), Fraction(1), 0.05, 1.0),
    "matmul_efficiency_4bit": (sp.Symbol("eta_p2", positive=True), Fraction(1), 0.05, 1.0),
    "gemm_time": (sp.Symbol("t_p0", nonnegative=True), _US, 0.0, 100.0),
    "gemm_time_8bit": (sp.Symbol("t_p1", nonnegative=True), _US, 0.0, 100.0),
    "gemm_time_4bit": (sp.Symbol("t_p2", nonnegative=True), _US, 0.0, 100.0),
    "quantize_bytes_8bit": (sp.Symbol("q_p1", nonnegative=True), Fraction(1), 0.0, 40.0),
    "quantize_bytes_4bit": (sp.Symbol("q_p2", nonnegative=True), Fraction(1), 0.0, 40.0),
    "gemm_memory_efficiency": (sp.Symbol("eta_p3", positive=True), Fraction(1), 0.05, 1.0),
    "attention_efficiency": (sp.Symbol("eta_p4", positive=True), Fraction(1), 0.05, 1.0),
    "attention_time": (sp.Symbol("t_p3", nonnegative=True), _US, 0.0, 100.0),
    "attention_io_efficiency": (sp.Symbol("eta_p5", positive=True), Fraction(1), 0.02, 1.0),
    "attention_memory_efficiency": (sp.Symbol("eta_p6", positive=True), Fraction(1), 0.05, 1.0),
    "attention_decode_time": (sp.Symbol("t_p4", nonnegative=True), _US, 0.0, 100.0),
    "grouped_decode_time_8bit": (sp.Symbol("t_p8dec", nonnegative=True), _US, 0.0, 100.0),
    "attention_exp_rate": (sp.Symbol("F_p0", positive=True), Fraction(10**12), 0.1, 100.0),
    "mha_decode_rate": (sp.Symbol("R_p0", positive=True), Fraction(10**12), 0.1, 100.0),
    "decode_ramp_time": (sp.Symbol("t_p5dec", nonnegative=True), _US, 0.0, 100.0),
    "decode_ramp_bytes": (sp.Symbol("M_p0dec", positive=True), Fraction(10**6), 0.1, 10000.0),
    "memory_efficiency": (sp.Symbol("eta_p7", positive=True), Fraction(1), 0.05, 1.0),
    "kernel_time": (sp.Symbol("t_p6", nonnegative=True), _US, 0.0, 100.0),
    "collective_base_latency": (sp.Symbol("t_p7", nonnegative=True), _US, 0.0, 100.0),
    "collective_latency": (sp.Symbol("t_p8", positive=True), _US, 0.01, 20.0),
    "network_efficiency": (sp.Symbol("eta_p8", positive=True), Fraction(1), 0.05, 1.0),
    "ll_base_latency": (sp.Symbol("t_p9", nonnegative=True), _US, 0.0, 100.0),
    "ll_latency": (sp.Symbol("t_p10", nonnegative=True), _US, 0.0, 20.0),
    "ll_efficiency": (sp.Symbol("eta_p9", positive=True), Fraction(1), 0.01, 1.0),
    "nvls_latency": (sp.Symbol("t_p12", positive=True), _US, 0.1, 200.0),
    # NB: eta_nvls multiplies NCCL's kappa_nvls (Hardware.nccl_nvls_efficiency: 0.85 Hopper, 0.74
    # Blackwell), so the bound eta <= 1 caps the NVLS bus bandwidth at kappa * link, NCCL's own figure
    "nvls_efficiency": (sp.Symbol("eta_p11", positive=True), Fraction(1), 0.05, 1.0),
    # NB: eta_gg may exceed 1 (the grouped kernels outrun the dense ones); 5/4 is a plausibility
    # cap, no source: the fit tightens it to 1 / max eta_mm so the preset loads (grouped_upper)
    "grouped_gemm_efficiency": (sp.Symbol("eta_p12", positive=True), Fraction(1), 0.05, 1.25),
    "grouped_gemm_efficiency_8bit": (sp.Symbol("eta_p18", positive=True), Fraction(1), 0.05, 1.35),
    "grouped_gemm_memory_efficiency": (sp.Symbol("eta_p13", positive=True), Fraction(1), 0.05, 1.0),
    "grouped_gemm_time": (sp.Symbol("t_p13", nonnegative=True), _US, 0.0, 200.0),
    "grouped_gemm_output_efficiency": (sp.Symbol("eta_p17", positive=True), Fraction(1), 0.02, 1.0),
    "all_to_all_latency": (sp.Symbol("t_p14", nonnegative=True), _US, 0.0, 100.0),
    "all_to_all_peer_latency": (sp.Symbol("t_p15", nonnegative=True), _US, 0.0, 10.0),
    "all_to_all_ll_latency": (sp.Symbol("t_p16", nonnegative=True), _US, 0.0, 100.0),
    "all_to_all_ll_efficiency": (sp.Symbol("eta_p14", positive=True), Fraction(1), 0.001, 1.0),
    "all_to_all_efficiency": (sp.Symbol("eta_p15", positive=True), Fraction(1), 0.05, 1.0),
    "custom_allreduce_latency": (sp.Symbol("t_p11", positive=True), _US, 0.1, 100.0),
    "custom_allreduce_efficiency": (sp.Symbol("eta_p10", positive=True), Fraction(1), 0.02, 1.0),
    "custom_allreduce_peer_latency": (sp.Symbol("t_p17", nonnegative=True), _US, 0.0, 10.0),
    "custom_allreduce_two_shot_latency": (sp.Symbol("t_p18", positive=True), _US, 0.1, 100.0),
    "custom_allreduce_block_rate": (sp.Symbol("R_p1", positive=True), Fraction(10**9), 0.1, 1000.0),
    "symm_allreduce_latency": (sp.Symbol("t_p19", positive=True), _US, 0.1, 100.0),
    "symm_allreduce_efficiency": (sp.Symbol("eta_p16", positive=True), Fraction(1), 0.02, 1.0),
}
"""Every fittable chip field: the stand-in symbol the fit varies, the unit of its variable
(seconds are fitted in microseconds, rates in 10^12 per second), and its bounds in that unit."""


@dataclass(frozen=True)
class Family:
    """One op family on one chip: the table, the rows' filter, the fitted chip fields and, for the
    fields fitted before it, their values (``fixed``)."""

    name: str
    chip: str
    table: Table
    fields: tuple[str, ...]
    build: Callable[[Any, Hardware], dict[tuple, tuple[sp.Expr, tuple[sp.Symbol, ...], Any]]]
    select: Callable[[Any], Any]
    start: tuple[float, ...]
    dtype: str = "bf16"
    runtime: str | None = None
    fixed: Mapping[str, Fraction] = field(default_factory=dict)
    robust: bool = False
    """Fit with a robust loss (``soft_l1`` on the log ratio, scale 0.1): a table whose rows hold
    a minority of kernel outliers the model's form does not describe (the MoE table's)."""
    starts: tuple[tuple[float, ...], ...] = ()
    """Further starting values: the fit keeps the least loss of all (a family with local minima)."""
    at_least: Mapping[str, str] = field(default_factory=dict)
    """Fields held at least another fitted field's value (``{field: floor field}``): the fit varies
    the excess over the floor (from 0), as a two-shot all-reduce's time per call is at least the
    one-shot's (its two barriers and second pass)."""
    left_out: Callable[[Any], tuple[int, int]] | None = None
    """For the report: ``frame -> (left, usable)``, how many of the rows the family's own filter picks
    a mechanical rule (:func:`slower_than_nccl`) leaves out of :attr:`select`'s, of how many."""

    def rows(self, everything: bool = False) -> Any:
        """The table rows this family fits (``everything``: the whole table)."""
        frame = read(self.table)
        return frame if everything else self.select(frame)


@dataclass(frozen=True)
class FitResult:
    """A family's fitted values (exact), and the predicted-over-measured ratio of each row."""

    family: Family
    values: dict[str, Fraction]
    ratios: Any
    grid_ratios: Any
    rows: Any = None
    """The fitted rows (a DataFrame) with their ``ratio`` column."""

    @staticmethod
    def summary(ratios: Any) -> dict[str, float]:
        """Rows, median ratio, mean absolute error ``mean |ratio - 1|``, 90th percentile of it."""
        r = np.asarray(ratios, dtype=float)
        return {"rows": float(r.size), "median": float(np.median(r)), "mae": float(np.mean(np.abs(r - 1))),
                "p90": float(np.quantile(np.abs(r - 1), 0.9))}


def _chip(preset: Hardware, family: Family, values: Mapping[str, Any] | None = None) -> Hardware:
    """The preset with the family's fields as the fit's symbols (or ``values``) and the fixed ones in place."""
    update: dict[str, Any] = dict(family.fixed)
    for name in family.fields:
        update[name] = PARAMETERS[name][0] if values is None else values[name]
    # NB: the engine profile first (its own fields for this chip), then the fitted and fixed ones
    chip = preset.with_runtime(family.runtime) if family.runtime else preset
    return Hardware(**{**{f: getattr(chip, f) for f in type(chip).model_fields}, **update})


def _compiled(family: Family, preset: Hardware) -> list[tuple[Any, Callable[..., Any], tuple[sp.Symbol, ...]]]:
    """The family's predictions compiled per group of rows: (row mask, function, its row symbols)."""
    from ...core.sweep import compile_numpy

    params = tuple(PARAMETERS[name][0] for name in family.fields)
    out = []
    for _, (expr, row_symbols, mask) in family.build(family.rows(everything=True), _chip(preset, family)).items():
        out.append((mask, compile_numpy((expr,), tuple(row_symbols) + params), row_symbols))
    return out


def predict(family: Family, preset: Hardware, values: Mapping[str, Fraction], everything: bool = False) -> Any:
    """Predicted seconds of the family's rows (``everything``: every row of its table) with ``values``."""
    frame = family.rows(everything=True)
    chosen = frame.index.isin(family.rows().index) if not everything else np.ones(len(frame), dtype=bool)
    x = [float(values[name]) for name in family.fields]
    out = np.full(len(frame), np.nan)
    for mask, function, row_symbols in _compiled(family, preset):
        pick = mask & chosen
        if pick.any():
            columns = [frame.loc[pick, str(s)].to_numpy(dtype=float) for s in row_symbols]
            out[pick] = function(*columns, *x)[0]
    return out[chosen]


def _round(value: float, unit: Fraction) -> Fraction:
    """``value`` (in ``unit``) to three significant digits, exactly, in base units; below a
    thousandth of its unit (1 ns for a time in microseconds, far under the tables' resolution) 0:
    the optimizer stops a term pushed to its bound at 2e-16 us, not at 0."""
    if abs(value) < 1e-3:
        return Fraction(0)
    return Fraction(f"{value:.3g}") * unit


def fit(family: Family, preset: Hardware) -> FitResult:
    """Least squares on the log ratio over the family's rows, values rounded to three significant
    digits; the ratios of the rounded values on the fitted rows and on the whole grid."""
    from scipy.optimize import least_squares

    frame = family.rows(everything=True)
    chosen = frame.index.isin(family.rows().index)
    measured = frame["seconds"].to_numpy(dtype=float)
    groups = []
    for mask, function, row_symbols in _compiled(family, preset):
        pick = mask & chosen
        if pick.any():
            groups.append((function, [frame.loc[pick, str(s)].to_numpy(dtype=float) for s in row_symbols],
                           measured[pick]))
    units = [float(PARAMETERS[name][1]) for name in family.fields]
    floors = [family.fields.index(family.at_least[name]) if name in family.at_least else None
              for name in family.fields]

    def actual(x: Sequence[float]) -> list[float]:
        """The fields' values from the fitted variables (an excess over its floor where ``at_least``)."""
        return [v if f is None else v + x[f] for v, f in zip(x, floors)]

    def residuals(x: Sequence[float]) -> Any:
        scaled = [v * u for v, u in zip(actual(x), units)]
        return np.concatenate([np.log(function(*cols, *scaled)[0] / y) for function, cols, y in groups])

    lower = [PARAMETERS[name][2] if f is None else 0.0 for name, f in zip(family.fields, floors)]
    caps = {name: grouped_upper(family, preset) for name in family.fields if name == "grouped_gemm_efficiency"}
    upper = [float(caps[name]) if name in caps else PARAMETERS[name][3] for name in family.fields]
    robust = {"loss": "soft_l1", "f_scale": 0.1} if family.robust else {}
    solutions = []
    for begin in (family.start, *family.starts):  # the least loss of every start
        start = [s if f is None else s - begin[f] for s, f in zip(begin, floors)]
        start = [min(max(s, lo), hi) for s, lo, hi in zip(start, lower, upper)]
        solutions.append(least_squares(residuals, start, bounds=(lower, upper), x_scale="jac", **robust))
    solution = min(solutions, key=lambda tried: float(tried.cost))
    values = {name: min(_round(float(v), PARAMETERS[name][1]), Fraction(1)) if PARAMETERS[name][1] == 1
              and name.endswith("efficiency") and PARAMETERS[name][3] <= 1 else _round(float(v), PARAMETERS[name][1])
              for name, v in zip(family.fields, actual(solution.x))}
    values.update({name: min(values[name], cap) for name, cap in caps.items()})  # rounding stays within
    ratios = predict(family, preset, values) / frame.loc[chosen, "seconds"].to_numpy(dtype=float)
    grid = predict(family, preset, values, everything=True) / measured
    fitted = frame.loc[chosen].copy()
    fitted["ratio"] = ratios
    return FitResult(family, values, ratios, grid[np.isfinite(grid)], fitted)


def grouped_upper(family: Family, preset: Hardware) -> Fraction:
    """The fit's bound on ``grouped_gemm_efficiency``: ``min(5/4, 1 / max eta_mm)`` over the
    matmul efficiencies fitted before it (``family.fixed``) or the preset's, exactly, so that the
    fitted chip passes :class:`Hardware`'s check ``eta_gg eta_mm <= 1``.

    >>> from symcost import hardware
    >>> h100 = hardware.get("H100_SXM")      # eta_mm 0.769, 8-bit 0.715: 1/0.769 above 5/4
    >>> grouped_upper(Family("f", "c", None, (), None, None, ()), h100)
    Fraction(5, 4)
    >>> grouped_upper(Family("f", "c", None, (), None, None, (), fixed={"matmul_efficiency": Fraction(5, 6)}), h100)
    Fraction(6, 5)
    """
    dense = [Fraction(str(v)) for v in (family.fixed.get(name, getattr(preset, name))
                                        for name in ("matmul_efficiency", "matmul_efficiency_8bit",
                                                     "matmul_efficiency_4bit")) if v is not None]
    return min([Fraction(5, 4), *(1 / d for d in dense)])


# -- the families -------------------------------------------------------------------------------

def _gemm_rows(frame: Any, dtype: str) -> Any:
    pick = (frame["gemm_dtype"] == dtype) & (frame["n"] >= 1024) & (frame["k"] >= 1024) & frame["m"].isin(_M)
    return frame[pick]


def gemm_family(chip: str, table: Table, dtype: str, fields: tuple[str, ...], start: tuple[float, ...],
                fixed: Mapping[str, Fraction]) -> Family:
    """GEMMs of one table dtype (``bfloat16``, ``fp8``, ``nvfp4``): ``(m x k) @ (k x n)``."""
    ours = GEMM_DTYPES[dtype]
    e = DataType.parse(ours).bytes
    m, n, k = SIZES["m"], SIZES["n"], SIZES["k"]

    def build(frame: Any, hw: Hardware) -> dict:
        op = Matmul("gemm", m=m, n=n, k=k, dtype_bytes=e)
        expr = op_time(op, hw, hw.effective_peak(ours), DataType.parse(ours)).time
        return {(): (expr, (m, n, k), (frame["gemm_dtype"] == dtype).to_numpy())}

    return Family(f"GEMM {ours}", chip, table, fields, build, lambda f: _gemm_rows(f, dtype), start, ours,
                  fixed=dict(fixed))


def _prefill_rows(frame: Any) -> Any:
    pick = ((frame["window_size"] == 0) & (frame["attn_dtype"] == "bfloat16") & (frame["kv_cache_dtype"] == "bfloat16")
            & (frame["num_heads"] % frame["num_key_value_heads"] == 0) & (frame["batch_size"] * frame["isl"] <= 65536)
            & (frame["isl"] >= 512))
    return frame[pick]


def _prefill_frame(frame: Any) -> Any:
    for ours, theirs in (("b", "batch_size"), ("s", "isl"), ("h", "num_heads"), ("g", "num_key_value_heads"),
                         ("d", "head_dim")):
        frame[ours] = frame[theirs]
    return frame


PREFILL_FIELDS = ("attention_efficiency", "attention_time", "attention_io_efficiency", "attention_exp_rate")
"""The prefill family's fields (the last only where the rows hold more than one head dimension:
with one, the exponentials' time per pair and the matmuls' are proportional)."""


def prefill_family(chip: str, table: Table, start: tuple[float, ...], fixed: Mapping[str, Fraction],
                   fields: tuple[str, ...] = PREFILL_FIELDS) -> Family:
    """Causal context attention in 16 bits over ``s`` tokens per sequence, no cache before them."""
    b, s, h, g, d = (SIZES[x] for x in "bshgd")

    def build(frame: Any, hw: Hardware) -> dict:
        _prefill_frame(frame)
        core = AttentionCore("core", batch=b, heads=h, kv_heads=g, q_len=s, kv_len=s, head_dim=d, dtype_bytes=2,
                             causal=True, flash=True, decode=False)
        expr = op_time(core, hw, hw.effective_peak("bf16"), DataType.BF16).time
        rows = ((frame["window_size"] == 0) & (frame["attn_dtype"] == "bfloat16")).to_numpy()
        return {(): (expr, (b, s, h, g, d), rows)}

    return Family("prefill attention", chip, table, fields, build, lambda f: _prefill_rows(_prefill_frame(f)), start,
                  fixed=dict(fixed))


def _decode_frame(frame: Any) -> Any:
    frame["b"], frame["h"], frame["g"], frame["d"] = (frame["batch_size"], frame["num_heads"],
                                                      frame["num_key_value_heads"], frame["head_dim"])
    frame["s"] = frame["step"] + frame["isl"]  # keys attended: the cached ones and the new token's
    frame["e_kv"] = np.where(frame["kv_cache_dtype"] == "fp8", 1.0, 2.0)
    return frame


def _decode_rows(frame: Any) -> Any:
    # attention as the models in use shard it: grouped-query with 4 or 8 query heads per KV head
    # and at most 8 KV heads per GPU (Llama 3, Qwen 2.5/3, Mistral at TP 1 to 8), or multi-head
    # with at most 64 heads per GPU (Llama 2 7B/13B, GPT-3 shapes)
    group = frame["num_heads"] // frame["num_key_value_heads"]
    shaped = (group.isin([4, 8]) & (frame["num_key_value_heads"] <= 8)) | ((group == 1) & (frame["num_heads"] <= 64))
    pick = ((frame["window_size"] == 0) & (frame["num_heads"] % frame["num_key_value_heads"] == 0) & shaped
            & (frame["head_dim"] == 128) & (frame["batch_size"] <= 256) & (frame["s"] >= 1024)
            & (frame["s"] <= 16384))
    return frame[pick]


def shaped_decode_rows(frame: Any) -> Any:
    """The table's LLM-shaped decode rows (the family's filter before :func:`faster_than_hbm`)."""
    return _decode_rows(_decode_frame(frame))


def faster_than_hbm(frame: Any, bandwidth: float) -> Any:
    """Decode rows measured faster than reading their KV cache once at the chip's datasheet HBM
    bandwidth: ``2 e_kv b g s d / seconds > B`` (K and V of every cached key, ``d`` wide, of the
    ``g`` KV heads of ``b`` sequences). A kernel must read each cached K and V element at least
    once, so such a row did not do the work its label says. A mechanical rule on the measured
    times and the datasheet alone; the fit leaves these rows out, the full-grid errors keep them.
    On A100's table (TensorRT-LLM 1.0.0, legacy rows) it takes 74 of the 640 fitted rows (2.05 to
    3.36 TB/s implied against 2.039; every cache larger than the 40 MB L2, so not served from
    it); none on H100, H200, B200, B300 or GB200.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"e_kv": 2, "b": 1, "g": 1, "s": 1000, "d": 128, "seconds": [1e-6, 1e-7]})
    >>> faster_than_hbm(rows, 10**12).tolist()   # 512,000 bytes: 0.512 and 5.12 TB/s
    [False, True]
    """
    kv_bytes = 2 * frame["e_kv"] * frame["b"] * frame["g"] * frame["s"] * frame["d"]
    return (kv_bytes / frame["seconds"] > bandwidth).to_numpy()


DECODE_FIELDS = ("attention_memory_efficiency", "attention_decode_time", "grouped_decode_time_8bit", "mha_decode_rate",
                 "decode_ramp_time", "decode_ramp_bytes")
"""The decode family's fields (``grouped_decode_time_8bit`` only where the table has grouped-query
rows over an FP8 cache, ``mha_decode_rate`` only where it has multi-head rows)."""
DECODE_START = {"attention_memory_efficiency": 0.9, "attention_decode_time": 13.0, "grouped_decode_time_8bit": 8.0,
                "mha_decode_rate": 2.5, "decode_ramp_time": 10.0, "decode_ramp_bytes": 100.0}
"""The decode fields' starting values (fraction, us, us, 10^12 elements per second, us, MB)."""


def decode_family(chip: str, table: Table, start: tuple[float, ...], fixed: Mapping[str, Fraction],
                  fields: tuple[str, ...] = DECODE_FIELDS) -> Family:
    """Decode attention: one query per sequence over ``s`` cached keys, a 16-bit or FP8 cache;
    multi-head (one query head per KV head) or grouped."""
    b, s, h, g, d = (SIZES[x] for x in "bshgd")

    def build(frame: Any, hw: Hardware) -> dict:
        _decode_frame(frame)
        core = AttentionCore("core", batch=b, heads=h, kv_heads=g, q_len=1, kv_len=s, head_dim=d, dtype_bytes=2,
                             kv_dtype_bytes=_E_KV, flash=True, decode=True)
        expr = op_time(core, hw, hw.effective_peak("bf16"), DataType.BF16).time
        return {(): (expr, (b, s, h, g, d, _E_KV), (frame["window_size"] == 0).to_numpy())}

    from .. import get
    from .tables import CHIPS

    bandwidth = float(get(CHIPS[chip]).hbm_bandwidth) if chip in CHIPS else float("inf")

    def rows(frame: Any) -> Any:
        shaped = shaped_decode_rows(frame)
        return shaped[~faster_than_hbm(shaped, bandwidth)]

    return Family("decode attention", chip, table, fields, build, rows, start,
                  fixed=dict(fixed))


def power_law_share(alpha: float, experts: int, ep: int, tokens: int, topk: int, draws: int = 256) -> float:
    """The busiest expert-parallel rank's expected token-expert pairs over the balanced ``T k /
    n_ep`` under AIConfigurator's power-law routing (its collectors' ``power_law_logits_v3``, which
    time the busiest rank): ``E`` loads drawn from the density ``x^-alpha`` on ``[1, 0.8 T]``
    (``[0.01, 2]`` where ``T k <= E``), scaled to ``T k`` pairs, summed over each rank's ``E/n_ep``
    consecutive experts; the mean over ``draws`` draws of ``n_ep`` times the largest rank's share
    (a seeded generator, so the fit is reproducible)."""
    if ep == 1:
        return 1.0
    a, b = (1.0, 0.8 * tokens) if tokens * topk > experts else (0.01, 2.0)
    rng = np.random.default_rng(experts * 1_000_003 + ep * 10_007 + tokens)
    lo, hi = a ** (1 - alpha), b ** (1 - alpha)
    loads = ((hi - lo) * rng.random((draws, experts)) + lo) ** (1 / (1 - alpha))
    shares = loads.reshape(draws, ep, experts // ep).sum(axis=2).max(axis=1) / loads.sum(axis=1)
    return float(np.mean(shares) * ep)


def balanced_rank_load(tokens: int, experts: int, topk: int, ep: int) -> tuple[int, int]:
    """Token-expert pairs and distinct experts on expert-parallel rank 0 (experts ``0 ... E/n_ep - 1``,
    the rank the collectors time) under AIConfigurator's balanced routing (its collectors'
    ``balanced_logits``): with stride ``c = ceil(E/k)``, token ``i`` picks experts ``(i + j c) mod E``
    for ``j < k`` when ``T >= c``, else ``floor((i c / T + j c) mod E)``.

    >>> balanced_rank_load(1, 128, 1, 16), balanced_rank_load(256, 16, 1, 2)
    ((1, 1), (128, 8))
    """
    stride = -(-experts // topk)
    i = np.arange(tokens)[:, None]
    j = np.arange(topk)[None, :]
    if tokens >= stride:
        chosen = (i + j * stride) % experts
    else:
        chosen = np.floor((i * stride / tokens + j * stride) % experts).astype(int)
    local = chosen[chosen < experts // ep]
    return int(local.size), int(np.unique(local).size)


def _moe_frame(frame: Any) -> None:
    """The MoE table's columns under the names of the family's symbols; ``P`` and ``A`` the timed
    rank's token-expert pairs and active experts: on balanced rows as the collectors route
    (:func:`balanced_rank_load`), on power-law rows the busiest rank's ``iota T k / n_ep`` pairs
    (:func:`power_law_share`) over ``min(E / n_ep, T k / n_ep)`` experts."""
    frame["T"], frame["h"], frame["f"] = frame["num_tokens"], frame["hidden_size"], frame["inter_size"]
    frame["E"], frame["tp"], frame["ep"] = frame["num_experts"], frame["moe_tp_size"], frame["moe_ep_size"]
    if "P" not in frame:
        alpha = frame["distribution"].str.extract(r"power_law_([0-9.]+)", expand=False).astype(float)
        keys = np.column_stack([alpha.fillna(0).to_numpy(), frame["E"], frame["ep"], frame["T"], frame["topk"]])
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        loads = np.array([balanced_rank_load(int(t), int(e), int(k), int(p)) if a == 0 else
                          (power_law_share(a, int(e), int(p), int(t), int(k)) * t * k / p, min(e / p, t * k / p))
                          for a, e, p, t, k in unique], dtype=float)
        frame["P"], frame["A"] = loads[inverse.ravel(), 0], loads[inverse.ravel(), 1]


_MOE = {name: sp.Symbol(name, positive=True, integer=True) for name in ("T", "f", "topk", "E", "tp", "ep")}
_PAIRS = sp.Symbol("P", positive=True)
_ACTIVE = sp.Symbol("A", positive=True)


MOE_FIELDS = {"bfloat16": ("grouped_gemm_efficiency", "grouped_gemm_memory_efficiency", "grouped_gemm_time",
                            "grouped_gemm_output_efficiency"),
              "fp8": ("grouped_gemm_efficiency_8bit",)}
"""The fields the MoE family fits on each expert dtype's rows: the bf16 rows every grouped-GEMM
term, the FP8 rows the 8-bit grouped GEMMs' rate (the rest as fitted on bf16, the FP8 GEMM terms
as fitted on the dense GEMMs)."""


def moe_family(chip: str, table: Table, start: tuple[float, ...], fixed: Mapping[str, Fraction],
               dtype: str = "bfloat16") -> Family:
    """A MoE layer's expert computation on one GPU (TensorRT-LLM's fused MoE, ``dtype`` experts:
    bf16 or per-tensor FP8, :data:`MOE_FIELDS`; balanced routing): ``T`` tokens routed over ``E``
    experts, ``E/ep`` of them local at ``f/tp`` width, so
    ``P`` token-expert pairs over ``A`` active experts on the timed rank (:func:`_moe_frame`: on
    the balanced rows it is fitted on, the collectors' own routing, :func:`balanced_rank_load`, which
    at ``T k < E`` puts whole experts on rank 0 where ``T k / ep`` would put a fraction of one; on the
    power-law rows it is checked on, :func:`power_law_share`'s busiest rank); the routing top-k,
    the expert-map sort (:func:`_sort_limits`), the permutation, the grouped gate/up and down GEMMs with
    SiLU and the gate multiply, and the weighted combine, as :class:`~symcost.layers.MoELayer` costs
    them. Fitted on the balanced rows less the blocks :func:`work_inverted` and :func:`same_work_slower`
    (against the table's whole bf16 grid) leave out."""
    from ...layers.mlp import ffn_ops
    from ...layers.moe import COMBINE_FLOPS, ROUTER_BYTES, input_quantize

    T, f, k, E, t, p = (_MOE[x] for x in ("T", "f", "topk", "E", "tp", "ep"))
    h = SIZES["h"]

    def group(hw: Hardware, dtype: str, limit: int) -> sp.Expr:
        ours = DataType.parse(dtype)
        # NB: an FP8 MoE's experts hold 1-byte weights and take their input cast once per token
        # before the permutation (input_quantize, timed as the elementwise family's quantizing
        # kernel), which then copies the cast rows (expandInputRowsKernel), as MoELayer permutes at
        # e bytes; its router and combine stay in bf16
        e, x = sp.Integer(ours.bytes), sp.Integer(2)
        pairs, active = _PAIRS, _ACTIVE
        ops = [Vector("router_softmax_topk", elements=T * E, flops_per_element=VECTOR_FLOPS["softmax"],
                      read_bytes=T * E * x, write_bytes=T * E * ROUTER_BYTES),
               *input_quantize(T * h, e),  # the sort: one kernel up to `limit` tokens, three above
               ExpertMapSort("expert_map_sort", tokens=T, fused_limit=sp.Integer(limit), top_k=k, num_experts=E),
               Vector("dispatch_permute", elements=pairs * h, read_bytes=T * h * e, write_bytes=pairs * h * e),
               # the timed rank's pairs over its active experts (as MoELayer with routing_imbalance)
               *ffn_ops("experts", rows=pairs / active, hidden=h, width=f / t, dtype_bytes=e, gated=True,
                        activation="silu", batch=active, grouped=True),
               Vector("combine", elements=pairs * h, flops_per_element=COMBINE_FLOPS,
                      read_bytes=pairs * h * x + pairs * ROUTER_BYTES, write_bytes=T * h * x)]
        peak = hw.effective_peak(ours)
        return sp.Add(*(op_time(op, hw, peak if op.kernel.startswith("gemm") else hw.effective_peak("bf16"),
                                ours if op.kernel.startswith("gemm") else DataType.BF16).time for op in ops))

    def build(frame: Any, hw: Hardware) -> dict:
        _moe_frame(frame)
        gated, limits = (frame["kernel_source"] == "moe_torch_flow_cutlass").to_numpy(), _sort_limits(frame)
        return {(theirs, limit): (group(hw, ours, limit), (T, h, f, k, E, t, _PAIRS, _ACTIVE),
                                  gated & (frame["moe_dtype"] == theirs).to_numpy() & (limits == limit))
                for theirs, ours in MOE_DTYPES.items() if dtype == "bfloat16" or theirs == dtype
                for limit in sorted(set(limits.tolist()))}

    def rows(frame: Any) -> Any:
        balanced = moe_rows(frame, "balanced", dtype)
        whole = frame[(frame["moe_dtype"] == dtype) & (frame["distribution"] == "balanced")
                      & (frame["kernel_source"] == "moe_torch_flow_cutlass")]
        # NB: A and P are the columns moe_rows left on the cached frame (see the moe-fix report:
        # recomputed with _moe_frame on a copy, the rule keeps every B200 block)
        return balanced[~work_inverted(balanced) & ~same_work_slower(balanced, whole)]

    label = dtype.replace("bfloat16", "bf16")
    return Family(f"MoE experts {label}", chip, table, MOE_FIELDS[dtype], build, rows, start, dtype=MOE_DTYPES[dtype],
                  fixed=dict(fixed), robust=True)


def _sort_limits(frame: Any) -> Any:
    """Each row's one-kernel expert-map sort limit (:func:`~symcost.layers.moe.fused_sort_limit` of its
    top-k and experts per rank: 256 tokens, or 0 where TensorRT-LLM always sorts in three kernels).

    >>> import pandas as pd
    >>> _sort_limits(pd.DataFrame({"topk": [2, 10, 8], "E": [8, 512, 512], "ep": [1, 1, 2]})).tolist()
    [256, 0, 256]
    """
    from ...layers.moe import fused_sort_limit

    return np.array([int(fused_sort_limit(int(k), int(n))) for k, n in zip(frame["topk"], frame["E"] // frame["ep"])],
                    dtype=int)


MOE_BLOCK = ("h", "f", "topk", "E", "tp", "ep")
"""A MoE table's block: one model's expert shape (hidden, width, top-k, experts) at one MoE TP and EP."""

WORK_INVERSION = 2
"""How many times slower a block must run than a block of the same model doing at least its work
per GPU (at most its MoE TP and EP) to be left out of the fit (:func:`work_inverted`)."""


def work_inverted(frame: Any) -> Any:
    """Rows of blocks (:data:`MOE_BLOCK`) whose times do not follow their work: a block whose median
    time over the token counts both measured is more than :data:`WORK_INVERSION` times that of a
    block of the same model with at most its MoE TP and EP (the timed rank holds at least as many
    experts, each at least as wide, and at least as many token-expert pairs). A mechanical rule on
    the measured times alone, no model involved; the fit leaves these rows out, the full-grid
    errors keep them. On H100 it takes 14 of 267 blocks (16 experts, top-1, TP 1, EP 2: 3.6 ms where
    EP 1, reading twice the weights, takes 1.3 ms), on H200 18, on B200 none.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"h": 1, "f": 1, "topk": 1, "E": 16, "tp": 1, "ep": [1, 1, 2, 2],
    ...                      "T": [8, 16, 8, 16], "seconds": [1.0, 1.0, 3.0, 3.0]})
    >>> work_inverted(rows).tolist()
    [False, False, True, True]
    """
    times = frame.pivot_table(index=list(MOE_BLOCK), columns="T", values="seconds")
    flagged = set()
    for _, group in times.groupby(level=[0, 1, 2, 3]):
        for b in group.index:
            for a in group.index:
                if a == b or a[4] > b[4] or a[5] > b[5]:
                    continue
                ratio = (group.loc[b] / group.loc[a]).dropna()
                if len(ratio) and float(ratio.median()) > WORK_INVERSION:
                    flagged.add(b)
    return frame.set_index(list(MOE_BLOCK)).index.isin(list(flagged))


SAME_WORK_SLOWDOWN = Fraction(3, 2)
"""How many times slower than a block of the same tuning key at the same work a block must run to be
left out of the fit (:func:`same_work_slower`)."""


def same_work_slower(frame: Any, reference: Any = None) -> Any:
    """Rows of blocks (:data:`MOE_BLOCK`) that run the same work as another block of the table
    more than :data:`SAME_WORK_SLOWDOWN` times slower. Two blocks share the collector's tactic-cache
    key when they have the same hidden size, width per GPU ``f / tp`` and experts per GPU ``E / ep``
    (AIConfigurator's collector/trtllm/collect_moe.py names its autotuner cache file
    ``{moe_type}_{hidden_size}_{inter_size // moe_tp_size}_{num_experts // moe_ep_size}`` and, when
    that file exists, loads it instead of profiling): their timed ranks hold the same weights, so
    at the same token-expert pairs ``P`` with every local expert active they run the same grouped
    GEMMs. A block's time is compared, at each of its pair counts within the other block's, with
    the other's interpolated there (log-log), and the median taken. A mechanical rule on the
    measured times alone, no model involved, next to :func:`work_inverted`; ``reference`` (default
    ``frame``) holds the blocks compared with, the fit passes the table's whole bf16 grid.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"h": 1, "f": [2] * 3 + [4] * 3, "topk": [1] * 3 + [2] * 3, "E": [4] * 3 + [8] * 3,
    ...                      "tp": [1] * 3 + [2] * 3, "ep": [1] * 3 + [2] * 3, "A": 4, "P": [8, 16, 32] * 2,
    ...                      "seconds": [1.0, 2.0, 4.0, 2.0, 4.0, 8.0]})
    >>> same_work_slower(rows).tolist()
    [False, False, False, True, True, True]
    """
    reference = frame if reference is None else reference
    full = reference[reference["A"] == reference["E"] // reference["ep"]]
    # NB: f // tp, as the collector's inter_size // moe_tp_size: an uneven split keys with its floor
    flagged: set[tuple] = set()
    for _, group in full.groupby([full["h"], full["f"] // full["tp"], full["E"] // full["ep"]]):
        blocks = dict(list(group.groupby(list(MOE_BLOCK))))
        flagged.update(b for b, mine in blocks.items()
                       if any(_matched_ratio(mine, theirs) > SAME_WORK_SLOWDOWN
                              for a, theirs in blocks.items() if a != b))
    return frame.set_index(list(MOE_BLOCK)).index.isin(list(flagged))


def _matched_ratio(mine: Any, theirs: Any) -> float:
    """Median, over ``mine``'s rows within ``theirs``' measured pair counts, of ``mine``'s time over
    ``theirs``' interpolated (log-log) at the same pairs; 0 where fewer than three rows overlap."""
    theirs = theirs.sort_values("P")
    inside = mine[(mine["P"] >= theirs["P"].min()) & (mine["P"] <= theirs["P"].max())]
    if len(inside) < 3:
        return 0.0
    at = np.exp(np.interp(np.log(inside["P"].to_numpy(dtype=float)), np.log(theirs["P"].to_numpy(dtype=float)),
                          np.log(theirs["seconds"].to_numpy(dtype=float))))
    return float(np.median(inside["seconds"].to_numpy(dtype=float) / at))


MOE_DTYPES = {"bfloat16": "bf16", "fp8": "fp8_e4m3", "fp8_block": "fp8_e4m3"}
"""The MoE table's expert dtypes the family predicts and the symcost dtype of each (block-scaled
FP8 at the per-tensor FP8 GEMM terms: symcost has one 8-bit format class)."""


def moe_rows(frame: Any, distribution: str, dtype: str = "bfloat16", wide_tp: bool = False) -> Any:
    """The MoE rows the family fits (``balanced``, bf16 or fp8) or is checked on (``power_law_1.01``,
    ``power_law_1.2``; ``fp8_block``; ``wide_tp``: MoE TP 8 and more): TensorRT-LLM's
    fused MoE (CUTLASS, gated), hidden size at least 2048, MoE EP at most 64 and TP at most 4."""
    _moe_frame(frame)
    tp = (frame["moe_tp_size"] >= 8) if wide_tp else (frame["moe_tp_size"] <= 4)
    return frame[(frame["moe_dtype"] == dtype) & (frame["distribution"] == distribution)
                 & (frame["kernel_source"] == "moe_torch_flow_cutlass") & (frame["hidden_size"] >= 2048)
                 & (frame["moe_ep_size"] <= 64) & tp]


def elementwise_family(chip: str, table: Table, start: tuple[float, ...]) -> Family:
    """An elementwise pass: quantizing an ``m x k`` 16-bit matrix to FP8 (read 2, write 1 byte)."""
    m, k = SIZES["m"], SIZES["k"]

    def build(frame: Any, hw: Hardware) -> dict:
        op = Vector("quantize", elements=m * k, flops_per_element=sp.Integer(1), read_bytes=2 * m * k,
                    write_bytes=m * k)
        expr = op_time(op, hw, hw.effective_peak("bf16"), DataType.BF16).time
        return {(): (expr, (m, k), np.ones(len(frame), dtype=bool))}

    def rows(frame: Any) -> Any:
        # NB: its floor from the smallest passes, its bandwidth from passes of 100 MB and more, past
        # the 50 MB L2 cache that serves the mid-sized ones from SRAM
        size = frame["m"] * frame["k"]
        return frame[(3 * size >= 10**8) | (size <= 2**16)]

    return Family("elementwise", chip, table, ("memory_efficiency", "kernel_time"), build, rows, start)


NCCL_HARNESS_FACTOR = Fraction(3, 2)
"""How much slower than NCCL's own table an engine's all-reduce row, where the engine's own switch
runs NCCL, may be measured and stay in the fit (:func:`slower_than_nccl`): a threshold in the gap
between the worst ratio of the rows that run at NCCL's speed (1.16: vLLM 0.24.0 on 4 GB200s at
256 MiB; B300's on 2 GPUs reach 1.13) and the best of GB200's 2-GPU rows from 16 MiB (2.13 in vLLM
0.24.0's table, 2.05 in vLLM 0.19.0's), read from the aiconfigurator-core 0.12.0 tables; any value
in that gap leaves out the same rows."""


def slower_than_nccl(rows: Any, nccl: Any, runs_nccl: Callable[[int, int], bool],
                     factor: Fraction = NCCL_HARNESS_FACTOR) -> Any:
    """Engine all-reduce rows the engine's own switch sends to NCCL (``runs_nccl(n, bytes)``: vLLM's
    size switch, TensorRT-LLM 1.0's token switch) measured more than ``factor`` times NCCL's own
    time for the same bytes over the same GPU count, read from ``nccl`` (NCCL's table of the same
    chip: ``num_gpus``, ``M`` bytes, ``seconds``). The bound is NCCL's measured ``t(M)`` (a size
    between two measured ones: the larger one's, ``t`` rising with ``M``); beyond NCCL's largest
    size ``t(Mmax) M / Mmax`` (at most ``alpha + M/B`` scaled: ``alpha + M/B <= (alpha + Mmax/B)
    M/Mmax``); a size below NCCL's smallest is kept. The engine calls the same NCCL there, so such
    a row does not time NCCL's collective as NCCL's own harness does: a mechanical rule on the
    measured times alone; the fit leaves these rows out, the full-grid errors keep them (the rows
    in the NCCL window depend on no fitted engine term, so leaving them out moves no fitted value).
    It takes 7 of vLLM 0.24.0's 46 rows on GB200 (2 GPUs, 16 MiB to 1 GiB: 2.1 to 2.7 times NCCL's
    table, as vLLM 0.19.0's rows on 2 GB200s, 2.05 to 2.6; vLLM 0.14.0 on GB200, 0.24.0 on 4 and 8
    GB200s and on GB300, B200 and B300 run NCCL's sizes at most 1.16 times it; why 2 GB200s under
    vLLM from 0.19 run at half NCCL's speed, the node's transport or vLLM's own behaviour, is not
    known), none of vLLM's or TensorRT-LLM 1.0's rows on any other chip.

    >>> import pandas as pd
    >>> nccl = pd.DataFrame({"num_gpus": 2, "M": [1000, 2000], "seconds": [1e-5, 1.5e-5]})
    >>> rows = pd.DataFrame({"num_gpus": 2, "M": [500, 2000, 2000, 8000], "seconds": [9e-5, 2e-5, 3e-5, 1e-4]})
    >>> slower_than_nccl(rows, nccl, lambda n, m: True).tolist()   # bounds: none, 15, 15, 60 us (times 1.5)
    [False, False, True, True]
    """
    measured: dict[int, dict[float, float]] = {}
    for n, size, seconds in zip(nccl["num_gpus"], nccl["M"], nccl["seconds"]):
        measured.setdefault(int(n), {})[float(size)] = float(seconds)
    out = []
    for n, size, seconds in zip(rows["num_gpus"], rows["M"], rows["seconds"]):
        bound = _nccl_bound(measured.get(int(n), {}), float(size))
        out.append(bound is not None and runs_nccl(int(n), int(size)) and float(seconds) > float(factor) * bound)
    return np.array(out, dtype=bool)


def _nccl_bound(times: dict[float, float], size: float) -> float | None:
    """NCCL's time for ``size`` bytes from its measured ``times`` (bytes -> seconds): the smallest
    measured size at least ``size``, or the largest scaled by ``size / Mmax`` beyond it; ``None``
    below the smallest."""
    if not times or size < min(times):
        return None
    above = [m for m in times if m >= size]
    if above:
        return times[min(above)]
    largest = max(times)
    return times[largest] * size / largest


_KINDS: dict[str, CollectiveKind] = {"all_reduce": "all_reduce", "all_gather": "all_gather",
                                     "reduce_scatter": "reduce_scatter",
          "alltoall": "all_to_all"}


_TABLE_FORMATS = {"half": DataType.FP16, "bfloat16": DataType.BF16}
"""The collective tables' 16-bit ``nccl_dtype`` / ``allreduce_dtype`` names and their formats."""


def replayed_16bit(frame: Any) -> Any:
    """A collective table's 16-bit rows, graph-replayed where the table also times eager calls
    (vLLM and SGLang time both; engines replay graphs): a boolean Series."""
    dtype = frame["nccl_dtype"] if "nccl_dtype" in frame else frame["allreduce_dtype"]
    pick = dtype.isin(["half", "bfloat16"])
    if "backend" in frame:
        pick &= frame["backend"].str.endswith("_graph")
    return pick


def collective_family(chip: str, table: Table, kinds: tuple[str, ...], start: Mapping[str, float],
                      fixed: Mapping[str, Fraction], runtime: str | None = None, name: str = "NCCL",
                      robust: bool = False) -> Family:
    """Collectives of the table's ``kinds`` over 2 to 8 GPUs; ``message_size`` counts 16-bit elements.
    ``start`` maps each fitted field to its starting value, in the fit's order."""
    fields = tuple(start)
    column = "op_name"

    def usable(frame: Any) -> Any:
        frame["M"] = frame["message_size"] * 2
        return replayed_16bit(frame)

    def rows(frame: Any) -> Any:
        return frame[usable(frame) & frame[column].isin(kinds)]

    def build(frame: Any, hw: Hardware) -> dict:
        out = {}
        ok = usable(frame)
        formats = frame["nccl_dtype"] if "nccl_dtype" in frame else frame["allreduce_dtype"]
        for kind in kinds:
            for n in sorted(frame["num_gpus"].unique()):
                for name, fmt in _TABLE_FORMATS.items():
                    # the collector's rows: 4096 elements of 16 bits each (collect_all_reduce.py,
                    # get_input_shape_and_comm_size(size, token_dim=4096); one row below 4096), in
                    # the table's format (vLLM's symmetric memory takes bf16 only)
                    c = Collective(_KINDS[kind], "tp", int(n), _BYTES, tokens=_BYTES / COLLECTOR_ROW_BYTES,
                                   element_format=fmt)
                    mask = (ok & (frame[column] == kind) & (frame["num_gpus"] == n) & (formats == name)).to_numpy()
                    if mask.any():
                        out[(kind, int(n), fmt)] = (collective_time(c, hw), (_BYTES,), mask)
        return out

    return Family(f"{name} {', '.join(_KINDS[k] for k in kinds)}", chip, table, fields, build, rows,
                  tuple(start.values()),
                  runtime=runtime, fixed=dict(fixed), robust=robust)
