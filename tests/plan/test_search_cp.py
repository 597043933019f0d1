"""The parallelism search with context-parallel degrees (docs/conventions.md §3b)."""

from __future__ import annotations

import pytest

import symcost as sc
from symcost import search


@pytest.fixture(scope="module")
def tiny():
    # 8 heads, 4 KV heads, 2 layers: small enough to search in seconds
    return sc.Model.llama(hidden_size=256, num_heads=8, num_kv_heads=4, num_layers=2, vocab_size=1024,
                          intermediate_size=512)


@pytest.fixture(scope="module")
def table(tiny):
    return search.parallelism(tiny, "H100_SXM", num_chips=4, global_batch=4, seq_len=4096,
                              recompute=("none",), zero_stages=(1,), max_interleave=1, context_parallel=(1, 2))


def test_cp_degrees_are_enumerated(table):
    """Every row uses all 4 chips, t*sp*cp*pp*dp = 4, and both cp = 1 and cp = 2 appear."""
    rows = table.rows()
    assert {r["cp"] for r in rows} == {1, 2}
    assert all(r["tp"] * r["sp"] * r["cp"] * r["pp"] * r["dp"] == 4 for r in rows)


def test_cp_rows_match_the_training_step(tiny, table):
    """The search's float64 values of a cp = 2 row equal Model.training_step's exact ones."""
    i = next(i for i, r in enumerate(table.rows()) if r["cp"] == 2)
    r = table.row(i)
    par = table.parallelism(i)
    assert par.cp == 2
    step = tiny.training_step("H100_SXM", 4096, 4, r["micro_batch"], "bf16", par, r["recompute"], r["interleave"],
                              r["zero_stage"])
    assert r["step_time"] == pytest.approx(float(step.step_time), rel=1e-12)
    assert r["memory_per_chip"] == pytest.approx(float(step.memory_per_chip), rel=1e-12)
    assert r["mfu"] == pytest.approx(float(step.mfu), rel=1e-12)


def test_default_search_has_only_cp_one(tiny):
    """Without ``context_parallel`` the candidates are today's (cp = 1 only)."""
    plain = search.parallelism(tiny, "H100_SXM", num_chips=4, global_batch=4, seq_len=4096,
                               recompute=("none",), zero_stages=(1,), max_interleave=1)
    assert set(plain.columns["cp"].tolist()) == {1}
    assert "cp" not in str(plain).splitlines()[1].split()


def test_bad_cp_degrees(tiny):
    with pytest.raises(ValueError, match="context_parallel"):
        search.parallelism(tiny, "H100_SXM", num_chips=4, global_batch=4, seq_len=4096, context_parallel=(0,))


def test_inference_search_with_cp(tiny):
    """Inference candidates include t*cp*pp*dp = 4 with cp = 2; a cp = 2 row equals its step."""
    table = search.parallelism(tiny, "H100_SXM", num_chips=4, global_batch=4, seq_len=4096, phase="inference",
                               context_parallel=(1, 2))
    rows = [r for r in table.rows() if r["cp"] == 2]
    assert rows and all(r["tp"] * r["cp"] * r["pp"] * r["dp"] == 4 for r in rows)
    r = rows[0]
    step = tiny.inference_step("H100_SXM", r["micro_batch"], 4096, parallelism={
        "tensor_parallel": r["tp"], "pipeline_parallel": r["pp"], "data_parallel": r["dp"], "context_parallel": 2})
    assert r["tpot"] == pytest.approx(float(step.tpot), rel=1e-12)


def test_cp_degrees_a_model_refuses_are_skipped():
    """A hybrid with Mamba-2 layers refuses context parallelism (the scan's state would pass between
    ranks, not modelled): the search counts its cp = 2 candidates but keeps only cp = 1 rows, in
    training and in inference."""
    from symcost.models import ssm

    hybrid = ssm.hybrid(hidden_size=64, vocab_size=100, mamba_layers=2, attention_layers=1, mlp_layers=1,
                        num_heads=4, num_kv_heads=2, intermediate_size=256, ssm_head_dim=32, state_size=16,
                        chunk_size=8)
    kw = dict(num_chips=2, global_batch=4, seq_len=64, context_parallel=(1, 2))
    only_one = search.parallelism(hybrid, "H100_SXM", recompute=("none",), zero_stages=(1,), **kw)
    plain = search.parallelism(hybrid, "H100_SXM", recompute=("none",), zero_stages=(1,), **{**kw,
                                                                                           "context_parallel": (1,)})
    assert set(only_one.columns["cp"].tolist()) == {1}
    assert only_one.num_valid == plain.num_valid and only_one.num_candidates > plain.num_candidates
    served = search.parallelism(hybrid, "H100_SXM", phase="inference", **kw)
    assert len(served) and set(served.columns["cp"].tolist()) == {1}


def test_megatron_sp_with_cp_rows_split_the_sequence(tiny):
    """s = 24 on 8 chips with cp in (1, 2): Megatron SP with cp = 2 needs s divisible by 2*cp*t
    (docs/conventions.md §3b): t = 2 (8 | 24) is a candidate, t = 4 (16) is not, though 24
    divides by t and by 2*cp; every such row is a layout the training step accepts."""
    table = search.parallelism(tiny, "H100_SXM", num_chips=8, global_batch=8, seq_len=24, recompute=("none",),
                               zero_stages=(1,), max_interleave=1, context_parallel=(1, 2))
    both = [(i, r) for i, r in enumerate(table.rows()) if r["megatron_sp"] and r["cp"] == 2]
    assert {r["tp"] for _, r in both} == {2}
    i, r = both[0]
    tiny.training_step("H100_SXM", 24, 8, r["micro_batch"], "bf16", table.parallelism(i))
