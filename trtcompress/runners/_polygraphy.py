"""Polygraphy's global logger, set up once for trtcompress's users.

Without the optional ``colored`` package, Polygraphy's first coloured message prints an install
hint ("'colored' module is not installed ...") to stdout, where it lands in front of our output
(and inside ``--json``). Colours are turned off before anything is logged, so the check never runs.
"""
from __future__ import annotations

from polygraphy.logger import G_LOGGER

G_LOGGER.colors = False

__all__ = ["G_LOGGER"]
