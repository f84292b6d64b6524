"""The rules: each turns measurements (a run, a trace, geometry, drift, counterfactuals, a
hypothesis) into findings with the numbers they were decided on and the decision options they
suggest. Pure functions of the measurements: no model runs here.

Rules and thresholds
--------------------
- ``output-all-zero`` (error): an output (amplitude for complex outputs) has no nonzero element
  over the whole split.
- ``output-sparse``: nonzero fraction below ``SPARSE_NONZERO_MAX`` (0.5): error below
  ``SPARSE_ERROR_MAX`` (0.05), else warning. An all-zero gate only catches *all*-zero output.
- ``output-constant`` (warning): an output with (relatively) zero spread, e.g. an amplitude head
  stuck at sigmoid(bias) behind a dead layer.
- ``activation-collapse`` (error): a trace's first collapse (see ``running.trace``): a layer below
  1% nonzero fed by a layer above 20%; the evidence says whether it is the reassembly layer.
- ``dead-units``: layers (up to the first collapse, >= 2 channels) with dead channels: error when
  every channel of a layer is dead; info when at least ``DEAD_CHANNEL_WARN`` (50%) are (briefly
  trained ReLU networks often leave half a layer's channels silent on a small probe batch). A
  layer the run's live layer health covers is counted over the whole split (every batch), else
  over the probe batch; the summary says which.
- ``nonfinite`` (error): NaN/Inf in the data, the inputs as fed, an activation or an output.
- ``weights-nonfinite`` (error) / ``weights-all-zero`` (error): weight health of the trace.
- ``input-drift`` / ``positions-drift`` (warning): see ``diagnosis.drift`` for the measures.
- ``positions-off-canvas`` (error): a split whose predicted visible fraction is below 0.5.
- ``counterfactual-recovers`` (warning): an intervention lifts an output from below 0.5 nonzero
  to above it on the probe batch; the action names it (``apply-fix:INTERVENTION``).
- ``scale-mismatch`` (error): the diffraction is fed with a scale that differs from the model's
  own intensity scale by more than a factor ``SCALE_RATIO_MAX`` (1.5); a split-to-split
  normalization factor ratio outside [0.8, 1.25] is reported as ``input-drift``.
- ``intensity-as-amplitude`` (error): the stored "amplitude" is integer counts (see
  ``diagnosis.data_checks``).
- ``axes-swapped`` (error): the far field predicted at (y, x) explains the measured diffraction
  clearly better than at (x, y) (``geometry.axes_check``).
- ``model-kind`` (error): the workspace expected a supervised model and the model takes positions
  through a reassembly layer (a PINN), or expected a PINN and it takes none.
- ``batch-coupling`` / ``output-count-mismatch``: see ``diagnosis.batch_coupling``.
- ``underflow`` (warning): a layer with more than 0.1% subnormal activations.
- ``metric-degenerate``: taken from the metrics comparison cached in the session folder
  (``ptytui compare``), when it was made on the same inputs (workspace hash).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from ptytui.core.events import RunResult
from ptytui.core.findings import Finding
from ptytui.core.health import LayerHealth
from ptytui.core.thresholds import THRESHOLDS
from ptytui.diagnosis.drift import SplitDrift
from ptytui.diagnosis.geometry import PREDICTION_TOLERANCE, AxesCheck, CoverageCheck, SplitGeometry
from ptytui.diagnosis.hypotheses import (
    DEAD_CHANNELS_MIN,
    REASSEMBLY_TYPES,
    dead_layers,
    kernel_problems,
)
from ptytui.diagnosis.interventions import InterventionReport
from ptytui.inputs.decisions import OPTION_ACTIONS
from ptytui.quality.comparison_store import COMPARISON_JSON
from ptytui.running.trace import Trace

SPARSE_NONZERO_MAX = THRESHOLDS.failing_nonzero_below
SPARSE_ERROR_MAX = THRESHOLDS.sparse_error_below
CONSTANT_RELATIVE_STD = THRESHOLDS.constant_relative_std
DEAD_CHANNEL_WARN = THRESHOLDS.dead_channel_warn
SCALE_RATIO_MAX = THRESHOLDS.scale_ratio_max

def action(option: str, intervention: str | None = None) -> dict[str, Any]:
    """A decision option as findings carry it (``command`` is what ``ptytui decide`` takes)."""
    text = OPTION_ACTIONS.get(option, option)
    if intervention:
        text = f"{text}: {intervention}"
    return {"option": option, "intervention": intervention,
            "command": f"{option}:{intervention}" if intervention else option, "description": text}


def pct(x: float | None) -> str:
    """A fraction as a percentage with three significant digits, or "n/a"."""
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.3g}%"


def _baseline_actions(baseline: bool, *options: str) -> list[dict[str, Any]]:
    return [action(option) for option in options] if baseline else []


# ---- data ---------------------------------------------------------------------------------------


def data_findings(name: str, split, intensity: dict[str, Any], axes: AxesCheck | None,
                  coverage: CoverageCheck) -> list[Finding]:
    """intensity-as-amplitude, nonfinite (data), axes-swapped and object-coverage of one split."""
    out = []
    if intensity["suspect"]:
        out.append(Finding(
            "intensity-as-amplitude", "error", None, name, None,
            f"split {name}: the stored diffraction looks like intensity (counts), not amplitude "
            f"({intensity['integral_fraction']:.0%} of nonzero values are integers; max {intensity['max']:.4g}, "
            f"max/mean {intensity['max_over_mean']:.4g})", intensity,
            [action("debug-baseline")]))
    if split.scan.nan_count or split.scan.inf_count:
        out.append(Finding(
            "nonfinite", "error", None, name, None,
            f"split {name}: the diffraction holds {split.scan.nan_count} NaN and "
            f"{split.scan.inf_count} Inf values", {"where": "data", **split.scan.to_dict()}))
    if axes is not None and axes.swapped:
        out.append(Finding(
            "axes-swapped", "error", None, name, None,
            f"split {name}: x and y look exchanged: the far field predicted at (y, x) matches "
            f"the measured diffraction with correlation {axes.correlation_swapped:.2f}, at (x, y) "
            f"only {axes.correlation_as_stored:.2f}", axes.to_dict(),
            [action("apply-fix", "swap-xy")]))
    if coverage.ok is False:
        out.append(Finding(
            "object-coverage", "info", None, name, None,
            f"split {name}: the object ({coverage.object_shape[1]} x {coverage.object_shape[0]} px) "
            f"is smaller than the scan needs ({coverage.required[0]} x {coverage.required[1]} px, "
            "pty-chi's ceil(max - min + N) + 2 rule)", coverage.to_dict()))
    return out


def split_drift_findings(reference: str, other: str, drift: SplitDrift) -> list[Finding]:
    """positions-drift and input-drift (normalization) between two splits."""
    out = []
    moved = drift.drifted_positions
    if moved:
        evidence: dict[str, Any] = {"reference_split": reference, "other_split": other}
        for d in drift.positions:
            axis = d.name.split(".")[-1]
            evidence[f"{reference}_mean_{axis}"] = d.reference_mean
            evidence[f"{reference}_std_{axis}"] = d.reference_std
            evidence[f"{other}_mean_{axis}"] = d.other_mean
            evidence[f"{other}_std_{axis}"] = d.other_std
        evidence["axes"] = {d.name: d.to_dict() for d in drift.positions}
        text = "; ".join(f"{d.name.split('.')[-1]}: {reference} {d.reference_mean:.1f} +/- "
                         f"{d.reference_std:.1f} px, {other} {d.other_mean:.1f} +/- {d.other_std:.1f} px"
                         for d in moved)
        out.append(Finding(
            "positions-drift", "warning", None, other, None,
            f"scan positions differ between {reference} and {other} ({text}): the splits cover "
            "different parts of the object", evidence))
    norm = drift.normalization
    if norm is not None and norm.drifted:
        out.append(Finding(
            "input-drift", "warning", None, other, None,
            f"normalization factors differ between {reference} and {other} (ratio {norm.ratio:.3g}): "
            "per-split normalization hides a brightness shift", {"normalization": norm.to_dict()}))
    return out


# ---- a model's configuration --------------------------------------------------------------------


def model_kind_finding(model_name: str, entry, card, card_dict: dict[str, Any], reassembly_path: str | None,
                       baseline: bool) -> Finding | None:
    """model-kind: the workspace's expected kind against what the model takes."""
    label = entry.label
    has_reassembly = bool(card.reassembly)
    if entry.expected_kind == "supervised" and (card.takes_positions or has_reassembly):
        return Finding(
            "model-kind", "error", model_name, None, reassembly_path,
            f"{model_name} was expected to be a supervised model but takes positions"
            f"{' through a reassembly layer' if has_reassembly else ''}: a PINN-family model "
            f"(loaded from {card.loaded_from})",
            {"expected_kind": entry.expected_kind, "takes_positions": card.takes_positions,
             "reassembly": [r.to_dict() for r in card.reassembly], "kind": card.kind,
             "loaded_from": card.loaded_from, "fallback": card.fallback, "label": label,
             "inputs": card_dict.get("inputs")},
            _baseline_actions(baseline, "retrain-baseline", "skip-baseline", "debug-baseline")
            or [action("debug-baseline")], label=label)
    if entry.expected_kind == "pinn" and not card.takes_positions:
        return Finding(
            "model-kind", "error", model_name, None, None,
            f"{model_name} was expected to be a PINN but takes no positions",
            {"expected_kind": entry.expected_kind, "takes_positions": False, "kind": card.kind,
             "loaded_from": card.loaded_from, "label": label}, [], label=label)
    return None


def scale_finding(model_name: str, own_scale: float | None, fed_scale: float, setting, label) -> Finding | None:
    """scale-mismatch: the diffraction fed with a scale far from the model's own."""
    if not own_scale or not math.isfinite(own_scale) or own_scale <= 0 or math.isclose(own_scale, 1.0):
        return None
    ratio = fed_scale / own_scale
    if 1 / SCALE_RATIO_MAX <= ratio <= SCALE_RATIO_MAX:
        return None
    return Finding(
        "scale-mismatch", "error", model_name, None, None,
        f"{model_name}'s diffraction input is scaled by {fed_scale:.4g}, but the model's "
        f"intensity scale is {own_scale:.4g} (input off by a factor {ratio:.3g})",
        {"intensity_scale_setting": setting, "fed_scale": fed_scale,
         "model_intensity_scale": own_scale, "ratio": ratio},
        [action("apply-fix", "apply-intensity-scale")], label=label)


# ---- one run ------------------------------------------------------------------------------------


def output_findings(result: RunResult, label, baseline: bool) -> list[Finding]:
    """nonfinite (inputs, outputs), output-all-zero, output-constant and output-sparse of a run."""
    model, split = result.model, result.split
    out = []
    for name, record in result.inputs.items():
        if record.nan_count or record.inf_count:
            out.append(Finding(
                "nonfinite", "error", model, split, name,
                f"{model} on {split}: input {name} as fed holds {record.nan_count} NaN and "
                f"{record.inf_count} Inf values", {"where": "input", "record": name,
                                                   "nan_count": record.nan_count,
                                                   "inf_count": record.inf_count}, label=label))
    nonfinite = {name: {"nan_count": r.nan_count, "inf_count": r.inf_count, "count": r.count}
                 for name, r in result.outputs.items() if r.nan_count or r.inf_count}
    if nonfinite:
        first, counts = next(iter(nonfinite.items()))
        out.append(Finding(
            "nonfinite", "error", model, split, None,
            f"{model} on {split}: output {first} holds {counts['nan_count']} NaN and "
            f"{counts['inf_count']} Inf values of {counts['count']}"
            + (f" ({len(nonfinite) - 1} more output record(s) too)" if len(nonfinite) > 1 else ""),
            {"where": "output", "records": nonfinite}, label=label))
    for name, record in result.outputs.items():
        if record.count and not name.endswith(".phase"):  # a phase of exactly 0 can be legitimate
            out += _output_record_findings(result, name, record, label, baseline)
    return out


def _output_record_findings(result: RunResult, name: str, record, label, baseline: bool) -> list[Finding]:
    model, split = result.model, result.split
    evidence = {"record": name, "nonzero_fraction": record.nonzero_fraction,
                "zero_count": record.zero_count, "count": record.count,
                "mean": record.mean if record.finite_count else None, "max": record.max,
                "n_samples": result.n_samples, "positions": result.positions}
    actions = _baseline_actions(baseline, "skip-baseline", "debug-baseline", "retrain-baseline")
    out = []
    if record.zero_count == record.count:
        out.append(Finding(
            "output-all-zero", "error", model, split, None,
            f"{model} on {split}: output {name} is exactly zero everywhere "
            f"({record.count} values, {result.n_samples} groups)", evidence, actions, label=label))
    elif (record.nonzero_fraction >= SPARSE_NONZERO_MAX
          and record.finite_count == record.count > 1 and math.isfinite(record.std)
          and record.std <= CONSTANT_RELATIVE_STD * max(1.0, abs(record.mean))):
        out.append(Finding(
            "output-constant", "warning", model, split, None,
            f"{model} on {split}: output {name} is constant ({record.mean:.6g}, std "
            f"{record.std:.3g}): a collapsed or untrained model", evidence, actions, label=label))
    if 0 < record.nonzero_fraction < SPARSE_NONZERO_MAX:
        severity = "error" if record.nonzero_fraction < SPARSE_ERROR_MAX else "warning"
        out.append(Finding(
            "output-sparse", severity, model, split, None,
            f"{model} on {split}: output {name} is only {pct(record.nonzero_fraction)} nonzero "
            "(an all-zero gate would pass it)", evidence, actions, label=label))
    return out


# ---- one trace ----------------------------------------------------------------------------------


def trace_findings(trace: Trace, label, baseline: bool, report_weights: bool = True,
                   live: Mapping[str, LayerHealth] | None = None) -> list[Finding]:
    """activation-collapse, dead-units, nonfinite (activations), weights-* from one trace.

    Weights do not depend on the split, so weight findings come only with ``report_weights``
    (the first traced split of a model). ``live``: the run's layer health over every batch of the
    split (``RunResult.layer_health``); dead channels are then those never nonzero over the whole
    split, not only over the probe batch."""
    out = [f for f in (_collapse_finding(trace, label, baseline), _dead_units_finding(trace, label, live),
                       _nonfinite_activation_finding(trace, label)) if f is not None]
    if report_weights:
        out += _weight_findings(trace, label)
    return out


def _collapse_finding(trace: Trace, label, baseline: bool) -> Finding | None:
    collapse = trace.first_collapse
    if collapse is None:
        return None
    entry = trace.layer(collapse.path)
    at_reassembly = entry.type in REASSEMBLY_TYPES
    return Finding(
        "activation-collapse", "error", trace.model, trace.split, collapse.path,
        f"{trace.model} on {trace.split}: activations collapse at {collapse.path} ({collapse.type}"
        f"{', the reassembly layer' if at_reassembly else ''}): {pct(collapse.upstream_nonzero_fraction)} "
        f"nonzero going in, {pct(collapse.nonzero_fraction)} coming out",
        {**collapse.to_dict(), "reassembly": at_reassembly, "activation": entry.activation,
         "n_samples": trace.n_samples, "positions": trace.positions},
        [action("debug-baseline")] if baseline else [], label=label)


def _over_split(row: dict[str, Any], live: Mapping[str, LayerHealth] | None) -> dict[str, Any]:
    """A probe batch's dead-channel row, recounted over the whole split where the run's live layer
    health has the layer (a channel silent on the probe may fire on other samples)."""
    record = (live or {}).get(row["path"])
    channels = None if record is None else record.channel_nonzero
    if channels is None or len(channels) != row["channels"]:
        return {**row, "over": "probe batch"}
    dead = record.dead_channels
    return {**row, "dead_channels": dead, "fraction": dead / row["channels"], "over": "split",
            "samples": record.samples}


def _dead_units_finding(trace: Trace, label, live: Mapping[str, LayerHealth] | None = None) -> Finding | None:
    dead = [row for row in (_over_split(r, live) for r in dead_layers(trace)) if row["dead_channels"]]
    fully = [row for row in dead if row["dead_channels"] == row["channels"]]
    mostly = [row for row in dead if row["fraction"] >= DEAD_CHANNEL_WARN]
    if not (fully or mostly):
        return None
    worst = (fully or mostly)[0]
    over = (f"all {worst['samples']} samples of the split" if worst["over"] == "split"
            else f"the probe batch ({trace.n_samples} samples)")
    return Finding(
        "dead-units", "error" if fully else "info", trace.model, trace.split, worst["path"],
        f"{trace.model} on {trace.split}: {worst['dead_channels']} of {worst['channels']} channels of "
        f"{worst['path']} are never nonzero over {over}"
        + (f" ({len(fully)} layer(s) entirely dead)" if fully else ""),
        {"layers": (fully or mostly)[:8], "n_samples": trace.n_samples,
         "min_channels": DEAD_CHANNELS_MIN}, label=label)


def _nonfinite_activation_finding(trace: Trace, label) -> Finding | None:
    first_bad = trace.first_nonfinite()
    if first_bad is None or first_bad.is_input:
        return None
    return Finding(
        "nonfinite", "error", trace.model, trace.split, first_bad.path,
        f"{trace.model} on {trace.split}: the first non-finite activation is at {first_bad.path} "
        f"({first_bad.output.nan_count} NaN, {first_bad.output.inf_count} Inf)",
        {"where": "activation", "nan_count": first_bad.output.nan_count,
         "inf_count": first_bad.output.inf_count, "count": first_bad.output.count,
         "inputs": first_bad.inputs}, label=label)


def _weight_findings(trace: Trace, label) -> list[Finding]:
    model = trace.model
    problems = kernel_problems(trace)
    out = []
    if problems["nonfinite"]:
        path = problems["nonfinite"][0]
        layer_path, _, weight = path.rpartition("/")
        w = trace.layer(layer_path).weights[weight]
        out.append(Finding(
            "weights-nonfinite", "error", model, None, layer_path,
            f"{model}: weight {weight} of {layer_path} holds {w.stats.nan_count} NaN and "
            f"{w.stats.inf_count} Inf values" + (f" (and {len(problems['nonfinite']) - 1} more weights)"
                                                 if len(problems["nonfinite"]) > 1 else ""),
            {"weights": problems["nonfinite"][:8], **w.to_dict()}, label=label))
    if problems["all_zero"]:
        path = problems["all_zero"][0]
        layer_path = path.rpartition("/")[0]
        out.append(Finding(
            "weights-all-zero", "error", model, None, layer_path,
            f"{model}: kernel {path} is all zero", {"weights": problems["all_zero"][:8]}, label=label))
    return out


# ---- a model across its splits ------------------------------------------------------------------


def best_fix(reports: dict[str, InterventionReport]) -> str | None:
    """The first intervention that recovers the output on any split, or None."""
    for report in reports.values():
        recovered = report.recoveries()
        if recovered:
            return recovered[0].name
    return None


def counterfactual_findings(model_name: str, reports: dict[str, InterventionReport], label,
                            baseline: bool) -> list[Finding]:
    """counterfactual-recovers: per split, the best intervention that brings the output back."""
    out = []
    for split_name, report in reports.items():
        recovered = report.recoveries()
        if not recovered:
            continue
        best = recovered[0]
        out.append(Finding(
            "counterfactual-recovers", "warning", model_name, split_name, None,
            f"{model_name} on {split_name}: fed with {best.name} ({best.description}) the output "
            f"is {pct(best.nonzero_fraction)} nonzero instead of {pct(report.as_fed.nonzero_fraction)}",
            {"intervention": best.name, "nonzero_before": report.as_fed.nonzero_fraction,
             "nonzero_after": best.nonzero_fraction, "n_samples": report.n_samples,
             "recovering": {r.name: r.nonzero_fraction for r in recovered},
             "all": {r.name: r.nonzero_fraction for r in report.results}},
            [action("apply-fix", best.name)] + _baseline_actions(baseline, "retrain-baseline", "skip-baseline"),
            label=label))
    return out


def off_canvas_finding(model_name: str, geometry: list[SplitGeometry], observed: dict[str, float],
                       fix: str | None, reassembly_path: str | None, label, baseline: bool) -> Finding | None:
    """positions-off-canvas: the offsets as fed move patches off the reassembly canvas."""
    # a mechanism is named only where its prediction matches the observation
    off = [g for g in geometry if g.off_canvas and g.prediction_holds(observed.get(g.split))]
    if not off:
        return None
    canvas = geometry[0].canvas
    per_split = {g.split: {"predicted_visible_fraction": g.predicted_visible_fraction,
                           "observed_nonzero_fraction": observed.get(g.split),
                           "hidden_patch_fraction": g.hidden_patch_fraction,
                           **{k: v for k, v in g.offset_summary().items()}}
                 for g in geometry}
    worst = min(off, key=lambda g: g.predicted_visible_fraction)
    summary_parts = ", ".join(
        f"{g.split}: predicted {pct(g.predicted_visible_fraction)} visible, observed "
        f"{pct(observed.get(g.split))} nonzero" for g in geometry)
    actions = [action("apply-fix", fix)] if fix else []
    if baseline:
        actions += [action("skip-baseline"), action("retrain-baseline"), action("debug-baseline")]
        if any(not g.off_canvas for g in geometry) or any((observed.get(g.split) or 0) > 0 for g in geometry):
            actions.append(action("accept-train-only"))
    return Finding(
        "positions-off-canvas", "error", model_name, worst.split, reassembly_path or canvas.path,
        f"{model_name} is fed {worst.positions} offsets that move patches off its "
        f"{canvas.canvas} px canvas (patch {canvas.patch} px): {summary_parts}",
        {"positions": worst.positions, "patch": canvas.patch, "canvas": canvas.canvas,
         "reassembly_layer": canvas.path,
         "predicted_visible_fraction": {s: v["predicted_visible_fraction"] for s, v in per_split.items()},
         "observed_nonzero_fraction": {s: v["observed_nonzero_fraction"] for s, v in per_split.items()},
         "prediction_tolerance": PREDICTION_TOLERANCE, "batch_size": worst.batch_size,
         "centred_per_call": worst.centred_per_call,
         "splits": per_split}, actions, label=label)


def input_drift_finding(model_name: str, reference: str, other: str, moved: list, label) -> Finding | None:
    """input-drift: a model's inputs as fed differ between two splits (SMD, normalized W1)."""
    if not moved:
        return None
    return Finding(
        "input-drift", "warning", model_name, other, None,
        f"{model_name}'s inputs as fed differ between {reference} and {other}: "
        + ", ".join(f"{d.name} SMD {d.smd:.2f}, W/std {d.normalized_wasserstein:.2f}" for d in moved),
        {"inputs": {d.name: d.to_dict() for d in moved}}, label=label)


def underflow_finding(model_name: str, hypothesis, label) -> Finding | None:
    """underflow: the hypothesis test found subnormal activations."""
    if hypothesis.id != "underflow" or hypothesis.verdict != "supported":
        return None
    ev = hypothesis.evidence
    return Finding(
        "underflow", "warning", model_name, ev.get("worst_split"), ev.get("worst_layer"),
        f"{model_name}: {ev['worst_layer_fraction']:.2%} of {ev.get('worst_layer')}'s outputs "
        "are subnormal (nonzero but below float32's smallest normal)", ev, label=label)


# ---- the session's cached metrics ---------------------------------------------------------------


def cached_metric_findings(ws, workspace_hash: str | None) -> list[Finding]:
    """``metric-degenerate`` findings of the session's cached comparison (same workspace hash
    only: a comparison of other inputs says nothing about these)."""
    folder = getattr(ws, "session_dir", None)
    if folder is None or workspace_hash is None:
        return []
    path = Path(folder) / COMPARISON_JSON
    try:
        if not path.is_file():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("workspace_hash") != workspace_hash:
        return []
    return [Finding(str(f["id"]), str(f.get("severity", "warning")), f.get("model"), f.get("split"),
                    f.get("layer"), str(f.get("summary") or ""), dict(f.get("evidence") or {}),
                    [_as_action(a) for a in f.get("actions") or []])
            for f in data.get("findings") or [] if isinstance(f, dict) and f.get("id")]


def _as_action(value) -> dict[str, Any]:
    """An action dict from 'option', 'option:intervention' or a dict."""
    if isinstance(value, dict):
        return action(str(value.get("option", "")), value.get("intervention"))
    option, _, intervention = str(value).partition(":")
    return action(option, intervention or None)
