"""Every threshold that decides a finding, in one typed, documented settings object.

Modules read them from ``THRESHOLDS`` (often under a local constant name that says how they use
it); changing a number here changes it everywhere it decides something. Fractions are of 1;
"nonzero fraction" is the share of an output's (amplitude) values that are not exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    # ---- outputs --------------------------------------------------------------------------------
    #: An output (or a split's predicted visible fraction, or an intervention's result) below this
    #: nonzero fraction is failing: output-sparse, positions-off-canvas, counterfactual recovery
    #: and the export's failing runs all draw the line here.
    failing_nonzero_below: float = 0.5
    #: output-sparse is an error (not a warning) below this nonzero fraction.
    sparse_error_below: float = 0.05
    #: An output whose std is below this, relative to max(1, |mean|), is constant.
    constant_relative_std: float = 1e-5

    # ---- layers (trace) -------------------------------------------------------------------------
    #: A layer output below this nonzero fraction has collapsed ...
    collapse_nonzero_max: float = 0.01
    #: ... when an input of it is above this one (ReLU outputs are about half zeros).
    healthy_nonzero_min: float = 0.2
    #: dead-units is reported (info) when at least this share of a layer's channels are dead.
    dead_channel_warn: float = 0.5
    #: A layer needs at least this many channels for "all dead" to mean dead units.
    dead_channels_min: int = 2
    #: A layer with more than this share of subnormal outputs underflows.
    underflow_fraction_min: float = 1e-3

    # ---- feeding --------------------------------------------------------------------------------
    #: scale-mismatch when the fed scale differs from the model's own by more than this factor.
    scale_ratio_max: float = 1.5
    #: Outputs at batch 1 and batch B agree within rtol * max|output| + atol.
    batch_rtol: float = 1e-3
    batch_atol: float = 1e-6

    # ---- predictions against observations ---------------------------------------------------------
    #: A mechanism's predicted fraction holds when it is within this of the observed one.
    prediction_tolerance: float = 0.05

    # ---- data -------------------------------------------------------------------------------------
    #: axes-swapped: the swapped ordering must correlate this much better with the measured
    #: diffraction, and at least this well at all.
    swap_correlation_gain: float = 0.2
    swap_correlation_min: float = 0.3
    #: intensity-as-amplitude: this share of nonzero stored values are integers, and this share
    #: of them are integers that are not perfect squares (sqrt(counts) never gives those).
    integral_fraction_min: float = 0.99
    non_square_fraction_min: float = 0.05
    #: The stored "amplitude" is suspect above this maximum, or above this max/mean ratio.
    amplitude_max_suspect: float = 10.0
    max_over_mean_suspect: float = 300.0

    # ---- split against split ------------------------------------------------------------------------
    #: A quantity drifts when its standardized mean difference or its normalized Wasserstein
    #: distance passes these and the KS test agrees (p below, statistic above).
    smd_min: float = 0.25
    normalized_wasserstein_min: float = 0.1
    ks_p_max: float = 0.01
    ks_statistic_min: float = 0.1
    #: Normalization factors drift outside [1 / this, this].
    normalization_ratio_max: float = 1.25

    # ---- metrics ----------------------------------------------------------------------------------
    #: metric-degenerate when SSIM is below this.
    ssim_degenerate_below: float = 0.05
    #: A registration shift beyond this fraction of the image is suspect.
    registration_large_fraction: float = 0.25


THRESHOLDS = Thresholds()
