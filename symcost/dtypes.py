"""Old import path of :mod:`symcost.core.dtypes` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.core.dtypes import *  # noqa: F403
from symcost.core.dtypes import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.core.dtypes as module

    return getattr(module, name)
