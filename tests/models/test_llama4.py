"""Llama 4 from its Hugging Face config (issue 20, item 15): Scout 17B-16E and Maverick 17B-128E.

Parameter counts derived by hand and equal to transformers' on the meta device, for the text
model (what symcost costs) and the whole ``Llama4ForConditionalGeneration`` checkpoint (text plus
the vision encoder and projector, :attr:`Model.checkpoint_parameter_count`); the layer pattern
(chunked RoPE layers, every 4th global NoPE, interleaved MoE); FLOPs against FlopCounterMode;
chunked attention's KV cache and a chunked prefill.
"""

from __future__ import annotations

import pytest

from symcost import models
from symcost.plan.inference import chunk_attention_time

# meta-llama/Llama-4-Scout-17B-16E's config.json (a gated repository): its text_config as mirrored
# by unsloth/Llama-4-Scout-17B-16E (code index: Llama4ScoutConfig tests), its vision_config as
# TensorRT-LLM's tests/unittest/_torch/modeling/test_modeling_llama_min_latency.py vendors
# Maverick's (the two share it; the 34 encoder layers restored where that test sets 0).
VISION = {"_attn_implementation_autoset": True, "attention_dropout": 0.0, "hidden_act": "gelu", "hidden_size": 1408,
          "image_size": 336, "initializer_range": 0.02, "intermediate_size": 5632, "model_type": "llama4_vision_model",
          "multi_modal_projector_bias": False, "norm_eps": 1e-05, "num_attention_heads": 16, "num_channels": 3,
          "num_hidden_layers": 34, "patch_size": 14, "pixel_shuffle_ratio": 0.5, "projector_dropout": 0.0,
          "projector_input_dim": 4096, "projector_output_dim": 4096, "rope_theta": 10000, "vision_feature_layer": -1,
          "vision_feature_select_strategy": "default", "vision_output_dim": 4096}
SCOUT_TEXT = {
    "attention_bias": False, "attention_chunk_size": 8192, "attention_dropout": 0.0, "bos_token_id": 200000,
    "eos_token_id": [200001, 200007, 200008], "for_llm_compressor": False, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 5120, "initializer_range": 0.02, "interleave_moe_layer_step": 1, "intermediate_size": 8192,
    "intermediate_size_mlp": 16384, "max_position_embeddings": 10485760, "model_type": "llama4_text",
    "no_rope_layers": [], "num_attention_heads": 40, "num_experts_per_tok": 1, "num_hidden_layers": 48,
    "num_key_value_heads": 8, "num_local_experts": 16, "output_router_logits": False, "pad_token_id": 200018,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0, "torch_dtype": "bfloat16",
    "use_cache": True, "use_qk_norm": True, "vocab_size": 202048, "attn_temperature_tuning": True,
    "floor_scale": 8192, "attn_scale": 0.1, "cache_implementation": "hybrid"}
SCOUT = {"architectures": ["Llama4ForConditionalGeneration"], "boi_token_index": 200080, "eoi_token_index": 200081,
         "image_token_index": 200092, "model_type": "llama4", "text_config": SCOUT_TEXT, "tie_word_embeddings": False,
         "torch_dtype": "bfloat16", "transformers_version": "4.51.0.dev0", "vision_config": VISION}
# meta-llama/Llama-4-Maverick-17B-128E's: as TensorRT-LLM's test vendors it (48 layers restored)
MAVERICK = {**SCOUT, "text_config": {
    **{k: v for k, v in SCOUT_TEXT.items() if k not in ("no_rope_layers", "attn_temperature_tuning", "floor_scale",
                                                        "attn_scale", "cache_implementation")},
    "interleave_moe_layer_step": 2, "num_local_experts": 128, "max_position_embeddings": 1048576,
    "use_qk_norm": False, "rope_scaling": None}}

H, A, G, D, F, F_MLP, V = 5120, 40, 8, 128, 8192, 16384, 202048
ATTENTION = 2 * H * (A + G) * D            # Q, O 2 h a d; K, V 2 h g d; no biases; weightless Q/K norms
ENDS = 2 * V * H + H                       # untied embedding and LM head, the final RMSNorm


def _moe(experts):
    """E SwiGLU experts 3 h f, the router h E (no bias), one ungated shared expert 3 h f."""
    return experts * 3 * H * F + H * experts + 3 * H * F


def test_scout_text_parameters():
    """48 MoE layers of 16 experts: 62,914,560 + 2,139,176,960 + 2h per layer, 107,769,861,120 in all
    (the model card's 109B less the vision encoder)."""
    layer = ATTENTION + _moe(16) + 2 * H
    assert layer == 2_202_101_760
    assert models.from_hf_config(SCOUT).parameter_count == 48 * layer + ENDS == 107_769_861_120


def test_maverick_text_parameters():
    """24 MoE layers of 128 experts alternating with 24 dense SwiGLU MLPs of 16,384 (3 h f_mlp):
    400,711,848,960 (the model card's 400B total)."""
    moe, dense = ATTENTION + _moe(128) + 2 * H, ATTENTION + 3 * H * F_MLP + 2 * H
    assert models.from_hf_config(MAVERICK).parameter_count == 24 * (moe + dense) + ENDS == 400_711_848_960


def test_vision_parameters_by_hand():
    """Llama4VisionModel at H 1408, F 5632, 34 layers, 336-pixel images in 14-pixel patches (577
    positions with the class token): patch, class, positions and two LayerNorms 1,647,360; per layer
    Q K V O with biases 4(H^2 + H), the MLP with biases 2HF + F + H, two LayerNorms 4H, 23,807,872;
    the pixel-shuffle adapter 5632 x 4096 + 4096^2; the projector 4096 x 5120."""
    h, f = 1408, 5632
    embed = 3 * 14 * 14 * h + h + 577 * h + 4 * h
    layer = 4 * (h * h + h) + 2 * h * f + f + h + 4 * h
    total = embed + 34 * layer + f * 4096 + 4096 * 4096 + 4096 * H
    assert (embed, layer, total) == (1_647_360, 23_807_872, 871_932_416)
    for config in (SCOUT, MAVERICK):
        model = models.from_hf_config(config)
        assert model.vision_parameters == total
        assert model.checkpoint_parameter_count == model.parameter_count + total


def _meta_counts(config):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoConfig.for_model("llama4", **{k: v for k, v in config.items() if k != "model_type"})
    with torch.device("meta"):
        model = transformers.Llama4ForConditionalGeneration(hf)
    whole = sum(p.numel() for p in model.parameters())
    return whole, sum(p.numel() for p in model.language_model.parameters())


@pytest.mark.parametrize("config", [SCOUT, MAVERICK], ids=["scout", "maverick"])
def test_transformers_counts_the_same(config):
    """transformers 5.25 on the meta device: the whole checkpoint 108,641,793,536 (Scout) and
    401,583,781,376 (Maverick), its language model the text counts above."""
    whole, text = _meta_counts(config)
    model = models.from_hf_config(config)
    assert (model.checkpoint_parameter_count, model.parameter_count) == (whole, text)


def test_text_only_config_loads_alone():
    """A llama4_text config (Llama4ForCausalLM) is the same text model, without a vision part."""
    text = models.from_hf_config(SCOUT_TEXT)
    assert text.parameter_count == 107_769_861_120 and text.vision_parameters is None
    assert text.max_position_embeddings == 10485760


def _layers(model):
    return [(blk.attention.attention_chunk, blk.attention.qk_norm, type(blk.mlp).__name__)
            for blk, n in model.blocks for _ in range(n)]


def test_layer_pattern():
    """Llama4TextConfig: layer i is NoPE (global attention, no Q/K norm) when 4 divides i + 1, else
    chunked over 8192 with weightless Q/K norms; Maverick's MoE on odd layers (step 2), dense on
    even ones, and no Q/K norms."""
    scout = _layers(models.from_hf_config(SCOUT))
    assert len(scout) == 48
    assert scout[:4] == [(8192, "weightless", "MoELayer")] * 3 + [(None, False, "MoELayer")]
    assert scout == scout[:4] * 12
    maverick = _layers(models.from_hf_config(MAVERICK))
    assert maverick[:4] == [(8192, False, "GatedMLPLayer"), (8192, False, "MoELayer"),
                            (8192, False, "GatedMLPLayer"), (None, False, "MoELayer")]
    assert maverick == maverick[:4] * 12


def test_moe_is_top1_with_a_shared_expert():
    block = models.from_hf_config(SCOUT).blocks[0][0]
    moe = block.mlp
    assert (moe.num_experts, moe.top_k, moe.num_shared_experts, moe.shared_intermediate_size) == (16, 1, 1, 8192)
    assert not moe.router_bias and not moe.shared_gate and not moe.expert_bias


def test_kv_cache_holds_one_chunk_on_chunked_layers():
    """Decode at 131,072 tokens, one sequence, bf16: 36 chunked layers hold 8,192 tokens, 12 global
    ones all 131,072; 2 x 8 KV heads x 128 x 2 bytes per token and layer."""
    m = models.from_hf_config(SCOUT).compute_metrics(batch_size=1, seq_len=131072, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == (36 * 8192 + 12 * 131072) * 2 * 8 * 128 * 2 == 7_650_410_496


def test_chunked_prefill_in_attention_chunks_adds_no_attention():
    """Prefill chunks of 8,192 tokens, each exactly one attention chunk: a chunked core after k
    earlier keys, k a multiple of 8192, reads ``kv - c floor((kv - q)/c) = q`` keys and keeps the
    same ``q(q+1)/2`` pairs as the chunk alone, so the earlier keys add no time (0 exactly); a
    global layer's core does add time."""
    from symcost import hardware
    from symcost.core.dtypes import DataType
    from symcost.models.llama4 import llama4

    bf16 = DataType.parse("bf16")

    chip = hardware.get("h100")
    kw = dict(hidden_size=H, num_heads=A, num_kv_heads=G, head_dim=D, vocab_size=V, intermediate_size=F,
              intermediate_size_mlp=F_MLP, num_experts=16, top_k=1)
    chunked = llama4(layers=[(8192, True, True)] * 2, **kw).breakdown(1, 8192, "prefill", "bf16", chip)
    assert chunk_attention_time(chunked, 0, 4, 8192, chip, chip.effective_peak(bf16), bf16) == 0
    full = llama4(layers=[(None, False, True)] * 2, **kw).breakdown(1, 8192, "prefill", "bf16", chip)
    assert chunk_attention_time(full, 0, 4, 8192, chip, chip.effective_peak(bf16), bf16) > 0


@pytest.mark.parametrize(("change", "message"), [
    ({"layer_types": ["chunked_attention"] * 3}, "layer_types must list 48 entries"),
    ({"no_rope_layers": [2] * 48}, "no_rope_layers must list 48 entries"),
    ({"moe_layers": [48]}, "moe_layers must list layer indices below num_hidden_layers"),
    ({"num_experts_per_tok": 17}, "num_experts_per_tok \\(17\\) must not exceed num_local_experts \\(16\\)"),
    ({"router_jitter_noise": 0.1}, "router_jitter_noise = 0.1 is not modelled"),
    ({"attention_chunk_size": None, "layer_types": ["chunked_attention"] * 48}, "attention_chunk_size is null"),
    ({"unknown_knob": 1}, "unknown key 'unknown_knob'"),
])
def test_bad_text_keys(change, message):
    with pytest.raises(models.ConfigError, match=message):
        models.from_hf_config({**SCOUT, "text_config": {**SCOUT_TEXT, **change}})


def test_bad_vision_and_outer_keys():
    with pytest.raises(models.ConfigError, match="vision_config: unknown key 'mystery'"):
        models.from_hf_config({**SCOUT, "vision_config": {**VISION, "mystery": 1}})
    with pytest.raises(models.ConfigError, match="text_config.model_type must be 'llama4_text'"):
        models.from_hf_config({**SCOUT, "text_config": {**SCOUT_TEXT, "model_type": "llama"}})
    with pytest.raises(models.ConfigError, match="tie_word_embeddings = true on the llama4 config"):
        models.from_hf_config({**SCOUT, "tie_word_embeddings": True})


TINY = {**SCOUT_TEXT, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "num_hidden_layers": 4, "vocab_size": 128, "intermediate_size": 32, "intermediate_size_mlp": 48,
        "num_local_experts": 4, "interleave_moe_layer_step": 2, "attention_chunk_size": 8, "pad_token_id": 0,
        "bos_token_id": 1, "eos_token_id": 2, "rope_scaling": None, "_attn_implementation": "eager"}


def test_flop_counter_matches_on_a_tiny_variant():
    """As tests/models/test_hf_more.py, b = 1, s = 16 (two attention chunks of 8): symcost's matmul
    FLOPs (causal=False: eager attention computes the whole square, chunk mask or not) plus the 15
    logits symcost's prefill does not compute (2 x 15 x h x V) plus the experts transformers runs
    and top-1 routing does not: Llama4TextMoe sends every token through all E = 4 experts (the
    unpicked with a zero score), so 2 MoE layers x 3 experts x 3 matmuls x 2 T h f = 1,179,648
    forward, 3x that with the backward."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from test_hf_more import _torch_flops

    forward, training = _torch_flops(TINY, torch, transformers)
    model = models.from_hf_config(TINY, causal=False)
    dense_experts = 2 * 3 * 3 * 2 * 16 * 64 * 32
    assert dense_experts == 1_179_648
    ours = model.compute_metrics(batch_size=1, seq_len=16, phase="prefill", dtype="fp32").matmul_flops_per_chip
    assert ours + 2 * 15 * 64 * 128 + dense_experts == forward
    train = model.compute_metrics(batch_size=1, seq_len=16, phase="training", dtype="fp32").matmul_flops_per_chip
    assert train + 3 * dense_experts == training


def test_vision_defaults_are_the_config_class():
    """hf_defaults.VISION_DEFAULTS equals Llama4VisionConfig's field defaults, and a llama4 config
    without vision_config counts transformers' default encoder."""
    import dataclasses

    transformers = pytest.importorskip("transformers")
    from symcost.models.hf_defaults import VISION_DEFAULTS

    fields = {f.name: f.default for f in dataclasses.fields(transformers.Llama4VisionConfig)}
    assert {k: fields[k] for k in VISION_DEFAULTS} == VISION_DEFAULTS
    bare = {k: v for k, v in SCOUT.items() if k != "vision_config"}
    bare["text_config"] = {**SCOUT_TEXT, "num_hidden_layers": 2}
    whole, _ = _meta_counts(bare)
    assert models.from_hf_config(bare).checkpoint_parameter_count == whole
