"""Formatting shared by the widgets: numbers, histogram sparklines as text, health levels.

Health is a small set of semantic levels (healthy, warning, error) always shown with a symbol as
well as a colour, so a terminal without colour (NO_COLOR) still tells them apart.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from rich.text import Text

if TYPE_CHECKING:  # the stats record (and numpy) load with the first event, not the first frame
    from ptytui.core.stats import TensorStats

SPARK_BLOCKS = " ▁▂▃▄▅▆▇█"
# A finding's severity (ptytui.core.findings.SEVERITIES) as shown everywhere, TUI and headless.
SEVERITY_SYMBOL = {"error": "✗", "warning": "!", "info": "i"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Health levels extend the severities with the states of a measurement that raised nothing.
HEALTH_SYMBOL = {**SEVERITY_SYMBOL, "healthy": "✓", "unknown": "·"}
HEALTH_STYLE = {**SEVERITY_STYLE, "healthy": "green", "unknown": "dim"}
VERDICT_STYLE = {"supported": "bold red", "rejected": "green", "inconclusive": "yellow"}


def number(value: Any, digits: int = 4) -> str:
    """A compact number: 4 significant digits, 'nan'/'-' for missing, no float noise."""
    if value is None:
        return "-"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def compact(value: Any) -> str:
    """A number in at most 8 characters for table cells: 3 significant digits, short exponent."""
    text = number(value, 3)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else ""
        text = f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def percent(fraction: Any, digits: int = 2) -> str:
    """A fraction as a percentage with enough digits to tell 0 from 0.4%."""
    if fraction is None:
        return "-"
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        return str(fraction)
    if math.isnan(fraction):
        return "nan"
    if fraction == 0:
        return "0%"
    if fraction == 1:
        return "100%"
    return f"{100 * fraction:.{digits}f}%"


def histogram_sparkline(record: TensorStats, width: int = 12) -> str:
    """The occupied span of a record's symlog histogram as block characters.

    Counts are shown on a square-root scale so that a few outliers stay visible beside the bulk.
    """
    import numpy as np  # noqa: PLC0415

    first, last = record.histogram_span()
    if last < first:
        return " " * width
    counts = record.hist_counts[first:last + 1].astype(np.float64)
    if counts.size > width:  # pool neighbouring bins to fit the width
        edges = np.linspace(0, counts.size, width + 1).round().astype(int)
        counts = np.array([counts[a:b].sum() for a, b in zip(edges[:-1], edges[1:])])
    heights = np.sqrt(counts / counts.max())
    levels = np.where(counts > 0, np.maximum(1, np.round(heights * (len(SPARK_BLOCKS) - 1))), 0)
    return "".join(SPARK_BLOCKS[int(level)] for level in levels).ljust(width)


def histogram_span_label(record: TensorStats) -> str:
    """The value range the sparkline covers, e.g. '1e-3..5.6' (symlog bin edges)."""
    from ptytui.core.stats import HIST_EDGES  # noqa: PLC0415

    first, last = record.histogram_span()
    if last < first:
        return "empty"
    return f"{number(HIST_EDGES[first], 2)}..{number(HIST_EDGES[last + 1], 2)}"


def stats_health(record: TensorStats | Mapping[str, Any] | None, *, is_output: bool = True) -> str:
    """healthy / warning / error for one record: non-finite values or an empty output are errors."""
    if record is None:
        return "unknown"
    if isinstance(record, Mapping):
        from ptytui.core.stats import TensorStats  # noqa: PLC0415

        record = TensorStats.from_dict(record)
    if not record.count:
        return "unknown"
    if record.nan_count or record.inf_count:
        return "error"
    if is_output and record.nonzero_fraction < 0.01:
        return "error"
    if is_output and record.nonzero_fraction < 0.5:
        return "warning"
    return "healthy"


def health_text(level: str, label: str = "") -> Text:
    """'✓ label' styled by level."""
    symbol = HEALTH_SYMBOL.get(level, "·")
    return Text(f"{symbol} {label}".rstrip(), style=HEALTH_STYLE.get(level, ""))


def worst(levels: Iterable[str]) -> str:
    order = ["error", "warning", "healthy", "unknown"]
    levels = list(levels)
    for level in order:
        if level in levels:
            return level
    return "unknown"


def flatten(evidence: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested evidence dicts as (dotted key, value) rows for a two-column table."""
    rows: list[tuple[str, Any]] = []
    if isinstance(evidence, Mapping):
        for key, value in evidence.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and value and len(value) <= 8:
                rows.extend(flatten(value, name))
            else:
                rows.append((name, value))
    else:
        rows.append((prefix or "value", evidence))
    return rows


def evidence_rows(evidence: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A finding's evidence as (key, display value) rows for an aligned two-column grid.

    Nested dicts become dotted keys and a list of dicts one block per item (``reassembly.path``,
    or ``reassembly[2].path`` when there are several); booleans read yes/no; a number under a key
    that names a fraction reads as a percentage; lists of scalars are joined, at most 8 shown.
    """
    rows: list[tuple[str, str]] = []
    if isinstance(evidence, Mapping):
        for key, value in evidence.items():
            rows.extend(evidence_rows(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(evidence, (list, tuple)) and evidence and all(isinstance(v, Mapping) for v in evidence):
        for i, item in enumerate(evidence, start=1):
            rows.extend(evidence_rows(item, prefix if len(evidence) == 1 else f"{prefix}[{i}]"))
    else:
        rows.append((prefix or "value", evidence_value(evidence, prefix)))
    return rows


def evidence_value(value: Any, key: str = "") -> str:
    """One evidence value for reading: yes/no, percentages for fractions, numbers compact."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and "fraction" in key.lower():
        return percent(value)
    if isinstance(value, (list, tuple)):
        shown = ", ".join(evidence_value(v, key) for v in value[:8])
        return shown + (f", ... ({len(value)} in all)" if len(value) > 8 else "") if value else "none"
    return value_text(value)


def value_text(value: Any) -> str:
    """A short display of an evidence value (fractions as numbers, lists shortened)."""
    if isinstance(value, float):
        return number(value, 4)
    if isinstance(value, (list, tuple)):
        shown = ", ".join(value_text(v) for v in value[:6])
        return f"[{shown}{', ...' if len(value) > 6 else ''}]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in list(value.items())[:6]) + "}"
    if value is None:
        return "-"
    return str(value)


def wrap_words(text: Text, width: int) -> list[Text]:
    """``text`` wrapped at spaces to ``width`` columns, never splitting a word: a path or a
    number longer than the line stays whole (copy and paste keep working), styles kept."""
    plain = text.plain
    offsets, line_start, last_space = [], 0, None
    for i, char in enumerate(plain):
        if char == " ":
            last_space = i
        if i - line_start >= width and last_space is not None and last_space > line_start:
            offsets.append(last_space + 1)
            line_start, last_space = last_space + 1, None
    lines = text.divide(offsets) if offsets else [text]
    for line in lines:
        line.rstrip()
    return list(lines)
