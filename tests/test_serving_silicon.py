"""benchmarks/serving_silicon.py: continuous batching against the measured serving runs shipped
with aiconfigurator-core. The package is located, never imported; without it the script says so
in one line. The README writer and the tables are tested always, the runs where installed."""

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "serving_silicon.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmarks_serving_silicon", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _installed() -> bool:
    return importlib.util.find_spec("aiconfigurator_core") is not None


def test_without_the_package_the_script_says_so(monkeypatch):
    bench = _load()
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match="aiconfigurator-core is not installed"):
        bench.silicon_csv()


def test_the_readme_block_is_replaced_and_the_rest_kept(tmp_path):
    bench = _load()
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nbefore\n\n{bench.README_BEGIN}\nold\n{bench.README_END}\n\nafter\n")
    bench.write_readme(str(readme), "```text\nruns: X\n```\n", "python benchmarks/serving_silicon.py",
                       today="2026-12-08")
    text = readme.read_text()
    assert "old" not in text and text.startswith("# T\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "`python benchmarks/serving_silicon.py` on 2026-12-08, one run:\n\n```text\nruns: X\n```\n" in text
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="serving-silicon:begin"):
        bench.write_readme(str(readme), "x", "python benchmarks/serving_silicon.py")


def test_the_project_readme_holds_one_block_written_by_a_run():
    bench = _load()
    text = pathlib.Path(bench.page("serving-silicon")).read_text(encoding="utf-8")
    assert text.count(bench.README_BEGIN) == 1 and text.count(bench.README_END) == 1
    block = text.split(bench.README_BEGIN)[1].split(bench.README_END)[0]
    # 1,042 runs read, all 1,042 compared. The tightest are Qwen3-32B's bf16 SGLang runs on one H100:
    # SGLang's own memory rule at TP 1 reserves 13,312 + 128 = 13,440 MiB of the 80 GiB = 81,920 MiB,
    # mem_fraction_static = round(1 - 13,440/81,920, 3) = round(0.83594, 3) = 0.836; 0.836 x 85,899,345,920
    # = 71.81e9 bytes for weights and KV cache. Qwen3-32B's weights (64 layers x 487.6e6 + 2 x 151,936 x
    # 5,120 embedding and head = 32.76e9 parameters) are 65.52e9 bytes in bf16, leaving 6.29e9 bytes: one
    # 1024 + 511-token request holds 1,535 x 64 layers x 2 x 8 heads x 128 x 2 bytes = 0.402e9, so they fit
    # (under the decimal 80e9 of before, 0.824 x 80e9 - 65.52e9 = 0.396e9 < 0.402e9: 4 runs were left out)
    assert "runs: silicon_sample.csv of aiconfigurator-core " in block and "| every run | 1042 |" in block
    assert "compared 1042; left out: other models" in block and "does not fit for symcost" not in block


def test_the_tables_by_hand():
    """A ratio cell is the median of symcost / measured and the mean |ln ratio|: ratios 1/2, 1, 2
    have median 1 and mean |ln| 2 ln 2 / 3 = 0.46."""
    bench = _load()
    run = bench.Run("m", "H100_SXM", "vllm", "0", "bf16", 1, 100, 10, 3, 1.0, 1.0)
    rows = [bench.Row(run, x, x, x, x, "interleaved", x, x) for x in (0.5, 1.0, 2.0)]
    table = bench.summary_table(rows, lambda r: ("all",), ("runs",))
    assert table.splitlines()[0].endswith("| TPOT | static TPOT | TTFT | TTFT first wave | TTFT steady | static TTFT |")
    assert table.splitlines()[-1] == ("| all | 3 | 1.00 (0.46) | 1.00 (0.46) | 1.00 (0.46) | 1.00 (0.46) | 1.00 (0.46) "
                                      "| 1.00 (0.46) |")
    assert bench._bucket(3) == "1-4" and bench._bucket(64) == "17-64" and bench._bucket(512) == "129-512"


@pytest.mark.skipif(not _installed(), reason="aiconfigurator-core is not installed (the benchmark's peer)")
def test_the_runs_read_and_one_estimate():
    """The 1,042 aggregated runs of Llama-3.1-8B/70B and Qwen3-32B on H100, H200 and B200 (the issue's
    count), each with a positive TTFT and TPOT; symcost estimates one of them."""
    bench = _load()
    runs, left = bench.read_runs(bench.silicon_csv())
    assert len(runs) == 1042 and all(r.ttft > 0 and r.tpot > 0 for r in runs)
    assert {r.model for r in runs} == {"llama-3.1-8b", "llama-3.1-70b", "qwen3-32b"}
    assert {r.chip for r in runs} == {"H100_SXM", "H200_SXM", "B200"}
    one = next(r for r in runs if r.model == "llama-3.1-8b" and r.backend == "trtllm" and r.concurrency == 16)
    out = bench.estimate([one])
    [row] = out.rows
    assert min(row.ttft, row.tpot, row.first_wave, row.static_ttft, row.static_tpot) > 0
    assert row.first_wave >= row.ttft  # the first wave queues; the steady state does not
    # the benchmark's mean: the first wave once in 10 requests per client (AIConfigurator's harness)
    assert row.benchmark == pytest.approx((row.first_wave + 9 * row.ttft) / 10)


@pytest.mark.parametrize("fmt, per_token", [
    # Llama-3-8B: 32 layers x 2 (K and V) x 8 KV heads x 128 dims: 65,536 values a token
    ("bf16", 65_536 * 2),           # a bf16 checkpoint keeps a bf16 cache
    ("fp8_e4m3", 65_536 * 1),       # an FP8 checkpoint runs an FP8 cache (AIConfigurator's rule for its runs)
    ("nvfp4", 65_536 * 1),          # and so does an NVFP4 one (no FP4 cache)
])
def test_a_quantized_runs_kv_cache_is_fp8(fmt, per_token):
    from symcost import hardware

    bench = _load()
    model = bench.symcost_model("llama-3.1-8b", fmt)
    step = model.inference_step(hardware.get("B200"), 1, 1000, fmt)
    assert step.kv_cache_memory == 1000 * per_token


def test_the_report_breaks_the_runs_down_by_regime():
    """Beside the concurrency buckets, one line per backend and regime (the regime each run's
    concurrency falls in): two vLLM runs, one synchronized (ratios 1/2, 2: median 1.25, mean |ln|
    ln 2 = 0.69) and one kv-bound (ratio 1)."""
    from collections import Counter

    bench = _load()
    run = bench.Run("m", "H100_SXM", "vllm", "0", "bf16", 1, 100, 10, 3, 1.0, 1.0)
    rows = [bench.Row(run, x, x, x, x, regime, x, x) for x, regime in
            ((0.5, "synchronized"), (2.0, "synchronized"), (1.0, "kv-bound"))]
    out = bench.Comparison(rows, Counter(), {}, 1, 0.0)
    text = bench.report(out, pathlib.Path("silicon_sample.csv"))
    block = text.split("By backend and regime:")[1].split("By model")[0]
    assert "| vllm | kv-bound | 1 | 1.00 (0.00) |" in block
    assert "| vllm | synchronized | 2 | 1.25 (0.69) |" in block
