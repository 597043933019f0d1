"""The training search's candidate space, enumerated naively here from the rules its docstring
states, equals the space the (vectorized) search evaluates."""

import itertools
import math

from symcost import hardware, models, search
from symcost.hardware import Hardware

N, B, S = 8, 8, 2048
HEADS, KV, LAYERS = 32, 8, 32  # Llama-3-8B (model card: 32 heads, 8 KV heads, 32 layers)
RECOMPUTE, ZERO = ("none", "selective", "full"), (0, 1, 2, 3)


def divisors(n):
    return [k for k in range(1, n + 1) if n % k == 0]


def naive_space():
    """Every (t, u, p, d, e, b, v, megatron_sp, overlap, recompute, zero) that divides, and how
    many combinations were enumerated: t*u*p*d = N; Ulysses u needs heads and KV heads to split
    t*u ways and u | s; p <= layers and B % d == 0; micro-batch b | B/d with b <= 16; the
    interleaving v | layers/p (every p here divides the 32 layers), v <= 8, v = 1 without
    pipeline; Megatron SP only with t > 1, u = 1 and t | s; every ZeRO stage with or without
    pipeline (FSDP + PP, issue 22 item 5); without data parallelism only the first ZeRO stage (all
    stages are the same there)."""
    rows, enumerated = set(), 0
    for t, u, p in itertools.product(divisors(N), repeat=3):
        if N % (t * u * p):
            continue
        d = N // (t * u * p)
        micro = [b for b in divisors(max(B // d, 1)) if b <= 16]
        inter = [v for v in divisors(LAYERS // p) if v <= 8] if p > 1 else [1]
        modes = (False, True) if t > 1 else (False,)
        enumerated += len(micro) * len(inter) * len(modes) * len(RECOMPUTE) * len(ZERO)
        ulysses = u == 1 or (HEADS % (t * u) == 0 and KV % (t * u) == 0 and S % u == 0)
        if not ulysses or p > LAYERS or B % d:
            continue
        for b, v, msp, rc, z in itertools.product(micro, inter, modes, RECOMPUTE, ZERO):
            if (msp and (u > 1 or S % t)) or (B // d) % b or (d == 1 and z != 0):
                continue
            rows.add((t, u, p, d, 1, b, v, msp, False, rc, z))
    return rows, enumerated


def test_the_search_evaluates_exactly_the_naive_space():
    roomy = Hardware(**{**hardware.H100_SXM.to_dict(), "name": "roomy", "hbm_capacity": 10**18})
    table = search.parallelism(models.get("llama-3-8b"), roomy, num_chips=N, global_batch=B, seq_len=S)
    want, enumerated = naive_space()
    got = {(r["tp"], r["sp"], r["pp"], r["dp"], r["ep"], r["micro_batch"], r["interleave"], r["megatron_sp"],
            r["overlap"], r["recompute"], r["zero_stage"]) for r in table.rows()}
    assert table.num_candidates == enumerated
    assert table.num_valid == table.num_fit == len(table) == len(want)
    assert got == want


def test_without_data_parallelism_one_zero_stage_is_listed():
    """With d = 1 every ZeRO stage is the same configuration: it is listed once, as stage 0."""
    table = search.parallelism(models.get("llama-3-8b"), "H100_SXM", num_chips=N, global_batch=B, seq_len=S)
    solo = [r for r in table.rows() if r["dp"] == 1]
    assert solo and all(r["zero_stage"] == 0 for r in solo)
    assert math.isclose(table.best["tokens_per_second"], B * S / table.best["step_time"], rel_tol=1e-15)
