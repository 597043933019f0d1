"""benchmarks/aiconfigurator_compare.py: symcost against AIConfigurator's static estimate.

AIConfigurator is a peer installed only in the benchmark's environment: the tests that run it are
skipped without it; the one-line exit without it and the README writer are tested always."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "aiconfigurator_compare.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmarks_aiconfigurator_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _table(text: str, header_start: str) -> list[list[str]]:
    """The body rows (cells stripped) of the markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert set(lines[start + 1].replace("|", "").replace("-", "").replace(":", "")) == set()  # the rule line
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(header), line
        rows.append(cells)
    return rows


def test_one_point_both_tools_give_positive_times_and_the_tables_parse():
    pytest.importorskip("aiconfigurator")
    bench = _load()
    point = bench.Point("llama-3.1-8b", "h100", "trtllm", "bf16", tp=1, batch=1, isl=1024, osl=128)
    out = bench.compare([point])
    assert not out.skipped and len(out.rows) == 1
    row = out.rows[0]
    assert row.point == point
    assert min(row.aic_ttft, row.aic_tpot, row.sc_ttft, row.sc_tpot) > 0
    # both tools: the prefill of 1024 tokens takes longer than one decode step of the same sequence
    assert row.aic_ttft > row.aic_tpot and row.sc_ttft > row.sc_tpot
    text = bench.report(out)
    assert "aiconfigurator 0." in text and "symcost " in text and "tables trtllm " in text
    [cells] = _table(text, "| point |")
    assert cells[0] == point.label
    aic_ttft, sc_ttft, ttft_ratio, aic_tpot, sc_tpot, tpot_ratio = map(float, cells[1:])
    assert min(aic_ttft, sc_ttft, aic_tpot, sc_tpot) > 0
    # the printed ratio is the printed times' quotient, to the printed precision
    assert ttft_ratio == pytest.approx(sc_ttft / aic_ttft, abs=0.006)
    assert tpot_ratio == pytest.approx(sc_tpot / aic_tpot, abs=0.006)
    [group] = _table(text, "| model | GPU | backend | dtype |")
    assert group[:5] == ["llama-3.1-8b", "h100", "trtllm", "bf16", "1"]
    assert float(group[5]) == pytest.approx(ttft_ratio, abs=0.006) and float(group[7]) == pytest.approx(
        tpot_ratio, abs=0.006)


def test_the_compared_shapes_are_aiconfigurators_own():
    """symcost's models have the parameters of the config.json files AIConfigurator ships."""
    pytest.importorskip("aiconfigurator")
    import importlib.resources

    bench = _load()
    configs = importlib.resources.files("aiconfigurator_core") / "model_configs"
    for name, hf_id in bench.MODELS.items():
        c = json.loads((configs / (hf_id.replace("/", "--") + "_config.json")).read_text())
        h, a, g, f, L, V = (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
                            c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"])
        d = c.get("head_dim") or h // a
        qk_norm = 2 * d if c["model_type"] == "qwen3" else 0  # Qwen3's q_norm and k_norm, one d-vector each
        # per layer: Q and O (h x a*d each), K and V (h x g*d each), gate, up and down (h x f each), 2 RMSNorms
        layer = 2 * h * a * d + 2 * h * g * d + 3 * h * f + 2 * h + qk_norm
        untied = not c.get("tie_word_embeddings", False)
        want = V * h * (2 if untied else 1) + L * layer + h  # embedding, (LM head), blocks, final norm
        assert bench._symcost_model(name).parameter_count == want, name


def test_without_aiconfigurator_the_script_exits_with_one_line():
    blocked = ("import runpy, sys\nsys.modules['aiconfigurator'] = None  # an import of it fails\n"
               f"sys.argv = [{str(SCRIPT)!r}, '--quick']\nrunpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [_load().INSTALL_HINT]
    assert "pip install aiconfigurator" in done.stderr


def test_the_readme_block_is_replaced_and_the_rest_kept(tmp_path):
    bench = _load()
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{bench.README_BEGIN}\nold table\n{bench.README_END}\n\nafter\n")
    bench.write_readme(str(readme), "versions: X\n\n| a | b |\n|---|---:|\n| x | 1 |\n",
                       "python benchmarks/aiconfigurator_compare.py", today="2026-12-07")
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "`python benchmarks/aiconfigurator_compare.py` on 2026-12-07, one run:\n\nversions: X\n" in text
    assert "| x | 1 |\n" + bench.README_END in text
    bench.write_readme(str(readme), "versions: Y\n", "python benchmarks/aiconfigurator_compare.py --quick")
    again = readme.read_text()
    assert "versions: X" not in again and "versions: Y" in again and again.count(bench.README_BEGIN) == 1


def test_a_readme_without_the_markers_is_refused(tmp_path):
    bench = _load()
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="aic-compare:begin"):
        bench.write_readme(str(readme), "x", "python benchmarks/aiconfigurator_compare.py")
    assert readme.read_text() == "# no markers\n"


def test_the_project_readme_holds_one_written_block():
    bench = _load()
    text = pathlib.Path(bench.page("aic-compare")).read_text(encoding="utf-8")
    assert text.count(bench.README_BEGIN) == 1 and text.count(bench.README_END) == 1
    block = text.split(bench.README_BEGIN)[1].split(bench.README_END)[0]
    # written by a run: the versions of both tools, the times, and the summary tables
    assert "\nversions: aiconfigurator " in block and "; symcost " in block and "\ntime: AIConfigurator " in block
    assert _table(block, "| model | GPU | backend | dtype |") and _table(block, "| slice |")
