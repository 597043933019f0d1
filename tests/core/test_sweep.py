"""Sweeps and sensitivities: compiled float64 evaluation agrees with exact evaluation."""

import sys

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symcost as sc
from symcost import hardware
from symcost import symbols as S
from symcost.core._expr import Ceil

H100 = hardware.H100_SXM
# the sweep module's private helpers, found wherever the package layout puts the module
_MODULES = sys.modules[sc.Sweeper.__module__]._MODULES
_blocks = sys.modules[sc.Sweeper.__module__]._blocks


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


# -- the blocked path (Sweeper.chunk_size) equals the whole-array path, bit for bit --------------

def realistic_block(phase="decode"):
    """The benchmark's block: Llama-3-8B GQA + gated MLP on the realistic symbolic chip (tile and
    wave quantization: Ceil, Min and Max in every matmul time)."""
    chip = sc.Hardware.symbolic(realistic=True)
    kw = {"parallelism": {"tensor_parallel": S.tp}}
    attn = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8, **kw)
    mlp = sc.GatedMLPLayer(hidden_size=4096, intermediate_size=14336, **kw)
    return (attn.compute_metrics(phase=phase, dtype="bf16", hardware=chip)
            + mlp.compute_metrics(phase=phase, dtype="bf16", hardware=chip))


def _sweepers(block, chunk_size):
    exprs = {"latency": block.latency, "memory_per_chip": block.memory_per_chip}
    return (sc.Sweeper(exprs, block.assumptions, chunk_size=0),
            sc.Sweeper(exprs, block.assumptions, chunk_size=chunk_size))


def _random_configs(n, seed=0):
    """n flat configurations with Ceil boundaries on purpose: batches at and around multiples of
    the 64-row tile, TP 8 where Min(8, t) ties, compute units near the tile count."""
    rng = np.random.default_rng(seed)
    rates = {k: float(v) for k, v in H100.symbol_values("bf16").items()}
    b = rng.choice(np.r_[1:257, 63, 64, 65, 127, 128, 129], n).astype(np.float64)
    return {**rates, S.batch_size: b, S.seq_len: rng.integers(1, 131073, n).astype(np.float64),
            S.tp: rng.choice([1.0, 2, 4, 8, 16], n), S.hbm_bandwidth: rng.uniform(1e12, 8e12, n),
            S.compute_units: rng.choice([32.0, 112, 113, 132], n)}


@pytest.mark.parametrize("phase", ["decode", "prefill"])
@pytest.mark.parametrize("n, chunk", [(1, 1), (7, 7), (8, 7), (1000, 64), (1001, 64), (5, 1000)])
def test_blocked_sweep_equals_whole_sweep(phase, n, chunk):
    """Flat random configurations of the realistic block, lengths 1, a block, one past a block,
    and not a multiple of it: the blocked evaluation equals the whole-array one exactly."""
    plain, blocked = _sweepers(realistic_block(phase), chunk)
    data = _random_configs(n)
    want, got = plain(data), blocked(data)
    for name in want.names:
        assert got[name].shape == want[name].shape == (n,)
        np.testing.assert_array_equal(got[name], want[name])


def test_blocked_sweep_broadcasts_like_whole_sweep():
    """A long axis against short ones, scalars and a length-one axis: same shape, same bits."""
    plain, blocked = _sweepers(realistic_block(), 10)
    data = _random_configs(203, seed=1)
    grid = {**data, S.batch_size: data[S.batch_size][:, None, None],
            S.seq_len: np.array([[1.0], [4096], [131072]]), S.tp: np.array([1.0, 8]),
            S.hbm_bandwidth: 3.35e12, S.compute_units: np.array([[[132.0]]])}
    want, got = plain(grid), blocked(grid)
    assert got.latency.shape == (203, 3, 2)
    for name in want.names:
        np.testing.assert_array_equal(got[name], want[name])
    scalars = {k: float(np.ravel(v)[0]) for k, v in grid.items()}
    assert blocked(scalars).latency.shape == ()
    assert float(blocked(scalars).latency) == float(plain(scalars).latency)


def test_default_blocks_on_a_long_flat_sweep():
    """Past the default block (2^14 points) the default sweeper blocks, with the same values;
    an unused swept input still shapes the result."""
    block = realistic_block()
    plain, _ = _sweepers(block, 0)
    default = block.lambdify(["latency", "memory_per_chip"])
    assert default.chunk_size == 2**14
    data = _random_configs(3 * 2**14 + 5, seed=2)
    for name in ("latency", "memory_per_chip"):
        np.testing.assert_array_equal(default(data)[name], plain(data)[name])
    wide = {**{k: np.reshape(v, (-1, 1)) if np.ndim(v) else v for k, v in data.items()},
            S.dp: np.ones((1, 2))}
    assert default(wide).latency.shape == (3 * 2**14 + 5, 2)
    np.testing.assert_array_equal(default(wide).latency[:, 1], plain(data).latency)


@pytest.mark.parametrize("bad, expected", [(3.0, "(got 32 and 3)"), (np.nan, "(got 32 and nan)")])
def test_blocked_sweep_raises_the_same_one_line_error(bad, expected):
    """A broken TP (3) or a NaN deep inside a long sweep raises the error the whole-array path
    raises: one line, the rule, the values at the first point that breaks it."""
    plain, blocked = _sweepers(realistic_block(), 16)
    data = _random_configs(1000, seed=3)
    data[S.tp] = data[S.tp].copy()
    data[S.tp][[517, 900]] = bad
    messages = []
    for f in (plain, blocked):
        with pytest.raises(sc.errors.AssumptionError) as info:
            f(data)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "\n" not in messages[1]
    assert messages[1].startswith("num_heads must be divisible by tensor_parallel")
    assert messages[1].endswith(expected)


def test_chunk_size_is_validated():
    """A negative block size is refused."""
    with pytest.raises(ValueError, match="chunk_size"):
        sc.Sweeper({"x": S.batch_size}, chunk_size=-1)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), chunk=st.integers(1, 50))
def test_blocks_tile_the_grid_once_in_order(shape, chunk):
    """The blocks of a shape cover every point exactly once, in C order, at most chunk points each."""
    grid = np.arange(int(np.prod(shape))).reshape(shape)
    seen = []
    for index in _blocks(tuple(shape), chunk):
        block = grid[index]
        assert block.ndim == len(shape) and 1 <= block.size <= chunk
        seen.extend(block.ravel())
    assert seen == list(range(grid.size))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), chunk=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_blocked_equals_whole_on_ceil_min_max_ties(n, chunk, seed):
    """Ceil at exact multiples, Min/Max at ties and a scalar among flat arrays: same bits."""
    b, s, t = S.batch_size, S.seq_len, S.tp
    expr = Ceil(b / 64) * sp.Max(s, 2 * b) + sp.Min(t, 8) / s + sp.Max(t * b, s) ** 2 / (t + 1)
    rng = np.random.default_rng(seed)
    data = {b: rng.choice([63.0, 64, 65, 128, 1, 4096], n), s: rng.choice([128.0, 130, 8192], n),
            t: 8.0}
    whole = sc.Sweeper({"y": expr}, chunk_size=0)(data).y
    np.testing.assert_array_equal(sc.Sweeper({"y": expr}, chunk_size=chunk)(data).y, whole)


@pytest.mark.parametrize("phase", ["decode", "prefill", "training"])
def test_sweep_printer_equals_stock_lambdify(phase):
    """The sweep's printer (1/x for x**-1, where for a two-way Piecewise) gives the bits of
    SymPy's own NumPy printer on the realistic block, at random and boundary configurations."""
    block = realistic_block(phase)
    f = sc.Sweeper({"latency": block.latency, "memory_per_chip": block.memory_per_chip}, chunk_size=0)
    stock = sp.lambdify(f.args, list(f.exprs), modules=_MODULES, cse=True)
    data = _random_configs(4000, seed=4)
    want = stock(*(np.asarray(data[s], dtype=np.float64) for s in f.args))
    got = f(data)
    for name, value in zip(f.names, want):
        np.testing.assert_array_equal(got[name], np.broadcast_to(value, got[name].shape))
