"""Phases of work a layer can be costed for.

>>> from symcost import Phase
>>> Phase("decode") is Phase.DECODE, Phase.TRAINING.is_training
(True, True)
"""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ConfigError

__all__ = ["Phase"]


class Phase(str, enum.Enum):
    """``prefill`` (forward over s tokens), ``decode`` (one new token per sequence attending to
    ``seq_len`` keys), ``training`` (forward and backward)."""

    PREFILL = "prefill"
    DECODE = "decode"
    TRAINING = "training"

    @property
    def is_training(self) -> bool:
        """True when the layer also runs its backward and saves activations for it."""
        return self is Phase.TRAINING

    @classmethod
    def parse(cls, value: Any) -> "Phase":
        """A ``Phase`` from itself or its name; ``ValueError`` listing the valid names otherwise."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            for member in cls:
                if member.value == key:
                    return member
        raise ConfigError(f"phase: unknown phase {value!r}; valid: prefill, decode, training")

    def __str__(self) -> str:
        return self.value
