"""Disaggregated serving (symcost.plan.disaggregated): the KV transfer by hand, the M/D/1 prefill
pool and the decode pool, the solved counts meeting the targets and one fewer not."""

from fractions import Fraction

import pytest
import sympy as sp

from symcost import hardware, models
from symcost.errors import ConfigError
from symcost.plan.disaggregated import kv_transfer, mean_ttft, pd_ratio
from symcost.plan.inference import decode_step, inference_step

LLAMA = models.get("llama-3-8b")
H100 = hardware.get("H100_SXM")


def test_kv_transfer_by_hand():
    """llama-3-8b, 4096-token prompt, bf16: K and V x 32 layers x 8 KV heads x 128 x 2 bytes x
    4096 = 536,870,912 bytes on one chip, half per chip at TP 2 (4 KV heads each). Over H100's
    scale-out link (hardware/presets/h100-sxm.json: 50 GB/s, ConnectX-7 400 Gb/s, at its line
    rate, eta_out = 1; NCCL's base latency alpha_0 = 20.5 us as fitted on NCCL 2.29's H100 table
    and network hop alpha_net = 2.7 us): one p2p send, alpha_0 + t_coll + alpha_net + bytes /
    (B_out eta_out). (The LL protocol's 5.14 us base does not pay at 0.512 of the bandwidth.)"""
    nbytes, seconds = kv_transfer(LLAMA, H100, 4096)
    assert nbytes == 2 * 32 * 8 * 128 * 2 * 4096 == 536_870_912
    assert seconds == Fraction(205, 10**7) + 0 + Fraction(27, 10**7) + Fraction(536_870_912, 50 * 10**9)
    half, t2 = kv_transfer(LLAMA, H100, 4096, parallelism={"tensor_parallel": 2})
    assert half == nbytes // 2
    assert t2 == Fraction(232, 10**7) + Fraction(268_435_456, 50 * 10**9)


def test_mean_ttft_is_md1():
    """M/D/1 (Pollaczek-Khinchine with zero service variance): mean wait rho D / (2 (1 - rho)).
    D = 1 s, 3 requests/s over 4 instances: rho = 3/4, wait 3/4 / (2 * 1/4) = 3/2; TTFT =
    1 + 1/10 (transfer) + 3/2. rho >= 1: unbounded."""
    assert mean_ttft(1, Fraction(1, 10), 3, 4) == sp.Rational(1, 1) + sp.Rational(1, 10) + sp.Rational(3, 2)
    assert mean_ttft(1, 0, 4, 4) == sp.oo
    with pytest.raises(ConfigError, match="num_prefill"):
        mean_ttft(1, 0, 1, 0)


def test_mean_ttft_of_a_pipelined_instance_is_distserve_eq_2():
    """DistServe (Zhong et al. 2024, §3.1, eq. 2): a pipelined instance answers a prompt after the
    whole prefill D_s but admits the next one as soon as its slowest stage (D_m) is free, so its
    queue is M/D/1 with service time D_m: TTFT = D_s + T_kv + R D_m^2 / (2 (1 - R D_m)), R the
    instance's rate. D_s = 1, D_m = 1/2, 1 request/s on one instance: R D_m = 1/2, wait
    (1/2)(1/2) / (2 * 1/2) = 1/4, so TTFT = 1 + 1/10 + 1/4. R D_m = 1: unbounded. D_m = D_s: eq. 1."""
    assert mean_ttft(1, Fraction(1, 10), 1, 1, stage_time=Fraction(1, 2)) == sp.Rational(27, 20)
    assert mean_ttft(1, 0, 2, 1, stage_time=Fraction(1, 2)) == sp.oo
    assert mean_ttft(1, 0, 1, 2, stage_time=1) == mean_ttft(1, 0, 1, 2)
    with pytest.raises(ConfigError, match="stage_time"):
        mean_ttft(1, 0, 1, 2, stage_time=2)  # a stage cannot take longer than the whole prefill


LLAMA_70B = models.get("llama-3-70b")
PIPELINED = dict(rate=12, prompt_len=4096, output_len=512, ttft=0.5, tpot=0.04,
                 prefill_parallelism={"tensor_parallel": 4, "pipeline_parallel": 2},
                 decode_parallelism={"tensor_parallel": 8})


def test_pipelined_prefill_pool_is_sized_by_the_slowest_stage():
    """Llama-3-70B, prefill at TP 4 x PP 2 (80 blocks, 40 per stage), 12 requests/s of 4096 + 512
    tokens, mean TTFT 0.5 s (issue 20, item 3). D_s is the prompt's whole prefill (both stages and
    the send between them); D_m the slower stage: stage 0 the embedding, 40 blocks and its send to
    stage 1, stage 1 40 blocks, the final norm and the LM head; each plus the engine's own step time.
    With D_s ~ 0.276 s and D_m ~ 0.138 s (the fitted H100 kernels), two instances queue 0.34 s
    (TTFT 0.62 s) and 3 (24 chips) meet it at TTFT ~ 0.365 s; sizing the queue on D_s (eq. 1) gave
    5 (40 chips) under the model of the issue."""
    ppar = PIPELINED["prefill_parallelism"]
    plan = pd_ratio(LLAMA_70B, **PIPELINED)
    step = inference_step(LLAMA_70B, H100, 1, 4096, parallelism=ppar)
    assert step.stage_layers == (40, 40) and plan.prefill_time == step.ttft
    lat = {name: sp.sympify(m.latency) * n for name, n, m in step.prefill_rows}
    overhead = H100.runtime.step_overhead
    # the TTFT is every layer, one stage-to-stage send and one engine step: the send is what is left
    send = sp.sympify(step.ttft) - sp.Add(*lat.values()) - overhead
    assert send > 0
    block = lat["blocks[0]"] / 2  # 40 of the 80 blocks
    d_m = max(lat["embedding"] + block + send, block + lat["final_norm"] + lat["lm_head"]) + overhead
    assert plan.prefill_stage_time == d_m
    assert 0.45 < float(d_m / plan.prefill_time) < 0.55
    # eq. 2 written out again, brute force over n: 2 instances, one does not do
    lam, target = sp.Integer(12), sp.Rational(1, 2)

    def ttft(n):
        r = lam / n
        return sp.oo if r * d_m >= 1 else plan.prefill_time + plan.kv_transfer_time + r * d_m**2 / (2 * (1 - r * d_m))

    assert [n for n in range(1, 10) if ttft(n) <= target][0] == plan.num_prefill == 3
    assert plan.ttft == ttft(3) and 0.36 < float(plan.ttft) < 0.37 and 0.6 < float(ttft(2)) < 0.63
    assert plan.meets_ttft(3) and not plan.meets_ttft(2)
    assert plan.prefill_utilization == lam * d_m / 3
    assert plan.prefill_chips == 8 and plan.num_chips == 3 * 8 + plan.num_decode * 8


def test_an_unpipelined_prefill_stage_is_the_whole_prefill():
    """Without pipeline stages D_m = D_s (eq. 2 is eq. 1)."""
    plan = pd_ratio(LLAMA, **CASES[0])
    assert plan.prefill_stage_time == plan.prefill_time


CASES = [
    dict(rate=50, prompt_len=2048, output_len=256, ttft=0.2, tpot=0.05),          # memory binds the batch
    dict(rate=20, prompt_len=1024, output_len=1024, ttft=Fraction(1, 25), tpot=Fraction(1, 100)),  # TPOT binds
    dict(rate=30, prompt_len=4096, output_len=512, ttft=0.5, tpot=0.03,
         prefill_parallelism={"tensor_parallel": 2}, decode_hardware="H200"),
]


def _brute_force_prefill(d, t_kv, rate, target):
    """The fewest instances with mean TTFT <= target, trying n = 1, 2, ...; the M/D/1 mean
    written out again here: D + T_kv + (rate D / n) D / (2 (1 - rate D / n))."""
    for n in range(1, 10_000):
        rho = rate * d / n
        if rho < 1 and d + t_kv + rho * d / (2 * (1 - rho)) <= target:
            return n
    raise AssertionError("no n found")


@pytest.mark.parametrize("case", CASES)
def test_solved_counts_meet_the_targets_and_one_fewer_does_not(case):
    plan = pd_ratio(LLAMA, **case)
    ttft_target, tpot_target = Fraction(repr(case["ttft"])) if isinstance(case["ttft"], float) else case["ttft"], \
        Fraction(repr(case["tpot"])) if isinstance(case["tpot"], float) else case["tpot"]
    rate = Fraction(case["rate"])
    # prefill: the closed form equals a brute-force search over n
    d, t_kv = Fraction(plan.prefill_time), Fraction(plan.kv_transfer_time)
    assert plan.num_prefill == _brute_force_prefill(d, t_kv, rate, ttft_target)
    assert plan.ttft <= ttft_target and plan.meets_ttft(plan.num_prefill)
    assert not plan.meets_ttft(plan.num_prefill - 1)
    # decode: the batch meets TPOT and fits; one more misses TPOT or does not fit
    chip = hardware.get(case.get("decode_hardware", "H100_SXM"))
    keys = case["prompt_len"] + case["output_len"] - 1
    # a decode instance never prefills: its memory is the weights, the KV cache and one token's
    # activations per sequence, a step whose prefill chunk is 1
    at = inference_step(LLAMA, chip, plan.decode_batch, keys, prefill_chunk=1)
    more = inference_step(LLAMA, chip, plan.decode_batch + 1, keys, prefill_chunk=1)
    assert at.tpot <= tpot_target and at.fits
    assert more.tpot > tpot_target or not more.fits
    assert {"tpot": more.tpot > tpot_target, "memory": not more.fits}[plan.decode_limit]
    # Little's law: mean requests in the decode pool rate * (O - 1) * TPOT fit n_d batches, not n_d - 1
    load = rate * (case["output_len"] - 1) * Fraction(at.tpot)
    assert load <= plan.num_decode * plan.decode_batch
    assert plan.num_decode == 1 or load > (plan.num_decode - 1) * plan.decode_batch
    assert plan.meets_decode(plan.num_decode) and not plan.meets_decode(plan.num_decode - 1)
    assert plan.ratio == Fraction(plan.num_prefill, plan.num_decode)


def test_counts_of_the_first_case():
    """50 requests/s of 2048 + 256 tokens on H100s: D is one prompt's prefill (inference_step's
    TTFT at batch 1), 47.1 ms: at least 2 * 8.03e9 * 2048 = 32.9 TFLOP of weight GEMMs at H100's
    989.4 TFLOP/s dense = 33.2 ms; rho per instance must stay below 1 (at least 3 instances:
    50 * 0.0471 = 2.36).

    Decode memory by hand, at the longest context 2048 + 256 - 1 = 2303 keys: weights are
    8,030,261,248 parameters x 2 bytes = 16,060,522,496 B; the KV cache is 2 (K, V) x 32 layers
    x 8 heads x 128 x 2 bytes = 131,072 B per token, 301,858,816 B per sequence. 80 GiB - weights
    = 85,899,345,920 - 16,060,522,496 = 69,838,823,424 B holds 231 sequences' KV (69,729,386,496 B,
    leaving 0.47 MB per sequence for one decode token's activations) and not 232 (70,031,245,312 B >
    69,838,823,424 B even with no activations): B = 231, memory-bound. (Before the decode pool was
    sized on decode memory it was sized on a whole prefill's activations and came out at 130, 1.6x
    too few.)

    Decode pool: each step reads at least the weights and the KV cache, 16.06 GB + 231 x 0.3019 GB
    = 85.79 GB, at H100's 3.35 TB/s: TPOT >= 25.6 ms, so the load 50 * 255 * TPOT / 231 exceeds
    1.41 instances; 2 instances hold it while TPOT <= 2 * 231 / (50 * 255) = 36.2 ms."""
    plan = pd_ratio(LLAMA, **CASES[0])
    assert (plan.num_prefill, plan.num_decode, plan.decode_batch, plan.decode_limit) == (3, 2, 231, "memory")
    assert plan.prefill_time == inference_step(LLAMA, H100, 1, 2048).ttft
    assert 0.0332 < float(plan.prefill_time) < 0.06 and 2 < 50 * float(plan.prefill_time) < 3
    assert 0.0256 <= float(plan.decode_tpot) <= 0.0362
    assert plan.num_chips == 5


def test_the_decode_batch_respects_max_num_seqs():
    """Issue 23 (review): the decode instance runs at most the engine's max_num_seqs requests, as
    the aggregated engine does. The first case's memory bound is 231 (test_counts_of_the_first_case);
    a cap of 100 binds instead: B = 100, named ``max-seqs``, and Little's law sizes the pool at
    that batch: n_d = ceil(50 x 255 x TPOT(100)/100), TPOT(100) >= (16.06 GB + 100 x 0.3019 GB)/
    3.35 TB/s = 13.8 ms (the step reads the weights and the KV cache); the step's TPOT(100) is
    18.3 ms, between 2 x 100/12,750 = 15.7 ms and 3 x 100/12,750 = 23.5 ms: 3 instances (2 at the
    uncapped batch of 231)."""
    plan = pd_ratio(LLAMA, **CASES[0], max_num_seqs=100)
    assert (plan.decode_batch, plan.decode_limit) == (100, "max-seqs")
    tpot = decode_step(LLAMA, H100, 100, 2303).tpot
    assert plan.decode_tpot == tpot and 0.0157 < float(tpot) <= 0.0235
    assert plan.num_decode == int(sp.ceiling(50 * 255 * tpot / 100)) == 3
    # a cap above both bounds changes nothing
    assert pd_ratio(LLAMA, **CASES[0], max_num_seqs=232).decode_batch == 231
    with pytest.raises(ConfigError, match="^max_num_seqs must be a positive whole number of requests, got 0$"):
        pd_ratio(LLAMA, **CASES[0], max_num_seqs=0)


def test_the_decode_batch_takes_the_engine_profiles_max_num_seqs():
    """By default the cap is the decode chip's engine profile's: vLLM runs 256 requests on an A100
    (vllm.json, max_num_seqs: 'a100' -> 256). Prompts of 200 and 56 outputs (255 keys, 33.4 MB of
    KV each) fit about (80 GiB - 16.06 GB)/33.4 MB = 2,089 sequences, and a 1 s TPOT allows far
    more than 256: the profile's cap binds."""
    a100 = hardware.get("A100_SXM_80GB").with_runtime("vllm")
    plan = pd_ratio(LLAMA, rate=10, prompt_len=200, output_len=56, ttft=1, tpot=1, prefill_hardware=a100)
    assert (plan.decode_batch, plan.decode_limit) == (256, "max-seqs")
    neutral = pd_ratio(LLAMA, rate=10, prompt_len=200, output_len=56, ttft=1, tpot=1, prefill_hardware="A100_SXM_80GB")
    assert neutral.decode_limit == "memory" and neutral.decode_batch > 2000


def test_pools_with_their_own_chips_and_parallelism():
    plan = pd_ratio(LLAMA, **CASES[2])
    assert plan.prefill_chips == 2 and plan.decode_chips == 1
    assert plan.num_chips == 2 * plan.num_prefill + plan.num_decode
    # the prefill runs at TP 2: its D is the TP-2 prefill of one prompt
    assert plan.prefill_time == inference_step(LLAMA, H100, 1, 4096, parallelism={"tensor_parallel": 2}).ttft
    # the prompt's KV cache is 2 (K, V) x 32 layers x 8 heads x 128 x 2 bytes x 4096 tokens =
    # 536,870,912 bytes; each TP-2 prefill chip sends half, the TP-1 decode chip receives it all
    # over its own link: the receive is the slower side and sets T_kv
    sent, t_send = kv_transfer(LLAMA, H100, 4096, parallelism={"tensor_parallel": 2})
    got, t_recv = kv_transfer(LLAMA, "H200", 4096)
    assert (sent, got) == (268435456, 536870912)
    assert t_recv > t_send and plan.kv_transfer_time == t_recv


@pytest.mark.parametrize("kwargs, match", [
    (dict(ttft=0.01), "ttft: the target"),
    (dict(tpot=0.001), "tpot: the target"),
    (dict(output_len=1), "output_len must be at least 2"),
    (dict(rate=-1), "rate must be a positive number"),
    (dict(rate=float("nan")), "rate must be a finite number"),
    # LLAMA has 32 heads: TP 3 cannot split them; the error names the pool whose parallelism broke it
    (dict(decode_parallelism={"tensor_parallel": 3}),
     r"^decode_parallelism: num_heads must be divisible by tensor_parallel \(got 32 and 3\)$"),
    (dict(prefill_parallelism={"tensor_parallel": 3}), r"^prefill_parallelism: num_heads must be divisible"),
])
def test_bad_input(kwargs, match):
    args = dict(rate=10, prompt_len=2048, output_len=128, ttft=0.5, tpot=0.05) | kwargs
    with pytest.raises(ConfigError, match=match):
        pd_ratio(LLAMA, **args)


def test_decode_that_does_not_fit():
    with pytest.raises(ConfigError, match="does not fit"):
        pd_ratio(models.get("llama-3-70b"), rate=1, prompt_len=1024, output_len=64, ttft=5, tpot=1)


def test_plan_latex_states_the_relations_and_compiles(latex_pdf):
    """The plan's LaTeX: the M/D/1 TTFT (DistServe eq. 2: whole prefill D_s, slowest stage D_m),
    the closed form for n_p and Little's law for n_d, each with its value. The values it prints
    agree with the relations recomputed here from the plan's inputs by hand: rho = lam D_m / n_p
    and TTFT = D_s + T_kv + rho D_m / (2 (1 - rho))."""
    import re

    plan = pd_ratio(LLAMA, **CASES[0])
    tex = plan.to_latex()
    assert tex.startswith(r"\begin{aligned}") and tex.endswith(r"\end{aligned}")
    lam, d, t_kv = float(CASES[0]["rate"]), float(plan.prefill_time), float(plan.kv_transfer_time)
    d_m = float(plan.prefill_stage_time)
    rho = lam * d_m / plan.num_prefill
    ttft = d + t_kv + rho * d_m / (2 * (1 - rho))
    shown_rho = float(re.search(r"\\rho = \\frac\{\\lambda D_m\}\{n_p\} = ([0-9.]+)", tex).group(1))
    shown_ttft = float(re.search(r"\\mathrm\{TTFT\} = ([0-9.]+)", tex).group(1))
    assert shown_rho == pytest.approx(rho, rel=1e-3) and shown_ttft == pytest.approx(ttft, rel=1e-3)
    assert rf"\right\rceil = {plan.num_prefill} \\" in tex and f"B = {plan.decode_batch}" in tex
    latex_pdf("\\[" + tex + "\\]", wrap=True)


# a decode pool under context or Ulysses sequence parallelism, or Megatron SP (issue 20, item 4)
SHARDED_DECODE = [({"context_parallel": 2}, 2), ({"sequence_parallel": 2}, 2),
                  ({"tensor_parallel": 2, "sequence_parallel": "tp"}, 1)]


@pytest.mark.parametrize("dpar, n", SHARDED_DECODE)
def test_decode_pool_under_cp_or_sp(dpar, n):
    """A decode instance never prefills, so no prefill rule applies to it (it failed on "chunked
    prefill under context_parallel=2 is not modelled" and "prefill_chunk must be divisible by
    sequence_parallel (got 1 and 2)"). Its KV cache is split n = sp * cp ways by keys
    (docs/conventions.md §3b), new tokens appended round-robin: of the longest context's
    2048 + 256 - 1 = 2303 keys the fullest rank holds ceil(2303/n), 1152 at n = 2, and every
    rank waits for it. Llama-3-8B's KV cache is 2 x 32 layers x 8 heads x 128 x 2 bytes = 131,072
    bytes per token, 150,994,944 per sequence on that rank; weights 16,060,522,496 bytes, whole
    on every CP or Ulysses rank. Megatron SP has no token axis in decode: TP 2's pool exactly."""
    case = dict(CASES[0], decode_parallelism=dpar)
    plan = pd_ratio(LLAMA, **case)
    keys = -(-2303 // n) * n
    at = decode_step(LLAMA, H100, plan.decode_batch, keys, parallelism=dpar)
    more = decode_step(LLAMA, H100, plan.decode_batch + 1, keys, parallelism=dpar)
    assert at.tpot == plan.decode_tpot and at.tpot <= Fraction(1, 20) and at.fits
    assert more.tpot > Fraction(1, 20) or not more.fits
    if n == 2:
        assert at.kv_cache_memory == plan.decode_batch * 131_072 * 1152 and at.weight_memory == 16_060_522_496
        # the prompt's 2048 tokens arrive split 2 ways: 1024 x 131,072 bytes per decode chip, half
        # of what the TP-1 prefill chip sends; the send is the slower side
        assert decode_step(LLAMA, H100, 1, 2048, parallelism=dpar).kv_cache_memory == 1024 * 131_072
        assert plan.kv_transfer_time == kv_transfer(LLAMA, H100, 2048)[1]
    else:
        tp2 = pd_ratio(LLAMA, **dict(CASES[0], decode_parallelism={"tensor_parallel": 2}))
        assert (plan.decode_batch, plan.decode_tpot, plan.num_decode) == (tp2.decode_batch, tp2.decode_tpot,
                                                                           tp2.num_decode)


def test_decode_step_is_the_inference_steps_decode():
    """decode_step times a decode step as inference_step does; its memory holds the decode
    step's activations, not a prefill's: at a whole prefill the two differ, at one token not."""
    par = {"tensor_parallel": 2}
    plain = inference_step(LLAMA, H100, 8, 4096, parallelism=par)
    dec = decode_step(LLAMA, H100, 8, 4096, parallelism=par)
    assert (dec.tpot, dec.weight_memory, dec.kv_cache_memory) == (plain.tpot, plain.weight_memory,
                                                                   plain.kv_cache_memory)
    assert dec.memory_per_chip < plain.memory_per_chip
    one = inference_step(LLAMA, H100, 8, 4096, parallelism=par, prefill_chunk=1)
    assert dec.memory_per_chip == one.memory_per_chip


def test_prefill_pool_rule_names_the_prompt():
    """A prefill pool under CP splits the prompt into 2 cp chunks: a 2047-token prompt at cp 2
    cannot be split; the error says it is the prompt, under the prefill pool's parallelism."""
    with pytest.raises(ConfigError, match=r"^prefill: a prompt of 2047 tokens under prefill_parallelism: seq_len "
                                          r"must be divisible by 2 \* context_parallel"):
        pd_ratio(LLAMA, **dict(CASES[0], prompt_len=2047, prefill_parallelism={"context_parallel": 2}))
