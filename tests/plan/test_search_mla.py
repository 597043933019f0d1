"""The training search on models with multi-head latent attention (MLA): Ulysses sequence
parallelism is not modelled for MLA (MLALayer refuses it), so the search skips Ulysses degrees for
such a model and says so, rather than failing while it compiles the layer variants."""

from __future__ import annotations

import pytest
from search_rows import row_step

from symcost.hardware import get as get_hardware
from symcost.models.builders import deepseek_v3
from symcost.plan import search

NOTE = "Ulysses sequence parallelism skipped: not modelled for multi-head latent attention (MLALayer)"

# a DeepSeek-V3-shaped toy: h 64, 4 heads, 2 layers (1 dense + 1 MoE of 4 experts, top 2, 1 shared),
# vocabulary 256, MLA ranks r_q 32, r_kv 16, d_nope 8, d_R 8, d_v 8
TINY = {"hidden_size": 64, "num_heads": 4, "num_layers": 2, "vocab_size": 256, "intermediate_size": 128,
        "moe_intermediate_size": 32, "num_experts": 4, "top_k": 2, "num_shared_experts": 1, "first_dense_layers": 1,
        "q_lora_rank": 32, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8}


@pytest.fixture(scope="module")
def tiny_table():
    model = deepseek_v3(**TINY, name="tiny-mla")
    # 4 chips: with Ulysses the 4 heads would allow u = 2 and 4 (t * u divides 4 and s = 256);
    # those candidates are not enumerated
    table = search.parallelism(model, "H100_SXM", num_chips=4, global_batch=8, seq_len=256,
                               recompute=("none",), zero_stages=(0, 1))
    return model, table


def test_tiny_mla_search_skips_ulysses_and_says_so(tiny_table):
    """Rows exist, none runs a Ulysses degree (sp = 1 on every row), every row still uses the 4
    chips (t * p * d = 4 with u = 1), and the result carries the skip note in its text."""
    _, table = tiny_table
    rows = table.rows()
    assert rows
    assert all(r["sp"] == 1 for r in rows)
    assert all(r["tp"] * r["pp"] * r["dp"] * r["cp"] == 4 for r in rows)
    assert table.notes == (NOTE,)
    assert NOTE in table.format(3).splitlines()
    assert NOTE in table._repr_html_()


def test_tiny_mla_row_is_the_training_step(tiny_table):
    """The best row's step time and memory are training_step's at that layout (the search compiles
    the same expressions; float64 against the exact step)."""
    model, table = tiny_table
    step = row_step(model, get_hardware("H100_SXM"), table, 0, 256, 8)
    row = table.row(0)
    assert row["step_time"] == pytest.approx(float(step.step_time), rel=1e-9)
    assert row["memory_per_chip"] == pytest.approx(float(step.memory_per_chip), rel=1e-9)


def test_search_without_mla_has_no_note():
    """A model every layer of which models Ulysses carries no note (the default search unchanged)."""
    from symcost import models

    # a toy llama: 8 heads, 4 KV heads split 2 ways, s = 256 splits 2 ways: u = 2 is a candidate
    toy = models.from_hf_config({"model_type": "llama", "hidden_size": 256, "num_attention_heads": 8,
                                 "num_key_value_heads": 4, "num_hidden_layers": 2, "vocab_size": 1024,
                                 "intermediate_size": 512})
    table = search.parallelism(toy, "H100_SXM", num_chips=2, global_batch=2, seq_len=256,
                               recompute=("none",), zero_stages=(0,), max_micro_batch=1)
    assert table.notes == ()
    assert any(r["sp"] == 2 for r in table.rows())  # Ulysses still enumerated



def test_hybrid_search_names_the_mamba_layer():
    """A Mamba-2 + attention hybrid (Mamba2Layer refuses Ulysses: a state-space scan): the search
    says it skipped Ulysses for that layer, and every row has sp = 1."""
    from symcost.models import ssm

    hybrid = ssm.hybrid(hidden_size=64, vocab_size=100, mamba_layers=2, attention_layers=1, mlp_layers=1,
                        num_heads=4, num_kv_heads=2, intermediate_size=256, ssm_head_dim=32, state_size=16,
                        chunk_size=8)
    table = search.parallelism(hybrid, "H100_SXM", num_chips=2, global_batch=4, seq_len=64, recompute=("none",),
                               zero_stages=(1,))
    assert table.notes == ("Ulysses sequence parallelism skipped: not modelled for a state-space scan (Mamba2Layer)",)
    assert len(table) and all(r["sp"] == 1 for r in table.rows())
