"""cuDNN's flash-attention backward on compute capability 10.x, from NVIDIA's published benchmark rows.

The backward of a flash core on a 10.x chip (:func:`symcost.hardware.kernels.attention_backward`)
takes ``t = t_abwd b h + F_b / (F_16 eta_abpk)`` per call: a time per (sequence, query head) of the
call and a share of the dense 16-bit peak (:attr:`Hardware.attention_backward_time`,
:attr:`Hardware.attention_backward_peak_efficiency`). Both are fitted here, per cuDNN release, on
the rows NVIDIA publishes for its own kernel (``symcost/data/cudnn_sdpa_backward.csv``:
NVIDIA/cudnn-frontend benchmark/sdpa_benchmark_training, each row with its file, commit and
harness): BF16, causal (top-left), non-deterministic backward, no sliding window, 2k to 32k
tokens, every shape the release's files publish (Llama 3.1's 64 or 128 query heads over 8 KV
heads of 128; under 9.22 also DeepSeek-V3's 128 and Kimi K2.6's 64 heads of 192/128, batch 2).

The term scales with ``b h``, not per call: under 9.22 on GB200 DeepSeek-V3 (128 heads) takes
1.970, 1.992, 1.996, 2.023, 2.016 times Kimi K2.6's time (64 heads, same dims) from 2k to 32k,
the same rate at every length, where a fixed time per call predicted 1.73 at 2k. Mechanism:
a flash backward is three kernels in FlashAttention-2/3 (Dao-AILab/flash-attention 0251105a
hopper/flash_bwd_launch_template.h: a preprocess (the row sums ``D = rowsum(dO * O)``, zeroing the
fp32 ``dQ`` accumulator) on a grid ``(num_m_block, h, b)``, the main kernel, a postprocess (fp32
``dQ`` to 16 bits) on ``(num_m_block, h, b)``): work organised per (batch, head), sourced for
FlashAttention. That the fixed part of it (each (batch, head)'s pipeline fill and drain, its
causal diagonal blocks, the small passes) is what the ``b h`` term carries is inferred from the
rows, not measured per kernel; that cuDNN's SDPA backward is alike is inferred from its graph's
inputs (``sdpa_backward`` takes O, dO and the softmax stats), not read in its closed kernels. The
length ramp (885 TFLOP/s at 2k, 1332 at 8k for Llama under 9.22) is what the
term fits. Tried over all 55 rows (scratch fits, each release's rows, a share per head
dimension): a time per call 3.1 % mean |error| (max 13.5 %; DeepSeek-V3 over Kimi 1.74 at 2k), per
``b h`` 2.5 % (6.6 %), per query row ``b h s`` 4.2 % (11.6 %), both ``b h`` and ``b h s`` 1.5 % with
a negative row term (unphysical; not shipped); with one share for every head dimension the ``b h``
form missed 9.22's Llama rows by up to 14 % (the heads of 192 run at a lower share: 0.458 of
GB200's peak against 0.526 for 128).
Fitted as ``t_i = tau u_i + x_d F_i`` (``u = b h``, one ``x_d`` per Q/K head dimension) by least
squares on the relative error (weights ``1 / t_i^2``), exactly in rationals; ``eta_abpk = 1 / (x_d
F_16)`` of head dimension 128 (Llama's, Qwen's, the calibration runs'), the chip's one share.

The times are the published ``time_ms`` (the TFLOP/s column is rounded to 1 TFLOP/s in the newer
files). The harness differs by release (the ``harness`` column): 9.10.2 and 9.13.0 are B200 rows of
the ``pyt_cudnn`` backend (PyTorch's SDPA calling cuDNN, CUDA events around the backward: a
framework's launch and dispatch inside the time), 9.17.0 GB200 rows of ``cudnn_fe`` and 9.18.1 on of
``cudnn`` (the frontend graph's execute, on GB200 and GB300). The B200 fits of 9.10/9.13 against
GB200's of 9.17+ mix the release with the harness and the GPU: they are not the release's effect
alone. Llama 3.1's 8k shape (64 query heads, batch 2, causal) ran at 1332 TFLOP/s on GB200 under
9.22 (2500 peak); B200 under 9.13 ran 942.5 on 405B's shape (128 heads, batch 1) under the
``pyt_cudnn`` harness. The presets take the newest release measured (9.22; ``ATTENTION_BACKWARD_SM100``);
:func:`with_cudnn` gives a chip the fit of another, for runs whose container shipped an older
cuDNN (:mod:`symcost.plan.calibration_training`).

>>> fit("9.22.0", "GB200")
BackwardFit(share=Fraction(263, 500), time=Fraction(523, 500000000))
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources

from ..errors import ConfigError
from .chip import PINGPONG_COMPUTE_CAPABILITY, TERA, Hardware

__all__ = ["BackwardFit", "BackwardRow", "fit", "load_rows", "release_key", "with_cudnn"]

DATA_FILE = "cudnn_sdpa_backward.csv"
"""The published rows (``symcost/data``), one per release, GPU, shape and length."""

GPU_FOR_CAPABILITY = {"10.0": ("B200", "GB200"), "10.3": ("GB300",)}
"""Whose rows a chip of each 10.x compute capability takes, in order of preference at one
release: SM100 (B200 first, then GB200) and SM103 (GB300). A share of the peak carries from one
GPU of a capability to another (the presets' convention, shared.json ``ATTENTION_BACKWARD_SM100``)."""


@dataclass(frozen=True)
class BackwardRow:
    """One published backward measurement: causal, ``batch`` sequences of ``seq_len`` tokens,
    ``heads`` query heads (Q and K of ``head_dim_qk``, V and O of ``head_dim_vo``) in ``time_ms``
    on ``gpu`` (dense 16-bit peak ``peak`` TFLOP/s) under cuDNN ``release``, timed by ``harness``
    (the benchmark's backend column: ``pyt_cudnn``, ``cudnn_fe`` or ``cudnn``)."""

    release: str
    gpu: str
    harness: str
    peak: Fraction
    batch: int
    seq_len: int
    heads: int
    head_dim_qk: int
    head_dim_vo: int
    time_ms: Fraction

    @property
    def flops(self) -> Fraction:
        """cuDNN's count of a causal backward's FLOPs (benchmark_single_sdpa.py ``flops``): 5
        matmuls over the ``s (s + 1) / 2`` unmasked pairs per head and sequence, three of width
        ``head_dim_qk`` and two of ``head_dim_vo``: ``2 b h s (s + 1) / 2 (3 d_qk + 2 d_vo)``
        (symcost's own count of the causal backward).

        >>> BackwardRow("9.22.0", "GB200", "cudnn", Fraction(2500), 2, 8192, 64, 128, 128, Fraction(4127, 1000)).flops
        Fraction(5498229227520, 1)
        """
        pairs = self.seq_len * (self.seq_len + 1) // 2
        return Fraction(2 * self.batch * self.heads * pairs * (3 * self.head_dim_qk + 2 * self.head_dim_vo))

    @property
    def sequence_heads(self) -> int:
        """``b h``: the (sequence, query head) pairs of the call."""
        return self.batch * self.heads

    @property
    def seconds(self) -> Fraction:
        """The measured time (the published ``time_ms``)."""
        return self.time_ms / 1000


@dataclass(frozen=True)
class BackwardFit:
    """``share`` of the dense 16-bit peak (to 4 decimals) after ``time`` seconds per (sequence,
    query head) of a call (to 1 ns): :attr:`Hardware.attention_backward_peak_efficiency` and
    :attr:`Hardware.attention_backward_time`."""

    share: Fraction
    time: Fraction


@functools.lru_cache(maxsize=1)
def load_rows() -> tuple[BackwardRow, ...]:
    """Every row of :data:`DATA_FILE`, in file order.

    >>> len(load_rows()), load_rows()[0].release, load_rows()[0].harness
    (55, '9.10.2', 'pyt_cudnn')
    """
    text = resources.files("symcost.data").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tuple(BackwardRow(r["release"], r["gpu"], r["harness"], Fraction(r["peak_tflops"]), int(r["batch"]),
                             int(r["seq_len"]), int(r["q_heads"]), int(r["head_dim_qk"]), int(r["head_dim_vo"]),
                             Fraction(r["time_ms"]))
                 for r in csv.DictReader(text.splitlines()))


def release_key(release: str) -> tuple[int, ...]:
    """``"9.13.1"`` as ``(9, 13, 1)``; one-line :class:`~symcost.errors.ConfigError` otherwise.

    >>> release_key("9.13.1") < release_key("9.22.0")
    True
    """
    parts = release.split(".")
    if not all(p.isdigit() for p in parts) or len(parts) not in (2, 3):
        raise ConfigError(f"cudnn release must be 'major.minor[.patch]' (as '9.13.1'), got {release!r}")
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def _gauss(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """The solution of the square system ``matrix y = rhs`` by Gaussian elimination, exactly."""
    n = len(rhs)
    rows = [list(matrix[i]) + [rhs[i]] for i in range(n)]
    for col in range(n):
        pivot = next(i for i in range(col, n) if rows[i][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for i in range(n):
            if i != col and rows[i][col] != 0:
                factor = rows[i][col] / rows[col][col]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[col])]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def _solve(rows: list[BackwardRow]) -> tuple[Fraction, dict[int, Fraction]]:
    """``(tau, {d: x_d})`` minimising ``sum ((tau u_i + x_d F_i - t_i) / t_i)^2``, ``u = b h`` and
    one ``x_d`` per Q/K head dimension ``d`` (the normal equations of the weighted least squares,
    exactly)."""
    dims = sorted({r.head_dim_qk for r in rows})
    design = [[Fraction(r.sequence_heads)] + [r.flops if r.head_dim_qk == d else Fraction(0) for d in dims]
              for r in rows]
    w = [1 / r.seconds**2 for r in rows]
    k = len(dims) + 1
    normal = [[sum((wi * x[i] * x[j] for wi, x in zip(w, design)), Fraction(0)) for j in range(k)] for i in range(k)]
    rhs = [sum((wi * x[i] * r.seconds for wi, x, r in zip(w, design, rows)), Fraction(0)) for i in range(k)]
    tau, *xs = _gauss(normal, rhs)
    return tau, dict(zip(dims, xs))


def fit(release: str, gpu: str, head_dim: int = 128) -> BackwardFit:
    """The time per (sequence, query head) fitted on every row of ``release`` on ``gpu``, with
    the share of the peak of the rows of Q/K head dimension ``head_dim`` (:func:`_solve`: one
    ``tau`` and a share per head dimension, 9.22's heads of 192 running at a lower share than
    Llama's of 128), rounded (share to 1e-4, time to 1 ns); one-line
    :class:`~symcost.errors.ConfigError` where fewer than two lengths are published.

    Hand check on two rows of ``b h = 1`` (a line through two points): 1e12 FLOPs in 1 ms and
    3e12 in 2 ms give ``x`` = 5e-16 s per FLOP (1 ms over 2e12 FLOPs) and ``tau`` = 0.5 ms; on a
    peak of 2500 TFLOP/s the share is ``1 / (x F_16)``:

    >>> x = Fraction(1, 10**3) / (2 * 10**12)
    >>> x, 1 / (x * 2500 * 10**12)
    (Fraction(1, 2000000000000000), Fraction(4, 5))
    """
    rows = [r for r in load_rows() if r.release == release and r.gpu == gpu]
    if len({r.seq_len for r in rows if r.head_dim_qk == head_dim}) < 2:
        measured = sorted({(r.release, r.gpu, r.head_dim_qk) for r in load_rows()})
        raise ConfigError(f"cudnn: no backward rows of release {release!r} on {gpu!r} at head dim {head_dim} "
                          f"(measured: {measured})")
    tau, xs = _solve(rows)
    share = Fraction(round(1 / (xs[head_dim] * rows[0].peak * TERA) * 10**4), 10**4)
    return BackwardFit(share, Fraction(round(tau * 10**9), 10**9))


def with_cudnn(chip: Hardware, release: str) -> Hardware:
    """``chip`` with the flash backward fitted on cuDNN ``release``: :func:`fit` of the newest
    release measured at or below it on a GPU of the chip's capability (:data:`GPU_FOR_CAPABILITY`,
    B200's rows before GB200's at one release); a chip below 10.x is returned as it is (its
    backward is the forward-relative form), as is an ideal chip (:meth:`Hardware.ideal`, a
    roofline without measured kernels); one-line :class:`~symcost.errors.ConfigError` where no
    GPU of its capability was measured at or below ``release``.

    >>> from symcost import hardware
    >>> b200 = with_cudnn(hardware.get("B200"), "9.13.1")    # B200's own rows, cuDNN 9.13
    >>> b200.attention_backward_peak_efficiency, b200.attention_backward_time * 10**6
    (303/625, 4913/1000)
    >>> with_cudnn(hardware.get("B200"), "9.20.0").attention_backward_peak_efficiency    # GB200's 9.19.1
    2819/5000
    """
    capability = chip.compute_capability or ""
    if capability.split(".")[0] != PINGPONG_COMPUTE_CAPABILITY or chip.is_ideal:
        return chip
    key = release_key(release)
    gpus = GPU_FOR_CAPABILITY.get(capability, ())
    measured = sorted(((release_key(r.release), -gpus.index(r.gpu), r.release, r.gpu) for r in load_rows()
                       if r.gpu in gpus and release_key(r.release) <= key), reverse=True)
    if not measured:
        raise ConfigError(f"{chip.name}: no cuDNN backward rows for compute capability {capability} at or below "
                          f"release {release!r} (measured: {sorted({(r.release, r.gpu) for r in load_rows()})})")
    found = fit(measured[0][2], measured[0][3])
    return chip.with_efficiency(attention_backward_peak_efficiency=found.share, attention_backward_time=found.time)
