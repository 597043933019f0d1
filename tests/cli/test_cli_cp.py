"""``--cp`` on the command line (context parallelism, docs/conventions.md §3b)."""

import json

from cli_run import subprocess_run as run


def test_report_cp_halves_the_kv_cache():
    """llama-3-8b decode at 8192 keys, batch 2: the KV cache per chip 2*2*8192*8*128*2*32 bytes at
    cp = 1, half of it at --cp 2; the header names CP and counts 2 chips."""
    one = json.loads(run("report", "--json", "--phase", "decode", "--batch", "2").stdout)
    two = json.loads(run("report", "--json", "--phase", "decode", "--batch", "2", "--cp", "2").stdout)
    kv = [d["phases"]["decode"]["total"]["memory_per_chip"]["kv_cache"] for d in (one, two)]
    assert kv == [2 * 2 * 8192 * 8 * 128 * 2 * 32, 2 * 8192 * 8 * 128 * 2 * 32]
    text = run("report", "--phase", "prefill", "--cp", "2", "--cp-comm", "all_gather").stdout
    assert "CP 2 (all_gather): 2 chips" in text


def test_bad_cp_is_one_line():
    """--cp 0 and a seq_len that does not split into 2*cp chunks: one line, no traceback."""
    bad = run("report", "--cp", "0", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--cp" in bad.stderr
    odd = run("report", "--phase", "prefill", "--cp", "3", "--seq", "8192", check=False)
    assert odd.returncode != 0 and "Traceback" not in odd.stderr
    assert "context_parallel" in odd.stderr and len(odd.stderr.strip().splitlines()) == 1


def test_search_takes_cp_degrees(tmp_path):
    """search --cp 1,2 on a tiny model: inference rows with cp = 2 use t*cp*pp*dp = 4 chips."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 256, "num_attention_heads": 8,
                                  "num_key_value_heads": 4, "num_hidden_layers": 2, "vocab_size": 1024,
                                  "intermediate_size": 512}))
    data = json.loads(run("search", "--model", str(config), "--chips", "4", "--global-batch", "4", "--seq", "4096",
                          "--phase", "inference", "--cp", "1,2", "--json").stdout)
    cps = [r for r in data["rows"] if r["cp"] == 2]
    assert cps and all(r["tp"] * r["cp"] * r["pp"] * r["dp"] == 4 for r in cps)
