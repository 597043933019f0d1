"""Speculative decoding (symcost.plan.speculative): tokens per round, the round's cost, TPOT and
the break-even acceptance rate, against hand derivations and Leviathan et al. 2023, eq. 1."""

from fractions import Fraction

import pytest
import sympy as sp

from symcost import hardware, models
from symcost import symbols as S
from symcost.core.dtypes import DataType
from symcost.errors import ConfigError
from symcost.plan.inference import inference_step
from symcost.plan.speculative import (
    _verify_time,
    breakeven_alpha,
    expected_tokens,
    speculative_step,
    speculative_tpot,
    tpot_latex,
)

A, K = S.spec_alpha, S.spec_k
LLAMA = models.get("llama-3-8b")


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_expected_tokens_is_leviathan_eq_1(k):
    """sum_{i<=k} alpha^i is (1 - alpha^(k+1)) / (1 - alpha) (Leviathan et al. 2023, eq. 1) for
    alpha != 1; alpha = 0 gives 1 token per round, alpha = 1 the limit k + 1."""
    e = expected_tokens(k)
    assert sp.cancel(e * (1 - A) - (1 - A ** (k + 1))) == 0
    assert e.xreplace({A: 0}) == 1
    assert e.xreplace({A: 1}) == k + 1 == sp.limit((1 - A ** (k + 1)) / (1 - A), A, 1)


def test_expected_tokens_symbolic_k():
    """With k symbolic: the quotient, exact k + 1 at alpha = 1; k = 3, alpha = 1/2 gives
    1 + 1/2 + 1/4 + 1/8 = 15/8."""
    e = expected_tokens()
    assert e.xreplace({K: 3, A: sp.Rational(1, 2)}) == sp.Rational(15, 8)
    assert e.xreplace({A: 1}) == K + 1
    assert expected_tokens(K, 1) == K + 1


def test_speculative_tpot_by_hand():
    """k = 2, alpha = 1/2, T_draft = 1, T_verify = 3: E = 1 + 1/2 + 1/4 = 7/4, round 2*1 + 3 = 5,
    TPOT = 5 / (7/4) = 20/7."""
    assert speculative_tpot(2, Fraction(1, 2), 1, 3) == sp.Rational(20, 7)
    assert speculative_tpot(2, 0.5, 1, 3) == sp.Rational(20, 7)  # a float by its decimal digits
    at = {K: 2, A: sp.Rational(1, 2), S.draft_time: 1, S.verify_time: 3}
    assert speculative_tpot().xreplace(at) == sp.Rational(20, 7)  # the symbolic-k form agrees


@pytest.mark.parametrize("alpha", [-0.1, 1.5, Fraction(3, 2)])
def test_alpha_outside_unit_interval(alpha):
    with pytest.raises(ConfigError, match="spec_alpha must lie in"):
        expected_tokens(2, alpha)


@pytest.mark.parametrize("chip", [hardware.get("H100_SXM"), hardware.get("H100_SXM").ideal()])
def test_verify_of_one_token_is_the_decode_step(chip):
    """The verification forward over k + 1 = 1 token after s - 1 cached keys is a decode step at s
    keys: costed through the chunked-prefill path, it equals inference_step's TPOT exactly."""
    verify = _verify_time(LLAMA, chip, 2, 4096, sp.Integer(0), DataType.parse("bf16"))
    assert verify == sp.sympify(inference_step(LLAMA, chip, 2, 4096).tpot)


def test_verify_without_context_is_a_prefill_with_every_logit():
    """With s = 1 (no cached keys) the verification is the prefill of k + 1 tokens, except that
    the LM head computes the logits of all k + 1 tokens instead of the last one, and that each
    layer's attention core runs the engine's decode kernel (verification is part of generation:
    TensorRT-LLM's multi-token generation kernels) instead of context attention."""
    import dataclasses

    from symcost.hardware.timing import op_time

    chip, k, b = hardware.get("H100_SXM"), 3, 2
    bf16 = DataType.parse("bf16")
    verify = _verify_time(LLAMA, chip, b, 1, sp.Integer(k), bf16)
    prefill = sp.sympify(inference_step(LLAMA, chip, b, k + 1).ttft)
    head = dict((name, layer) for name, layer, _ in LLAMA.parts())["lm_head"]
    swap = (head.compute_metrics(b * (k + 1), 1, "decode", "bf16", chip).latency
            - head.compute_metrics(b, 1, "decode", "bf16", chip).latency)
    block = LLAMA.blocks[0][0].compute_metrics(b, k + 1, "prefill", "bf16", chip)
    core = next(op for op, _ in block.ops if op.name == "attention_core")
    assert core.kernel == "attn.prefill"
    as_decode = dataclasses.replace(core, decode=True)
    kernels = LLAMA.num_layers * (op_time(as_decode, chip, chip.effective_peak(bf16), bf16).time
                                  - op_time(core, chip, chip.effective_peak(bf16), bf16).time)
    assert kernels < 0  # the decode kernel has the lower fixed time (H100: 12 vs 25.6 us, fitted)
    assert sp.cancel(verify - prefill - swap - kernels) == 0


def test_alpha_zero_is_plain_decoding_plus_the_draft():
    """alpha = 0: one token per round, so TPOT = k draft steps + the verification."""
    st = speculative_step(LLAMA, "H100_SXM", 1, 4096, k=3, alpha=0)
    assert st.expected_tokens == 1
    assert st.tpot == st.round_time == 3 * st.draft_time + st.verify_time
    assert st.tpot > st.plain_tpot and st.speedup < 1


def test_alpha_one_gives_k_plus_one_tokens():
    st = speculative_step(LLAMA, "H100_SXM", 1, 4096, k=3, alpha=1)
    assert st.expected_tokens == 4
    assert st.tpot == Fraction(st.round_time) / 4
    assert st.tokens_per_second == 1 / Fraction(st.tpot)


def test_symbolic_step_agrees_with_numeric():
    """The step with k and alpha symbolic, at k = 2 and alpha = 3/5, is the numeric step."""
    symbolic = speculative_step(LLAMA, "H100_SXM", 1, 2048)
    numeric = speculative_step(LLAMA, "H100_SXM", 1, 2048, k=2, alpha=Fraction(3, 5))
    at = {K: 2, A: sp.Rational(3, 5)}
    assert sp.cancel(symbolic.tpot.xreplace(at) - numeric.tpot) == 0
    assert symbolic.tpot.free_symbols == {K, A}


def test_mtp_draft_costs_a_block_and_the_head():
    """The default draft (DeepSeek-V3 MTP module) costs more than one of the target's blocks and
    less than its whole decode step; its memory is one block's weights and KV cache, two norms
    and the 2h x h projection (2 * 4096^2 * 2 bytes)."""
    st = speculative_step(LLAMA, "H100_SXM", 1, 4096, k=1, alpha=0)
    rows = {name: m for name, _, m in inference_step(LLAMA, "H100_SXM", 1, 4096).decode_rows}
    block = rows["blocks[0]"]
    assert block.latency < st.draft_time < st.plain_tpot
    norms = 2 * rows["final_norm"].weight_memory_per_chip
    assert st.draft_memory == (block.weight_memory_per_chip + block.kv_cache_memory_per_chip + norms
                               + 2 * 4096 * 4096 * 2)
    assert st.draft == "mtp"
    # k = 3 heads are three such modules (each its own block, norms and projection): 3x the memory,
    # and each of the k draft steps costs one head's time
    three = speculative_step(LLAMA, "H100_SXM", 1, 4096, k=3, alpha=0)
    assert three.draft_memory == 3 * st.draft_memory and three.draft_time == st.draft_time


def test_draft_model_time_and_memory():
    """A draft model's step is its own decode step; on the target's chips its weights and KV
    cache add to theirs, on its own chips they do not."""
    draft = models.get("llama-2-7b")
    st = speculative_step(LLAMA, "H100_SXM", 1, 2048, k=2, alpha=Fraction(1, 2), draft=draft)
    own = inference_step(draft, "H100_SXM", 1, 2048)
    assert st.draft_time == own.tpot
    assert st.draft_memory == own.weight_memory + own.kv_cache_memory
    assert st.memory_per_chip == inference_step(LLAMA, "H100_SXM", 1, 2048).memory_per_chip + st.draft_memory
    apart = speculative_step(LLAMA, "H100_SXM", 1, 2048, k=2, alpha=Fraction(1, 2), draft=draft,
                             draft_hardware="H200")
    assert apart.memory_per_chip == inference_step(LLAMA, "H100_SXM", 1, 2048).memory_per_chip


def test_breakeven_by_hand():
    """k = 1: 1 + alpha = r; k = 2: alpha^2 + alpha + 1 = r. T_draft 1, T_verify 3, plain 2:
    r = (2 + 3)/2 = 5/2, alpha = (-1 + sqrt(7))/2; k = 1: r = 4/2 = 2, alpha = 1 (never strictly)."""
    be = breakeven_alpha(2, 1, 3, 2)
    assert be.status == "found" and sp.simplify(be.alpha - (-1 + sp.sqrt(7)) / 2) == 0
    assert sp.simplify(be.closed_form - (-1 + sp.sqrt(7)) / 2) == 0
    assert breakeven_alpha(1, 1, 3, 2).status == "never"
    assert breakeven_alpha(1, 1, 1, 4).status == "always"  # r = 1/2: even alpha = 0 wins
    r = sp.Symbol("r", positive=True)
    symbolic = breakeven_alpha(1, S.draft_time, S.verify_time, r)
    assert symbolic.status == "symbolic" and symbolic.alpha == (S.draft_time + S.verify_time) / r - 1


def _bisect(f, lo, hi, steps=200):
    flo = f(lo)
    for _ in range(steps):
        mid = (lo + hi) / 2
        if (f(mid) > 0) == (flo > 0):
            lo, flo = mid, f(mid)
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize("k, draft", [(1, None), (3, None), (5, None), (4, "llama-2-7b")])
def test_breakeven_is_the_numeric_crossing(k, draft):
    """The solved alpha is where TPOT_spec(alpha) - TPOT_plain changes sign (bisection on floats)."""
    st = speculative_step(LLAMA, "H100_SXM", 1, 4096, k=k, draft=None if draft is None else models.get(draft))
    plain = float(st.plain_tpot)
    tpot = sp.lambdify(A, st.tpot)

    def gap(alpha):
        return tpot(alpha) - plain

    be = st.breakeven()
    assert be.status == "found"
    assert gap(0.0) > 0 > gap(1.0)
    assert float(be.alpha) == pytest.approx(_bisect(gap, 0.0, 1.0), abs=1e-12)


def test_breakeven_needs_a_numeric_k():
    with pytest.raises(ConfigError, match="spec_k must be a number"):
        breakeven_alpha(K, 1, 1, 1)


def test_pipeline_parallel_is_refused():
    with pytest.raises(ConfigError, match="pipeline_parallel"):
        speculative_step(LLAMA, "H100_SXM", 1, 1024, k=2, alpha=0, parallelism={"pipeline_parallel": 2})


def test_latex():
    assert tpot_latex() == (r"\mathrm{TPOT} = \frac{T_{\mathrm{draft}} k + T_{\mathrm{verify}}}"
                            r"{\sum_{i=0}^{k} \alpha_{\mathrm{acc}}^{i}}")
    assert r"\alpha_{\mathrm{acc}}^{2} + \alpha_{\mathrm{acc}} + 1" in tpot_latex(2)


def test_symbolic_batch_agrees_with_numeric():
    """batch_size=None keeps b symbolic; at b = 4 it is the numeric step."""
    symbolic = speculative_step(LLAMA, "H100_SXM", None, 2048, k=2, alpha=Fraction(1, 2))
    numeric = speculative_step(LLAMA, "H100_SXM", 4, 2048, k=2, alpha=Fraction(1, 2))
    assert sp.cancel(symbolic.tpot.xreplace({S.batch_size: 4}) - numeric.tpot) == 0


# -- sliding windows (issue 20, item 1) ------------------------------------------------------------

MISTRAL = models.get("mistral-7b")  # sliding_window 4096 on every layer


@pytest.mark.parametrize("chip", [hardware.get("H100_SXM"), hardware.get("H100_SXM").ideal()])
def test_windowed_verify_of_one_token_is_the_decode_step(chip):
    """Mistral-7B, b = 8, 131,072 keys: the verification of k + 1 = 1 token is the decode step, whose
    window layers read and score min(s, w) = 4096 keys, not all 131,072."""
    verify = _verify_time(MISTRAL, chip, 8, 131072, sp.Integer(0), DataType.parse("bf16"))
    assert verify == sp.sympify(inference_step(MISTRAL, chip, 8, 131072).tpot)


@pytest.mark.parametrize("chip", [hardware.get("H100_SXM"), hardware.get("H100_SXM").ideal()])
def test_windowed_verify_stops_growing_past_the_window(chip):
    """k = 1 after s - 1 cached keys: the two queries sit at positions s - 2 and s - 1 and see the
    keys s - 1 - w .. s - 1 (each its last w = 4096), w + 1 = 4097 keys and 2w (query, key) pairs
    per head for every s >= w (at s = w the keys are 0 .. 4096, the same count; pairs
    F(4097) - F(4095) = (4096*4097/2 + 4096) - 4095*4096/2 = 2*4096). So the round at 131,072 keys
    costs what it costs at 4,096, and the speed-up is the same (the issue: 53.8 ms against 9.6 ms,
    speed-up 0.27)."""
    dtype = DataType.parse("bf16")
    far, near = (_verify_time(MISTRAL, chip, 8, s, sp.Integer(1), dtype) for s in (131072, 4096))
    assert far == near
    far_step, near_step = (speculative_step(MISTRAL, chip, 8, s, k=1, alpha=Fraction(4, 5)) for s in (131072, 4096))
    assert far_step.speedup == near_step.speedup
