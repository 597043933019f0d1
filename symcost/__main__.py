"""``python -m symcost``: the same as the ``symcost`` command."""

import sys

from .cli import main

sys.exit(main())
