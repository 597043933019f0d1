"""Charts: each writes a PNG of exactly size × dpi pixels or an SVG, and refuses what it can't draw."""

import re
import struct
import sys
from fractions import Fraction

import pytest

import symcost as sc
from symcost import hardware
from symcost import symbols as S
from symcost.models.model import Model
from symcost.report import plots

pytest.importorskip("matplotlib")

H100 = hardware.H100_SXM.ideal()  # the roofline plot is drawn against the ideal chip
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = (3.0, 2.0)  # inches; small figures keep the suite fast


def png_size(path):
    """(width, height) in pixels from the IHDR chunk: signature (8 bytes), chunk length (4),
    b"IHDR" (4), then width and height as big-endian uint32."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def small_llama(layers=4):
    return Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=layers,
                       vocab_size=32000, intermediate_size=4096)


@pytest.fixture(scope="module")
def mlp_metrics():
    layer = sc.GatedMLPLayer(hidden_size=1024, intermediate_size=4096)
    return layer.compute_metrics(batch_size=1, seq_len=512, phase="prefill", dtype="bf16",
                                 hardware=H100)


@pytest.fixture(scope="module")
def steps():
    model = small_llama()
    kw = {"seq_len": 1024, "global_batch": 8}
    return [model.training_step(H100, **kw, parallelism={"data_parallel": 8}),
            model.training_step(H100, **kw, parallelism={"pipeline_parallel": 2, "data_parallel": 4},
                                recompute="full")]


# -- files and sizes ---------------------------------------------------------------------------


def test_roofline_png_is_size_times_dpi(tmp_path, mlp_metrics):
    """3 x 2 inches at 80 dpi is 240 x 160 pixels; the returned path is the file written."""
    out = plots.roofline(mlp_metrics, H100, tmp_path / "roof.png", size=SMALL, dpi=80)
    assert out == tmp_path / "roof.png" and out.stat().st_size > 0
    assert png_size(out) == (3 * 80, 2 * 80)


def test_default_size_is_640_by_480(tmp_path, mlp_metrics):
    """6.4 x 4.8 inches at 100 dpi."""
    out = plots.roofline(mlp_metrics, "h100-ideal", str(tmp_path / "roof.PNG"))
    assert png_size(out) == (640, 480)


def test_roofline_svg(tmp_path, mlp_metrics):
    """The suffix picks the format; an SVG starts with the XML declaration or the svg tag."""
    out = plots.roofline(mlp_metrics, H100, tmp_path / "roof.svg", size=SMALL, title="MLP")
    head = out.read_text()[:100].lstrip()
    assert head.startswith("<?xml") or head.startswith("<svg")


def test_roofline_of_a_training_model(tmp_path):
    """Backward ops, many of them sharing a point, and ops without FLOPs (the embedding) draw."""
    m = small_llama(layers=2).compute_metrics(batch_size=1, seq_len=256, phase="training",
                                              dtype="bf16", hardware=H100)
    assert any(op.flops == 0 for op, _ in m.ops)  # skipped, not an error
    out = plots.roofline(m, H100, tmp_path / "train.png", size=SMALL, dpi=50)
    assert png_size(out) == (150, 100)


def test_memory_vs_seq_len_model_png(tmp_path):
    out = plots.memory_vs_seq_len(small_llama(), H100, tmp_path / "mem.png", size=SMALL, dpi=60)
    assert png_size(out) == (180, 120)


def test_memory_vs_seq_len_layer_svg(tmp_path):
    """A layer in any phase, with a grid end of our choosing."""
    attn = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8)
    out = plots.memory_vs_seq_len(attn, "h100", tmp_path / "mem.svg", phase="prefill",
                                  batch_size=4, max_seq_len=2**16, size=SMALL)
    assert out.read_text()[:100].lstrip().startswith(("<?xml", "<svg"))


def test_memory_vs_seq_len_when_nothing_fits(tmp_path):
    """A chip too small for the weights still gets a chart (with a note, no context line)."""
    tiny = sc.Hardware(**{**H100.to_dict(), "name": "tiny", "hbm_capacity": 10**6})
    assert small_llama().max_context(tiny).status == "nothing_fits"
    out = plots.memory_vs_seq_len(small_llama(), tiny, tmp_path / "none.png", size=SMALL, dpi=40)
    assert png_size(out) == (120, 80)


def test_step_breakdown_one_and_many(tmp_path, steps):
    one = plots.step_breakdown(steps[0], tmp_path / "one.png", size=SMALL, dpi=70)
    assert png_size(one) == (210, 140)
    many = plots.step_breakdown(steps, tmp_path / "many.svg", labels=["DP 8", "PP 2 x DP 4"])
    assert many.read_text()[:100].lstrip().startswith(("<?xml", "<svg"))


# -- what the charts show ----------------------------------------------------------------------


def test_roofline_points_by_hand(mlp_metrics):
    """gate, up (512 x 1024) @ (1024 x 4096) and down (512 x 4096) @ (4096 x 1024) have the same
    FLOPs 2 * 512 * 4096 * 1024 and bytes 2 * (512*1024 + 1024*4096 + 512*4096), so they share one
    point at intensity 4096/13 ≈ 315 FLOP/B, past the H100's ridge 989.4e12 / 3.35e12 ≈ 295:
    compute-bound, at the peak. silu reads and writes 2 bytes per element for 4 FLOPs: I = 1,
    memory-bound at 1 × 3.35 TB/s."""
    peak = H100.effective_peak("bf16")
    points = {p.names: p for p in plots._roofline_points(mlp_metrics, H100, peak, sc.DataType.BF16)}
    matmuls = points[("gate", "up", "down")]
    flops = 2 * 512 * 4096 * 1024
    nbytes = 2 * (512 * 1024 + 1024 * 4096 + 512 * 4096)
    assert matmuls.intensity == Fraction(flops, nbytes) == Fraction(4096, 13)
    assert matmuls.intensity > peak / H100.effective_hbm_bandwidth
    assert matmuls.achieved == peak
    assert points[("silu",)].intensity == 1
    assert points[("silu",)].achieved == H100.effective_hbm_bandwidth
    assert sum(p.share for p in points.values()) == 1  # every op placed: the shares add up


def test_step_breakdown_labels_dp_comm_gradient_sync():
    """dp_comm also holds the TP sum of replicated weights' gradients and the tied embedding's PP
    all-reduce (docs/conventions.md §16 item 5): its bar is "gradient sync", not "DP comm"."""
    assert dict(plots._TIME_PARTS)["dp_comm"] == "gradient sync"


def test_step_breakdown_parts_sum_to_the_step(steps):
    """What the bars stack adds up to step_time and memory_per_chip."""
    for st in steps:
        parts = st.breakdown()
        time_parts = ("compute", "bubble", "pipeline_comm", "dp_comm", "optimizer_step")
        assert sum(parts[k] for k in time_parts) == st.step_time
        assert (sum(parts[k] for k in ("weights", "gradients", "optimizer", "activations"))
                == st.memory_per_chip)


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chart.jpg", "chart.eps", "chart"])  # .pdf is written (issue 8 item 11)
def test_other_suffixes_are_refused(tmp_path, mlp_metrics, steps, name):
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plots.roofline(mlp_metrics, H100, tmp_path / name)
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plots.memory_vs_seq_len(small_llama(), H100, tmp_path / name)
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plots.step_breakdown(steps, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_symbolic_metrics_are_refused(tmp_path):
    """Symbolic shapes name the symbol; the symbolic chip says to bind hardware and dtype."""
    shapes = sc.MLPLayer(intermediate_size=4096).compute_metrics(
        batch_size=1, seq_len=512, dtype="bf16", hardware=H100)
    with pytest.raises(ValueError, match=r"hidden_size \(h\)"):
        plots.roofline(shapes, H100, tmp_path / "x.png")
    chip = sc.MLPLayer(hidden_size=1024, intermediate_size=4096).compute_metrics(
        batch_size=1, seq_len=512, dtype="bf16")
    with pytest.raises(ValueError, match="pass hardware= and dtype="):
        plots.roofline(chip, H100, tmp_path / "x.png")
    # bound afterwards, the same metrics draw
    plots.roofline(chip.evaluate(hardware=H100, dtype="bf16"), H100, tmp_path / "x.png",
                   size=SMALL, dpi=30)


def test_roofline_refuses_a_different_peak(tmp_path, mlp_metrics):
    """Metrics timed at the bf16 peak are not drawn under the fp8 roof."""
    with pytest.raises(ValueError, match="timed at"):
        plots.roofline(mlp_metrics, H100, tmp_path / "x.png", dtype="fp8_e4m3")


def test_memory_and_step_refuse_symbols(tmp_path):
    symbolic = Model.llama(hidden_size=1024, num_heads=16, num_kv_heads=4, num_layers=S.num_layers,
                           vocab_size=32000, intermediate_size=4096)
    with pytest.raises(ValueError, match=r"num_layers \(L\)"):
        plots.memory_vs_seq_len(symbolic, H100, tmp_path / "x.png")
    st = small_llama().training_step(H100, seq_len=S.seq_len, global_batch=8)
    with pytest.raises(ValueError, match=r"step 1 is symbolic in seq_len \(s\)"):
        plots.step_breakdown(st, tmp_path / "x.png")


def test_other_refusals(tmp_path, mlp_metrics, steps):
    with pytest.raises(ValueError, match="2 labels for 1 steps"):
        plots.step_breakdown(steps[:1], tmp_path / "x.png", labels=["a", "b"])
    with pytest.raises(ValueError, match="symbolic chip"):
        plots.roofline(mlp_metrics, sc.Hardware.symbolic(), tmp_path / "x.png")
    with pytest.raises(ValueError, match="serving"):
        plots.memory_vs_seq_len(small_llama(), H100, tmp_path / "x.png", phase="training")
    with pytest.raises(ValueError, match="size"):
        plots.roofline(mlp_metrics, H100, tmp_path / "x.png", size=(0, 2))


def test_missing_matplotlib_says_what_to_install(tmp_path, mlp_metrics, monkeypatch):
    """With matplotlib unimportable the error names the extra to install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install symcost\[plot\]"):
        plots.roofline(mlp_metrics, H100, tmp_path / "x.png")


# -- formats, titles and axis units (issue 13 item 4) ------------------------------------------

UNIT = re.compile(r"\((FLOP / HBM byte|TFLOP/s|tokens|GB|s)\)$")
"""An axis label ends with its unit in parentheses."""


@pytest.fixture
def drawn(monkeypatch):
    """The figures the charts save, kept (plots._save is wrapped; the files are written as usual)."""
    figures, save = [], plots._save

    def keep(fig, out, kind, dpi):
        figures.append(fig)
        return save(fig, out, kind, dpi)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _is_pdf(path):
    """A PDF file starts with "%PDF-" and ends with "%%EOF" (ISO 32000-1, 7.5.2 and 7.5.5)."""
    data = path.read_bytes()
    return data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


def test_every_chart_writes_pdf(tmp_path, mlp_metrics, steps):
    """The .pdf suffix gives a PDF from each chart (matplotlib's vector PDF backend)."""
    outs = [plots.roofline(mlp_metrics, H100, tmp_path / "roof.pdf", size=SMALL),
            plots.memory_vs_seq_len(small_llama(2), H100, tmp_path / "mem.pdf", size=SMALL),
            plots.step_breakdown(steps[0], tmp_path / "step.PDF", size=SMALL)]
    assert all(_is_pdf(out) for out in outs)
    assert plots.FORMATS == ("png", "svg", "pdf")


def test_every_chart_writes_svg(tmp_path, mlp_metrics, steps):
    outs = [plots.roofline(mlp_metrics, H100, tmp_path / "roof.svg", size=SMALL),
            plots.memory_vs_seq_len(small_llama(2), H100, tmp_path / "mem.svg", size=SMALL),
            plots.step_breakdown(steps[0], tmp_path / "step.svg", size=SMALL)]
    assert all("<svg" in out.read_text()[:2000] for out in outs)


def test_every_axis_has_a_unit(tmp_path, mlp_metrics, steps, drawn):
    """Each value axis of each chart names its unit; the step chart's x axis is categorical (the
    steps), so its labels are the steps' names instead."""
    plots.roofline(mlp_metrics, H100, tmp_path / "a.png", size=SMALL, dpi=30)
    plots.memory_vs_seq_len(small_llama(2), H100, tmp_path / "b.png", size=SMALL, dpi=30)
    plots.step_breakdown(steps, tmp_path / "c.png", size=SMALL, dpi=30)
    roof, memory, step = drawn
    labels = [roof.axes[0].get_xlabel(), roof.axes[0].get_ylabel(), memory.axes[0].get_xlabel(),
              memory.axes[0].get_ylabel()] + [ax.get_ylabel() for ax in step.axes]
    assert [bool(UNIT.search(label)) for label in labels] == [True] * 6, labels
    assert [t.get_text() for t in step.axes[0].get_xticklabels()] == ["1: 8× H100_SXM (ideal)",
                                                                     "2: 8× H100_SXM (ideal)"]


def test_memory_title_names_the_parallelism(tmp_path, drawn):
    """A model under TP 2 with Megatron sequence parallelism, and a layer with its own TP 4."""
    plots.memory_vs_seq_len(small_llama(2), H100, tmp_path / "m.png", size=SMALL, dpi=30,
                            parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"})
    layer = sc.GroupedQueryAttentionLayer(hidden_size=1024, num_heads=16, num_kv_heads=4,
                                          parallelism={"tensor_parallel": 4})
    plots.memory_vs_seq_len(layer, H100, tmp_path / "l.png", size=SMALL, dpi=30, max_seq_len=4096)
    model_title, layer_title = (fig.axes[0].get_title() for fig in drawn)
    assert model_title.endswith("\nTP 2, SP Megatron (over TP), PP 1, EP 1, DP 1")
    assert layer_title.endswith("\nTP 4, SP 1, PP 1, EP 1, DP 1")


# -- nothing hides anything: labels, legends and lines laid out apart (issue 20 item 19) -----------


def _extent(artist, fig):
    return artist.get_window_extent(fig.canvas.get_renderer())


def test_step_time_label_clears_the_title(tmp_path, steps, drawn):
    """The step time printed above each bar stays inside its panel, below the title: also for a step
    of compute alone, whose empty bubble and communication bars sit at the top of the compute bar."""
    alone = small_llama().training_step(H100, seq_len=1024, global_batch=1)  # one chip: compute only
    plots.step_breakdown(alone, tmp_path / "one.png", size=(8, 4))
    plots.step_breakdown(steps, tmp_path / "two.png", size=(8, 4))
    for fig, count in zip(drawn, (1, len(steps))):
        ax = fig.axes[0]
        labels = [t for t in ax.texts if t.get_text().endswith(" s")]
        assert len(labels) == count
        for label in labels:
            assert not _extent(label, fig).overlaps(_extent(ax.title, fig))
            assert _extent(label, fig).y1 <= _extent(ax.patch, fig).y1


def test_memory_legend_leaves_the_hbm_line_visible(tmp_path, drawn):
    """Weights near the capacity (llama-3-70b at TP 2 on an H100: 70.6 of 80 GB) put the HBM line
    high on the chart, where an in-plot legend covered its left end: the legend sits outside the
    plotting area, so no line can hide under it."""
    from symcost import models

    plots.memory_vs_seq_len(models.get("llama-3-70b"), "h100", tmp_path / "m.png",
                            parallelism={"tensor_parallel": 2})
    fig = drawn[0]
    ax = fig.axes[0]
    legend = ax.get_legend() or fig.legends[0]
    assert not _extent(legend, fig).overlaps(_extent(ax.patch, fig))
    hbm = next(line for line in ax.lines if line.get_label().startswith("HBM capacity"))
    assert hbm.get_zorder() > max(c.get_zorder() for c in ax.collections)  # drawn over the stacked areas


def _markers(ax):
    """(x, y, radius) in pixels of every scatter marker: a marker of size s (points squared) is a
    circle sqrt(s) points across."""
    out = []
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets) == 0:
            continue
        radius = coll.get_sizes()[0] ** 0.5 / 2 * ax.figure.dpi / 72
        out += [(x, y, radius) for x, y in ax.transData.transform(offsets)]
    return out


def _covers(box, marker):
    """Whether the circle ``marker`` reaches into ``box`` (nearest point of the box within the radius)."""
    x, y, radius = marker
    dx, dy = max(box.x0 - x, 0, x - box.x1), max(box.y0 - y, 0, y - box.y1)
    return dx * dx + dy * dy < radius * radius


@pytest.mark.parametrize("phase", ["decode", "prefill", "training"])
def test_roofline_labels_overlap_nothing(tmp_path, drawn, phase):
    """Llama-3-8B's block on an H100 at 8,192 tokens: its ops crowd near the roofs (decode: qkv,
    out, gate, up and down at one FLOP per byte; prefill: every GEMM just under the compute roof).
    No op label overlaps another, a marker or the legend."""
    from symcost import models

    block = models.get("llama-3-8b").blocks[0][0].compute_metrics(1, 8192, phase, "bf16", "h100")
    plots.roofline(block, "h100", tmp_path / "r.png")
    fig = drawn[0]
    ax = fig.axes[0]
    labels = [t for t in ax.texts if not t.get_text().startswith(" ridge")]
    boxes = [_extent(t, fig) for t in labels]
    assert len(boxes) >= 5
    clashes = [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes)) for j in range(i)
               if boxes[i].overlaps(boxes[j])]
    covered = [t.get_text() for t, box in zip(labels, boxes) if any(_covers(box, m) for m in _markers(ax))]
    under_legend = [t.get_text() for t, box in zip(labels, boxes) if box.overlaps(_extent(ax.get_legend(), fig))]
    assert (clashes, covered, under_legend) == ([], [], [])
