"""The per-op error tables: the shipped time model against the measured rows, per op family, chip
and dtype, and how it carries to chips and backend versions it was not fitted on.

Every ratio is the library's predicted time over the measured one, with the chip as it ships
(:func:`shipped_values`), through the same compiled formula the fit used.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any, Iterable, Sequence

import numpy as np

from .. import get
from . import KERNEL_PATH_FIELDS, ChipFit, fit_chip, step_family, step_table
from .families import Family, FitResult, predict
from .tables import CHIPS, Table

__all__ = ["GENERALIZATION_TARGETS", "error_table", "generalization_table", "kernel_version_table", "left_out_line",
           "shipped_values", "version_table"]

_HEADER = ("| family | chip | rows | median ratio | mean abs error | p90 abs error | full grid: rows | "
           "mean abs error |\n|---|---|---:|---:|---:|---:|---:|---:|")


def shipped_values(family: Family) -> dict[str, Fraction]:
    """The family's fields as the chip (under the family's engine profile) ships them."""
    chip = get(CHIPS[family.chip])
    if family.runtime:
        chip = chip.with_runtime(family.runtime)
    return {name: Fraction(str(getattr(chip, name))) for name in family.fields}


def _line(label: str, chip: str, ratios: Any, grid: Any) -> str:
    s, g = FitResult.summary(ratios), FitResult.summary(grid)
    return (f"| {label} | {chip} | {int(s['rows'])} | {s['median']:.3f} | {s['mae']:.1%} | {s['p90']:.1%} | "
            f"{int(g['rows'])} | {g['mae']:.1%} |")


def _shipped_ratios(family: Family) -> tuple[Any, Any]:
    preset = get(CHIPS[family.chip])
    values = shipped_values(family)
    frame = family.rows(everything=True)
    chosen = frame.index.isin(family.rows().index)
    measured = frame["seconds"].to_numpy(dtype=float)
    ratios = predict(family, preset, values) / measured[chosen]
    grid = predict(family, preset, values, everything=True) / measured
    return ratios, grid[np.isfinite(grid)]


def error_table(fits: Iterable[ChipFit]) -> str:
    """Markdown: per family and chip (collectives per kind), the shipped model's ratios on the
    fitted rows and its mean absolute error on the table's full grid."""
    lines = [_HEADER]
    for chip_fit in fits:
        for result in chip_fit.results:
            family = result.family
            ratios, grid = _shipped_ratios(family)
            rows = result.rows
            if "op_name" in rows and rows["op_name"].nunique() > 1:
                for kind, part in rows.groupby("op_name"):
                    pick = rows.index.get_indexer(part.index)
                    lines.append(_line(f"{family.name.split(' ')[0]} {kind}", chip_fit.preset, ratios[pick],
                                       ratios[pick]))
            else:
                lines.append(_line(family.name, chip_fit.preset, ratios, grid))
            if family.name == "MoE experts bf16":
                lines.extend(_moe_check_lines(family, chip_fit.preset))
    return "\n".join(lines)


def left_out_line(fits: Sequence[ChipFit]) -> str:
    """Two sentences: per chip, the decode rows :func:`~symcost.hardware.fit.families.faster_than_hbm`
    leaves out of the fit, of the LLM-shaped rows; per engine and chip where any are, the all-reduce
    rows :func:`~symcost.hardware.fit.families.slower_than_nccl` leaves out, of the family's rows."""
    from .families import shaped_decode_rows

    parts = []
    for chip_fit in fits:
        for result in chip_fit.results:
            if result.family.name == "decode attention":
                shaped = len(shaped_decode_rows(result.family.rows(everything=True)))
                parts.append(f"{chip_fit.preset} {shaped - len(result.family.rows())} of {shaped}")
    return ("Decode rows measured faster than reading their KV cache once at the datasheet HBM bandwidth, left "
            "out of the fit (symcost.hardware.fit.families.faster_than_hbm; the full grid keeps them): "
            + ", ".join(parts) + ". " + _slow_nccl_sentence(fits))


def _slow_nccl_sentence(fits: Sequence[ChipFit]) -> str:
    """Per engine and chip where any are, the all-reduce rows in the engine's NCCL window measured more
    than :data:`~symcost.hardware.fit.families.NCCL_HARNESS_FACTOR` times NCCL's own table, left out
    (:attr:`~symcost.hardware.fit.families.Family.left_out`), of the rows the family's filter picks."""
    from .families import NCCL_HARNESS_FACTOR

    parts = []
    for chip_fit in fits:
        for result in chip_fit.results:
            family = result.family
            if family.left_out is not None:
                left, usable = family.left_out(family.rows(everything=True))
                if left:
                    parts.append(f"{family.runtime} on {chip_fit.preset} {left} of {usable}")
    return ("Engine all-reduce rows where the engine's own switch runs NCCL, measured more than "
            f"{float(NCCL_HARNESS_FACTOR):g} times NCCL's own table for the same bytes and GPUs, left out of the "
            "fit (symcost.hardware.fit.families.slower_than_nccl): " + (", ".join(parts) or "none") + ".")


MOE_CHECKS = (("power_law_1.01", "bfloat16", False), ("power_law_1.2", "bfloat16", False),
              ("balanced", "bfloat16", True), ("balanced", "fp8_block", False))
"""The MoE rows the family is checked on, not fitted: (distribution, expert dtype, MoE TP >= 8)."""


def _moe_check_lines(family: Family, preset: str) -> list[str]:
    """The MoE family's shipped terms on rows it is not fitted on (:data:`MOE_CHECKS`): power-law
    routing (the busiest rank's pairs from :func:`~symcost.hardware.fit.families.power_law_share`),
    MoE TP 8 and more, block-scaled FP8 experts (at the per-tensor FP8 experts' fitted terms)."""
    from .families import moe_rows

    frame = family.rows(everything=True)
    predicted = predict(family, get(CHIPS[family.chip]), shipped_values(family), everything=True)
    lines = []
    for distribution, dtype, wide_tp in MOE_CHECKS:
        rows = moe_rows(frame, distribution, dtype, wide_tp)
        if rows.empty:
            continue
        ratios = predicted[frame.index.get_indexer(rows.index)] / rows["seconds"].to_numpy(dtype=float)
        parts = ["MoE experts", dtype.replace("bfloat16", "bf16").replace("_", " ")]
        parts += [distribution.replace("_", "-")] if distribution != "balanced" else []
        parts += ["MoE TP >= 8"] if wide_tp else []
        label = " ".join(parts)
        lines.append(_line(f"{label} (checked, not fitted)", preset, ratios, ratios))
    return lines


GENERALIZATION_TARGETS = ("h200_sxm", "b200_sxm", "b300_sxm", "gb200")
"""The chips :func:`generalization_table` predicts from H100's fit: every other Hopper and Blackwell
GPU folder with per-op tables (:data:`~symcost.hardware.fit.tables.CHIPS`)."""


def generalization_table(source: str = "h100_sxm", targets: tuple[str, ...] = GENERALIZATION_TARGETS,
                         fits: Sequence[ChipFit] = ()) -> str:
    """Markdown: each family fitted on ``source``'s tables only, its values applied to each target
    chip's datasheet figures (its compute capability too: NCCL's NVLS factor,
    :data:`~symcost.hardware.chip.NCCL_NVLS_EFFICIENCY`; a term of a kernel the target does not run,
    :data:`KERNEL_PATH_FIELDS`, stays unset there), against the target's measured rows (next to the
    target's own fit). ``fits``: chips already fitted (:func:`fit_chip`), not fitted again."""
    done = {f.gpu: f for f in fits}
    fitted = done.get(source) or fit_chip(source)
    lines = ["| family | fitted on | predicts | rows | median ratio | mean abs error | its own fit: mean abs error |",
             "|---|---|---|---:|---:|---:|---:|"]
    for target in targets:
        own = {r.family.name: r for r in (done.get(target) or fit_chip(target)).results}
        values: dict[str, Fraction] = {}
        for result in fitted.results:
            family = result.family
            if family.runtime is None:
                values.update(result.values)
            if family.name not in own:
                continue
            theirs = own[family.name].family
            # NB: a term of a kernel the target does not run (KERNEL_PATH_FIELDS) stays unset there
            moved = replace(theirs, fixed={k: v for k, v in values.items() if k not in theirs.fields
                                           and target not in KERNEL_PATH_FIELDS.get(k, ())})
            ratios = predict(moved, get(CHIPS[target]), {**values, **result.values})
            ratios = ratios / moved.rows()["seconds"].to_numpy(dtype=float)
            s = FitResult.summary(ratios)
            mine = FitResult.summary(own[family.name].ratios)
            lines.append(f"| {family.name} | {CHIPS[source]} | {CHIPS[target]} | {int(s['rows'])} | "
                         f"{s['median']:.3f} | {s['mae']:.1%} | {mine['mae']:.1%} |")
    return "\n".join(lines)


VERSION_PAIRS: tuple[tuple[str, str, str, str, str], ...] = (
    ("h100_sxm", "comm", "nccl", "2.27.3", "2.29.2"),
    ("h100_sxm", "comm", "trtllm", "1.2.0rc5", "1.3.0rc20"),
    ("h100_sxm", "comm", "vllm", "0.19.0", "0.24.0"),
    ("h100_sxm", "comm", "sglang", "0.5.10", "0.5.14"),
)
"""(GPU, family folder, backend, the version fitted on, the next version predicted)."""


def version_table() -> str:
    """Markdown: collectives fitted on one backend version, predicting the next one's table."""
    from . import _NCCL_FIELDS, _NVLS_FIELDS, all_to_all_family, engine_allreduce_family, nccl_family
    from .families import fit

    lines = ["| backend | GPU | fitted on | predicts | rows | median ratio | mean abs error | next version's own fit |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for gpu, folder, backend, old, new in VERSION_PAIRS:
        preset = get(CHIPS[gpu])
        nccl = backend == "nccl"
        name = "nccl_perf" if nccl else "custom_allreduce_perf"
        before, after = Table(gpu, folder, backend, old, name), Table(gpu, folder, backend, new, name)
        if not (before.path.exists() and after.path.exists()):
            continue
        nvls = preset.nvls_latency is not None
        pairs: list[tuple[str, Family, Family, dict[str, Fraction]]]
        if nccl:
            # the rings, then all-to-all at the rings' bus bandwidth (each version's own), as fit_chip does
            rings = [nccl_family(gpu, t, nvls, {}) for t in (before, after)]
            old_ring, new_ring = (dict(fit(f, preset).values) for f in rings)
            pairs = [("nccl", rings[0], rings[1], {}),
                     ("nccl all_to_all", all_to_all_family(gpu, before, old_ring),
                      all_to_all_family(gpu, after, old_ring), new_ring)]
        else:
            engine = {"trtllm": "tensorrt-llm", "vllm": "vllm", "sglang": "sglang"}[backend]
            fixed = {k: Fraction(str(getattr(preset, k))) for k in _NCCL_FIELDS + (_NVLS_FIELDS if nvls else ())}
            old_family, new_family = (engine_allreduce_family(gpu, t, fixed, engine) for t in (before, after))
            pairs = [(backend, old_family, new_family, {})]
        for label, old_family, new_family, own_fixed in pairs:
            ratios = predict(new_family, preset, fit(old_family, preset).values)
            s = FitResult.summary(ratios / new_family.rows()["seconds"].to_numpy(dtype=float))
            own = FitResult.summary(fit(replace(new_family, fixed=own_fixed or dict(new_family.fixed)), preset).ratios)
            lines.append(f"| {label} | {CHIPS[gpu]} | {old} | {new} | {int(s['rows'])} | {s['median']:.3f} | "
                         f"{s['mae']:.1%} | {own['mae']:.1%} |")
    return "\n".join(lines)


KERNEL_VERSION_PAIRS: tuple[tuple[str, str, str, str, str], ...] = (
    ("h100_sxm", "gemm bfloat16", "sglang", "0.5.6.post2", "0.5.14"),
    ("h100_sxm", "gemm fp8", "sglang", "0.5.6.post2", "0.5.14"),
    ("h100_sxm", "moe", "trtllm", "1.3.0rc10", "1.3.0rc20"),
    ("h100_sxm", "moe fp8", "trtllm", "1.3.0rc10", "1.3.0rc20"),
    ("b200_sxm", "prefill", "vllm", "0.22.0", "0.24.0"),
    ("b200_sxm", "decode", "vllm", "0.22.0", "0.24.0"),
)
"""(GPU, :func:`~symcost.hardware.fit.plan` step, backend, the version fitted on, the next version
predicted): every kernel family whose tables hold two versions of one backend on H100 (GEMMs: SGLang;
MoE: TensorRT-LLM; the attention tables hold one version per backend there) or, for attention, on
B200 (vLLM)."""


def kernel_version_table() -> str:
    """Markdown: each kernel family fitted on one backend version's table (its own fields only,
    the rest as the preset ships them), predicting the next version's table, next to that
    version's own fit."""
    from .families import fit

    lines = ["| family | backend | GPU | fitted on | predicts | rows | median ratio | mean abs error | "
             "next version's own fit |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for gpu, step, backend, old, new in KERNEL_VERSION_PAIRS:
        preset = get(CHIPS[gpu])
        before, after = (step_family(gpu, step, step_table(gpu, step, backend, v), {}) for v in (old, new))
        ratios = predict(after, preset, fit(before, preset).values)
        s = FitResult.summary(ratios / after.rows()["seconds"].to_numpy(dtype=float))
        own = FitResult.summary(fit(after, preset).ratios)
        lines.append(f"| {after.name} | {backend} | {CHIPS[gpu]} | {old} | {new} | {int(s['rows'])} | "
                     f"{s['median']:.3f} | {s['mae']:.1%} | {own['mae']:.1%} |")
    return "\n".join(lines)
