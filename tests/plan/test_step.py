"""Training and inference steps: pipeline schedule, ZeRO memory, DP communication, MFU."""

from fractions import Fraction

import pytest
import sympy as sp

from symcost import hardware, models
from symcost import symbols as S
from symcost.models.model import Model

H100 = hardware.H100_SXM.ideal()  # step assembly derived by hand on the roofline (ideal) chip
# NVIDIA/nccl v2.30.7 src/graph/tuning.cc, hwLatencies, LL: 0.6 us per ring hop on NVLink, 2.7 us
# per ring hop between nodes
ALPHA, ALPHA_NET = Fraction(6, 10**7), Fraction(27, 10**7)
NVLINK, IB = 450 * 10**9, 50 * 10**9


def small_llama(layers=8):
    return Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=layers,
                       vocab_size=32000, intermediate_size=4096)


def test_pipeline_bubble_and_microbatches():
    """1F1B with v chunks: compute = (m + (p - 1)/v) * T_mb; bubble fraction (p - 1)/(v m)."""
    model = small_llama(layers=8)
    for v in (1, 2):
        st = model.training_step(H100, seq_len=2048, global_batch=32, micro_batch=2, interleave=v,
                                 parallelism={"pipeline_parallel": 4, "data_parallel": 2})
        assert st.num_microbatches == 32 // (2 * 2) == 8
        assert st.bubble_time == Fraction(3, v) * st.microbatch_time
        assert st.compute_time == (8 + Fraction(3, v)) * st.microbatch_time
        assert st.bubble_time / (st.compute_time - st.bubble_time) == Fraction(3, v * 8)


def test_microbatch_time_is_the_slower_stage():
    """T_mb is the slower of the first (embedding + L/p blocks) and last (L/p blocks + norm +
    head) stages, each the sum of its layers' training latencies."""
    model = small_llama(layers=8)
    par = {"pipeline_parallel": 2}
    st = model.training_step(H100, seq_len=1024, global_batch=4, micro_batch=1, parallelism=par)
    kw = {"batch_size": 1, "seq_len": 1024, "phase": "training", "dtype": "bf16", "hardware": H100}
    sharded = model.with_parallelism(par)
    block = sharded.blocks[0][0].compute_metrics(**kw).latency
    first = sharded.embedding.compute_metrics(**kw).latency + 4 * block
    last = 4 * block + sharded.final_norm.compute_metrics(**kw).latency + sharded.lm_head.compute_metrics(**kw).latency
    assert st.microbatch_time == max(first, last)


def test_stage_sends_by_hand():
    """p = 2, t = 2: 2 * m sends of b*s*h*e/t bytes each, α + bytes/link; the neighbouring stage
    is t * d * 2 = 8 chips away here, so the 8-GPU NVLink domain carries it."""
    model = small_llama(layers=4)
    st = model.training_step(H100, seq_len=1024, global_batch=8, micro_batch=2,
                             parallelism={"tensor_parallel": 2, "pipeline_parallel": 2, "data_parallel": 2})
    m = 8 // (2 * 2)
    payload = 2 * 1024 * 1024 * 2 // 2
    assert st.pipeline_comm_time == 2 * m * (ALPHA + Fraction(payload, NVLINK))


def test_interleaved_sends_overlap_but_the_fill_and_the_drain():
    """The same with v = 2 chunks per stage, m = 2: 2 v m = 8 sends without overlap; with Megatron's
    overlap_p2p_comm (on with virtual stages in Megatron-LM and Megatron-Bridge; pp_overlap, the
    default) each waits behind a chunk's compute but those of the fill and the drain: 2 (p - 1) = 2."""
    model = small_llama(layers=4)
    kw = dict(seq_len=1024, global_batch=8, micro_batch=2, interleave=2,
              parallelism={"tensor_parallel": 2, "pipeline_parallel": 2, "data_parallel": 2})
    send = ALPHA + Fraction(2 * 1024 * 1024 * 2 // 2, NVLINK)
    assert model.training_step(H100, **kw).pipeline_comm_time == 2 * send
    assert model.training_step(H100, pp_overlap=False, **kw).pipeline_comm_time == 8 * send
    # 1F1B without chunks: every send waits (Megatron batches them, synchronously)
    plain = dict(kw, interleave=1)
    assert model.training_step(H100, **plain).pipeline_comm_time == 2 * 2 * send


def test_interleaved_fill_and_drain_cross_every_stage_boundary_once():
    """p = 4 stages of 2 layers, v = 2 chunks, m = 16 micro-batches (t = 2, d = 1: the next stage
    is 2 chips on, inside the NVLink domain): micro-batch 0's first chunk crosses the 3 boundaries
    0 -> 1 -> 2 -> 3 in the fill with nothing to hide them, the last micro-batch's gradient the
    same 3 back in the drain: 2 (p - 1) = 6 sends exposed of the 2 v m = 64 (derivation at
    assemble_training's sends)."""
    model = small_llama(layers=8)
    kw = dict(seq_len=1024, global_batch=32, micro_batch=2, interleave=2,
              parallelism={"tensor_parallel": 2, "pipeline_parallel": 4})
    send = ALPHA + Fraction(2 * 1024 * 1024 * 2 // 2, NVLINK)
    assert model.training_step(H100, **kw).pipeline_comm_time == 6 * send
    assert model.training_step(H100, pp_overlap=False, **kw).pipeline_comm_time == 64 * send


def test_distributed_optimizer_is_six_plus_twelve_over_d_bytes_per_parameter():
    """ZeRO-1 (Megatron's distributed optimizer): weights 2 + fp32 grads 4 + Adam 12/d bytes per
    parameter; ZeRO-0: 18; ZeRO-2: 2 + 16/d; ZeRO-3: 18/d."""
    model = small_llama()
    params = model.parameter_count
    d = 4
    want = {0: 18, 1: 6 + Fraction(12, d), 2: 2 + Fraction(16, d), 3: Fraction(18, d)}
    for stage, per_param in want.items():
        st = model.training_step(H100, seq_len=512, global_batch=8, parallelism={"data_parallel": d},
                                 zero_stage=stage)
        assert st.weight_memory + st.gradient_memory + st.optimizer_memory == per_param * params


def test_dp_gradient_all_reduce_by_hand():
    """ZeRO-0 without overlap (Megatron-LM 2021): one ring all-reduce of 4 bytes per parameter
    over d = 4 (NVLink): α * 2(d - 1) + 2(d - 1)/d * 4P / 450 GB/s."""
    model = small_llama()
    P = model.parameter_count
    st = model.training_step(H100, seq_len=512, global_batch=8, parallelism={"data_parallel": 4},
                             zero_stage=0, dp_overlap=False)
    assert st.dp_comm_time == 6 * ALPHA + Fraction(6, 4) * 4 * P / NVLINK
    # d = 16 spans two nodes: the ring crosses between them twice per pass, so 2 of its 30 steps
    # are network hops; each node's 8 GPUs send over their 8 NICs, 8 * 50 = 400 GB/s
    st = model.training_step(H100, seq_len=512, global_batch=16, parallelism={"data_parallel": 16},
                             zero_stage=0, dp_overlap=False)
    assert st.dp_comm_time == 28 * ALPHA + 2 * ALPHA_NET + Fraction(30, 16) * 4 * P / (8 * IB)


def test_first_stage_holds_in_flight_microbatches():
    """1F1B: the first stage keeps min(p, m) micro-batches of its L/p blocks (plus embedding);
    interleaving multiplies that by 1 + (p - 1)/(p v). The last stage (k = p - 1) keeps one
    micro-batch, interleaved Megatron's warm-up 2(p - k - 1) + (v - 1) p chunks plus one: 5 chunks
    of half the stage at p = 4, v = 2, 5/2 of it (with the loss's fp32 logit gradient, 4 s V bytes,
    the fullest stage)."""
    model = small_llama(layers=8)
    kw = {"batch_size": 1, "seq_len": 1024, "phase": "training", "dtype": "bf16"}
    block = model.blocks[0][0].compute_metrics(**kw).activation_memory_per_chip
    emb = model.embedding.compute_metrics(**kw).activation_memory_per_chip
    last = (2 * block + model.lm_head.compute_metrics(**kw).activation_memory_per_chip
            + model.final_norm.compute_metrics(**kw).activation_memory_per_chip)
    for v, factor, last_factor in ((1, 1, 1), (2, 1 + Fraction(3, 8), Fraction(5, 2))):
        st = model.training_step(H100, seq_len=1024, global_batch=16, parallelism={"pipeline_parallel": 4},
                                 interleave=v)
        assert st.activation_memory == max((emb + 2 * block) * 4 * factor, last * last_factor)


def test_mfu_uses_narayanan_model_flops():
    """MFU = 72 B s l h^2 (1 + s/(6h) + V/(12 l h)) / (step time * chips * peak) for GPT."""
    gpt = Model.gpt(hidden_size=2048, num_heads=16, num_layers=8, vocab_size=51200, seq_len=2048)
    st = gpt.training_step(H100, seq_len=2048, global_batch=16, micro_batch=2,
                           parallelism={"tensor_parallel": 2, "data_parallel": 4}, recompute="full")
    B, s, n_layers, h, V = 16, 2048, 8, 2048, 51200
    flops = 72 * B * s * n_layers * h**2 * (1 + Fraction(s, 6 * h) + Fraction(V, 12 * n_layers * h))
    assert st.model_flops == flops
    assert st.mfu == flops / (st.step_time * 8 * H100.peak("bf16"))
    assert st.tokens_per_second == Fraction(B * s) / st.step_time


def test_training_step_symbolic():
    """Symbolic global batch: the step time is linear in it (m grows) and exact when bound."""
    model = small_llama()
    st = model.training_step(H100, seq_len=1024, global_batch=2 * S.batch_size, micro_batch=1,
                             parallelism={"data_parallel": 2})
    assert S.batch_size in sp.sympify(st.step_time).free_symbols
    numeric = model.training_step(H100, seq_len=1024, global_batch=8, micro_batch=1,
                                  parallelism={"data_parallel": 2})
    assert sp.sympify(st.step_time).xreplace({S.batch_size: 4}) == numeric.step_time


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"global_batch": 10, "parallelism": {"data_parallel": 4}}, "global_batch must be divisible"),
     ({"global_batch": 9, "parallelism": {"pipeline_parallel": 9}}, "pipeline_parallel must not exceed num_layers"),
     ({"global_batch": 8, "zero_stage": 4}, "zero_stage must be 0, 1, 2 or 3")],
)
def test_bad_training_inputs(kwargs, message):
    """Indivisible batches, more pipeline stages than layers and unknown ZeRO stages are clear
    errors (8 layers on 3 stages is legal: uneven stages, see test_step_parallelism.py)."""
    with pytest.raises(ValueError, match=message):
        small_llama().training_step(H100, seq_len=512, **kwargs)


def test_inference_step():
    """TTFT and TPOT are the sums of the layers' prefill and decode latencies (one stage);
    throughput is b / TPOT; memory is weights + KV cache + the largest activation peak."""
    model = models.get("llama-3-8b")
    inf = model.inference_step(H100, batch_size=4, seq_len=4096, parallelism={"tensor_parallel": 2})
    sharded = model.with_parallelism({"tensor_parallel": 2})
    kw = {"batch_size": 4, "seq_len": 4096, "dtype": "bf16", "hardware": H100}
    dec = sharded.compute_metrics(phase="decode", **kw)
    pre = sharded.compute_metrics(phase="prefill", **kw)
    assert inf.tpot == dec.latency and inf.ttft == pre.latency
    assert inf.tokens_per_second == Fraction(4) / dec.latency
    # KV: 2 * b * s * (8/2 heads) * 128 * 2 bytes * 32 layers
    assert inf.kv_cache_memory == 2 * 4 * 4096 * 4 * 128 * 2 * 32
    assert inf.memory_per_chip == dec.weight_memory_per_chip + inf.kv_cache_memory + inf.activation_memory
    assert inf.fits is True


def test_inference_pipeline_adds_stage_hops():
    """With p stages a token crosses p - 1 stage boundaries."""
    model = small_llama(layers=8)
    one = model.inference_step(H100, batch_size=2, seq_len=512)
    four = model.inference_step(H100, batch_size=2, seq_len=512, parallelism={"pipeline_parallel": 4})
    hop = ALPHA + Fraction(2 * 1024 * 2, NVLINK)  # b * h * e bytes per decode hop
    assert four.tpot == one.tpot + 3 * hop


def test_max_context_and_batch_are_verified_by_the_exact_step():
    """The largest context (and batch) that fits: the step at n fits, at n + 1 it does not."""
    model = models.get("llama-3-8b")
    r = model.max_context(H100, batch_size=2, parallelism={"tensor_parallel": 2})
    fits = [model.inference_step(H100, batch_size=2, seq_len=n, parallelism={"tensor_parallel": 2}).fits
            for n in (r.value, r.value + 1)]
    assert fits == [True, False]
    r = model.max_batch_size(H100, seq_len=8192)
    fits = [model.inference_step(H100, batch_size=n, seq_len=8192).fits for n in (r.value, r.value + 1)]
    assert fits == [True, False]
    # by hand, at seq_len 8192: weights 16,060,522,496 bytes; per sequence the KV cache
    # 2*8192*8*128*2*32 = 1,073,741,824 bytes and the largest prefill peak, a block's: its residual
    # stream 8192*4096*2 = 67,108,864 plus the MLP's 8192*(2*4096 + 2*14336)*2 = 603,979,776;
    # n = (80 GiB = 85,899,345,920 - 16,060,522,496) // 1,744,830,464 = 40
    assert r.value == (80 * 2**30 - 16_060_522_496) // (1_073_741_824 + 67_108_864 + 603_979_776) == 40


def test_mfu_does_not_depend_on_how_the_model_was_built():
    """MFU counts the whole model's FLOPs: a model built with TP gives the same MFU."""
    kw = {"hidden_size": 1024, "num_heads": 16, "num_kv_heads": 4, "num_layers": 4, "vocab_size": 32000,
          "intermediate_size": 4096}
    run = {"seq_len": 1024, "global_batch": 8, "parallelism": {"tensor_parallel": 2, "data_parallel": 2}}
    plain = Model.llama(**kw).training_step(H100, **run)
    prebuilt = Model.llama(parallelism={"tensor_parallel": 2}, **kw).training_step(H100, **run)
    assert plain.mfu == prebuilt.mfu and plain.model_flops == prebuilt.model_flops


def test_expert_parameters_are_sharded_over_dp_over_ep():
    """Mixtral, ep = 8 within dp = 8, ZeRO-1: each chip holds one expert per layer and keeps its
    whole Adam state (its expert is data-parallel over dp/ep = 1 rank); the dense parameters'
    Adam state is sharded 8 ways: 12 * E_c + 12 * D / 8 bytes."""
    model = models.get("mixtral-8x7b")
    st = model.training_step(H100, seq_len=4096, global_batch=8, parallelism={"expert_parallel": 8, "data_parallel": 8},
                             recompute="full", zero_stage=1)
    experts_per_chip = 32 * 3 * 4096 * 14336  # 32 layers x one expert of 3 h f_e
    dense = 46_702_792_704 - 32 * 8 * 3 * 4096 * 14336  # everything but the routed experts
    assert st.optimizer_memory == 12 * experts_per_chip + Fraction(12 * dense, 8)
    with pytest.raises(ValueError, match="data_parallel must be divisible by expert_parallel"):
        model.training_step(H100, seq_len=4096, global_batch=8, parallelism={"expert_parallel": 8})


def test_inference_hop_is_split_over_tp_and_ulysses_ranks():
    """Prefill crosses a stage boundary with b*s*h*e/(t*sp) bytes per rank."""
    model = small_llama(layers=8)
    par = {"sequence_parallel": 2}
    one = model.inference_step(H100, batch_size=1, seq_len=1024, parallelism=par)
    two = model.inference_step(H100, batch_size=1, seq_len=1024, parallelism={**par, "pipeline_parallel": 2})
    assert two.ttft - one.ttft == ALPHA + Fraction(1 * 1024 * 1024 * 2 // 2, NVLINK)


def test_zero_stage_must_be_an_int():
    """zero_stage=True is not stage 1."""
    with pytest.raises(ValueError, match="zero_stage must be 0, 1, 2 or 3"):
        small_llama().training_step(H100, seq_len=512, global_batch=8, zero_stage=True)


def test_llama3_405b_fits_80_gib_at_8k_without_recompute():
    """Meta trained Llama 3 405B at 8k without activation checkpointing on 80 GB H100s (The Llama 3
    Herd of Models, 2024, §3.3.2, Table 4: TP 8, CP 1, PP 16, DP 128, 16 sequences per DP rank).
    By hand, per layer and TP rank, bf16 (e = 2), Megatron SP (every saved tensor /t), flash
    attention, no dropout, h = 16384, s = 8192, a = 128, g = 8, d = 128, f = 53248, t = 8:
    attention half: the norm's input, the QKV GEMM's input (the norm's output), Q, O (also the
    output projection's input): 4 x 2sh; K, V at g heads 2 x 2sgd; the fp32 log-sum-exp 4as;
    MLP half: the norm's input, fc1's input 2 x 2sh; gate and up (the fused SwiGLU's saved input)
    2 x 2sf; the product (fc2's input) 2sf.
    Stages (7, 8 x 14, 7) (one layer less on the first and the last, as the paper says); 1F1B
    stage k holds min(p - k, m) micro-batches, m = 16: stage 1 holds 8 layers x 15 = 120 layer
    activations, more than stage 0's 7 x 16 = 112. Weights 6.4 GB, fp32 gradients 12.7 GB and the
    distributed optimizer's 0.3 GB beside them: 83.4 GB, under 80 GiB (85.9 GB)."""
    h, s, a, g, d, f, t = 16384, 8192, 128, 8, 128, 53248, 8
    layer = (4 * 2 * s * h + 2 * 2 * s * g * d + 4 * a * s      # attention half
             + 2 * 2 * s * h + 2 * 2 * s * f + 2 * s * f) // t  # MLP half
    assert layer == 533_200_896
    st = models.get("llama-3.1-405b").training_step(
        "H100_SXM", seq_len=8192, global_batch=16 * 128, micro_batch=1,
        parallelism={"tensor_parallel": 8, "sequence_parallel": "tp", "pipeline_parallel": 16,
                     "data_parallel": 128})
    assert st.stage_layers == (7,) + (8,) * 14 + (7,)
    assert st.activation_memory == 120 * layer
    assert st.memory_per_chip < 80 * 2**30


def test_llama3_405b_with_metas_fsdp_at_8k():
    """The same layout with Meta's FSDP over the 128 DP ranks (The Llama 3 Herd of Models, 2024,
    §3.3.2: "we shard optimizer states and gradients, but for model shards we do not reshard after
    forward computation"): symcost's ZeRO-2 with pipeline stages. Stage 1 (the fullest: 8 blocks,
    15 micro-batches in flight) holds per TP rank P = 8 x (attention (2 h^2 + 2 h g d)/t =
    71,303,168 + MLP 3 h f/t = 327,155,712 + two norms 2h = 32,768) = 3,187,933,184 parameters:
    bf16 weights 2P = 6,375,866,368 B, fp32 gradients 4P/128 = 99,622,912 B, Adam 12P/128 =
    298,868,736 B, activations 120 x 533,200,896 = 63,984,107,520 B (the test above): 70,758,465,536
    B = 70.8 GB, 12.6 GB under Megatron's distributed optimizer (whole fp32 gradients, 4P) and
    15.1 GB under 80 GiB."""
    P = 8 * (71_303_168 + 327_155_712 + 32_768)
    assert P == 3_187_933_184
    st = models.get("llama-3.1-405b").training_step(
        "H100_SXM", seq_len=8192, global_batch=16 * 128, micro_batch=1, zero_stage=2,
        parallelism={"tensor_parallel": 8, "sequence_parallel": "tp", "pipeline_parallel": 16,
                     "data_parallel": 128})
    assert (st.weight_memory, st.gradient_memory, st.optimizer_memory) == (2 * P, 4 * P // 128, 12 * P // 128)
    assert st.memory_per_chip == 2 * P + 4 * P // 128 + 12 * P // 128 + 120 * 533_200_896 == 70_758_465_536



def test_optimizer_step_reads_and_writes_its_shard_at_hbm_bandwidth():
    """The optimizer step, once per step, HBM-bound (Megatron-Core with the distributed
    optimizer, ZeRO-1 over d = 2): zeroing the whole fp32 gradient buffer (4 P bytes written,
    ``zero_grad_buffer``); on the shard of P/2 parameters the gradient norm's read of the fp32
    grads (4), Adam's read of grad, master weight and two moments (4 + 12) and write of master
    weight and moments (12), and the copy of the fp32 master weights into the bf16 model weights
    (read 4, write 2): 38 bytes per shard parameter. 4 P + 38 P/2 = 23 P bytes at 3.35 TB/s (the
    ideal chip's HBM). With bf16 gradients (grad_reduce_in_fp32=False): 2 P + (2 + 2 + 24 + 6) P/2
    = 19 P."""
    model = small_llama(layers=8)
    P = model.parameter_count() if callable(model.parameter_count) else model.parameter_count
    for fp32, per in ((True, 23), (False, 19)):
        st = model.training_step(H100, seq_len=2048, global_batch=8, micro_batch=1,
                                 parallelism={"data_parallel": 2}, grad_reduce_in_fp32=fp32)
        assert st.optimizer_time == Fraction(per * P, 3_350_000_000_000)
        assert st.step_time == st.compute_time + st.pipeline_comm_time + st.dp_comm_time + st.optimizer_time
