"""Parallelism in the whole-model steps: the model's own degrees, impossible pipelines, one
expert-parallel rule, and uneven pipeline stages (issue 8, items 1, 5 and 7)."""

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from search_rows import row_step

import symcost as sc
from symcost import hardware, models, search
from symcost import step as steps
from symcost import symbols as S
from symcost.models.model import Model

H100 = hardware.H100_SXM

# Llama-3-70B (h 8192, 64 heads, 8 KV heads, head dim 128, FFN 28672, vocab 128256, 80 layers):
# a block holds q 8192^2 + k, v 2*8192*1024 + o 8192^2 + MLP 3*8192*28672 + 2 RMSNorms 2*8192
# = 855,654,400 parameters; embedding and LM head 128256*8192 = 1,050,673,152 each.
L70_BLOCK, L70_NORMS, L70_EMBED = 855_654_400, 2 * 8192, 1_050_673_152
# Per chip under TP 8: every projection / 8, norms replicated (docs/conventions.md §6):
# block (855,654,400 - 16,384)/8 + 16,384 = 106,971,136; embedding and head 131,334,144 each;
# final norm 8192. Weights 2 bytes each:
# (80 * 106,971,136 + 2 * 131,334,144 + 8192) * 2 = 17,640,734,720 bytes.
L70_TP8_WEIGHTS = (80 * ((L70_BLOCK - L70_NORMS) // 8 + L70_NORMS) + 2 * (L70_EMBED // 8) + 8192) * 2
assert L70_TP8_WEIGHTS == 17_640_734_720

# Llama-3.1-405B (h 16384, 128 heads, 8 KV heads, FFN 53248, vocab 128256, 126 layers): a block
# holds 2*16384^2 + 2*16384*1024 + 3*16384*53248 + 2*16384 = 3,187,703,808 parameters; under
# TP 8 a chip keeps (3,187,703,808 - 32,768)/8 + 32,768 = 398,491,648 of them.
L405_BLOCK_TP8 = (3_187_703_808 - 2 * 16384) // 8 + 2 * 16384
assert L405_BLOCK_TP8 == 398_491_648


def llama70_tp8():
    return models.get("llama-3-70b").with_parallelism({"tensor_parallel": 8})


# -- item 1: the model's own parallelism is the default ----------------------------------------

def test_inference_step_uses_the_models_own_parallelism():
    """A model built with TP 8 is served with TP 8: 17.64 GB of weights per chip, not 141 GB."""
    step = llama70_tp8().inference_step("H100_SXM", 1, 8192)
    assert step.weight_memory == L70_TP8_WEIGHTS


def test_training_step_uses_the_models_own_parallelism():
    """Training the TP 8 model uses 8 chips and keeps 1/8 of the weights on each (p = 1, so the
    bf16 weights are the whole model's per-chip share)."""
    step = llama70_tp8().training_step("H100_SXM", seq_len=4096, global_batch=8, recompute="full")
    assert step.num_chips == 8
    assert step.weight_memory == L70_TP8_WEIGHTS


def test_max_context_and_batch_use_the_models_own_parallelism():
    """max_context and max_batch_size of the TP 8 model equal those asked with TP 8 explicitly
    (the 17.6 GB of weights leave room: at TP 1 the 141 GB of weights fit nothing)."""
    plain, tp8 = models.get("llama-3-70b"), llama70_tp8()
    par = {"tensor_parallel": 8}
    own = tp8.max_context("H100_SXM")
    assert own.status == "found"
    assert own.value == plain.max_context("H100_SXM", parallelism=par).value
    assert plain.max_context("H100_SXM").value is None
    batch = tp8.max_batch_size("H100_SXM", seq_len=8192)
    assert batch.value == plain.max_batch_size("H100_SXM", seq_len=8192, parallelism=par).value > 0


def test_explicit_parallelism_adds_to_the_models_own():
    """An explicit degree the model does not set is added; one it sets equally is accepted."""
    tp8 = llama70_tp8()
    both = tp8.inference_step("H100_SXM", 1, 8192, parallelism={"pipeline_parallel": 2})
    same = models.get("llama-3-70b").inference_step(
        "H100_SXM", 1, 8192, parallelism={"tensor_parallel": 8, "pipeline_parallel": 2})
    assert both.weight_memory == same.weight_memory
    again = tp8.inference_step("H100_SXM", 1, 8192, parallelism={"tensor_parallel": 8})
    assert again.weight_memory == L70_TP8_WEIGHTS


@pytest.mark.parametrize("method", ["inference_step", "training_step", "max_context", "max_batch_size"])
def test_conflicting_parallelism_is_a_one_line_error(method):
    """An explicit degree that contradicts the model's own is refused, naming the field."""
    tp8 = llama70_tp8()
    kwargs = {"inference_step": {"batch_size": 1, "seq_len": 8192},
              "training_step": {"seq_len": 4096, "global_batch": 8},
              "max_context": {}, "max_batch_size": {"seq_len": 8192}}[method]
    with pytest.raises(ValueError, match="tensor_parallel") as info:
        getattr(tp8, method)("H100_SXM", parallelism={"tensor_parallel": 4}, **kwargs)
    assert "\n" not in str(info.value)


# -- item 5: impossible pipelines and one expert-parallel rule ----------------------------------

def test_more_stages_than_layers_is_an_error():
    """80 layers cannot fill 160 stages: a one-line error naming pipeline_parallel."""
    model = models.get("llama-3-70b")
    for call in (lambda: model.inference_step("H100_SXM", 1, 8192, parallelism={"pipeline_parallel": 160}),
                 lambda: model.training_step("H100_SXM", 4096, 160, parallelism={"pipeline_parallel": 160})):
        with pytest.raises(ValueError, match="pipeline_parallel") as info:
            call()
        assert "\n" not in str(info.value)


def test_three_stages_over_80_layers_hold_whole_layers():
    """PP 3 over 80 layers: stages of 27, 27 and 26 blocks (vLLM's split: the two extra layers go
    to the stages before the last). Memory is whole bytes: the fullest stage is the first, 27
    blocks + the embedding on the first (the second has 27 blocks alone, the last 26 blocks + the
    final norm and head), at 2 bytes each."""
    step = models.get("llama-3-70b").inference_step("H100_SXM", 1, 8192, parallelism={"pipeline_parallel": 3})
    assert step.stage_layers == (27, 27, 26)
    first = 27 * L70_BLOCK + L70_EMBED            # 24,153,341,952 parameters
    last = 26 * L70_BLOCK + 8192 + L70_EMBED      # 23,297,695,744
    assert first > last
    assert step.weight_memory == 2 * first == 48_306_683_904
    assert isinstance(step.memory_per_chip, int)


def test_expert_parallel_rule_is_the_same_for_inference_and_training():
    """Experts are sharded over data-parallel ranks, each expert also split TP ways (Megatron-Core:
    expert_tensor_parallel defaults to tensor_parallel and world % (ETP * EP * PP) == 0): EP 8 with
    DP 1 is refused by both steps with the same message; EP 8 within DP 8 is accepted by both."""
    model = models.get("mixtral-8x7b")
    messages = []
    for call in (lambda par: model.inference_step("H100_SXM", 8, 4096, parallelism=par),
                 lambda par: model.training_step("H100_SXM", 4096, 8, parallelism=par, recompute="full")):
        with pytest.raises(ValueError, match="expert_parallel") as info:
            call({"expert_parallel": 8})
        messages.append(str(info.value))
        call({"expert_parallel": 8, "data_parallel": 8})
    assert messages[0] == messages[1]


def test_interleave_must_divide_every_stage():
    """Interleaving splits each stage into v chunks of whole layers: v = 2 over (27, 27, 26) fails."""
    with pytest.raises(ValueError, match="interleave"):
        models.get("llama-3-70b").training_step("H100_SXM", 4096, 24, parallelism={"pipeline_parallel": 3},
                                                interleave=2)


def test_interleave_counts_the_embedding_and_the_loss_as_megatron_can():
    """Megatron-LM's account_for_embedding_in_pipeline_split and account_for_loss_in_pipeline_split
    count the embedding as one layer of the first virtual stage and the loss as one of the last:
    Llama 3.1 405B (126 blocks) on 8 stages with 8 chunks each is (126 + 2)/64 = 2 layers per
    chunk, stages of (15, 16 x 6, 15) blocks: 15 + 1 = 16 on each end divides by 8 (Megatron-Bridge
    runs this layout, recipes/llama/h100/llama3.py llama31_405b). 3 chunks divide neither way."""
    model = models.get("llama-3.1-405b")
    par = {"tensor_parallel": 8, "sequence_parallel": "tp", "pipeline_parallel": 8, "data_parallel": 2}
    step = model.training_step("H100_SXM", 4096, 32, parallelism=par, recompute="full", interleave=8)
    assert step.stage_layers == (15,) + (16,) * 6 + (15,)
    with pytest.raises(ValueError, match="interleave"):
        model.training_step("H100_SXM", 4096, 32, parallelism=par, recompute="full", interleave=3)


# -- item 7: uneven stages ---------------------------------------------------------------------

def test_stage_split_rules():
    """Default (vLLM get_pp_indices): floor(L/p) each, the remainder one by one to the stages
    before the last, from the back. Megatron-LM's first/last stage sizes: the rest split evenly."""
    assert steps.pipeline_stages(126, 16) == (7,) + (8,) * 14 + (7,)   # Llama 3 paper: 1 layer off each end
    assert steps.pipeline_stages(126, 8) == (15,) + (16,) * 6 + (15,)
    assert steps.pipeline_stages(126, 4) == (31, 32, 32, 31)
    assert steps.pipeline_stages(61, 16) == (3, 3) + (4,) * 13 + (3,)
    assert steps.pipeline_stages(80, 4) == (20,) * 4
    assert steps.pipeline_stages(61, 16, first=3, last=2) == (3,) + (4,) * 14 + (2,)
    assert steps.pipeline_stages(10, 4, first=1) == (1, 3, 3, 3)
    with pytest.raises(ValueError, match="divisible"):
        steps.pipeline_stages(61, 16, first=2, last=2)                # 57 over 14 stages
    with pytest.raises(ValueError, match="pipeline_parallel"):
        steps.pipeline_stages(80, 160)


def test_deepseek_v3_pp16_inference_and_training():
    """DeepSeek-V3 (3 dense + 58 MoE blocks) at PP 16: stages (3, 3, 4 x 13, 3). The fullest stage
    holds 4 MoE blocks: 4 * 11,507,286,272 = 46,029,145,088 parameters, 92,058,290,176 bytes in
    bf16 (the first holds 3 dense blocks + the embedding, the last 3 MoE blocks + the head)."""
    model = models.get("deepseek-v3")
    moe_block = 11_507_286_272
    inf = model.inference_step("H100_SXM", 1, 4096, parallelism={"pipeline_parallel": 16})
    assert inf.stage_layers == (3, 3) + (4,) * 13 + (3,)
    assert inf.weight_memory == 2 * 4 * moe_block == 92_058_290_176
    # a token crosses every stage: TTFT is the whole model's prefill plus 15 hops
    one = model.inference_step("H100_SXM", 1, 4096)
    assert inf.ttft > one.ttft and inf.kv_cache_memory < one.kv_cache_memory
    st = model.training_step("H100_SXM", 4096, 32, parallelism={"pipeline_parallel": 16}, recompute="full")
    assert st.stage_layers == inf.stage_layers and st.num_chips == 16
    # training: each MoE block's 256 router biases are a buffer held in fp32 beside 256 fp32 token
    # counts (8 B each, Megatron-Core TopKRouter): 2 (4 x moe_block - 1,024) + 8 x 1,024 bytes
    assert st.weight_memory == 2 * (4 * moe_block - 4 * 256) + 8 * 4 * 256 == 92_058_296_320


@pytest.mark.parametrize(("p", "middle"), [(4, 32), (8, 16), (16, 8)])
def test_llama_405b_uneven_pipelines(p, middle):
    """Llama-3.1-405B, 126 layers, TP 8: the middle stages hold the most blocks, and their
    weights (middle * 398,491,648 parameters, 2 bytes each) are the fullest stage's; the ends
    hold middle - 1 blocks plus the embedding or head (131,334,144 per chip, less than a block)."""
    model = models.get("llama-3.1-405b")
    par = {"tensor_parallel": 8, "pipeline_parallel": p}
    inf = model.inference_step("H100_SXM", 1, 8192, parallelism=par)
    assert inf.weight_memory == 2 * middle * L405_BLOCK_TP8
    st = model.training_step("H100_SXM", 4096, 2 * p, parallelism=par, recompute="full")
    assert st.num_chips == 8 * p and sum(st.stage_layers) == 126


def test_training_memory_is_the_fullest_stage_and_time_the_slowest():
    """A 7-layer model on 3 stages (2, 3, 2), m = 4 micro-batches, ZeRO-1 with d = 1 (18 bytes
    per parameter). Stage k of 1F1B holds min(p - k, m) micro-batches of activations; each
    stage's memory is 18 * its parameters + its activations, the step's the largest; T_mb is the
    slowest stage's latency and the step (m + p - 1) * T_mb without data parallelism. On the
    ideal chip (docs/conventions.md §17), where the LM head makes the last stage the slowest."""
    H100 = hardware.H100_SXM.ideal()
    model = Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=7, vocab_size=32000,
                        intermediate_size=4096)
    # 7 = 3 * 2 + 1: the one extra layer goes to the stage before the last: (2, 3, 2)
    assert steps.pipeline_stages(7, 3) == (2, 3, 2)
    st = model.training_step(H100, seq_len=1024, global_batch=4, micro_batch=1,
                             parallelism={"pipeline_parallel": 3})
    kw = {"batch_size": 1, "seq_len": 1024, "phase": "training", "dtype": "bf16", "hardware": H100}
    emb, blk = model.embedding.compute_metrics(**kw), model.blocks[0][0].compute_metrics(**kw)
    norm, head = model.final_norm.compute_metrics(**kw), model.lm_head.compute_metrics(**kw)
    E, Bk, N, Hd = (model.embedding.num_params, model.blocks[0][0].num_params, model.final_norm.num_params,
                    model.lm_head.num_params)
    stages = [  # (parameters, activations of one micro-batch, latency, in-flight micro-batches)
        (E + 2 * Bk, emb.activation_memory_per_chip + 2 * blk.activation_memory_per_chip,
         emb.latency + 2 * blk.latency, 3),
        (3 * Bk, 3 * blk.activation_memory_per_chip, 3 * blk.latency, 2),
        (2 * Bk + N + Hd, 2 * blk.activation_memory_per_chip + norm.activation_memory_per_chip
         + head.activation_memory_per_chip, 2 * blk.latency + norm.latency + head.latency, 1),
    ]
    assert st.memory_per_chip == max(18 * P + a * k for P, a, _, k in stages)
    # here the first stage is the fullest (3 micro-batches in flight) and the last the slowest
    # (LM head): the two maxima come from different stages, and neither mixes terms of two stages
    assert st.memory_per_chip == 18 * stages[0][0] + 3 * stages[0][1]
    assert st.microbatch_time == max(t for _, _, t, _ in stages) == stages[2][2]
    assert st.compute_time == (4 + 2) * st.microbatch_time
    parts = st.weight_memory + st.gradient_memory + st.optimizer_memory + st.activation_memory
    assert parts == st.memory_per_chip


def test_interleaved_stages_hold_megatrons_warmup():
    """Interleaved 1F1B (v = 2, p = 2, m = 8): stage k holds min(2(p - k - 1) + (v - 1)p + 1, m v)
    chunks of 1/v of its blocks (Megatron-LM's warm-up micro-batches plus one): the first stage
    (2 + 2 + 1)/2 = 5/2 micro-batches, the last (0 + 2 + 1)/2 = 3/2 (not 1)."""
    model = Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=8, vocab_size=32000,
                        intermediate_size=4096)
    st = model.training_step(H100, seq_len=1024, global_batch=8, micro_batch=1, interleave=2,
                             parallelism={"pipeline_parallel": 2})
    kw = {"batch_size": 1, "seq_len": 1024, "phase": "training", "dtype": "bf16"}
    act = {name: layer.compute_metrics(**kw).activation_memory_per_chip
           for name, layer, _ in model.parts()}
    P = {name: layer.num_params for name, layer, _ in model.parts()}
    blk = "blocks[0]"
    first = 18 * (P["embedding"] + 4 * P[blk]) + Fraction(5, 2) * (act["embedding"] + 4 * act[blk])
    last = (18 * (4 * P[blk] + P["final_norm"] + P["lm_head"])
            + Fraction(3, 2) * (4 * act[blk] + act["final_norm"] + act["lm_head"]))
    assert st.memory_per_chip == max(first, last)


def test_explicit_stage_layers():
    """A user's own split (Megatron's first/last stage sizes, or vLLM's VLLM_PP_LAYER_PARTITION)
    is used as given and stated in the result; a split that does not add up is refused."""
    model = models.get("llama-3.1-405b")
    split = steps.pipeline_stages(126, 16, first=6, last=8)            # (126 - 14)/14 = 8 in between
    assert split == (6,) + (8,) * 14 + (8,)
    par = {"tensor_parallel": 8, "pipeline_parallel": 16}
    inf = model.inference_step("H100_SXM", 1, 8192, parallelism=par, stage_layers=split)
    assert inf.stage_layers == split
    # the last stage: 8 blocks + the final norm (16,384) + the head (2,101,346,304 / 8)
    assert inf.weight_memory == 2 * (8 * L405_BLOCK_TP8 + 16384 + 2_101_346_304 // 8)
    for bad in ((8,) * 16, (0,) + (8,) * 15 + (6,)):
        with pytest.raises(ValueError, match="stage_layers"):
            model.inference_step("H100_SXM", 1, 8192, parallelism=par, stage_layers=bad)


def test_search_ranks_uneven_pipelines_and_matches_the_exact_step():
    """Llama-3.1-405B on 128 chips: 126 layers divide by no pipeline degree above 2, yet PP 4, 8
    and 16 are searched (uneven stages), and their rows equal the exact training step."""
    model = models.get("llama-3.1-405b")
    table = search.parallelism(model, "H100_SXM", num_chips=128, global_batch=128, seq_len=4096,
                               recompute=("full",), zero_stages=(1,), max_micro_batch=1)
    pps = table.columns["pp"]
    assert {4, 8, 16} <= set(pps.tolist())
    for p in (8, 16):
        i = int(np.flatnonzero(pps == p)[0])
        row = table.row(i)
        st = model.training_step("H100_SXM", seq_len=4096, global_batch=128, micro_batch=row["micro_batch"],
                                 parallelism=table.parallelism(i), recompute="full",
                                 interleave=row["interleave"], zero_stage=1)
        assert row["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)
        assert row["memory_per_chip"] == pytest.approx(float(st.memory_per_chip), rel=1e-12)


def test_inference_search_takes_uneven_pipelines():
    """The inference search keeps PP 3 for Llama-3-8B (32 layers: stages (11, 11, 10)) and its
    row equals the exact step."""
    model = models.get("llama-3-8b")
    table = search.parallelism(model, "H100_SXM", num_chips=3, global_batch=3, seq_len=4096, phase="inference")
    i = int(np.flatnonzero(table.columns["pp"] == 3)[0])
    row = table.row(i)
    step = model.inference_step("H100_SXM", row["micro_batch"], 4096, parallelism={"pipeline_parallel": 3})
    assert step.stage_layers == (11, 11, 10)
    assert row["tpot"] == float(step.tpot) and row["memory_per_chip"] == float(step.memory_per_chip)


def test_search_ignores_the_models_own_parallelism():
    """The search chooses the degrees itself: a model built with TP 2 gives the same table."""
    plain = search.parallelism(models.get("llama-3-8b"), "H100_SXM", 4, 4, 4096, phase="inference")
    tp2 = search.parallelism(models.get("llama-3-8b").with_parallelism({"tensor_parallel": 2}), "H100_SXM",
                             4, 4, 4096, phase="inference")
    assert plain.num_fit == tp2.num_fit == 6
    assert np.array_equal(plain.columns["tpot"], tp2.columns["tpot"])


# -- the property of issue 8: uneven stages, symbolic substituted = numeric = compiled sweep ---------



@settings(max_examples=25, deadline=None)
@given(layers=st.integers(2, 9), p=st.integers(1, 10), t=st.sampled_from([1, 2, 4, 8]), b=st.integers(1, 16),
       realistic=st.booleans())
def test_uneven_stages_symbolic_numeric_and_sweep_agree_or_all_raise(layers, p, t, b, realistic):
    """Any layer count over any stage count (uneven splits included; more stages than layers
    refused) and TP past the KV heads (g = 2): inference memory and TPOT with the batch symbolic,
    substituted, equal the numeric step, and the compiled float sweep agrees to 1e-12."""
    model = Model.llama(hidden_size=256, num_heads=8, num_kv_heads=2, num_layers=layers, vocab_size=1000,
                        intermediate_size=512)
    chip = hardware.get("H100_SXM") if realistic else hardware.get("H100_SXM").ideal()
    par = {"pipeline_parallel": p, "tensor_parallel": t}
    outcomes = []
    for batch in (None, b):
        try:
            outcomes.append(model.inference_step(chip, batch, 64, parallelism=par))
        except ValueError as err:
            outcomes.append(err)
    symbolic, numeric = outcomes
    if isinstance(numeric, ValueError) or isinstance(symbolic, ValueError):
        assert isinstance(numeric, ValueError) and isinstance(symbolic, ValueError)
        assert p > layers
        return
    assert numeric.stage_layers is not None and sum(numeric.stage_layers) == layers
    for field in ("memory_per_chip", "tpot", "kv_cache_memory", "weight_memory"):
        expr = sp.sympify(getattr(symbolic, field))  # an int when the batch drops out (weights)
        assert expr.xreplace({S.batch_size: b}) == getattr(numeric, field), field
    sweep = sc.sweep(symbolic.memory_per_chip, batch_size=np.array([float(b)]))
    assert float(sweep[0]) == pytest.approx(float(numeric.memory_per_chip), rel=1e-12)


# -- a tied LM head under pipeline parallelism (issue 20, item 7) ---------------------------------
#
# Megatron-LM keeps a copy of a tied embedding table on the last pipeline stage for its output
# layer (LanguageModule.setup_embeddings_and_output_layer: "Create a second copy of word_embeddings
# on the last stage"), a parameter there like any other (fp32 main grad, optimizer state), and
# all-reduces the two copies' gradients between the first and the last stage before the
# optimizer step (finalize_model_grads -> _allreduce_word_embedding_grads over the embedding
# group); vLLM's last PP rank builds embed_tokens when tie_word_embeddings is set.


def test_tied_head_last_stage_holds_the_table():
    """Gemma-2-9B (h 3584, 16 heads of 256, 8 KV heads, FFN 14336, vocab 256000, 42 layers, tied)
    on stages (20, 22), bf16. Table 256000 * 3584 = 917,504,000 parameters; a block: Q and O
    2 * 3584 * 16 * 256, K and V 2 * 3584 * 8 * 256, gated MLP 3 * 3584 * 14336, four RMSNorms
    4 * 3584: 198,195,200. First stage: table + 20 blocks = 4,881,408,000 parameters, 9.76 GB;
    last: 22 blocks + final norm 3584 + the table's copy = 5,277,801,984, 10.56 GB, the fullest.
    Stages (22, 20) make the first the fullest (table + 22 blocks); one stage holds one table."""
    import importlib.util
    from pathlib import Path

    # the published config.json, kept whole in tests/models/hf_configs.py
    spec = importlib.util.spec_from_file_location("hf_configs", Path(__file__).parents[1] / "models" / "hf_configs.py")
    configs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(configs)
    gemma = sc.models.from_hf_config(configs.GEMMA2_9B)
    table, block = 256000 * 3584, 2 * 3584 * 16 * 256 + 2 * 3584 * 8 * 256 + 3 * 3584 * 14336 + 4 * 3584
    assert (table, block) == (917_504_000, 198_195_200) and gemma.lm_head.tied
    par = {"pipeline_parallel": 2}
    last = gemma.inference_step(H100, 1, 4096, parallelism=par, stage_layers=(20, 22))
    assert last.weight_memory == 2 * (22 * block + 3584 + table) == 10_555_603_968
    first = gemma.inference_step(H100, 1, 4096, parallelism=par, stage_layers=(22, 20))
    assert first.weight_memory == 2 * (table + 22 * block) == 10_555_596_800
    whole = gemma.inference_step(H100, 1, 4096)
    assert whole.weight_memory == 2 * (table + 42 * block + 3584) == 2 * gemma.parameter_count


def _tied_pair():
    kw = dict(hidden_size=256, num_heads=8, num_kv_heads=2, num_layers=4, vocab_size=1000, intermediate_size=512)
    return Model.llama(**kw, tied=True, name="tied-small"), Model.llama(**kw, name="untied-small")


@pytest.mark.parametrize("d", [1, 2])
def test_tied_head_training_syncs_the_embedding_group(d):
    """A small tied Llama (h 256, vocab 1000, 4 layers) at TP 2 x PP 2 x DP d, ZeRO-1. The last
    stage holds the table's copy (1000/2 * 256 parameters per chip) as a parameter: weights,
    fp32 gradients and Adam state as its untied twin holds its own LM head, so memory is the
    twin's. The tied model also all-reduces the fp32 gradient of the table (V/t * h * 4 =
    512,000 bytes per chip) between the first and the last stage, after the data-parallel
    reduction: each of those stages' gradient sync takes that much longer. The two stages are
    t * d chips apart, so the group of 2 spans p * t * d chips. One stage: no copy, no sync."""
    from symcost.core.ops import Collective
    from symcost.hardware.timing import collective_time

    tied, untied = _tied_pair()
    par = {"tensor_parallel": 2, "pipeline_parallel": 2, "data_parallel": d}
    # stages (1, 3): the last stage is the fullest, so its weights are the ones reported
    a, b = (m.training_step(H100, 256, 8 * d, 1, parallelism=par, stage_layers=(1, 3)) for m in (tied, untied))
    # a block: 557,568 parameters, its two RMSNorms (2 * 256) whole on each TP rank, the rest / 2:
    # 279,040 per chip; the last stage 3 blocks + the final norm 256 + the table's copy 500 * 256
    assert tied.blocks[0][0].num_params == 557_568
    assert a.weight_memory == 2 * (3 * ((557_568 - 512) // 2 + 512) + 256 + 500 * 256) == 1_930_752
    assert (a.memory_per_chip, a.weight_memory, a.gradient_memory, a.optimizer_memory) == (
        b.memory_per_chip, b.weight_memory, b.gradient_memory, b.optimizer_memory)
    sync = collective_time(Collective("all_reduce", "pp", 2, 1000 // 2 * 256 * 4, span=2 * 2 * d), H100)
    assert sp.sympify(sync) > 0
    assert a.dp_comm_time - b.dp_comm_time == sync  # both stages sync the same parameter count plus it
    assert a.step_time - b.step_time == sync
    one = {"tensor_parallel": 2, "data_parallel": d}
    a1, b1 = (m.training_step(H100, 256, 8 * d, 1, parallelism=one) for m in (tied, untied))
    assert a1.dp_comm_time <= b1.dp_comm_time and a1.weight_memory < b1.weight_memory  # one table, no sync


def test_tied_head_compiled_uncompiled_and_search_agree():
    """The compiled step (exact and float) and the search's vectorized assembly count the copy and
    the embedding group's all-reduce as the uncompiled step does."""
    from symcost.plan import compiled

    tied, _ = _tied_pair()
    par = {"tensor_parallel": 2, "pipeline_parallel": 2, "data_parallel": 2}
    old, compiled.USE_COMPILED = compiled.USE_COMPILED, False
    try:
        want = tied.training_step(H100, 256, 16, 1, parallelism=par)
        want_inf = tied.inference_step(H100, 2, 256, parallelism={"pipeline_parallel": 2})
    finally:
        compiled.USE_COMPILED = old
    got = tied.training_step(H100, 256, 16, 1, parallelism=par)
    assert (got.step_time, got.memory_per_chip, got.dp_comm_time) == (
        want.step_time, want.memory_per_chip, want.dp_comm_time)
    fast = tied.training_step(H100, 256, 16, 1, parallelism=par, exact=False)
    assert fast.step_time == pytest.approx(float(want.step_time), rel=1e-12)
    assert tied.inference_step(H100, 2, 256, parallelism={"pipeline_parallel": 2}).weight_memory == \
        want_inf.weight_memory
    table = search.parallelism(tied, H100, num_chips=8, global_batch=16, seq_len=256)
    rows = [i for i in range(len(table)) if table.row(i)["pp"] > 1][:6]
    assert rows
    for i in rows:
        row = table.row(i)
        st = row_step(tied, H100, table, i, 256, 16)
        assert row["step_time"] == pytest.approx(float(st.step_time), rel=1e-12)
        assert row["memory_per_chip"] == pytest.approx(float(st.memory_per_chip), rel=1e-12)
