"""More Hugging Face architectures: gpt2, gpt_neox, falcon, phi3, qwen3, qwen3_moe, gemma2,
deepseek_v2. Each published config.json (tests/models/hf_configs.py, whole) loads with its
published parameter count; the features each type adds are checked by hand-derived values.

Development cross-check: transformers 5.24.0 (a separate venv) instantiated every config below
on the meta device and counted the same parameters (unique tensors) as symcost, for all nine
configs; ``test_transformers_counts_the_same`` repeats that wherever the installed transformers
knows the type.
"""

from __future__ import annotations

import pytest
from hf_configs import (
    DEEPSEEK_V2_LITE,
    FALCON_7B,
    FALCON_40B,
    GEMMA2_9B,
    GPT2,
    GPT_NEOX_20B,
    PHI3_MINI_4K,
    QWEN3_8B,
    QWEN3_30B_A3B,
)

from symcost import Model, models
from symcost.models import ConfigError

PUBLISHED = [
    # https://huggingface.co/openai-community/gpt2: "124M" on the model card; exactly
    # 12 L h^2 + 13 L h + (V + P) h + 2h = 124,439,808 (L 12, h 768, V 50257, P 1024, tied)
    (GPT2, 124_439_808),
    # https://huggingface.co/Qwen/Qwen3-8B model card: 8.2B parameters; 8,190,735,360 exactly
    (QWEN3_8B, 8_190_735_360),
    # https://huggingface.co/microsoft/Phi-3-mini-4k-instruct model card: 3.8B; 3,821,079,552 exactly
    (PHI3_MINI_4K, 3_821_079_552),
    # https://huggingface.co/google/gemma-2-9b: 9.24B params on the Hub page; 9,241,705,984 exactly
    (GEMMA2_9B, 9_241_705_984),
    # https://huggingface.co/EleutherAI/gpt-neox-20b model card and Black et al. 2022 (arXiv:2204.06745):
    # 20,554,567,680 parameters
    (GPT_NEOX_20B, 20_554_567_680),
    # https://huggingface.co/Qwen/Qwen3-30B-A3B model card: 30.5B in total (3.3B activated);
    # 30,532,122,624 exactly
    (QWEN3_30B_A3B, 30_532_122_624),
    # https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite model card: 15.7B total (2.4B activated);
    # 15,706,484,224 exactly
    (DEEPSEEK_V2_LITE, 15_706_484_224),
    # https://huggingface.co/tiiuae/falcon-7b shows 7.22B params: the safetensors store the tied
    # LM head as its own tensor, lm_head.weight; the model (FalconForCausalLM ties it) has
    # 7,217,189,760 - 65,024 x 4,544 = 6,921,720,704 (see test_falcon_hub_counts_the_tied_head_twice)
    (FALCON_7B, 6_921_720_704),
    # https://huggingface.co/tiiuae/falcon-40b shows 41.8B params, likewise with the head stored
    # twice: 41,835,970,560 - 65,024 x 8,192 = 41,303,293,952
    (FALCON_40B, 41_303_293_952),
]

IDS = [f"{config['model_type']}-{count}" for config, count in PUBLISHED]


@pytest.mark.parametrize(("config", "count"), PUBLISHED, ids=IDS)
def test_published_configs_load_with_the_published_count(config, count):
    """Every key of each published file is modelled or known cost-free."""
    assert models.from_hf_config(config).parameter_count == count


def kw(seq_len, phase="decode", batch_size=1):
    return {"batch_size": batch_size, "seq_len": seq_len, "phase": phase, "dtype": "bf16"}


# -- gpt2 -------------------------------------------------------------------------------------

def test_gpt2_learned_positions_and_tied_head():
    """n_positions 2048: 1024 more position rows of 768; an untied head adds 50257 x 768."""
    assert models.from_hf_config({**GPT2, "n_positions": 2048}).parameter_count == 124_439_808 + 1024 * 768
    untied = models.from_hf_config({**GPT2, "tie_word_embeddings": False})
    assert untied.parameter_count == 124_439_808 + 50257 * 768


def test_gpt2_dropout_follows_the_rates():
    """The published rates (0.1) switch dropout on in the embedding, attention and MLP; zeros
    switch it off: a training step of 1 x 1024 tokens then drops 12 layers x (the attention
    probabilities of 12 heads over the 1024 x 1025 / 2 causal pairs a fused kernel computes, and
    two outputs 2 x 1024 x 768) + the embedding's 1024 x 768 dropout passes, at 2 FLOPs per
    element forward and 4 backward."""
    on = models.from_hf_config(GPT2)
    off = models.from_hf_config({**GPT2, "attn_pdrop": 0.0, "resid_pdrop": 0.0, "embd_pdrop": 0})
    block = on.blocks[0][0]
    assert block.attention.dropout and block.mlp.dropout and on.embedding.dropout
    elements = 12 * (12 * 1024 * 1025 // 2 + 2 * 1024 * 768) + 1024 * 768
    diff = on.compute_metrics(**kw(1024, "training")).flops_per_chip - off.compute_metrics(
        **kw(1024, "training")).flops_per_chip
    assert diff == 6 * elements == 571_392_000


def test_gpt2_is_layernorm_with_biases():
    """12 LayerNorm blocks: attention and MLP biased, 4h GELU MLP, MHA over 64-wide heads."""
    block = models.from_hf_config(GPT2).blocks[0][0]
    assert (block.norm_kind, block.attention.bias, block.mlp.bias, block.mlp.activation) == (
        "layernorm", True, True, "gelu")
    assert block.mlp.intermediate_size == 4 * 768 and block.attention.d == 64


# -- qwen3 ------------------------------------------------------------------------------------

def test_qwen3_norms_each_q_and_k_head():
    """q_norm and k_norm: 2 x 128 weights per layer (36 x 256 = 9,216 in all), and a decode
    step normalises (32 + 8) x 128 elements per layer at 4 FLOPs: 36 x 20,480 = 737,280."""
    qwen3 = models.from_hf_config(QWEN3_8B)
    plain = Model.llama(hidden_size=4096, num_heads=32, num_kv_heads=8, num_layers=36, vocab_size=151936,
                               intermediate_size=12288, head_dim=128)
    assert qwen3.parameter_count - plain.parameter_count == 36 * 256
    diff = qwen3.compute_metrics(**kw(4096)).flops_per_chip - plain.compute_metrics(**kw(4096)).flops_per_chip
    assert diff == 36 * (32 + 8) * 128 * 4 == 737_280


def test_qwen3_attention_bias_biases_every_projection():
    """attention_bias: Q, K, V ((32 + 2 x 8) x 128) and O (4096) biases per layer."""
    model = models.from_hf_config({**QWEN3_8B, "attention_bias": True})
    assert model.parameter_count == 8_190_735_360 + 36 * ((32 + 16) * 128 + 4096)


# -- phi3 -------------------------------------------------------------------------------------

def test_phi3_slides_every_layer():
    """sliding_window 2047 on all 32 layers: at 4,096 tokens the cache keeps 2,047:
    32 x 2 x 32 KV heads x 96 x 2 bytes x 2047 = 804,913,152 bytes."""
    m = models.from_hf_config(PHI3_MINI_4K).compute_metrics(**kw(4096))
    assert m.kv_cache_memory_per_chip == 32 * 2 * 32 * 96 * 2 * 2047 == 804_913_152


def test_phi3_dropout_is_refused():
    with pytest.raises(ConfigError, match="resid_pdrop = 0.1 is not modelled"):
        models.from_hf_config({**PHI3_MINI_4K, "resid_pdrop": 0.1})


# -- gemma2 -----------------------------------------------------------------------------------

def test_gemma2_alternates_sliding_and_global_layers():
    """Even layers slide over 4,096 keys, odd ones attend globally: at 8,192 tokens 21 layers
    keep 4,096 tokens and 21 keep 8,192, each 2 x 8 x 256 x 2 = 8,192 bytes per token:
    8192 x 21 x (4096 + 8192) = 2,113,929,216 bytes."""
    model = models.from_hf_config(GEMMA2_9B)
    windows = [blk.attention.window for blk, _ in model.blocks]
    assert windows[:4] == [4096, None, 4096, None] and len(windows) == 42
    assert model.compute_metrics(**kw(8192)).kv_cache_memory_per_chip == 8192 * 21 * 12288 == 2_113_929_216


def test_gemma2_block_is_geglu_with_four_norms_and_a_tied_head():
    """Pre- and post-norms around attention and MLP, a gated GELU MLP (hidden_activation; the
    unused hidden_act does not change it), the LM head tied (Gemma2Config's default)."""
    model = models.from_hf_config({**GEMMA2_9B, "hidden_act": "silu"})
    block = model.blocks[0][0]
    assert (block.num_norms, block.mlp.activation, block.mlp.gated, model.lm_head.tied) == (4, "gelu", True, True)
    assert block.attention.d == 256


def test_gemma2_layer_types_override_the_alternation():
    types = ["full_attention"] * 42
    model = models.from_hf_config({**GEMMA2_9B, "layer_types": types})
    assert len(model.blocks) == 1 and model.blocks[0][0].attention.window is None


# -- gpt_neox ---------------------------------------------------------------------------------

def test_gpt_neox_parallel_residual_changes_no_count():
    """use_parallel_residual: attention and MLP side by side, the same parameters and FLOPs
    (see tests/models/test_block_variants.py); rotary_pct (partial RoPE) is cost-free."""
    par = models.from_hf_config(GPT_NEOX_20B)
    seq = models.from_hf_config({**GPT_NEOX_20B, "use_parallel_residual": False, "rotary_pct": 1.0})
    assert par.blocks[0][0].parallel and not seq.blocks[0][0].parallel
    assert par.parameter_count == seq.parameter_count
    assert par.compute_metrics(**kw(2048, "prefill")).flops_per_chip == seq.compute_metrics(
        **kw(2048, "prefill")).flops_per_chip


def test_gpt_neox_attention_bias_off():
    """attention_bias false drops the QKV (3 x 6144) and dense (6144) biases: 44 x 24,576."""
    model = models.from_hf_config({**GPT_NEOX_20B, "attention_bias": False})
    assert model.parameter_count == 20_554_567_680 - 44 * 4 * 6144


# -- falcon -----------------------------------------------------------------------------------

def test_falcon_hub_counts_the_tied_head_twice():
    """Untied, the counts are the Hub pages' 7.22B and 41.8B."""
    assert models.from_hf_config({**FALCON_7B, "tie_word_embeddings": False}).parameter_count == 7_217_189_760
    assert models.from_hf_config({**FALCON_40B, "tie_word_embeddings": False}).parameter_count == 41_835_970_560


def test_falcon_kv_heads():
    """falcon-7b is multi-query: at 2,048 tokens 32 x 2 x 1 x 64 x 2 x 2048 = 16,777,216 bytes of
    cache; falcon-40b keeps 8 KV heads: 60 x 2 x 8 x 64 x 2 x 2048 = 251,658,240."""
    assert models.from_hf_config(FALCON_7B).compute_metrics(**kw(2048)).kv_cache_memory_per_chip == 16_777_216
    assert models.from_hf_config(FALCON_40B).compute_metrics(**kw(2048)).kv_cache_memory_per_chip == 251_658_240


def test_falcon_norm_layouts():
    """falcon-7b: one norm shared by attention and MLP; falcon-40b: two side by side; with
    parallel_attn false the sequential pre-norm block (two norms)."""
    blocks = [models.from_hf_config(c).blocks[0][0] for c in
              (FALCON_7B, FALCON_40B, {**FALCON_7B, "parallel_attn": False})]
    assert [(b.parallel, b.num_norms) for b in blocks] == [(True, 1), (True, 2), (False, 2)]
    # the second LayerNorm (2 x 4544 per layer) of the sequential layout
    assert models.from_hf_config({**FALCON_7B, "parallel_attn": False}).parameter_count == 6_921_720_704 + 32 * 9088


# -- qwen3_moe --------------------------------------------------------------------------------

def test_qwen3_moe_dense_layers():
    """mlp_only_layers [0]: layer 0 trades 128 experts (3 x 2048 x 768 each) and the router
    (2048 x 128) for a dense MLP of 3 x 2048 x 6144."""
    model = models.from_hf_config({**QWEN3_30B_A3B, "mlp_only_layers": [0]})
    expected = 30_532_122_624 - (128 * 3 * 2048 * 768 + 2048 * 128) + 3 * 2048 * 6144
    assert model.parameter_count == expected
    stepped = models.from_hf_config({**QWEN3_30B_A3B, "decoder_sparse_step": 2})  # MoE on layers 1, 3, ...
    assert [blk.mlp.num_routed_experts for blk, _ in stepped.blocks[:2]] == [None, 128]


# -- deepseek_v2 ------------------------------------------------------------------------------

def test_deepseek_v2_router_has_no_score_bias():
    """DeepSeek-V3's router adds a score-correction bias of E per MoE layer; V2 has none: read as
    deepseek_v3, V2-Lite gains 26 MoE layers x 64 experts."""
    as_v3 = models.from_hf_config({**DEEPSEEK_V2_LITE, "model_type": "deepseek_v3"})
    assert as_v3.parameter_count - 15_706_484_224 == 26 * 64


# -- errors -----------------------------------------------------------------------------------

BAD = [
    ({**GPT2, "attn_pdrop": 0.0}, "attn_pdrop and resid_pdrop must be both zero or both non-zero"),
    ({**GPT2, "add_cross_attention": True}, "add_cross_attention"),
    ({**GPT2, "resid_pdrop": 1.5}, r"resid_pdrop must be a number in \[0, 1\)"),
    ({**GPT2, "activation_function": "quick_gelu"}, "activation_function 'quick_gelu' is not modelled"),
    ({**GPT_NEOX_20B, "hidden_dropout": 0.1}, "hidden_dropout"),
    ({**FALCON_7B, "alibi": True}, "alibi = true is not modelled"),
    ({**FALCON_40B, "num_kv_heads": 7}, r"num_attention_heads \(128\) must be divisible by num_kv_heads \(7\)"),
    ({**FALCON_40B, "num_ln_in_parallel_attn": 3}, "num_ln_in_parallel_attn must be 1 or 2"),
    ({**QWEN3_30B_A3B, "use_sliding_window": True}, "use_sliding_window = true is not modelled"),
    ({**QWEN3_30B_A3B, "num_experts_per_tok": 129}, "num_experts_per_tok"),
    ({**GEMMA2_9B, "mystery": 1}, "unknown key 'mystery'"),
    ({**PHI3_MINI_4K, "use_parallel_residual": True}, "use_parallel_residual is not read by model_type 'phi3'"),
]


@pytest.mark.parametrize(("config", "message"), BAD)
def test_bad_configs_are_one_line_errors(config, message):
    with pytest.raises(ConfigError, match=message) as info:
        models.from_hf_config(config)
    assert "\n" not in str(info.value)


def test_unknown_model_type_lists_the_supported_ones_on_one_line():
    with pytest.raises(ConfigError) as info:
        models.from_hf_config({"model_type": "t5"})
    assert str(info.value) == ("config: unsupported model_type 't5'; supported: llama, mistral, mixtral, qwen2, "
                               "qwen3, qwen3_moe, qwen2_moe, phi3, gpt_oss, gemma2, deepseek_v2, deepseek_v3, "
                               "gpt2, gptj, llama4_text, llama4, gpt_neox, falcon")


# -- optional: transformers' own count --------------------------------------------------------

@pytest.mark.parametrize(("config", "count"), PUBLISHED, ids=IDS)
def test_transformers_counts_the_same(config, count):
    """Where the installed transformers knows the type: its model, built on the meta device,
    has the published count of unique parameters (a tied head counted once)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fields = {k: v for k, v in config.items() if k not in ("model_type", "auto_map")}
    try:
        hf_config = transformers.AutoConfig.for_model(config["model_type"], **fields)
    except (KeyError, ValueError):
        pytest.skip(f"transformers {transformers.__version__} does not know {config['model_type']}")
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize(("preset", "config"), [("gpt2", GPT2), ("qwen3-8b", QWEN3_8B), ("phi-3-mini", PHI3_MINI_4K)])
def test_presets_are_the_published_configs(preset, config):
    """The presets (models/presets/*.json) cost what their config.json costs: a training step of
    2 x 1024 tokens, FLOPs and saved activations alike."""
    kw = {"batch_size": 2, "seq_len": 1024, "phase": "training", "dtype": "bf16"}
    a, b = models.get(preset).compute_metrics(**kw), models.from_hf_config(config).compute_metrics(**kw)
    assert (a.flops_per_chip, a.activation_memory_per_chip) == (b.flops_per_chip, b.activation_memory_per_chip)


# -- optional: FlopCounterMode on tiny variants of the published configs ----------------------

SMALL = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 128,
         "intermediate_size": 96, "_attn_implementation": "eager"}
TINY = {
    "gpt2": {**GPT2, "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 128, "n_positions": 32,
             "attn_pdrop": 0.0, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "_attn_implementation": "eager"},
    "qwen3": {**QWEN3_8B, **SMALL, "num_key_value_heads": 2, "head_dim": 16},
    "phi3": {**PHI3_MINI_4K, **SMALL, "num_key_value_heads": 4, "sliding_window": None, "pad_token_id": None,
             "eos_token_id": 1},
    "gemma2": {**GEMMA2_9B, **SMALL, "num_key_value_heads": 2, "head_dim": 32, "query_pre_attn_scalar": 32},
    "gpt_neox": {**GPT_NEOX_20B, **SMALL},
    "falcon-7b": {**FALCON_7B, **{k: v for k, v in SMALL.items() if k != "intermediate_size"}},
    "falcon-40b": {**FALCON_40B, **{k: v for k, v in SMALL.items() if k != "intermediate_size"}, "num_kv_heads": 2},
    "qwen3_moe": {**QWEN3_30B_A3B, **SMALL, "num_key_value_heads": 2, "head_dim": 16, "moe_intermediate_size": 32,
                  "num_experts": 4, "num_experts_per_tok": 2},
    "deepseek_v2": {**DEEPSEEK_V2_LITE, **{k: v for k, v in SMALL.items() if k != "_attn_implementation"},
                    "moe_intermediate_size": 32, "n_routed_experts": 4, "num_experts_per_tok": 2,
                    "n_shared_experts": 1, "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
                    "v_head_dim": 16, "num_key_value_heads": 4, "rope_scaling": None},
}


def _torch_flops(config, torch, transformers):
    """FlopCounterMode totals of one forward, and of a forward and backward of the LM loss, of
    the transformers model for ``config`` (b = 1, s = 16; eager attention and eager experts)."""
    from torch.utils.flop_counter import FlopCounterMode

    fields = {k: v for k, v in config.items() if k not in ("model_type", "auto_map", "_attn_implementation")}
    try:
        hf_config = transformers.AutoConfig.for_model(config["model_type"], **fields)
    except (KeyError, ValueError):
        pytest.skip(f"transformers {transformers.__version__} does not know {config['model_type']}")
    try:  # transformers >= 5 picks the attention and the experts' kernels here
        model = transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager",
                                                              experts_implementation="eager")
    except (TypeError, ValueError):
        if config["model_type"] == "falcon":  # before attn_implementation, Falcon ran sdpa, whose
            # masked path FlopCounterMode did not see (transformers 4.31: the core's FLOPs missing)
            pytest.skip(f"transformers {transformers.__version__} cannot run Falcon's eager attention")
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    ids = torch.randint(0, 128, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(input_ids=ids)
    with FlopCounterMode(display=False) as training:
        model(input_ids=ids, labels=ids).loss.backward()
    return forward.get_total_flops(), training.get_total_flops()


@pytest.mark.parametrize("name", list(TINY))
def test_flop_counter_matches_on_tiny_variants(name):
    """Tiny variants of each published config (same keys, small sizes): symcost's matmul FLOPs
    (full square, causal=False, as eager attention computes it) equal FlopCounterMode's, for a
    forward (transformers computes logits for all 16 tokens, symcost's prefill for the last one:
    2 x 15 x h x V added) and, but for MLA, forward and backward: symcost's MLA is a flash kernel,
    whose backward recomputes Q K^T (docs/conventions.md §16), the eager one does not.
    Development run (transformers 5.24.0, torch 2.13.0): all nine equal."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = TINY[name]
    forward, training = _torch_flops(config, torch, transformers)
    model = models.from_hf_config(config, causal=False)
    h, V = 64, 128
    ours = model.compute_metrics(batch_size=1, seq_len=16, phase="prefill", dtype="fp32").matmul_flops_per_chip
    assert ours + 2 * 15 * h * V == forward
    if name != "deepseek_v2":
        assert model.compute_metrics(batch_size=1, seq_len=16, phase="training",
                                     dtype="fp32").matmul_flops_per_chip == training


# -- configs as transformers writes them (issue 20, items 13 and 14) ----------------------------

# tiiuae/falcon-180B's config.json as FalconConfig (transformers 4.32) writes it: the new decoder
# architecture and multi_query together. Sizes from the model card (80 layers, h 14,848, 232 query
# heads, 8 KV heads, V 65,024); the FalconConfig fields it writes with them.
FALCON_180B = {
    "alibi": False, "architectures": ["FalconForCausalLM"], "attention_dropout": 0.0, "bias": False,
    "bos_token_id": 11, "eos_token_id": 11, "hidden_dropout": 0.0, "hidden_size": 14848, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "falcon", "multi_query": True, "new_decoder_architecture": True,
    "num_attention_heads": 232, "num_hidden_layers": 80, "num_kv_heads": 8, "parallel_attn": True,
    "torch_dtype": "bfloat16", "transformers_version": "4.32.0", "use_cache": True, "vocab_size": 65024,
}


def test_falcon_new_architecture_reads_multi_query():
    """FalconConfig writes multi_query beside new_decoder_architecture, which overrides it (the
    KV heads are num_kv_heads): falcon-40b with multi_query true keeps 8 KV heads and its count.
    Falcon-180B: per layer 2 LayerNorms (4h), Q K V (h x (232 + 16) x 64), dense (h^2) and a
    4h MLP (8 h^2); with the tied embedding (V h) and final LayerNorm (2h):
    80 x (4h + 248 x 64 h + 9 h^2) + V h + 2h = 178,557,088,768 at h = 14,848
    (transformers 5.25 on the meta device: the same)."""
    assert models.from_hf_config({**FALCON_40B, "multi_query": True}).parameter_count == 41_303_293_952
    h = 14848
    model = models.from_hf_config(FALCON_180B)
    assert model.parameter_count == 80 * (4 * h + 248 * 64 * h + 9 * h * h) + 65024 * h + 2 * h == 178_557_088_768
    assert model.blocks[0][0].attention.num_kv_heads == 8


def test_transformers_5_spellings_load():
    """transformers 5.x writes qwen3_moe's num_experts as num_local_experts, deepseek_v2's
    qk_head_dim (= qk_nope_head_dim + qk_rope_head_dim) and falcon's num_key_value_heads (what
    FalconConfig derives: 1 for multi-query); each loads to the same count, and a value that
    contradicts the other keys is refused."""
    moe = {k: v for k, v in QWEN3_30B_A3B.items() if k != "num_experts"}
    assert models.from_hf_config({**moe, "num_local_experts": 128}).parameter_count == 30_532_122_624
    assert models.from_hf_config({**DEEPSEEK_V2_LITE, "qk_head_dim": 192}).parameter_count == 15_706_484_224
    assert models.from_hf_config({**FALCON_7B, "num_key_value_heads": 1}).parameter_count == 6_921_720_704
    assert models.from_hf_config({**FALCON_40B, "num_key_value_heads": 8}).parameter_count == 41_303_293_952
    for bad, key in [({**QWEN3_30B_A3B, "num_local_experts": 64}, "num_local_experts"),
                     ({**DEEPSEEK_V2_LITE, "qk_head_dim": 128}, "qk_head_dim"),
                     ({**FALCON_7B, "num_key_value_heads": 71}, "num_key_value_heads")]:
        with pytest.raises(ConfigError, match=key):
            models.from_hf_config(bad)


@pytest.mark.parametrize(("config", "count"), [*PUBLISHED, (FALCON_180B, 178_557_088_768)],
                         ids=[*IDS, "falcon-180b"])
def test_configs_saved_by_the_installed_transformers_load(config, count, tmp_path):
    """Each published config, read by the installed transformers' config class and written back
    with save_pretrained (5.x renames and adds keys), loads to the same count."""
    transformers = pytest.importorskip("transformers")
    fields = {k: v for k, v in config.items() if k not in ("model_type", "auto_map")}
    transformers.AutoConfig.for_model(config["model_type"], **fields).save_pretrained(tmp_path)
    assert models.from_hf_config(tmp_path / "config.json").parameter_count == count
