"""Parallelism search: every listed configuration divides, fits, and matches the exact step."""

import numpy as np
import pytest

from symcost import hardware, models, search
from symcost.hardware import Hardware
from symcost.models.builders import mixtral


@pytest.fixture(scope="module")
def llama_table():
    return search.parallelism(models.get("llama-3-8b"), "H100_SXM", num_chips=16, global_batch=64,
                              seq_len=4096)


def exact_step(model, table, i, seq_len, global_batch):
    row = table.row(i)
    return model.training_step("H100_SXM", seq_len=seq_len, global_batch=global_batch,
                               micro_batch=row["micro_batch"], parallelism=table.parallelism(i),
                               recompute=row["recompute"], interleave=row["interleave"],
                               zero_stage=row["zero_stage"], overlap=row["overlap"],
                               recompute_layers=row["recompute_layers"])


def test_listed_configurations_divide_fit_and_match_the_exact_evaluator(llama_table):
    """The best and a sample of other rows rebuild without a divisibility error, fit in HBM by
    exact evaluation, and their vectorized step time and memory equal the exact ones."""
    model = models.get("llama-3-8b")
    rng = np.random.default_rng(0)
    sample = [0, 1, 2] + list(rng.integers(0, len(llama_table), 12))
    for i in sample:
        st = exact_step(model, llama_table, int(i), 4096, 64)
        row = llama_table.row(int(i))
        assert st.fits is True
        assert row["tp"] * row["pp"] * row["dp"] * row["sp"] == 16
        assert row["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)
        assert row["memory_per_chip"] == pytest.approx(float(st.memory_per_chip), rel=1e-12)
        assert row["mfu"] == pytest.approx(float(st.mfu), rel=1e-12)


def test_ranked_fastest_first(llama_table):
    """Rows are sorted by step time, and every count is consistent."""
    times = llama_table.columns["step_time"]
    assert np.all(np.diff(times) >= 0)
    assert llama_table.num_candidates >= llama_table.num_valid >= llama_table.num_fit == len(llama_table)
    assert llama_table.best == llama_table.row(0)
    assert "candidates" in str(llama_table)


def test_no_listed_configuration_breaks_a_divisibility_rule(llama_table):
    """Heads, KV heads, FFN width, vocabulary, layers, batch and sequence all divide."""
    c = llama_table.columns
    t, u, p, d, b, v = c["tp"], c["sp"], c["pp"], c["dp"], c["micro_batch"], c["interleave"]
    assert np.all(32 % (t * u) == 0) and np.all(14336 % t == 0) and np.all(128256 % t == 0)
    assert np.all((8 % t == 0) | (t % 8 == 0))
    assert np.all((8 % (t * u) == 0) | (u == 1))
    assert np.all(32 % (p * v) == 0)
    assert np.all(64 % (d * b) == 0)
    assert np.all(4096 % u == 0)


def test_moe_search_uses_expert_parallelism():
    """Mixtral on 32 chips: expert parallel degrees divide the experts, and rows match the exact
    step."""
    model = models.get("mixtral-8x7b")
    table = search.parallelism(model, "H100_SXM", num_chips=32, global_batch=64, seq_len=4096,
                               recompute=("selective",), zero_stages=(1,))
    assert len(table) > 0
    eps = set(table.columns["ep"].tolist())
    assert eps <= {1, 2, 4, 8} and len(eps) > 1
    for i in (0, len(table) // 2):
        st = exact_step(model, table, i, 4096, 64)
        assert table.row(i)["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)


def test_nothing_fits_on_a_tiny_chip():
    """A chip with 1 GB of HBM fits nothing: an empty table, no best row."""
    tiny = Hardware(**{**hardware.H100_SXM.to_dict(), "name": "tiny", "hbm_capacity": 10**9})
    table = search.parallelism(models.get("llama-3-8b"), tiny, num_chips=8, global_batch=8,
                               seq_len=2048, recompute=("full",), zero_stages=(3,))
    assert len(table) == 0 and table.best is None and table.num_valid > 0


def test_only_training_is_searched():
    """The search ranks training configurations; other phases are refused."""
    with pytest.raises(ValueError, match="training"):
        search.parallelism(models.get("llama-3-8b"), "H100_SXM", 8, 8, 2048, phase="decode")


def test_inference_search_ranks_by_tpot_and_matches_the_exact_step():
    """Inference: every (t, p, d) that divides and fits, fastest TPOT first, each row equal to
    the exact inference step."""
    model = models.get("llama-3-70b")
    table = search.parallelism(model, "H100_SXM", num_chips=16, global_batch=16, seq_len=4096,
                               phase="inference")
    assert np.all(np.diff(table.columns["tpot"]) >= 0)
    best = table.best
    step = model.inference_step("H100_SXM", best["micro_batch"], 4096,
                                parallelism={"tensor_parallel": best["tp"], "pipeline_parallel": best["pp"],
                                             "data_parallel": best["dp"]})
    assert best["tpot"] == float(step.tpot) and step.fits
    assert table.num_candidates == 15  # (t, p) pairs with t * p | 16
    by_ttft = search.parallelism(model, "H100_SXM", 16, 16, 4096, phase="inference", objective="ttft")
    assert np.all(np.diff(by_ttft.columns["ttft"]) >= 0)


@pytest.mark.parametrize("switch", [{"dp_overlap": False}, {"pp_overlap": False}, {"grad_reduce_in_fp32": False}])
def test_search_ranks_with_the_step_s_communication_switches(switch):
    """search.parallelism(dp_overlap=, pp_overlap=, grad_reduce_in_fp32=) (issue 22 review): each
    row's time and memory are the training step's under the same switch (the step with the switch
    differs from the default wherever the switch matters: the exposed DP sync, the interleaved
    sends, the gradient buffer's bytes)."""
    model = models.get("llama-3-8b")
    table = search.parallelism(model, "H100_SXM", num_chips=16, global_batch=64, seq_len=4096,
                               zero_stages=(1,), max_micro_batch=2, **switch)
    differs = 0
    for i in range(0, len(table), max(1, len(table) // 12)):
        row = table.row(i)
        kw = dict(seq_len=4096, global_batch=64, micro_batch=row["micro_batch"], parallelism=table.parallelism(i),
                  recompute=row["recompute"], interleave=row["interleave"], zero_stage=row["zero_stage"],
                  overlap=row["overlap"], recompute_layers=row["recompute_layers"])
        st = model.training_step("H100_SXM", **kw, **switch)
        assert row["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)
        assert row["memory_per_chip"] == pytest.approx(float(st.memory_per_chip), rel=1e-12)
        default = model.training_step("H100_SXM", **kw)
        differs += (default.step_time, default.memory_per_chip) != (st.step_time, st.memory_per_chip)
    assert differs > 0


def test_search_tries_expert_tensor_parallel_degrees():
    """expert_tensor_parallel=(None, 1) (issue 22 review): besides experts split TP ways (None, the
    MoE layer's default flow), Megatron-Core's expert grid with whole experts (ETP 1), whose EP
    needs only to divide TP x CP x DP (TP 2 x EP 8 x DP 4 on 8 chips: EP 8 does not divide DP 4,
    a layout only the grid has). Each row is the training step of its own Parallelism."""
    model = mixtral(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=4, vocab_size=32000,
                    intermediate_size=1024, num_experts=8, top_k=2)
    table = search.parallelism(model, "H100_SXM", num_chips=8, global_batch=16, seq_len=2048,
                               recompute=("none",), zero_stages=(1,), max_micro_batch=2,
                               expert_tensor_parallel=(None, 1))
    rows = table.rows()
    grid = [i for i, r in enumerate(rows) if r["expert_grid"]]
    assert grid and len(grid) < len(rows)
    assert all(rows[i]["etp"] == 1 for i in grid)
    assert any(r["ep"] > r["dp"] for r in rows if r["expert_grid"])  # EP over TP x DP: the grid only
    assert all(r["dp"] % r["ep"] == 0 and r["etp"] == r["tp"] for r in rows if not r["expert_grid"])
    for i in [*grid[:4], *range(0, len(rows), max(1, len(rows) // 6))]:
        r = rows[i]
        par = table.parallelism(i)
        assert par.expert_tensor_parallel == (1 if r["expert_grid"] else None)
        st = model.training_step("H100_SXM", 2048, 16, r["micro_batch"], "bf16", par, r["recompute"], r["interleave"],
                                 r["zero_stage"], r["overlap"], recompute_layers=r["recompute_layers"])
        assert r["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)
        assert r["memory_per_chip"] == pytest.approx(float(st.memory_per_chip), rel=1e-12)
