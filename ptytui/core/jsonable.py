"""JSON-ready values: the one conversion of numpy scalars and arrays, tuples, paths and
non-finite floats used by every JSON document ptytui writes (diagnosis, metrics, exports).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def finite_or_none(value: Any) -> float | None:
    """``float(value)``, or None for None, NaN and +/-Inf (JSON has no non-finite numbers)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def json_ready(value: Any, *, infinity: str = "null") -> Any:
    """A copy of ``value`` that ``json.dumps`` writes as strict JSON.

    Dicts get string keys; tuples, lists and arrays become lists; numpy scalars become Python
    numbers; paths become strings; NaN becomes None. Infinity becomes None with
    ``infinity="null"`` or the strings ``"inf"`` / ``"-inf"`` with ``infinity="text"`` (metrics
    such as the PSNR of identical images are infinite, and the CSV says so).
    """
    if isinstance(value, dict):
        return {str(key): json_ready(item, infinity=infinity) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item, infinity=infinity) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist(), infinity=infinity)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            return ("inf" if number > 0 else "-inf") if infinity == "text" else None
        return number
    if isinstance(value, Path):
        return str(value)
    return value
