"""Fitting the kernel classes' terms on NVIDIA's per-op tables (offline; the ``calibration`` extra).

The time model's kernel terms (``symcost.hardware.kernels``) are fitted per chip on the measured
tables of AIConfigurator (``aiconfigurator-core``; :mod:`~symcost.hardware.fit.tables`), each op
family on its own table (:mod:`~symcost.hardware.fit.families`), in the order of :func:`plan`:

1. elementwise (``memory_efficiency``, ``kernel_time``) on the FP8 quantization kernel;
2. 16-bit GEMMs (``matmul_efficiency``, ``gemm_time``, ``gemm_memory_efficiency``);
3. FP8 GEMMs (``matmul_efficiency_8bit``, ``gemm_time_8bit``, ``quantize_bytes_8bit``), NVFP4 ones
   on Blackwell (the ``_4bit`` fields), at the 16-bit GEMMs' memory efficiency;
4. prefill attention (``attention_efficiency``, ``attention_time``, ``attention_io_efficiency``;
   ``attention_exp_rate`` where the table's rows hold several head dimensions);
5. decode attention (``attention_memory_efficiency``, ``attention_decode_time``;
   ``grouped_decode_time_8bit`` where the table has grouped-query rows over an FP8 cache,
   ``mha_decode_rate`` where it has multi-head rows; ``decode_ramp_time``, ``decode_ramp_bytes``);
6. NCCL's collectives (the Simple ring ``collective_base_latency``, ``collective_latency``,
   ``network_efficiency``; the low-latency ring ``ll_*``; NVLink SHARP ``nvls_*`` where the chip
   has it) on all-reduce, all-gather and reduce-scatter, then all-to-all (grouped sends: ``all_to_all_*``)
   at their bus bandwidth;
7. each engine's own all-reduce (``custom_allreduce_latency``, ``custom_allreduce_efficiency``,
   ``custom_allreduce_peer_latency``, ``custom_allreduce_two_shot_latency``; under vLLM's size
   switch on GPUs with symmetric memory ``symm_allreduce_latency``, ``symm_allreduce_efficiency``),
   written into the engine profile for that chip, NCCL's terms fixed.

``benchmarks/calibrate_ops.py`` runs it, prints every value and the per-op error tables, and with
``--write`` puts the values into ``hardware/presets/*.json`` and ``hardware/engines/*.json``, each
with a source naming the package version, GPU, backend version and table;
``tests/hardware/test_fit.py`` checks that the shipped values are what the fit gives. The library
never imports this package at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from .families import (
    DECODE_START,
    Family,
    FitResult,
    collective_family,
    decode_family,
    elementwise_family,
    fit,
    gemm_family,
    moe_family,
    prefill_family,
    slower_than_nccl,
)
from .tables import CHIPS, Table, package_version

__all__ = ["CHIPS", "ENGINE_TABLES", "KERNEL_PATH_FIELDS", "TLLM_GEN_GPUS", "VERSIONS", "ChipFit", "fit_chip", "plan",
           "package_version", "step_family", "step_table"]

VERSIONS: dict[str, dict[str, str]] = {
    "a100_sxm": {"trtllm": "1.0.0", "nccl": "2.27.3", "vllm": "0.14.0", "sglang": "0.5.10"},
    "h100_sxm": {"trtllm": "1.3.0rc20", "nccl": "2.29.2", "vllm": "0.24.0", "sglang": "0.5.14"},
    "h200_sxm": {"trtllm": "1.3.0rc20", "nccl": "2.29.2", "vllm": "0.24.0", "sglang": "0.5.14"},
    "b200_sxm": {"trtllm": "1.3.0rc20", "nccl": "2.29.2", "vllm": "0.24.0", "sglang": "0.5.14"},
    "b300_sxm": {"trtllm": "1.3.0rc20", "nccl": "2.29.2", "vllm": "0.24.0", "sglang": "0.5.14"},
    "gb200": {"trtllm": "1.3.0rc20", "nccl": "2.29.2", "vllm": "0.24.0", "sglang": "0.5.14"},
}
"""Per GPU folder: the newest collected version of each backend's tables (the engine profiles'
versions) and of NCCL's."""

ENGINE_TABLES = {"tensorrt-llm": "trtllm", "vllm": "vllm", "sglang": "sglang"}
"""Engine profile -> the backend folder whose custom all-reduce table it is fitted on."""

# NB: the Simple protocol's time per ring step is not identifiable next to its base latency on 2
# to 8 GPUs (the fit drives it to 0); it stays NCCL's own figure (collective_latency, [NCCL]), the
# LL one (0.6 us). NCCL's Simple figure over NVLink is 3.4 us (hwLatencies, NVLINK, Ring, Simple:
# src/graph/tuning.cc line 151 at v2.29.2-1, the tables' version; line 159 at v2.30.7), over the
# network 14 us (line 163 / 171); refitted with 3.4 us the rings' error grows on H100, H200 and A100
# (all-gather 8.0 -> 9.4 %, reduce-scatter 8.2 -> 9.8 % on H100) and shrinks only on B200, so the
# LL figure stays.
_NCCL_FIELDS = ("collective_base_latency", "network_efficiency", "ll_base_latency", "ll_latency", "ll_efficiency")
_NVLS_FIELDS = ("nvls_latency", "nvls_efficiency")
_RING_KINDS = ("all_reduce", "all_gather", "reduce_scatter")
_A2A_FIELDS = ("all_to_all_latency", "all_to_all_peer_latency", "all_to_all_ll_latency", "all_to_all_ll_efficiency",
               "all_to_all_efficiency")
_A2A_START = (13.0, 0.3, 8.0, 0.025, 0.9)


CUSTOM_ALLREDUCE_START = {"custom_allreduce_latency": 3.0, "custom_allreduce_efficiency": 0.5,
                          "custom_allreduce_peer_latency": 0.1, "custom_allreduce_two_shot_latency": 8.0}
CUSTOM_ALLREDUCE_STARTS = ((6.0, 0.3, 0.1, 7.0), (6.0, 0.2, 0.2, 6.5))
"""Further starts of the engines' all-reduce fit (its least loss is kept): with the two-shot's time
per call held at least the one-shot's, vLLM's B200 and B300 fits from the first start stop in a
local minimum (a one-shot of 43 us, 54 % median error on B200); from these they reach a one-shot
of 6.9 and 6.7 us at 11.0 and 11.8 % mean error (12.3 and 12.6 % unconstrained, where the one-shot
never ran: 46.2 and 42.9 us against a two-shot of 6.6 and 6.5). NB: vLLM's rows above its custom
all-reduce's 8 MiB ``max_size`` are another kernel (torch symmetric memory or NCCL,
``CudaCommunicator.all_reduce``); the ``Min`` with NCCL's form stands for them."""
"""The engines' own all-reduce: its fitted fields and their starting values (µs, fraction, µs, µs).
Fitted with the robust loss: a few calls in the engines' tables take 3 to 10 times their
neighbours (SGLang on 8 H100s: 38 us at 1 kB between 3.3 and 3.5 us), which no form describes."""


def nccl_family(gpu: str, table: Table, nvls: bool, fixed: dict[str, Fraction]) -> Family:
    """NCCL's ring-like collectives (all-reduce, all-gather, reduce-scatter): the Simple and
    low-latency rings' terms, NVLink SHARP's where the chip has it."""
    from .. import get

    fields = _NCCL_FIELDS + (_NVLS_FIELDS if nvls else ())
    # NB: NVLS's share starts at 0.6 of the link, over NCCL's factor for the GPU's architecture
    # (Hardware.nccl_nvls_efficiency): the fit's start in the link's terms does not move with it
    start = (8.0, 0.8, 5.0, 0.5, 0.3) + ((30.0, 0.6 / float(get(CHIPS[gpu]).nccl_nvls_efficiency)) if nvls else ())
    return collective_family(gpu, table, _RING_KINDS, dict(zip(fields, start, strict=True)), fixed)


def all_to_all_family(gpu: str, table: Table, fixed: dict[str, Fraction]) -> Family:
    """NCCL's all-to-all (grouped sends), its own terms over the rings' bus bandwidth (fixed)."""
    return collective_family(gpu, table, ("alltoall",), dict(zip(_A2A_FIELDS, _A2A_START, strict=True)), fixed,
                             robust=True)


BLOCK_RATE_START = {"custom_allreduce_block_rate": 20.0}
"""The one-shot's rate per thread block (GB/s), fitted where the engine's rule on the chip is
TensorRT-LLM 1.0's (A100: its one-shot launches one block per token below SM 90,
:func:`symcost.hardware.timing._custom_allreduce`); its starting value."""


SYMM_ALLREDUCE_START = {"symm_allreduce_latency": 15.0, "symm_allreduce_efficiency": 0.35}
"""The symmetric-memory all-reduce's fields (vLLM on a GPU whose compute capability has a size
table, :data:`symcost.hardware.timing.VLLM_ALLREDUCE_SIZES`) and their starting values (us, fraction)."""


def engine_allreduce_family(gpu: str, table: Table, fixed: dict[str, Fraction], engine: str) -> Family:
    """An engine's own all-reduce (:data:`CUSTOM_ALLREDUCE_START`) under its profile, NCCL's terms
    fixed; under vLLM's size switch on a GPU with symmetric memory also :data:`SYMM_ALLREDUCE_START`."""
    from .. import get
    from ..runtime import runtime
    from ..timing import VLLM_ALLREDUCE_SIZES

    start = dict(CUSTOM_ALLREDUCE_START)
    starts: tuple[tuple[float, ...], ...] = CUSTOM_ALLREDUCE_STARTS
    if get(CHIPS[gpu]).with_runtime(engine).allreduce_rule == "trtllm-1.0":
        # TensorRT-LLM 1.0's Lamport one-shot on A100: one thread block per token (BLOCK_RATE_START)
        start.update(BLOCK_RATE_START)
        starts = tuple(s + tuple(BLOCK_RATE_START.values()) for s in starts)
    if runtime(engine).allreduce == "vllm" and get(CHIPS[gpu]).compute_capability in VLLM_ALLREDUCE_SIZES:
        start.update(SYMM_ALLREDUCE_START)
        starts = tuple(s + tuple(SYMM_ALLREDUCE_START.values()) for s in starts)
    family = collective_family(gpu, table, ("all_reduce",), start, fixed, runtime=engine,
                               name=f"{engine} all-reduce", robust=True)
    runs_nccl = _engine_runs_nccl(get(CHIPS[gpu]).with_runtime(engine))
    if runs_nccl is not None:
        family = replace(family, **_without_slow_nccl(family.select, gpu, runs_nccl))
    # the two-shot's time per call is at least the one-shot's: two barriers and a second pass
    return replace(family, starts=starts, at_least={"custom_allreduce_two_shot_latency": "custom_allreduce_latency"})


def _without_slow_nccl(usable: Any, gpu: str, runs_nccl: Any) -> dict[str, Any]:
    """A family's ``select``, the rows ``usable`` picks less those :func:`~.families.slower_than_nccl`
    leaves out, and its ``left_out`` (how many it leaves, of how many)."""
    nccl = _nccl_allreduce_rows(gpu)

    def slow(frame: Any) -> tuple[Any, Any]:
        kept = usable(frame)
        return kept, slower_than_nccl(kept, nccl, runs_nccl)

    def select(frame: Any) -> Any:
        kept, out = slow(frame)
        return kept[~out]

    def left_out(frame: Any) -> tuple[int, int]:
        kept, out = slow(frame)
        return int(out.sum()), len(kept)

    return {"select": select, "left_out": left_out}


def _engine_runs_nccl(chip: Any) -> Any:
    """``(n, bytes) -> bool``: whether the engine's own switch on ``chip`` runs NCCL for a row of the
    collector's all-reduce table (vLLM's size switch, :func:`~symcost.hardware.timing.vllm_allreduce_window`;
    TensorRT-LLM 1.0's token switch, :func:`~symcost.hardware.timing.trtllm_allreduce_window`, over
    rows of :data:`~.families.COLLECTOR_ROW_BYTES`, one below it); ``None`` for an engine whose
    choice the model takes as the fastest form (no switch to read)."""
    from ..timing import trtllm_allreduce_window, vllm_allreduce_window
    from .families import COLLECTOR_ROW_BYTES

    rule, capability = chip.allreduce_rule, chip.compute_capability
    if rule == "vllm":
        return lambda n, size: vllm_allreduce_window(n, size, capability) == "nccl"
    if rule == "trtllm-1.0":
        return lambda n, size: trtllm_allreduce_window(n, max(1, size // COLLECTOR_ROW_BYTES), size) == "nccl"
    return None


def _nccl_allreduce_rows(gpu: str) -> Any:
    """NCCL's own 16-bit all-reduce rows on ``gpu`` (the table the chip's NCCL terms are fitted on):
    ``num_gpus``, ``M`` bytes, ``seconds``."""
    from .tables import read

    frame = read(step_table(gpu, "nccl"))
    frame = frame[(frame["op_name"] == "all_reduce") & frame["nccl_dtype"].isin(["half", "bfloat16"])]
    return frame.assign(M=frame["message_size"] * 2)[["num_gpus", "M", "seconds"]]


@dataclass(frozen=True)
class ChipFit:
    """Every family fitted on one chip: the chip's fields, and each engine's fields for it."""

    gpu: str
    results: tuple[FitResult, ...]

    @property
    def preset(self) -> str:
        """The symcost preset the tables are fitted for."""
        return CHIPS[self.gpu]

    @property
    def chip_values(self) -> dict[str, Fraction]:
        """The fitted chip fields (those of the chip's own preset file), with the table each comes from."""
        return {k: v for r in self.results if r.family.runtime is None for k, v in r.values.items()}

    def engine_values(self) -> dict[str, dict[str, Fraction]]:
        """Per engine profile, the fields fitted on its own tables for this chip."""
        out: dict[str, dict[str, Fraction]] = {}
        for r in self.results:
            if r.family.runtime is not None:
                out.setdefault(r.family.runtime, {}).update(r.values)
        return out

    def sources(self) -> dict[tuple[str | None, str], str]:
        """``(engine or None, field) -> source`` of every fitted value."""
        return {(r.family.runtime, name): f"fit: {r.family.name} on {r.family.table.source}; "
                f"symcost.hardware.fit (benchmarks/calibrate_ops.py)" for r in self.results for name in r.values}


def plan(gpu: str) -> list[str]:
    """The families fitted on ``gpu``, in order (names as :func:`fit_chip` reports them)."""
    return [r for r in ("elementwise", "gemm bfloat16", "gemm fp8", "gemm nvfp4", "moe", "moe fp8", "prefill", "decode",
                        "nccl",
                        "nccl alltoall", *(f"allreduce {e}" for e in ENGINE_TABLES)) if _has(gpu, r)]


def step_table(gpu: str, step: str, backend: str = "trtllm", version: str | None = None) -> Table:
    """The table of ``step`` on ``gpu``: a kernel family's from ``backend`` (TensorRT-LLM's unless
    told) at ``version`` (default: :data:`VERSIONS`'); a collective's from its own folder.

    >>> step_table("h100_sxm", "gemm fp8")
    Table(gpu='h100_sxm', family='gemm', backend='trtllm', version='1.3.0rc20', name='gemm_perf')
    >>> step_table("b200_sxm", "decode", "vllm", "0.22.0").name
    'generation_attention_perf'
    """
    v = VERSIONS[gpu]
    kernel = version or v[backend]
    if step == "elementwise":
        return Table(gpu, "quantize", backend, kernel, "scale_matrix_perf")
    if step.startswith("gemm"):
        return Table(gpu, "gemm", backend, kernel, "gemm_perf")
    if step.startswith("moe"):
        return Table(gpu, "moe", backend, kernel, "moe_perf")
    if step in ("prefill", "decode"):
        return Table(gpu, "attention", backend, kernel,
                     "context_attention_perf" if step == "prefill" else "generation_attention_perf")
    if step in ("nccl", "nccl alltoall"):
        return Table(gpu, "comm", "nccl", v["nccl"], "nccl_perf")
    backend = ENGINE_TABLES[step.split(" ", 1)[1]]
    return Table(gpu, "comm", backend, v[backend], "custom_allreduce_perf")


def _decode_fields(gpu: str, table: Table) -> tuple[str, ...]:
    """The decode family's fields on ``gpu``: ``grouped_decode_time_8bit`` only where its fitted
    rows hold grouped-query attention over an FP8 cache (A100's table has no FP8 cache),
    ``mha_decode_rate`` only where they hold multi-head attention."""
    from .families import DECODE_FIELDS

    rows = decode_family(gpu, table, (), {}).rows()
    fp8 = rows["kv_cache_dtype"] == "fp8"
    grouped = rows["num_heads"] > rows["num_key_value_heads"]
    present = {"grouped_decode_time_8bit": bool((fp8 & grouped).any()),
               "mha_decode_rate": bool((~grouped).any()) and gpu not in TLLM_GEN_GPUS}
    return tuple(f for f in DECODE_FIELDS if present.get(f, True))


TLLM_GEN_GPUS = ("b200_sxm", "b300_sxm", "gb200")
"""GPUs on which TensorRT-LLM runs every decode attention kernel, multi-head included, in its
trtllm-gen kernels on the tensor cores, not in the masked multi-head kernel on the CUDA cores
(SM100: ``mUseTllmGen(getSMVersion() == 100)``, cpp/tensorrt_llm/kernels/xqaDispatcher.cpp; "decoder
XQA kernels (for SM <= 90)", "trtllm-gen XQA kernels (for SM == 100)", xqaDispatcher.h; later
releases ``mUseTllmGen(tensorrt_llm::common::isSM100Family())``, which takes in B300's SM103; GB200
is SM100): no ``mha_decode_rate``. Fitted anyway (before the decode ramp), B200's rate came out at
12.7 * 10^12 elements per second, 5x H100's 2.52 * 10^12, and its decode error stayed 7.9 %: the
term never binds there (fitted on B300 and GB200, 13.6 and 13.2 * 10^12: the same)."""

KERNEL_PATH_FIELDS = {"mha_decode_rate": TLLM_GEN_GPUS}
"""Fields that describe a kernel some GPUs do not run (field -> those GPUs): the H100-fitted values
of :func:`report.generalization_table` are not moved onto them."""


def _prefill_fields(gpu: str, table: Table) -> tuple[str, ...]:
    """The prefill family's fields on ``gpu``: ``attention_exp_rate`` only where its fitted rows
    hold more than one head dimension (A100's table has 128 only)."""
    from .families import PREFILL_FIELDS

    rows = prefill_family(gpu, table, (), {}).rows()
    return PREFILL_FIELDS if rows["head_dim"].nunique() > 1 else PREFILL_FIELDS[:-1]


def _has(gpu: str, step: str) -> bool:
    table = step_table(gpu, step)
    if not table.path.exists():
        return False
    if step.startswith("gemm"):
        from .tables import read

        return bool((read(table)["gemm_dtype"] == step.split(" ", 1)[1]).any())
    if step.startswith("moe"):
        from .families import moe_family

        return len(moe_family(gpu, table, (), {}, MOE_STEPS[step][1]).rows()) > 0
    return True


MOE_STEPS = {"moe": ((0.9, 0.9, 5.0, 0.3), "bfloat16"), "moe fp8": ((1.0,), "fp8")}
"""The MoE steps' starting values (the bf16 family's four fields, the FP8 family's one) and expert dtype."""


def fit_chip(gpu: str, preset: Any = None) -> ChipFit:
    """Fit every family of :func:`plan` on ``gpu``'s tables, each with the values fitted before it."""
    from .. import get

    chip = get(CHIPS[gpu]) if preset is None else preset
    values: dict[str, Fraction] = {}
    results: list[FitResult] = []
    nvls = chip.nvls_latency is not None
    for step in plan(gpu):
        family = step_family(gpu, step, step_table(gpu, step), values, nvls)
        result = fit(family, chip)
        results.append(result)
        if family.runtime is None:
            values.update(result.values)
    return ChipFit(gpu, tuple(results))


def step_family(gpu: str, step: str, table: Table, values: dict[str, Fraction], nvls: bool = False) -> Family:
    """The family of :func:`plan`'s ``step`` on ``table``, with the values fitted before it
    (``values``; a field not among them is the preset's); ``nvls``: the chip has NVLink SHARP. The
    family's time is :func:`~symcost.hardware.timing.op_time` of its op on the chip, its fit the
    least squares of ``log(predicted / measured)`` over its rows (:func:`.families.fit`).

    >>> family = step_family("h100_sxm", "gemm bfloat16", step_table("h100_sxm", "gemm bfloat16"), {})
    >>> family.name, family.fields
    ('GEMM bf16', ('matmul_efficiency', 'gemm_time', 'gemm_memory_efficiency'))
    """
    gemm_fields = {"bfloat16": (("matmul_efficiency", "gemm_time", "gemm_memory_efficiency"), (0.8, 3.0, 0.8)),
                   "fp8": (("matmul_efficiency_8bit", "gemm_time_8bit", "quantize_bytes_8bit"), (0.7, 12.0, 8.0)),
                   "nvfp4": (("matmul_efficiency_4bit", "gemm_time_4bit", "quantize_bytes_4bit"), (0.6, 10.0, 6.0))}
    if step == "elementwise":
        return elementwise_family(gpu, table, (0.9, 2.5))
    if step.startswith("gemm"):
        dtype = step.split(" ", 1)[1]
        return gemm_family(gpu, table, dtype, *gemm_fields[dtype], values)
    if step.startswith("moe"):
        start, dtype = MOE_STEPS[step]
        return moe_family(gpu, table, start, values, dtype)
    if step == "prefill":
        fields = _prefill_fields(gpu, table)
        return prefill_family(gpu, table, (0.6, 15.0, 0.4, 4.0)[:len(fields)], values, fields)
    if step == "decode":
        fields = _decode_fields(gpu, table)
        return decode_family(gpu, table, tuple(DECODE_START[f] for f in fields), values, fields)
    if step == "nccl":
        return nccl_family(gpu, table, nvls, values)
    if step == "nccl alltoall":
        return all_to_all_family(gpu, table, values)
    return engine_allreduce_family(gpu, table, values, step.split(" ", 1)[1])


UNITS = {Fraction(1, 10**6): "us", Fraction(10**6): "MB", Fraction(10**9): "GB/s", Fraction(10**12): "T/s"}
"""The units a data-file entry is written in, by the parameter table's scale (families.PARAMETERS:
seconds in microseconds, bytes in MB, FLOP/s in T/s; a scale of 1 is written bare)."""


def _entry(name: str, value: Fraction, source: str) -> dict[str, Any]:
    """A data-file entry for a fitted value: ``value / unit`` as an exact decimal, in the unit
    :data:`UNITS` names for the parameter's scale (a name or a scale the tables do not list: one
    line, :class:`~symcost.errors.ConfigError`)."""
    from decimal import Decimal

    from ...errors import ConfigError
    from .families import PARAMETERS

    if name not in PARAMETERS:
        raise ConfigError(f"{name}: not a fitted parameter (symcost.hardware.fit.families.PARAMETERS)")
    unit = PARAMETERS[name][1]
    if unit != 1 and unit not in UNITS:
        raise ConfigError(f"{name}: its unit, a scale of {unit}, is none the data files are written in "
                          f"(1, {', '.join(str(u) for u in UNITS)}: symcost.hardware.fit.UNITS)")
    scaled = value / unit
    text = str((Decimal(scaled.numerator) / Decimal(scaled.denominator)).normalize())
    if "E" in text:
        text = format(Decimal(scaled.numerator) / Decimal(scaled.denominator), "f")
    entry: dict[str, Any] = {"value": text}
    if unit != 1:
        entry["unit"] = UNITS[unit]
    entry["source"] = source
    return entry


def write(fits: "list[ChipFit]", root: Any = None) -> list[str]:
    """Put the fitted values into the chip presets and the engine profiles (under ``root``,
    default the installed ``symcost/hardware``), each with its source; the names of the files written."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent if root is None else Path(root)
    written = []
    engines: dict[str, dict[str, Any]] = {}
    for chip_fit in fits:
        sources = chip_fit.sources()
        path = root / "presets" / _preset_file(root, chip_fit.preset)
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, value in chip_fit.chip_values.items():
            data["fields"][name] = _entry(name, value, sources[(None, name)])
        for name, gpus in KERNEL_PATH_FIELDS.items():  # a kernel this GPU does not run: no value left over
            if chip_fit.gpu in gpus:
                data["fields"].pop(name, None)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(str(path))
        for engine, values in chip_fit.engine_values().items():
            if engine not in engines:
                epath = root / "engines" / f"{engine}.json"
                engines[engine] = json.loads(epath.read_text(encoding="utf-8"))
            chips = engines[engine].setdefault("chips", {})
            chips[chip_fit.preset] = {n: _entry(n, v, sources[(engine, n)]) for n, v in values.items()}
    for chip_fit in fits:
        if chip_fit.gpu == ASSUMED_FROM:
            written.append(_write_assumed(root, chip_fit))
    for engine, data in engines.items():
        epath = root / "engines" / f"{engine}.json"
        epath.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(str(epath))
    return written


ASSUMED_FROM = "h100_sxm"
"""The chip whose fitted kernel floors stand in for chips without per-op tables (A100's elementwise
floor, MI300X's floors and FP8 GEMM terms): ``presets/shared.json`` constants ``ASSUMED_<FIELD>``."""
ASSUMED = ("kernel_time", "gemm_time", "gemm_time_8bit", "quantize_bytes_8bit", "matmul_efficiency_8bit",
           "attention_time", "attention_decode_time")
"""The fields assumed from :data:`ASSUMED_FROM` where a chip has no table of its own."""


def _write_assumed(root: Any, chip_fit: ChipFit) -> str:
    """``shared.json``'s ``ASSUMED_<FIELD>`` constants: the fitted values of :data:`ASSUMED_FROM`."""
    import json

    path = root / "presets" / "shared.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    sources = chip_fit.sources()
    for name in ASSUMED:
        entry = _entry(name, chip_fit.chip_values[name], sources[(None, name)])
        entry["source"] = (f"assumption for chips without per-op tables of their own: the {chip_fit.preset} value "
                           f"({entry['source']})")
        data["constants"][f"ASSUMED_{name.upper()}"] = entry
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(path)


def _preset_file(root: Any, name: str) -> str:
    """The preset data file whose ``name`` is ``name``."""
    import json

    index = json.loads((root / "presets" / "index.json").read_text(encoding="utf-8"))
    for stem in index["presets"]:
        if json.loads((root / "presets" / f"{stem}.json").read_text(encoding="utf-8"))["name"] == name:
            return f"{stem}.json"
    raise KeyError(name)
