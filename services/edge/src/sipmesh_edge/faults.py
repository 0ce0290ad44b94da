"""Logging for the compiled modules, which import no ``logging`` (they are no I/O shells).

``scripts/compile.py`` compiles the edge's hot path with mypyc; the rules of
``tests/test_compiled_build.py`` keep logging, like asyncio, in Python modules.
"""

from __future__ import annotations

import logging


def log_exception(logger: str, message: str, *args: object) -> None:
    """``logging.getLogger(logger).exception(message, *args)``: call it in an ``except`` block."""
    logging.getLogger(logger).exception(message, *args)
