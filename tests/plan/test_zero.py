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
  ZeRO-3 are incompatible with pipeline parallelism") and Megatron-LM offers only the distributed
  optimizer (ZeRO-1) with its pipeline schedules, but torchtitan and Meta's Llama 3 run FSDP with
  pipeline stages: costed (issue 22 item 5).
"""

from fractions import Fraction

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


def _step(zero_stage, microbatches, parallelism=TP8_DP4, dp_overlap=False, micro_batch=1):
    """The step without overlapping the data-parallel traffic (what these accounting tests pin
    down), unless ``dp_overlap``."""
    model = sc.models.get("llama-3-70b")
    return model.training_step(CHIP, 4096, 4 * microbatches * micro_batch, micro_batch, parallelism=parallelism,
                               zero_stage=zero_stage, dp_overlap=dp_overlap)


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
        # the optimizer step (its own pass over the shard, issue 22 item 6) aside
        assert (z2.step_time - z2.optimizer_time) - (z1.step_time - z1.optimizer_time) == (m - 1) * rs
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


# -- FSDP with pipeline stages (issue 22 item 5): torchtitan and Meta's Llama 3 run FSDP + TP + PP
#
# PP = 2 splits Llama-3-70B at TP 8 into stage 0 (the embedding, 131,334,144 parameters per chip,
# and 40 blocks, 4,278,845,440) and stage 1 (40 blocks, the final norm 8,192 and the LM head
# 131,334,144): stage 1 holds 8,192 more, so its sync is the slowest. The DP group of 4 is still
# one rank per node (ranks t = 8 apart): the same ring as above.
PP2 = {"tensor_parallel": 8, "pipeline_parallel": 2, "data_parallel": 4}
LAST_STAGE = 4_278_845_440 + 8_192 + 131_334_144  # 4,410,187,776


def test_fsdp_with_pipelines_reduce_scatters_every_microbatch_and_gathers_once():
    """ZeRO-2 with PP, Meta's Llama 3 FSDP ("we shard optimizer states and gradients, but for
    model shards we do not reshard after forward computation", The Llama 3 Herd of Models 2024,
    section 3.3.2): each micro-batch's backward reduce-scatters the stage's fp32 gradients, the
    weights are gathered once per step: m RS + 1 AG on the slowest (last) stage."""
    rs, ag = _reduce_scatter_seconds(4 * LAST_STAGE), _reduce_scatter_seconds(2 * LAST_STAGE)
    for m in (1, 8):
        assert _step(2, m, PP2).dp_comm_time == m * rs + ag
    assert _step(1, 8, PP2).dp_comm_time == rs + ag  # Megatron's distributed optimizer


def test_fsdp3_with_pipelines_gathers_twice_per_microbatch():
    """ZeRO-3 with PP (FSDP2 ``reshard_after_forward=True``, torchtitan's "always" policy): every
    micro-batch gathers the stage's bf16 weights for its forward and again for its backward and
    reduce-scatters its gradients: 2 m AG + m RS. Memory: the stage's weights, gradients and
    optimizer states all sharded 4 ways."""
    rs, ag = _reduce_scatter_seconds(4 * LAST_STAGE), _reduce_scatter_seconds(2 * LAST_STAGE)
    step = _step(3, 8, PP2)
    assert step.dp_comm_time == 8 * (rs + 2 * ag)
    stage0 = 131_334_144 + 4_278_845_440  # the fullest stage: stage 0 holds 2 micro-batches in flight
    assert step.weight_memory == 2 * stage0 / 4
    assert step.gradient_memory == 4 * stage0 / 4 and step.optimizer_memory == 12 * stage0 / 4


def test_search_offers_fsdp_with_pipelines():
    """Llama-3-70B on 64 H100s: layouts with pipeline stages and ZeRO-2/3 are costed (torchtitan
    runs FSDP with PP), beside the ZeRO-1 ones."""
    table = sc.search.parallelism(sc.models.get("llama-3-70b"), "H100_SXM", num_chips=64,
                                  global_batch=1024, seq_len=4096)
    rows = table.rows()
    assert any(r["zero_stage"] >= 2 and r["pp"] > 1 for r in rows)
    assert any(r["zero_stage"] >= 2 and r["pp"] == 1 for r in rows)


# -- overlapped with the backward and forward (Megatron-Core's overlap_grad_reduce and
#    overlap_param_gather, which Megatron-Bridge's recipes turn on) ------------------------------
#
# Megatron-Core (NVIDIA/Megatron-LM megatron/core/distributed/distributed_data_parallel.py and
# distributed_data_parallel_config.py): parameters are grouped into buckets of
# max(40,000,000, 1,000,000 * dp) parameters; with overlap_grad_reduce each bucket's
# reduce-scatter is launched as soon as its gradients are ready in the last micro-batch's
# backward, so all but the last bucket overlap the backward that remains; with
# overlap_param_gather the next step's all-gathers are waited for bucket by bucket in the first
# micro-batch's forward, so all but the first bucket's gather overlap it. symcost: each is
# max(one bucket's collective, the whole collective - the compute it hides behind), the backward
# two thirds and the forward one third of the micro-batch's time (conventions §4: the backward
# computes twice the forward's matmul FLOPs).
BUCKET = 40_000_000  # max(4e7, 1e6 * 4) parameters


def test_overlapped_sync_exposes_one_bucket_when_compute_hides_the_rest():
    """Micro-batch 8 of 4096 tokens (about 1.7 s on the ideal H100 at TP 8): the whole gradient
    reduce-scatter (35.3 GB over 4 nodes: 0.53 s) fits behind two thirds of it, the weights'
    gather (0.26 s) behind one third; exposed: one bucket each, the reduce-scatter of 4e7 fp32
    gradients (9 us + 3/4 * 160 MB / 50 GB/s = 2.409 ms) and the gather of 4e7 bf16 weights
    (1.209 ms)."""
    step = _step(1, 1, dp_overlap=True, micro_batch=8)
    rs_all, ag_all = _reduce_scatter_seconds(4 * PARAMS_PER_CHIP), _reduce_scatter_seconds(2 * PARAMS_PER_CHIP)
    assert rs_all < 2 * step.microbatch_time / 3 and ag_all < step.microbatch_time / 3
    assert step.dp_comm_time == _reduce_scatter_seconds(4 * BUCKET) + _reduce_scatter_seconds(2 * BUCKET)
    assert step.dp_comm_time == Fraction(9, 10**6) * 2 + Fraction(36, 10**4)


def test_overlapped_sync_exposes_what_the_compute_cannot_hide():
    """Micro-batch 1 (about 0.22 s): the reduce-scatter outlasts two thirds of it and the gather
    one third: exposed is the rest of each, rs - 2/3 T_mb and ag - 1/3 T_mb; the sum is what the
    step adds over its compute (and the optimizer step's own pass)."""
    step = _step(1, 1, dp_overlap=True)
    t_mb = step.microbatch_time
    rs_all, ag_all = _reduce_scatter_seconds(4 * PARAMS_PER_CHIP), _reduce_scatter_seconds(2 * PARAMS_PER_CHIP)
    assert rs_all - 2 * t_mb / 3 > _reduce_scatter_seconds(4 * BUCKET)
    assert step.dp_comm_time == (rs_all - 2 * t_mb / 3) + (ag_all - t_mb / 3)
    assert step.step_time == step.compute_time + step.dp_comm_time + step.optimizer_time


def test_overlapped_zero3_hides_each_microbatchs_gathers_and_reduce_scatter():
    """ZeRO-3 (FSDP) with m = 2 micro-batches of 8: per micro-batch the forward's gather hides
    behind the forward, the backward's gather and reduce-scatter behind the backward: one bucket
    each exposed, m times: 2 * (ag_b + ag_b + rs_b)."""
    step = _step(3, 2, dp_overlap=True, micro_batch=8)
    ag_b, rs_b = _reduce_scatter_seconds(2 * BUCKET), _reduce_scatter_seconds(4 * BUCKET)
    assert step.dp_comm_time == 2 * (ag_b + ag_b + rs_b)


def test_dp_overlap_is_on_by_default_as_megatron_bridge_runs_it():
    """The default step overlaps (Megatron-Bridge's recipes set overlap_grad_reduce and
    overlap_param_gather); dp_overlap=False exposes the whole sync."""
    model = sc.models.get("llama-3-70b")
    default = model.training_step(CHIP, 4096, 32, 8, parallelism=TP8_DP4, zero_stage=1)
    assert default.dp_comm_time == _step(1, 1, dp_overlap=True, micro_batch=8).dp_comm_time
    assert _step(1, 1, micro_batch=8).dp_comm_time == (_reduce_scatter_seconds(4 * PARAMS_PER_CHIP)
                                                       + _reduce_scatter_seconds(2 * PARAMS_PER_CHIP))


def test_bf16_gradients_halve_the_gradient_buffer_and_its_reduction():
    """grad_reduce_in_fp32=False (Megatron-Bridge's performance recipes): the gradients are kept
    and reduce-scattered in bf16, 2 bytes per parameter: gradient memory 2 P, the reduce-scatter
    of 2 P bytes (the all-gather of the bf16 weights unchanged)."""
    model = sc.models.get("llama-3-70b")
    step = model.training_step(CHIP, 4096, 4, 1, parallelism=TP8_DP4, zero_stage=1, dp_overlap=False,
                               grad_reduce_in_fp32=False)
    assert step.gradient_memory == 2 * PARAMS_PER_CHIP
    assert step.dp_comm_time == 2 * _reduce_scatter_seconds(2 * PARAMS_PER_CHIP)


# -- Megatron-Core buckets only the first pipeline stage -----------------------------------------
#
# NVIDIA/Megatron-LM megatron/core/distributed/distributed_data_parallel.py (commit 0011998):
# "Turn off bucketing if we are on a pipeline stage that is not the first (since data-parallel
# communication on these stages is not on the critical path)": ``if disable_bucketing or pp_rank >
# 0: self.bucket_size = None``, one bucket per stage, its reduce-scatter launched when the last
# micro-batch's backward is done there. Stage k finishes that backward k backwards (one micro-
# batch's, 2/3 of its time) before stage 0 does, and the step waits for the last (the optimizer's
# grad-norm all-reduce spans the pipeline): stage k exposes max(0, rs_k - k * 2/3 T_mb). Its
# weights' gather (align_param_gather: every stage dispatches it at the step's start) is needed
# k forwards (1/3 T_mb each) later: max(0, ag_k - k * 1/3 T_mb). Stage 0 keeps its buckets:
# max(bucket, rs_0 - 2/3 T_mb) and max(bucket, ag_0 - 1/3 T_mb). The bucket is
# max(4e7, 1e6 * dp) parameters, dp the dense data-parallel size, for the expert buffers too.
def _stages(params, latency):
    """Synthetic pipeline stages: ``params[k]`` bf16 parameters (2 bytes each), ``latency`` s per
    micro-batch, no activations."""
    return [{"latency": latency, "weight": 2 * n, "activation": 0, "index": k} for k, n in enumerate(params)]


def _dp_time(params, latency, p, **degrees):
    from symcost.core.dtypes import DataType
    from symcost.plan.training import TrainingOptions, TrainingRun, assemble_training

    par = sc.Parallelism(tensor_parallel=8, pipeline_parallel=p, data_parallel=4, **degrees)
    run = TrainingRun(sc.models.get("llama-3-70b"), CHIP, DataType.BF16, par, TrainingOptions(zero_stage=1))
    return assemble_training(_stages(params, latency), run, s=4096, B=16, b=1)["dp_comm_time"]


def test_only_the_first_pipeline_stage_is_bucketed():
    """Four stages of 1e9 parameters, the last of 2e9, 30 ms per micro-batch, TP 8 x DP 4 on the
    ideal H100 (ring over 4 nodes: 9 us + 3/4 of the payload at 50 GB/s):
      stage 0: rs = 9 us + 3/4 * 4e9 B / 50 GB/s = 60.009 ms, exposed 60.009 - 20 = 40.009 ms;
               ag = 9 us + 3/4 * 2e9 B / 50 GB/s = 30.009 ms, exposed 30.009 - 10 = 20.009 ms: 60.018 ms
      stage 3: rs = 120.009 ms, exposed 120.009 - 3 * 20 = 60.009 ms; ag = 60.009 ms, exposed
               60.009 - 3 * 10 = 30.009 ms: 90.018 ms (with buckets as on stage 0: 150.018 ms)
    The step waits for the slowest: 90.018 ms."""
    ms = Fraction(1, 1000)
    assert _dp_time([10**9, 10**9, 10**9, 2 * 10**9], 30 * ms, 4) == Fraction(90018, 10**6)


def test_later_stages_hide_their_whole_sync_in_the_drain():
    """Two stages of 1e9 parameters at 200 ms per micro-batch: stage 1's whole rs (60.009 ms)
    and ag (30.009 ms) fit in one backward (133 ms) and one forward (66.7 ms): 0 exposed; stage 0
    exposes one bucket of each, 4e7 parameters: rs 9 us + 3/4 * 160 MB / 50 GB/s = 2.409 ms,
    ag 1.209 ms: 3.618 ms."""
    ms = Fraction(1, 1000)
    assert _dp_time([10**9, 10**9], 200 * ms, 2) == Fraction(3618, 10**6)


def test_the_bucket_follows_the_dense_data_parallel_size():
    """TP 8 x CP 16 x DP 4: the gradients reduce over d * c = 64 ranks (one per node: 63 ring
    steps of 3 us, 63/64 of the payload at 50 GB/s), but Megatron sizes the bucket by
    get_data_parallel_world_size(), without CP: max(4e7, 1e6 * 4) = 4e7 parameters, not 6.4e7.
    One stage of 1e9 parameters that its 10 s micro-batch hides: exposed one bucket of each,
      rs: 189 us + 63/64 * 160 MB / 50 GB/s = 3.339 ms; ag: 189 us + 63/64 * 80 MB / 50 GB/s = 1.764 ms."""
    assert _dp_time([10**9], 10, 1, context_parallel=16) == Fraction(5103, 10**6)
