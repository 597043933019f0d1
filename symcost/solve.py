"""Old import path of :mod:`symcost.analysis.solve` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.analysis.solve import *  # noqa: F403
from symcost.analysis.solve import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.analysis.solve as module

    return getattr(module, name)
