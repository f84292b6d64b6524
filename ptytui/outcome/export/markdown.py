"""Markdown text for the report: escaping of names taken from models and files, and how numbers
and fractions are written."""

from __future__ import annotations

import math
from typing import Any

_MD_SPECIAL = {"\\": "\\\\", "`": "\\`", "|": "\\|", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]",
               "<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#"}


def md_escape(value: Any) -> str:
    """Text safe inside Markdown prose and table cells: backslash-escape Markdown syntax
    (backticks, pipes, emphasis, brackets, headings), HTML-escape < > &, fold newlines."""
    text = " ".join(str(value).split()) if value is not None else ""
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in text)


def code(value: Any) -> str:
    """Inline code for a path or id (escaped, so a backtick in a name cannot end the span)."""
    return f"<code>{md_escape(value)}</code>"


def number(value: Any, digits: int = 4) -> str:
    """A table cell for a value: ``digits`` significant digits, scientific below 1e-3 and from
    1e5, "–" for none, yes / no for booleans, strings escaped."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        return md_escape(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    amount = float(value)
    if math.isnan(amount):
        return "nan"
    if math.isinf(amount):
        return "inf" if amount > 0 else "-inf"
    if amount == 0:
        return "0"  # also -0.0
    if abs(amount) < 1e-3 or abs(amount) >= 1e5:
        return f"{amount:.{digits - 1}e}"
    return f"{amount:.{digits}g}"


def percent(value: Any) -> str:
    """A fraction in [0, 1] as a percentage with two decimals ("–" for none)."""
    if value is None:
        return "–"
    amount = float(value)
    return "nan" if math.isnan(amount) else f"{amount:.2%}"
