"""One model's metrics as a record, and its rows in PtychoPINN's metrics CSV layout.

``ModelMetrics.rows()`` gives tidy rows ``model,metric,amplitude,phase,value`` (``CSV_COLUMNS``),
``ModelMetrics.frc_rows()`` gives ``model,frequency_bin,amplitude_frc,phase_frc``
(``FRC_CSV_COLUMNS``), ``ModelMetrics.to_dict()`` a JSON-safe dict, ``ModelMetrics.flags`` the
sanity flags ``{flag, component, value, message}`` (``sanity_flag``) that the diagnosis turns into
``metric-degenerate`` findings. ``empty_metrics`` / ``empty_rows`` are the record of a model that
failed or was skipped.

The CSV columns and the order of the metric rows live here, beside the record that fills them:
the row layout is a property of the record, not of how the numbers were measured (``evaluation``)
or of where the CSV is written (``comparison_store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptytui.core.jsonable import json_ready
from ptytui.quality.image_metrics import FRC_THRESHOLD_NAMES, FRCResult

#: Columns of the metrics CSV, as PtychoPINN's comparison script writes it.
CSV_COLUMNS = ("model", "metric", "amplitude", "phase", "value")
#: Columns of the FRC-curve CSV.
FRC_CSV_COLUMNS = ("model", "frequency_bin", "amplitude_frc", "phase_frc")

#: Metric rows carrying an amplitude and a phase cell, in CSV order.
_COMPONENT_ROWS = (
    "mae", "mse", "psnr", "psnr_data_range", "ssim", "ms_ssim", "ms_ssim_scales",
    "frc50", "frc_1over7", "frc_halfbit", "frc_onebit", "frc_auc",
)
#: Metric rows carrying one ``value`` cell, in CSV order.
_SCALAR_ROWS = (
    "amplitude_scale_factor", "amplitude_rescaled",
    "registration_offset_dy", "registration_offset_dx", "computation_time_s",
)


def sanity_flag(flag: str, component: str, value: Any, message: str) -> dict:
    """One sanity flag ``{flag, component, value, message}``: ``flag`` a kebab-case name (the
    diagnosis ranks it), ``component`` "amplitude", "phase" or "both", ``value`` the number that
    raised it (or None), ``message`` one line for the user, starting with the model's label."""
    return {"flag": flag, "component": component, "value": value, "message": message}


@dataclass
class ComponentMetrics:
    """Metrics of one component (amplitude or phase) of one model.

    ``data_range`` is the L used by PSNR, SSIM and MS-SSIM (max - min of the ground truth
    unless flagged ``zero-data-range``). Metrics that could not be computed are NaN and flagged.
    """

    mae: float
    mse: float
    psnr: float
    data_range: float
    ssim: float
    ms_ssim: float
    ms_ssim_scales: int
    frc: FRCResult | None

    def cell(self, metric: str) -> Any:
        """The value of one CSV metric row for this component."""
        if metric == "psnr_data_range":
            return self.data_range
        if metric in FRC_THRESHOLD_NAMES:
            return self.frc.crossings[metric].ring if self.frc else float("nan")
        if metric == "frc_auc":
            return self.frc.auc if self.frc else float("nan")
        return getattr(self, metric)


@dataclass
class ModelMetrics:
    """Everything measured for one model against ground truth.

    ``amplitude`` / ``phase`` are None for a model that failed or was skipped (``reason`` says
    why). ``amplitude_scale_factor`` = mean(gt amplitude) / mean(pred amplitude) over the
    compared region; ``amplitude_rescaled`` says whether the amplitude metrics used the
    prediction multiplied by it (PtychoPINN's comparability rule; never when it is not finite).
    """

    label: str
    amplitude: ComponentMetrics | None = None
    phase: ComponentMetrics | None = None
    offset_dy: float | None = None
    offset_dx: float | None = None
    amplitude_scale_factor: float | None = None
    amplitude_rescaled: bool | None = None
    computation_time_s: float | None = None
    flags: list = field(default_factory=list)
    reason: str | None = None
    registered_on: str | None = None
    registration_error: float | None = None
    window: tuple | None = None
    border: int | None = None
    phase_offset: float | None = None
    phase_gradient: tuple | None = None
    covered_fraction: float | None = None
    evaluation_time_s: float | None = None

    def _scalar(self, metric: str) -> Any:
        value = {
            "amplitude_scale_factor": self.amplitude_scale_factor,
            "amplitude_rescaled": None if self.amplitude_rescaled is None else int(self.amplitude_rescaled),
            "registration_offset_dy": self.offset_dy,
            "registration_offset_dx": self.offset_dx,
            "computation_time_s": self.computation_time_s,
        }[metric]
        return "" if value is None else value

    def rows(self) -> list[dict]:
        """Tidy rows in PtychoPINN's CSV layout ``model,metric,amplitude,phase,value``.

        Component metrics fill ``amplitude`` and ``phase`` (empty ``value``); the scalar rows
        (``amplitude_scale_factor``, ``amplitude_rescaled`` 1/0, ``registration_offset_dy``,
        ``registration_offset_dx``, ``computation_time_s``) fill ``value``. ``frc50`` and the
        other crossings are in ring units; ``psnr_data_range`` is the peak PSNR used. A model
        without metrics has empty cells.
        """
        rows = []
        for metric in _COMPONENT_ROWS:
            amplitude = self.amplitude.cell(metric) if self.amplitude else ""
            phase = self.phase.cell(metric) if self.phase else ""
            rows.append({"model": self.label, "metric": metric, "amplitude": amplitude,
                         "phase": phase, "value": ""})
        for metric in _SCALAR_ROWS:
            rows.append({"model": self.label, "metric": metric, "amplitude": "", "phase": "",
                         "value": self._scalar(metric)})
        return rows

    def frc_rows(self) -> list[dict]:
        """FRC curves as rows ``model,frequency_bin,amplitude_frc,phase_frc`` (bin = ring)."""
        if not (self.amplitude and self.phase and self.amplitude.frc and self.phase.frc):
            return []
        amp, pha = self.amplitude.frc, self.phase.frc
        return [{"model": self.label, "frequency_bin": int(ring),
                 "amplitude_frc": float(amp.curve[ring]), "phase_frc": float(pha.curve[ring])}
                for ring in amp.rings]

    def to_dict(self) -> dict:
        """JSON-safe dict: NaN becomes None, +/-inf the strings "inf" / "-inf"."""
        def component(metrics: ComponentMetrics | None):
            if metrics is None:
                return None
            out = {name: getattr(metrics, name) for name in
                   ("mae", "mse", "psnr", "data_range", "ssim", "ms_ssim", "ms_ssim_scales")}
            if metrics.frc is not None:
                result = metrics.frc
                out["frc"] = {
                    "size": result.size,
                    "rings": result.rings, "frequencies": result.frequencies,
                    "curve": result.curve, "n_per_ring": result.n_per_ring,
                    "thresholds": result.thresholds,
                    "crossings": {name: {"ring": c.ring, "fraction_of_nyquist": c.fraction_of_nyquist,
                                         "crossed": c.crossed} for name, c in result.crossings.items()},
                    "auc": result.auc,
                }
            return out

        record = {
            "model": self.label, "reason": self.reason,
            "amplitude": component(self.amplitude), "phase": component(self.phase),
            "registration_offset_dy": self.offset_dy, "registration_offset_dx": self.offset_dx,
            "registered_on": self.registered_on, "registration_error": self.registration_error,
            "amplitude_scale_factor": self.amplitude_scale_factor,
            "amplitude_rescaled": self.amplitude_rescaled,
            "computation_time_s": self.computation_time_s,
            "evaluation_time_s": self.evaluation_time_s,
            "window": self.window, "border": self.border,
            "phase_offset": self.phase_offset, "phase_gradient": self.phase_gradient,
            "covered_fraction": self.covered_fraction,
            "flags": self.flags,
        }
        return json_ready(record, infinity="text")


def empty_metrics(label: str, reason: str, *, computation_time_s: float | None = None) -> ModelMetrics:
    """The record of a model that failed or was skipped: no values, ``reason`` kept."""
    return ModelMetrics(label=label, reason=reason, computation_time_s=computation_time_s,
                        flags=[sanity_flag("model-not-evaluated", "both", None, f"{label}: {reason}")])


def empty_rows(label: str, reason: str) -> list[dict]:
    """CSV rows with empty value cells for a model that failed or was skipped.

    The five CSV columns have no room for the reason; keep ``empty_metrics(label, reason)`` for
    the JSON / report, which carries it.
    """
    return empty_metrics(label, reason).rows()
