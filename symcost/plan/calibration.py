"""Calibrating the time model's efficiency factors on published measurements.

The only data used is Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on
GPU Clusters Using Megatron-LM", Table 1 (GPT models from 1.7B to 1T parameters on DGX A100s,
sequence 2048, vocabulary 51200, mixed precision, full activation recomputation, interleaved
1F1B pipelines), shipped as ``symcost/data/narayanan2021_table1.csv``.

For each row we build the Megatron GPT model, take the row's tensor, pipeline and data-parallel
degrees and global batch on ``A100_SXM_80GB``, choose what the table leaves open (micro-batch size
and interleaving degree) as the fastest configuration that fits in memory, and predict the
achieved teraFLOP/s per GPU the paper reports (Megatron-LM 2021 overlapped neither the
data-parallel all-reduce with the backward nor its pipeline sends with compute: ``dp_overlap=False``,
``pp_overlap=False``): ``F / (step time * GPUs)`` with the paper's count ``F = 96
B s l h^2 (1 + s/(6h) + V/(16 l h))``. The efficiency factors are the exact fractions
(on a 1/100 grid) minimizing the mean squared relative error; they are explicit
:class:`~symcost.hardware.Hardware` fields, never constants inside formulas.

The base chip is the realistic ``A100_SXM_80GB`` (its memory, kernel and collective terms fitted on
the inference measurements, :mod:`symcost.plan.calibration_inference`); only the 16-bit GEMM efficiency is
refitted here, since Megatron-LM 2021's GEMMs (cuBLAS of its day, training shapes) reach a lower
fraction of the peak than the 2022-23 inference engines' (docs/conventions.md, time model).
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Iterable, Optional, Sequence

from .. import hardware
from ..hardware import Hardware
from ..models.model import Model

__all__ = ["Row", "Prediction", "load_table", "predict", "calibrate", "MEGATRON_A100_EFFICIENCY",
           "megatron_a100"]

SEQ_LEN = 2048
VOCAB = 51200
MICRO_BATCHES = (1, 2, 4, 8)
INTERLEAVE = (1, 2, 3, 4)


@dataclass(frozen=True)
class Row:
    """One row of Narayanan et al. 2021, Table 1."""

    params_billion: float
    heads: int
    hidden: int
    layers: int
    tp: int
    pp: int
    gpus: int
    global_batch: int
    tflops_per_gpu: float

    @property
    def dp(self) -> int:
        return self.gpus // (self.tp * self.pp)

    @property
    def paper_flops(self) -> int:
        """F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) per iteration, as the paper counts it."""
        B, s, l_, h, V = self.global_batch, SEQ_LEN, self.layers, self.hidden, VOCAB
        return 96 * B * s * l_ * h * h + 16 * B * s * s * l_ * h + 6 * B * s * h * V


def load_table() -> list[Row]:
    """The ten rows of Table 1."""
    text = resources.files("symcost.data").joinpath("narayanan2021_table1.csv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = []
    for rec in csv.DictReader(lines):
        rows.append(Row(float(rec["params_billion"]), int(rec["attention_heads"]), int(rec["hidden_size"]),
                        int(rec["num_layers"]), int(rec["tensor_parallel"]), int(rec["pipeline_parallel"]),
                        int(rec["num_gpus"]), int(rec["global_batch"]), float(rec["tflops_per_gpu"])))
    return rows


@dataclass(frozen=True)
class Prediction:
    """The model's prediction for one row, with the configuration it chose."""

    row: Row
    tflops_per_gpu: float
    micro_batch: int
    interleave: int

    @property
    def relative_error(self) -> float:
        return self.tflops_per_gpu / self.row.tflops_per_gpu - 1


def predict(row: Row, chip: Hardware) -> Optional[Prediction]:
    """The predicted teraFLOP/s per GPU for ``row`` on ``chip`` (``None`` if nothing fits)."""
    model = Model.gpt(hidden_size=row.hidden, num_heads=row.heads, num_layers=row.layers, vocab_size=VOCAB,
                      seq_len=SEQ_LEN)
    # NB: Megatron-LM 2021 ran the unfused vocab-parallel cross-entropy on the fp16 logits cast to
    # fp32 (megatron/model/gpt_model.py ``vocab_parallel_cross_entropy(output.float(), labels)``)
    model = model.model_copy(update={"lm_head": model.lm_head.model_copy(update={"fused_loss": False})})
    par = {"tensor_parallel": row.tp, "pipeline_parallel": row.pp, "data_parallel": row.dp}
    best: Optional[Prediction] = None
    for b, v in itertools.product(MICRO_BATCHES, INTERLEAVE):
        if (row.global_batch // row.dp) % b or row.layers % (row.pp * v) or (v > 1 and row.pp == 1):
            continue
        step = model.training_step(chip, seq_len=SEQ_LEN, global_batch=row.global_batch, micro_batch=b,
                                   dtype="fp16", parallelism=par, recompute="full", interleave=v,
                                   zero_stage=0, dp_overlap=False, pp_overlap=False)
        if not step.fits:
            continue
        tflops = row.paper_flops / float(step.step_time) / row.gpus / 1e12
        if best is None or tflops > best.tflops_per_gpu:
            best = Prediction(row, tflops, b, v)
    return best


def _score(predictions: Iterable[Optional[Prediction]]) -> float:
    errs = [p.relative_error for p in predictions if p is not None]
    return sum(e * e for e in errs) / len(errs) if errs else float("inf")


_A100 = hardware.get("A100_SXM_80GB")
_MATMUL_GRID = tuple(Fraction(k, 100) for k in range(60, 81))
_NETWORK_GRID = (Fraction(1),)


def calibrate(rows: Sequence[Row], base: Hardware = _A100,
              matmul: Sequence[Fraction] = _MATMUL_GRID, network: Sequence[Fraction] = _NETWORK_GRID
              ) -> tuple[Hardware, list[Prediction]]:
    """The matmul and network efficiencies (the memory and kernel terms those of ``base``, the
    realistic chip) minimizing the mean squared relative error."""
    best: Optional[tuple[float, Hardware, list]] = None
    for m, n in itertools.product(matmul, network):
        chip = base.with_efficiency(matmul=m, network=n)
        preds = [predict(r, chip) for r in rows]
        score = _score(preds)
        if best is None or score < best[0]:
            best = (score, chip, preds)
    assert best is not None
    return best[1], best[2]


# The result of calibrate(load_table()) on the realistic A100_SXM_80GB: `python benchmarks/calibrate.py`
# recomputes it (about 8 minutes on 2 cores) and prints the fidelity table (docs/explanation/fidelity.md).
MEGATRON_A100_EFFICIENCY = {"matmul": Fraction(67, 100), "network": Fraction(1, 1)}


def megatron_a100() -> Hardware:
    """``A100_SXM_80GB`` with the efficiencies calibrated on Narayanan et al. 2021, Table 1."""
    return hardware.get("A100_SXM_80GB").with_efficiency(**MEGATRON_A100_EFFICIENCY)
