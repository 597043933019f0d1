"""Sweeps and sensitivities: compiled float64 evaluation agrees with exact evaluation."""

import numpy as np
import pytest
import sympy as sp

import symcost as sc
from symcost import hardware
from symcost import symbols as S

H100 = hardware.H100_SXM


def llama_block(**par):
    """GQA + gated MLP of Llama-3-8B with symbolic batch, sequence and TP, on the symbolic chip."""
    kw = {"parallelism": {"tensor_parallel": S.tp, **par}}
    attn = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8, **kw)
    mlp = sc.GatedMLPLayer(hidden_size=4096, intermediate_size=14336, **kw)
    return (attn.compute_metrics(phase="decode", dtype="bf16")
            + mlp.compute_metrics(phase="decode", dtype="bf16"))


def test_sweep_equals_exact_evaluation_at_sampled_points():
    """Latency and memory over a grid of batch, context, TP and HBM bandwidth match exact
    evaluation to 1e-12 relative at random points."""
    block = llama_block()
    f = block.lambdify(["latency", "memory_per_chip"])
    rates = {k: v for k, v in H100.symbol_values("bf16").items() if k is not S.hbm_bandwidth}
    b = np.arange(1, 33)[:, None, None, None]
    s = np.array([512, 4096, 32768, 131072])[None, :, None, None]
    t = np.array([1, 2, 4, 8])[None, None, :, None]
    bw = np.array([2, 3, 4.8]) [None, None, None, :] * 1e12
    out = f({**{k: float(v) for k, v in rates.items()}}, batch_size=b, seq_len=s, tp=t,
            hbm_bandwidth=bw)
    assert out.latency.shape == (32, 4, 4, 3)
    rng = np.random.default_rng(0)
    for _ in range(40):
        i, j, k, m = (rng.integers(n) for n in out.latency.shape)
        point = {S.batch_size: int(b[i, 0, 0, 0]), S.seq_len: int(s[0, j, 0, 0]),
                 S.tp: int(t[0, 0, k, 0]), S.hbm_bandwidth: [2 * 10**12, 3 * 10**12,
                                                             48 * 10**11][m], **rates}
        exact = block.evaluate(point)
        assert out.latency[i, j, k, m] == pytest.approx(float(exact.latency), rel=1e-12)
        assert out.memory_per_chip[i, j, k, m] == pytest.approx(float(exact.memory_per_chip), rel=1e-12)


def test_sweep_above_int64():
    """FLOP counts above 2^63 are right in float64 (int64 would wrap)."""
    m = sc.MLPLayer(hidden_size=65536, intermediate_size=262144).compute_metrics(
        phase="training", dtype="bf16")
    b, s = np.array([1024, 4096]), 2**20
    got = sc.sweep(m.matmul_flops_per_chip, batch_size=b, seq_len=s)
    exact = [12 * int(x) * s * 65536 * 262144 for x in b]  # 12 b s h f: fwd + 2x bwd
    assert exact[0] > 2**63
    np.testing.assert_allclose(got, [float(x) for x in exact], rtol=1e-15)


def test_sweep_errors_name_the_symbols():
    """Missing or unused inputs are named."""
    with pytest.raises(ValueError, match=r"no values for seq_len \(s\)"):
        sc.sweep(S.batch_size * S.seq_len, batch_size=[1, 2])
    # an unused input still shapes the result
    assert sc.sweep(S.batch_size, batch_size=[1, 2], tp=[[2], [4], [8]]).shape == (3, 2)
    with pytest.raises(ValueError, match="unknown fields"):
        llama_block().lambdify(["speed"])


def test_sweeper_is_compiled_once():
    """The same expressions reuse one compiled function."""
    e = 3 * S.batch_size + S.seq_len
    assert sc.Sweeper({"x": e})._function is sc.Sweeper({"x": e})._function


def test_derivatives_equal_finite_differences():
    """d(latency)/d(B_HBM) and d(memory)/d(s) equal central differences at sampled points."""
    block = llama_block()
    values = {**H100.symbol_values("bf16"), S.batch_size: 8, S.tp: 2}
    del values[S.hbm_bandwidth]
    latency = block.latency.xreplace(values)
    dlat = sp.diff(latency, S.hbm_bandwidth)
    for s in (1024, 8192, 65536):
        for bw in (2 * 10**12, 4 * 10**12):
            at = {S.seq_len: s, S.hbm_bandwidth: bw}
            h = sp.Rational(bw, 10**6)
            fd = (latency.xreplace({**at, S.hbm_bandwidth: bw + h})
                  - latency.xreplace({**at, S.hbm_bandwidth: bw - h})) / (2 * h)
            assert float(dlat.xreplace(at)) == pytest.approx(float(fd), rel=1e-9)
    memory = block.memory_per_chip.xreplace(values)
    d_mem = block.diff("seq_len").memory_per_chip
    for s in (1024, 8192):
        step = memory.xreplace({S.seq_len: s + 1}) - memory.xreplace({S.seq_len: s})
        assert d_mem.xreplace({**values, S.seq_len: s}) == step  # memory is linear in s


def test_memory_bound_decode_elasticities():
    """A memory-bound decode step: elasticity -1 to HBM bandwidth, 0 to peak FLOP/s."""
    m = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
        batch_size=1, seq_len=8192, phase="decode", dtype="bf16")
    rates = H100.symbol_values("bf16")
    assert m.elasticity("latency", S.hbm_bandwidth).xreplace(rates) == -1
    assert m.elasticity("latency", S.peak_flops).xreplace(rates) == 0
    with pytest.raises(ValueError, match="unknown field"):
        m.elasticity("speed", S.peak_flops)


def test_compute_bound_prefill_elasticity_to_peak():
    """A compute-bound prefill MLP: latency responds to peak FLOP/s, nearly -1."""
    m = sc.MLPLayer(hidden_size=8192, intermediate_size=32768).compute_metrics(
        batch_size=4, seq_len=4096, phase="prefill", dtype="bf16")
    e = float(m.elasticity("latency", S.peak_flops).xreplace(H100.symbol_values("bf16")))
    assert -1 < e < -0.9
