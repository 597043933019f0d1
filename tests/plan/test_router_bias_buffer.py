"""DeepSeek-V3's router score-correction bias is a buffer, not a trained parameter (issue 22):
Hugging Face ``modeling_deepseek_v3.py`` registers ``e_score_correction_bias`` with
``register_buffer``; Megatron-Core's ``TopKRouter`` (``megatron/core/transformer/moe/router.py``)
registers ``expert_bias`` and ``local_tokens_per_expert`` (fp32) as buffers and moves the bias
without a gradient, once per step: ``finalize_model_grads`` -> ``_update_router_expert_bias``
stacks every MoE layer's ``local_tokens_per_expert`` of the rank's model chunks and
``moe_utils.get_updated_expert_bias`` all-reduces them over
``get_tensor_and_data_parallel_group(with_context_parallel=True)`` (TP x CP x DP ranks) under
``torch.no_grad()``. So the checkpoint (and the weights) hold it, the gradients, the optimizer and
the data-parallel gradient sync do not, and each step adds one small all-reduce.

The model: a tiny DeepSeek-V3 (symcost.models.builders.deepseek_v3) with E = 8 routed experts and
3 blocks, the first dense: 2 MoE layers, so 2 x 8 = 16 buffer elements. The same model with
``router_bias=False`` has exactly those 16 parameters fewer (N_B = N_A - 16), so both train the
same parameters and their data-parallel syncs are identical.
"""

from __future__ import annotations

import pytest

from symcost import models
from symcost.hardware import Hardware
from symcost.models.builders import deepseek_v3, mixtral

BIG = 10**24
# a chip whose only finite rates are the matmul peak and the scale-up link (10^9 B/s), no latency
TOY = Hardware(name="toy", peak_flops={"bf16": 10**12}, vector_flops=BIG, hbm_capacity=10**12, hbm_bandwidth=BIG,
               scale_up_bandwidth=10**9, scale_up_domain=8, scale_out_bandwidth=10**9, collective_latency=0)
SHAPE = dict(hidden_size=64, num_heads=4, num_layers=3, vocab_size=128, intermediate_size=128,
             moe_intermediate_size=32, num_experts=8, top_k=2, num_shared_experts=1, first_dense_layers=1,
             q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
BUFFER = 2 * 8  # 2 MoE layers x E = 8 score-correction biases


def _step(model, **kw):
    return model.training_step(TOY, seq_len=32, global_batch=kw.pop("global_batch", 4), micro_batch=1, **kw)


def test_weights_keep_the_buffer_gradients_and_optimizer_do_not():
    biased, plain = deepseek_v3(**SHAPE), deepseek_v3(**SHAPE, router_bias=False)
    n = int(biased.parameter_count)
    assert n - int(plain.parameter_count) == BUFFER  # the checkpoint holds it
    step = _step(biased)
    # one chip, ZeRO 1 over d = 1: bf16 weights 2 (N - 16) bytes; the 16 biases stay fp32 (Megatron-Core
    # TopKRouter._maintain_float32_expert_bias) beside as many fp32 token counts (local_tokens_per_expert,
    # E per MoE layer): 16 x (4 + 4) = 128 B; fp32 gradients 4 (N - 16), fp32 master weights and two
    # Adam moments 12 (N - 16)
    assert step.weight_memory == 2 * (n - BUFFER) + 8 * BUFFER == 2 * n + 96
    assert step.gradient_memory == 4 * (n - BUFFER)
    assert step.optimizer_memory == 12 * (n - BUFFER)


def test_tokens_per_expert_all_reduce_per_step():
    biased, plain = deepseek_v3(**SHAPE), deepseek_v3(**SHAPE, router_bias=False)
    par = {"data_parallel": 2}
    a = _step(biased, parallelism=par, dp_overlap=False)
    b = _step(plain, parallelism=par, dp_overlap=False)
    # the same trained parameters: the same gradient sync; the biased model adds one all-reduce of
    # its 16 fp32 counts (64 B) over the 2 DP ranks of its one stage. A ring all-reduce sends
    # 2 (n - 1) / n of the payload from each rank: 64 B at 10^9 B/s = 64 ns
    assert float(a.dp_comm_time - b.dp_comm_time) == pytest.approx(64e-9, rel=1e-9)
    assert float(a.step_time - b.step_time) == pytest.approx(64e-9, rel=1e-9)


def test_one_chip_no_all_reduce():
    biased, plain = deepseek_v3(**SHAPE), deepseek_v3(**SHAPE, router_bias=False)
    assert _step(biased).dp_comm_time == _step(plain).dp_comm_time == 0


def test_deepseek_v3_gradients_exclude_its_14848_biases():
    # DeepSeek-V3 (config.json: num_hidden_layers 61, first_k_dense_replace 3, n_routed_experts 256):
    # 58 MoE layers x 256 = 14,848 buffer elements. On one chip (ZeRO 1 over d = 1) the fp32
    # gradients are 4 bytes per trained parameter: 4 (N - 14,848), N the parameter count the
    # model tests check against transformers' (tests/models)
    ds = models.get("deepseek-v3")
    assert sum(int(blk.buffer_params) * int(n) for blk, n in ds.blocks) == 58 * 256 == 14_848
    step = ds.training_step("H100_SXM", seq_len=4096, global_batch=1)
    assert step.gradient_memory == 4 * (int(ds.parameter_count) - 14_848)


def test_search_rows_leave_the_buffer_out_as_the_step_does():
    """The vectorized search ranks with the same gradients, optimizer states and sync as the step
    (tests/plan/search_rows.py: row_step), on a layout with TP, DP and pipeline stages."""
    from search_rows import row_step

    from symcost import search

    # NB: a GQA block with DeepSeek-V3's router (the search does not take MLA models: their
    # Ulysses variant is refused, issue 22 report)
    base = mixtral(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=4, vocab_size=128,
                   intermediate_size=32, num_experts=8, top_k=2)
    block, count = base.blocks[0]
    mlp = block.mlp.model_copy(update={"router_bias": True, "router_bias_buffer": True})
    model = base.model_copy(update={"blocks": ((block.model_copy(update={"mlp": mlp}), count),)})
    assert sum(int(blk.buffer_params) * int(n) for blk, n in model.blocks) == 4 * 8
    table = search.parallelism(model, TOY, num_chips=8, global_batch=16, seq_len=32, recompute=("none",),
                               zero_stages=(1, 3), dp_overlap=False)
    assert len(table) > 0
    rows = [i for i in range(len(table)) if table.row(i)["dp"] > 1][:3] + [len(table) - 1]
    for i in rows:
        step = row_step(model, TOY, table, i, 32, 16, dp_overlap=False)
        assert table.row(i)["memory_per_chip"] == pytest.approx(float(step.memory_per_chip), rel=1e-12)
        assert table.row(i)["step_time"] == pytest.approx(float(step.step_time), rel=1e-12)
