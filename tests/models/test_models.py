"""Models: presets' parameter counts, the Narayanan et al. identities, blocks and HF configs."""

import json

import pytest
import sympy as sp

import symcost as sc
from symcost import models
from symcost import symbols as S
from symcost.models.model import Model, TransformerBlock
from symcost.testing import assert_expr_equal

b, s, h, a, L, V, t = (S.batch_size, S.seq_len, S.hidden_size, S.num_heads, S.num_layers,
                       S.vocab_size, S.tp)

# Published parameter counts: the issue (Llama-2-7B, Llama-3-8B) and the total of each model's
# safetensors index on the Hugging Face Hub ("metadata": {"total_size"} / 2 bytes for bf16).
PUBLISHED = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-72b": 72_706_203_648,
    "mixtral-8x7b": 46_702_792_704,  # the figure
    # DeepSeek-V3 report: 671B; exactly, the safetensors total (684,531,386,000, "685B") less the
    # multi-token-prediction module, which is not part of the inference model
    "deepseek-v3": 671_026_419_200,
    # the model cards: Qwen3-8B 8.2B, Phi-3-mini 3.8B, GPT-2 124M; exactly (transformers' own count
    # of the published configs, tests/models/test_hf_more.py)
    "qwen3-8b": 8_190_735_360,
    "phi-3-mini": 3_821_079_552,
    "gpt2": 124_439_808,
}


@pytest.mark.parametrize(("name", "count"), sorted(PUBLISHED.items()))
def test_preset_parameter_counts(name, count):
    """Every dense preset has exactly its published parameter count."""
    assert models.get(name).parameter_count == count


def test_gpt3_matches_narayanans_parameter_formula():
    """Megatron GPT: P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)) (Narayanan et al. 2021,
    section 5.1), plus the final LayerNorm's 2h that the formula leaves out."""
    gpt = models.get("gpt3-175b")
    l_, h_, V_, s_ = 96, 12288, 51200, 2048
    paper = 12 * l_ * h_**2 * (1 + sp.Rational(13, 12 * h_) + sp.Rational(V_ + s_, 12 * l_ * h_))
    assert gpt.parameter_count == paper + 2 * h_
    sym = Model.gpt(seq_len=s)
    assert_expr_equal(sym.parameter_count, 12 * L * h**2 * (1 + 13 / (12 * h) + (V + s) / (12 * L * h)) + 2 * h)


def test_gpt_training_flops_match_narayanan():
    """Training matmul FLOPs per iteration of the Megatron GPT model (eager attention, f = 4h):
    72 B s l h^2 (1 + s/(6h) + V/(12 l h)), and with full recompute 96 B s l h^2 (1 + s/(6h) +
    V/(16 l h)) (Narayanan et al. 2021, section 5.1 and appendix)."""
    gpt = Model.gpt(seq_len=s)
    plain = gpt.compute_metrics(phase="training", dtype="bf16")
    full = gpt.compute_metrics(phase="training", dtype="bf16", recompute="full")
    assert_expr_equal(plain.matmul_flops_per_chip, 72 * b * s * L * h**2 * (1 + s / (6 * h) + V / (12 * L * h)))
    assert_expr_equal(full.matmul_flops_per_chip, 96 * b * s * L * h**2 * (1 + s / (6 * h) + V / (16 * L * h)))


def test_gpt_training_flops_per_chip_under_tp():
    """Per chip under TP t: the same total divided by t."""
    gpt = Model.gpt(seq_len=s, parallelism={"tensor_parallel": t})
    m = gpt.compute_metrics(phase="training", dtype="bf16")
    assert_expr_equal(m.matmul_flops_per_chip * t, 72 * b * s * L * h**2 * (1 + s / (6 * h) + V / (12 * L * h)))


def test_llama_3_70b_kv_cache_at_128k():
    """KV cache of Llama-3-70B at 131,072 tokens, batch 1, bf16: 2 * 131072 * 8 * 128 * 2 * 80."""
    m = models.get("llama-3-70b").compute_metrics(batch_size=1, seq_len=131072, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 42_949_672_960


def test_block_full_recompute_keeps_only_its_input():
    """Korthikanti et al.: under full recompute a transformer layer keeps its input, 2sbh at
    e = 2 (2sbh/t under Megatron SP)."""
    gpt = Model.gpt(seq_len=s)
    (block, _), = gpt.blocks
    m = block.compute_metrics(phase="training", dtype="bf16", recompute="full")
    assert_expr_equal(m.activation_memory_per_chip, 2 * s * b * h)
    sp_block = Model.gpt(seq_len=s, parallelism={"tensor_parallel": t, "sequence_parallel": "tp"}).blocks[0][0]
    m = sp_block.compute_metrics(phase="training", dtype="bf16", recompute="full")
    assert_expr_equal(m.activation_memory_per_chip, 2 * s * b * h / t)


def test_block_saves_korthikanti_activations():
    """The GPT block without recompute saves s b h (34 + 5 a s / h) at e = 2."""
    block = Model.gpt(seq_len=s).blocks[0][0]
    m = block.compute_metrics(phase="training", dtype="bf16")
    assert_expr_equal(m.activation_memory_per_chip, s * b * h * (34 + 5 * a * s / h))


def test_block_adds_residuals():
    """A block's FLOPs are its layers' plus two residual adds of b s h."""
    block = Model.llama().blocks[0][0]
    m = block.compute_metrics(phase="prefill")
    parts = sum((p.compute_metrics(phase="prefill") for p in block.parts), 0)
    assert_expr_equal(m.flops_per_chip - parts.flops_per_chip, 2 * b * s * h)


def test_block_parts_must_share_parallelism():
    """A block refuses layers built with another parallelism."""
    with pytest.raises(ValueError, match="parallelism must equal"):
        TransformerBlock(attention=sc.AttentionLayer(parallelism={"tensor_parallel": 2}),
                         mlp=sc.MLPLayer(), norm_kind="layernorm")


def test_model_metrics_repeat_blocks_in_constant_size():
    """A symbolic number of layers multiplies the block costs without unrolling."""
    m = Model.llama().compute_metrics(phase="prefill", dtype="bf16")
    assert L in m.flops_per_chip.free_symbols
    block = Model.llama().blocks[0][0].compute_metrics(phase="prefill", dtype="bf16")
    assert_expr_equal(sp.diff(m.flops_per_chip, L), block.flops_per_chip)


def test_breakdown_sums_to_the_model():
    """The per-layer breakdown, counts applied, sums to the model's metrics."""
    model = models.get("llama-3-8b")
    kw = {"batch_size": 2, "seq_len": 1024, "phase": "prefill", "dtype": "bf16", "hardware": "h100"}
    rows = model.breakdown(**kw)
    assert [name for name, _, _ in rows] == ["embedding", "blocks[0]", "final_norm", "lm_head"]
    total = sum((m * n for _, n, m in rows), 0)
    assert total.latency == model.compute_metrics(**kw).latency


def test_with_parallelism_rebuilds_every_layer():
    """with_parallelism shards every layer: weights per chip fall by t (norms replicated)."""
    model = models.get("llama-3-8b")
    sharded = model.with_parallelism({"tensor_parallel": 8})
    one = model.compute_metrics(batch_size=1, seq_len=1, phase="decode", dtype="bf16")
    eight = sharded.compute_metrics(batch_size=1, seq_len=1, phase="decode", dtype="bf16")
    norms = (2 * 32 + 1) * 4096 * 2  # replicated RMSNorm weights, bytes
    assert (one.weight_memory_per_chip - norms) == 8 * (eight.weight_memory_per_chip - norms)


LLAMA_3_8B_CONFIG = {  # meta-llama/Meta-Llama-3-8B config.json (abridged to the fields used)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "attention_bias": False,
}
QWEN_72B_CONFIG = {  # Qwen/Qwen2.5-72B config.json (abridged)
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 8192,
    "intermediate_size": 29568, "num_attention_heads": 64, "num_hidden_layers": 80,
    "num_key_value_heads": 8, "vocab_size": 152064, "tie_word_embeddings": False,
}
MISTRAL_CONFIG = {  # mistralai/Mistral-7B-v0.1 config.json (abridged)
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 32000, "tie_word_embeddings": False,
}


MIXTRAL_CONFIG = {  # mistralai/Mixtral-8x7B-v0.1 config.json (abridged)
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2,
    "tie_word_embeddings": False,
}
DEEPSEEK_V3_CONFIG = {  # deepseek-ai/DeepSeek-V3 config.json (abridged)
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_attention_heads": 128,
    "num_hidden_layers": 61, "num_key_value_heads": 128, "vocab_size": 129280, "n_routed_experts": 256,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "num_nextn_predict_layers": 1, "tie_word_embeddings": False,
}


@pytest.mark.parametrize(("config", "preset"), [(LLAMA_3_8B_CONFIG, "llama-3-8b"),
                                                (QWEN_72B_CONFIG, "qwen2.5-72b"),
                                                (MISTRAL_CONFIG, "mistral-7b"),
                                                (MIXTRAL_CONFIG, "mixtral-8x7b"),
                                                (DEEPSEEK_V3_CONFIG, "deepseek-v3")])
def test_from_hf_config_equals_the_preset(config, preset, tmp_path):
    """A real config.json gives the preset's model: same parameters, same metrics."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    loaded = models.from_hf_config(path)
    want = models.get(preset)
    assert loaded.parameter_count == want.parameter_count
    kw = {"batch_size": 1, "seq_len": 4096, "phase": "decode", "dtype": "bf16"}
    assert loaded.compute_metrics(**kw).hbm_bytes_per_chip == want.compute_metrics(**kw).hbm_bytes_per_chip


@pytest.mark.parametrize(
    ("config", "message"),
    [({"model_type": "t5"}, "unsupported model_type 't5'; supported: llama, mistral, mixtral, qwen2"),
     ({**LLAMA_3_8B_CONFIG, "hidden_size": "4096"}, "hidden_size must be a positive integer"),
     ({k: v for k, v in LLAMA_3_8B_CONFIG.items() if k != "vocab_size"}, "no 'vocab_size'")],
)
def test_bad_hf_configs(config, message):
    """Unsupported architectures and malformed fields are clear errors."""
    with pytest.raises(ValueError, match=message):
        models.from_hf_config(config)


def test_unknown_preset_lists_names():
    """An unknown model name lists the presets."""
    with pytest.raises(ValueError, match="unknown model 'llama-4'; known: llama-2-7b"):
        models.get("llama-4")


def test_moe_model_flops_scale_with_top_k():
    """Mixtral's expert FLOPs follow top_k: 2 of 8 experts per token, not 8."""
    mixtral = models.get("mixtral-8x7b")
    m = mixtral.compute_metrics(batch_size=1, seq_len=1, phase="prefill", dtype="bf16")
    # per token: 32 layers x (attention 2*(2*4096*4096 + 2*4096*1024) + core 4*32*1*128
    # + router 2*4096*8 + 2 experts x 3 x 2*4096*14336) + LM head 2*4096*32000
    per_layer = 2 * (2 * 4096 * 4096 + 2 * 4096 * 1024) + 4 * 32 * 128 + 2 * 4096 * 8 + 2 * 3 * 2 * 4096 * 14336
    assert m.matmul_flops_per_chip == 32 * per_layer + 2 * 4096 * 32000


def test_deepseek_v3_kv_cache_is_compressed():
    """DeepSeek-V3 keeps (512 + 64) latent values per token and layer: 1152 bytes in bf16."""
    m = models.get("deepseek-v3").compute_metrics(batch_size=1, seq_len=4096, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 61 * 4096 * (512 + 64) * 2


def test_lm_head_gathers_sequence_parallel_states_in_prefill():
    """Under Megatron SP the LM head all-gathers the sequence-sharded hidden states (b*s*h*e)."""
    head = sc.LMHeadLayer(vocab_size=32000, hidden_size=1024, parallelism={"tensor_parallel": 4,
                                                                           "sequence_parallel": "tp"})
    m = head.compute_metrics(batch_size=2, seq_len=64, phase="prefill", dtype="bf16")
    kinds = [(c.kind, c.payload_bytes) for c in m.collectives]
    assert ("all_gather", 2 * 64 * 1024 * 2) in kinds


def test_preset_files_cite_every_number():
    """Every preset is a data file (models/presets/<name>.json) naming its builder, its source, and a
    source beside every number; the index lists each file once."""
    from importlib import resources

    folder = resources.files("symcost.models").joinpath("presets")
    listed = json.loads(folder.joinpath("index.json").read_text())["presets"]
    assert listed == models.names() and len(set(listed)) == len(listed)
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json") and p.name != "index.json")
    assert files == sorted(f"{n}.json" for n in listed)
    for name in listed:
        data = json.loads(folder.joinpath(f"{name}.json").read_text())
        assert data["name"] == name and data["source"] and data["builder"] in models.registry.BUILDERS
        assert all(entry["source"] for entry in data["fields"].values()), name


def test_model_declares_its_hidden_size():
    """``Model.hidden_size`` is the residual stream's width, read without reaching into a block:
    Llama-3-8B 4096, DeepSeek-V3 7168 (their config.json's ``hidden_size``), Mamba2-2.7B 2560
    (``d_model``); the symbol ``h`` where the builder leaves it free."""
    assert models.get("llama-3-8b").hidden_size == 4096
    assert models.get("deepseek-v3").hidden_size == 7168
    assert models.get("mamba2-2.7b").hidden_size == 2560
    assert Model.gpt().hidden_size == S.hidden_size


def test_rows_by_part():
    """``ByPart.of`` reads one row per part by what the part is, in ``Model.parts`` order:
    DeepSeek-V3 has the embedding, two block groups (3 dense blocks, then 58 MoE: its model card's
    ``first_k_dense_replace = 3`` of 61 layers), the final norm and the LM head."""
    from symcost.models.model import ByPart

    m = models.get("deepseek-v3")
    parts = ByPart.of(m.parts())
    assert parts.embedding == ("embedding", m.embedding, 1)
    assert [(name, n) for name, _, n in parts.blocks] == [("blocks[0]", 3), ("blocks[1]", 58)]
    assert parts.final_norm[1] is m.final_norm and parts.lm_head[1] is m.lm_head
    assert [name for name, _ in parts.labelled()] == ["embedding", "blocks[0]", "blocks[1]", "final_norm", "lm_head"]
    rows = ByPart.of(m.breakdown(1, 16, "decode", "bf16"))
    assert rows.lm_head[0] == "lm_head" and [r[1] for r in rows.blocks] == [3, 58]
    with pytest.raises(ValueError, match="one per part"):
        ByPart.of(m.parts()[:3])
