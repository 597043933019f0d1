"""Hardware: a chip's rates and capacities in base units, and the presets with their sources.

A :class:`Hardware` is frozen and holds exact numbers: FLOP/s, bytes, bytes/s and seconds. The
symbolic chip (:meth:`Hardware.symbolic`, what ``hardware=None`` means) holds the canonical
hardware symbols instead, so times print as formulas in peak FLOP/s and bandwidths.

>>> from symcost import hardware
>>> h100 = hardware.get("h100")
>>> h100.name, h100.peak("bf16")
('H100_SXM', 989400000000000)
>>> h100.hbm_bandwidth
3350000000000
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Mapping

import sympy as sp
from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, ValidationInfo, field_validator

from . import symbols as S
from ._expr import as_expr, exact
from .dtypes import DataType
from .errors import HardwareError

__all__ = [
    "Hardware",
    "get",
    "names",
    "PRESETS",
    "KILO",
    "MEGA",
    "GIGA",
    "TERA",
    "PETA",
]

KILO, MEGA, GIGA, TERA, PETA = 10**3, 10**6, 10**9, 10**12, 10**15
"""Decimal prefixes (GB means 10^9 bytes, docs/conventions.md §14)."""


def _number(value: Any, field: str) -> sp.Expr:
    """An exact number from an int, Fraction, SymPy value, decimal string or float.

    Floats and strings are read by their decimal digits (``Fraction("989.4e12")``), so
    ``989.4e12`` is exactly 989,400,000,000,000; nothing is evaluated.
    """
    if isinstance(value, str):
        try:
            value = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{field} must be a number, got the string {value!r}") from None
    elif isinstance(value, float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{field} must be finite, got {value}")
        value = Fraction(repr(value))
    return as_expr(value, field)


def _positive(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = _number(value, str(info.field_name))
    if expr.is_positive is False:
        raise ValueError(f"{info.field_name} must be positive, got {expr}")
    return expr


def _non_negative(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = _number(value, str(info.field_name))
    if expr.is_negative:
        raise ValueError(f"{info.field_name} must be non-negative, got {expr}")
    return expr


def _efficiency(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = _positive(value, info)
    if (expr - 1).is_positive:
        raise ValueError(f"{info.field_name} must be a fraction in (0, 1], got {expr}")
    return expr


def _domain(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = _positive(value, info)
    if expr.is_integer is False:
        raise ValueError(f"{info.field_name} must be a whole number of chips, got {expr}")
    return expr


Rate = Annotated[Any, BeforeValidator(_positive)]
Efficiency = Annotated[Any, BeforeValidator(_efficiency)]


class Hardware(BaseModel):
    """One chip and its links, in base units (FLOP/s, bytes, bytes/s, seconds).

    ``peak_flops`` maps each :class:`DataType` the matrix units run to its dense peak;
    ``vector_flops`` is the vector units' FLOP/s. Links: ``scale_up_bandwidth`` per chip and
    direction inside a ``scale_up_domain`` of chips (NVLink, Infinity Fabric, ICI),
    ``scale_out_bandwidth`` per chip beyond it. ``collective_latency`` is the α of one
    collective step. Efficiencies (exact fractions in (0, 1]) derate matmul FLOP/s, HBM and
    network bandwidth; they default to 1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    peak_flops: dict[DataType, Any]
    vector_flops: Rate
    hbm_capacity: Rate
    hbm_bandwidth: Rate
    scale_up_bandwidth: Rate
    scale_up_domain: Annotated[Any, BeforeValidator(_domain)]
    scale_out_bandwidth: Rate
    collective_latency: Annotated[Any, BeforeValidator(_non_negative)]
    matmul_efficiency: Efficiency = sp.Integer(1)
    memory_efficiency: Efficiency = sp.Integer(1)
    network_efficiency: Efficiency = sp.Integer(1)

    @field_validator("peak_flops", mode="before")
    @classmethod
    def _peaks(cls, value: Any) -> dict[DataType, sp.Expr]:
        if not isinstance(value, Mapping) or not value:
            raise ValueError("peak_flops must be a non-empty mapping of dtype to FLOP/s")
        peaks = {}
        for key, rate in value.items():
            dtype = DataType.parse(key)
            expr = _number(rate, f"peak_flops[{dtype.value}]")
            if expr.is_positive is False:
                raise ValueError(f"peak_flops[{dtype.value}] must be positive, got {expr}")
            peaks[dtype] = expr
        return peaks

    _hash: int = PrivateAttr(default=0)
    _symbolic: bool = PrivateAttr(default=False)

    def model_post_init(self, __context: Any) -> None:
        # frozen: derived once here (hashing and this test sit on the numeric hot path)
        self._hash = hash((self.name, tuple(self.peak_flops.items()), self.vector_flops,
                           self.hbm_capacity, self.hbm_bandwidth, self.scale_up_bandwidth,
                           self.scale_up_domain, self.scale_out_bandwidth, self.collective_latency,
                           self.matmul_efficiency, self.memory_efficiency, self.network_efficiency))
        self._symbolic = any(isinstance(v, sp.Basic) and v.free_symbols for v in self._rates())

    def __hash__(self) -> int:
        return self._hash

    # -- lookups -----------------------------------------------------------------------------

    @property
    def is_symbolic(self) -> bool:
        """True when any rate is a symbol (the unbound chip)."""
        return self._symbolic

    def _rates(self):
        yield from self.peak_flops.values()
        yield from (self.vector_flops, self.hbm_capacity, self.hbm_bandwidth,
                    self.scale_up_bandwidth, self.scale_up_domain, self.scale_out_bandwidth,
                    self.collective_latency)

    def peak(self, dtype: DataType | str) -> Any:
        """Dense peak matrix FLOP/s for ``dtype``, as the datasheet gives it.

        Raises ``ValueError`` naming the chip, the dtype and the dtypes it lists.
        """
        dt = DataType.parse(dtype)
        try:
            return exact(self.peak_flops[dt])
        except KeyError:
            known = ", ".join(d.value for d in self.peak_flops)
            raise ValueError(
                f"{self.name} has no peak FLOP/s for {dt.value}; it lists: {known}") from None

    def effective_peak(self, dtype: DataType | str | None) -> sp.Expr:
        """Matmul FLOP/s the time model uses: ``peak(dtype) * matmul_efficiency``."""
        if dtype is None:
            if not self.is_symbolic:
                raise ValueError(
                    f"{self.name}: binding hardware needs a concrete dtype (got a symbolic one); "
                    "pass dtype='bf16' or similar")
            return S.peak_flops * self.matmul_efficiency
        return self.peak_flops_expr(dtype) * self.matmul_efficiency

    def peak_flops_expr(self, dtype: DataType | str) -> sp.Expr:
        """:meth:`peak` as a SymPy number."""
        return as_expr(self.peak(dtype), "peak_flops")

    @property
    def effective_hbm_bandwidth(self) -> sp.Expr:
        """HBM bytes/s the time model uses: ``hbm_bandwidth * memory_efficiency``."""
        return self.hbm_bandwidth * self.memory_efficiency

    def link_bandwidth(self, span: Any) -> sp.Expr:
        """Bytes/s per chip for a group spread over ``span`` chips: the scale-up link when the
        group fits in one scale-up domain, else the scale-out link; times the network
        efficiency. A comparison SymPy cannot decide stays a ``Piecewise``."""
        fits = sp.Le(as_expr(span, "span"), self.scale_up_domain)
        up = self.scale_up_bandwidth * self.network_efficiency
        out = self.scale_out_bandwidth * self.network_efficiency
        if fits is sp.true:
            return up
        if fits is sp.false:
            return out
        return sp.Piecewise((up, fits), (out, True))

    def symbol_values(self, dtype: DataType | str) -> dict[sp.Symbol, sp.Expr]:
        """Values of the hardware symbols for this chip and ``dtype`` (efficiencies applied):
        substitute them into metrics computed on the symbolic chip to bind this one.

        >>> from symcost import hardware, symbols as S
        >>> hardware.get("H100_SXM").symbol_values("fp8_e4m3")[S.peak_flops]
        1978900000000000
        """
        return {
            S.peak_flops: self.effective_peak(dtype),
            S.vector_flops: self.vector_flops,
            S.hbm_capacity: self.hbm_capacity,
            S.hbm_bandwidth: self.effective_hbm_bandwidth,
            S.scale_up_bandwidth: self.scale_up_bandwidth * self.network_efficiency,
            S.scale_up_domain: self.scale_up_domain,
            S.scale_out_bandwidth: self.scale_out_bandwidth * self.network_efficiency,
            S.collective_latency: self.collective_latency,
        }

    # -- construction and files --------------------------------------------------------------

    @classmethod
    def symbolic(cls, name: str = "symbolic") -> "Hardware":
        """The unbound chip: every rate a canonical symbol, efficiencies 1."""
        return cls(
            name=name,
            peak_flops={dt: S.peak_flops for dt in DataType},
            vector_flops=S.vector_flops,
            hbm_capacity=S.hbm_capacity,
            hbm_bandwidth=S.hbm_bandwidth,
            scale_up_bandwidth=S.scale_up_bandwidth,
            scale_up_domain=S.scale_up_domain,
            scale_out_bandwidth=S.scale_out_bandwidth,
            collective_latency=S.collective_latency,
        )

    def with_efficiency(self, *, matmul: Any = None, memory: Any = None,
                        network: Any = None) -> "Hardware":
        """A copy with the given efficiency factors replaced."""
        update = {}
        for field, value in (("matmul_efficiency", matmul), ("memory_efficiency", memory),
                             ("network_efficiency", network)):
            if value is not None:
                update[field] = value
        return Hardware(**{**self._fields(), **update})

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready dict: integers as ints, other exact numbers as ``"p/q"`` strings."""
        if self.is_symbolic:
            raise ValueError(f"{self.name}: a symbolic chip cannot be saved")

        def plain(value: Any) -> Any:
            value = exact(value)
            return value if isinstance(value, int) else str(value)

        out: dict[str, Any] = {"name": self.name,
                               "peak_flops": {d.value: plain(v) for d, v in self.peak_flops.items()}}
        for field in type(self).model_fields:
            if field not in out:
                out[field] = plain(getattr(self, field))
        return out

    def to_file(self, path: str | Path) -> None:
        """Write the chip to ``path``: JSON for ``.json``, YAML for ``.yaml``/``.yml``."""
        path = Path(path)
        kind = _file_kind(path)
        data = self.to_dict()
        if kind == "json":
            path.write_text(json.dumps(data, indent=2) + "\n")
        else:
            import yaml

            path.write_text(yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def from_file(cls, path: str | Path) -> "Hardware":
        """Read a chip from a JSON or YAML file written by :meth:`to_file` (or by hand).

        Raises ``ValueError`` naming the file for unreadable or malformed content; fields are
        validated like the constructor's.
        """
        path = Path(path)
        kind = _file_kind(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ValueError(f"{path}: cannot read hardware file ({err.strerror})") from None
        try:
            if kind == "json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as err:  # the parsers' own error types differ
            raise ValueError(f"{path}: malformed {kind.upper()} ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of hardware fields, got {type(data).__name__}")
        return cls(**data)


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise ValueError(f"{path}: hardware files are .json, .yaml or .yml")


from ._presets import PRESETS  # noqa: E402  (the presets need the class above)

for _preset in PRESETS.values():
    globals()[_preset.name] = _preset
__all__ += list(PRESETS)


def names() -> list[str]:
    """The preset names."""
    return list(PRESETS)


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_BY_KEY = {_key(n): n for n in PRESETS}

_ALIASES = {
    "a100": "A100_SXM_80GB", "a10080gb": "A100_SXM_80GB", "a100sxm": "A100_SXM_80GB",
    "h100": "H100_SXM", "h100sxm5": "H100_SXM",
    "h200": "H200_SXM",
    "b200": "B200",
    "mi300x": "MI300X",
    "v5e": "TPU_V5E", "tpuv5litepod": "TPU_V5E", "v5p": "TPU_V5P", "v6e": "TPU_V6E",
    "trillium": "TPU_V6E",
}


def get(name: Hardware | str) -> Hardware:
    """A preset by name, case and punctuation ignored (``"h100"``, ``"H100_SXM"``, ``"tpu-v5e"``).

    Raises :class:`~symcost.errors.HardwareError` listing the known names.
    """
    if isinstance(name, Hardware):
        return name
    key = _key(str(name))
    target = _BY_KEY.get(key) or _ALIASES.get(key)
    if target is None:
        raise HardwareError(f"hardware: unknown chip {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[target]
