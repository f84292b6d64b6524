"""The diagnosis orchestrator: measure (runs, traces, geometry, drift, counterfactuals, hypothesis
tests), turn the measurements into findings (``diagnosis.findings``), and stream it all as events.

``diagnose_events`` is the generator (one event per step; the TUI folds them live);
``diagnose_workspace`` drains it and returns the ``Diagnosis`` (``to_dict()`` = diagnose --json).
Every rule and threshold lives in ``diagnosis.findings``; this module only decides what is
measured, in which order, and on which batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ptytui.core.events import (
    CardRead,
    CounterfactualDone,
    DiagnosisFinished,
    DiagnosisStage,
    EngineEvent,
    FindingRaised,
    HypothesisTested,
    PositionsMeasured,
    RunCancelled,
    RunFailed,
    RunFinished,
    TraceDone,
)
from ptytui.core.findings import Finding, severity_rank
from ptytui.core.jsonable import finite_or_none, json_ready
from ptytui.diagnosis import findings as rules
from ptytui.diagnosis.batch_coupling import coupling_report
from ptytui.diagnosis.data_checks import intensity_check
from ptytui.diagnosis.drift import split_drift
from ptytui.diagnosis.geometry import SplitGeometry, axes_check, coverage_check, split_geometry
from ptytui.diagnosis.hypotheses import BatchCouplingCheck, check_all
from ptytui.diagnosis.interventions import InterventionReport, primary_output_stats, run_interventions
from ptytui.diagnosis.record import Diagnosis
from ptytui.diagnosis.sample_collapse import sample_collapse_findings
from ptytui.errors import Cancelled, InputError, one_line
from ptytui.inputs.decisions import is_baseline_label, is_superseded_label
from ptytui.inputs.models import input_roles
from ptytui.inputs.workspace import load_workspace
from ptytui.running.inference import feed_inputs, is_cancelled, resolve_intensity_scale
from ptytui.running.session import Session
from ptytui.running.trace import Trace, compare_traces, trace_model

TRACE_SAMPLES = 16  # groups in the trace's probe batch
INTERVENTION_SAMPLES = 32  # groups re-run per intervention
BATCH_CHECK_SAMPLES = 16  # groups compared at batch 1 and batch B


@dataclass
class _Pass:
    """One diagnosis in progress: the session, what it measured so far, and how to stop."""

    session: Session
    diagnosis: Diagnosis
    cancel: Any
    seed: int
    trace_samples: int
    intervention_samples: int
    batch_check_samples: int
    splits: dict[str, Any] = field(default_factory=dict)
    on_bad_split: str = "raise"
    unreadable: set[str] = field(default_factory=set)  # splits skipped with a split-unreadable finding

    def check_cancel(self) -> None:
        if is_cancelled(self.cancel):
            raise Cancelled("diagnosis")

    def raised(self, findings) -> Iterator[FindingRaised]:
        """Record findings (a Finding, None or a list) and yield their events."""
        if findings is None:
            return
        for finding in findings if isinstance(findings, list) else [findings]:
            self.diagnosis.findings.append(finding)
            yield FindingRaised(finding.model or "", finding.split or "", finding=finding.to_dict())


@dataclass
class _ModelPass:
    """What one model's diagnosis collects across its splits."""

    name: str
    loaded: Any
    label: str | None
    baseline: bool
    reassembly_path: str | None
    traces: list[Trace] = field(default_factory=list)
    geometry: list[SplitGeometry] = field(default_factory=list)
    observed: dict[str, float] = field(default_factory=dict)
    trace_inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    reports: dict[str, InterventionReport] = field(default_factory=dict)
    batch_check: BatchCouplingCheck | None = None


def diagnose_events(workspace, *, cancel=None, n_groups: int | None = None, seed: int = 0,
                    trust: bool = False, batch_size: int | None = None, session=None,
                    trace_samples: int = TRACE_SAMPLES,
                    intervention_samples: int = INTERVENTION_SAMPLES,
                    batch_check_samples: int = BATCH_CHECK_SAMPLES,
                    on_bad_split: str = "raise") -> Iterator[EngineEvent]:
    """Diagnose every model on every split of a workspace, yielding events as it goes.

    Yields the inference runner's events for each model x split (RunStarted, BatchDone, ...),
    then ``CardRead``, ``TraceDone``, ``PositionsMeasured``, ``CounterfactualDone``,
    ``HypothesisTested``, ``FindingRaised`` and ``DiagnosisStage`` as each is known, and ends
    with ``DiagnosisFinished(diagnosis)``. Raises ``Cancelled`` when ``cancel`` is set (checked
    between steps), ``InputError`` for bad input (a split, a model that cannot run on it).
    A given ``session`` carries its own trust, seed, groups and batch size; the keyword
    arguments of the same names apply only when the diagnosis opens the workspace itself.
    ``on_bad_split``: "raise" (the CLI: a split that cannot be read is bad input, exit 2) or
    "report" (the workbench: a ``split-unreadable`` error finding with the one-line message, and
    the diagnosis goes on with the readable splits).
    """
    started = time.perf_counter()
    if session is None:
        ws = workspace if hasattr(workspace, "models") and hasattr(workspace, "splits") else load_workspace(workspace)
        session = Session(ws, trust=trust, seed=seed, n_groups=n_groups, batch_size=batch_size)
    ws = session.workspace
    where = str(getattr(ws, "toml_path", None) or getattr(ws, "root", "workspace"))
    diagnosis = Diagnosis(workspace=where, workspace_name=getattr(ws, "name", ""))
    try:
        diagnosis.workspace_hash = ws.hash()
    except Exception:  # noqa: BLE001 - the hash is a convenience for the decision log
        diagnosis.workspace_hash = None
    run = _Pass(session, diagnosis, cancel, session.seed, trace_samples, intervention_samples,
                batch_check_samples, on_bad_split=on_bad_split)

    yield from _check_data(run)
    for model_name in ws.models:
        yield from _diagnose_model(run, model_name)
    yield from run.raised(rules.cached_metric_findings(ws, diagnosis.workspace_hash))

    diagnosis.findings.sort(key=lambda f: severity_rank(f.severity))
    diagnosis.seconds = time.perf_counter() - started
    yield DiagnosisFinished("", "", diagnosis=diagnosis,
                            findings=[f.to_dict() for f in diagnosis.findings],
                            hypotheses=[h.to_dict() | {"name": f"{h.name} [{h.model}]"}
                                        for h in diagnosis.hypotheses],
                            seconds=diagnosis.seconds)


def _check_data(run: _Pass) -> Iterator[EngineEvent]:
    """Each split on its own (intensity, non-finite values, axes, coverage), then split against
    split (positions and normalization drift)."""
    names = list(run.session.workspace.splits)
    for name in list(names):
        run.check_cancel()
        yield DiagnosisStage("", name, stage="data", message=f"checking split {name}")
        try:
            split = run.session.split(name)
        except InputError as exc:
            if run.on_bad_split != "report":
                raise
            names.remove(name)
            run.unreadable.add(name)
            yield from run.raised(Finding("split-unreadable", "error", None, name, None,
                                          f"split {name} skipped: {one_line(exc)}",
                                          evidence={"split": name}))
            continue
        run.splits[name] = split
        intensity = intensity_check(split)
        axes = axes_check(split, seed=run.seed)
        coverage = coverage_check(split)
        run.diagnosis.data_checks[name] = {"intensity": intensity, "coverage": coverage.to_dict(),
                                           "axes": axes.to_dict() if axes else None,
                                           "scan": split.scan.to_dict(),
                                           "normalization": split.normalization.to_dict(),
                                           "warnings": list(split.warnings)}
        if axes is not None:
            run.diagnosis.axes_checks.append(axes)
        yield from run.raised(rules.data_findings(name, split, intensity, axes, coverage))
    for other in names[1:]:
        run.check_cancel()
        drift = split_drift(run.splits[names[0]], run.splits[other], seed=run.seed)
        run.diagnosis.drift.append(drift)
        yield from run.raised(rules.split_drift_findings(names[0], other, drift))


def _diagnose_model(run: _Pass, model_name: str) -> Iterator[EngineEvent]:
    """One model: its card and configuration, every split (run, trace, geometry,
    counterfactuals), then what only shows across splits, and the incident's hypotheses."""
    session, diagnosis = run.session, run.diagnosis
    entry = session.workspace.models[model_name]
    run.check_cancel()
    if is_superseded_label(entry.label):
        # A retrain replaced it; it stays in the workspace for comparison (ptytui compare) and
        # its old faults are answered: one info line, and no findings that would fail a gate.
        yield from run.raised(Finding(
            "model-superseded", "info", model_name, None, None,
            f"{model_name} was replaced by a retrained model and is kept for comparison only; "
            f"not diagnosed ({entry.description or entry.label})",
            {"label": entry.label, "description": entry.description, "path": str(entry.path)},
            label=entry.label))
        return
    yield DiagnosisStage(model_name, "", stage="load", message=f"loading {model_name}")
    loaded = session.model(model_name)
    card = loaded.card
    card_dict = card.to_dict()
    diagnosis.cards[model_name] = card_dict
    yield CardRead(model_name, "", card=card_dict)
    top_name = getattr(loaded.model, "name", None)
    reassembly_path = _trace_path(card.reassembly[0].path, top_name) if card.reassembly else None
    model = _ModelPass(model_name, loaded, entry.label, is_baseline_label(entry.label), reassembly_path)

    yield from run.raised(rules.model_kind_finding(model_name, entry, card, card_dict, reassembly_path,
                                                   model.baseline))
    setting = entry.intensity_scale if entry.intensity_scale is not None else "apply"
    yield from run.raised(rules.scale_finding(model_name, loaded.intensity_scale,
                                              resolve_intensity_scale(loaded, setting), setting, model.label))
    for plan in session.plan(models=[model_name]):
        if plan.split not in run.unreadable:
            yield from _diagnose_split(run, model, plan)
    yield from _across_splits(run, model)
    yield from _hypotheses(run, model)


def _diagnose_split(run: _Pass, model: _ModelPass, plan) -> Iterator[EngineEvent]:
    """One model on one split: the streamed run, a probe trace, the positions against the
    canvas, counterfactual re-runs, and (once per model) the batch-coupling check."""
    session, diagnosis, name = run.session, run.diagnosis, model.name
    run.check_cancel()
    split = run.splits.get(plan.split) or session.split(plan.split)
    grouping = session.grouping(plan.split, session.gridsize(name))
    result = yield from _streamed_run(run, plan, session.workspace.models[name].path)
    diagnosis.runs.append(result)
    yield from run.raised(rules.output_findings(result, model.label, model.baseline))
    yield from run.raised(sample_collapse_findings(name, plan.split, result.layer_health, result.n_samples, label=model.label))
    primary = primary_output_stats(result.outputs)
    model.observed[plan.split] = primary.nonzero_fraction if primary is not None else math.nan

    run.check_cancel()
    yield DiagnosisStage(name, plan.split, stage="trace", message=f"tracing {name} on {plan.split}")
    ids = np.arange(min(run.trace_samples, len(grouping)))
    fed = feed_inputs(model.loaded, grouping.batch(split, ids, ground_truth=False), positions=plan.positions,
                      intensity_scale=plan.intensity_scale)
    model.trace_inputs[plan.split] = fed
    # The preview (one sample, downsampled) is of the reassembly layer, where the incident's
    # patches leave the canvas; models without one get none.
    trace = trace_model(model.loaded.model, fed, model_name=name, split=plan.split,
                        positions=plan.positions, preview=model.reassembly_path)
    diagnosis.traces.append(trace)
    model.traces.append(trace)
    yield TraceDone(name, plan.split, trace=trace.to_dict())
    yield from run.raised(rules.trace_findings(trace, model.label, model.baseline,
                                               report_weights=len(model.traces) == 1, live=result.layer_health))

    geometry = split_geometry(model.loaded.card, split, grouping, model=name, positions=plan.positions,
                              batch_size=result.batch_size)
    if geometry is not None:
        diagnosis.geometry.append(geometry)
        model.geometry.append(geometry)
        yield PositionsMeasured(
            name, plan.split, offsets=geometry.offsets.reshape(-1, 2),
            patch=geometry.canvas.patch, canvas=geometry.canvas.canvas,
            predicted_visible_fraction=geometry.predicted_visible_fraction,
            observed_nonzero_fraction=model.observed[plan.split])

    run.check_cancel()
    yield DiagnosisStage(name, plan.split, stage="interventions",
                         message=f"re-running {name} on {plan.split} fed differently")
    report = run_interventions(model.loaded, split, grouping, model=name, positions=plan.positions,
                               intensity_scale=plan.intensity_scale, n_samples=run.intervention_samples)
    diagnosis.interventions.append(report)
    model.reports[plan.split] = report
    for r in report.results:
        yield CounterfactualDone(name, plan.split, intervention=r.name,
                                 nonzero_before=finite_or_none(report.as_fed.nonzero_fraction),
                                 nonzero_after=finite_or_none(r.nonzero_fraction),
                                 invalid=r.invalid_reason or report.as_fed.invalid_reason)
    run.check_cancel()
    coupling = coupling_report(session, plan, card=model.loaded.card)  # at the batch sizes that matter
    yield from run.raised([Finding(found["id"], found["severity"], name, found["split"], None, found["summary"],
                                   found["evidence"], [], label=model.label) for found in coupling.findings])
    if model.batch_check is None and coupling.check() is not None:
        model.batch_check = coupling.check()
        diagnosis.batch_checks.append(model.batch_check)


def _streamed_run(run: _Pass, plan, model_path):
    """Stream one planned run, passing its events on; return its RunResult."""
    result = None
    for event in run.session.run(plan, cancel=run.cancel):
        yield event
        if isinstance(event, RunFinished):
            result = event.result
        elif isinstance(event, RunCancelled):
            raise Cancelled("diagnosis")
        elif isinstance(event, RunFailed):
            raise InputError(model_path, f"model '{plan.model}' to run on split '{plan.split}'", event.message)
    return result


def _across_splits(run: _Pass, model: _ModelPass) -> Iterator[EngineEvent]:
    """What only shows across a model's splits: counterfactual recoveries, positions off the
    canvas, inputs as fed drifting between splits (on the trace batches), batch coupling."""
    name = model.name
    yield from run.raised(rules.counterfactual_findings(name, model.reports, model.label, model.baseline))
    yield from run.raised(rules.off_canvas_finding(name, model.geometry, model.observed,
                                                   rules.best_fix(model.reports), model.reassembly_path,
                                                   model.label, model.baseline))
    names = list(model.trace_inputs)
    pos_name = input_roles(model.loaded).get("positions")
    for other in names[1:]:
        drift = split_drift(run.splits[names[0]], run.splits[other],
                            reference_inputs=model.trace_inputs[names[0]],
                            other_inputs=model.trace_inputs[other], positions_input=pos_name,
                            model=name, seed=run.seed)
        run.diagnosis.drift.append(drift)
        moved = [d for d in drift.drifted_inputs if not (pos_name and d.name.startswith(pos_name))]
        yield from run.raised(rules.input_drift_finding(name, names[0], other, moved, model.label))
        comparison = compare_traces(model.traces[0], model.traces[names.index(other)])
        if comparison.first_divergence:
            run.diagnosis.data_checks.setdefault("trace_divergence", {})[name] = comparison.to_dict()


def _hypotheses(run: _Pass, model: _ModelPass) -> Iterator[EngineEvent]:
    """The incident report's hypotheses, each tested and given a verdict."""
    for hypothesis in check_all(model.name, model.traces, model.batch_check, model.geometry, model.observed):
        run.diagnosis.hypotheses.append(hypothesis)
        yield HypothesisTested(model.name, "", name=f"{hypothesis.name} [{model.name}]",
                               test=hypothesis.test, verdict=hypothesis.verdict,
                               evidence=json_ready(hypothesis.evidence))
        yield from run.raised(rules.underflow_finding(model.name, hypothesis, model.label))


def _trace_path(card_path: str, top_name: str | None) -> str:
    """A card's layer path (``model/outer/layer``) as the trace names it (relative to the model)."""
    if top_name and card_path.startswith(f"{top_name}/"):
        return card_path[len(top_name) + 1:]
    return card_path


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
