"""``--ignore-hf-keys`` (issue 20, item 11): every subcommand that reads a config.json through
``--model`` (or ``--draft-model``) can acknowledge keys as cost-free, and a refusal names the option."""

import json

import pytest
from cli_run import main_run

# a small Llama-shaped config with a key symcost does not know
CONFIG = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 4,
          "num_hidden_layers": 2, "vocab_size": 1024, "intermediate_size": 512, "mystery_flag": 1,
          "other_flag": "x"}
COMMANDS = [
    ["report", "--phase", "decode"],
    ["solve", "max-batch", "--seq", "4096"],
    ["search", "--chips", "2", "--global-batch", "2", "--seq", "1024", "--phase", "inference"],
    ["sweep", "--batch", "1,2", "--phase", "decode", "--out", "sweep.csv"],
    ["latex", "--phase", "decode"],
]


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sweep writes its CSV here
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    return str(path)


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_unknown_key_error_names_the_option(capsys, config, command):
    code, _, err = main_run(capsys, *command, "--model", config)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "unknown key 'mystery_flag'" in err and "--ignore-hf-keys mystery_flag" in err


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_ignore_hf_keys_acknowledges_the_keys(capsys, config, command):
    code, out, err = main_run(capsys, *command, "--model", config, "--ignore-hf-keys", "mystery_flag,other_flag")
    assert code == 0, err
    assert out


def test_draft_model_takes_the_same_keys(capsys, config):
    args = ["report", "--phase", "decode", "--spec-k", "2", "--spec-alpha", "0.5", "--draft-model", config]
    code, _, err = main_run(capsys, *args)
    assert code == 2 and "--ignore-hf-keys" in err
    code, _, err = main_run(capsys, *args, "--ignore-hf-keys", "mystery_flag,other_flag")
    assert code == 0, err


def test_llama4_report_says_text_only(capsys, tmp_path):
    """A Llama 4 config (Llama4ForConditionalGeneration): the report's header states that the
    costs are the text model's and how many vision parameters they leave out (871,932,416 at the
    published vision_config, tests/models/test_llama4.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    from test_llama4 import SCOUT

    path = tmp_path / "config.json"
    path.write_text(json.dumps({**SCOUT, "text_config": {**SCOUT["text_config"], "num_hidden_layers": 4}}))
    code, out, err = main_run(capsys, "report", "--phase", "decode", "--model", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["vision_parameters_not_costed"] == 871_932_416
    code, out, err = main_run(capsys, "report", "--phase", "decode", "--model", str(path))
    assert code == 0, err
    assert "text only, the vision encoder's 871,932,416 not costed" in out.splitlines()[0]
