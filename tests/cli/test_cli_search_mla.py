"""``symcost search`` on a model with multi-head latent attention (the bug: the training search
failed for deepseek-v3 with 'sequence_parallel must be 1 or "tp" for MLALayer', because it built a
Ulysses variant of every layer)."""

import json

from cli_run import subprocess_run as run

NOTE = "Ulysses sequence parallelism skipped: not modelled for multi-head latent attention (MLALayer)"
# a DeepSeek-V3-shaped toy config.json (the fields HF's DeepseekV3Config reads): h 64, 4 heads, 2 layers
# (1 dense + 1 MoE of 4 experts, top 2, 1 shared), vocabulary 256, MLA ranks r_q 32, r_kv 16, d 8/8/8
HF_TINY = {"model_type": "deepseek_v3", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
           "vocab_size": 256, "intermediate_size": 128, "moe_intermediate_size": 32, "n_routed_experts": 4,
           "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1, "q_lora_rank": 32,
           "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8}


def test_cli_search_on_an_mla_config(tmp_path):
    """``symcost search`` on an MLA config.json exits 0, prints the note, and --json
    carries it under "notes" with rows of sp 1 only."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(HF_TINY))
    args = ("search", "--model", str(config), "--chips", "4", "--global-batch", "8", "--seq", "256", "--top", "3")
    text = run(*args)
    assert NOTE in text.stdout.splitlines()
    data = json.loads(run(*args, "--json").stdout)
    assert data["notes"] == [NOTE]
    assert data["rows"] and all(r["sp"] == 1 for r in data["rows"])
