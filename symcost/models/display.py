"""How a :class:`~symcost.models.model.Model` reads for people: a shape table and the parameter count.

Built on :mod:`symcost.core.display`; the model's fields stay as they are.
"""

from __future__ import annotations

import html as _html
from typing import Any, Optional, Sequence

from pydantic import BaseModel

from ..core import display as d
from ..core import units

__all__ = ["model_repr", "model_text", "model_html", "shape_rows", "context_text", "context_binds"]

_SKIP = {"name", "layer_idx", "parallelism"}


def _shape(layer: Any) -> str:
    """``key=value`` for each scalar field of a layer (sizes and options); flags only when set."""
    out = []
    for key in type(layer).model_fields:
        value = getattr(layer, key)
        if key in _SKIP or value is None or value is False or isinstance(value, BaseModel):
            continue
        out.append(key if value is True else f"{key}={value}")
    return ", ".join(out)


def shape_rows(parts: Sequence[tuple[str, Any, Any]]) -> list[tuple[str, str, Any, str, Any]]:
    """``(part, layer type, count, shape, parameters of one)`` for ``(name, layer, count)`` triples
    (``Model.parts()`` with each block split into its layers, as :meth:`Model.layer_rows` gives them)."""
    return [(name, type(layer).__name__, count, _shape(layer), layer.num_params) for name, layer, count in parts]


def model_repr(model: Any) -> str:
    return d.short_repr("Model", [("name", repr(model.name)), ("layers", d.text(model.num_layers, "plain")),
                                  ("parameters", d.text(model.parameter_count, "count"))])


def vision_note(model: Any) -> str:
    """``"; text only: ..."`` for a model whose checkpoint has a vision part the costs leave out."""
    if not getattr(model, "vision_parameters", None):
        return ""
    return (f" (text only: the checkpoint's vision encoder and projector, "
            f"{d.text(model.vision_parameters, 'count')} parameters, are not costed)")


def model_text(model: Any) -> str:
    lines = [f"{model.name}: {d.text(model.parameter_count, 'count')} parameters, "
             f"{d.text(model.num_layers, 'plain')} blocks{vision_note(model)}"]
    for part, _kind, count, shape, params in shape_rows(model.layer_rows()):
        lines.append(f"  {part:28s} x{str(count):>4s}  {shape}  ({d.text(params, 'count')} parameters each)")
    return "\n".join(lines)


def model_html(model: Any) -> str:
    total = model.parameter_count
    rows = []
    for part, kind, count, shape, params in shape_rows(model.layer_rows()):
        all_copies = count * params
        share = (units.format_percent(units.to_number(all_copies) / units.to_number(total))
                 if d.is_numeric(all_copies) and d.is_numeric(total) and total else "-")
        rows.append([_html.escape(part), _html.escape(kind), d.html(count, "plain"), _html.escape(shape),
                     d.html(params, "count"), d.html(all_copies, "count"), share])
    title = (f"{model.name}: {d.text(total, 'count')} parameters, {d.text(model.num_layers, 'plain')} blocks"
             f"{vision_note(model)}")
    return d.html_section(title, [d.html_table(
        ["part", "layer", "count", "shape", "parameters (one)", "parameters (all)", "share"], rows)])


def context_binds(memory: Optional[int], trained: Optional[int]) -> Optional[str]:
    """What limits the context: ``"HBM"`` (the memory limit ``memory`` is the smaller),
    ``"trained length"`` (the model's ``max_position_embeddings`` is), ``"both"`` (equal);
    ``None`` when memory holds no token or either is unknown.

    >>> context_binds(300196, 8192), context_binds(6000, 40960), context_binds(8192, 8192)
    ('trained length', 'HBM', 'both')
    """
    if memory is None or trained is None:
        return None
    return "both" if memory == trained else "trained length" if trained < memory else "HBM"


def context_text(memory: Optional[int], status: str, trained: Optional[int]) -> str:
    """The longest context as reports state it: the smaller of the tokens that fit in HBM
    (``memory``, :meth:`Model.max_context`'s value; ``status`` when there is none) and the model's
    trained length (``trained``, ``max_position_embeddings``), saying which binds.

    >>> context_text(300196, "found", 8192)
    "8,192 tokens, the model's trained length (max_position_embeddings) binds; 300,196 fit in HBM"
    >>> context_text(6000, "found", 40960)
    "6,000 tokens, HBM binds (the model's trained length is 40,960)"
    >>> context_text(6000, "found", None), context_text(None, "nothing_fits", 8192)
    ('6,000 tokens, HBM binds (the model states no trained length)', 'nothing fits')
    """
    binds = context_binds(memory, trained)
    if memory is None:
        return status.replace("_", " ")
    if trained is None:
        return f"{memory:,} tokens, HBM binds (the model states no trained length)"
    if binds == "trained length":
        return f"{trained:,} tokens, the model's trained length (max_position_embeddings) binds; {memory:,} fit in HBM"
    if binds == "both":
        return f"{memory:,} tokens, HBM and the model's trained length (max_position_embeddings) alike"
    return f"{memory:,} tokens, HBM binds (the model's trained length is {trained:,})"
