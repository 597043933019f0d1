"""FP8 training as Transformer Engine runs it (issue 22, item 3): the GEMMs in FP8, each input
cast in a pass of its own; the activations kept for the backward, the weights and every tensor
sent between chips in bf16 (TE's recipes: ``fp8_autocast`` changes the GEMMs, not the tensors
around them; Megatron-Core's pipeline sends and TP reduce-scatters carry bf16, TE's TP all-gathers
the FP8 casts it quantized before gathering: tests/layers/test_te_fp8_gather.py), and an FP8 copy of
each weight cached for the step's micro-batches (TE's ``is_first_microbatch`` weight cache)."""

from collections import Counter

from symcost import GatedMLPLayer, GroupedQueryAttentionLayer, hardware
from symcost.models.model import Model

H100 = hardware.get("H100_SXM")


def test_one_gated_mlp_layer_keeps_bf16_tensors_under_fp8():
    """h 1024, f 4096, TP 2 with Megatron SP, b 1, s 512. Transformer Engine's FP8 MLP saves the
    FP8 casts of its GEMMs' inputs (fc1's input, sequence-sharded: 256 x 1024 x 1 = 262,144 bytes;
    fc2's input, the product: 512 x 2048 x 1 = 1,048,576) and fc1's bf16 outputs, gate and up, for
    the fused SwiGLU's backward, which recomputes SiLU (2 x 512 x 2048 x 2 = 4,194,304): 5,505,024
    bytes; the bf16 layer (the same fused SwiGLU: input, gate, up, product, all bf16) saves
    2*512*1024/2 + 6*512*4096/2 = 6,815,744. Weights bf16 either way: 3*1024*4096/2 * 2 =
    12,582,912 bytes. The SP reduce-scatters carry the tokens in bf16: 512 x 1024 x 2 = 1,048,576
    bytes each; the all-gathers (fc1's input forward, fc2's output gradient backward, the backward's
    re-gather of fc1's saved input shard) carry the FP8 casts, as TE gathers them (layernorm_linear.py,
    ``gather_along_first_dim(..., quantizer=...)``): 512 x 1024 x 1 = 524,288 bytes. The GEMMs run
    at the FP8 rate: less compute time than bf16."""
    mlp = GatedMLPLayer(hidden_size=1024, intermediate_size=4096,
                        parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"})
    fp8 = mlp.compute_metrics(batch_size=1, seq_len=512, phase="training", dtype="fp8_e4m3", hardware=H100)
    bf16 = mlp.compute_metrics(batch_size=1, seq_len=512, phase="training", dtype="bf16", hardware=H100)
    assert fp8.activation_memory_per_chip == 262_144 + 1_048_576 + 4_194_304 == 5_505_024
    assert bf16.activation_memory_per_chip == 6_815_744
    assert fp8.weight_memory_per_chip == bf16.weight_memory_per_chip == 12_582_912
    # calls per (kind, payload): 3 FP8 all-gathers (fc1's input forward, its re-gather, fc2's output
    # gradient: per-tensor FP8, one usage each) and 2 bf16 reduce-scatters (fc2's output, fc1's input gradient)
    calls: Counter = Counter()
    for c in fp8.collectives:
        calls[(c.kind, int(c.payload_bytes))] += int(c.count)
    assert calls == Counter({("all_gather", 524_288): 3, ("reduce_scatter", 1_048_576): 2})
    assert fp8.compute_time < bf16.compute_time
    # full recomputation keeps the layer's bf16 input, as bf16 training does
    full = mlp.compute_metrics(batch_size=1, seq_len=512, phase="training", dtype="fp8_e4m3", recompute="full")
    assert full.activation_memory_per_chip == 256 * 1024 * 2
    # inference keeps an FP8 model's own bytes: FP8 weights
    prefill = mlp.compute_metrics(batch_size=1, seq_len=512, phase="prefill", dtype="fp8_e4m3")
    assert prefill.weight_memory_per_chip == 12_582_912 // 2


def test_one_attention_layer_under_fp8():
    """GQA, h 1024, 16 heads of 64, 4 KV heads, TP 2 with Megatron SP, flash, causal, b 1, s 512:
    per chip 8 query and 2 KV heads. Saved: the QKV GEMM's FP8 input (256 x 1024 x 1 = 262,144),
    the flash kernel's bf16 Q, K, V and O (512 x (8 + 2 + 2 + 8) x 64 x 2 = 1,310,720), the output
    projection's FP8 input, O cast (512 x 8 x 64 x 1 = 262,144), and the fp32 log-sum-exp
    (4 x 8 x 512 = 16,384): 1,851,392 bytes."""
    attn = GroupedQueryAttentionLayer(hidden_size=1024, num_heads=16, num_kv_heads=4, causal=True,
                                      parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"})
    fp8 = attn.compute_metrics(batch_size=1, seq_len=512, phase="training", dtype="fp8_e4m3")
    assert fp8.activation_memory_per_chip == 262_144 + 1_310_720 + 262_144 + 16_384 == 1_851_392


def test_training_step_holds_bf16_weights_and_an_fp8_copy():
    """A small Llama (h 1024, 16 heads, 4 KV heads, 8 layers, V 32000, f 4096) on one H100:
    P = 2 * 32000*1024 (embedding, head) + 8 * (1024*(1024 + 2*256) + 1024*1024 + 3*1024*4096
    + 2*1024) + 1024 = 65,536,000 + 8 * 15,206,400 + 1,024 = 187,188,224 parameters; weights
    in bf16, 374,376,448 bytes. Only the GEMM weights carry an FP8 copy (TE's Linear and
    LayerNormLinear/LayerNormMLP weights; the embedding is a lookup, the norms are no GEMMs, and
    Megatron-Core's output layer is its own ColumnParallelLinear, not TE's):
    8 * (1024*(1024 + 2*256) + 1024*1024 + 3*1024*4096) = 8 * 15,204,352 = 121,634,816 parameters.
    On Hopper the copy is 2 bytes each, the FP8 weight and its transpose (TE: "Hopper only supports
    TN GEMMs for FP8", transformer_engine/common/gemm/cublaslt_gemm.cu; the dgrad GEMM reads the
    weight's column-wise copy): 243,269,632 bytes, 617,646,080 in all. Fewer activations than the
    bf16 step's (FP8 GEMM inputs); the pipeline sends carry bf16 (the same time as the bf16 step's)."""
    model = Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=8, vocab_size=32000,
                        intermediate_size=4096)
    assert model.parameter_count == 187_188_224
    kw = dict(seq_len=2048, global_batch=8, micro_batch=1, parallelism={"pipeline_parallel": 2})
    fp8 = model.training_step(H100, dtype="fp8_e4m3", **kw)
    bf16 = model.training_step(H100, dtype="bf16", **kw)
    assert fp8.activation_memory < bf16.activation_memory
    assert fp8.pipeline_comm_time == bf16.pipeline_comm_time
    one = model.training_step(H100, seq_len=2048, global_batch=1, dtype="fp8_e4m3")
    assert one.weight_memory == 2 * 187_188_224 + 2 * 121_634_816 == 617_646_080
    assert one.gradient_memory == 4 * 187_188_224


def _small_llama():
    return Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=8, vocab_size=32000,
                       intermediate_size=4096)


def test_blackwell_keeps_one_fp8_copy_and_mxfp8_two():
    """The model above on one B200: 374,376,448 bytes of bf16 weights plus the GEMM weights'
    121,634,816 parameters in FP8. Blackwell runs FP8 GEMMs in any layout (TE cublaslt_gemm.cu:
    "Blackwell supports any GEMM layout for FP8"): one 1-byte copy, 496,011,264 bytes. MXFP8 scales
    blocks of 32 along the contraction dimension, so the dgrad GEMM needs its own column-wise
    quantization (TE's MXFP8Tensor keeps row-wise and column-wise data, each 8 bits plus an E8M0
    scale per 32 elements: 33/32 byte): 2 * 33/32 = 33/16 byte per parameter, 250,871,808 bytes,
    625,248,256 in all."""
    b200 = hardware.get("B200")
    fp8 = _small_llama().training_step(b200, seq_len=2048, global_batch=1, dtype="fp8_e4m3")
    assert fp8.weight_memory == 374_376_448 + 121_634_816 == 496_011_264
    mx = _small_llama().training_step(b200, seq_len=2048, global_batch=1, dtype="mxfp8")
    assert mx.weight_memory == 374_376_448 + 250_871_808 == 625_248_256
