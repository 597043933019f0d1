"""Stage 8: the ``symcost`` command (``python -m symcost``); :func:`main` runs it, :func:`run` in its own
process."""

from .main import build_parser as build_parser
from .main import main as main
from .main import run as run

__all__ = ["build_parser", "main", "run"]
