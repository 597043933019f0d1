"""TensorRT-LLM 1.0's all-reduce switch by token count (AUTO strategy: on more than 2 GPUs its
one-shot up to 128 tokens and NCCL above; on 2 GPUs one-shot up to 128 tokens, two-shot above; NCCL
beyond the 8 MB / 16 MB workspace), each expected value derived by hand from the cited rule
(cpp/tensorrt_llm/thop/allreduceOp.cpp, AllreduceOp::selectImplementation and runFusionAllReduce,
TensorRT-LLM 1.0) and the formulas of symcost.hardware.timing."""

from fractions import Fraction

import sympy as sp

from symcost import hardware
from symcost.core.ops import Collective
from symcost.hardware import Hardware, Runtime
from symcost.hardware.timing import collective_time, trtllm_allreduce_window

US = Fraction(1, 10**6)
ROW = 4096 * 2  # one token of a 4096-wide bf16 activation

# 100 GB/s scale-up; NCCL's ring: base 10 us, 1 us per hop (no LL, no NVLS); the engine's one-shot
# 3 us at 1/2 of the link, its two-shot unset (2 * 3 = 6 us), no per-peer time. The profile's rule
# is "custom" (the fastest form), TensorRT-LLM 1.0's token switch on this chip by name only.
CHIP = Hardware(
    name="round-trt", peak_flops={"bf16": 10**14}, vector_flops=10**13, hbm_capacity=10**11,
    hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8, scale_out_bandwidth=10**10,
    collective_latency=US, collective_base_latency=10 * US, custom_allreduce_latency=3 * US,
    custom_allreduce_efficiency=Fraction(1, 2),
    runtime=Runtime(name="round-trt", allreduce="custom", allreduce_chips={"round-trt": "trtllm-1.0"}))


def _time(n: int, tokens, chip: Hardware = CHIP) -> sp.Expr:
    return collective_time(Collective("all_reduce", "tp", n, tokens * ROW, tokens=tokens), chip)


def test_window_at_the_token_switch_and_the_workspace():
    """128 tokens is the last one-shot (``seq_len > 128`` -> NCCL on more than 2 GPUs; MIN_LATENCY's
    ``seq_len <= kOneShotMaxToken``); the workspace ``> 8 * 1000 * 1000`` bytes (16 MB on 2 GPUs)."""
    assert trtllm_allreduce_window(8, 128, 128 * ROW) == "custom"
    assert trtllm_allreduce_window(8, 129, 129 * ROW) == "nccl"
    assert trtllm_allreduce_window(4, 129, 129 * ROW) == "nccl"
    assert trtllm_allreduce_window(2, 128, 128 * ROW) == "custom"
    assert trtllm_allreduce_window(2, 129, 129 * ROW) == "custom_two_shot"
    assert trtllm_allreduce_window(2, 1953, 1953 * ROW) == "custom_two_shot"   # 15,998,976 B <= 16 MB
    assert trtllm_allreduce_window(2, 1954, 1954 * ROW) == "nccl"              # 16,007,168 B
    assert trtllm_allreduce_window(8, 100, 8 * 10**6 + 1) == "nccl"            # beyond 8 MB, few tokens
    assert trtllm_allreduce_window(1, 1, ROW) == "nccl"                        # a group of one: nothing sent


def test_eight_gpus_one_shot_up_to_128_tokens_then_nccl():
    """8 GPUs, M = 128 * 8192 = 1,048,576 B: one-shot 3 us + 7 M / (100 GB/s / 2) = 3 + 146.80064 us
    (NCCL's ring, 10 + 14 * 1 + 2 (7/8) M / 100 GB/s = 42.35008 us, is faster: the fastest-form rule
    takes it, TensorRT-LLM 1.0 does not). 129 tokens, M = 1,056,768 B: NCCL's ring,
    24 + 1.75 * 1,056,768 / 10^5 us = 24 + 18.49344 us."""
    assert _time(8, 128) == Fraction(14980064, 10**5) * US
    assert _time(8, 129) == Fraction(4249344, 10**5) * US
    fastest = collective_time(Collective("all_reduce", "tp", 8, 128 * ROW), CHIP)  # no tokens: the fastest form
    assert fastest == Fraction(4235008, 10**5) * US


def test_two_gpus_one_shot_then_two_shot_then_nccl_beyond_the_workspace():
    """2 GPUs: 128 tokens (M = 1,048,576 B) one-shot 3 + M / (5 * 10^10) = 3 + 20.97152 us (the ring
    would take 10 + 2 + M / 10^11 = 22.48576 us); 129 tokens (M = 1,056,768 B) two-shot
    6 + 2 (1/2) M / (5 * 10^10) = 6 + 21.13536 us; 1954 tokens (16,007,168 B > 16 MB) NCCL's ring,
    12 + 160.07168 us."""
    assert _time(2, 128) == Fraction(2397152, 10**5) * US
    assert _time(2, 129) == Fraction(2713536, 10**5) * US
    assert _time(2, 1954) == Fraction(17207168, 10**5) * US


def test_symbolic_tokens_give_a_piecewise_that_binds_to_either_side():
    """Tokens a symbol: a Piecewise whose values at 128 and 129 are the numeric times above."""
    T = sp.Symbol("T", positive=True, integer=True)
    t = _time(8, T)
    assert t.has(sp.Piecewise)
    assert t.xreplace({T: sp.Integer(128)}) == Fraction(14980064, 10**5) * US
    assert t.xreplace({T: sp.Integer(129)}) == Fraction(4249344, 10**5) * US
    # the group size a symbol too: 2 GPUs' two-shot at 129 tokens; a group of one costs nothing
    n = sp.Symbol("n", positive=True, integer=True)
    both = collective_time(Collective("all_reduce", "tp", n, T * ROW, tokens=T), CHIP)
    assert both.xreplace({n: sp.Integer(2), T: sp.Integer(129)}) == Fraction(2713536, 10**5) * US
    assert both.xreplace({n: sp.Integer(1), T: sp.Integer(1)}) == 0


def test_a100_under_tensorrt_llm_takes_the_1_0_rule_and_other_chips_the_fastest_form():
    """The tensorrt-llm profile's A100 values come from TensorRT-LLM 1.0's table: its rule there;
    on H100 (1.3 tables) the fastest form stands for the lookup table."""
    a100 = hardware.get("A100_SXM_80GB").with_runtime("tensorrt-llm")
    h100 = hardware.get("H100_SXM").with_runtime("tensorrt-llm")
    assert a100.allreduce_rule == "trtllm-1.0" and h100.allreduce_rule == "custom"
    assert a100.structure["allreduce"] == "trtllm-1.0"
