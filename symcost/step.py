"""Old import path of :mod:`symcost.plan.step` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.plan.step import *  # noqa: F403
from symcost.plan.step import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.plan.step as module

    return getattr(module, name)
