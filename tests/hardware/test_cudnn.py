"""cuDNN's flash backward on 10.x fitted per release on NVIDIA's published rows (issue 22): the fixed
time per call (the length ramp) with the share of the peak, and the release a run's container ships."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
import sympy as sp
from pydantic import ValidationError

import symcost as sc
from symcost import hardware
from symcost.core.ops import AttentionCore
from symcost.errors import ConfigError
from symcost.hardware import Hardware, cudnn
from symcost.hardware.timing import op_time
from symcost.plan import calibration_training as ct

US = Fraction(1, 10**6)
BF16 = sc.DataType.BF16


def test_fit_of_two_rows_is_the_line_through_them(monkeypatch):
    """Two rows of one release (b = h = d = 1: cuDNN's count 5 s^2 FLOPs): s = 1000 (5e6 FLOPs) at
    5/6 TFLOP/s is 6 us, s = 2000 (2e7 FLOPs) at 20/21 TFLOP/s is 21 us; the line through them is
    t0 = 1 us, x = 1e-12 s per FLOP (15 us over 1.5e7 FLOPs), whatever the weights; on a 2 TFLOP/s
    peak the share is 1 / (1e-12 * 2e12) = 1/2."""
    rows = (cudnn.BackwardRow("9.0.0", "X", Fraction(2), 1, 1000, 1, 1, Fraction(5, 6)),
            cudnn.BackwardRow("9.0.0", "X", Fraction(2), 1, 2000, 1, 1, Fraction(20, 21)))
    assert rows[0].seconds == 6 * US and rows[1].seconds == 21 * US
    monkeypatch.setattr(cudnn, "load_rows", lambda: rows)
    assert cudnn.fit("9.0.0", "X") == cudnn.BackwardFit(Fraction(1, 2), US)


def test_fit_refuses_a_release_without_two_lengths():
    with pytest.raises(ConfigError, match="^cudnn: no backward rows of release '9.99.0' on 'GB200'"):
        cudnn.fit("9.99.0", "GB200")


def test_published_gb200_rows_of_cudnn_922():
    """The rows as NVIDIA/cudnn-frontend publishes them (benchmark/sdpa_benchmark_training/results/
    llama3.1/gb200/llama3.1_20260424_100750.csv, cuDNN backend 92200: BF16, top_left, batch 2, 64/8
    heads of 128, non-deterministic backward): 885, 1148, 1332, 1328, 1226 TFLOP/s at 2k to 32k; the
    8k row's time 4.127 ms is cuDNN's 5 * 2 * 64 * 8192^2 * 128 FLOPs over 1332 TFLOP/s."""
    rows = {r.seq_len: r for r in cudnn.load_rows() if (r.release, r.gpu) == ("9.22.0", "GB200")}
    assert {s: r.tflops for s, r in rows.items()} == {2048: 885, 4096: 1148, 8192: 1332, 16384: 1328, 32768: 1226}
    assert rows[8192].flops == 5 * 2 * 64 * 8192**2 * 128
    assert 4.127e-3 < float(rows[8192].seconds) < 4.128e-3


def test_fit_follows_the_length_ramp_the_flat_share_missed():
    """The 9.22 GB200 fit (share 0.5234 of 2500 after 126.0 us) against its own rows: within 7 % of
    each length. The flat 333/625 (the 8k row alone) missed the short ones: the 2k row, 5 * 2 * 64 *
    2048^2 * 128 = 343,597,383,680 FLOPs, took 0.38824 ms (885 TFLOP/s); at 2500e12 * 333/625 = 1332
    TFLOP/s it is 0.25796 ms, 0.664 of the measured (885 / 1332); with the fixed time 126 us +
    0.26260 ms = 0.38860 ms, within 1 %."""
    rows = [r for r in cudnn.load_rows() if (r.release, r.gpu) == ("9.22.0", "GB200")]
    found = cudnn.fit("9.22.0", "GB200")
    assert found == cudnn.BackwardFit(Fraction(2617, 5000), Fraction(126) * US)
    for r in rows:
        predicted = found.time + r.flops / (r.peak * 10**12 * found.share)
        assert abs(r.seconds / predicted - 1) < Fraction(7, 100)
    two_k = next(r for r in rows if r.seq_len == 2048)
    flat = two_k.flops / (two_k.peak * 10**12 * Fraction(333, 625))
    assert flat / two_k.seconds < Fraction(67, 100)     # the flat share: a third too fast at 2k
    with_ramp = found.time + two_k.flops / (two_k.peak * 10**12 * found.share)
    assert abs(with_ramp / two_k.seconds - 1) < Fraction(1, 100)


def test_presets_are_the_fits_of_the_newest_release():
    """B200 and GB200 (SM100) take the fit of cuDNN 9.22 on GB200's rows, B300 (SM103) on GB300's;
    below 10.x neither field; the ideal chip neither."""
    sm100, sm103 = cudnn.fit("9.22.0", "GB200"), cudnn.fit("9.22.0", "GB300")
    for name, found in (("B200", sm100), ("GB200", sm100), ("B300", sm103)):
        chip = hardware.get(name)
        assert (chip.attention_backward_peak_efficiency, chip.attention_backward_time) == (found.share, found.time)
        assert chip.ideal().attention_backward_time is None
    assert sm103 == cudnn.BackwardFit(Fraction(743, 1250), Fraction(1289, 10**7))
    for name in ("A100_SXM_80GB", "H100_SXM", "H200_SXM"):
        assert hardware.get(name).attention_backward_time is None


def test_sm100_backward_pays_its_fixed_time_per_call():
    """A 10.x flash backward: the share's compute plus ``attention_backward_time`` per call in place
    of the prefill kernels' attention_time (15 us on the round chip); unset, attention_time. The core:
    b 1, 8 heads of 128, 1024 tokens, causal: 5,373,952,000 FLOPs at 10^14 * 1/2: 107.47904 us."""
    core = AttentionCore("core", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128,
                         causal=True, flash=True, dtype_bytes=2)
    (bwd,) = core.backward()
    chip = Hardware(name="round", peak_flops={"bf16": 10**14}, vector_flops=10**13, hbm_capacity=10**11,
                    hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8, scale_out_bandwidth=10**10,
                    collective_latency=US, kernel_time=US, attention_time=15 * US, compute_capability="10.0",
                    attention_backward_peak_efficiency=Fraction(1, 2))
    t = op_time(bwd, chip, chip.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14) * 2 and t.overhead == 15 * US
    timed = chip.with_efficiency(attention_backward_time=126 * US)
    t = op_time(bwd, timed, timed.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14) * 2 and t.overhead == 126 * US


def test_b200_backward_at_the_llama_8b_training_call():
    """Llama 3 8B on B200 at micro batch 2 (32 heads over 8 KV heads of 128, 8192 tokens, causal):
    8192 * 8193 / 2 = 33,558,528 pairs per head, 2 * 2 * 2 * 32 * 33,558,528 * 640 = 2,749,114,613,760
    backward FLOPs; under the preset (9.22): at 2250e12 * 2617/5000 = 1177.65 TFLOP/s, 2.33440 ms +
    126 us; under NeMo 25.11's cuDNN 9.13 (B200's own rows, 0.4848 after 628.9 us): 2.52037 ms +
    628.9 us: 3.149 ms against 2.460 ms, 28 % longer."""
    core = AttentionCore("core", batch=2, heads=32, kv_heads=8, q_len=8192, kv_len=8192, head_dim=128,
                         causal=True, flash=True, dtype_bytes=2, decode=False)
    (bwd,) = core.backward()
    assert bwd.matmul_flops == 2_749_114_613_760
    preset = hardware.get("B200")
    old = cudnn.with_cudnn(preset, "9.13.1")
    t_new, t_old = (op_time(bwd, c, c.effective_peak(BF16), BF16) for c in (preset, old))
    assert t_new.compute == sp.Rational(2_749_114_613_760, 2250 * 10**12) / Fraction(2617, 5000)
    assert t_new.overhead == 126 * US and t_old.overhead == Fraction(6289, 10) * US
    assert t_old.compute == sp.Rational(2_749_114_613_760, 2250 * 10**12) / Fraction(303, 625)
    assert 3.148e-3 < float(t_old.compute + t_old.overhead) < 3.150e-3


@pytest.mark.parametrize(("release", "measured"), [("9.13.1", ("9.13.0", "B200")), ("9.11.0", ("9.10.2", "B200")),
                                                   ("9.18.0", ("9.17.0", "GB200")), ("9.20.0", ("9.19.1", "GB200")),
                                                   ("9.22.0", ("9.22.0", "GB200")), ("9.30", ("9.22.0", "GB200"))])
def test_with_cudnn_takes_the_newest_release_measured_at_or_below(release, measured):
    """A release is timed with the newest one measured at or below it on an SM100 GPU (B200's own
    rows first at the same release): NeMo 25.11's 9.13.1 with B200's 9.13.0 (the cudnn-frontend run
    of nv25.09 logs torch.backends.cudnn.version() 91300), 26.02's 9.18.0 with 9.17.0 (9.18.1 is
    newer), 26.04's 9.20.0 with 9.19.1."""
    found = cudnn.fit(*measured)
    chip = cudnn.with_cudnn(hardware.get("B200"), release)
    assert (chip.attention_backward_peak_efficiency, chip.attention_backward_time) == (found.share, found.time)


def test_with_cudnn_below_10x_and_before_any_measurement():
    h100 = hardware.get("H100_SXM")
    assert cudnn.with_cudnn(h100, "9.13.1") is h100
    with pytest.raises(ConfigError, match="^B200: no cuDNN backward rows for compute capability 10.0 at or below "
                                          "release '9.9.0'"):
        cudnn.with_cudnn(hardware.get("B200"), "9.9.0")
    with pytest.raises(ConfigError, match="^cudnn release must be 'major.minor"):
        cudnn.with_cudnn(hardware.get("B200"), "latest")


def test_backward_time_is_a_10x_field():
    """Set below 10.x: refused by the validator, as the share is."""
    with pytest.raises(ValidationError, match="attention_backward_time is used on compute capability 10.x only"):
        hardware.get("H100_SXM").with_efficiency(attention_backward_time=100 * US)


def test_calibration_rows_run_their_containers_cudnn():
    """Megatron-Bridge docs/releases/software-versions.md (e49e451ba): NeMo 25.09 ships cuDNN 9.11.0.98,
    25.11 9.13.1.26, 26.02 9.18.0.50, 26.04 9.20.0.48, 26.06 9.21.1.3; the B200 rows are timed with
    those releases' fits, the H100 rows unchanged (their backward is the forward-relative form)."""
    by_id = {r.id: r for r in ct.load_rows()}
    assert {r.container: r.cudnn for r in by_id.values()} == {
        "NeMo 25.09 container": "9.11.0", "NeMo 25.11 container": "9.13.1", "NeMo 26.02 container": "9.18.0",
        "NeMo 26.02.01 container": "9.18.0", "NeMo 26.04.01 container": "9.20.0", "NeMo 26.06 container": "9.21.1"}
    b200 = ct.run_chip(by_id["bridge-B200-llama3-8b-gbs128"])
    assert (b200.attention_backward_peak_efficiency, b200.attention_backward_time) == (Fraction(303, 625),
                                                                                        Fraction(6289, 10**7))
    mb4 = ct.run_chip(by_id["bridge-B200-qwen3-30b-mb4-gbs512"])     # 26.04.01: 9.20.0 -> GB200's 9.19.1
    assert mb4.attention_backward_peak_efficiency == Fraction(5637, 10000)
    h100 = ct.run_chip(by_id["bridge-H100-llama3-8b-fsdp8-gbs128"])
    assert h100.attention_backward_time is None
    unlisted = dataclasses.replace(by_id["bridge-B200-llama3-8b-gbs128"], container="a container of its own")
    assert unlisted.cudnn is None and ct.run_chip(unlisted).attention_backward_time == Fraction(126) * US
