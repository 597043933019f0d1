"""The search's shortcuts leave every answer as it was: the full-recompute peak per slot
(``search._peak_slot``) gathered once per stage and chunk count equals the old loop (a copy below:
every block's values masked afresh for each chunk count), on searches with pipeline stages,
interleaving and full recomputation; every column of every row equal."""

import numpy as np
import pytest

from symcost import hardware, models
from symcost.plan import search
from symcost.plan.pipeline import chunk_blocks, chunk_groups


def _slow_peak_slot(space, cols, values, rows):
    """``_peak_slot`` as it was: a mask over every row per (stage, chunk count), each block's values
    indexed by it in each chunk."""
    out = np.zeros(len(cols))
    is_full = cols.rc == space.recompute.index("full")
    for p, (_, held, first, last) in rows.items():
        for v in sorted(set(cols.v[cols.p == p].tolist())):
            mask = is_full & (cols.p == p) & (cols.v == v)
            if not mask.any():
                continue
            chunks = chunk_groups(held, chunk_blocks(sum(int(n) for n in held), int(v), first, last), None)
            best = np.zeros(int(mask.sum()))
            for c, (groups, _) in enumerate(chunks):
                rest = values[("tail", "activation")][mask] if last and c == len(chunks) - 1 else 0.0
                later = np.zeros(len(best))
                for g in reversed(groups):
                    part = f"blocks[{g}]"
                    gain = values[(part, "kept_activation")][mask] - values[(part, "activation")][mask] - later - rest
                    best = np.maximum(best, gain)
                    later = later + values[(part, "activation")][mask]
            out[mask] = best
    return out


CASES = {
    "llama-2-7b": ("llama-2-7b", dict(num_chips=16, seq_len=2048, global_batch=256, max_micro_batch=8,
                                      max_interleave=4, recompute=("none", "selective", "full"))),
    "mixtral": ("mixtral-8x7b", dict(num_chips=16, seq_len=4096, global_batch=128, max_micro_batch=4,
                                     max_interleave=2, recompute=("full",))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_peak_per_slot_equals_the_old_loop(case, monkeypatch):
    name, options = CASES[case]
    model, chip = models.get(name), hardware.get("H100_SXM")
    fast = search.parallelism(model, chip, **options)
    monkeypatch.setattr(search, "_peak_slot", _slow_peak_slot)
    slow = search.parallelism(model, chip, **options)
    assert (fast.num_candidates, fast.num_valid, fast.num_fit) == (slow.num_candidates, slow.num_valid, slow.num_fit)
    assert fast.num_fit > 0 and "full" in set(fast.columns["recompute"].tolist())
    assert set(fast.columns) == set(slow.columns)
    for k in fast.columns:
        assert fast.columns[k].tolist() == slow.columns[k].tolist(), k
