"""Findings: the problems (or observations) a diagnosis raises, and their severities."""

from __future__ import annotations

# Most severe first: the order findings are ranked, counted and listed in everywhere.
SEVERITIES = ("error", "warning", "info")
