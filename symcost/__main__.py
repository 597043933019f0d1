"""``python -m symcost``: the same as the ``symcost`` command."""

import sys

from .cli.main import run

sys.exit(run())
