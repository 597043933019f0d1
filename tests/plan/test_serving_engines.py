"""The engines' own serving defaults (symcost.hardware.serving, the profiles' ``serving`` entries):
token budget per chip, memory fraction and how each engine counts it, paged KV blocks; the
planner's KV capacity under each, derived by hand on the tiny model and the round chip of
test_serving."""

from fractions import Fraction

import pytest
import sympy as sp
from test_serving import ROUND, TINY

from symcost import hardware
from symcost.errors import ConfigError, HardwareError
from symcost.hardware import Runtime
from symcost.hardware.engines import field_sources, load
from symcost.hardware.serving import ServingDefaults, Tier, paged_tokens
from symcost.plan.serving import serving_curve
from symcost.plan.serving.batching import engine_defaults
from symcost.plan.serving.deploy import _decode, _Options
from symcost.plan.serving.workload import Workload


@pytest.mark.parametrize("engine, chip, gpus, budget, fraction, rule, block", [
    # vLLM: 8192 tokens on GPUs of 70 GiB or more (80 GiB) unless an A100, 0.9 of HBM, blocks of 16
    ("vllm", "H100_SXM", 1, 8192, Fraction(9, 10), "total", 16),
    ("vllm", "A100_SXM_80GB", 1, 2048, Fraction(9, 10), "total", 16),
    # TensorRT-LLM: max_num_tokens 8192, 0.9 of the free memory, 32 tokens per block
    ("tensorrt-llm", "B200", 8, 8192, Fraction(9, 10), "free", 32),
    # SGLang on H100 at TP 1: reserve 512 + 1.5 x 8192 + 2 x 256 = 13,312 MiB plus 128 MiB per GPU:
    # 1 - 13,440 MiB / 80 GiB (81,920 MiB) = 1 - 0.1640625 = 0.8359375, rounded to 0.836
    ("sglang", "H100_SXM", 1, 8192, Fraction(836, 1000), "static", 1),
    # at TP 8 the CUDA graphs go to 512 (13,824 MiB) and the GPUs add 1,024: 1 - 14,848/81,920 = 0.81875 -> 0.819
    ("sglang", "H100_SXM", 8, 8192, Fraction(819, 1000), "static", 1),
    # H200 141 GiB = 144,384 MiB, under 160 GiB: 8192; 1 - 13,440/144,384 = 0.90692 -> 0.907
    ("sglang", "H200_SXM", 1, 8192, Fraction(907, 1000), "static", 1),
    # B200 180 GiB = 184,320 MiB, over 160 GiB: 16,384 tokens, reserve 512 + 24,576 + 1,024 + 128 = 26,240 MiB:
    # 1 - 26,240/184,320 = 0.85764 -> 0.858
    ("sglang", "B200", 1, 16384, Fraction(858, 1000), "static", 1),
])
def test_each_engine_runs_with_its_own_defaults_per_chip(engine, chip, gpus, budget, fraction, rule, block):
    d = engine_defaults(hardware.get(chip).with_runtime(engine), gpus)
    assert (d.token_budget, d.memory_fraction, d.memory_rule, d.kv_block_tokens) == (budget, fraction, rule, block)


def test_every_serving_default_cites_its_source():
    for engine in ("vllm", "sglang", "tensorrt-llm"):
        sources = {k: v for k, v in field_sources(engine).items() if k.startswith("serving.")}
        assert {"serving.token_budget", "serving.memory_rule", "serving.kv_block_tokens"} <= set(sources)
        assert all(".py" in v for v in sources.values()), sources


def test_given_values_win_over_the_profile():
    d = engine_defaults(hardware.get("H100_SXM").with_runtime("sglang"), 1, 1024, Fraction(1, 2))
    assert (d.token_budget, d.memory_fraction, d.memory_rule) == (1024, Fraction(1, 2), "static")


def test_paged_tokens_round_up_to_whole_blocks():
    assert [paged_tokens(n, 16) for n in (1, 16, 17, 1012)] == [16, 16, 32, 1024]
    assert paged_tokens(1013, 1) == 1013


def _engine(rule, block=1, allocation="reserved"):
    serving = ServingDefaults(token_budget=(Tier(Fraction(40)),), memory_fraction=(Tier(Fraction(1, 2)),),
                              memory_rule=rule, kv_block_tokens=block, kv_allocation=allocation)
    return ROUND.model_copy(update={"runtime": Runtime(name=f"round-{rule}", cuda_graphs=True,
                                                       step_overhead=ROUND.runtime.step_overhead, serving=serving)})


@pytest.mark.parametrize("rule, block, limit", [
    # test_serving's hand numbers: weights W 3,385,856 bytes, activations A of a 40-token step 143,360,
    # a request's KV 1,024 bytes per token x 12 tokens = 12,288, HBM M 10^7, phi 1/2
    ("total", 1, (5_000_000 - 3_385_856 - 143_360) // 12_288),           # phi M - W - A: 119
    ("free", 1, (10**7 - 3_385_856 - 143_360) // 2 // 12_288),           # phi (M - W - A): 263
    ("static", 1, (5_000_000 - 3_385_856) // 12_288),                    # phi M - W: 131
    # blocks of 16: the 12 tokens take one block, 16,384 bytes
    ("total", 16, (5_000_000 - 3_385_856 - 143_360) // 16_384),          # 89
    ("static", 16, (5_000_000 - 3_385_856) // 16_384),                   # 98
])
def test_kv_capacity_by_each_rule_and_block_by_hand(rule, block, limit):
    c = serving_curve(TINY, _engine(rule, block), (5, 8))  # budget and fraction from the profile
    assert c.token_budget == 40 and c.memory_fraction == Fraction(1, 2)
    assert c.kv_limit == limit
    assert c.memory.kv_per_request == 1024 * paged_tokens(12, block)


def test_the_disaggregated_decode_pool_uses_the_engines_rule():
    """A decode instance of TP 1 under the static rule with blocks of 16: weights and KV within half
    the HBM, (5,000,000 - 3,385,856)/16,384 = 98 requests; the batch grid's largest up to 98 is 96."""
    chip = _engine("static", 16)
    opts = _Options(TINY, chip, Workload.of(5, 8), 1, "bf16", sp.Integer(1), sp.Integer(1), None, None, 512)
    dec = _decode(opts, (1, 1, 1))
    assert int(dec.batches[-1]) == 96
    below = _decode(opts.__class__(**{**opts.__dict__, "max_concurrency": 98}), (1, 1, 1))
    assert int(below.batches[-1]) == 96


def test_the_disaggregated_decode_pool_holds_what_the_engine_allocates():
    """A decode instance of TP 1 under the total rule, 5 + 10 tokens (D = 9: 6 .. 14 tokens held):
    reserving the whole request holds 14 tokens (14,336 bytes), on demand their mean over the decode
    steps, 10 (10,240): the pool's memory per request differs by exactly 4 x 1,024 bytes. With the
    decode activations A per request (one token a step: (2h + 4h + 4f) bytes = 2 x 256 + 4 x 256 +
    4 x 512 = 3,584, test_serving's test_kv_capacity_by_hand_bounds_the_running_requests) the pool
    holds floor((5,000,000 - 3,385,856)/(14,336 + 3,584)) = 90 and floor(1,614,144/(10,240 + 3,584))
    = 116 requests: the batch grid's largest below, 64 and 96."""
    pools = {}
    for allocation in ("reserved", "on_demand"):
        opts = _Options(TINY, _engine("total", 1, allocation), Workload.of(5, 10), 1, "bf16", sp.Integer(1),
                        sp.Integer(1), None, None, 512)
        pools[allocation] = _decode(opts, (1, 1, 1))
    b = sp.Symbol("b", positive=True, integer=True)
    reserved, demand = (sp.sympify(pools[a].memory_per_chip) for a in ("reserved", "on_demand"))
    assert sp.expand(reserved - demand) == 4 * 1024 * b
    assert sp.expand(reserved) == 3_385_856 + (14_336 + 3_584) * b  # W + (KV + A) b
    assert 1_614_144 // (14_336 + 3_584) == 90 and 1_614_144 // (10_240 + 3_584) == 116
    assert int(pools["reserved"].batches[-1]) == 64
    assert int(pools["on_demand"].batches[-1]) == 96
    assert int(pools["reserved"].batches[-1]) < int(pools["on_demand"].batches[-1])


def test_a_profile_with_a_bad_serving_entry_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", "serving": {"memory_rule": {"value": "most", "source": "x"}}}')
    with pytest.raises(HardwareError, match="bad.json: serving.memory_rule must be one of total, free, static"):
        load(bad)
    bad.write_text('{"name": "bad", "serving": {"token_budget": {"value": [{"tokens": 1}], "source": "x"}}}')
    with pytest.raises(HardwareError, match=r"bad.json: serving.token_budget\[0\]: a tier is an object"):
        load(bad)


def test_the_engines_defaults_change_the_kv_bound_on_a_real_chip():
    """Llama-3-8B on one H100, 1,024 + 130 tokens (129 decode steps), 131,072 bytes a token (32 layers
    x 2 x 8 KV heads x 128 x 2 bytes). TensorRT-LLM (GUARANTEED_NO_EVICT, blocks of 32) reserves the
    whole request, 1,153 tokens in 37 blocks = 1,184 tokens. vLLM (blocks of 16, on demand) holds
    at its j-th decode step the blocks of 1,024 + j tokens: 16 steps each at 65 .. 72 blocks
    (1,025 .. 1,152 tokens) and one at 73 (1,153): 16 x 548 + 73 = 8,841 blocks over 129 steps,
    16 x 8,841/129 = 141,456/129 tokens on average."""
    from symcost import models

    c = serving_curve(models.get("llama-3-8b"), hardware.get("H100_SXM").with_runtime("vllm"), (1024, 130))
    assert c.memory.kv_per_request == Fraction(141_456, 129) * 131_072 and c.token_budget == 8192
    assert c.memory.budget == Fraction(9, 10) * 80 * 2**30  # vLLM's 0.9 of the H100's 80 GiB
    t = serving_curve(models.get("llama-3-8b"), hardware.get("H100_SXM").with_runtime("tensorrt-llm"), (1024, 130))
    assert t.memory.kv_per_request == 1184 * 131_072


@pytest.mark.parametrize("engine, allocation", [("vllm", "on_demand"), ("tensorrt-llm", "reserved"),
                                                ("sglang", "reserved"), ("neutral", "reserved")])
def test_each_engine_allocates_its_kv_cache_by_its_own_rule(engine, allocation):
    assert engine_defaults(hardware.get("H100_SXM").with_runtime(engine), 1).kv_allocation == allocation


@pytest.mark.parametrize("block, held", [
    # I = 5, D = 7: at decode step j the request holds 5 + j = 6 .. 12 tokens
    (1, Fraction(6 + 12, 2)),                     # their mean, 9
    (4, Fraction(3 * 8 + 4 * 12, 7)),             # 6, 7, 8 in 2 blocks (8 tokens), 9 .. 12 in 3 (12): 72/7
    (16, Fraction(16)),                           # one block throughout
])
def test_an_on_demand_cache_holds_the_running_mean_by_hand(block, held):
    """On demand (vLLM) a running request holds the blocks of its tokens so far, their mean over its
    decode steps; room phi M - W - A = 1,470,784 bytes (test_kv_capacity_by_each_rule_and_block_by_hand)
    over 1,024 bytes a token x ``held``: 159 at blocks of 1, 139 at 4, 89 at 16 (as reserved: one
    block either way)."""
    c = serving_curve(TINY, _engine("total", block, "on_demand"), (5, 8))
    assert c.memory.kv_per_request == 1024 * held
    assert c.kv_limit == int(1_470_784 // (1024 * held)) == {1: 159, 4: 139, 16: 89}[block]
    assert Workload.of(5, 8).held_tokens(c.chip.runtime, block) == held


def test_an_on_demand_mix_weights_each_point_by_its_decode_steps():
    """Half the requests 5 + 8 (D = 7, 6 .. 12 tokens, 63 token-steps), half 3 + 3 (D = 2, 4 and 5
    tokens, 9 token-steps): a running request is one of the first 7 times in 9, so it holds
    (63 + 9)/(7 + 2) = 8 tokens on average."""
    assert Workload.mix([(5, 8, 1), (3, 3, 1)]).held_tokens(_engine("total").runtime, 1) == 8


def test_a_profile_with_a_bad_kv_allocation_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", "serving": {"kv_allocation": {"value": "lazy", "source": "x"}}}')
    with pytest.raises(HardwareError, match="bad.json: serving.kv_allocation must be one of reserved, on_demand"):
        load(bad)


# -- the engine's cap on running requests (max_num_seqs) ----------------------------------------


@pytest.mark.parametrize("engine, chip, gpus, seqs", [
    # vLLM (get_batch_defaults, V1): 1024 on GPUs of 70 GiB or more unless an A100, else 256
    ("vllm", "H100_SXM", 1, 1024), ("vllm", "B200", 8, 1024), ("vllm", "A100_SXM_80GB", 1, 256),
    # TensorRT-LLM: max_batch_size 2048 (BaseLlmArgs); SGLang: max_running_requests' floor, 2048
    ("tensorrt-llm", "H200_SXM", 4, 2048), ("sglang", "H100_SXM", 1, 2048),
    ("neutral", "H100_SXM", 1, None),
])
def test_each_engine_caps_its_running_requests(engine, chip, gpus, seqs):
    assert engine_defaults(hardware.get(chip).with_runtime(engine), gpus).max_num_seqs == seqs


def test_a_cap_below_the_kv_room_bounds_the_running_requests_by_hand():
    """The tiny model under the total rule holds 119 requests (above); a cap of 20 runs 20 (in the
    interleaved regime: 20 < c* = 40 x 8/12) and queues the rest: at 30, TPOT and throughput are
    those of 20 and Little's law gives TTFT = 30/X(20) - 7 TPOT(20)."""
    c = serving_curve(TINY, _engine("total"), (5, 8), max_num_seqs=20)
    assert c.kv_limit == 119 and c.running_limit == 20
    assert c.regimes[-1] == ("max-seqs", sp.oo) and c.regime(20) == "interleaved"
    at20, at30 = c.at(20), c.at(30)
    assert at30.regime == "max-seqs" and at30.running == 20
    assert at30.tpot == at20.tpot and at30.request_rate == at20.request_rate
    assert at30.ttft == 30 / at20.request_rate - 7 * at20.tpot
    # a cap above the KV room changes nothing
    loose, free = serving_curve(TINY, _engine("total"), (5, 8), max_num_seqs=500), serving_curve(TINY, _engine("total"),
                                                                                                  (5, 8))
    assert loose.running_limit == 119 and loose.ttft == free.ttft and loose.regimes == free.regimes


def test_the_profiles_cap_bounds_a_small_request_mix_on_a_real_chip():
    """Llama-3-8B on one H100 under vLLM, 128 + 128 tokens: a request holds 16 blocks of 16 (256
    tokens x 131,072 bytes = 33.6 MB), and 0.9 x 80 GiB less 16.06 GB of weights leaves room for
    about 1,820 of them; vLLM runs at most 1,024."""
    from symcost import models

    c = serving_curve(models.get("llama-3-8b"), hardware.get("H100_SXM").with_runtime("vllm"), (128, 128))
    assert c.kv_limit > 1024 and c.running_limit == 1024
    assert c.at(2000).running == 1024


def test_the_disaggregated_decode_pool_batches_at_most_the_cap():
    """A decode instance of TP 1 holding 98 requests (above) with a cap of 50: the batch grid's
    largest up to 50 is 48."""
    chip = _engine("static", 16)
    opts = _Options(TINY, chip, Workload.of(5, 8), 1, "bf16", sp.Integer(1), sp.Integer(1), None, None, 512,
                    max_num_seqs=50)
    assert int(_decode(opts, (1, 1, 1)).batches[-1]) == 48


@pytest.mark.parametrize("block", [0, -16, 16.0, sp.Float(16), True])
def test_held_tokens_refuses_a_block_that_is_not_a_positive_whole_number(block):
    with pytest.raises(ConfigError, match=r"^block must be a positive whole number \(tokens per KV block\), got "):
        Workload.of(30, 5).held_tokens(hardware.runtime("vllm"), block)


def test_serving_defaults_refuse_an_unknown_kv_allocation():
    with pytest.raises(ConfigError, match=r"^kv_allocation must be one of reserved, on_demand, got 'ondemand'$"):
        ServingDefaults(kv_allocation="ondemand")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^memory_rule must be one of total, free, static, got 'most'$"):
        ServingDefaults(memory_rule="most")  # type: ignore[arg-type]

