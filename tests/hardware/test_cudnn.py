"""cuDNN's flash backward on 10.x fitted per release on NVIDIA's published rows (issue 22): the time per
(sequence, query head) of a call (the length ramp) with the share of the peak, and the release a run's
container ships."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
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
    """Two rows of one release, b = h = d = 1 (cuDNN's count 2 * s (s + 1) / 2 * 5 FLOPs): s = 999
    (4,995,000 FLOPs) in 6 us, s = 1999 (19,990,000 FLOPs) in 21 us; with b h = 1 in both the line
    through them is tau = 6 us - 4.995e6 x, x = 15 us / 1.4995e7 FLOPs, whatever the weights."""
    rows = (cudnn.BackwardRow("9.0.0", "X", "cudnn", Fraction(2), 1, 999, 1, 1, 1, Fraction(6, 1000)),
            cudnn.BackwardRow("9.0.0", "X", "cudnn", Fraction(2), 1, 1999, 1, 1, 1, Fraction(21, 1000)))
    assert rows[0].flops == 4_995_000 and rows[1].flops == 19_990_000
    x = 15 * US / 14_995_000
    tau = 6 * US - 4_995_000 * x
    monkeypatch.setattr(cudnn, "load_rows", lambda: rows)
    share = Fraction(round(1 / (x * 2 * 10**12) * 10**4), 10**4)      # 14995/30000 = 0.49983 -> 0.4998
    assert cudnn.fit("9.0.0", "X", head_dim=1) == cudnn.BackwardFit(share, Fraction(round(tau * 10**9), 10**9))
    assert share == Fraction(4998, 10**4)


def test_fit_refuses_a_release_without_two_lengths():
    with pytest.raises(ConfigError, match="^cudnn: no backward rows of release '9.99.0' on 'GB200'"):
        cudnn.fit("9.99.0", "GB200")


def test_published_gb200_rows_of_cudnn_922():
    """The rows as NVIDIA/cudnn-frontend publishes them (benchmark/sdpa_benchmark_training/results/
    llama3.1/gb200/llama3.1_20260424_100750.csv, cuDNN backend 92200: BF16, top_left, batch 2, 64/8
    heads of 128, non-deterministic backward): 0.389, 1.198, 4.127, 16.554, 71.756 ms at 2k to 32k
    (885, 1148, 1332, 1328, 1226 TFLOP/s); the 8k row's count 2 * 2 * 64 * (8192 * 8193 / 2) * 640."""
    rows = {r.seq_len: r for r in cudnn.load_rows()
            if (r.release, r.gpu, r.heads, r.head_dim_qk) == ("9.22.0", "GB200", 64, 128)}
    assert {s: r.time_ms for s, r in rows.items()} == {
        2048: Fraction("0.389"), 4096: Fraction("1.198"), 8192: Fraction("4.127"), 16384: Fraction("16.554"),
        32768: Fraction("71.756")}
    assert rows[8192].flops == 2 * 2 * 64 * (8192 * 8193 // 2) * 640
    assert 1331 < rows[8192].flops / rows[8192].seconds / 10**12 < 1333      # the published 1332 TFLOP/s


def test_harness_of_each_release():
    """9.10.2 and 9.13.0 are B200 rows of the pyt_cudnn backend (artifacts/sdpa_bf16_benchmark_results_
    NVIDIA_B200.csv), 9.17.0 GB200 rows of cudnn_fe, 9.18.1 on the cudnn backend."""
    harness = {(r.release, r.gpu): r.harness for r in cudnn.load_rows()}
    assert harness == {("9.10.2", "B200"): "pyt_cudnn", ("9.13.0", "B200"): "pyt_cudnn",
                       ("9.17.0", "GB200"): "cudnn_fe", ("9.18.1", "GB200"): "cudnn", ("9.19.1", "GB200"): "cudnn",
                       ("9.22.0", "GB200"): "cudnn", ("9.22.0", "GB300"): "cudnn"}


@pytest.mark.parametrize("group", sorted({(r.release, r.gpu) for r in cudnn.load_rows()}))
def test_fit_is_the_least_squares_fit(group):
    """Each release's fit against an independent weighted least squares (numpy's lstsq on the rows
    scaled by 1 / t_i: columns b h and F_i for each Q/K head dimension), to 1e-3 relative; the share
    is head dimension 128's."""
    rows = [r for r in cudnn.load_rows() if (r.release, r.gpu) == group]
    dims = sorted({r.head_dim_qk for r in rows})
    t = np.array([float(r.seconds) for r in rows])
    design = np.array([[r.batch * r.heads] + [float(r.flops) * (r.head_dim_qk == d) for d in dims]
                       for r in rows]) / t[:, None]
    (tau, *xs), *_ = np.linalg.lstsq(design, np.ones(len(rows)), rcond=None)
    x = xs[dims.index(128)]
    found = cudnn.fit(*group)
    assert float(found.time) == pytest.approx(tau, rel=1e-3)
    assert float(found.share) == pytest.approx(1 / (x * float(rows[0].peak) * 1e12), rel=1e-3)


def test_backward_time_scales_with_sequences_times_heads():
    """cudnn-frontend's 9.22 GB200 files (results/dsv3/gb200/dsv3_20260424_101009.csv and
    results/kimiK26/gb200/kimiK26_20260424_100953.csv, batch 2, heads of 192/128, causal, BF16,
    non-deterministic): DeepSeek-V3 (128 heads) 1.056, 3.383, 11.984, 50.424, 212.546 ms and Kimi
    K2.6 (64 heads) 0.536, 1.698, 6.005, 24.921, 105.445 ms at 2k to 32k: 1.970, 1.992, 1.996, 2.023,
    2.016 times. The preset B200/GB200 backward of the two cores keeps that ratio at 2k (a fixed
    time per call gave 1.74 there)."""
    measured = {2048: (Fraction("1.056"), Fraction("0.536")), 32768: (Fraction("212.546"), Fraction("105.445"))}
    for s, (dsv3, kimi) in measured.items():
        rows = {r.heads: r.time_ms for r in cudnn.load_rows()
                if (r.release, r.gpu, r.head_dim_qk, r.seq_len) == ("9.22.0", "GB200", 192, s)}
        assert rows == {128: dsv3, 64: kimi}
    chip = hardware.get("GB200")
    times = {}
    for heads in (64, 128):
        core = AttentionCore("core", batch=2, heads=heads, kv_heads=heads, q_len=2048, kv_len=2048, head_dim=192,
                             v_head_dim=128, causal=True, flash=True, dtype_bytes=2, decode=False)
        (bwd,) = core.backward()
        times[heads] = op_time(bwd, chip, chip.effective_peak(BF16), BF16).time
    assert abs(times[128] / times[64] / Fraction(1056, 536) - 1) < Fraction(2, 100)


def test_context_parallel_backward_pays_the_time_per_ring_step():
    """Transformer Engine's ring context parallelism (AttnFuncWithCPAndKVP2P.backward, transformer_engine/
    pytorch/attention/dot_product_attention/context_parallel.py: ``for i in range(cp_size)`` with one
    cp_p2p_bwd_fused_attn, i.e. fused_attn_bwd, per step) runs cp backward calls per layer, each over
    the chip's b h: b 1, 8 heads, cp 4 pays 4 * 1 * 8 * t_abwd = 32 * 1 us on a chip of 1 us per
    (sequence, head); at cp 1 8 us."""
    chip = Hardware(name="round", peak_flops={"bf16": 10**14}, vector_flops=10**13, hbm_capacity=10**11,
                    hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8, scale_out_bandwidth=10**10,
                    collective_latency=US, kernel_time=US, attention_time=15 * US, compute_capability="10.0",
                    attention_backward_peak_efficiency=Fraction(1, 2), attention_backward_time=US)
    for cp, expected in ((1, 8 * US), (4, 32 * US)):
        core = AttentionCore("core", batch=1, heads=8, kv_heads=8, q_len=4096, kv_len=4096, head_dim=128,
                             causal=True, flash=True, dtype_bytes=2, decode=False, context_parallel=sp.Integer(cp))
        (bwd,) = core.backward()
        assert op_time(bwd, chip, chip.effective_peak(BF16), BF16).overhead == expected


def test_with_cudnn_returns_an_ideal_chip_unchanged():
    ideal = hardware.get("B200").ideal()
    assert cudnn.with_cudnn(ideal, "9.13.1") is ideal and ideal.is_ideal


def test_fit_follows_the_length_ramp_the_flat_share_missed():
    """The 9.22 GB200 fit (share 0.526 of 2500 for heads of 128, 1.046 us per sequence and head)
    against Llama's rows: measured over predicted within 7.1 % of each length (32k's 1.0706).
    The flat 333/625 (the 8k row alone) missed the
    short ones: the 2k row, 2 * 2 * 64 * (2048 * 2049 / 2) * 640 = 343,765,155,840 FLOPs, took 0.389
    ms; at 2500e12 * 333/625 = 1332 TFLOP/s it is 0.25808 ms, 0.663 of the measured; with the fitted
    128 * 1.046 us = 133.888 us + 0.26142 ms = 0.39531 ms, within 2 %."""
    rows = [r for r in cudnn.load_rows() if (r.release, r.gpu, r.head_dim_qk) == ("9.22.0", "GB200", 128)]
    found = cudnn.fit("9.22.0", "GB200")
    for r in rows:
        predicted = found.time * r.sequence_heads + r.flops / (r.peak * 10**12 * found.share)
        assert abs(r.seconds / predicted - 1) < Fraction(71, 1000)
    two_k = next(r for r in rows if r.seq_len == 2048)
    assert two_k.flops == 343_765_155_840
    flat = two_k.flops / (two_k.peak * 10**12 * Fraction(333, 625))
    assert flat / two_k.seconds < Fraction(67, 100)     # the flat share: a third too fast at 2k
    with_ramp = found.time * 128 + two_k.flops / (two_k.peak * 10**12 * found.share)
    assert abs(with_ramp / two_k.seconds - 1) < Fraction(2, 100)


def test_presets_are_the_fits_of_the_newest_release():
    """B200 and GB200 (SM100) take the fit of cuDNN 9.22 on GB200's rows, B300 (SM103) on GB300's;
    below 10.x neither field; the ideal chip neither."""
    sm100, sm103 = cudnn.fit("9.22.0", "GB200"), cudnn.fit("9.22.0", "GB300")
    for name, found in (("B200", sm100), ("GB200", sm100), ("B300", sm103)):
        chip = hardware.get(name)
        assert (chip.attention_backward_peak_efficiency, chip.attention_backward_time) == (found.share, found.time)
        assert chip.ideal().attention_backward_time is None
    for name in ("A100_SXM_80GB", "H100_SXM", "H200_SXM"):
        assert hardware.get(name).attention_backward_time is None


def test_sm100_backward_pays_its_time_per_sequence_and_head():
    """A 10.x flash backward: the share's compute plus ``attention_backward_time`` per (sequence,
    query head) of the call, not the prefill kernels' attention_time (15 us on the round chip);
    unset, nothing. The core: b 1, 8 heads of 128, 1024 tokens, causal: 5,373,952,000 FLOPs at
    10^14 * 1/2: 107.47904 us; at 1 us per (sequence, head) 1 * 8 * 1 us = 8 us."""
    core = AttentionCore("core", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128,
                         causal=True, flash=True, dtype_bytes=2)
    (bwd,) = core.backward()
    chip = Hardware(name="round", peak_flops={"bf16": 10**14}, vector_flops=10**13, hbm_capacity=10**11,
                    hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8, scale_out_bandwidth=10**10,
                    collective_latency=US, kernel_time=US, attention_time=15 * US, compute_capability="10.0",
                    attention_backward_peak_efficiency=Fraction(1, 2))
    t = op_time(bwd, chip, chip.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14) * 2 and t.overhead == 0
    timed = chip.with_efficiency(attention_backward_time=US)
    t = op_time(bwd, timed, timed.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14) * 2 and t.overhead == 8 * US


def test_b200_backward_at_the_llama_8b_training_call():
    """Llama 3 8B on B200 at micro batch 2 (32 heads over 8 KV heads of 128, 8192 tokens, causal):
    8192 * 8193 / 2 = 33,558,528 pairs per head, 2 * 2 * 32 * 33,558,528 * 640 = 2,749,114,613,760
    backward FLOPs (2 FLOPs per multiply-add, batch 2, 5 matmuls of width 128); under the preset (9.22):
    at 2250e12 * 263/500 = 1183.5 TFLOP/s, 2.32287 ms + 2 * 32 * 1.046 us = 66.944 us; under NeMo
    25.11's cuDNN 9.13 (B200's own rows, 0.4848 after 4.913 us per sequence and head): 2.52027 ms +
    314.432 us = 2.83470 ms against 2.38981 ms, 18.6 % longer."""
    core = AttentionCore("core", batch=2, heads=32, kv_heads=8, q_len=8192, kv_len=8192, head_dim=128,
                         causal=True, flash=True, dtype_bytes=2, decode=False)
    (bwd,) = core.backward()
    assert bwd.matmul_flops == 2_749_114_613_760
    preset = hardware.get("B200")
    old = cudnn.with_cudnn(preset, "9.13.1")
    t_new, t_old = (op_time(bwd, c, c.effective_peak(BF16), BF16) for c in (preset, old))
    assert t_new.compute == sp.Rational(2_749_114_613_760, 2250 * 10**12) / Fraction(263, 500)
    assert t_new.overhead == 64 * Fraction(1046, 10**9) and t_old.overhead == 64 * Fraction(4913, 10**9)
    assert t_old.compute == sp.Rational(2_749_114_613_760, 2250 * 10**12) / Fraction(303, 625)
    assert 2.5202e-3 < float(t_old.compute) < 2.5203e-3
    assert 2.8346e-3 < float(t_old.compute + t_old.overhead) < 2.8348e-3


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
    assert (b200.attention_backward_peak_efficiency, b200.attention_backward_time) == (
        cudnn.fit("9.13.0", "B200").share, cudnn.fit("9.13.0", "B200").time)
    mb4 = ct.run_chip(by_id["bridge-B200-qwen3-30b-mb4-gbs512"])     # 26.04.01: 9.20.0 -> GB200's 9.19.1
    assert mb4.attention_backward_peak_efficiency == cudnn.fit("9.19.1", "GB200").share
    h100 = ct.run_chip(by_id["bridge-H100-llama3-8b-fsdp8-gbs128"])
    assert h100.attention_backward_time is None
    unlisted = dataclasses.replace(by_id["bridge-B200-llama3-8b-gbs128"], container="a container of its own")
    assert unlisted.cudnn is None and ct.run_chip(unlisted).attention_backward_time == cudnn.fit("9.22.0", "GB200").time
