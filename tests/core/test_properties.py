"""Property tests (Hypothesis): invariants that hold for every shape, phase and option."""

import pytest
import sympy as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st

import symcost as sc
from symcost import symbols as S
from symcost.core.metrics import METRIC_FIELDS
from symcost.hardware.cudnn import with_cudnn

PHASES = st.sampled_from(["prefill", "decode", "training"])
DTYPES = st.sampled_from(["fp32", "bf16", "fp8_e4m3", "int4"])
RECOMPUTE = st.sampled_from(["none", "selective", "full"])
POW2 = st.sampled_from([1, 2, 4, 8])

settings.register_profile("symcost", max_examples=40, deadline=None)
settings.load_profile("symcost")


@st.composite
def attention_shapes(draw):
    """(hidden, heads, kv_heads, t) with heads = kv_heads * group, all divisible by t."""
    t = draw(POW2)
    g = t * draw(st.sampled_from([1, 2]))
    a = g * draw(POW2)
    d = draw(st.integers(1, 32))
    return a * d, a, g, t


def attention_options():
    return st.fixed_dictionaries({
        "flash_attention": st.booleans(), "causal": st.booleans(),
        "bias": st.booleans(), "dropout": st.booleans(),
    })


@given(phase=PHASES, dtype=DTYPES, b=st.integers(1, 8), s=st.integers(1, 512),
       dp=POW2, pp=POW2, opts=attention_options(), shape=attention_shapes())
def test_degree_one_means_no_communication(phase, dtype, b, s, dp, pp, opts, shape):
    """With t = sp = 1 no layer communicates, whatever the data and pipeline degrees."""
    h, a, g, _ = shape
    par = {"data_parallel": dp, "pipeline_parallel": pp}
    layers = [sc.NormLayer(hidden_size=h, parallelism=par),
              sc.MLPLayer(hidden_size=h, intermediate_size=4 * h, parallelism=par),
              sc.GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=g,
                                            parallelism=par, **opts)]
    for layer in layers:
        m = layer.compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype=dtype)
        assert m.collectives == () and m.comm_bytes_per_chip == 0


@given(phase=PHASES, b=st.integers(1, 4), s=st.integers(1, 256), shape=attention_shapes(),
       opts=attention_options())
def test_per_chip_times_tp_is_total(phase, b, s, shape, opts):
    """Sharded terms: per-chip x t equals the unsharded total (g >= t, so nothing replicates)."""
    h, a, g, t = shape
    opts["bias"] = False  # the row-parallel bias is replicated by design
    one = sc.GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=g, **opts)
    many = sc.GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=g,
                                         parallelism={"tensor_parallel": t}, **opts)
    m1 = one.compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype="bf16")
    mt = many.compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype="bf16")
    for name in ("matmul_flops_per_chip", "weight_memory_per_chip", "kv_cache_memory_per_chip"):
        assert getattr(mt, name) * t == getattr(m1, name)
    mlp1 = sc.MLPLayer(hidden_size=h, intermediate_size=4 * h).compute_metrics(
        batch_size=b, seq_len=s, phase=phase, dtype="bf16")
    mlpt = sc.MLPLayer(hidden_size=h, intermediate_size=4 * h, parallelism={"tensor_parallel": t}
                       ).compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype="bf16")
    assert mlpt.matmul_flops_per_chip * t == mlp1.matmul_flops_per_chip
    assert mlpt.weight_memory_per_chip * t == mlp1.weight_memory_per_chip


@given(phase=PHASES, recompute=RECOMPUTE, shape=attention_shapes(), opts=attention_options(),
       sequence_parallel=st.sampled_from([1, "tp"]))
def test_gqa_with_all_kv_heads_is_mha(phase, recompute, shape, opts, sequence_parallel):
    """GQA with num_kv_heads = num_heads equals MHA in every field."""
    h, a, _, t = shape
    par = {"tensor_parallel": t, "sequence_parallel": sequence_parallel}
    mha = sc.AttentionLayer(hidden_size=h, num_heads=a, parallelism=par, **opts)
    gqa = sc.GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=a,
                                        parallelism=par, **opts)
    kw = {"batch_size": 2, "seq_len": 8 * t, "phase": phase, "recompute": recompute}
    assert mha.compute_metrics(**kw) == gqa.compute_metrics(**kw)


def _rule(chip: "sc.hardware.Hardware") -> str:
    """The all-reduce rule a symbolic chip takes from the chip it is bound to: vLLM's size switch,
    TensorRT-LLM 1.0's token switch (A100 under tensorrt-llm), else the fastest form (the neutral
    and NCCL profiles bind the engine's terms to oo)."""
    rule = chip.allreduce_rule
    return rule if rule in ("vllm", "trtllm-1.0") else "custom"


@given(phase=PHASES, recompute=RECOMPUTE, dtype=st.sampled_from(["fp32", "bf16", "fp8_e4m3"]),
       b=st.integers(1, 8), s=st.integers(1, 64), shape=attention_shapes(),
       opts=attention_options(), ffn=st.integers(1, 8), overlap=st.booleans(),
       chip=st.sampled_from(["H100_SXM", "MI300X", "B200", "H100_SXM:tensorrt-llm", "B200:vllm", "B200@9.13.1",
                             "H200_SXM:tensorrt-llm-0.x", "A100_SXM_80GB:tensorrt-llm"]), realistic=st.booleans(),
       top_k=st.sampled_from([2, 3]), ep=st.sampled_from([1, 2]))
def test_symbolic_evaluated_equals_numeric(phase, recompute, dtype, b, s, shape, opts, ffn,
                                           overlap, chip, realistic, top_k, ep):
    """Symbolic metrics on the symbolic chip, evaluated at a point and bound to a chip, equal
    the numeric call on that chip: every field, times included. The ideal symbolic chip binds
    the ideal chip; the realistic symbolic chip (every efficiency a symbol) the realistic one,
    under the neutral engine or another profile (its own chip fields, custom all-reduce, launch
    times without CUDA graphs; B200 under an older cuDNN: its flash backward's t_abwd and
    eta_abpk)."""
    name, _, engine = chip.partition(":")
    name, _, release = name.partition("@")
    if name == "A100_SXM_80GB" and dtype == "fp8_e4m3":
        return  # A100 has no FP8 peak
    preset = sc.hardware.get(name).with_runtime(engine) if engine else sc.hardware.get(name)
    if release:  # NB: a run's cuDNN (the flash backward's share and time per sequence and head, issue 22)
        preset = with_cudnn(preset, release)
    # NB: the symbolic chip takes the bound chip's tile shapes and GEMM scheduler (stream-K on
    # H100/H200, whole waves on A100 and under the 2023 profiles), as Hardware.symbolic says they must
    # and the bound engine's all-reduce rule with the GPU's compute capability (vLLM's size switch)
    symbolic_chip = sc.hardware.Hardware.symbolic(
        realistic=True, matmul_tile=preset.matmul_tile, matmul_tile_4bit=preset.matmul_tile_4bit,
        matmul_stream_k=preset.matmul_stream_k, allreduce=_rule(preset),
        compute_capability=preset.compute_capability,
        grouped_output=preset.grouped_gemm_output_efficiency is not None,
        moe_sort=preset.runtime.moe_sort) if realistic else None
    chip = preset if realistic else preset.ideal()
    if phase == "training" and dtype == "fp8_e4m3":
        return  # FP8 training has two byte counts (bf16 tensors, FP8 GEMMs): subs refuses one e
    h, a, g, t = shape
    s = s * t
    values = {S.batch_size: b, S.seq_len: s, S.hidden_size: h, S.num_heads: a,
              S.num_kv_heads: g, S.tp: t, S.intermediate_size: ffn * t, S.ep: ep}
    pairs = [
        (sc.GroupedQueryAttentionLayer(parallelism={"tensor_parallel": S.tp}, **opts),
         sc.GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=g,
                                       parallelism={"tensor_parallel": t}, **opts)),
        (sc.GatedMLPLayer(bias=opts["bias"], parallelism={"tensor_parallel": S.tp,
                                                          "sequence_parallel": "tp"}),
         sc.GatedMLPLayer(hidden_size=h, intermediate_size=ffn * t, bias=opts["bias"],
                          parallelism={"tensor_parallel": t, "sequence_parallel": "tp"})),
        (sc.NormLayer(kind="rmsnorm"), sc.NormLayer(hidden_size=h, kind="rmsnorm")),
        # the experts' grouped GEMMs: the second projection's scattered write where the chip sets
        # eta_ggout (H100, H200, B200), the tiled store where it does not (A100, MI300X); the
        # expert-map sort in one kernel up to 256 tokens (top-k 2) or always three (top-k 3)
        (sc.MoELayer(num_experts=4, top_k=top_k, parallelism={"tensor_parallel": S.tp}),
         sc.MoELayer(hidden_size=h, expert_intermediate_size=ffn * t, num_experts=4, top_k=top_k,
                     parallelism={"tensor_parallel": t})),
        # 512 experts, top-8, EP symbolic: 512 per rank at EP 1 (never the one-kernel sort), 256 at
        # EP 2 (one kernel up to 256 sorted rows, the ep*T rows of the EP group)
        (sc.MoELayer(num_experts=512, top_k=8, parallelism={"tensor_parallel": S.tp, "expert_parallel": S.ep}),
         sc.MoELayer(hidden_size=h, expert_intermediate_size=ffn * t, num_experts=512, top_k=8,
                     parallelism={"tensor_parallel": t, "expert_parallel": ep})),
    ]
    for symbolic, numeric in pairs:
        if isinstance(symbolic, sc.MoELayer) and realistic and symbolic_chip.structure.get("symm_allreduce") \
                and dtype != "bf16":
            continue  # NB: its all-reduce keeps no format under the symmetric-memory all-reduce: subs refuses it
        sym = symbolic.compute_metrics(phase=phase, recompute=recompute, overlap=overlap,
                                       hardware=symbolic_chip)
        num = numeric.compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype=dtype,
                                      recompute=recompute, hardware=chip, overlap=overlap)
        evaluated = sym.evaluate(values, dtype=dtype, hardware=chip)
        for name in METRIC_FIELDS:
            assert getattr(evaluated, name) == getattr(num, name), name
        assert evaluated.collectives == num.collectives
        assert evaluated.bound == num.bound


@given(n=st.sampled_from([1, 2, 4, 8, 16]), count=st.integers(1, 3),
       per_peer=st.one_of(st.sampled_from([16384, 16385, 2**19, 500_000, 2**20]), st.integers(1, 2**22)),
       chip=st.sampled_from(["H100_SXM", "B200", "A100_SXM_80GB", "MI300X", "H100_SXM:tensorrt-llm",
                             "H200_SXM:vllm", "B200:sglang", "A100_SXM_80GB:tensorrt-llm", "GB200:vllm",
                             "B300:tensorrt-llm", "TPU_V5P", "H200_SXM", "B300", "H100_SXM+kappa", "GB200+kappa"]),
       ideal=st.booleans(), tokens=st.one_of(st.none(), st.integers(1, 256)))
@example(n=8, count=1, per_peer=2**27, chip="H100_SXM+kappa", ideal=False, tokens=None)  # NVLS wins: 1 GiB
@example(n=8, count=2, per_peer=2**27, chip="H200_SXM", ideal=False, tokens=None)
@example(n=4, count=1, per_peer=2**22, chip="GB200+kappa", ideal=False, tokens=None)
@example(n=8, count=1, per_peer=500_000, chip="H100_SXM", ideal=False, tokens=None)  # NCCL: LL128 at 4 MB
@example(n=2, count=1, per_peer=2**19, chip="A100_SXM_80GB", ideal=False, tokens=None)  # NCCL: Simple at 1 MiB
def test_symbolic_collective_binds_to_the_numeric_one(n, per_peer, count, chip, ideal, tokens):
    """A collective timed on the realistic symbolic chip, bound to a chip, equals it timed on that
    chip, for every kind, inside one domain and across several (n = 16), on either side of the
    all-to-all's 16 KiB-per-peer protocol switch and for chips with and without all-to-all terms;
    under an engine profile its own all-reduce's one-shot and two-shot forms with their per-peer
    and two-shot latencies, under vLLM's its size switch (symmetric memory included), and with the
    tokens known TensorRT-LLM 1.0's token switch and its one-shot's block term (A100); NCCL's ring
    protocol as its own estimate picks it (LL, LL128 or Simple: a chip with a compute capability NCCL's
    tables cover; the sizes around its switches, 512 KiB to 1 MiB per peer, and 4 MB over 8 chips, where
    it runs LL128), a chip without LL terms (the ideal one) binding the symbolic chip's to oo; NVLink
    SHARP's bandwidth at NCCL's factor for the architecture (Hopper's, Blackwell's by compute
    capability, or a chip file's own: ``+kappa``, 1/2)."""
    from symcost.core.ops import Collective
    from symcost.hardware.timing import collective_time

    chip, _, own = chip.partition("+")
    name, _, engine = chip.partition(":")
    preset = sc.hardware.get(name).with_runtime(engine) if engine else sc.hardware.get(name)
    if own:
        preset = sc.hardware.Hardware(**{**{f: getattr(preset, f) for f in sc.hardware.Hardware.model_fields},
                                         "nvls_arch_efficiency": sp.Rational(1, 2)})
    preset = preset.ideal() if ideal else preset
    for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"):
        c = Collective(kind, "ep", n, n * per_peer, count=count, tokens=tokens)
        # NB: the symbolic chip of the preset's structure, as Hardware.symbolic documents (its
        # compute capability there where NCCL's ring rule or vLLM's switch reads it)
        symbolic = collective_time(c, sc.hardware.Hardware.symbolic(realistic=True, **preset.structure))
        assert symbolic.xreplace(preset.symbol_values("bf16")) == collective_time(c, preset), kind


@given(phase=st.sampled_from(["prefill", "training"]), s=st.integers(1, 1024),
       opts=attention_options(), shape=attention_shapes())
def test_flops_grow_with_seq_len(phase, s, opts, shape):
    """One more token costs strictly more FLOPs in every layer; one more key in decode
    attention too."""
    h, a, g, _ = shape
    layers = [sc.NormLayer(hidden_size=h), sc.MLPLayer(hidden_size=h, intermediate_size=2 * h),
              sc.GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=g, **opts)]
    for layer in layers:
        lo, hi = (layer.compute_metrics(batch_size=1, seq_len=n, phase=phase, dtype="bf16")
                  for n in (s, s + 1))
        assert hi.flops_per_chip > lo.flops_per_chip
    attn = layers[-1]
    lo, hi = (attn.compute_metrics(batch_size=1, seq_len=n, phase="decode", dtype="bf16")
              for n in (s, s + 1))
    assert hi.flops_per_chip > lo.flops_per_chip


def test_fp8_training_metrics_refuse_one_symbolic_e():
    """Training in FP8 keeps bf16 tensors and FP8 GEMMs (Transformer Engine): a symbolic e cannot
    stand for both; binding dtype="fp8_e4m3" is a one-line error, bf16 binds."""
    m = sc.GatedMLPLayer().compute_metrics(phase="training")
    with pytest.raises(ValueError, match="two byte counts"):
        m.subs(dtype="fp8_e4m3")
    m.subs(dtype="bf16")


@pytest.mark.parametrize("chip", ["H100_SXM", "B200"])
def test_symbolic_fp8_moe_binds_to_the_numeric_one(chip):
    """An FP8 MoE layer on the realistic symbolic chip (``grouped_gemm_efficiency_8bit`` bound
    through eta_gg, as quantize_bytes_8bit through q), evaluated and bound to a chip whose 8-bit
    grouped rate differs from its 16-bit one, equals the numeric call: the grouped GEMMs at the
    8-bit rate, the input's one cast (``experts_quantize``, Piecewise in e) at FP8 and none at bf16."""
    preset = sc.hardware.get(chip).with_efficiency(grouped_gemm_efficiency=1, grouped_gemm_efficiency_8bit=1.25)
    symbolic_chip = sc.hardware.Hardware.symbolic(
        realistic=True, matmul_tile=preset.matmul_tile, matmul_tile_4bit=preset.matmul_tile_4bit,
        matmul_stream_k=preset.matmul_stream_k, allreduce=_rule(preset), compute_capability=preset.compute_capability)
    sym = sc.MoELayer(num_experts=8, top_k=2).compute_metrics(phase="prefill", hardware=symbolic_chip)
    for dtype in ("fp8_e4m3", "bf16"):
        num = sc.MoELayer(hidden_size=1024, num_experts=8, top_k=2, expert_intermediate_size=512).compute_metrics(
            batch_size=2, seq_len=64, phase="prefill", dtype=dtype, hardware=preset)
        evaluated = sym.evaluate({S.batch_size: 2, S.seq_len: 64, S.hidden_size: 1024, S.intermediate_size: 512},
                                 dtype=dtype, hardware=preset)
        for name in METRIC_FIELDS:
            assert getattr(evaluated, name) == getattr(num, name), (dtype, name)
