"""Old import path of :mod:`symcost.report.plots` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.report.plots import *  # noqa: F403
from symcost.report.plots import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.report.plots as module

    return getattr(module, name)
