"""How steps and search results read (issue 13): units, breakdown tables, fits, MFU, the chosen row.

The fixed small model: GPT (Megatron: eager, non-causal attention, LayerNorm, GELU MLP, dropout, tied
LM head) with h = 64, a = 4, L = 2, V = 128, 32 positions, in bf16 (e = 2), on a toy chip whose
only finite rate is the matmul peak (10^12 FLOP/s): vector FLOP/s and every bandwidth are 10^24, so
every time below is the matmul FLOPs / 10^12 to far better than the 4 digits shown.
"""

from html.parser import HTMLParser

import pytest

import symcost as sc
from symcost import search
from symcost.hardware import Hardware

BIG = 10**24
TOY = Hardware(name="toy", peak_flops={"bf16": 10**12}, vector_flops=BIG, hbm_capacity=10**9, hbm_bandwidth=BIG,
               scale_up_bandwidth=BIG, scale_up_domain=8, scale_out_bandwidth=BIG, collective_latency=0)
GPT = sc.Model.gpt(hidden_size=64, num_heads=4, num_layers=2, vocab_size=128, seq_len=32)
# parameters: h (12 L h + 13 L + V + s + 2) = 64 * (1536 + 26 + 128 + 32 + 2) = 110,336


class _Cells(HTMLParser):
    """The text of every <td>, and whether the markup is balanced."""

    def __init__(self):
        super().__init__()
        self.cells, self.open, self._in = [], [], False

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)
        self._in = self._in or tag == "td"
        if tag == "td":
            self.cells.append("")

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"
        if tag == "td":
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.cells[-1] += data


def _cells(page):
    parser = _Cells()
    parser.feed(page)
    assert parser.open == []
    return parser.cells


def _training():
    return GPT.training_step(TOY, seq_len=32, global_batch=4, micro_batch=1)


def _inference():
    return GPT.inference_step(TOY, batch_size=2, seq_len=32)


def test_training_step_display():
    step = _training()
    # matmul FLOPs per sequence (Narayanan et al. 2021): 72 s L h^2 (1 + s/(6h) + V/(12 L h))
    #   = 72 * 32 * 2 * 4096 * (1 + 1/12 + 1/12) = 22,020,096; 4 sequences: 88,080,384 FLOPs
    #   / 10^12 FLOP/s = 88.08 µs; MFU = model FLOPs / (time * peak) = 100 %
    # memory: weights 2 B x 110,336 = 220,672 B; fp32 gradients 4 B x = 441,344 B; Adam 12 B x = 1,324,032 B
    # activations (Korthikanti et al. 2022, e = 2): per layer s b h (34 + 5 a s / h) = 2048 * 44 = 90,112 B,
    #   x 2 layers = 180,224; plus embedding dropout mask (1 B), final-norm and LM-head inputs (2 B each)
    #   = 5 s b h = 10,240 and the loss's logit gradient 2 s b V = 8,192 (TE's fused
    #   cross-entropy writes it in bf16 over the logits and keeps it for the backward): 198,656 B.
    #   Total 2,184,704 B = 2.185 MB.
    cells = _cells(step._repr_html_())
    for want in ("88.08 µs", "100 %", "220.7 kB", "441.3 kB", "1.324 MB", "198.7 kB", "2.185 MB", "1 GB", "fits",
                 "88.08 MFLOP"):
        assert want in cells, want
    # dp_comm holds the DP sync, the TP sum of replicated weights' gradients and the tied
    # embedding's PP all-reduce: labelled "gradient sync", not "data-parallel sync"
    assert "compute" in cells and "gradient sync" in cells and "data-parallel sync" not in cells
    text = str(step)
    assert "88.08 µs" in text and "MFU 100 %" in text and "2.185 MB of 1 GB HBM: fits" in text
    assert repr(step) == "TrainingStep(step_time=88.08 µs, mfu=100 %, memory_per_chip=2.185 MB, fits=True, chips=1)"
    assert step.weight_memory == 220672 and step.model_flops == 88080384   # the exact values are kept


def test_inference_step_display():
    step = _inference()
    # TTFT, b = 2, s = 32: matmul FLOPs 24 L b s h^2 + 4 L b s^2 h + 2 b V h (LM head on the last token)
    #   = 12,582,912 + 1,048,576 + 32,768 = 13,664,256 -> 13.66 µs
    # TPOT: b (24 L h^2 + 4 L s h + 2 V h) = 2 * (196,608 + 16,384 + 16,384) = 458,752 -> 458.8 ns
    # KV cache 2 b s h L e = 2*2*32*64*2*2 = 32,768 B; activation peak (eager prefill scores):
    #   b e s (a s + 7 h) = 2*2*32*(128 + 448) = 73,728 B; with weights 220,672 B: 327,168 B
    cells = _cells(step._repr_html_())
    for want in ("13.66 µs", "458.8 ns", "32.77 kB", "73.73 kB", "220.7 kB", "327.2 kB", "fits"):
        assert want in cells, want
    assert "blocks[0]" in cells                                   # the per-layer breakdown
    assert repr(step) == "InferenceStep(ttft=13.66 µs, tpot=458.8 ns, memory_per_chip=327.2 kB, fits=True)"
    assert "TTFT 13.66 µs, TPOT 458.8 ns" in str(step)


def test_repr_is_short_for_a_real_model():
    """repr(InferenceStep) was about 5,000 characters (issue 13)."""
    step = sc.models.get("llama-2-7b").inference_step("H100_SXM", 8, 2048)
    assert len(repr(step)) <= 200 and "ms" in repr(step)


def test_symbolic_step_repr_stays_short():
    step = GPT.training_step(TOY, seq_len=sc.symbols.seq_len, global_batch=4, micro_batch=1)
    assert len(repr(step)) <= 200
    # whether it fits depends on s: memory 40 s^2 + 4,928 s + 1,986,048 B (at s = 32 the 2,184,704 B,
    # 2.185 MB, of the fixed step above; the loss's bf16 logit gradient is 2 s V = 256 s of it) is
    # within the 10^9 B of HBM up to s = 4,933, past it from 4,934 (40 * 4933^2 + 4928 * 4933 +
    # 1986048 = 999,675,432; at 4,934 it is 1,000,075,040)
    s = sc.symbols.seq_len
    assert step.memory_per_chip == 40 * s**2 + 4928 * s + 1986048
    assert step.fits is None and "fits=None" in repr(step)
    fixed = [GPT.training_step(TOY, seq_len=n, global_batch=4, micro_batch=1) for n in (4933, 4934)]
    assert [f.memory_per_chip for f in fixed] == [999675432, 1000075040]
    assert [f.fits for f in fixed] == [True, False]
    _cells(step._repr_html_())


def test_search_display_highlights_the_chosen_row():
    result = search.parallelism(GPT, TOY, num_chips=2, global_batch=4, seq_len=32)
    # the best split halves the work per chip: 2 sequences (or half of each matmul) per chip,
    # 2 * 22,020,096 FLOPs / 10^12 = 44.04 µs; communication is free on the toy chip
    page = result._repr_html_()
    _cells(page)
    body = page.split("<tbody>", 1)[1]
    first = body.split("</tr>", 1)[0]
    assert first.startswith('<tr class="chosen"') and "44.04 µs" in first and "100 %" in first
    assert body.count('class="chosen"') == 1
    assert "44.04 µs" in str(result) and len(repr(result)) <= 200 and "44.04 µs" in repr(result)


@pytest.mark.parametrize("which", ["training", "inference"])
def test_step_latex_compiles(latex_pdf, which):
    body = (_training() if which == "training" else _inference())._repr_latex_()
    assert ("88.08\\,\\mu\\mathrm{s}" if which == "training" else "13.66\\,\\mu\\mathrm{s}") in body
    latex_pdf(body, wrap=True)


def test_speculative_step_display():
    from fractions import Fraction

    from symcost.plan.speculative import SpeculativeStep

    # by hand: k = 3, alpha = 4/5: E = 1 + 0.8 + 0.64 + 0.512 = 2.952; draft step 1 ms, verification
    # 9 ms: round 3 + 9 = 12 ms, TPOT 12 / 2.952 = 4.065 ms; plain 8 ms: speed-up 8 / 4.065 = 1.968x;
    # batch 1: 1 / 4.065 ms = 246 tokens/s; memory 16 GB + a 1 GB draft = 17 GB
    e = 1 + Fraction(4, 5) + Fraction(4, 5) ** 2 + Fraction(4, 5) ** 3
    tpot = Fraction(12, 1000) / e
    st = SpeculativeStep(k=3, alpha=Fraction(4, 5), expected_tokens=e, draft_time=Fraction(1, 1000),
                         verify_time=Fraction(9, 1000), round_time=Fraction(12, 1000), tpot=tpot,
                         plain_tpot=Fraction(8, 1000), tokens_per_second=1 / tpot, speedup=Fraction(8, 1000) / tpot,
                         draft_memory=10**9, memory_per_chip=17 * 10**9, draft="tiny", hardware=TOY)
    assert repr(st) == "SpeculativeStep(k=3, alpha=0.8, tpot=4.065 ms, plain_tpot=8 ms, speedup=1.968x)"
    text = str(st)
    assert text.splitlines()[0] == "speculative decoding on toy (draft: tiny): k 3, alpha 0.8, 2.952 tokens per round"
    assert "3 draft steps x 1 ms + verification 9 ms = 12 ms" in text
    assert "TPOT 4.065 ms (plain decoding 8 ms): speed-up 1.968x, 246 token/s" in text
    assert "memory per chip 17 GB (draft 1 GB)" in text
    cells = _cells(st._repr_html_())
    for want in ("2.952", "1 ms", "9 ms", "12 ms", "4.065 ms", "8 ms", "1.968x", "246 token/s", "1 GB", "17 GB"):
        assert want in cells, want


def test_disaggregated_plan_display():
    from fractions import Fraction

    from symcost.plan.disaggregated import DisaggregatedPlan

    # by hand: 10 requests/s, D = 50 ms: rho = 10 * 0.05 / 2 = 25 % on 2 prefill instances; M/D/1
    # TTFT = D + T_kv + rho D / (2 (1 - rho)) = 50 + 5 + 0.25 * 50 / 1.5 = 63.33 ms
    plan = DisaggregatedPlan(
        num_prefill=2, num_decode=1, ratio=2, prefill_time=Fraction(1, 20), prefill_stage_time=Fraction(1, 20),
        kv_transfer_bytes=5 * 10**8,
        kv_transfer_time=Fraction(1, 200), ttft=Fraction(1, 20) + Fraction(1, 200) + Fraction(1, 4) * Fraction(
            1, 20) / Fraction(3, 2), prefill_utilization=Fraction(1, 4), decode_batch=64, decode_limit="tpot",
        decode_tpot=Fraction(3, 100), decode_load=Fraction(1, 2), prefill_chips=8, decode_chips=4, num_chips=20,
        rate=10, prompt_len=4096, output_len=512, ttft_target=Fraction(1, 2), tpot_target=Fraction(1, 25))
    assert repr(plan) == "DisaggregatedPlan(prefill=2, decode=1, chips=20, ttft=63.33 ms, tpot=30 ms, decode_batch=64)"
    lines = str(plan).splitlines()
    assert lines[0] == ("disaggregated serving at 10 requests/s of 4096 + 512 tokens: 2 prefill : 1 decode "
                        "instances, 20 chips (8 per prefill, 4 per decode instance)")
    assert lines[1] == ("  prefill: 50 ms per prompt, utilization 25 %, KV transfer 500 MB per chip in 5 ms, "
                        "mean TTFT 63.33 ms (target 500 ms)")
    assert lines[2] == "  decode: batch 64 (tpot-bound) at TPOT 30 ms (target 40 ms)"
    cells = _cells(plan._repr_html_())
    for want in ("50 ms", "500 MB", "5 ms", "25 %", "63.33 ms", "64", "tpot", "30 ms", "40 ms", "0.5"):
        assert want in cells, want
    # pipelined: the queue's service time is the slowest stage's, shown beside the whole prefill
    import dataclasses

    staged = dataclasses.replace(plan, prefill_stage_time=Fraction(1, 40))
    assert str(staged).splitlines()[1].startswith("  prefill: 50 ms per prompt (slowest stage 25 ms), utilization")
    assert "25 ms" in _cells(staged._repr_html_())
