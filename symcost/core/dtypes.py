"""Data types: storage bytes per element (exact) and the key for a chip's peak FLOP/s.

>>> from symcost import DataType
>>> DataType("bf16").bytes, DataType.INT4.bytes
(2, 1/2)
>>> DataType("nvfp4").bytes, DataType.MXFP4.bytes, DataType.MXFP8.bytes   # block scales included
(9/16, 17/32, 33/32)
>>> DataType.parse("bfloat16") is DataType.BF16
True
"""

from __future__ import annotations

import enum
from typing import Any, Union

import sympy as sp

from ..errors import ConfigError
from . import symbols as sym
from ._expr import as_expr

__all__ = ["DataType", "DtypeLike", "bytes_per_element", "wire_format"]


class DataType(str, enum.Enum):
    """A numeric format. The value is its canonical short name; ``bytes`` is exact."""

    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"
    INT8 = "int8"
    INT4 = "int4"
    NVFP4 = "nvfp4"
    MXFP4 = "mxfp4"
    MXFP8 = "mxfp8"

    @property
    def bytes(self) -> sp.Rational:
        """Storage bytes per element: an exact SymPy number (int4 is 1/2)."""
        return _BYTES[self]

    @property
    def is_block_scaled(self) -> bool:
        """True for the block-scaled formats (NVFP4, MXFP4, MXFP8): ``bytes`` includes the
        per-block scale."""
        return self in _BLOCK_SCALED

    @classmethod
    def parse(cls, value: Any) -> "DataType":
        """A ``DataType`` from itself, its short name or a common alias (``"bfloat16"``).

        Raises :class:`~symcost.errors.ConfigError` listing the valid names for anything else.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            key = _ALIASES.get(key, key)
            for member in cls:
                if member.value == key:
                    return member
        valid = ", ".join(m.value for m in cls)
        raise ConfigError(field="dtype", rule=f"unknown data type {value!r}; valid: {valid}")

    def __str__(self) -> str:
        return self.value


# NB: tf32 is stored in 32-bit registers and memory; only the matmul units read fewer mantissa
# bits. fp8 formats are 1 byte; int4 packs two elements per byte.
_BYTES = {
    DataType.FP32: sp.Integer(4),
    DataType.TF32: sp.Integer(4),
    DataType.BF16: sp.Integer(2),
    DataType.FP16: sp.Integer(2),
    DataType.FP8_E4M3: sp.Integer(1),
    DataType.FP8_E5M2: sp.Integer(1),
    DataType.INT8: sp.Integer(1),
    DataType.INT4: sp.Rational(1, 2),
    # Block-scaled formats: the element bits plus one scale per block, spread over the block:
    # bytes = (element_bits + scale_bits / block) / 8.
    # NVFP4 (NVIDIA, "Introducing NVFP4 for efficient and accurate low-precision inference",
    # developer.nvidia.com/blog, 2025; Blackwell tensor cores): FP4 E2M1 elements in blocks of 16
    # with one FP8 E4M3 scale each: (4 + 8/16) / 8 = 9/16 byte.
    # NB: NVFP4 adds one FP32 scale per tensor. It is not counted: symcost prices elements, not
    # tensors, and 4 bytes on a tensor of 16 x 16 elements or more is under 1/36 of its bytes
    # (under 3e-7 of a 4096 x 4096 weight) -- docs/conventions.md §15.
    DataType.NVFP4: sp.Rational(9, 16),
    # MXFP4 and MXFP8 (OCP Microscaling Formats (MX) Specification v1.0, 2023, §5 "Concrete MX-
    # compliant formats", Table 1): blocks of k = 32 elements sharing one 8-bit E8M0 scale.
    # MXFP4: FP4 E2M1 elements, (4 + 8/32) / 8 = 17/32 byte.
    DataType.MXFP4: sp.Rational(17, 32),
    # MXFP8: FP8 E4M3 (or E5M2) elements, (8 + 8/32) / 8 = 33/32 byte.
    DataType.MXFP8: sp.Rational(33, 32),
}

# NB: a tensor whose dimension is not a multiple of the block is padded to whole blocks by the
# kernels; the bytes above are the per-element average of full blocks (padding not counted).
_BLOCK_SCALED = frozenset({DataType.NVFP4, DataType.MXFP4, DataType.MXFP8})

_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "e4m3": "fp8_e4m3",
    "e5m2": "fp8_e5m2",
    "float8_e4m3fn": "fp8_e4m3",
    "float8_e5m2": "fp8_e5m2",
    "nv_fp4": "nvfp4",
    "mx_fp4": "mxfp4",
    "mx_fp8": "mxfp8",
    "mxfp8_e4m3": "mxfp8",
}

DtypeLike = Union[DataType, str, sp.Expr, None]


def bytes_per_element(dtype: DtypeLike) -> sp.Expr:
    """Bytes per element for ``dtype``: a ``DataType`` or its name gives an exact number,
    ``None`` the canonical symbol ``e``, an expression is taken as the byte count itself.

    >>> bytes_per_element("fp8_e4m3"), bytes_per_element(None)
    (1, e)
    """
    if dtype is None:
        return sym.dtype_bytes
    if isinstance(dtype, (DataType, str)):
        return DataType.parse(dtype).bytes
    expr = as_expr(dtype, "dtype")
    if expr.is_positive is False:
        raise ConfigError(f"dtype: bytes per element must be positive, got {expr}")
    return expr


def wire_format(dtype: DataType) -> DataType | None:
    """The format of the activations a model in ``dtype`` sends over its TP all-reduces (the
    bytes: ``max(e, 2)``, the layers' ``Context.wire_bytes``): its own 16- or 32-bit format (tf32
    keeps fp32 tensors), bf16 for an FP8 or block-scaled FP4/FP8 one (TensorRT-LLM, vLLM and SGLang
    FP8 checkpoints and Transformer Engine's FP8 recipes keep their activations in bf16); ``None``
    (unknown) for int8 and int4: weight-only checkpoints run their activations in the model's
    dtype (vLLM: ``model_config.dtype``), which the weight format does not name (AWQ's kernels take
    fp16 only, ``AWQConfig.get_supported_act_dtypes``: ``[torch.half]``; GPTQ's fp16 or bf16).

    >>> [wire_format(DataType.parse(d)) for d in ("fp16", "tf32", "fp8_e4m3", "nvfp4", "int4")]
    [<DataType.FP16: 'fp16'>, <DataType.FP32: 'fp32'>, <DataType.BF16: 'bf16'>, <DataType.BF16: 'bf16'>, None]
    """
    if dtype in (DataType.FP16, DataType.FP32):
        return dtype
    if dtype in (DataType.INT8, DataType.INT4):
        return None
    return DataType.FP32 if dtype is DataType.TF32 else DataType.BF16
