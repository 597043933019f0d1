"""Old import path of :mod:`symcost.plan.search` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.plan.search import *  # noqa: F403
from symcost.plan.search import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.plan.search as module

    return getattr(module, name)
