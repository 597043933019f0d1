"""Megatron-Core's block recomputation: ``recompute="full", recompute_layers=N`` recomputes the
first N blocks of each pipeline stage (of each chunk when interleaved) and keeps the others'
activations (NVIDIA/Megatron-LM core_v0.14.0 megatron/core/transformer/transformer_block.py
``_checkpointed_forward``, ``recompute_method == 'block'``).

The fixed small model (as tests/plan/test_plan_display.py): GPT (Megatron: eager, non-causal
attention, LayerNorm, GELU MLP, dropout, tied LM head) with h = 64, a = 4, V = 128, s = 32, here
L = 4 blocks, in bf16 (e = 2), micro-batch 1, global batch 4 (m = 4 micro-batches on one replica),
on a toy chip whose only finite rate is the matmul peak (10^12 FLOP/s; vector FLOP/s and every
bandwidth 10^24, no collective latency): every time is the matmul FLOPs / 10^12 to ~1e-12 relative.

By hand, per sequence (b = 1):
- one block's forward matmuls: 24 s h^2 + 4 s^2 h = 3,145,728 + 262,144 = 3,407,872 FLOPs; its
  forward + backward 3 x that; recomputed, one forward more (4 x);
- the LM head: 2 s h V = 524,288 forward, x 3 with its backward; the embedding has no matmul;
- a block's saved activations (Korthikanti et al. 2022, e = 2): s b h (34 + 5 a s / h) =
  2048 x 44 = 90,112 B; recomputed, its input only, 2 s b h = 4,096 B; while a recomputed block's
  backward runs its other activations are back: 90,112 - 4,096 = 86,016 B, once;
- the embedding's dropout mask s b h = 2,048 B (first stage); the final norm's and the LM head's
  inputs 2 x 2 s b h = 8,192 B and the loss's bf16 logit gradient 2 s b V = 8,192 B (last stage).
"""

from __future__ import annotations

import pytest
from search_rows import row_step

import symcost as sc
from symcost.errors import ConfigError
from symcost.hardware import Hardware
from symcost.plan import compiled
from symcost.plan import step as steps

BIG = 10**24
TOY = Hardware(name="toy", peak_flops={"bf16": 10**12}, vector_flops=BIG, hbm_capacity=10**9, hbm_bandwidth=BIG,
               scale_up_bandwidth=BIG, scale_up_domain=8, scale_out_bandwidth=BIG, collective_latency=0)
GPT = sc.Model.gpt(hidden_size=64, num_heads=4, num_layers=4, vocab_size=128, seq_len=32)
BLOCK = 3_407_872        # one block's forward matmul FLOPs (module docstring)
HEAD = 524_288           # the LM head's forward matmul FLOPs
KEPT, INPUT = 90_112, 4_096
PEAK = KEPT - INPUT      # one recomputed block's activations, back during its backward
EMBEDDING, TAIL = 2_048, 16_384


def _step(pp=1, n=1, v=1, recompute="full"):
    return GPT.training_step(TOY, seq_len=32, global_batch=4, micro_batch=1, parallelism={"pipeline_parallel": pp},
                             recompute=recompute, recompute_layers=n, interleave=v)


def test_one_of_four_blocks_recomputed_on_one_stage():
    step = _step(pp=1, n=1)
    # time: m = 4 micro-batches of 3 (4 BLOCK + HEAD) + BLOCK (the first block's forward again)
    #   = 3 x 14,155,776 + 3,407,872 = 45,875,200 FLOPs; x 4 = 183,500,800 FLOPs -> 183.5008 µs
    assert 4 * (3 * (4 * BLOCK + HEAD) + BLOCK) == 183_500_800
    assert float(step.compute_time) == pytest.approx(183_500_800e-12, rel=1e-9)
    assert float(step.step_time) == pytest.approx(183_500_800e-12, rel=1e-9)
    # memory (1F1B, one stage: one micro-batch in flight). Its forward keeps the first block's input
    #   (4,096), 3 blocks' activations (270,336), the embedding's mask and the tail (18,432):
    #   S = 292,864 B. Its backward runs the tail, then blocks 4, 3, 2 (each freed after its own
    #   backward), then rebuilds block 1: at that moment it holds the embedding's mask, block 1's input
    #   and its other activations back: 2,048 + 4,096 + 86,016 = 92,160 B < S. Peak = S = 292,864 B:
    #   the rebuilt block costs nothing at the peak unless every block of the chunk is recomputed
    assert INPUT + 3 * KEPT + EMBEDDING + TAIL == 292_864
    assert EMBEDDING + INPUT + PEAK == 92_160
    assert step.activation_memory == 292_864


def test_one_block_per_stage_recomputed_on_two_stages():
    step = _step(pp=2, n=1)
    # time: stage 0 = 2 blocks + the first one's forward again = 3 x 2 BLOCK + BLOCK = 23,855,104;
    #   stage 1 = 3 (2 BLOCK + HEAD) + BLOCK = 25,427,968, the slower: T_mb. 1F1B: (m + p - 1) T_mb
    #   = 5 x 25,427,968 = 127,139,840 FLOPs -> 127.13984 µs
    assert 5 * (3 * (2 * BLOCK + HEAD) + BLOCK) == 127_139_840
    assert float(step.microbatch_time) == pytest.approx(25_427_968e-12, rel=1e-9)
    assert float(step.compute_time) == pytest.approx(127_139_840e-12, rel=1e-9)
    # memory: stage 0 holds min(p - 0, m) = 2 micro-batches of S0 = 4,096 + 90,112 + 2,048 = 96,256
    #   B; its peak is the larger of 2 S0 (both forwards done) and, while the older one's first block
    #   is rebuilt (its second block already freed), S0 + 2,048 + 4,096 + 86,016 = 188,416: 2 S0 =
    #   192,512 B. Stage 1, 1 micro-batch of S1 = 4,096 + 90,112 + 16,384 = 110,592 B (rebuilt:
    #   90,112, less). Parameters (12 h^2 + 13 h = 49,984 a block): stage 0, the embedding (V h + s h
    #   = 10,240) and 2 blocks = 110,208; stage 1, 2 blocks, the final norm (2 h) and the tied head's
    #   table copy (V h) = 108,288; at 2 + 4 + 12 = 18 B each (bf16 weights, fp32 gradients, Adam,
    #   d = 1): stage 0 1,983,744 + 192,512 = 2,176,256 B, the fuller (stage 1: 1,949,184 + 110,592)
    assert 2 * (INPUT + KEPT + EMBEDDING) == 192_512 > (INPUT + KEPT + EMBEDDING) + EMBEDDING + INPUT + PEAK
    assert step.activation_memory == 192_512
    assert step.memory_per_chip == 18 * 110_208 + 192_512 == 2_176_256


def test_interleaved_chunks_each_recompute_their_first_block():
    step = _step(pp=2, n=1, v=2)
    # v = 2 chunks of 1 block per stage: N = 1 recomputes every block (4 BLOCK forward each).
    #   Stage 1: 2 x 4 BLOCK + 3 HEAD = 28,835,840 = T_mb; compute (m + (p - 1)/v) T_mb = 4.5 T_mb
    #   = 129,761,280 FLOPs. Stage 0 holds Megatron's warm-up 2(p - 1) + (v - 1) p + 1 = 5 chunks of
    #   half a micro-batch (2 inputs + the dropout mask: 10,240 B): 25,600 B. Every block of a chunk
    #   is recomputed, so the rebuild raises the peak: while the oldest chunk (chunk 0: mask + input,
    #   6,144 B) rebuilds its block it holds 2,048 + 4,096 + 86,016 = 92,160 B instead: 25,600 -
    #   6,144 + 92,160 = 111,616 B (chunk 1, no mask: 25,600 - 4,096 + 90,112, the same)
    assert 9 * (2 * 4 * BLOCK + 3 * HEAD) // 2 == 129_761_280
    assert float(step.compute_time) == pytest.approx(129_761_280e-12, rel=1e-9)
    assert 5 * (2 * INPUT + EMBEDDING) // 2 - (INPUT + EMBEDDING) + EMBEDDING + INPUT + PEAK == 111_616
    assert step.activation_memory == 111_616


def test_no_block_recomputed_is_no_recomputation():
    kept, none = _step(pp=2, n=0), _step(pp=2, n=None, recompute="none")
    assert (kept.step_time, kept.memory_per_chip) == (none.step_time, none.memory_per_chip)


@pytest.mark.parametrize("kwargs, message", [
    ({"pp": 1, "n": 5}, "recompute_layers must be between 0 and 4, the blocks of the largest pipeline stage, got 5"),
    ({"pp": 2, "n": 3}, "recompute_layers must be between 0 and 2, the blocks of the largest pipeline stage, got 3"),
    ({"pp": 2, "v": 2, "n": 3}, "recompute_layers must be between 0 and 2, the blocks of the largest pipeline stage"),
    ({"n": 1.0}, "recompute_layers must be an int >= 0"),
    ({"n": -1}, "recompute_layers must be an int >= 0"),
    ({"n": True}, "recompute_layers must be an int >= 0"),
    ({"n": 2, "recompute": "selective"}, "recompute_layers needs recompute='full'"),
])
def test_bad_recompute_layers_is_one_line(kwargs, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as err:
        _step(**kwargs)
    assert "\n" not in str(err.value)


def test_compiled_equals_uncompiled():
    model = sc.models.get("llama-3-8b")
    kwargs = {"parallelism": {"pipeline_parallel": 4, "data_parallel": 2}, "recompute": "full",
              "recompute_layers": 3, "interleave": 2}
    fast = steps.compile_step(model, "H100_SXM", "training", "fp8_e4m3", **kwargs)(8192, 64, 1)
    old, compiled.USE_COMPILED = compiled.USE_COMPILED, False
    try:
        exact = model.training_step("H100_SXM", 8192, 64, 1, "fp8_e4m3", **kwargs)
    finally:
        compiled.USE_COMPILED = old
    for field in ("step_time", "compute_time", "memory_per_chip", "activation_memory", "microbatch_time"):
        assert getattr(fast, field) == getattr(exact, field), field


def test_llama3_8b_recomputes_five_of_its_32_blocks():
    """One stage of 32 identical blocks: recomputing 5 adds 5/32 of what recomputing all 32 adds to
    the compute time (the embedding and the head are recomputed in neither), and saves 5 times what
    recomputing 1 saves in activations (each rebuilt block comes back after the 27 kept blocks and
    the head are freed, below the peak)."""
    model = sc.models.get("llama-3-8b")

    def step(**kwargs):
        return model.training_step("H100_SXM", 8192, 16, 1, "bf16", {"data_parallel": 8}, **kwargs)

    none, full = step(), step(recompute="full")
    one, five = step(recompute="full", recompute_layers=1), step(recompute="full", recompute_layers=5)
    assert five.compute_time - none.compute_time == (full.compute_time - none.compute_time) * 5 / 32
    assert none.activation_memory - five.activation_memory == 5 * (none.activation_memory - one.activation_memory)


def test_the_search_counts_the_rebuilt_block_as_the_step_does():
    from symcost import search
    table = search.parallelism(GPT, TOY, num_chips=4, global_batch=8, seq_len=32)
    full = [i for i in range(len(table)) if table.row(i)["recompute"] == "full" and table.row(i)["pp"] > 1]
    assert full
    for i in full:
        row = table.row(i)
        step = row_step(GPT, TOY, table, i, 32, 8, overlap=row["overlap"])
        assert row["memory_per_chip"] == pytest.approx(float(step.memory_per_chip), rel=1e-12)


def test_plain_full_rebuilds_the_last_block_on_one_stage():
    step = _step(pp=1, n=None)
    # every block recomputed: the forward keeps the embedding's mask, the 4 blocks' inputs and the
    #   tail: S = 2,048 + 4 x 4,096 + 16,384 = 34,816 B. The backward frees the tail, then rebuilds
    #   block 4 first: the mask, the 4 inputs and block 4's other activations back, 2,048 + 16,384 +
    #   86,016 = 104,448 B > S (blocks 3, 2, 1 later hold less: one input fewer each). Peak 104,448 B.
    # time: 4 micro-batches of 3 (4 BLOCK + HEAD) + 4 BLOCK = 4 x 56,098,816 = 224,395,264 FLOPs
    assert EMBEDDING + 4 * INPUT + TAIL == 34_816 < EMBEDDING + 4 * INPUT + PEAK == 104_448
    assert step.activation_memory == 104_448
    assert 4 * (3 * (4 * BLOCK + HEAD) + 4 * BLOCK) == 224_395_264
    assert float(step.compute_time) == pytest.approx(224_395_264e-12, rel=1e-9)


def _two_groups():
    """The toy GPT's first block, then 3 blocks whose MLP is 8h = 512 wide (one (block, count) group
    each, as Model.blocks holds a dense-first model)."""
    block = GPT.blocks[0][0]
    wide = block.model_copy(update={"mlp": block.mlp.model_copy(update={"intermediate_size": 512})})
    return GPT.model_copy(update={"blocks": ((block, 1), (wide, 3))})


def test_two_block_groups_recompute_the_first_blocks():
    model = _two_groups()

    def step(n):
        return model.training_step(TOY, seq_len=32, global_batch=4, micro_batch=1, recompute="full",
                                   recompute_layers=n)
    # the wide block (Korthikanti et al. 2022's terms, its MLP's GELU input and fc2 input 2 x 2 s b 8h
    #   instead of 2 x 2 s b 4h): s b h (34 + 16 + 5 a s / h) = 2048 x 60 = 122,880 B saved; its
    #   forward matmuls 24 s h^2 + 16 s h^2 more (fc1, fc2: 2 x 2 s h 8h) + 4 s^2 h = 5,505,024 FLOPs.
    wide, wide_flops = 2048 * 60, 40 * 32 * 64**2 + 4 * 32**2 * 64
    assert (wide, wide_flops) == (122_880, 5_505_024)
    # N = 1 recomputes the standard block (Megatron: the first of the stage), not a wide one: S = mask
    #   + its input + 3 wide blocks + tail = 2,048 + 4,096 + 368,640 + 16,384 = 391,168 B; its rebuild
    #   (2,048 + 4,096 + 86,016 = 92,160) is below. (Recomputing the last block instead would keep
    #   2,048 + 90,112 + 2 x 122,880 + 4,096 + 16,384 = 358,400 B: the order matters.)
    #   time: 4 x (3 (BLOCK + 3 wide + HEAD) + BLOCK) = 4 x 64,749,568 = 258,998,272 FLOPs
    one = step(1)
    assert EMBEDDING + INPUT + 3 * wide + TAIL == 391_168 != EMBEDDING + KEPT + 2 * wide + INPUT + TAIL == 358_400
    assert one.activation_memory == 391_168
    assert 4 * (3 * (BLOCK + 3 * wide_flops + HEAD) + BLOCK) == 258_998_272
    assert float(one.compute_time) == pytest.approx(258_998_272e-12, rel=1e-9)
    # N = 2 recomputes the standard block and the first wide one: S = 2,048 + 2 x 4,096 + 2 x 122,880
    #   + 16,384 = 272,384 B; rebuilding the wide one (after blocks 4, 3 and the tail are freed) holds
    #   2,048 + 2 x 4,096 + 122,880 - 4,096 = 129,024 B < S. Time: one wide forward more per micro-batch,
    #   4 x (64,749,568 + 5,505,024) = 281,018,368 FLOPs
    two = step(2)
    assert EMBEDDING + 2 * INPUT + 2 * wide + TAIL == 272_384 > EMBEDDING + INPUT + wide == 129_024
    assert two.activation_memory == 272_384
    assert float(two.compute_time) == pytest.approx(281_018_368e-12, rel=1e-9)


def test_uneven_stages_clamp_n_to_the_short_stage():
    step = GPT.training_step(TOY, seq_len=32, global_batch=4, micro_batch=1, parallelism={"pipeline_parallel": 2},
                             recompute="full", recompute_layers=2, stage_layers=(1, 3))
    # N = 2 is within the largest stage (3 blocks); stage 0 holds 1 block and recomputes it (Megatron's
    #   layer_idx < N), stage 1 recomputes its first 2 and keeps the third.
    # time: stage 0 = 4 BLOCK = 13,631,488; stage 1 = 3 (3 BLOCK + HEAD) + 2 BLOCK = 39,059,456 = T_mb;
    #   1F1B (m + p - 1) T_mb = 5 x 39,059,456 = 195,297,280 FLOPs
    assert 5 * (3 * (3 * BLOCK + HEAD) + 2 * BLOCK) == 195_297_280
    assert float(step.compute_time) == pytest.approx(195_297_280e-12, rel=1e-9)
    # memory: stage 0, 2 micro-batches in flight of S0 = mask + input = 6,144 B; rebuilding the older
    #   one's block holds S0 + 2,048 + 4,096 + 86,016 = 98,304 B > 2 S0. Its parameters: embedding
    #   10,240 + 1 block 49,984 = 60,224 x 18 B = 1,084,032: 1,182,336 B.
    #   Stage 1, 1 micro-batch: S1 = 2 inputs + 1 kept block + tail = 8,192 + 90,112 + 16,384 =
    #   114,688 B (its second block's rebuild, after block 3 and the tail are freed, 8,192 + 86,016 =
    #   94,208, below); parameters 3 x 49,984 + 128 + 8,192 = 158,272 x 18 = 2,848,896: 2,963,584 B,
    #   the fuller chip
    assert 6_144 + EMBEDDING + INPUT + PEAK == 98_304 and 18 * 60_224 + 98_304 == 1_182_336
    assert 18 * 158_272 + 2 * INPUT + KEPT + TAIL == 2_963_584
    assert step.memory_per_chip == 2_963_584


def test_symbolic_depth():
    from symcost.core.symbols import num_layers
    model = sc.Model.gpt(hidden_size=64, num_heads=4, num_layers=num_layers, vocab_size=128, seq_len=32)
    kwargs = {"seq_len": 32, "global_batch": 4, "micro_batch": 1, "recompute": "full"}
    with pytest.raises(ConfigError, match="^recompute_layers needs a numeric num_layers") as err:
        model.training_step(TOY, recompute_layers=1, **kwargs)
    assert "\n" not in str(err.value)
    # plain full still builds, L symbolic: per micro-batch 3 (L BLOCK + HEAD) + L BLOCK, m = 4
    step = model.training_step(TOY, **kwargs)
    assert num_layers in step.compute_time.free_symbols
    assert float(step.compute_time.xreplace({num_layers: 4})) == pytest.approx(224_395_264e-12, rel=1e-9)
    assert step.activation_memory.xreplace({num_layers: 4}) == 104_448


@pytest.mark.parametrize("pp, n", [(1, 4), (2, 2)])
def test_n_equal_to_the_stage_is_plain_full(pp, n):
    block, full = _step(pp=pp, n=n), _step(pp=pp, n=None)
    assert (block.step_time, block.memory_per_chip, block.activation_memory) == (
        full.step_time, full.memory_per_chip, full.activation_memory)


def test_recompute_layers_takes_index_values():
    import numpy as np
    import sympy
    one = _step(pp=2, n=1)
    for value in (sympy.Integer(1), np.int64(1)):
        step = _step(pp=2, n=value)
        assert (step.step_time, step.memory_per_chip) == (one.step_time, one.memory_per_chip)
    for value in (np.float64(1.0), sympy.Float(1), np.bool_(True)):
        with pytest.raises(ConfigError, match="^recompute_layers must be an int >= 0"):
            _step(n=value)


# The search with block recompute (issue 22). One chip (t = p = d = 1), global batch 4, the GPT
# above. Its parameters: 4 blocks of 12 h^2 + 13 h = 49,984, the embedding V h + s h = 10,240
# (learned positions), the final LayerNorm 2 h = 128, the tied head none: P = 210,304; bf16
# weights 2 P, fp32 gradients 4 P, Adam's fp32 master and moments 12 P: 18 P = 3,785,472 B.
# Activations at micro-batch 1 (one in flight), from the module docstring:
#   none: 4 x 90,112 + 2,048 + 16,384 = 378,880 -> 4,164,352 B
#   N = 1: 292,864 (test_one_of_four_blocks_recomputed_on_one_stage) -> 4,078,336 B
#   N = 2: 2 x 4,096 + 2 x 90,112 + 18,432 = 206,848 (rebuilding block 2 after blocks 3 and 4
#          are freed holds less) -> 3,992,320 B
#   full: 4 x 4,096 + 18,432 + the last block rebuilt, 86,016 - 16,384 = 69,632 -> 3,889,920 B
#   selective (the eager attention's scores and mask, 5 a s / h = 10 s b h = 20,480 B a block, not
#   kept): 4 x 69,632 + 18,432 = 296,960 -> 4,082,432 B
# On 4,000,000 B of HBM neither none, selective nor N = 1 fits; N = 2 is the fewest that fits,
# faster than full by 2 blocks' forwards per micro-batch: 4 x (3 (4 BLOCK + HEAD) + 2 BLOCK)
# = 197,132,288 FLOPs -> 197.132288 µs.
SMALL = TOY.model_copy(update={"hbm_capacity": 4_000_000})


def test_the_search_finds_the_fewest_blocks_that_fit():
    from symcost import search

    assert 18 * 210_304 == 3_785_472
    table = search.parallelism(GPT, SMALL, num_chips=1, global_batch=4, seq_len=32)
    best = table.best
    assert (best["recompute"], best["recompute_layers"], best["micro_batch"]) == ("full", 2, 1)
    assert best["memory_per_chip"] == 3_785_472 + 206_848 == 3_992_320
    assert best["step_time"] == pytest.approx(4 * (3 * (4 * BLOCK + HEAD) + 2 * BLOCK) * 1e-12, rel=1e-9)
    step = row_step(GPT, SMALL, table, 0, 32, 4)
    assert step.memory_per_chip == 3_992_320
    assert best["step_time"] == pytest.approx(float(step.step_time), rel=1e-12)
    # what else fits: plain full (slower), no row without recomputation, selective or N = 1
    modes = {(r["recompute"], r["recompute_layers"]) for r in table.rows() if r["micro_batch"] == 1}
    assert modes == {("full", 2), ("full", None)}
    assert table.row(1)["memory_per_chip"] == 3_785_472 + 104_448


def test_the_search_without_block_recompute():
    from symcost import search

    table = search.parallelism(GPT, SMALL, num_chips=1, global_batch=4, seq_len=32,
                               recompute=("none", "selective", "full"))
    assert (table.best["recompute"], table.best["recompute_layers"]) == ("full", None)
    with pytest.raises(ConfigError, match="'block' refines the rows of 'full'"):
        search.parallelism(GPT, SMALL, num_chips=1, global_batch=4, seq_len=32, recompute=("none", "block"))


def test_search_block_rows_equal_the_step_across_stages():
    """Block rows of a 2- and 4-stage search (interleaved too) are training_step's with recompute_layers=N."""
    from symcost import search

    deep = sc.Model.gpt(hidden_size=64, num_heads=4, num_layers=8, vocab_size=128, seq_len=32)
    roomy = TOY.model_copy(update={"hbm_capacity": 3_000_000})
    table = search.parallelism(deep, roomy, num_chips=4, global_batch=16, seq_len=32, zero_stages=(1,))
    blocks = [i for i in range(len(table)) if table.row(i)["recompute_layers"] is not None]
    assert {(table.row(i)["pp"], table.row(i)["interleave"]) for i in blocks} == {(1, 1), (2, 1), (2, 2), (4, 1)}
    for i in blocks:
        step = row_step(deep, roomy, table, i, 32, 16)
        assert table.row(i)["memory_per_chip"] == pytest.approx(float(step.memory_per_chip), rel=1e-12)
        assert table.row(i)["step_time"] == pytest.approx(float(step.step_time), rel=1e-12)
        assert step.fits
        # the fewest that fit: one block fewer does not (row_step with recompute_layers N - 1)
        fewer = row_step(deep, roomy, table, i, 32, 16, recompute_layers=table.row(i)["recompute_layers"] - 1)
        assert not fewer.fits


def test_min_mfu_keeps_the_block_rows_of_a_full_row_it_drops():
    """A "full" row that fits but misses min_mfu is still refined: its block rows are faster, so
    their MFU is higher (same model FLOPs). Full: 4 x (3 (4 BLOCK + HEAD) + 4 BLOCK) = 224,395,264
    FLOPs; N = 2: 197,132,288 (SMALL's comment): the N = 2 row's MFU is 224,395,264 / 197,132,288
    = 1.138 x the full row's, so a min_mfu 5 % above the full row's keeps N = 2 only."""
    from symcost import search

    plain = search.parallelism(GPT, SMALL, num_chips=1, global_batch=4, seq_len=32)
    full = next(r for r in plain.rows()
                if (r["recompute"], r["recompute_layers"], r["micro_batch"]) == ("full", None, 1))
    two = next(r for r in plain.rows() if (r["recompute"], r["recompute_layers"]) == ("full", 2))
    assert two["mfu"] / full["mfu"] == pytest.approx(224_395_264 / 197_132_288, rel=1e-9)
    table = search.parallelism(GPT, SMALL, num_chips=1, global_batch=4, seq_len=32, min_mfu=1.05 * full["mfu"])
    assert (table.best["recompute"], table.best["recompute_layers"]) == ("full", 2)
    assert {(r["recompute"], r["recompute_layers"]) for r in table.rows()} == {("full", 2)}


def test_without_none_the_search_tries_no_block_recomputed():
    """recompute=("full", "block") on a chip where nothing recomputed fits (5,000,000 B > none's
    4,164,352 B, SMALL's comment): N = 0 fits and is the fastest, emitted as a block row with
    recompute_layers 0 (training_step's recompute="full", recompute_layers=0 is "none"): time
    4 x 3 (4 BLOCK + HEAD) = 169,869,312 FLOPs, memory 4,164,352 B."""
    from symcost import search

    roomy = TOY.model_copy(update={"hbm_capacity": 5_000_000})
    table = search.parallelism(GPT, roomy, num_chips=1, global_batch=4, seq_len=32, recompute=("full", "block"))
    assert (table.best["recompute"], table.best["recompute_layers"]) == ("full", 0)
    assert 4 * 3 * (4 * BLOCK + HEAD) == 169_869_312
    assert table.best["step_time"] == pytest.approx(169_869_312e-12, rel=1e-9)
    i = next(i for i in range(len(table)) if (table.row(i)["recompute_layers"], table.row(i)["micro_batch"]) == (0, 1))
    assert table.row(i)["memory_per_chip"] == 4_164_352
    assert row_step(GPT, roomy, table, i, 32, 4).memory_per_chip == 4_164_352


def test_to_pandas_shows_no_internal_marker():
    """recompute_layers in to_pandas is what row() gives: N on block rows, missing (pd.NA) on rows
    whose every block runs under its mode (row(): None), never the search's internal -1."""
    pytest.importorskip("pandas")
    import pandas as pd

    from symcost import search

    table = search.parallelism(GPT, SMALL, num_chips=1, global_batch=4, seq_len=32)
    frame = table.to_pandas()
    assert str(frame["recompute_layers"].dtype) == "Int64"
    for i in range(len(table)):
        n = table.row(i)["recompute_layers"]
        assert (frame["recompute_layers"][i] is pd.NA) if n is None else frame["recompute_layers"][i] == n
    assert frame["recompute_layers"][0] == 2 and frame["recompute_layers"][1] is pd.NA


def test_the_recompute_axis_is_where_the_search_takes_it():
    """_RC_AXIS (the axis block recompute's siblings ignore) is the recompute modes' place among
    _Space._axes: 3 modes, 2 ZeRO stages, 1 overlap, so no other axis could pass for it."""
    from symcost.plan import search as s

    space = s._Space(GPT, 4, 8, 32, 8, 2, ("none", "selective", "full"), (1, 2), (False,))
    axes = space._axes(2, 2, 1, space.splits)
    assert len(axes) == len(s._AXES)
    assert axes[s._RC_AXIS].tolist() == [0, 1, 2]
    assert axes[s._AXES.index("zero_stage")].tolist() == [1, 2]
    assert axes[s._AXES.index("megatron_sp")].tolist() == [0, 1]


def test_the_counts_say_how_many_rows_block_recompute_added():
    """num_fit counts every ranked row, num_block the block-recompute rows among them (not among
    num_valid, which counts the enumeration): on SMALL (its comment) micro-batch 1 ranks N = 2 and
    full; at micro-batch 2 plain full peaks at 2 x (2,048 + 4 x 4,096) + 2 x 86,016 (b = 2: the mask,
    the 4 inputs and the rebuilt last block, each twice) = 208,896 B: 3,994,368 B fits, but its N = 1 (2 x 292,864
    B of activations) does not; micro-batch 4 fits nowhere. So 3 rows, 1 of them a block row."""
    from symcost import search

    table = search.parallelism(GPT, SMALL, num_chips=1, global_batch=4, seq_len=32)
    assert table.num_block == sum(r["recompute_layers"] is not None for r in table.rows()) == 1
    assert 3_785_472 + 2 * (2_048 + 4 * 4_096) + 2 * 86_016 == 3_994_368 <= 4_000_000
    assert table.num_fit == len(table) == 3
    assert table.row(2)["memory_per_chip"] == 3_994_368
    assert "3 fit (1 of them with block recompute)" in table.format().splitlines()[0]
    assert table.num_valid >= table.num_fit - table.num_block
