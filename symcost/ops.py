"""Old import path of :mod:`symcost.core.ops` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.core.ops import *  # noqa: F403
from symcost.core.ops import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.core.ops as module

    return getattr(module, name)
