"""The TP all-reduce of the gradients of weights every TP rank holds whole (issue 22).

Under Megatron sequence parallelism each TP rank runs the norms (and MLA's down-projections, a
MoE router) on its own T/t tokens, so its gradients of those replicated weights are partial
sums. Megatron-Core adds them over the TP group once per step, after the backward and the
data-parallel reduction, before the optimizer: ``finalize_model_grads`` ->
``_allreduce_layernorm_grads`` (NVIDIA/Megatron-LM megatron/core/distributed/finalize_model_grads.py),
one synchronous all-reduce of the coalesced ``main_grad`` tensors of every parameter marked
``sequence_parallel`` (and of the Q/K norms under ``qk_layernorm``, with or without SP).
"""

from fractions import Fraction

import pytest
import sympy as sp
from search_rows import row_step

from symcost import hardware, models
from symcost.layers.mla import MLALayer
from symcost.models.model import Model

H100 = hardware.H100_SXM.ideal()  # the collective's time derived by hand on the roofline chip
# NVIDIA/nccl v2.30.7 src/graph/tuning.cc, hwLatencies, LL: 0.6 us per ring hop on NVLink
ALPHA, NVLINK = Fraction(6, 10**7), 450 * 10**9
SP = {"sequence_parallel": "tp"}


def ring_all_reduce(n, payload):
    """docs/conventions.md §11 and §13: 2(n - 1) ring steps of α, 2(n - 1)/n * M bytes over NVLink."""
    return 2 * (n - 1) * ALPHA + Fraction(2 * (n - 1), n) * payload / NVLINK


def small_llama(layers=8):
    return Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=layers,
                       vocab_size=32000, intermediate_size=4096)


def test_deepseek_v3_mla_under_sp():
    """DeepSeek-V3's MLA (h 7168, r_q 1536, r_kv 512, d_R 64; config.json): q_a_proj 7168 * 1536,
    kv_a_proj_with_mqa 7168 * (512 + 64), the latent norms 1536 + 512:
    7168 * 2112 + 2048 = 15,140,864 elements (docs/conventions.md §16 item 5). Without SP every
    rank runs them on all tokens: nothing to sum."""
    kw = dict(hidden_size=7168, num_heads=128, q_lora_rank=1536, kv_lora_rank=512,
              qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
    assert MLALayer(**kw, parallelism={"tensor_parallel": 8, **SP}).tp_summed_params == 15_140_864
    assert MLALayer(**kw, parallelism={"tensor_parallel": 8}).tp_summed_params == 0


def test_deepseek_v3_block_under_sp():
    """A DeepSeek-V3 MoE block under TP 8 + SP: two RMSNorms 2 * 7168, the MLA's 15,140,864, the
    router 256 experts * 7168 = 1,835,008: 14,336 + 15,140,864 + 1,835,008 = 16,990,208 elements.
    Not the 256-entry score bias: ``e_score_correction_bias`` (HF modeling_deepseek_v3.py,
    ``register_buffer``; Megatron-Core transformer/moe/router.py ``expert_bias``, a buffer) has
    no gradient to sum."""
    ds = models.get("deepseek-v3").with_parallelism({"tensor_parallel": 8, "expert_parallel": 8, **SP})
    block = ds.blocks[-1][0]
    assert block.tp_summed_params == 2 * 7168 + 15_140_864 + 256 * 7168 == 16_990_208


def test_gpt_oss_trained_router_bias_is_summed():
    """gpt-oss-20b's router (h 2880, 32 experts; config.json) has a trained bias (``nn.Linear``
    with ``bias=True``; Megatron-Core ``add_bias_linear`` marks it ``sequence_parallel``): under
    SP the router 2880 * 32 + 32 = 92,192 elements."""
    from symcost.layers.moe import MoELayer

    moe = MoELayer(hidden_size=2880, expert_intermediate_size=2880, num_experts=32, top_k=4,
                   router_bias=True, expert_bias=True, parallelism={"tensor_parallel": 2, **SP})
    assert moe.tp_summed_params == 2880 * 32 + 32 == 92_192


def test_qk_norm_is_summed_with_or_without_sp():
    """Qwen3's Q and K RMSNorms (head_dim 128 each) are shared by the heads each TP rank holds a
    part of: 256 elements per layer summed whatever SP does (``qk_layernorm``); the block's two
    norms join only under SP (2 * 4096 for Qwen3-8B)."""
    q = models.get("qwen3-8b")
    no_sp = q.with_parallelism({"tensor_parallel": 4}).blocks[0][0]
    sp_ = q.with_parallelism({"tensor_parallel": 4, **SP}).blocks[0][0]
    assert no_sp.tp_summed_params == 2 * 128
    assert sp_.tp_summed_params == 2 * 128 + 2 * 4096


@pytest.mark.parametrize("fp32", [True, False])
def test_step_all_reduces_the_norm_gradients(fp32):
    """small_llama (8 layers, h 1024, RMSNorm) at TP 4 + SP, DP 1, one stage: 8 * 2 * 1024 + the
    final norm 1024 = 17,408 elements, all-reduced once per step over the 4 TP ranks at the
    gradients' 4 bytes (fp32 main gradients) or 2 (``grad_reduce_in_fp32=False``), exposed:
    the step's whole dp_comm (nothing else to sync at DP 1) and the step grows by it."""
    model = small_llama()
    e = 4 if fp32 else 2
    kw = dict(seq_len=512, global_batch=4, micro_batch=1, grad_reduce_in_fp32=fp32)
    st = model.training_step(H100, parallelism={"tensor_parallel": 4, **SP}, **kw)
    assert st.dp_comm_time == ring_all_reduce(4, 17_408 * e)
    assert st.step_time == st.compute_time + st.dp_comm_time + st.optimizer_time
    # without SP the norms run on all tokens on every rank: the same gradients, no sync
    assert model.training_step(H100, parallelism={"tensor_parallel": 4}, **kw).dp_comm_time == 0


def test_each_stage_sums_its_own():
    """PP 2 (4 + 4 layers): stage 0 sums 4 * 2048 = 8,192 elements, stage 1 also the final norm,
    9,216; the stages sync at once, so the slower one (stage 1) is the step's."""
    model = small_llama()
    st = model.training_step(H100, 512, 8, 1, parallelism={"tensor_parallel": 4, "pipeline_parallel": 2, **SP})
    assert st.dp_comm_time == ring_all_reduce(4, 9_216 * 4)


def test_compiled_exact_and_search_agree():
    """The compiled step (exact and float) and the search's vectorized assembly count it as the
    uncompiled step does."""
    from symcost.plan import compiled, search

    model = small_llama()
    par = {"tensor_parallel": 4, "pipeline_parallel": 2, **SP}
    old, compiled.USE_COMPILED = compiled.USE_COMPILED, False
    try:
        want = model.training_step(H100, 512, 8, 1, parallelism=par)
    finally:
        compiled.USE_COMPILED = old
    got = model.training_step(H100, 512, 8, 1, parallelism=par)
    assert (got.step_time, got.dp_comm_time) == (want.step_time, want.dp_comm_time)
    assert sp.sympify(want.dp_comm_time) > 0
    table = search.parallelism(model, H100, num_chips=8, global_batch=8, seq_len=512)
    rows = [i for i in range(len(table)) if table.row(i)["megatron_sp"] and table.row(i)["tp"] > 1][:6]
    assert rows
    for i in rows:
        row = table.row(i)
        st = row_step(model, H100, table, i, 512, 8)
        assert row["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)


def test_search_counts_the_qk_norms_without_sp():
    """Qwen3-8B's Q/K norms are summed over TP whatever SP does, and not at TP 1: the search's
    vectorized step agrees with training_step at TP 1, at TP > 1 without SP and with it."""
    from symcost.plan import search

    model = models.get("qwen3-8b")
    table = search.parallelism(model, H100, num_chips=8, global_batch=16, seq_len=1024)
    seen = {}
    for i in range(len(table)):
        row = table.row(i)
        seen.setdefault((row["tp"] > 1, bool(row["megatron_sp"])), i)
    assert set(seen) == {(False, False), (True, False), (True, True)}
    for i in seen.values():
        row = table.row(i)
        st = row_step(model, H100, table, i, 1024, 16)
        assert row["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)
