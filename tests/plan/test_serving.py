"""Continuous batching at steady state (symcost.plan.serving): the engine step's parts against the
static steps, each regime's schedule derived by hand on a tiny model and a round-number chip, the
KV bound by hand, the static batch at concurrency 1, the open loop's M/D/1 wait."""

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from symcost import Model, hardware, models
from symcost import symbols as S
from symcost.core.dtypes import DataType
from symcost.core.ops import AttentionCore
from symcost.errors import ConfigError
from symcost.hardware import Hardware, Runtime
from symcost.hardware.timing import op_time
from symcost.plan.serving import Workload, continuous_batching, engine_steps, serving_curve
from symcost.plan.serving.queueing import md1_wait_quantile

US = Fraction(1, 10**6)

# A chip with round fields (tests/hardware/test_timing.py's ROUND, 10 MB of HBM and a 10 us step):
# 100 TFLOP/s bf16, 1 TB/s HBM, every efficiency a simple fraction.
ROUND = Hardware(
    name="round", peak_flops={"bf16": 10**14, "fp8_e4m3": 2 * 10**14}, vector_flops=10**13,
    hbm_capacity=10**7, hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8,
    scale_out_bandwidth=10**10, collective_latency=US,
    matmul_efficiency=Fraction(1, 2), matmul_efficiency_8bit=Fraction(1, 4), memory_efficiency=Fraction(1, 2),
    attention_memory_efficiency=Fraction(1, 4), attention_efficiency=Fraction(1, 5),
    network_efficiency=Fraction(1, 2), kernel_time=US, launch_time=3 * US, collective_base_latency=5 * US,
    compute_units=4, matmul_tile=(128, 128),
    runtime=Runtime(name="round", cuda_graphs=True, step_overhead=10 * US))

# h 256, 4 heads of 64 (2 KV heads), f 512, 2 layers, V 1000
TINY = Model.llama(hidden_size=256, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=1000,
                   intermediate_size=512, name="tiny")
# T = 40 tokens per step, prompts of I = 5, O = 8 outputs (D = 7 decode steps), half the HBM
SMALL = dict(token_budget=40, memory_fraction=Fraction(1, 2))
LLAMA = models.get("llama-3-8b")


def curve(workload=(5, 8), chip=ROUND, model=TINY, **options):
    return serving_curve(model, chip, workload, **{**SMALL, **options})


# -- the engine step -------------------------------------------------------------------------


@pytest.mark.parametrize("model, chip, par", [
    (TINY, ROUND, None),
    (LLAMA, hardware.get("H100_SXM").with_runtime("vllm"), {"tensor_parallel": 2}),
    (LLAMA, hardware.get("H200_SXM").with_runtime("tensorrt-llm"), {"tensor_parallel": 2, "pipeline_parallel": 2}),
])
def test_a_step_without_prefill_is_the_decode_step_and_without_decode_the_prefill(model, chip, par):
    """Its two ends are the static steps: n decode tokens at k keys and nothing else is
    inference_step(n, k).tpot; r whole prompts of q tokens and no decode token is
    inference_step(r, q).ttft (with pipeline stages, their sends included)."""
    steps = engine_steps(model, chip, parallelism=par)
    for n, k in ((1, 37), (24, 1000), (300, 5)):
        assert steps.decode(n, k) == model.inference_step(chip, n, k, parallelism=par).tpot
    for r, q in ((1, 40), (3, 512)):
        assert steps.mixed(0, 0, r, q) == model.inference_step(chip, r, q, parallelism=par).ttft


def test_the_linear_ops_see_only_the_token_count():
    """Every op but the attention cores and the LM head costs the same for one sequence of N
    prefill tokens as for N decode tokens (one per sequence): the rows of the two static steps,
    summed here op by op."""
    peak = ROUND.effective_peak("bf16")

    def linear(rows):
        total = 0
        for name, n, m in rows:
            if name == "lm_head":
                continue
            cores = sum(mult * op_time(op, ROUND, peak, DataType.BF16).time
                        for op, mult in m.ops if isinstance(op, AttentionCore))
            total += n * (m.latency - cores)
        return total

    for tokens in (1, 7, 40, 300):
        prefill = TINY.inference_step(ROUND, 1, tokens).prefill_rows
        decode = TINY.inference_step(ROUND, tokens, 123).decode_rows
        assert linear(prefill) == linear(decode)


# -- the static batch ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tensorrt-llm"])
def test_concurrency_one_is_the_static_batch_of_one(engine):
    """One request at a time, no arrivals meanwhile: its prefill is inference_step(1, I)'s TTFT,
    each of its D = O - 1 decode steps one static decode step; at the mean context I + (D + 1)/2
    (ISL 1024, OSL 130: 129 steps attending to 1025 ... 1153 keys, mean 1089) the decode step
    of the mean context is the mean step (attention affine in the keys). Throughput: one request
    per TTFT + D TPOT, O tokens each."""
    chip = hardware.get("H100_SXM").with_runtime(engine)
    point = continuous_batching(LLAMA, chip, (1024, 130), 1)
    static = LLAMA.inference_step(chip, 1, 1024)
    assert point.regime == "synchronized" and point.running == 1
    assert point.ttft == static.ttft
    assert point.tpot == LLAMA.inference_step(chip, 1, 1089).tpot
    assert point.request_rate == 1 / (point.ttft + 129 * point.tpot)
    assert point.tokens_per_second_per_gpu == 130 * point.request_rate
    assert point.tokens_per_second_per_user == 1 / point.tpot


def test_a_synchronized_batch_is_the_static_batch():
    """Up to T/I requests (8192/1024 = 8) arrive together, are prefilled in one step and decode
    in lockstep: TTFT is the static prefill of 8 prompts, TPOT the static decode step of 8."""
    chip = hardware.get("H100_SXM").with_runtime("vllm")
    point = continuous_batching(LLAMA, chip, (1024, 130), 8, parallelism={"tensor_parallel": 2})
    assert point.regime == "synchronized"
    assert point.ttft == LLAMA.inference_step(chip, 8, 1024, parallelism={"tensor_parallel": 2}).ttft
    assert point.tpot == LLAMA.inference_step(chip, 8, 1089, parallelism={"tensor_parallel": 2}).tpot


# -- each regime by hand ------------------------------------------------------------------------


def test_interleaved_schedule_by_hand():
    """T = 40, I = 5, D = 7 (K = 5 + 8/2 = 9 keys), c = 20 requests: a mixed step holds r
    prompts beside the c - r others' decode tokens, 15 + 5 * 5 = 40 = T, so r = (T - c)/(I - 1) =
    5; the 20 prompts take m = 4 mixed steps of the L = D + 1 = 8 steps a request lives. A request
    decodes through the 3 mixed steps that are not its own and 4 decode-only steps (20 tokens):
    TPOT = (3 tau_mix + 4 tau_dec)/7, TTFT = tau_mix, X = 20/(4 tau_mix + 4 tau_dec) requests/s,
    8 output tokens each."""
    c = curve()
    steps = engine_steps(TINY, ROUND)
    tau_mix = steps.mixed(15, 9, 5, 5, 0, logits=20)  # 15 decode tokens' logits and 5 prompts' last
    tau_dec = TINY.inference_step(ROUND, 20, 9).tpot
    point = c.at(20)
    assert point.regime == "interleaved" and point.running == 20
    assert point.prefill_step == tau_mix and point.decode_step == tau_dec
    assert point.tpot == (3 * tau_mix + 4 * tau_dec) / 7
    assert point.ttft == tau_mix
    assert point.request_rate == sp.Rational(20) / (4 * tau_mix + 4 * tau_dec)
    assert point.tokens_per_second_per_gpu == 8 * point.request_rate
    # Little's law closes the loop: 20 = X (TTFT + 7 TPOT)
    assert point.request_rate * (point.ttft + 7 * point.tpot) == 20


def test_saturated_schedule_by_hand_and_continuous_at_its_start():
    """Past c* = T (D + 1)/(I + D) = 40 * 8/12 = 80/3 the prefill cannot keep up: every step is
    mixed at the flow balance, Q = T I/(I + D) = 50/3 prefill tokens (10/3 prompts) beside
    T D/(I + D) = 70/3 decode tokens; X = (10/3)/tau requests/s whatever c, TPOT = tau, and by
    Little's law TTFT = c/X - 7 tau grows with c (the others wait). At c* both regimes agree."""
    c = curve()
    assert dict(c.regimes)["interleaved"] == sp.Rational(80, 3)
    tau = engine_steps(TINY, ROUND).mixed(sp.Rational(70, 3), 9, sp.Rational(10, 3), 5, 0, logits=sp.Rational(80, 3))
    for n in (30, 100):
        point = c.at(n)
        assert point.regime == "saturated" and point.running == sp.Rational(80, 3)
        assert point.tpot == tau and point.request_rate == sp.Rational(10, 3) / tau
        assert point.ttft == n / point.request_rate - 7 * tau
    edge = c.at(sp.Rational(80, 3))
    assert edge.regime == "interleaved" and edge.tpot == tau and edge.request_rate == sp.Rational(10, 3) / tau


def test_kv_capacity_by_hand_bounds_the_running_requests():
    """KV cache per token 2 (K, V) x 2 layers x 2 KV heads x 64 x 2 bytes = 1024 bytes; a request
    holds I + D = 12 tokens at its end: 12,288 bytes. Weights 1,692,928 parameters (embedding
    256,000, 2 blocks of 590,336, a norm of 256, LM head 256,000) x 2 bytes = 3,385,856; a step of
    40 tokens peaks at (2h + 4h + 4f) bytes per token (the residual, the MLP's input and output,
    gate and up: inference.py's doctest) = 3,584 x 40 = 143,360. Half of 10 MB leaves 1,470,784
    bytes: 119 requests. Past them TPOT and throughput stay, TTFT grows by 1/X per request."""
    c = curve(workload=(5, 8))
    mem = c.memory
    assert (mem.budget, mem.weights, mem.activations, mem.kv_per_request) == (5_000_000, 3_385_856, 143_360, 12_288)
    assert c.kv_limit == (5_000_000 - 3_385_856 - 143_360) // 12_288 == 119
    # a budget of 200 tokens saturates at 200 * 8/12 = 133 requests: the KV cache (73 requests:
    # its activations 3,584 x 200 bytes) binds first
    wide = curve(workload=(5, 8), token_budget=200)
    assert wide.kv_limit == (5_000_000 - 3_385_856 - 3_584 * 200) // 12_288 == 73
    assert wide.regimes[-1][0] == "kv-bound"
    at, past, far = wide.at(wide.kv_limit), wide.at(wide.kv_limit + 10), wide.at(10**6)
    assert past.running == far.running == wide.kv_limit
    assert past.tpot == at.tpot == far.tpot and past.request_rate == at.request_rate == far.request_rate
    assert past.ttft - at.ttft == 10 / at.request_rate


def test_chunked_schedule_by_hand():
    """A prompt longer than the budget, I = 50 > T = 40: one prompt at a time in chunks of
    Q = T - (c - 1) tokens beside the c - 1 others' decode tokens, I/Q steps each (fluid: the last
    partial chunk as its share of a full one), its chunks after (I - Q)/2 earlier keys on average.
    c = 1: Q = 40, 5/4 steps after 5 keys, TTFT = 5/4 tau; c = 3: Q = 38 beside 2 decode
    tokens, m = c I/Q = 75/19 of L = 7 + 25/19 steps."""
    c = curve(workload=(50, 8))
    steps = engine_steps(TINY, ROUND)
    one = c.at(1)
    tau = steps.mixed(0, 54, 1, 40, 5, logits=sp.Rational(40, 50))
    assert one.regime == "chunked" and one.ttft == sp.Rational(5, 4) * tau
    assert one.tpot == TINY.inference_step(ROUND, 1, 54).tpot  # K = 50 + 8/2
    three = c.at(3)
    tau3 = steps.mixed(2, 54, 1, 38, 6, logits=2 + sp.Rational(38, 50))
    m, own = sp.Rational(150, 38), sp.Rational(50, 38)
    dec = TINY.inference_step(ROUND, 3, 54).tpot
    assert three.tpot == ((m - own) * tau3 + (7 + own - m) * dec) / 7
    assert three.ttft == own * tau3


def test_one_long_prompt_is_close_to_the_static_chunked_prefill():
    """Llama-3-8B, a 20,000-token prompt in chunks of 8192 on H100: the fluid 20000/8192 chunks
    of the mean chunk (after 5904 earlier keys) against inference_step's exact three chunks (8192,
    8192 after 8192, 3616 after 16384): within 1 % (the last chunk's fixed costs)."""
    chip = hardware.get("H100_SXM").with_runtime("vllm")
    point = continuous_batching(LLAMA, chip, (20000, 200), 1)
    static = LLAMA.inference_step(chip, 1, 20000, prefill_chunk=8192).ttft
    assert point.regime == "chunked" and abs(point.ttft / static - 1) < sp.Rational(1, 100)


def test_alternating_schedule_by_hand():
    """Steps carry prefill or decode, never both (SGLang's default, ``mixed=False``), prefill first
    while prompts wait. c = 20 > T/I = 8: a prefill step holds 8 prompts of 5 (the decoders wait),
    m = c I/T = 5/2 prefill steps per cycle of m + D steps, X = 20/(m tau_pre + 7 tau_dec). The
    decoders advance together, so requests that start in one cycle end in one step and the next
    cycle's prompts arrive together: every cycle is a burst of m prefill steps before the decodes.
    The prompts laid end to end over the m steps, the j-th ends in step ceil(j/8): 8 in the first,
    8 in the second, 4 in the third, which holds 20 of its 40 tokens and takes half a step (the
    cycle's m = 5/2 counts it so): (8 x 1 + 8 x 2 + 4 x 5/2)/20 = 17/10 steps on average, and then
    the m - 17/10 = 4/5 later prefill steps before its decode: TTFT = 17/10 tau_pre, TPOT = (7
    tau_dec + 4/5 tau_pre)/7 (Little's law: TTFT + 7 TPOT = m tau_pre + 7 tau_dec = 20/X)."""
    c = curve(mixed=False)
    tau_pre = TINY.inference_step(ROUND, 8, 5).ttft
    tau_dec = TINY.inference_step(ROUND, 20, 9).tpot
    point = c.at(20)
    assert point.regime == "alternating"
    assert point.tpot == (7 * tau_dec + sp.Rational(4, 5) * tau_pre) / 7
    assert point.ttft == point.first_wave_ttft == sp.Rational(17, 10) * tau_pre
    assert point.request_rate == 20 / (sp.Rational(5, 2) * tau_pre + 7 * tau_dec)
    sglang = serving_curve(LLAMA, hardware.get("H100_SXM").with_runtime("sglang"), (1024, 130))
    assert sglang.mixed is False and [name for name, _ in sglang.regimes][:2] == ["synchronized", "alternating"]


def test_an_alternating_burst_never_gives_a_decode_token_less_than_a_step():
    """Review finding: prompts of I = 24 on steps of T = 40 alternating, c = 2 (m = 2 x 24/40 = 6/5
    prefill steps per cycle): the first prompt ends in step 1, the second in step 2, which holds 8
    of its 40 tokens and takes 1/5 of a step: waits 1 and 6/5, mean 11/10; the decodes then wait
    the other 6/5 - 11/10 = 1/10 step: TPOT = (7 tau_dec + 1/10 tau_pre)/7, at least tau_dec (whole
    ceilings, 3/2 on average, gave -1/10 step of stall: a TPOT below the decode step)."""
    point = curve(workload=(24, 8), mixed=False, token_budget=40).at(2)
    assert point.regime == "alternating"
    assert point.ttft == sp.Rational(11, 10) * point.prefill_step
    assert point.tpot == (7 * point.decode_step + sp.Rational(1, 10) * point.prefill_step) / 7
    assert point.tpot >= point.decode_step


def test_alternating_burst_with_chunked_prompts_by_hand():
    """Prompts of I = 80 = 2 T on an engine that alternates (T = 40): each prompt takes own = 2
    prefill steps; c = 3 fill m = 3 x 80/40 = 6 per cycle, the j-th prompt ending in step 2 j:
    TTFT = (2 + 4 + 6)/3 = 4 = (m + own)/2 steps of 40 prompt tokens (a chunk of 40 after 20
    earlier keys on average), TPOT = (7 tau_dec + (m - own)/2 tau_pre)/7 = (7 tau_dec + 2 tau_pre)/7."""
    c = curve(workload=(80, 8), mixed=False)
    point = c.at(3)
    tau_pre = point.prefill_step
    tau_dec = TINY.inference_step(ROUND, 3, 84).tpot
    assert point.regime == "alternating"
    assert tau_pre == engine_steps(TINY, ROUND).mixed(0, 0, 1, 40, 20, logits=sp.Rational(1, 2))
    assert point.ttft == 4 * tau_pre
    assert point.tpot == (7 * tau_dec + 2 * tau_pre) / 7


def test_a_burst_waits_the_exact_mean_of_its_ceilings():
    """Review finding: the burst's c prompts laid end to end over steps of Q tokens, the j-th ends
    in step ceil(j I/Q); the mean over j = 1 .. c, by hand (not (m + own)/2, which is under):
    I/T = 30/40 = 3/4, c = 4 (m = 3): ceil(3/4, 6/4, 9/4, 12/4) = 1, 2, 3, 3: 9/4 (model was 2);
    I/T = 60/40 = 3/2, c = 2 (m = 3): 2, 3: 5/2 (was 9/4); I/T = 20/30 = 2/3, c = 3 (m = 2): 1, 2, 2:
    5/3 (was 3/2). TPOT's stall is the rest of the burst, m - wait (Little's law). The first wave of
    an engine that mixes: I = 9, T = 40, c = 8: Q = T - c/2 = 36, ceil(j/4): four after one step,
    four after two, 3/2 (the old (c + 1) I/(2 Q) + 1/2 gave 13/8)."""
    for (isl, budget, c), wait, m in (((30, 40, 4), sp.Rational(9, 4), 3), ((60, 40, 2), sp.Rational(5, 2), 3),
                                      ((20, 30, 3), sp.Rational(5, 3), 2)):
        point = curve(workload=(isl, 8), mixed=False, token_budget=budget).at(c)
        tau_pre, tau_dec = point.prefill_step, point.decode_step
        assert point.regime == "alternating"
        assert point.ttft == wait * tau_pre, (isl, budget, c)
        assert point.tpot == (7 * tau_dec + (m - wait) * tau_pre) / 7
    tau = engine_steps(TINY, ROUND).mixed(4, 10, 4, 9, 0, logits=8)
    assert curve(workload=(9, 8)).at(8).first_wave_ttft == sp.Rational(3, 2) * tau


def test_a_burst_in_closed_form_is_exact_at_whole_periods():
    """The closed form in c (a symbol) cannot hold the ceilings' sum: it takes I/T (c + 1)/2 +
    (q - 1)/(2 q), q the denominator of I/T in lowest terms, exact where q divides c and within
    s (q - s)/(2 q c) steps else (s = c mod q). I/T = 5/40 = 1/8: at c = 16, ceil(j/8) gives
    (8 + 16)/16 = 3/2 = 17/16 + 7/16; at c = 20 the form gives 21/16 + 7/16 = 7/4 against the exact
    9/5, off by 1/20 = 4 x 4/(2 x 8 x 20), the bound met."""
    c = curve(mixed=False)
    tau_pre = TINY.inference_step(ROUND, 8, 5).ttft
    for n, closed in ((16, sp.Rational(3, 2)), (20, sp.Rational(7, 4))):
        assert c.ttft.xreplace({S.concurrency: n}) == closed * tau_pre
    assert c.at(16).ttft == sp.Rational(3, 2) * tau_pre
    assert abs(c.at(20).ttft - c.ttft.xreplace({S.concurrency: 20})) == sp.Rational(1, 20) * tau_pre


def test_the_ceiling_sum_against_counting():
    """The exact sum of ceil(j p/q), j = 1 .. n (a floor sum), against adding the ceilings one by one."""
    from symcost.plan.serving.batching import _ceiling_sum

    for p in range(1, 9):
        for q in range(1, 9):
            for n in range(0, 30):
                assert _ceiling_sum(n, p, q) == sum(-(-j * p // q) for j in range(1, n + 1)), (n, p, q)


def test_pipeline_stages_run_micro_batches():
    """With p = 2 stages the engine runs 2 micro-batches of c/2 requests, each step passing both
    stages: 2 requests run as two batches of 1, each at the static TPOT of one request with
    pipeline stages, at twice the throughput of one."""
    par = {"pipeline_parallel": 2}
    c = curve(parallelism=par)
    one, two = c.at(1), c.at(2)
    assert one.tpot == two.tpot == TINY.inference_step(ROUND, 1, 9, parallelism=par).tpot
    assert two.request_rate == 2 * one.request_rate and two.ttft == one.ttft
    assert c.chips == 2 and one.tokens_per_second_per_gpu == 8 * one.request_rate / 2


def test_first_wave_by_hand():
    """All c requests sent at once to an idle engine (a benchmark's start). c = 4 prompts of 5 fit
    one step of 40: the synchronized prefill, as the steady state. c = 20: the prompts queue for
    the budget, Q = T - c/2 = 30 prefill tokens (6 prompts) per step beside the 10 decode tokens of
    those served before (half of them on average, at I + 1 = 6 keys); the j-th request (j = 1 ..
    20) gets its first token after ceil(5 j/30) = ceil(j/6) steps: 6 after one, 6 after two, 6
    after three, 2 after four, (6 + 12 + 18 + 8)/20 = 11/5 on average."""
    c = curve()
    four = c.at(4)
    assert four.first_wave_ttft == four.ttft == TINY.inference_step(ROUND, 4, 5).ttft
    tau = engine_steps(TINY, ROUND).mixed(10, 6, 6, 5, 0, logits=16)
    assert c.at(20).first_wave_ttft == sp.Rational(11, 5) * tau
    # steps alternating prefill and decode: every cycle is such a burst (its test above)
    alt = curve(mixed=False).at(20)
    assert alt.first_wave_ttft == alt.ttft == sp.Rational(17, 10) * TINY.inference_step(ROUND, 8, 5).ttft


def test_benchmark_ttft_by_hand():
    """A benchmark at concurrency c from an idle engine: c clients send `waves` requests each, the
    first c at once (the first wave), the others into the steady state; its mean TTFT is
    (first wave + (waves - 1) steady)/waves. c = 20 (the interleaved regime): first wave 11/5 tau
    (test_first_wave_by_hand), steady one mixed step tau_mix; 10 waves (AIConfigurator's harness,
    10 c requests): (11/5 tau + 9 tau_mix)/10. An engine that alternates: every cycle a burst, the
    mean is the burst's whatever the waves."""
    c = curve()
    tau = engine_steps(TINY, ROUND).mixed(10, 6, 6, 5, 0, logits=16)
    steady = c.at(20).ttft
    assert c.benchmark_ttft(20) == (sp.Rational(11, 5) * tau + 9 * steady) / 10
    assert c.benchmark_ttft(20, waves=1) == sp.Rational(11, 5) * tau
    assert c.benchmark_ttft(4) == c.at(4).ttft  # synchronized: the first wave is the steady state
    assert np.isclose(c.sweep([20.0]).benchmark_ttft[0], float((sp.Rational(11, 5) * tau + 9 * steady) / 10))
    alt = curve(mixed=False)
    assert alt.benchmark_ttft(20, waves=3) == alt.at(20).ttft
    with pytest.raises(ConfigError, match="waves"):
        c.benchmark_ttft(20, waves=0)


# -- closed forms, sweeps, the open loop --------------------------------------------------------


def test_closed_forms_in_the_concurrency_and_the_sweep_agree():
    """Each quantity is one expression in c, piecewise over the regimes; the float64 sweep is the
    same expression compiled (to 1e-12)."""
    c = curve()
    assert c.tpot.free_symbols == {S.concurrency} and isinstance(c.tpot, sp.Piecewise)
    grid = np.array([1, 8, 19, 20, 26, 27, 100, 119, 500], dtype=float)
    swept = c.sweep(grid)
    for i, n in enumerate(grid):
        point = c.at(int(n))
        for name in ("ttft", "tpot", "request_rate", "tokens_per_second_per_gpu"):
            assert swept[name][i] == pytest.approx(float(getattr(point, name)), rel=1e-12)


def test_concurrency_to_infinity_saturates_at_the_kv_bound():
    """Throughput and TPOT stop changing once the KV cache is full: X(10^9) = X(kv_limit)."""
    c = curve(workload=(5, 8), token_budget=200)
    far = c.at(10**9)
    assert far.regime == "kv-bound" and far.request_rate == c.at(c.kv_limit).request_rate


def test_an_arrival_rate_runs_the_fewest_requests_that_keep_up_and_queues_md1():
    """At lambda requests/s the engine runs the fewest n with X(n) >= lambda (n - 1 fall short),
    and a prompt waits rho/(2 X_max (1 - rho)) for admission, rho = lambda/X_max (M/D/1 at the peak
    throughput X_max = X(kv_limit)); past X_max the queue grows without bound."""
    c = curve()
    peak = c.at(c.kv_limit).request_rate
    lam = peak / 3
    point = c.at_rate(lam)
    n = point.running
    assert c.at(n).request_rate >= lam > c.at(n - 1).request_rate
    rho = sp.Rational(1, 3)
    assert point.ttft == c.at(n).ttft + rho / (2 * peak * (1 - rho))
    assert point.tpot == c.at(n).tpot and point.request_rate == lam
    assert point.tokens_per_second_per_gpu == 8 * lam
    assert c.at_rate(peak).ttft == sp.oo and c.at_rate(2 * peak).regime == "overloaded"


def test_an_arrival_rate_on_an_engine_that_alternates_has_no_burst():
    """Poisson arrivals come one by one, whatever the engine's cycle: no burst forms (the closed
    loop's bursts come from requests ending together and their clients sending at once). At the
    rate the closed loop of 20 reaches, 20 run (test_alternating_schedule_by_hand: m = 5/2 prefill
    steps per cycle); a prompt waits for admission (M/D/1) and is prefilled in one step of
    tau_pre, and every decoding request sees all m - 1 other prefill steps of the cycle:
    TTFT = tau_pre + wait, TPOT = (7 tau_dec + 3/2 tau_pre)/7; the throughput is the closed loop's."""
    c = curve(mixed=False)
    tau_pre = TINY.inference_step(ROUND, 8, 5).ttft
    tau_dec = TINY.inference_step(ROUND, 20, 9).tpot
    lam = c.at(20).request_rate
    point = c.at_rate(lam)
    peak = c.at(c.running_limit).request_rate
    rho = lam / peak
    assert point.running == 20 and point.regime == "alternating"
    assert point.ttft == tau_pre + rho / (2 * peak * (1 - rho))
    assert point.tpot == (7 * tau_dec + sp.Rational(3, 2) * tau_pre) / 7
    assert point.ttft_percentiles[50] == tau_pre + md1_wait_quantile(lam, 1 / peak, sp.Rational(1, 2))


def test_a_mix_of_lengths():
    """Two points, weights 3 : 1: I = (3 * 5 + 9)/4 = 6, O = (3 * 8 + 12)/4 = 9; the decode
    context weighted by decode steps, (3 * 7 * 9 + 11 * (9 + 6))/(3 * 7 + 11) = 354/32; the KV a
    request holds, the mean of its final contexts (12 and 20 tokens) x 1024 bytes."""
    w = Workload.mix([(5, 8, 3), (9, 12, 1)])
    assert (w.prompt_len, w.output_len) == (6, 9)
    assert w.decode_context(ROUND.runtime) == sp.Rational(3 * 7 * 9 + 11 * 15, 32)
    c = curve(workload=w)
    assert c.memory.kv_per_request == (3 * 12 + 20) * 1024 / sp.Integer(4)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: Workload.of(1, 8), "isl must be at least 2"),
    (lambda: Workload.of(5, 1), "osl must be at least 2"),
    (lambda: Workload.mix([(5, 8, 0)]), "weight must be a positive number"),
    (lambda: Workload.mix([]), "at least one"),
    (lambda: curve(token_budget=0), "token_budget must be a positive whole number"),
    # a bad dtype with a bad token budget: the dtype reported, as it is parsed first
    (lambda: curve(dtype="bogus", token_budget=0), "dtype: unknown data type 'bogus'"),
    (lambda: curve(memory_fraction=Fraction(3, 2)), "memory_fraction must be at most 1"),
    (lambda: curve(memory_fraction=0.1), "memory: tiny on round leaves"),
    (lambda: curve(parallelism={"context_parallel": 2}), "without context or sequence parallelism"),
    (lambda: continuous_batching(TINY, ROUND, (5, 8)), "give a concurrency or a rate"),
    (lambda: continuous_batching(TINY, ROUND, (5, 8), 2, rate=1), "give a concurrency or a rate"),
    (lambda: curve().at(0), "concurrency must be a positive number"),
    (lambda: curve().at_rate(-1), "rate must be a positive number"),
])
def test_bad_input_is_one_line_naming_the_field(call, message):
    with pytest.raises(ConfigError, match=message) as err:
        call()
    assert "\n" not in str(err.value)
