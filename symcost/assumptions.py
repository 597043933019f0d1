"""Old import path of :mod:`symcost.core.assumptions` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.core.assumptions import *  # noqa: F403
from symcost.core.assumptions import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.core.assumptions as module

    return getattr(module, name)
