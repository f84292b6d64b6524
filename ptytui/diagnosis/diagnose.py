"""The diagnosis: measurements (runs, traces, geometry, drift, interventions, hypothesis tests)
turned into findings with evidence and decision options, streamed as events for the TUI.

``diagnose_events`` is the generator (one event per step; the TUI folds them live);
``diagnose_workspace`` drains it and returns the ``Diagnosis`` (``to_dict()`` = diagnose --json).

Rules and thresholds (each finding's evidence carries the numbers it was decided on)
-----------------------------------------------------------------------------------
- ``output-all-zero`` (error): an output (amplitude for complex outputs) has no nonzero element
  over the whole split.
- ``output-sparse``: nonzero fraction below ``SPARSE_NONZERO_MAX`` (0.5): error below
  ``SPARSE_ERROR_MAX`` (0.05), else warning. The old gate only caught *all*-zero output.
- ``output-constant`` (warning): an output with (relatively) zero spread, e.g. an amplitude head
  stuck at sigmoid(bias) behind a dead layer.
- ``activation-collapse`` (error): a trace's first collapse (see ``trace``): a layer below 1%
  nonzero fed by a layer above 20%; the evidence says whether it is the reassembly layer.
- ``dead-units``: layers (up to the first collapse, >= 2 channels) with dead channels: error when
  every channel of a layer is dead; info when at least ``DEAD_CHANNEL_WARN`` (50%) are (briefly
  trained ReLU networks often leave half a layer's channels silent on a small probe batch).
- ``nonfinite`` (error): NaN/Inf in the data, the inputs as fed, an activation or an output.
- ``weights-nonfinite`` (error) / ``weights-all-zero`` (error): weight health of the trace.
- ``input-drift`` / ``positions-drift`` (warning): see ``drift`` for the measures.
- ``positions-off-canvas`` (error): a split whose predicted visible fraction is below 0.5.
- ``counterfactual-recovers`` (warning): an intervention lifts an output from below 0.5 nonzero
  to above it on the probe batch; the action names it (``apply-fix:INTERVENTION``).
- ``scale-mismatch`` (error): the diffraction is fed with a scale that differs from the model's
  own intensity scale by more than a factor ``SCALE_RATIO_MAX`` (1.5); warning for a split-to-
  split normalization factor ratio outside [0.8, 1.25] is reported as ``input-drift``.
- ``intensity-as-amplitude`` (error): the stored "amplitude" is integer counts (almost every
  nonzero value an integer, and integers that are not perfect squares, which sqrt(counts) never
  gives), or max/mean beyond the data module's line.
- ``axes-swapped`` (error): the far field predicted at (y, x) explains the measured diffraction
  clearly better than at (x, y) (``geometry.axes_check``).
- ``model-kind`` (error): the workspace expected a supervised model and the model takes positions
  through a reassembly layer (a PINN), or expected a PINN and it takes none.
- ``batch-coupling`` (error): batch 1 and batch B disagree (values or batch dimension).
- ``underflow`` (warning): a layer with more than 0.1% subnormal activations.
- ``metric-degenerate``: taken from the metrics comparison cached in the session folder
  (``ptytui compare``), when it was made on the same inputs (workspace hash).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ptytui.core.events import EngineEvent, RunCancelled, RunFailed, RunFinished, RunResult
from ptytui.core.jsonable import finite_or_none, json_ready
from ptytui.diagnosis.drift import SplitDrift, split_drift
from ptytui.diagnosis.geometry import AxesCheck, SplitGeometry, axes_check, coverage_check, split_geometry
from ptytui.diagnosis.hypotheses import (
    DEAD_CHANNELS_MIN,
    REASSEMBLY_TYPES,
    BatchCouplingCheck,
    Hypothesis,
    batch_coupling_check,
    check_all,
    dead_layers,
    kernel_problems,
)
from ptytui.diagnosis.interventions import InterventionReport, primary_output_stats, run_interventions
from ptytui.errors import Cancelled, InputError
from ptytui.inputs.data import AMPLITUDE_MAX_SUSPECT, MAX_OVER_MEAN_SUSPECT
from ptytui.inputs.decisions import is_baseline_label, is_superseded_label
from ptytui.inputs.models import input_roles
from ptytui.inputs.workspace import load_workspace
from ptytui.quality.compare import COMPARISON_JSON
from ptytui.running.inference import feed_inputs, is_cancelled, resolve_intensity_scale
from ptytui.running.session import Session
from ptytui.running.trace import Trace, compare_traces, trace_model

SPARSE_NONZERO_MAX = 0.5
SPARSE_ERROR_MAX = 0.05
CONSTANT_RELATIVE_STD = 1e-5  # an output whose std is below this (relative) carries no image
DEAD_CHANNEL_WARN = 0.5
SCALE_RATIO_MAX = 1.5
INTEGRAL_FRACTION_MIN = 0.99  # share of nonzero stored values that are integers
NON_SQUARE_FRACTION_MIN = 0.05  # share of nonzero values that are integers but not squares
TRACE_SAMPLES = 16  # groups in the trace's probe batch
INTERVENTION_SAMPLES = 32  # groups re-run per intervention
BATCH_CHECK_SAMPLES = 16  # groups compared at batch 1 and batch B

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

OPTION_TEXT = {
    "skip-baseline": "skip the Baseline: compare the PINN with the reference only",
    "debug-baseline": "debug the Baseline further",
    "retrain-baseline": "retrain the Baseline with the supervised design",
    "accept-train-only": "accept train-only Baseline metrics",
    "apply-fix": "apply an input fix",
}


# ---- findings -------------------------------------------------------------------------------


def action(option: str, intervention: str | None = None) -> dict[str, Any]:
    """A decision option as findings carry it (``command`` is what ``ptytui decide`` takes)."""
    text = OPTION_TEXT.get(option, option)
    if intervention:
        text = f"{text}: {intervention}"
    return {"option": option, "intervention": intervention,
            "command": f"{option}:{intervention}" if intervention else option, "description": text}



@dataclass
class Finding:
    """One problem (or observation) with the numbers behind it and what one could do about it."""

    id: str
    severity: str  # error | warning | info
    model: str | None
    split: str | None
    layer: str | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "model": self.model, "split": self.split,
                "layer": self.layer, "summary": self.summary, "evidence": json_ready(self.evidence),
                "actions": json_ready(self.actions), "label": self.label}


# ---- events ---------------------------------------------------------------------------------


@dataclass
class DiagnosisStage(EngineEvent):
    """What the diagnosis is doing now (one line, for a status bar)."""

    stage: str
    message: str = ""


@dataclass
class CardRead(EngineEvent):
    card: Any  # the card --json dict


@dataclass
class TraceDone(EngineEvent):
    trace: Any  # the TRACE dict of trace --json


@dataclass
class PositionsMeasured(EngineEvent):
    offsets: np.ndarray  # (K, 2) [x, y] as fed, object pixels
    patch: int | None
    canvas: int | None
    predicted_visible_fraction: float | None
    observed_nonzero_fraction: float | None


@dataclass
class CounterfactualDone(EngineEvent):
    intervention: str
    nonzero_before: float | None
    nonzero_after: float | None


@dataclass
class HypothesisTested(EngineEvent):
    name: str
    test: str
    verdict: str
    evidence: dict[str, Any]


@dataclass
class FindingRaised(EngineEvent):
    finding: dict[str, Any]  # the FINDING dict of diagnose --json


@dataclass
class DiagnosisFinished(EngineEvent):
    diagnosis: "Diagnosis"
    findings: list[dict[str, Any]]
    hypotheses: list[dict[str, Any]]
    seconds: float


# ---- the diagnosis record ---------------------------------------------------------------------


@dataclass
class Diagnosis:
    """Everything one diagnosis measured and concluded."""

    workspace: str
    workspace_name: str = ""
    workspace_hash: str | None = None
    findings: list[Finding] = field(default_factory=list)
    hypotheses: list[Hypothesis] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    geometry: list[SplitGeometry] = field(default_factory=list)
    drift: list[SplitDrift] = field(default_factory=list)
    interventions: list[InterventionReport] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    batch_checks: list[BatchCouplingCheck] = field(default_factory=list)
    axes_checks: list[AxesCheck] = field(default_factory=list)
    data_checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """1 when any error finding was raised, else 0 (CLI.md exit codes)."""
        return 1 if any(f.severity == "error" for f in self.findings) else 0

    def findings_with(self, finding_id: str) -> list[Finding]:
        return [f for f in self.findings if f.id == finding_id]

    def to_dict(self, *, full_traces: bool = False) -> dict[str, Any]:
        """The ``diagnose --json`` document (workspace, findings, seconds, and what was measured)."""
        return json_ready({
            "workspace": self.workspace,
            "workspace_name": self.workspace_name,
            "workspace_hash": self.workspace_hash,
            "findings": [f.to_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
            "hypotheses": [h.to_dict() for h in self.hypotheses],
            "runs": [_run_summary(r) for r in self.runs],
            "traces": [t.to_dict() if full_traces else trace_summary(t) for t in self.traces],
            "geometry": [g.to_dict() for g in self.geometry],
            "drift": [d.to_dict() for d in self.drift],
            "interventions": [_intervention_summary(r) for r in self.interventions],
            "batch_checks": [c.to_dict() for c in self.batch_checks],
            "axes_checks": [c.to_dict() for c in self.axes_checks],
            "data_checks": self.data_checks,
            "cards": self.cards,
        })


def trace_summary(trace: Trace) -> dict[str, Any]:
    """A compact trace (no histograms): per layer path, type, nonzero fraction, mean, std, dead."""
    return {
        "model": trace.model, "split": trace.split, "n_samples": trace.n_samples,
        "positions": trace.positions,
        "first_collapse": trace.first_collapse.to_dict() if trace.first_collapse else None,
        "layers": [{"path": e.path, "type": e.type, "nonzero_fraction": e.nonzero_fraction,
                    "mean": e.output.mean if e.output.finite_count else None,
                    "std": e.output.std if e.output.finite_count else None,
                    "nan_count": e.output.nan_count, "inf_count": e.output.inf_count,
                    "dead_channels": e.dead_channels, "channels": e.channels,
                    "underflow_count": e.underflow_count}
                   for e in trace.layers],
    }


def _run_summary(run: RunResult) -> dict[str, Any]:
    d = run.to_dict()
    primary = primary_output_stats(run.outputs)
    d["output_nonzero_fraction"] = primary.nonzero_fraction if primary else None
    return d


def _intervention_summary(report: InterventionReport) -> dict[str, Any]:
    return {"model": report.model, "split": report.split, "n_samples": report.n_samples,
            "nonzero_before": report.as_fed.nonzero_fraction,
            "results": [{"intervention": r.name, "description": r.description,
                         "nonzero_after": r.nonzero_fraction,
                         "outputs": {k: {"mean": v.mean if v.finite_count else None,
                                         "std": v.std, "nonzero_fraction": v.nonzero_fraction,
                                         "nan_count": v.nan_count}
                                     for k, v in r.outputs.items()}}
                        for r in report.results]}


# ---- data checks ------------------------------------------------------------------------------


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


# ---- the run ------------------------------------------------------------------------------------


def _as_workspace(workspace):
    if hasattr(workspace, "models") and hasattr(workspace, "splits"):
        return workspace

    return load_workspace(workspace)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.3g}%"


def diagnose_events(workspace, *, cancel=None, n_groups: int | None = None, seed: int = 0,
                    trust: bool = False, batch_size: int = 64, session=None,
                    trace_samples: int = TRACE_SAMPLES,
                    intervention_samples: int = INTERVENTION_SAMPLES,
                    batch_check_samples: int = BATCH_CHECK_SAMPLES) -> Iterator[EngineEvent]:
    """Diagnose every model on every split of a workspace, yielding events as it goes.

    Yields the inference runner's events for each model x split (RunStarted, BatchDone, ...),
    then ``CardRead``, ``TraceDone``, ``PositionsMeasured``, ``CounterfactualDone``,
    ``HypothesisTested``, ``FindingRaised`` and ``DiagnosisStage`` as each is known, and ends
    with ``DiagnosisFinished(diagnosis)``. Raises ``Cancelled`` when ``cancel`` is set (checked
    between steps), ``InputError`` for bad input (a split, a model that cannot run on it).
    """

    started = time.perf_counter()
    if session is None:
        ws = _as_workspace(workspace)
        session = Session(ws, trust=trust, seed=seed, n_groups=n_groups, batch_size=batch_size)
    ws = session.workspace
    where = str(getattr(ws, "toml_path", None) or getattr(ws, "root", "workspace"))
    diagnosis = Diagnosis(workspace=where, workspace_name=getattr(ws, "name", ""))
    try:
        diagnosis.workspace_hash = ws.hash()
    except Exception:  # noqa: BLE001 - the hash is a convenience for the decision log
        diagnosis.workspace_hash = None

    def check_cancel():
        if is_cancelled(cancel):
            raise Cancelled("diagnosis")

    def raised(finding: Finding) -> FindingRaised:
        diagnosis.findings.append(finding)
        return FindingRaised(finding.model or "", finding.split or "", finding=finding.to_dict())

    split_names = list(ws.splits)
    # ---- data: each split on its own, then split against split ----------------------------
    splits = {}
    for name in split_names:
        check_cancel()
        yield DiagnosisStage("", name, stage="data", message=f"checking split {name}")
        split = session.split(name)
        splits[name] = split
        check = intensity_check(split)
        axes = axes_check(split, seed=seed)
        coverage = coverage_check(split)
        diagnosis.data_checks[name] = {"intensity": check, "coverage": coverage.to_dict(),
                                       "axes": axes.to_dict() if axes else None,
                                       "scan": split.scan.to_dict(),
                                       "normalization": split.normalization.to_dict(),
                                       "warnings": list(split.warnings)}
        if check["suspect"]:
            yield raised(Finding(
                "intensity-as-amplitude", "error", None, name, None,
                f"split {name}: the stored diffraction looks like intensity (counts), not amplitude "
                f"({check['integral_fraction']:.0%} of nonzero values are integers; max {check['max']:.4g}, "
                f"max/mean {check['max_over_mean']:.4g})", check,
                [action("debug-baseline")]))
        if split.scan.nan_count or split.scan.inf_count:
            yield raised(Finding(
                "nonfinite", "error", None, name, None,
                f"split {name}: the diffraction holds {split.scan.nan_count} NaN and "
                f"{split.scan.inf_count} Inf values", {"where": "data", **split.scan.to_dict()}))
        if axes is not None:
            diagnosis.axes_checks.append(axes)
            if axes.swapped:
                yield raised(Finding(
                    "axes-swapped", "error", None, name, None,
                    f"split {name}: x and y look exchanged: the far field predicted at (y, x) matches "
                    f"the measured diffraction with correlation {axes.correlation_swapped:.2f}, at (x, y) "
                    f"only {axes.correlation_as_stored:.2f}", axes.to_dict(),
                    [action("apply-fix", "swap-xy")]))
        if coverage.ok is False:
            yield raised(Finding(
                "object-coverage", "info", None, name, None,
                f"split {name}: the object ({coverage.object_shape[1]} x {coverage.object_shape[0]} px) "
                f"is smaller than the scan needs ({coverage.required[0]} x {coverage.required[1]} px, "
                "pty-chi's ceil(max - min + N) + 2 rule)", coverage.to_dict()))
    reference = split_names[0] if split_names else None
    for other in split_names[1:]:
        check_cancel()
        drift = split_drift(splits[reference], splits[other], seed=seed)
        diagnosis.drift.append(drift)
        moved = drift.drifted_positions
        if moved:
            evidence = {"reference_split": reference, "other_split": other}
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
            yield raised(Finding(
                "positions-drift", "warning", None, other, None,
                f"scan positions differ between {reference} and {other} ({text}): the splits cover "
                "different parts of the object", evidence))
        norm = drift.normalization
        if norm is not None and norm.drifted:
            yield raised(Finding(
                "input-drift", "warning", None, other, None,
                f"normalization factors differ between {reference} and {other} (ratio {norm.ratio:.3g}): "
                "per-split normalization hides a brightness shift", {"normalization": norm.to_dict()}))

    # ---- models -----------------------------------------------------------------------------
    for model_name, entry in ws.models.items():
        check_cancel()
        if is_superseded_label(entry.label):
            # A retrain replaced it; it stays in the workspace for comparison (ptytui compare) and
            # its old faults are answered: one info line, and no findings that would fail a gate.
            yield raised(Finding(
                "model-superseded", "info", model_name, None, None,
                f"{model_name} was replaced by a retrained model and is kept for comparison only; "
                f"not diagnosed ({entry.description or entry.label})",
                {"label": entry.label, "description": entry.description, "path": str(entry.path)},
                label=entry.label))
            continue
        yield DiagnosisStage(model_name, "", stage="load", message=f"loading {model_name}")
        loaded = session.model(model_name)
        card = loaded.card
        card_dict = card.to_dict()
        diagnosis.cards[model_name] = card_dict
        yield CardRead(model_name, "", card=card_dict)
        label = entry.label
        baseline = is_baseline_label(label)
        scale_setting = entry.intensity_scale if entry.intensity_scale is not None else "apply"
        roles = input_roles(loaded)
        pos_name = roles.get("positions")

        # -- configuration checks --
        has_reassembly = bool(card.reassembly)
        top_name = getattr(loaded.model, "name", None)
        reassembly_path = _trace_path(card.reassembly[0].path, top_name) if has_reassembly else None
        if entry.expected_kind == "supervised" and (card.takes_positions or has_reassembly):
            yield raised(Finding(
                "model-kind", "error", model_name, None, reassembly_path,
                f"{model_name} was expected to be a supervised model but takes positions"
                f"{' through a reassembly layer' if has_reassembly else ''}: a PINN-family model "
                f"(loaded from {card.loaded_from})",
                {"expected_kind": entry.expected_kind, "takes_positions": card.takes_positions,
                 "reassembly": [r.to_dict() for r in card.reassembly], "kind": card.kind,
                 "loaded_from": card.loaded_from, "fallback": card.fallback, "label": label,
                 "inputs": card_dict.get("inputs")},
                [action("retrain-baseline"), action("skip-baseline"), action("debug-baseline")]
                if baseline else [action("debug-baseline")], label=label))
        elif entry.expected_kind == "pinn" and not card.takes_positions:
            yield raised(Finding(
                "model-kind", "error", model_name, None, None,
                f"{model_name} was expected to be a PINN but takes no positions",
                {"expected_kind": entry.expected_kind, "takes_positions": False, "kind": card.kind,
                 "loaded_from": card.loaded_from, "label": label}, [], label=label))
        own_scale = loaded.intensity_scale
        fed_scale = resolve_intensity_scale(loaded, scale_setting)
        if own_scale and math.isfinite(own_scale) and own_scale > 0 and not math.isclose(own_scale, 1.0):
            ratio = fed_scale / own_scale
            if not (1 / SCALE_RATIO_MAX <= ratio <= SCALE_RATIO_MAX):
                fix = "apply-intensity-scale"
                yield raised(Finding(
                    "scale-mismatch", "error", model_name, None, None,
                    f"{model_name}'s diffraction input is scaled by {fed_scale:.4g}, but the model's "
                    f"intensity scale is {own_scale:.4g} (input off by a factor {ratio:.3g})",
                    {"intensity_scale_setting": scale_setting, "fed_scale": fed_scale,
                     "model_intensity_scale": own_scale, "ratio": ratio},
                    [action("apply-fix", fix)], label=label))

        # -- per split: run, trace, geometry, interventions --
        gridsize = session.gridsize(model_name)
        model_traces: list[Trace] = []
        model_geometry: list[SplitGeometry] = []
        observed: dict[str, float] = {}
        trace_inputs: dict[str, dict[str, np.ndarray]] = {}
        reports: dict[str, InterventionReport] = {}
        batch_check: BatchCouplingCheck | None = None
        plans = session.plan(models=[model_name])
        for plan in plans:
            check_cancel()
            split = splits.get(plan.split) or session.split(plan.split)
            grouping = session.grouping(plan.split, gridsize)
            result = None
            for event in session.run(plan, cancel=cancel):
                yield event
                if isinstance(event, RunFinished):
                    result = event.result
                elif isinstance(event, RunCancelled):
                    raise Cancelled("diagnosis")
                elif isinstance(event, RunFailed):
                    raise InputError(entry.path, f"model '{model_name}' to run on split '{plan.split}'",
                                     event.message)
            diagnosis.runs.append(result)
            yield from _output_findings(result, raised, label, baseline)
            primary = primary_output_stats(result.outputs)
            observed[plan.split] = primary.nonzero_fraction if primary is not None else math.nan

            check_cancel()
            yield DiagnosisStage(model_name, plan.split, stage="trace",
                                 message=f"tracing {model_name} on {plan.split}")
            ids = np.arange(min(trace_samples, len(grouping)))
            fed = feed_inputs(loaded, grouping.batch(split, ids, ground_truth=False), positions=plan.positions,
                              intensity_scale=plan.intensity_scale)
            trace_inputs[plan.split] = fed
            # The preview (one sample, downsampled) is of the reassembly layer, where the
            # incident's patches leave the canvas; models without one get none.
            trace = trace_model(loaded.model, fed, model_name=model_name, split=plan.split,
                                positions=plan.positions, preview=reassembly_path)
            diagnosis.traces.append(trace)
            model_traces.append(trace)
            yield TraceDone(model_name, plan.split, trace=trace.to_dict())
            yield from _trace_findings(trace, raised, label, baseline,
                                       report_weights=len(model_traces) == 1)

            geometry = split_geometry(card, split, grouping, model=model_name, positions=plan.positions)
            if geometry is not None:
                diagnosis.geometry.append(geometry)
                model_geometry.append(geometry)
                yield PositionsMeasured(
                    model_name, plan.split, offsets=geometry.offsets.reshape(-1, 2),
                    patch=geometry.canvas.patch, canvas=geometry.canvas.canvas,
                    predicted_visible_fraction=geometry.predicted_visible_fraction,
                    observed_nonzero_fraction=observed[plan.split])

            check_cancel()
            yield DiagnosisStage(model_name, plan.split, stage="interventions",
                                 message=f"re-running {model_name} on {plan.split} fed differently")
            report = run_interventions(loaded, split, grouping, model=model_name,
                                       positions=plan.positions, intensity_scale=plan.intensity_scale,
                                       n_samples=intervention_samples)
            diagnosis.interventions.append(report)
            reports[plan.split] = report
            for r in report.results:
                yield CounterfactualDone(model_name, plan.split, intervention=r.name,
                                         nonzero_before=finite_or_none(report.as_fed.nonzero_fraction),
                                         nonzero_after=finite_or_none(r.nonzero_fraction))
            if batch_check is None:
                check_cancel()
                batch_check = batch_coupling_check(loaded, split, grouping, model=model_name,
                                                   positions=plan.positions,
                                                   intensity_scale=plan.intensity_scale,
                                                   batch_size=batch_check_samples)
                diagnosis.batch_checks.append(batch_check)

        # -- across splits --
        fixes = {s: (r.recoveries()[0].name if r.recoveries() else None) for s, r in reports.items()}
        best_fix = next((f for f in fixes.values() if f), None)
        for split_name, report in reports.items():
            recovered = report.recoveries()
            if recovered:
                best = recovered[0]
                yield raised(Finding(
                    "counterfactual-recovers", "warning", model_name, split_name, None,
                    f"{model_name} on {split_name}: fed with {best.name} ({best.description}) the output "
                    f"is {_pct(best.nonzero_fraction)} nonzero instead of {_pct(report.as_fed.nonzero_fraction)}",
                    {"intervention": best.name, "nonzero_before": report.as_fed.nonzero_fraction,
                     "nonzero_after": best.nonzero_fraction, "n_samples": report.n_samples,
                     "recovering": {r.name: r.nonzero_fraction for r in recovered},
                     "all": {r.name: r.nonzero_fraction for r in report.results}},
                    [action("apply-fix", best.name)] + (
                        [action("retrain-baseline"), action("skip-baseline")] if baseline else []),
                    label=label))
        off = [g for g in model_geometry if g.off_canvas]
        if off:
            canvas = model_geometry[0].canvas
            per_split = {g.split: {"predicted_visible_fraction": g.predicted_visible_fraction,
                                   "observed_nonzero_fraction": observed.get(g.split),
                                   "hidden_patch_fraction": g.hidden_patch_fraction,
                                   **{k: v for k, v in g.offset_summary().items()}}
                         for g in model_geometry}
            worst = min(off, key=lambda g: g.predicted_visible_fraction)
            summary_parts = ", ".join(
                f"{g.split}: predicted {_pct(g.predicted_visible_fraction)} visible, observed "
                f"{_pct(observed.get(g.split))} nonzero" for g in model_geometry)
            actions = []
            if best_fix:
                actions.append(action("apply-fix", best_fix))
            if baseline:
                actions += [action("skip-baseline"), action("retrain-baseline"), action("debug-baseline")]
                if any(not g.off_canvas for g in model_geometry) or any(
                        (observed.get(g.split) or 0) > 0 for g in model_geometry):
                    actions.append(action("accept-train-only"))
            yield raised(Finding(
                "positions-off-canvas", "error", model_name, worst.split, reassembly_path or canvas.path,
                f"{model_name} is fed {worst.positions} offsets that move patches off its "
                f"{canvas.canvas} px canvas (patch {canvas.patch} px): {summary_parts}",
                {"positions": worst.positions, "patch": canvas.patch, "canvas": canvas.canvas,
                 "reassembly_layer": canvas.path,
                 "predicted_visible_fraction": {s: v["predicted_visible_fraction"] for s, v in per_split.items()},
                 "observed_nonzero_fraction": {s: v["observed_nonzero_fraction"] for s, v in per_split.items()},
                 "splits": per_split}, actions, label=label))
        # inputs as fed, split against split (a sample: the trace batches)
        names = list(trace_inputs)
        for other in names[1:]:
            drift = split_drift(splits[names[0]], splits[other], reference_inputs=trace_inputs[names[0]],
                                other_inputs=trace_inputs[other], positions_input=pos_name,
                                model=model_name, seed=seed)
            diagnosis.drift.append(drift)
            moved = [d for d in drift.drifted_inputs if not (pos_name and d.name.startswith(pos_name))]
            if moved:
                yield raised(Finding(
                    "input-drift", "warning", model_name, other, None,
                    f"{model_name}'s inputs as fed differ between {names[0]} and {other}: "
                    + ", ".join(f"{d.name} SMD {d.smd:.2f}, W/std {d.normalized_wasserstein:.2f}"
                                for d in moved),
                    {"inputs": {d.name: d.to_dict() for d in moved}}, label=label))
            comparison = compare_traces(model_traces[0], model_traces[names.index(other)])
            if comparison.first_divergence:
                diagnosis.data_checks.setdefault("trace_divergence", {})[model_name] = comparison.to_dict()
        if batch_check is not None and batch_check.coupled:
            yield raised(Finding(
                "batch-coupling", "error", model_name, batch_check.split, None,
                f"{model_name}'s outputs depend on how samples are batched: batch {batch_check.batch_size} "
                + ("changes the batch dimension " f"{batch_check.shapes_single} -> {batch_check.shapes_batched}"
                   if not batch_check.same_shapes else
                   f"differs from batch 1 by up to {batch_check.max_abs_difference:.3g}"),
                batch_check.to_dict(), [action("debug-baseline")] if baseline else [], label=label))
        # -- hypotheses --
        for hypothesis in check_all(model_name, model_traces, batch_check, model_geometry, observed):
            diagnosis.hypotheses.append(hypothesis)
            yield HypothesisTested(model_name, "", name=f"{hypothesis.name} [{model_name}]",
                                   test=hypothesis.test, verdict=hypothesis.verdict,
                                   evidence=json_ready(hypothesis.evidence))
            if hypothesis.id == "underflow" and hypothesis.verdict == "supported":
                ev = hypothesis.evidence
                yield raised(Finding(
                    "underflow", "warning", model_name, ev.get("worst_split"), ev.get("worst_layer"),
                    f"{model_name}: {ev['worst_layer_fraction']:.2%} of {ev.get('worst_layer')}'s outputs "
                    "are subnormal (nonzero but below float32's smallest normal)", ev, label=label))

    # ---- metrics: a comparison cached in the session on these same inputs (``ptytui compare``)
    for finding in _cached_metric_findings(ws, diagnosis.workspace_hash):
        yield raised(finding)

    diagnosis.findings.sort(key=lambda f: SEVERITY_ORDER.get(f.severity, 3))
    diagnosis.seconds = time.perf_counter() - started
    yield DiagnosisFinished("", "", diagnosis=diagnosis,
                            findings=[f.to_dict() for f in diagnosis.findings],
                            hypotheses=[h.to_dict() | {"name": f"{h.name} [{h.model}]"}
                                        for h in diagnosis.hypotheses],
                            seconds=diagnosis.seconds)


def _trace_path(card_path: str, top_name: str | None) -> str:
    """A card's layer path (``model/outer/layer``) as the trace names it (relative to the model)."""
    if top_name and card_path.startswith(f"{top_name}/"):
        return card_path[len(top_name) + 1:]
    return card_path


def _cached_metric_findings(ws, workspace_hash: str | None) -> list[Finding]:
    """``metric-degenerate`` findings of the session's cached comparison (same workspace hash
    only: a comparison of other inputs says nothing about these)."""
    import json  # noqa: PLC0415

    folder = getattr(ws, "session_dir", None)
    if folder is None or workspace_hash is None:
        return []
    try:

        path = Path(folder) / COMPARISON_JSON
        if not path.is_file():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ImportError, OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("workspace_hash") != workspace_hash:
        return []
    out = []
    for f in data.get("findings") or []:
        if isinstance(f, dict) and f.get("id"):
            out.append(Finding(str(f["id"]), str(f.get("severity", "warning")), f.get("model"),
                               f.get("split"), f.get("layer"), str(f.get("summary") or ""),
                               dict(f.get("evidence") or {}),
                               [_as_action(a) for a in f.get("actions") or []]))
    return out


def _as_action(value) -> dict[str, Any]:
    """An action dict from 'option', 'option:intervention' or a dict."""
    if isinstance(value, dict):
        return action(str(value.get("option", "")), value.get("intervention"))
    option, _, intervention = str(value).partition(":")
    return action(option, intervention or None)



def _output_findings(result: RunResult, raised: Callable[[Finding], FindingRaised], label, baseline
                     ) -> Iterator[FindingRaised]:
    """output-all-zero, output-sparse and nonfinite from one run's records."""
    model, split = result.model, result.split
    for name, record in result.inputs.items():
        if record.nan_count or record.inf_count:
            yield raised(Finding(
                "nonfinite", "error", model, split, name,
                f"{model} on {split}: input {name} as fed holds {record.nan_count} NaN and "
                f"{record.inf_count} Inf values", {"where": "input", "record": name,
                                                   "nan_count": record.nan_count,
                                                   "inf_count": record.inf_count}, label=label))
    nonfinite = {name: {"nan_count": r.nan_count, "inf_count": r.inf_count, "count": r.count}
                 for name, r in result.outputs.items() if r.nan_count or r.inf_count}
    if nonfinite:
        first, counts = next(iter(nonfinite.items()))
        yield raised(Finding(
            "nonfinite", "error", model, split, None,
            f"{model} on {split}: output {first} holds {counts['nan_count']} NaN and "
            f"{counts['inf_count']} Inf values of {counts['count']}"
            + (f" ({len(nonfinite) - 1} more output record(s) too)" if len(nonfinite) > 1 else ""),
            {"where": "output", "records": nonfinite}, label=label))
    for name, record in result.outputs.items():
        if not record.count:
            continue
        if name.endswith(".phase"):
            continue  # a zero amplitude already counts; a phase of exactly 0 can be legitimate
        evidence = {"record": name, "nonzero_fraction": record.nonzero_fraction,
                    "zero_count": record.zero_count, "count": record.count,
                    "mean": record.mean if record.finite_count else None, "max": record.max,
                    "n_samples": result.n_samples, "positions": result.positions}
        actions = ([action("skip-baseline"), action("debug-baseline"), action("retrain-baseline")]
                   if baseline else [])
        if record.zero_count == record.count:
            yield raised(Finding(
                "output-all-zero", "error", model, split, None,
                f"{model} on {split}: output {name} is exactly zero everywhere "
                f"({record.count} values, {result.n_samples} groups)", evidence, actions, label=label))
        elif record.nonzero_fraction < SPARSE_NONZERO_MAX:
            pass  # reported below
        elif (record.finite_count == record.count > 1 and math.isfinite(record.std)
              and record.std <= CONSTANT_RELATIVE_STD * max(1.0, abs(record.mean))):
            yield raised(Finding(
                "output-constant", "warning", model, split, None,
                f"{model} on {split}: output {name} is constant ({record.mean:.6g}, std "
                f"{record.std:.3g}): a collapsed or untrained model", evidence, actions, label=label))
        if 0 < record.nonzero_fraction < SPARSE_NONZERO_MAX:
            severity = "error" if record.nonzero_fraction < SPARSE_ERROR_MAX else "warning"
            yield raised(Finding(
                "output-sparse", severity, model, split, None,
                f"{model} on {split}: output {name} is only {_pct(record.nonzero_fraction)} nonzero "
                "(an all-zero gate would pass it)", evidence, actions, label=label))


def _trace_findings(trace: Trace, raised, label, baseline, report_weights: bool = True
                    ) -> Iterator[FindingRaised]:
    """activation-collapse, dead-units, nonfinite (activations), weights-* from one trace.

    Weights do not depend on the split, so weight findings come only with ``report_weights``
    (the first traced split of a model)."""
    model, split = trace.model, trace.split
    collapse = trace.first_collapse
    if collapse is not None:
        entry = trace.layer(collapse.path)
        at_reassembly = entry.type in REASSEMBLY_TYPES
        yield raised(Finding(
            "activation-collapse", "error", model, split, collapse.path,
            f"{model} on {split}: activations collapse at {collapse.path} ({collapse.type}"
            f"{', the reassembly layer' if at_reassembly else ''}): {_pct(collapse.upstream_nonzero_fraction)} "
            f"nonzero going in, {_pct(collapse.nonzero_fraction)} coming out",
            {**collapse.to_dict(), "reassembly": at_reassembly, "activation": entry.activation,
             "n_samples": trace.n_samples, "positions": trace.positions},
            [action("debug-baseline")] if baseline else [], label=label))
    dead = dead_layers(trace)
    fully = [row for row in dead if row["dead_channels"] == row["channels"]]
    mostly = [row for row in dead if row["fraction"] >= DEAD_CHANNEL_WARN]
    if fully or mostly:
        worst = (fully or mostly)[0]
        yield raised(Finding(
            "dead-units", "error" if fully else "info", model, split, worst["path"],
            f"{model} on {split}: {worst['dead_channels']} of {worst['channels']} channels of "
            f"{worst['path']} are never nonzero over the probe batch"
            + (f" ({len(fully)} layer(s) entirely dead)" if fully else ""),
            {"layers": (fully or mostly)[:8], "n_samples": trace.n_samples,
             "min_channels": DEAD_CHANNELS_MIN}, label=label))
    first_bad = trace.first_nonfinite()
    if first_bad is not None and not first_bad.is_input:
        yield raised(Finding(
            "nonfinite", "error", model, split, first_bad.path,
            f"{model} on {split}: the first non-finite activation is at {first_bad.path} "
            f"({first_bad.output.nan_count} NaN, {first_bad.output.inf_count} Inf)",
            {"where": "activation", "nan_count": first_bad.output.nan_count,
             "inf_count": first_bad.output.inf_count, "count": first_bad.output.count,
             "inputs": first_bad.inputs}, label=label))
    problems = kernel_problems(trace)
    if problems["nonfinite"] and report_weights:
        path = problems["nonfinite"][0]
        layer_path, _, weight = path.rpartition("/")
        w = trace.layer(layer_path).weights[weight]
        yield raised(Finding(
            "weights-nonfinite", "error", model, None, layer_path,
            f"{model}: weight {weight} of {layer_path} holds {w.stats.nan_count} NaN and "
            f"{w.stats.inf_count} Inf values" + (f" (and {len(problems['nonfinite']) - 1} more weights)"
                                                 if len(problems["nonfinite"]) > 1 else ""),
            {"weights": problems["nonfinite"][:8], **w.to_dict()}, label=label))
    if problems["all_zero"] and report_weights:
        path = problems["all_zero"][0]
        layer_path = path.rpartition("/")[0]
        yield raised(Finding(
            "weights-all-zero", "error", model, None, layer_path,
            f"{model}: kernel {path} is all zero", {"weights": problems["all_zero"][:8]}, label=label))


def diagnose_workspace(workspace, *, progress: Callable[[EngineEvent], Any] | None = None,
                       cancel=None, n_groups: int | None = None, **options) -> Diagnosis:
    """Run the whole diagnosis and return it; ``progress`` receives every event on the way."""
    diagnosis = None
    for event in diagnose_events(workspace, cancel=cancel, n_groups=n_groups, **options):
        if progress is not None:
            progress(event)
        if isinstance(event, DiagnosisFinished):
            diagnosis = event.diagnosis
    return diagnosis
