"""Checks of a split's data before any model runs: is the stored "amplitude" really intensity
(counts)? Integer values that are not perfect squares, which sqrt(counts) never gives, or a
peak-to-mean ratio beyond the data contract's line give it away.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ptytui.core.thresholds import THRESHOLDS
from ptytui.inputs.diffraction_scan import AMPLITUDE_MAX_SUSPECT, MAX_OVER_MEAN_SUSPECT

INTEGRAL_FRACTION_MIN = THRESHOLDS.integral_fraction_min
NON_SQUARE_FRACTION_MIN = THRESHOLDS.non_square_fraction_min


def intensity_check(split, n_patterns: int = 64) -> dict[str, Any]:
    """Is the stored "amplitude" really intensity (counts)? Reads ``n_patterns`` patterns."""

    sample = split.diffraction_batch(np.arange(min(n_patterns, split.M))).astype(np.float64)
    finite = sample[np.isfinite(sample)]
    nonzero = finite[finite != 0]
    if nonzero.size:
        integral = np.abs(nonzero - np.rint(nonzero)) < 1e-6
        roots = np.rint(np.sqrt(np.abs(nonzero)))
        non_square = integral & (roots * roots != np.rint(np.abs(nonzero)))
        integral_fraction = float(integral.mean())
        non_square_fraction = float(non_square.mean())
    else:
        integral_fraction = non_square_fraction = 0.0
    scan = split.scan
    counts_like = integral_fraction >= INTEGRAL_FRACTION_MIN and non_square_fraction >= NON_SQUARE_FRACTION_MIN
    peaky = scan.max_over_mean > MAX_OVER_MEAN_SUSPECT
    return {"split": split.name, "max": scan.max, "mean": scan.mean,
            "max_over_mean": scan.max_over_mean, "integral_fraction": integral_fraction,
            "non_square_integer_fraction": non_square_fraction, "counts_like": counts_like,
            "max_above": AMPLITUDE_MAX_SUSPECT, "max_over_mean_above": MAX_OVER_MEAN_SUSPECT,
            "suspect": bool(counts_like or peaky), "patterns_checked": int(sample.shape[0])}
