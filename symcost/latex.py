"""Old import path of :mod:`symcost.report.latex` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.report.latex import *  # noqa: F403
from symcost.report.latex import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.report.latex as module

    return getattr(module, name)
