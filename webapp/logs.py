"""Logging for the entry points: one line per event on stdout."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        stream=sys.stdout,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s",
        force=True,
    )
