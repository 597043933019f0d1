"""cuDNN's flash-attention backward on compute capability 10.x, from NVIDIA's published benchmark rows.

The backward of a flash core on a 10.x chip (:func:`symcost.hardware.kernels.attention_backward`)
takes ``t = t_abwd + F_b / (F_16 eta_abpk)`` per call: a fixed time and a share of the dense 16-bit
peak (:attr:`Hardware.attention_backward_time`, :attr:`Hardware.attention_backward_peak_efficiency`).
Both are fitted here, per cuDNN release, on the rows NVIDIA publishes for its own kernel
(``symcost/data/cudnn_sdpa_backward.csv``: NVIDIA/cudnn-frontend benchmark/sdpa_benchmark_training,
each row with its file and commit): BF16, causal (top-left), non-deterministic backward, head
dimension 128, 8 KV heads (Llama 3.1's shape: 64 query heads, or 405B's 128), 2k to 32k tokens. The
fixed time is the kernel's length ramp: 885 TFLOP/s at 2k, 1148 at 4k, 1332 at 8k on GB200 under cuDNN
9.22, which one share of the peak (the previous form) missed by -28 % and -12 % (too fast) at 2k
and 4k. Fitted as a straight line in the FLOPs, ``t_i = t0 + F_i x``, by least squares on the
relative error (weights ``1 / t_i^2``), exactly in rationals; ``eta_abpk = 1 / (x F_16)``.

The release matters: the same row ran at 942.5 TFLOP/s on B200 under cuDNN 9.13 and 1332 on GB200
under 9.22 (2250 and 2500 peak). The presets take the newest release measured (9.22;
``ATTENTION_BACKWARD_SM100``); :func:`with_cudnn` gives a chip the fit of another, for runs whose
container shipped an older cuDNN (:mod:`symcost.plan.calibration_training`).

>>> fit("9.22.0", "GB200")
BackwardFit(share=Fraction(2617, 5000), time=Fraction(63, 500000))
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources

from ..errors import ConfigError
from .chip import PINGPONG_COMPUTE_CAPABILITY, TERA, Hardware

__all__ = ["BackwardFit", "BackwardRow", "fit", "load_rows", "measured_release", "release_key", "with_cudnn"]

DATA_FILE = "cudnn_sdpa_backward.csv"
"""The published rows (``symcost/data``), one per release, GPU and length."""

GPU_FOR_CAPABILITY = {"10.0": ("B200", "GB200"), "10.3": ("GB300",)}
"""Whose rows a chip of each 10.x compute capability takes, its own GPU's first: SM100 (B200, GB200)
and SM103 (B300, GB300). A share of the peak carries from one GPU of a capability to another (the
presets' convention, shared.json ``ATTENTION_BACKWARD_SM100``)."""


@dataclass(frozen=True)
class BackwardRow:
    """One published backward measurement: causal, ``batch`` sequences of ``seq_len`` tokens,
    ``heads`` query heads of ``head_dim``, at ``tflops`` TFLOP/s on ``gpu`` (dense 16-bit peak
    ``peak`` TFLOP/s) under cuDNN ``release``."""

    release: str
    gpu: str
    peak: Fraction
    batch: int
    seq_len: int
    heads: int
    head_dim: int
    tflops: Fraction

    @property
    def flops(self) -> Fraction:
        """cuDNN's count of a causal backward's FLOPs: 5 matmuls of ``2 s^2 d`` per head and
        sequence, half of them under the mask: ``5 b h s^2 d`` (benchmark_single_sdpa.py's
        ``2.5 *`` the forward's ``4 b h s^2 d / 2``).

        >>> BackwardRow("9.22.0", "GB200", Fraction(2500), 2, 8192, 64, 128, Fraction(1332)).flops
        Fraction(5497558138880, 1)
        """
        return Fraction(5 * self.batch * self.heads * self.seq_len**2 * self.head_dim)

    @property
    def seconds(self) -> Fraction:
        """The measured time: :attr:`flops` over the published rate."""
        return self.flops / (self.tflops * TERA)


@dataclass(frozen=True)
class BackwardFit:
    """``share`` of the dense 16-bit peak (to 4 decimals) after ``time`` seconds per call (to
    0.1 us): :attr:`Hardware.attention_backward_peak_efficiency` and
    :attr:`Hardware.attention_backward_time`."""

    share: Fraction
    time: Fraction


@functools.lru_cache(maxsize=1)
def load_rows() -> tuple[BackwardRow, ...]:
    """Every row of :data:`DATA_FILE`, in file order.

    >>> len(load_rows()), load_rows()[0].release
    (35, '9.10.2')
    """
    text = resources.files("symcost.data").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tuple(BackwardRow(r["release"], r["gpu"], Fraction(r["peak_tflops"]), int(r["batch"]), int(r["seq_len"]),
                             int(r["q_heads"]), int(r["head_dim"]), Fraction(r["bwd_tflops"]))
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


def _solve(rows: list[BackwardRow]) -> tuple[Fraction, Fraction]:
    """``(t0, x)`` minimising ``sum ((t0 + F_i x - t_i) / t_i)^2`` (the normal equations of the
    weighted least squares, exactly)."""
    w = [1 / r.seconds**2 for r in rows]
    s_w = sum(w, Fraction(0))
    s_f = sum((wi * r.flops for wi, r in zip(w, rows)), Fraction(0))
    s_ff = sum((wi * r.flops**2 for wi, r in zip(w, rows)), Fraction(0))
    s_t = sum((wi * r.seconds for wi, r in zip(w, rows)), Fraction(0))
    s_ft = sum((wi * r.flops * r.seconds for wi, r in zip(w, rows)), Fraction(0))
    det = s_w * s_ff - s_f**2
    return (s_t * s_ff - s_f * s_ft) / det, (s_w * s_ft - s_f * s_t) / det


def fit(release: str, gpu: str) -> BackwardFit:
    """The fixed time and share of the peak fitted on the rows of ``release`` on ``gpu``
    (:func:`_solve`), rounded (share to 1e-4, time to 0.1 us); one-line
    :class:`~symcost.errors.ConfigError` where fewer than two lengths are published.

    Hand check on two rows (a line through two points): 1e12 FLOPs in 1 ms and 3e12 in 2 ms give
    ``x`` = 0.5 ns per kFLOP, ``t0`` = 0.5 ms (a peak of 2500 TFLOP/s: share 1 / (5e-13 * 2.5e15) =
    0.8); the published rows are in tests/hardware/test_cudnn.py.
    """
    rows = [r for r in load_rows() if r.release == release and r.gpu == gpu]
    if len({r.seq_len for r in rows}) < 2:
        measured = sorted({(r.release, r.gpu) for r in load_rows()})
        raise ConfigError(f"cudnn: no backward rows of release {release!r} on {gpu!r} (measured: {measured})")
    t0, x = _solve(rows)
    share = Fraction(round(1 / (x * rows[0].peak * TERA) * 10**4), 10**4)
    return BackwardFit(share, Fraction(round(t0 * 10**7), 10**7))


def measured_release(release: str, gpu: str) -> str:
    """The newest release measured on ``gpu`` not newer than ``release`` (what a run under
    ``release`` is timed with: a kernel does not get slower with the release in these rows' span,
    9.10 to 9.22, except at 32k); one-line :class:`~symcost.errors.ConfigError` if none.

    >>> measured_release("9.13.1", "B200"), measured_release("9.21.1", "GB200")
    ('9.13.0', '9.19.1')
    """
    key = release_key(release)
    older = sorted({r.release for r in load_rows() if r.gpu == gpu and release_key(r.release) <= key}, key=release_key)
    if not older:
        raise ConfigError(f"cudnn: no backward rows on {gpu!r} at or below release {release!r}")
    return older[-1]


def with_cudnn(chip: Hardware, release: str) -> Hardware:
    """``chip`` with the flash backward fitted on cuDNN ``release``: :func:`fit` of the newest
    release measured at or below it on a GPU of the chip's capability (:data:`GPU_FOR_CAPABILITY`,
    the chip's own GPU first at the same release); a chip below 10.x is returned as it is (its
    backward is the forward-relative form); one-line :class:`~symcost.errors.ConfigError` where no
    GPU of its capability was measured at or below ``release``.

    >>> from symcost import hardware
    >>> b200 = with_cudnn(hardware.get("B200"), "9.13.1")    # B200's own rows, cuDNN 9.13
    >>> b200.attention_backward_peak_efficiency, b200.attention_backward_time * 10**6
    (303/625, 6289/10)
    >>> with_cudnn(hardware.get("B200"), "9.20.0").attention_backward_peak_efficiency    # GB200's 9.19.1
    5637/10000
    """
    capability = chip.compute_capability or ""
    if capability.split(".")[0] != PINGPONG_COMPUTE_CAPABILITY:
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
