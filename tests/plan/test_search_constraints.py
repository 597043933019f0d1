"""Search constraints and objectives: max TP, min MFU, memory headroom, cost per token.

Each constrained search is compared with the unconstrained one: a constraint removes exactly the
rows that break it and keeps the others in the same order; the cost per token is the chip price
over the tokens a step makes, derived by hand from the step time.
"""

import numpy as np
import pytest

from symcost import hardware, models, search
from symcost.errors import ConfigError

ARGS = dict(num_chips=16, global_batch=64, seq_len=4096, recompute=("selective", "full"))
HBM = float(hardware.H100_SXM.hbm_capacity)


@pytest.fixture(scope="module")
def model():
    return models.get("llama-3-8b")


@pytest.fixture(scope="module")
def free(model):
    return search.parallelism(model, "H100_SXM", **ARGS)


def keys(table, keep=lambda row: True):
    return [tuple((k, v) for k, v in row.items() if k != "cost_per_token")
            for row in table.rows() if keep(row)]


def test_max_tp_removes_exactly_the_larger_tp(model, free):
    table = search.parallelism(model, "H100_SXM", max_tp=2, **ARGS)
    assert keys(table) == keys(free, lambda r: r["tp"] <= 2)
    assert table.num_fit == sum(r["tp"] <= 2 for r in free.rows()) < free.num_fit
    assert table.num_candidates == free.num_candidates


def test_headroom_refuses_memory_above_the_kept_fraction(model, free):
    above = [r for r in free.rows() if r["memory_per_chip"] > 0.9 * HBM]
    assert above  # the check below would be empty otherwise
    table = search.parallelism(model, "H100_SXM", memory_headroom=0.1, **ARGS)
    assert keys(table) == keys(free, lambda r: r["memory_per_chip"] <= 0.9 * HBM)
    assert all(r["memory_per_chip"] <= 0.9 * HBM for r in table.rows())


def test_min_mfu_removes_exactly_the_lower_mfu(model, free):
    cut = float(np.median(free.columns["mfu"]))
    table = search.parallelism(model, "H100_SXM", min_mfu=cut, **ARGS)
    assert keys(table) == keys(free, lambda r: r["mfu"] >= cut)
    assert 0 < len(table) < len(free)


def test_cost_per_token_is_the_chip_hours_over_the_tokens(model, free):
    table = search.parallelism(model, "H100_SXM", price_per_hour=2.5, **ARGS)
    for row in table.rows(5):
        # 16 chips at 2.5 an hour for one step, over the 64 x 4096 tokens of the step
        want = 2.5 * 16 * row["step_time"] / 3600 / (64 * 4096)
        assert row["cost_per_token"] == pytest.approx(want, rel=1e-12)
    assert "cost_per_token" not in free.columns


def test_inference_search_takes_max_tp_and_headroom(model):
    args = dict(num_chips=8, global_batch=32, seq_len=4096, phase="inference")
    free = search.parallelism(model, "H100_SXM", **args)
    table = search.parallelism(model, "H100_SXM", max_tp=2, memory_headroom=0.5, price_per_hour=1.0, **args)
    want = [r for r in free.rows() if r["tp"] <= 2 and r["memory_per_chip"] <= 0.5 * HBM]
    assert [r["tp"] for r in table.rows()] == [r["tp"] for r in want] and len(want) > 0
    assert table.row(0)["cost_per_token"] == pytest.approx(8 / 3600 / table.row(0)["tokens_per_second"])


@pytest.mark.parametrize("kwargs, match", [({"memory_headroom": 1.0}, "memory_headroom"),
                                           ({"max_tp": 0}, "max_tp"), ({"price_per_hour": -1}, "price_per_hour"),
                                           ({"min_mfu": 0.3, "phase": "inference"}, "min_mfu")])
def test_bad_constraints_are_refused(model, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        search.parallelism(model, "H100_SXM", num_chips=8, global_batch=8, seq_len=1024, **kwargs)
