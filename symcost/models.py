"""Model presets and the Hugging Face ``config.json`` loader.

Each preset is built from its published configuration (the model's ``config.json`` on the
Hugging Face Hub, or the paper for GPT-3); ``tests/test_models.py`` checks every parameter count
against the published figure.

>>> from symcost import models
>>> models.get("llama-3-8b").parameter_count
8030261248
>>> models.get("Llama-2-7B").parameter_count
6738415616
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from .model import Model
from .model_moe import require_int as _require

__all__ = ["get", "names", "from_hf_config", "PRESETS"]


def _llama(name: str, **config: Any) -> Callable[[], Model]:
    return lambda: Model.llama(name=name, **config)


# Configurations from each model's config.json (hidden_size, num_attention_heads,
# num_key_value_heads, num_hidden_layers, vocab_size, intermediate_size, tie_word_embeddings).
PRESETS: dict[str, Callable[[], Model]] = {
    "llama-2-7b": _llama("llama-2-7b", hidden_size=4096, num_heads=32, num_kv_heads=32, num_layers=32,
                         vocab_size=32000, intermediate_size=11008),
    "llama-2-70b": _llama("llama-2-70b", hidden_size=8192, num_heads=64, num_kv_heads=8, num_layers=80,
                          vocab_size=32000, intermediate_size=28672),
    "llama-3-8b": _llama("llama-3-8b", hidden_size=4096, num_heads=32, num_kv_heads=8, num_layers=32,
                         vocab_size=128256, intermediate_size=14336),
    "llama-3-70b": _llama("llama-3-70b", hidden_size=8192, num_heads=64, num_kv_heads=8, num_layers=80,
                          vocab_size=128256, intermediate_size=28672),
    "llama-3.1-405b": _llama("llama-3.1-405b", hidden_size=16384, num_heads=128, num_kv_heads=8,
                             num_layers=126, vocab_size=128256, intermediate_size=53248),
    "mistral-7b": _llama("mistral-7b", hidden_size=4096, num_heads=32, num_kv_heads=8, num_layers=32,
                         vocab_size=32000, intermediate_size=14336),
    "qwen2.5-72b": _llama("qwen2.5-72b", hidden_size=8192, num_heads=64, num_kv_heads=8, num_layers=80,
                          vocab_size=152064, intermediate_size=29568, attention_bias="qkv"),
    "mixtral-8x7b": lambda: _moe().mixtral(name="mixtral-8x7b", hidden_size=4096, num_heads=32, num_kv_heads=8,
                                           num_layers=32, vocab_size=32000, intermediate_size=14336,
                                           num_experts=8, top_k=2),
    "deepseek-v3": lambda: _moe().deepseek_v3(
        name="deepseek-v3", hidden_size=7168, num_heads=128, num_layers=61, vocab_size=129280,
        intermediate_size=18432, moe_intermediate_size=2048, num_experts=256, top_k=8, num_shared_experts=1,
        first_dense_layers=3, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
        v_head_dim=128),
    # GPT-3 175B as Megatron-LM trains it (Narayanan et al. 2021): 96 layers, h = 12288, 96 heads,
    # learned positions for 2048 tokens, vocabulary padded to 51200, tied embeddings.
    "gpt3-175b": lambda: Model.gpt(name="gpt3-175b", hidden_size=12288, num_heads=96, num_layers=96,
                                   vocab_size=51200, seq_len=2048),
}

def _moe():
    from . import model_moe

    return model_moe


_CACHE: dict[str, Model] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def names() -> list[str]:
    """The preset names."""
    return list(PRESETS)


def get(name: str) -> Model:
    """A preset by name (case-insensitive); ``ValueError`` listing the known names otherwise."""
    key = _key(name)
    if key not in PRESETS:
        raise ValueError(f"models: unknown model {name!r}; known: {', '.join(PRESETS)}")
    if key not in _CACHE:
        _CACHE[key] = PRESETS[key]()
    return _CACHE[key]


_SUPPORTED = ("llama", "mistral", "mixtral", "qwen2", "deepseek_v3")


def from_hf_config(path_or_dict: str | Path | Mapping[str, Any], *, name: str | None = None) -> Model:
    """A :class:`Model` from a Hugging Face ``config.json`` (a path or its parsed dict).

    Supported ``model_type``: llama, mistral, mixtral, qwen2, deepseek_v3; anything else is a
    ``ValueError`` naming the type and the supported ones.
    """
    if isinstance(path_or_dict, Mapping):
        config, source = dict(path_or_dict), "config"
    else:
        path = Path(path_or_dict)
        source = str(path)
        try:
            config = json.loads(path.read_text())
        except OSError as err:
            raise ValueError(f"{source}: cannot read ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: malformed JSON ({err})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{source}: expected a JSON object")
    model_type = config.get("model_type")
    if model_type not in _SUPPORTED:
        raise ValueError(f"{source}: unsupported model_type {model_type!r}; supported: {', '.join(_SUPPORTED)}")
    get_int = lambda key: _require(config, key, source)  # noqa: E731
    common: dict[str, Any] = {
        "hidden_size": get_int("hidden_size"),
        "num_heads": get_int("num_attention_heads"),
        "num_layers": get_int("num_hidden_layers"),
        "vocab_size": get_int("vocab_size"),
        "tied": bool(config.get("tie_word_embeddings", False)),
        "name": name or config.get("_name_or_path") or model_type,
    }
    kv = config.get("num_key_value_heads") or common["num_heads"]
    if model_type in ("llama", "mistral", "qwen2"):
        bias: Any = "qkv" if model_type == "qwen2" else bool(config.get("attention_bias", False))
        return Model.llama(num_kv_heads=kv, intermediate_size=get_int("intermediate_size"),
                           head_dim=config.get("head_dim"), attention_bias=bias, **common)
    from .model_moe import from_moe_config

    return from_moe_config(model_type, config, common, kv, source)
