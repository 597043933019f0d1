"""The training step on Megatron-Core's expert grid: routed experts data-parallel over
TP x CP x DP / (ETP x EP) ranks (NVIDIA/Megatron-LM megatron/core/parallel_state.py,
``initialize_model_parallel``: ``expert_data_parallel_size = world_size // (ETP * EP * PP)``)."""

import pytest

from symcost.core.ops import Collective
from symcost.hardware import get as get_hardware
from symcost.hardware.timing import collective_time
from symcost.models.builders import mixtral

# A tiny Mixtral: h 256, 4 heads of 64 (4 KV heads), 2 layers, vocabulary 1024, 8 experts of width
# 512, top 2. Per chip under TP 2 (vocabulary-parallel embedding and head, heads split):
# embedding 1024*256/2 = 131,072; per block q, k, v, o 4*256*256/2 = 131,072, two RMSNorms 512,
# the router 256*8 = 2,048 (replicated); final norm 256; LM head 131,072. Dense parameters per
# chip: 131,072 + 2*133,632 + 256 + 131,072 = 529,664.
DENSE = 529_664
# Under Megatron SP the weights each TP rank holds whole and runs on its own T/t tokens, the two
# RMSNorms and the router per block and the final norm, have their fp32 gradients all-reduced over
# TP 2 once per step (finalize_model_grads, docs/conventions.md §16 item 5): 2*(512 + 2,048) + 256
# = 5,376 elements, 21,504 bytes, ranks adjacent (span 2).
TP_SUM = Collective("all_reduce", "tp", 2, (2 * (512 + 2_048) + 256) * 4, span=2)
MODEL = mixtral(hidden_size=256, num_heads=4, num_kv_heads=4, num_layers=2, vocab_size=1024, intermediate_size=512,
                num_experts=8, top_k=2)


def _step(**par):
    # the whole data-parallel sync exposed (dp_overlap=False): these tests count its collectives
    return MODEL.training_step("H100_SXM", seq_len=128, global_batch=8, micro_batch=1, dtype="bf16",
                               parallelism={"tensor_parallel": 2, "sequence_parallel": "tp", **par}, zero_stage=1,
                               dp_overlap=False)


def test_tp2_ep4_dp2_with_expert_tp_1_is_a_layout_without_expert_replicas():
    """TP 2 x DP 2 = 4 ranks = ETP 1 x EP 4 x EDP 1: each chip holds 8/4 = 2 whole experts per layer,
    2 * 3*256*512 = 786,432 parameters, 1,572,864 over two layers, and no other rank holds them:
    the distributed optimizer (ZeRO-1) keeps 12 bytes per parameter, dense ones sharded over the
    DP 2 ranks: 12 * (529,664/2 + 1,572,864) = 22,052,352 bytes. The gradient sync is the dense
    parameters' only: a reduce-scatter of their fp32 gradients and an all-gather of the bf16
    weights over DP 2 (ranks TP 2 apart: span 4)."""
    with pytest.raises(ValueError, match="data_parallel must be divisible by expert_parallel"):
        _step(expert_parallel=4, data_parallel=2)
    step = _step(expert_parallel=4, data_parallel=2, expert_tensor_parallel=1)
    assert step.optimizer_memory == 12 * (DENSE // 2 + 1_572_864)
    assert step.weight_memory == 2 * (DENSE + 1_572_864)
    chip = get_hardware("H100_SXM")
    sync = (collective_time(Collective("reduce_scatter", "dp", 2, DENSE * 4, span=4), chip)
            + collective_time(Collective("all_gather", "dp", 2, DENSE * 2, span=4), chip))
    assert step.dp_comm_time == sync + collective_time(TP_SUM, chip)


def test_expert_data_parallel_group_is_what_the_grid_leaves():
    """TP 2 x DP 2 = ETP 1 x EP 2 x EDP 2: 4 whole experts per layer per chip (3,145,728 parameters
    over two layers), their optimizer state sharded over the EDP 2 ranks, which are ETP x EP = 2
    ranks apart (span 4): 12 * (529,664/2 + 3,145,728/2) bytes; the sync adds the experts'
    reduce-scatter and all-gather over EDP 2."""
    step = _step(expert_parallel=2, data_parallel=2, expert_tensor_parallel=1)
    assert step.optimizer_memory == 12 * (DENSE // 2 + 3_145_728 // 2)
    chip = get_hardware("H100_SXM")
    sync = sum(collective_time(Collective(kind, "dp", 2, n * b, span=4), chip)
               for n in (DENSE, 3_145_728) for kind, b in (("reduce_scatter", 4), ("all_gather", 2)))
    assert step.dp_comm_time == sync + collective_time(TP_SUM, chip)
