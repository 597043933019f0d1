"""Old import path of :mod:`symcost.models.builders` (moved, see CHANGELOG.md); a pure re-export."""

from typing import Any

from symcost.models.builders import *  # noqa: F403
from symcost.models.builders import __all__ as __all__


def __getattr__(name: str) -> Any:  # the names outside ``__all__`` too
    import symcost.models.builders as module

    return getattr(module, name)
