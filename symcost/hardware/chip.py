"""The chip: rates and capacities in base units, and the efficiency model's fields.

A :class:`Hardware` is frozen and holds exact numbers: FLOP/s, bytes, bytes/s and seconds. The
symbolic chip (:meth:`Hardware.symbolic`, what ``hardware=None`` means) holds the canonical
hardware symbols instead, so times print as formulas in peak FLOP/s and bandwidths; with
``realistic=True`` the efficiency model (docs/conventions.md §17) is symbolic too.

>>> chip = Hardware.symbolic(realistic=True)
>>> chip.effective_peak("bf16")
F*eta_mm
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, Iterator, Mapping, Optional

import sympy as sp
from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, ValidationError, field_validator

from ..core import symbols as sym
from ..core._expr import as_expr, exact
from ..core.dtypes import DataType
from ..errors import ConfigError, HardwareError
from .runtime import Runtime, runtime
from .validate import Efficiency, Rate, Seconds, _domain, _number

__all__ = [
    "Hardware",
    "Runtime",
    "KILO",
    "MEGA",
    "GIGA",
    "TERA",
    "PETA",
]

KILO, MEGA, GIGA, TERA, PETA = 10**3, 10**6, 10**9, 10**12, 10**15
"""Decimal prefixes (GB means 10^9 bytes, docs/conventions.md §14)."""


_MODEL_FIELDS = ("matmul_efficiency", "matmul_efficiency_8bit", "memory_efficiency", "attention_memory_efficiency",
                 "attention_efficiency", "network_efficiency", "kernel_time", "launch_time",
                 "collective_base_latency", "compute_units", "tree_latency", "tree_efficiency", "nvls_latency",
                 "nvls_efficiency")
"""The efficiency model's fields (docs/conventions.md §17)."""


class Hardware(BaseModel):
    """One chip and its links, in base units (FLOP/s, bytes, bytes/s, seconds).

    ``peak_flops`` maps each :class:`DataType` the matrix units run to its dense peak;
    ``vector_flops`` is the vector units' FLOP/s. Links: ``scale_up_bandwidth`` per chip and
    direction inside a ``scale_up_domain`` of chips (NVLink, Infinity Fabric, ICI),
    ``scale_out_bandwidth`` per chip beyond it. ``collective_latency`` is the α of one
    collective step (hop) inside the scale-up domain, ``scale_out_latency`` the α_net of one hop
    over the scale-out network (``None``: α).

    The efficiency model (docs/conventions.md §17; every field defaults to the ideal chip):
    ``matmul_efficiency`` (16-bit and wider GEMMs) and ``matmul_efficiency_8bit`` (FP8/INT8
    GEMMs; ``None``: the same) derate the matrix peak; ``memory_efficiency`` is the achievable
    fraction of HBM bandwidth in streaming kernels, ``attention_memory_efficiency`` the one of
    decode attention over the KV cache (``None``: the same); ``attention_efficiency`` the
    fraction of the 16-bit peak that flash-attention kernels reach; ``network_efficiency`` the
    collectives' bus bandwidth over link bandwidth. Overheads in seconds: ``kernel_time`` per
    kernel on the GPU, ``launch_time`` per kernel on the host (paces the GPU only without CUDA
    graphs), ``collective_base_latency`` per collective call. ``compute_units`` (SMs or CUs) and
    ``matmul_tile`` quantize GEMMs into tiles and waves (``None``: no quantization).
    Collective algorithms beyond the ring (docs/conventions.md §17): ``tree_latency`` is the
    α_tree of one double-binary-tree hop over the scale-out network (``None``: no tree algorithm)
    and ``tree_efficiency`` the tree's bus bandwidth over the ring's; ``nvls_latency`` is the
    time of one NVLink SHARP call (``None``: the scale-up domain has no NVLink SHARP) and
    ``nvls_efficiency`` its bandwidth factor.
    ``runtime`` is the engine profile. :meth:`ideal` returns the pure roofline.
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
    collective_latency: Seconds
    scale_out_latency: Optional[Seconds] = None
    matmul_efficiency: Efficiency = sp.Integer(1)
    matmul_efficiency_8bit: Optional[Efficiency] = None
    memory_efficiency: Efficiency = sp.Integer(1)
    attention_memory_efficiency: Optional[Efficiency] = None
    attention_efficiency: Efficiency = sp.Integer(1)
    network_efficiency: Efficiency = sp.Integer(1)
    kernel_time: Seconds = sp.Integer(0)
    launch_time: Seconds = sp.Integer(0)
    collective_base_latency: Seconds = sp.Integer(0)
    compute_units: Optional[Annotated[Any, BeforeValidator(_domain)]] = None
    tree_latency: Optional[Seconds] = None
    tree_efficiency: Efficiency = sp.Integer(1)
    nvls_latency: Optional[Seconds] = None
    nvls_efficiency: Efficiency = sp.Integer(1)
    # GEMM tiles: 64 x 128 output tiles (M x N), an assumption: one of the threadblock tiles CUTLASS
    # instantiates for tensor-op GEMMs (GemmShape<64, 128, ...>), chosen small in M so that decode GEMMs
    # are not padded 128-fold; 128 x 128 padded a batch-1 decode GEMM into compute-bound, which no
    # measured run shows. Quantization runs over the SMs/CUs of each part (compute_units). A decode
    # GEMM's M (the batch) is padded to 64 rows.
    matmul_tile: tuple[int, int] = (64, 128)
    runtime: Runtime = Runtime(name="ideal")

    @field_validator("peak_flops", mode="before")
    @classmethod
    def _peaks(cls, value: Any) -> dict[DataType, sp.Expr]:
        if not isinstance(value, Mapping) or not value:
            raise HardwareError("peak_flops must be a non-empty mapping of dtype to FLOP/s")
        peaks = {}
        for key, rate in value.items():
            dtype = DataType.parse(key)
            expr = _number(rate, f"peak_flops[{dtype.value}]")
            if expr.is_positive is False:
                raise HardwareError(f"peak_flops[{dtype.value}] must be positive, got {expr}")
            peaks[dtype] = expr
        return peaks

    @field_validator("matmul_tile", mode="before")
    @classmethod
    def _tile(cls, value: Any) -> tuple[int, int]:
        if (not isinstance(value, (tuple, list)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise HardwareError(f"matmul_tile must be two positive integers (M, N), got {value!r}")
        return (value[0], value[1])

    @field_validator("runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        return runtime(value) if isinstance(value, str) else value

    _hash: int = PrivateAttr(default=0)
    _symbolic: bool = PrivateAttr(default=False)
    _efficiency_from: Optional[str] = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        # frozen: derived once here (hashing and this test sit on the numeric hot path)
        self._hash = hash(tuple(getattr(self, f) if f != "peak_flops" else tuple(self.peak_flops.items())
                                for f in type(self).model_fields))
        self._symbolic = any(isinstance(v, sp.Basic) and v.free_symbols for v in self._rates())
        self._symbolic = self._symbolic or any(
            isinstance(v, sp.Basic) and v.free_symbols
            for v in (*(getattr(self, f) for f in _MODEL_FIELDS), self.runtime.step_overhead,
                      self.runtime.collective_overhead))

    def __hash__(self) -> int:
        return self._hash

    # -- lookups -----------------------------------------------------------------------------

    @property
    def is_symbolic(self) -> bool:
        """True when any rate is a symbol (the unbound chip)."""
        return self._symbolic

    @property
    def efficiency_from(self) -> Optional[str]:
        """Where a chip read from a file (:meth:`from_file`) took the fields the file leaves out:
        ``"base <preset>"`` or ``"ideal"``; ``None`` for a file that sets every field, a preset or
        a chip built in code."""
        return self._efficiency_from

    def _rates(self) -> Iterator[Any]:
        yield from self.peak_flops.values()
        yield from (self.vector_flops, self.hbm_capacity, self.hbm_bandwidth,
                    self.scale_up_bandwidth, self.scale_up_domain, self.scale_out_bandwidth,
                    self.collective_latency, self.scale_out_latency)

    def peak(self, dtype: DataType | str) -> Any:
        """Dense peak matrix FLOP/s for ``dtype``, as the datasheet gives it.

        Raises :class:`~symcost.errors.HardwareError` naming the chip, the dtype and the dtypes it lists.
        """
        dt = DataType.parse(dtype)
        try:
            return exact(self.peak_flops[dt])
        except KeyError:
            known = ", ".join(d.value for d in self.peak_flops)
            # NB: refused, not computed in another format: a block-scaled matmul on a chip whose
            # tensor cores take no block scales (H100, H200, A100) would run dequantized at some
            # other rate with other bytes, which the caller should choose (dtype="fp8_e4m3").
            hint = (" (its matrix units take no block-scaled formats; cost it in a format it lists, "
                    "or on a chip that has them, e.g. B200)" if dt.is_block_scaled else "")
            raise HardwareError(
                f"{self.name} has no peak FLOP/s for {dt.value}; it lists: {known}{hint}") from None

    def matmul_efficiency_for(self, dtype: DataType | str | None) -> sp.Expr:
        """The GEMM efficiency for ``dtype``: ``matmul_efficiency_8bit`` for 8-bit and narrower
        formats when given, else ``matmul_efficiency``.

        NB: the block-scaled formats (NVFP4, MXFP4 below a byte; MXFP8 at 33/32 byte) take the
        8-bit efficiency too: no shipped measurement fits an FP4 GEMM, so the FP8 fit stands in
        (an assumption, stated in presets/shared.json).

        >>> from symcost import hardware
        >>> b200 = hardware.get("B200")
        >>> b200.matmul_efficiency_for("nvfp4") == b200.matmul_efficiency_for("fp8_e4m3")
        True
        """
        if (dtype is not None and self.matmul_efficiency_8bit is not None
                and DataType.parse(dtype).bytes < 2):
            return self.matmul_efficiency_8bit
        return self.matmul_efficiency

    def effective_peak(self, dtype: DataType | str | None) -> sp.Expr:
        """Matmul FLOP/s the time model uses: ``peak(dtype) * matmul_efficiency_for(dtype)``."""
        if dtype is None:
            if not self.is_symbolic:
                raise ConfigError(
                    f"{self.name}: binding hardware needs a concrete dtype (got a symbolic one); "
                    "pass dtype='bf16' or similar")
            return sym.peak_flops * self.matmul_efficiency
        return self.peak_flops_expr(dtype) * self.matmul_efficiency_for(dtype)

    def attention_peak(self, dtype: DataType | str | None) -> sp.Expr:
        """FLOP/s of the attention kernels: ``attention_efficiency`` times the 16-bit peak for
        8-bit dtypes (engines run attention in bf16/fp16 even when the GEMMs run in FP8;
        docs/conventions.md §17), else the dtype's own peak."""
        if any(isinstance(v, sp.Basic) and v.free_symbols for v in self.peak_flops.values()):
            # F_16 binds to the dtype's own peak for 16-bit and wider dtypes (symbol_values)
            return sym.peak_flops_16bit * self.attention_efficiency
        if dtype is None:
            raise ConfigError(f"{self.name}: binding hardware needs a concrete dtype (got a symbolic one); "
                             "pass dtype='bf16' or similar")
        dt = DataType.parse(dtype)
        if dt.bytes < 2:
            for half in (DataType.BF16, DataType.FP16):
                if half in self.peak_flops:
                    return self.peak_flops_expr(half) * self.attention_efficiency
        return self.peak_flops_expr(dt) * self.attention_efficiency

    def peak_flops_expr(self, dtype: DataType | str) -> sp.Expr:
        """:meth:`peak` as a SymPy number."""
        return as_expr(self.peak(dtype), "peak_flops")

    @property
    def effective_hbm_bandwidth(self) -> sp.Expr:
        """HBM bytes/s the time model uses: ``hbm_bandwidth * memory_efficiency``."""
        return self.hbm_bandwidth * self.memory_efficiency

    @property
    def attention_hbm_bandwidth(self) -> sp.Expr:
        """HBM bytes/s of decode attention over the KV cache:
        ``hbm_bandwidth * attention_memory_efficiency`` (``memory_efficiency`` when unset)."""
        eff = self.memory_efficiency if self.attention_memory_efficiency is None else self.attention_memory_efficiency
        return self.hbm_bandwidth * eff

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

    @property
    def net_latency(self) -> sp.Expr:
        """α_net: seconds of one collective hop over the scale-out network
        (``scale_out_latency``, else ``collective_latency``)."""
        return self.collective_latency if self.scale_out_latency is None else self.scale_out_latency

    def symbol_values(self, dtype: DataType | str) -> dict[sp.Symbol, sp.Expr]:
        """Values of the hardware symbols for this chip and ``dtype``: substitute them into
        metrics computed on the symbolic chip to bind this one. The efficiency model's symbols
        (:meth:`symbolic` with ``realistic=True``) take this chip's values; the rates stay raw.
        A collective algorithm the chip lacks (no tree, no NVLink SHARP) takes ``oo`` seconds per
        call, so the ``Min`` over algorithms never picks it.

        >>> from symcost import hardware, symbols as sym
        >>> hardware.get("H100_SXM").symbol_values("fp8_e4m3")[sym.peak_flops]
        1978900000000000
        """
        dt = DataType.parse(dtype)
        half = next((d for d in (DataType.BF16, DataType.FP16) if d in self.peak_flops), dt)
        eff = self.memory_efficiency if self.attention_memory_efficiency is None else self.attention_memory_efficiency
        values: dict[sp.Symbol, Any] = {
            sym.peak_flops: self.peak_flops_expr(dt),
            sym.peak_flops_16bit: self.peak_flops_expr(half if dt.bytes < 2 else dt),
            sym.vector_flops: self.vector_flops,
            sym.hbm_capacity: self.hbm_capacity,
            sym.hbm_bandwidth: self.hbm_bandwidth,
            sym.scale_up_bandwidth: self.scale_up_bandwidth,
            sym.scale_up_domain: self.scale_up_domain,
            sym.scale_out_bandwidth: self.scale_out_bandwidth,
            sym.collective_latency: self.collective_latency,
            sym.scale_out_latency: self.net_latency,
            sym.tree_latency: sp.oo if self.tree_latency is None else self.tree_latency,
            sym.tree_efficiency: self.tree_efficiency,
            sym.nvls_latency: sp.oo if self.nvls_latency is None else self.nvls_latency,
            sym.nvls_efficiency: self.nvls_efficiency,
            sym.matmul_efficiency: self.matmul_efficiency_for(dt),
            sym.matmul_efficiency_8bit: self.matmul_efficiency_for(dt),
            sym.memory_efficiency: self.memory_efficiency,
            sym.attention_memory_efficiency: eff,
            sym.attention_efficiency: self.attention_efficiency,
            sym.network_efficiency: self.network_efficiency,
            sym.kernel_time: self.kernel_time,
            sym.launch_time: 0 if self.runtime.cuda_graphs else self.launch_time,
            sym.collective_base_latency: self.collective_base_latency,
            sym.step_overhead: self.runtime.step_overhead,
            sym.collective_overhead: self.runtime.collective_overhead,
        }
        if self.compute_units is not None:  # none: no tile quantization, nothing to bind N_cu to
            values[sym.compute_units] = self.compute_units
        return values

    # -- construction and files --------------------------------------------------------------

    @classmethod
    def symbolic(cls, name: str = "symbolic", realistic: bool = False,
                 matmul_tile: tuple[int, int] = (64, 128)) -> "Hardware":
        """The unbound chip: every rate a canonical symbol. With ``realistic=True`` the efficiency
        model is symbolic too (η_mm, η_mem, η_attn, η_net, t_k, α₀, N_cu, ...), so times print with
        it; otherwise efficiencies are 1 and overheads 0 (the roofline). ``matmul_tile`` stays a
        number (the tile shape of the chips it will be bound to)."""
        fields: dict[str, Any] = dict(
            name=name,
            peak_flops={dt: sym.peak_flops for dt in DataType},
            vector_flops=sym.vector_flops,
            hbm_capacity=sym.hbm_capacity,
            hbm_bandwidth=sym.hbm_bandwidth,
            scale_up_bandwidth=sym.scale_up_bandwidth,
            scale_up_domain=sym.scale_up_domain,
            scale_out_bandwidth=sym.scale_out_bandwidth,
            collective_latency=sym.collective_latency,
            scale_out_latency=sym.scale_out_latency,
        )
        if realistic:
            fields.update(matmul_efficiency=sym.matmul_efficiency, matmul_efficiency_8bit=sym.matmul_efficiency_8bit,
                          memory_efficiency=sym.memory_efficiency,
                          attention_memory_efficiency=sym.attention_memory_efficiency,
                          attention_efficiency=sym.attention_efficiency,
                          network_efficiency=sym.network_efficiency, kernel_time=sym.kernel_time,
                          launch_time=sym.launch_time, collective_base_latency=sym.collective_base_latency,
                          compute_units=sym.compute_units, matmul_tile=matmul_tile,
                          tree_latency=sym.tree_latency, tree_efficiency=sym.tree_efficiency,
                          nvls_latency=sym.nvls_latency, nvls_efficiency=sym.nvls_efficiency,
                          runtime=Runtime(name="symbolic", cuda_graphs=False, step_overhead=sym.step_overhead,
                                          collective_overhead=sym.collective_overhead))
        return cls(**fields)

    def ideal(self) -> "Hardware":
        """The pure roofline of this chip: efficiencies 1, no overheads, no tile quantization,
        ring collectives only (α per hop kept), the ideal runtime (what ``bound`` analyses use;
        docs/conventions.md §14).

        >>> from symcost import hardware
        >>> ideal = hardware.get("H100_SXM").ideal()
        >>> ideal.memory_efficiency, ideal.kernel_time, ideal.name
        (1, 0, 'H100_SXM (ideal)')
        """
        return _ideal(self)

    def _build_ideal(self) -> "Hardware":
        one, zero = sp.Integer(1), sp.Integer(0)
        name = self.name if self.name.endswith("(ideal)") else f"{self.name} (ideal)"
        return Hardware(**{**self._fields(), **dict(
            name=name, matmul_efficiency=one, matmul_efficiency_8bit=None, memory_efficiency=one,
            attention_memory_efficiency=None, attention_efficiency=one, network_efficiency=one,
            kernel_time=zero, launch_time=zero, collective_base_latency=zero, compute_units=None,
            tree_latency=None, tree_efficiency=one, nvls_latency=None, nvls_efficiency=one,
            runtime=Runtime(name="ideal"))})

    @property
    def is_ideal(self) -> bool:
        """True when the chip has no efficiency model (a pure roofline)."""
        return (self.matmul_efficiency == 1 and self.matmul_efficiency_8bit in (None, 1)
                and self.memory_efficiency == 1 and self.attention_memory_efficiency in (None, 1)
                and self.attention_efficiency == 1 and self.network_efficiency == 1
                and self.kernel_time == 0 and self.collective_base_latency == 0
                and self.compute_units is None and self.tree_latency is None and self.nvls_latency is None
                and self.tree_efficiency == 1 and self.nvls_efficiency == 1
                and self.runtime.step_overhead == 0
                and self.runtime.collective_overhead == 0
                and (self.runtime.cuda_graphs or self.launch_time == 0))

    def with_runtime(self, runtime: "Runtime | str") -> "Hardware":
        """A copy running under another engine profile (a :class:`Runtime` or a name from
        :func:`symcost.hardware.runtimes`)."""
        return Hardware(**{**self._fields(), "runtime": runtime})

    def with_efficiency(self, *, matmul: Any = None, memory: Any = None,
                        network: Any = None, **fields: Any) -> "Hardware":
        """A copy with the given efficiency factors (or any other fields) replaced."""
        update = dict(fields)
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
            raise HardwareError(f"{self.name}: a symbolic chip cannot be saved")

        def plain(value: Any) -> Any:
            value = exact(value)
            return value if isinstance(value, int) else str(value)

        out: dict[str, Any] = {"name": self.name,
                               "peak_flops": {d.value: plain(v) for d, v in self.peak_flops.items()}}
        for field in type(self).model_fields:
            value = getattr(self, field)
            if field in out:
                continue
            if value is None or isinstance(value, bool):
                out[field] = value
            elif isinstance(value, tuple):
                out[field] = list(value)
            elif isinstance(value, Runtime):
                out[field] = {"name": value.name, "cuda_graphs": value.cuda_graphs,
                              "step_overhead": plain(value.step_overhead),
                              "collective_overhead": plain(value.collective_overhead),
                              "prefill_emits_first_token": value.prefill_emits_first_token}
            else:
                out[field] = plain(value)
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
        """Read a chip from a JSON or YAML file: a flat mapping of its fields, as :meth:`to_file`
        writes them or by hand (``examples/chips/`` holds one per family), read by :meth:`from_mapping`.

        Raises :class:`~symcost.errors.HardwareError`, one line naming the file: unreadable or
        malformed content, every missing field, every bad value.
        """
        path = Path(path)
        kind = _file_kind(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise HardwareError(f"{path}: cannot read hardware file ({err.strerror})") from None
        try:
            if kind == "json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as err:  # the parsers' own error types differ
            raise HardwareError(f"{path}: malformed {kind.upper()} ({err})") from None
        if not isinstance(data, dict):
            raise HardwareError(f"{path}: expected a mapping of hardware fields, got {type(data).__name__}")
        if "fields" in data:
            raise HardwareError(f"{path}: a preset data file (name, fields): load it with "
                                "symcost.hardware.load_file or symcost.hardware.presets.load")
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "hardware") -> "Hardware":
        """A chip from a flat mapping of its fields, plus one of two keys saying what the fields it
        leaves out are: ``base: <preset>`` (e.g. ``h100``) takes them from that preset, the realistic
        chip (its efficiency model, engine profile, tiles, ...), whatever fields :class:`Hardware`
        has; ``ideal: true`` leaves them at their defaults, the pure roofline (efficiencies 1, no
        overheads). A mapping that sets every field needs neither.

        The datasheet fields (those without a default: ``name``, ``peak_flops``, ``vector_flops``,
        ``hbm_capacity``, ``hbm_bandwidth``, ``scale_up_bandwidth``, ``scale_up_domain``,
        ``scale_out_bandwidth``, ``collective_latency``) are always the mapping's own.
        Raises :class:`~symcost.errors.HardwareError`, one line starting with ``source``: every
        missing datasheet field, an efficiency model neither given nor chosen, every bad value.

        >>> from symcost import hardware
        >>> sheet = {k: v for k, v in hardware.get("h100").to_dict().items() if Hardware.model_fields[k].is_required()}
        >>> slow = Hardware.from_mapping({**sheet, "name": "slow-h100", "hbm_bandwidth": "2e12", "base": "h100"},
        ...                              "slow.yaml")
        >>> slow.hbm_bandwidth, slow.memory_efficiency, slow.efficiency_from
        (2000000000000, 9/10, 'base H100_SXM')
        >>> Hardware.from_mapping({"name": "x", "ideal": True}, "x.yaml")
        Traceback (most recent call last):
        ...
        symcost.errors.HardwareError: x.yaml: missing peak_flops, vector_flops, hbm_capacity, hbm_bandwidth,
        scale_up_bandwidth, scale_up_domain, scale_out_bandwidth, collective_latency (every chip file gives the
        datasheet's figures; examples/chips/ has one per family)
        """
        fields = dict(data)
        base, ideal = fields.pop("base", None), fields.pop("ideal", False)
        if not isinstance(ideal, bool):
            raise HardwareError(f"{source}: ideal must be true or false, got {ideal!r}")
        if base is not None and ideal:
            raise HardwareError(f"{source}: give one of base and ideal (got base: {base} and ideal: true)")
        required = [name for name, field in cls.model_fields.items() if field.is_required()]
        missing = [name for name in required if name not in fields]
        if missing:
            raise HardwareError(f"{source}: missing {', '.join(missing)} (every chip file gives the datasheet's "
                                "figures; examples/chips/ has one per family)")
        unset = [name for name in cls.model_fields if name not in fields]
        origin = None
        if base is not None:
            chip = _base_chip(base, source)
            fields.update({name: getattr(chip, name) for name in unset})
            origin = f"base {chip.name}"
        elif ideal:
            origin = "ideal"
        elif unset:
            raise HardwareError(
                f"{source}: no efficiency model: {', '.join(unset)} not set; add 'base: h100' (or another preset) "
                "to take a preset's, or 'ideal: true' for the pure roofline")
        try:
            chip = cls(**fields)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'hardware'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}" for e in err.errors())
            raise HardwareError(f"{source}: {problems}") from None
        chip._efficiency_from = origin
        return chip


def _base_chip(name: Any, source: str) -> Hardware:
    """The preset a chip file names as its ``base`` (through the registry :mod:`symcost.hardware`
    registers in :mod:`symcost.core.binding`: the presets sit above this module)."""
    from ..core import binding

    if not isinstance(name, str):
        raise HardwareError(f"{source}: base must be a preset's name, got {name!r}")
    try:
        chip = binding.time_model().resolve(name)
    except HardwareError as err:
        raise HardwareError(f"{source}: base: {str(err).removeprefix('hardware: ')}") from None
    if not isinstance(chip, Hardware):
        raise HardwareError(f"{source}: base {name!r} is not a chip preset")
    return chip


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise HardwareError(f"{path}: hardware files are .json, .yaml or .yml")


@functools.lru_cache(maxsize=64)
def _ideal(chip: Hardware) -> Hardware:
    """:meth:`Hardware.ideal`, built once per chip (every layer's roofline asks for it)."""
    return chip._build_ideal()
