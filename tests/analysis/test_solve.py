"""symcost.analysis.solve: largest integers and smallest degrees that fit, verified at n and n + 1."""

import pytest
import sympy as sp

import symcost as sc
from symcost import hardware
from symcost import symbols as S
from symcost.analysis.solve import common_divisors, max_integer, min_degree

H100_HBM = hardware.H100_SXM.hbm_capacity  # 80 * 2**30 bytes (80 GiB)


def fits(expr, symbol, n, limit):
    return sp.sympify(expr).xreplace({symbol: n}) <= limit


def assert_verified(expr, symbol, n, limit, step=1):
    """The answer fits and the next candidate does not."""
    assert fits(expr, symbol, n, limit)
    assert not fits(expr, symbol, n + step, limit)


def test_max_context_decode_gqa_kv_cache():
    """Llama-3-8B attention in decode: weights + activations + KV cache fit 80 GiB.

    Per token the KV cache costs 2 * 8 heads * 128 * 2 bytes = 4096 bytes; the rest is fixed:
    weights 2*(4096*6144 + 4096*4096) = 83,886,080 bytes and a peak of 2*(2*4096 + 6144 + 4096)
    bytes plus the flash core's nothing. n_max = floor((80 x 2^30 - fixed) / 4096).
    """
    m = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
        batch_size=1, phase="decode", dtype="bf16")
    r = max_integer(m.memory_per_chip, S.seq_len, H100_HBM)
    fixed = 83_886_080 + 2 * (2 * 4096 + 6144 + 4096)
    assert r.value == (80 * 2**30 - fixed) // 4096 == 20_951_031
    assert_verified(m.memory_per_chip, S.seq_len, r.value, H100_HBM)
    assert sp.floor(r.closed_form) == r.value


def test_max_context_training_flash_is_linear():
    """Flash GQA in training saves O(s) bytes: the closed form is the linear root."""
    layer = sc.GroupedQueryAttentionLayer(hidden_size=8192, num_heads=64, num_kv_heads=8)
    m = layer.compute_metrics(batch_size=1, phase="training", dtype="bf16")
    r = max_integer(m.memory_per_chip, S.seq_len, H100_HBM)
    assert r.status == "found"
    assert_verified(m.memory_per_chip, S.seq_len, r.value, H100_HBM)
    assert sp.Poly(m.memory_per_chip, S.seq_len).degree() == 1
    assert sp.floor(r.closed_form) == r.value


def test_max_context_training_eager_is_quadratic():
    """Eager MHA saves 5 a s^2 b bytes (e = 2): the closed form is a quadratic root, and
    substituting the shape into the symbolic closed form gives the numeric answer."""
    layer = sc.AttentionLayer(flash_attention=False, dropout=True)
    m = layer.compute_metrics(batch_size=1, phase="training", dtype="bf16")
    sym = max_integer(m.memory_per_chip, S.seq_len, S.hbm_capacity)
    assert sym.value is None
    assert any(p.exp == sp.Rational(1, 2) for p in sym.closed_form.atoms(sp.Pow))  # a square root
    shape = {S.hidden_size: 4096, S.num_heads: 32}
    numeric = max_integer(m.memory_per_chip.xreplace(shape), S.seq_len, H100_HBM)
    assert_verified(m.memory_per_chip.xreplace(shape), S.seq_len, numeric.value, H100_HBM)
    closed = sym.closed_form.xreplace({**shape, S.hbm_capacity: H100_HBM})
    assert sp.floor(closed) == numeric.value
    # by hand: 11sbh + 5as^2b + 8h^2 (weights) at b=1 is 5*32 s^2 + 11*4096 s + 8*4096^2 <= 80 x 2^30
    s = numeric.value
    assert 160 * s**2 + 45056 * s + 134_217_728 <= 80 * 2**30 < 160 * (s + 1)**2 + 45056 * (s + 1) + 134_217_728


def test_max_batch_size_prefill_mlp():
    """Largest batch whose prefill MLP fits: weights fixed, peak activations linear in b."""
    m = sc.GatedMLPLayer(hidden_size=8192, intermediate_size=28672).compute_metrics(
        seq_len=8192, phase="prefill", dtype="bf16")
    r = max_integer(m.memory_per_chip, S.batch_size, H100_HBM)
    assert_verified(m.memory_per_chip, S.batch_size, r.value, H100_HBM)
    # by hand: weights 3*8192*28672*2; peak per sequence 8192*(2*8192 + 2*28672)*2
    weights, per_seq = 3 * 8192 * 28672 * 2, 8192 * (2 * 8192 + 2 * 28672) * 2
    assert r.value == (80 * 2**30 - weights) // per_seq


def test_multiple_of_respects_the_sequence_degree():
    """With Ulysses sp = 8 the context must be a multiple of 8."""
    m = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8,
                                      parallelism={"sequence_parallel": 8}).compute_metrics(
        batch_size=1, phase="decode", dtype="bf16")
    r = max_integer(m.memory_per_chip, S.seq_len, H100_HBM, multiple_of=8)
    assert r.value % 8 == 0
    assert_verified(m.memory_per_chip, S.seq_len, r.value, H100_HBM, step=8)


def test_min_tp_that_fits():
    """The smallest TP degree (a common divisor of heads, KV heads and FFN width) whose
    Llama-3-70B-sized attention + MLP weights and KV cache at 32k fit in 80 GB."""
    def memory(t):
        par = {"tensor_parallel": t}
        attn = sc.GroupedQueryAttentionLayer(hidden_size=8192, num_heads=64, num_kv_heads=8,
                                             parallelism=par)
        mlp = sc.GatedMLPLayer(hidden_size=8192, intermediate_size=28672, parallelism=par)
        kw = {"batch_size": 8, "seq_len": 32768, "phase": "decode", "dtype": "bf16"}
        one = attn.compute_metrics(**kw) + mlp.compute_metrics(**kw)
        return 80 * one.weight_memory_per_chip + 80 * one.kv_cache_memory_per_chip  # 80 layers
    candidates = common_divisors(64, 8, 28672)
    assert candidates == [1, 2, 4, 8]
    r = min_degree(memory, None, H100_HBM, candidates)
    # weights 80 layers * 2 bytes * (2*8192*8192 + 2*8192*1024 + 3*8192*28672 = 855,638,016)
    # = 136,902,082,560; KV 80 * 2*8*32768*8*128*2 = 85,899,345,920: t=2 -> 111.4 GB,
    # t=4 -> 55.7 GB fits
    assert r.value == 4
    assert [fit for _, _, fit in r.checked] == [False, False, True]
    assert r.checked[1][1] == (136_902_082_560 + 85_899_345_920) // 2


def test_outcomes_are_explicit():
    """Nothing fits and unbounded are outcomes, not exceptions."""
    assert max_integer(S.seq_len + 10, S.seq_len, 5).status == "nothing_fits"
    assert max_integer(S.seq_len + 10, S.seq_len, 5).value is None
    flat = max_integer(sp.Integer(7) + 0 * S.seq_len, S.seq_len, 100)
    assert flat.status == "unbounded" and flat.value is None
    assert max_integer(S.seq_len, S.seq_len, 100, upper=50).value == 50
    assert min_degree(1000 / S.tp, S.tp, 1, [1, 2, 4]).status == "nothing_fits"


@pytest.mark.parametrize("limit", ["80GB", None, [1]])
def test_limit_must_be_a_number(limit):
    """A limit that is not a number is refused, naming it."""
    with pytest.raises(ValueError, match="limit must be a number"):
        max_integer(S.seq_len, S.seq_len, limit)


def test_float_limit_read_by_decimal_digits():
    """80e9 as a float is exactly 80,000,000,000."""
    assert max_integer(S.seq_len, S.seq_len, 80e9).value == 80 * 10**9


def test_other_symbols_without_closed_form():
    """Other free symbols and no closed form: a clear error asking to bind them."""
    with pytest.raises(ValueError, match="bind them"):
        max_integer(sp.Max(S.seq_len, S.hidden_size), S.seq_len, 100)


def test_large_answers_stay_exact():
    """Answers far above 2^63 are exact integers."""
    r = max_integer(3 * S.seq_len, S.seq_len, 10**30)
    assert r.value == 10**30 // 3
