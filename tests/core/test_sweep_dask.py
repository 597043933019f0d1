"""Sweeps over Dask arrays (the ``dask`` extra) and results as pandas frames (the ``pandas`` extra).

The Dask sweep runs on a two-worker ``LocalCluster`` and must equal the NumPy sweep point for
point and the exact SymPy evaluation at sampled points; a point that breaks an assumption raises
when its chunk is computed, not before."""

from __future__ import annotations

import numpy as np
import pytest

import symcost as sc
from symcost import hardware
from symcost import symbols as S
from symcost.errors import AssumptionError

H100 = hardware.H100_SXM


def llama_block():
    """GQA + gated MLP of Llama-3-8B with symbolic batch, sequence and TP (decode)."""
    kw = {"parallelism": {"tensor_parallel": S.tp}}
    attn = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8, **kw)
    mlp = sc.GatedMLPLayer(hidden_size=4096, intermediate_size=14336, **kw)
    return attn.compute_metrics(phase="decode", dtype="bf16") + mlp.compute_metrics(phase="decode", dtype="bf16")


EXACT_RATES = {k: v for k, v in H100.symbol_values("bf16").items() if k is not S.hbm_bandwidth}
RATES = {k: float(v) for k, v in EXACT_RATES.items()}


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_dask_sweep_on_a_cluster_equals_numpy_and_exact(client):
    da = pytest.importorskip("dask.array")
    block = llama_block()
    f = block.lambdify(["latency", "memory_per_chip"])
    b = np.arange(1, 257, dtype=np.float64)[:, None, None, None]
    s = np.geomspace(128, 131072, 64).round()[None, :, None, None]
    t = np.array([1.0, 2, 4, 8])[None, None, :, None]
    bw = (np.arange(2, 18) * 5e11)[None, None, None, :]
    lazy = f(RATES, batch_size=da.from_array(b, chunks=(64, 1, 1, 1)), seq_len=da.from_array(s, chunks=(1, 16, 1, 1)),
             tp=t, hbm_bandwidth=da.from_array(bw, chunks=(1, 1, 1, 8)))
    assert isinstance(lazy.latency, da.Array) and lazy.latency.shape == (256, 64, 4, 16)
    assert lazy.latency.chunks == ((64,) * 4, (16,) * 4, (4,), (8, 8))
    got_latency, got_memory = client.compute([lazy.latency, lazy.memory_per_chip], sync=True)
    want = f(RATES, batch_size=b, seq_len=s, tp=t, hbm_bandwidth=bw)
    np.testing.assert_allclose(got_latency, want.latency, rtol=1e-15, atol=0)
    np.testing.assert_allclose(got_memory, want.memory_per_chip, rtol=1e-15, atol=0)
    for i, j, k, m in [(0, 0, 0, 0), (255, 63, 3, 15), (17, 40, 2, 9)]:
        point = {S.batch_size: int(b[i, 0, 0, 0]), S.seq_len: int(s[0, j, 0, 0]), S.tp: int(t[0, 0, k, 0]),
                 S.hbm_bandwidth: (m + 2) * 5 * 10**11, **EXACT_RATES}
        exact = block.evaluate(point)
        assert got_latency[i, j, k, m] == pytest.approx(float(exact.latency), rel=1e-12)
        assert got_memory[i, j, k, m] == pytest.approx(float(exact.memory_per_chip), rel=1e-12)


def test_sweep_of_a_dask_array_is_lazy_and_hand_checked():
    da = pytest.importorskip("dask.array")
    lazy = sc.sweep(2 * S.batch_size * S.seq_len, batch_size=da.arange(1, 5, chunks=2), seq_len=1024)
    assert isinstance(lazy, da.Array) and lazy.chunks == ((2, 2),)
    np.testing.assert_array_equal(lazy.compute(), [2048.0, 4096.0, 6144.0, 8192.0])


def test_broken_assumption_raises_on_compute():
    """TP 3 does not divide 32 heads: the sweep call returns, the chunk holding it raises."""
    da = pytest.importorskip("dask.array")
    f = llama_block().lambdify(["latency"])
    lazy = f(RATES, batch_size=1, seq_len=1024, tp=da.from_array(np.array([1.0, 2, 3, 4]), chunks=2),
             hbm_bandwidth=3.35e12)
    with pytest.raises(AssumptionError) as numpy_err:
        f(RATES, batch_size=1, seq_len=1024, tp=np.array([1.0, 2, 3, 4]), hbm_bandwidth=3.35e12)
    with pytest.raises(AssumptionError) as dask_err:
        lazy.latency.compute()
    assert str(dask_err.value) == str(numpy_err.value) and "\n" not in str(dask_err.value)
    assert lazy.latency[:2].compute().shape == (2,)  # the chunk without TP 3 computes


def test_sweeper_pickles_as_its_expressions():
    import pickle

    f = llama_block().lambdify(["latency"])
    g = pickle.loads(pickle.dumps(f))
    assert g.exprs == f.exprs and g.assumptions == f.assumptions
    args = {**RATES, "batch_size": 4, "seq_len": 2048, "tp": 2, "hbm_bandwidth": 3.35e12}
    assert g(args).latency == f(args).latency


def test_sweep_result_to_pandas():
    pytest.importorskip("pandas")
    frame = sc.Sweeper({"flops": 2 * S.batch_size * S.seq_len, "tokens": S.batch_size * S.seq_len})(
        batch_size=[1, 2, 3], seq_len=[[8], [16]]).to_pandas()
    assert list(frame.columns) == ["batch_size", "seq_len", "flops", "tokens"]
    assert frame["batch_size"].tolist() == [1, 2, 3, 1, 2, 3]
    assert frame["seq_len"].tolist() == [8, 8, 8, 16, 16, 16]
    assert frame["flops"].tolist() == [16, 32, 48, 32, 64, 96]  # 2 b s by hand
    assert frame["tokens"].tolist() == [8, 16, 24, 16, 32, 48]


def test_blocked_sweep_keeps_its_input_columns():
    """A sweep longer than one block (evaluated block by block) keeps its inputs in the frame."""
    pytest.importorskip("pandas")
    sweeper = sc.Sweeper({"flops": 2 * S.batch_size * S.seq_len}, chunk_size=4)
    frame = sweeper(batch_size=np.arange(1, 11), seq_len=8).to_pandas()
    assert list(frame.columns) == ["batch_size", "seq_len", "flops"]
    assert frame["flops"].tolist() == [16 * b for b in range(1, 11)]  # 2 b s with s = 8, by hand
    long = sc.sweep(S.batch_size + 1, batch_size=np.arange(20_000), as_frame=True)  # > 2^14 points
    assert list(long.columns) == ["batch_size", "value"] and long["value"].iloc[-1] == 20_000


def test_sweep_as_frame_keeps_the_array_default():
    pytest.importorskip("pandas")
    assert isinstance(sc.sweep(S.batch_size + 1, batch_size=[1, 2]), np.ndarray)
    frame = sc.sweep(S.batch_size + 1, batch_size=[1, 2], as_frame=True)
    assert list(frame.columns) == ["batch_size", "value"] and frame["value"].tolist() == [2, 3]


def test_dask_sweep_to_pandas_computes():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("pandas")
    frame = sc.sweep(3 * S.seq_len, seq_len=da.arange(4, chunks=3), as_frame=True)
    assert frame["seq_len"].tolist() == [0, 1, 2, 3] and frame["value"].tolist() == [0, 3, 6, 9]


def test_search_to_pandas():
    pd = pytest.importorskip("pandas")
    from symcost import models
    from symcost.plan import search

    table = search.parallelism(models.get("llama-3-8b"), "H100_SXM", num_chips=16, global_batch=64,
                               seq_len=4096, max_micro_batch=2, recompute=("none",), zero_stages=(1,))
    frame = table.to_pandas()
    assert len(frame) == len(table) > 0
    for col in ("tp", "pp", "dp", "sp", "ep", "micro_batch", "step_time", "memory_per_chip", "mfu", "fits"):
        assert col in frame.columns
    for i in (0, len(table) - 1):
        row = frame.iloc[i]
        # to_pandas holds a missing recompute_layers as pandas' NA (a nullable Int64 column); row() as None
        plain = {k: (None if k == "recompute_layers" and row[k] is pd.NA else row[k]) for k in table.columns}
        assert plain == table.row(i)
        assert row["tp"] * row["pp"] * row["dp"] == 16  # every chip used, sp and ep inside tp x dp here
        # throughput by hand: the global batch of 64 sequences of 4096 tokens per step
        assert row["tokens_per_second"] == pytest.approx(64 * 4096 / row["step_time"], rel=1e-12)
    assert frame["fits"].all() and (frame["memory_per_chip"] <= 80 * 2**30).all()
    assert frame["step_time"].is_monotonic_increasing
