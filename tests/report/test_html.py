"""The HTML report (symcost.report.html, ``symcost report --html``): one self-contained page that
parses, carries the numbers with their units, escapes what it prints, fetches nothing, and renders
in headless Chromium without errors to a picture that is not blank (issue 13 item 3)."""

import html
import re
import sys
from html.parser import HTMLParser

import chromium_page  # tests/report/chromium_page.py: pytest puts this folder on sys.path
import pytest

from symcost.cli import main
from symcost.models.model import Model
from symcost.report import html as report_html

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


def tiny(name="tiny"):
    """A Llama-shaped model small enough to build the page in seconds.

    Parameters, by hand: embedding and (untied) LM head 1000 x 256 = 256,000 each; per block
    Q and O 256 x 256 = 65,536 each, K and V 256 x (2 heads x 64) = 32,768 each, gated MLP
    3 x 256 x 512 = 393,216, two RMSNorms 2 x 256 = 512: 590,336; 2 blocks 1,180,672; final norm
    256. Total 256,000 + 256,000 + 1,180,672 + 256 = 1,692,928.
    """
    return Model.llama(hidden_size=256, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=1000,
                       intermediate_size=512, name=name)


class Tree(HTMLParser):
    """Checks that every element closes in order (void elements aside) and keeps the text of
    each ``<section id=...>``, the ``<math>`` count and the attributes that could fetch."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.sections, self.current = [], {}, None
        self.maths, self.svgs, self.fetching, self.tags = 0, 0, [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "section":
            self.current = attrs["id"]
            self.sections[self.current] = ""
        self.maths += tag == "math"
        self.svgs += tag == "svg"
        for key in ("src", "href", "xlink:href", "data", "action"):
            value = attrs.get(key)
            if value is not None and not value.startswith(("#", "data:")):
                self.fetching.append((tag, key, value))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <path ... /> inside SVG
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.sections[self.current] += data


def parse(page):
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [], f"unclosed: {tree.stack}"
    return tree


@pytest.fixture(scope="module")
def page():
    """The page of the tiny model on the H100 preset, prompt 128 tokens, batch 1, charts and all."""
    pytest.importorskip("matplotlib")
    return report_html.html_report(tiny(), "h100", seq_len=128)


@pytest.fixture(scope="module")
def plain():
    """The same page without charts (fast, and what a user without matplotlib gets the tables of)."""
    return report_html.html_report(tiny(), "h100", seq_len=128, plots=False)


# -- structure and numbers ----------------------------------------------------------------------


def test_page_parses_with_every_section(plain):
    tree = parse(plain)
    assert list(tree.sections) == ["summary", "model", "chip", "prefill", "decode", "training", "breakdown",
                                   "assumptions"]
    # one FLOPs formula per layer row: embedding, norm, attention, mlp, final norm, LM head, 3 phases
    assert tree.maths == 6 * 3
    assert tree.fetching == []


def test_model_and_chip_numbers_with_units(plain):
    """Hand-derived (see ``tiny``): 1,692,928 parameters, 1.693 million (4 significant digits).
    The H100 SXM datasheet (NVIDIA, SXM column): 80 GB HBM3 (80 GiB = 85,899,345,920 B, printed in decimal
    units to 4 digits: 85.9 GB), 3.35 TB/s; the Hopper whitepaper's
    dense bf16 peak 989.4 TFLOP/s; NVLink 900 GB/s both ways is 450 GB/s per direction."""
    text = parse(plain).sections
    assert "1,692,928 parameters (1.693 million)" in text["model"]
    assert "393,216" in text["model"]  # the gated MLP's parameters: 3 x 256 x 512
    for figure in ("989.4 TFLOP/s", "85.9 GB", "3.35 TB/s", "450 GB/s", "8 chips", "[H100-DS] 80GB HBM3"):
        assert figure in text["chip"], figure


def test_memory_numbers_with_units(plain):
    """Serving, bf16 (2 bytes): weights 2 x 1,692,928 = 3,385,856 B = 3.386 MB; KV cache
    K and V x 2 layers x 2 KV heads x 64 dims x 128 tokens x 2 bytes = 131,072 B = 131.1 kB.
    Training with Adam, ZeRO stage 1 on one chip: fp32 gradients 4 x 1,692,928 = 6,771,712 B
    = 6.772 MB; fp32 master weights, m and v 12 x 1,692,928 = 20,315,136 B = 20.32 MB."""
    text = parse(plain).sections["breakdown"]
    for number in ("weights3.386 MB", "KV cache131.1 kB", "gradients6.772 MB", "optimizer20.32 MB", "85.9 GB"):
        assert number in text, number


def test_mlp_formula_and_flops(plain):
    """The gated MLP's forward FLOPs per token: three matmuls 3 x 2 x 256 x 512 = 786,432 plus
    SiLU (4) and the gate multiply (1) per element of f = 512 (docs/conventions.md §2,
    symcost.core.ops.VECTOR_FLOPS): 2,560; 788,992 b s. At b = 1, s = 128: 100,990,976 = 101 MFLOP."""
    prefill = plain[plain.index("<section id='prefill'>"):plain.index("<section id='decode'>")]
    row = re.search(r"<tr><td>blocks\[0\]\.mlp</td>.*?</tr>", prefill).group(0)
    assert "<mn>788992</mn>" in row and "101 MFLOP" in row


def test_strings_are_escaped():
    """A model name with markup arrives as text, never as an element."""
    name = "<script>alert('x')</script> & co"
    page = report_html.html_report(tiny(name), "h100", seq_len=64, phases=["decode"], plots=False)
    tree = parse(page)
    assert "script" not in tree.tags
    assert html.escape(name) in page and name in tree.sections["model"]


def test_csp_forbids_fetching(plain):
    meta = re.search(r"<meta http-equiv='Content-Security-Policy' content=\"([^\"]+)\">", plain)
    assert meta is not None and meta.group(1).startswith("default-src 'none'")


def test_without_matplotlib_the_page_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = report_html.html_report(tiny(), "h100", seq_len=64, phases=["decode"])
    tree = parse(page)
    assert tree.svgs == 0 and "pip install symcost[plot]" in tree.sections["charts"]


def test_charts_are_inline_svg_with_distinct_ids(page):
    tree = parse(page)
    assert tree.svgs == 3 and tree.fetching == []
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert "TP 1, SP 1, PP 1, EP 1, DP 1" in page  # the memory chart's title (text as SVG paths aside)


def test_refusals_are_one_line():
    """A page needs numbers: unknown phases, symbolic shapes and the symbolic chip are refused."""
    from symcost import ConfigError, Hardware

    with pytest.raises(ConfigError, match="phases must be among prefill, decode, training"):
        report_html.html_report(tiny(), "h100", phases=["serve"])
    with pytest.raises(ConfigError, match=r"shapes must be numbers; free: hidden_size \(h\), intermediate_size"):
        report_html.html_report(Model.llama(), "h100")
    with pytest.raises(ConfigError, match="hardware must be a numeric chip"):
        report_html.html_report(tiny(), Hardware.symbolic())
    with pytest.raises(ConfigError, match="seq_len must be a positive integer"):
        report_html.html_report(tiny(), "h100", seq_len=0)


def test_formulas_escape_their_text():
    """SymPy's MathML writer leaves '<' raw in text; the page's formulas escape it and keep the
    entities SymPy writes."""
    import sympy as sp

    from symcost.core import symbols as sym

    math = report_html.formula(sp.Piecewise((sym.seq_len, sym.seq_len < 4), (sym.batch_size, True)))
    assert "<mo>&lt;</mo>" in math and "<mo><</mo>" not in math
    parse(f"<html><body>{math}</body></html>")


def test_cli_writes_the_page(tmp_path, capsys, monkeypatch):
    """Without matplotlib (the charts are tested above) the command still writes the page."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "r.html"
    code = main(["report", "--model", "llama-3-8b", "--seq", "1024", "--phase", "decode", "--html", str(out)])
    assert code == 0 and f"HTML report written to {out}" in capsys.readouterr().out
    text = parse(out.read_text(encoding="utf-8")).sections
    assert "8,030,261,248 parameters" in text["model"]  # Meta's llama-3-8b card: 8.03 B


def test_cli_refuses_a_missing_folder(tmp_path, capsys):
    code = main(["report", "--html", str(tmp_path / "no" / "r.html")])
    assert code == 2 and "argument --html: cannot write" in capsys.readouterr().err


# -- in a real browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    path, why = chromium_page.usable_chromium()
    if path is None:
        pytest.skip(why)
    return path


def test_renders_in_chromium_without_errors(tmp_path, page, browser):
    """The page as a browser sees it: no uncaught error, no console.error, nothing the CSP blocked
    (the collector's own findings prove it runs: see the next test), and a screenshot with ink."""
    path = tmp_path / "report.html"
    path.write_text(chromium_page.with_collector(page), encoding="utf-8")
    dom = chromium_page.dump_dom(browser, path)
    assert chromium_page.collected_errors(dom) == []
    assert "1,692,928 parameters" in dom
    shot = chromium_page.screenshot(browser, path, tmp_path / "report.png", size=(1000, 900))
    pixels = chromium_page.png_pixels(shot)
    assert pixels.shape[:2] == (900, 1000)
    variance, inked = chromium_page.ink(pixels)
    assert variance > 100 and inked > 0.02, (variance, inked)  # a white page has 0 and 0


def test_the_collector_catches_errors_and_fetches(tmp_path, browser):
    """A page that throws, logs an error and fetches an image under the same CSP is caught."""
    bad = ("<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' content=\"default-src "
           "'none'; script-src 'unsafe-inline'\"></head><body><img src='https://example.com/x.png'>"
           "<script>throw new Error('boom')</script><script>console.error('oops')</script></body></html>")
    path = tmp_path / "bad.html"
    path.write_text(chromium_page.with_collector(bad), encoding="utf-8")
    found = " | ".join(chromium_page.collected_errors(chromium_page.dump_dom(browser, path)))
    assert "boom" in found and "console.error: oops" in found and "csp: img-src" in found


def test_png_decoder_agrees_with_pil(tmp_path):
    """The pure-Python fallback decodes what PIL decodes (a PNG written by PIL with each filter)."""
    pil = pytest.importorskip("PIL.Image")
    import numpy as np

    rng = np.random.default_rng(0)
    image = (rng.integers(0, 256, (17, 23, 3)) // 37 * 37).astype(np.uint8)  # few levels: every filter wins
    path = tmp_path / "x.png"
    pil.fromarray(image).save(path, optimize=True)
    assert (chromium_page.decode_png(path.read_bytes()) == image).all()
    blank = np.full((8, 8, 3), 255, dtype=np.uint8)
    assert chromium_page.ink(blank) == (0.0, 0.0)


def test_summary_states_units(plain):
    """The headline rows carry their units: times in s/ms/µs, memory in (decimal) bytes."""
    text = parse(plain).sections["summary"]
    for label in ("TTFT (prefill of the prompt)", "TPOT (one decode step)", "training step time"):
        assert re.search(re.escape(label) + r"\d+(\.\d+)? (s|ms|µs)", text), label
    assert re.search(r"serving memory per chip3\.\d+ MB: fits", text)  # weights 3.386 MB + KV + activations


def test_sources_follow_the_chip():
    """A preset's own figures cite its data file; the ideal chip's efficiencies are the defaults;
    a figure changed by the user is said to be given, not cited."""
    real = parse(report_html.html_report(tiny(), "h100", seq_len=64, phases=["decode"], plots=False))
    assert re.search(r"matmul efficiency\d+/\d+ \(0\.\d+\)fit: GEMM bf16 on aiconfigurator-core [\d.]+, "
                     r"systems/data/h100_sxm/gemm/", real.sections["assumptions"])
    ideal = parse(report_html.html_report(tiny(), "h100-ideal", seq_len=64, phases=["decode"], plots=False))
    assert "matmul efficiency1 (1)not set: the ideal default" in ideal.sections["assumptions"]
    assert "HBM capacity85.9 GB[H100-DS] 80GB HBM3" in ideal.sections["chip"]  # the datasheet still
    from symcost import hardware

    big = hardware.H100_SXM.model_copy(update={"hbm_capacity": 96 * 10**9})
    mine = parse(report_html.html_report(tiny(), big, seq_len=64, phases=["decode"], plots=False))
    assert "HBM capacity96 GBas given (not a preset's figure)" in mine.sections["chip"]
    assert "HBM bandwidth3.35 TB/s[H100-DS] 3.35 TB/s" in mine.sections["chip"]


def test_without_chromium_the_browser_tests_say_why(monkeypatch):
    """No browser on PATH: the fixture's reason names the package to install."""
    monkeypatch.setenv("PATH", "")
    assert chromium_page.usable_chromium() == (
        None, "headless Chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")


def test_model_table_states_the_head_dim_it_uses(plain):
    """A layer built without ``head_dim`` uses h / a = 256 / 4 = 64: the table says so instead of
    printing the unset field (``head_dim = None``); unset options print nothing."""
    model = parse(plain).sections["model"]
    assert "head_dim = None" not in model and "= None" not in model
    assert "head_dim = 64 (hidden_size / num_heads)" in model


def test_html_summary_states_both_limits():
    """llama-3-8b on an H100, batch 1: 327,894 tokens fit in HBM (tests/cli/test_cli_text.py derives it);
    it was trained to 8,192."""
    from symcost import models

    page = report_html.html_report(models.get("llama-3-8b"), "h100", phases=["decode"], plots=False)
    assert "8,192 tokens, the model&#x27;s trained length (max_position_embeddings) binds; 327,894 fit in HBM" in page


def test_a_chip_file_with_a_base_is_stated_and_sourced():
    """examples/chips/nvidia-h100-pcie.yaml (base: h100): the page's header and chip section say
    where the efficiency model comes from, and each field the base supplied cites the H100 preset's
    source, marked as the base's."""
    from pathlib import Path

    from symcost import hardware

    chip = hardware.load_file(Path(__file__).resolve().parents[2] / "examples" / "chips" / "nvidia-h100-pcie.yaml")
    page = report_html.html_report(tiny(), chip, seq_len=128, plots=False)
    text = parse(page).sections
    assert "efficiency model: base H100_SXM" in html.unescape(page.split("<section")[0])
    assert "H100_PCIe; efficiency model: base H100_SXM" in text["chip"]
    # memory_efficiency's source: the H100 preset's fit on its elementwise table
    assert "H100_SXM's (the file's base): fit: elementwise on aiconfigurator-core" in text["assumptions"]


def test_training_numbers_of_a_layout_that_does_not_fit_say_so():
    """llama-3-8b training on one H100 does not fit (183.3 GB of 80 GiB = 85.9 GB, the page's 4 digits; the
    loss's logit gradient in bf16, in place, tests/cli/test_cli_report.py): the
    summary's step time and MFU, and the training section's step line, carry the verdict beside the
    number."""
    from symcost import models

    page = report_html.html_report(models.get("llama-3-8b"), "h100", phases=["training"], plots=False)
    text = parse(page).sections
    summary = text["summary"]
    assert re.search(r"training step time\d+\.\d ms \(does not fit: 183\.3 GB per chip of 85\.9 GB HBM\)", summary)
    assert re.search(r"MFU0\.\d+ \(does not fit", summary)
    assert text["training"].count("does not fit") >= 1
