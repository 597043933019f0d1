"""ZeRO stages in the training step and the search (issue 8, item 8).

What the frameworks do (the rules these tests pin down):
- DeepSpeed ZeRO-1 keeps whole gradients and reduce-scatters them once per step, at the
  gradient-accumulation boundary (Megatron-LM's distributed optimizer does the same); ZeRO-2 and
  ZeRO-3 keep only a shard of the gradients, so every micro-batch's backward reduce-scatters its
  gradients (DeepSpeed ``deepspeed/runtime/zero/stage_1_and_2.py``,
  ``reduce_ready_partitions_and_remove_grads``: it reduces when ``self.partition_gradients or
  self.is_gradient_accumulation_boundary``, i.e. every backward for stage 2, at the boundary for
  stage 1).
- ZeRO-3 all-gathers the weights for each micro-batch's forward and again for its backward, and
  needs no gather after the optimizer step: 3 Psi of traffic per step with one micro-batch, 1.5x
  the all-reduce's 2 Psi (Rajbhandari et al. 2020, "ZeRO", section 7.2.2).
- DeepSpeed's pipeline engine refuses ZeRO-2/3 (``deepspeed/runtime/pipe/engine.py``: "ZeRO-2 and
  ZeRO-3 are incompatible with pipeline parallelism"); Megatron-LM offers only the distributed
  optimizer (ZeRO-1) with its pipeline schedules.
"""

from fractions import Fraction

import pytest

import symcost as sc

# Llama-3-70B (model card): h = 8192, 80 layers, a = 64, g = 8 (d = 128), f = 28672, V = 128256,
# untied embeddings. Parameters per chip at TP 8 (vocabulary-parallel embedding and LM head,
# norms replicated):
#   embedding + LM head  2 * 128256 * 8192 / 8                     =   262,668,288
#   per layer: attention (2*8192*8192 + 2*8192*1024) / 8           =    18,874,368
#              MLP       3 * 8192 * 28672 / 8                      =    88,080,384
#              2 norms   2 * 8192                                  =        16,384
#   80 layers * 106,971,136                                        = 8,557,690,880
#   final norm                                                     =         8,192
PARAMS_PER_CHIP = 262_668_288 + 8_557_690_880 + 8_192  # 8,820,367,360

# The chip the derivations use: the ideal H100 SXM (docs/conventions.md §17: alpha-beta
# collectives, ring only, no per-call base latency alpha_0), alpha 1 us per ring step inside a
# node and alpha_net 3 us per step between nodes (round numbers of our own), 50 GB/s per GPU
# scale-out (400 Gb/s ConnectX-7), 8 GPUs per NVLink domain, no network derating.
CHIP = sc.hardware.H100_SXM.ideal().model_copy(update={
    "collective_latency": Fraction(1, 10**6), "scale_out_latency": Fraction(3, 10**6),
    "scale_out_bandwidth": 50 * 10**9, "scale_up_domain": 8, "network_efficiency": 1})

TP8_DP4 = {"tensor_parallel": 8, "data_parallel": 4}


def _reduce_scatter_seconds(payload):
    """Ring reduce-scatter over 4 ranks: 3 steps, 3/4 of the payload sent. The DP group of a
    TP-8 job spans 8 * 4 = 32 GPUs, one rank in each of 4 NVLink domains: the scale-out link,
    and every step crosses between nodes (3 steps of alpha_net = 3 us)."""
    return Fraction(9, 10**6) + Fraction(3, 4) * payload / (50 * 10**9)


def _step(zero_stage, microbatches, parallelism=TP8_DP4):
    model = sc.models.get("llama-3-70b")
    return model.training_step(CHIP, 4096, 4 * microbatches, 1, parallelism=parallelism,
                               zero_stage=zero_stage)


def test_parameters_per_chip_as_derived():
    """The derivation above matches the step's weights (bf16: 2 bytes per parameter)."""
    assert _step(1, 1).weight_memory == 2 * PARAMS_PER_CHIP


def test_zero2_reduce_scatters_gradients_every_microbatch():
    """With m micro-batches ZeRO-2 sends m - 1 more gradient reduce-scatters than ZeRO-1
    (fp32 gradients: 4 bytes per parameter)."""
    rs = _reduce_scatter_seconds(4 * PARAMS_PER_CHIP)
    for m in (1, 2, 256):
        z1, z2 = _step(1, m), _step(2, m)
        assert z2.dp_comm_time - z1.dp_comm_time == (m - 1) * rs
        assert z2.step_time - z1.step_time == (m - 1) * rs
    assert _step(2, 256).step_time > _step(1, 256).step_time  # no longer free


def test_zero3_traffic_is_three_psi_per_microbatch():
    """ZeRO-3, one micro-batch: one gradient reduce-scatter and two bf16 weight all-gathers
    (forward and backward), no gather after the step; m micro-batches repeat all three."""
    def all_gather(payload):  # the same ring as the reduce-scatter
        return _reduce_scatter_seconds(payload)

    rs, ag = _reduce_scatter_seconds(4 * PARAMS_PER_CHIP), all_gather(2 * PARAMS_PER_CHIP)
    for m in (1, 8):
        assert _step(3, m).dp_comm_time == m * (rs + 2 * ag)
    # ZeRO-1: one reduce-scatter of the gradients, one all-gather of the updated weights
    assert _step(1, 8).dp_comm_time == rs + ag


@pytest.mark.parametrize("stage", [2, 3])
def test_zero2_and_3_with_pipeline_parallelism_are_refused(stage):
    """No framework runs ZeRO-2/3 with pipeline stages: a one-line error naming the rule."""
    with pytest.raises(ValueError, match="pipeline") as info:
        _step(stage, 256, {"tensor_parallel": 8, "pipeline_parallel": 2, "data_parallel": 4})
    message = str(info.value)
    assert "\n" not in message and "zero_stage" in message
    # ZeRO-1 with pipelines is what Megatron-LM runs: accepted
    _step(1, 256, {"tensor_parallel": 8, "pipeline_parallel": 2, "data_parallel": 4})


def test_search_never_recommends_zero2_or_3_with_pipelines():
    """Llama-3-70B on 64 H100s (the search recommended TP 4 / PP 2 / DP 8 / ZeRO-2)."""
    table = sc.search.parallelism(sc.models.get("llama-3-70b"), "H100_SXM", num_chips=64,
                                  global_batch=1024, seq_len=4096)
    rows = table.rows()
    assert rows
    assert all(r["zero_stage"] < 2 for r in rows if r["pp"] > 1)
    assert any(r["zero_stage"] >= 2 for r in rows)  # still offered without pipelines
