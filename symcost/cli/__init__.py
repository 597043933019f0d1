"""Stage 8: the ``symcost`` command (``python -m symcost``); :func:`main` is its entry point."""

from .main import build_parser as build_parser
from .main import main as main

__all__ = ["build_parser", "main"]
