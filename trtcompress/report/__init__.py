"""The run report: ``report.json``'s versioned schema and the self-contained ``report.html``.

``schema`` (the schema and a validator), ``svg`` (charts as inline SVG), ``plots`` (the report's
figures), ``variants`` (points for the accuracy trade-off plots), ``provenance`` (package
versions), ``html`` (the page).
"""
from __future__ import annotations

from .html import PAGE_NAME, render, write_html
from .provenance import versions
from .schema import SCHEMA_VERSION, validate
from .variants import Variant, run_variants

__all__ = ["PAGE_NAME", "SCHEMA_VERSION", "Variant", "render", "run_variants", "validate", "versions", "write_html"]
