"""How a :class:`~symcost.models.model.Model` reads for people: a shape table and the parameter count.

Built on :mod:`symcost.core.display`; the model's fields stay as they are.
"""

from __future__ import annotations

import html as _html
from typing import Any, Sequence

from pydantic import BaseModel

from ..core import display as d
from ..core import units

__all__ = ["model_repr", "model_text", "model_html", "shape_rows"]

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
    (``Model.parts()`` with each block split into its layers, as :meth:`Model._layer_rows` gives them)."""
    return [(name, type(layer).__name__, count, _shape(layer), layer.num_params) for name, layer, count in parts]


def model_repr(model: Any) -> str:
    return d.short_repr("Model", [("name", repr(model.name)), ("layers", d.text(model.num_layers, "plain")),
                                  ("parameters", d.text(model.parameter_count, "count"))])


def model_text(model: Any) -> str:
    lines = [f"{model.name}: {d.text(model.parameter_count, 'count')} parameters, "
             f"{d.text(model.num_layers, 'plain')} blocks"]
    for part, _kind, count, shape, params in shape_rows(model._layer_rows()):
        lines.append(f"  {part:28s} x{str(count):>4s}  {shape}  ({d.text(params, 'count')} parameters each)")
    return "\n".join(lines)


def model_html(model: Any) -> str:
    total = model.parameter_count
    rows = []
    for part, kind, count, shape, params in shape_rows(model._layer_rows()):
        all_copies = count * params
        share = (units.format_percent(units.to_number(all_copies) / units.to_number(total))
                 if d.is_numeric(all_copies) and d.is_numeric(total) and total else "-")
        rows.append([_html.escape(part), _html.escape(kind), d.html(count, "plain"), _html.escape(shape),
                     d.html(params, "count"), d.html(all_copies, "count"), share])
    title = f"{model.name}: {d.text(total, 'count')} parameters, {d.text(model.num_layers, 'plain')} blocks"
    return d.html_section(title, [d.html_table(
        ["part", "layer", "count", "shape", "parameters (one)", "parameters (all)", "share"], rows)])
