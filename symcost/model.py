"""Old import path of :mod:`symcost.models.model` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.models.model import *  # noqa: F403
from symcost.models.model import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.models.model as module

    return getattr(module, name)
