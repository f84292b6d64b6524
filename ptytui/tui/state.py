"""What the workbench screens show, built from the engine's event stream (no Textual here).

``WorkbenchState.apply(event)`` folds one engine event into plain data that the screens render;
events it does not know are counted and ignored, so a newer engine never breaks an older UI.

Events are read by class name and field name, so live engine dataclasses and events replayed
from a recording (``RecordedEvent``, for types the replay loader cannot rebuild) look alike.
Accepted events and the fields read (beyond ``model`` and ``split``):

- ``RunStarted``: n_samples, batch_size, positions, intensity_scale, device
- ``BatchDone``: done, total, inputs, outputs ({name: TensorStats}), seconds
- ``FirstPatch``: inputs, outputs ({name: ndarray, one sample, channel-last}), index
- ``BatchSizeReduced``: old, new, reason
- ``LayerHealthUpdate``: batches, records ({layer path: LayerHealth or its dict}, execution order)
- ``RunFinished``: result (RunResult); ``RunCancelled``: done; ``RunFailed``: message
- ``CardRead``: card (the ``card --json`` dict, or an object with ``to_dict()``)
- ``TraceDone``: trace (the TRACE dict of ``trace --json``), or layers + first_collapse
- ``PositionsMeasured``: offsets ((G, 2) [x, y] as fed to the model, object pixels), patch (N),
  canvas (P), predicted_visible_fraction, observed_nonzero_fraction (floats or None)
- ``FindingRaised``: finding (the FINDING dict of ``diagnose --json``) or its fields
- ``CounterfactualDone``: intervention, nonzero_before, nonzero_after (fractions)
- ``HypothesisTested``: name, test, verdict ("supported" | "rejected" | "inconclusive"), evidence
- ``DiagnosisStage``: stage, message (what the diagnosis does now, for the status line)
- ``DiagnosisFinished``: findings (optional full list), hypotheses (optional), seconds
- ``RunsPlanned``: runs ([model, split] pairs the feed will run; the status line counts them)
- ``MetricsDone``: metrics = {"rows": [{model, metric, amplitude, phase, value}],
  "frc": [{model, frequency_bin, amplitude_frc, phase_frc}], "flags": [{model, flag, message}]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ptytui.core.findings import SEVERITIES, severity_rank
from ptytui.diagnosis.verdict import Verdict, build_verdict

if TYPE_CHECKING:  # numpy and the stats record load with the first event, not the first frame
    import numpy as np

    from ptytui.core.health import LayerHealth
    from ptytui.core.stats import TensorStats


RunKey = tuple[str, str]
PARTS = ("runs", "cards", "traces", "health", "positions", "findings", "metrics", "status", "decisions")
#: The finding the diagnosis raises for a split it cannot read (the other splits still run).
UNREADABLE_SPLIT = "split-unreadable"


class RecordedEvent:
    """An event replayed from a recording whose type this version cannot rebuild as a class."""

    def __init__(self, type_name: str, data: Mapping[str, Any]):
        self.type_name = type_name
        self.data = dict(data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"RecordedEvent({self.type_name}, {sorted(self.data)})"


def event_type_name(event: object) -> str:
    """The engine's class name of an event (live or recorded)."""
    return event.type_name if isinstance(event, RecordedEvent) else type(event).__name__


def _field(event: object, name: str, default: Any = None) -> Any:
    return getattr(event, name, default)


def _as_dict(value: Any) -> Any:
    """A dict from a dict, or from an object with ``to_dict()``; None stays None."""
    if value is None or isinstance(value, Mapping):
        return value
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def _records(value: Any) -> dict[str, TensorStats]:
    """{name: TensorStats} from records or STATS dicts."""
    from ptytui.core.stats import TensorStats  # noqa: PLC0415

    out: dict[str, TensorStats] = {}
    for name, record in (value or {}).items():
        out[name] = record if isinstance(record, TensorStats) else TensorStats.from_dict(record)
    return out


@dataclass
class RunView:
    """One model x split run as the Overview shows it."""

    model: str
    split: str
    status: str = "waiting"  # waiting | running | finished | failed | cancelled
    n_samples: int = 0
    batch_size: int = 0
    positions: str | None = None
    intensity_scale: float | None = None
    device: str = ""
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    inputs: dict[str, TensorStats] = field(default_factory=dict)
    outputs: dict[str, TensorStats] = field(default_factory=dict)
    first_patch_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    first_patch_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    first_patch_index: int | None = None
    result: Any = None  # the engine's RunResult once finished (the export reuses its statistics)
    # Output nonzero fraction after each batch update the UI received (a trend, not a histogram).
    nonzero_trend: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    message: str = ""
    version: int = 0  # bumped on every change, so a panel redraws only when its run moved

    @property
    def key(self) -> RunKey:
        return (self.model, self.split)

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else 0.0

    def output_nonzero_fraction(self) -> float | None:
        """Nonzero fraction of the first amplitude-like output record (phase records excluded)."""
        for name, record in self.outputs.items():
            if not name.endswith(".phase") and record.count:
                return record.nonzero_fraction
        return None


@dataclass
class LiveHealthView:
    """Every layer's health in one model x split run over the batches streamed so far.

    ``records`` are the latest ``LayerHealthUpdate``'s (each update covers every batch before it,
    so it replaces the one before): ``core.health.LayerHealth`` by layer path, in execution
    order, ``path:part`` for a layer's other outputs and a complex output's phase.
    """

    model: str
    split: str
    batches: int = 0  # batches the records cover
    records: dict[str, LayerHealth] = field(default_factory=dict)
    updates: int = 0  # updates received for this run

    @property
    def samples(self) -> int:
        """Samples the records cover (every layer sees every sample of a batch)."""
        return max((record.samples for record in self.records.values()), default=0)

    def layers(self) -> dict[str, LayerHealth]:
        """One record per layer: its first part (its output, output 0, or a complex amplitude)."""
        return {path: record for path, record in self.records.items() if ":" not in path}


@dataclass
class PositionsView:
    """Positions one model was fed on one split, against its reassembly canvas."""

    model: str
    split: str
    offsets: np.ndarray  # (G, 2) [x, y] in object pixels, as fed
    patch: int | None
    canvas: int | None
    predicted_visible_fraction: float | None
    observed_nonzero_fraction: float | None


@dataclass
class MetricsView:
    """Metrics of each model against the ground truth (absent until the engine computes them)."""

    rows: list[dict[str, Any]]  # {model, metric, amplitude, phase, value}
    frc: dict[str, dict[str, list[float]]]  # model -> {"bins", "amplitude", "phase"}
    flags: list[dict[str, Any]]  # {model, flag, message}


@dataclass
class WorkbenchState:
    """Everything the screens show; changed only by ``apply`` on the UI thread."""

    runs: dict[RunKey, RunView] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: dict[RunKey, dict[str, Any]] = field(default_factory=dict)
    # Live layer health of each run while it streams (and after: the whole split's numbers).
    live_health: dict[RunKey, LiveHealthView] = field(default_factory=dict)
    positions: dict[RunKey, PositionsView] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    counterfactuals: list[dict[str, Any]] = field(default_factory=list)
    hypotheses: list[dict[str, Any]] = field(default_factory=list)
    metrics: MetricsView | None = None
    # The root cause, derived from findings and hypotheses when the diagnosis finishes (None
    # while it runs: a verdict on half the findings would name a symptom's cause too early).
    verdict: Verdict | None = None
    planned: list[RunKey] = field(default_factory=list)  # every model x split the feed will run
    diagnosis_seconds: float | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # Feed: idle (nothing started) | loading (started, no event yet) | running | done |
    # cancelled | failed
    feed_status: str = "idle"
    feed_error: str = ""
    stage: str = ""  # what the diagnosis is doing now (DiagnosisStage), for the status line
    events_seen: int = 0
    events_ignored: int = 0
    ignored_types: set[str] = field(default_factory=set)
    # Version of each part ("runs", "findings", ...): a screen coming back into view redraws only
    # the parts whose version moved since it last drew them. Versions only ever grow.
    versions: dict[str, int] = field(default_factory=dict)
    _tick: int = 0

    # ---- lifecycle ---------------------------------------------------------------------------
    def reset_results(self) -> None:
        """Forget everything measured (a restarted run); decisions already taken stay."""
        decisions, tick, versions = self.decisions, self._tick, self.versions
        self.__init__()  # type: ignore[misc]
        self.decisions, self._tick, self.versions = decisions, tick, versions
        self.touch(set(PARTS))

    def touch(self, parts: set[str]) -> set[str]:
        """Mark parts as changed (bump their versions); return them."""
        self._tick += 1
        for part in parts:
            self.versions[part] = self._tick
        return parts

    def end_running_runs(self, status: str, message: str = "") -> None:
        """The feed stopped (cancelled or failed): runs still running end with ``status``."""
        for run in self.runs.values():
            if run.status == "running":
                self.run(run.model, run.split)
                run.status = status
                run.message = message or run.message
        self.touch({"runs", "status"})

    # ---- folding events ----------------------------------------------------------------------
    def apply_all(self, events: Iterable[object]) -> set[str]:
        changed: set[str] = set()
        for event in events:
            changed |= self.apply(event)
        return changed

    def apply(self, event: object) -> set[str]:
        """Fold one event in; return the parts that changed ("runs", "findings", ...)."""
        self.events_seen += 1
        if self.feed_status == "loading":
            self.feed_status = "running"
        name = event_type_name(event)
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            self.events_ignored += 1
            self.ignored_types.add(name)
            return self.touch({"status"})
        return self.touch(handler(event) | {"status"})

    def run(self, model: str, split: str) -> RunView:
        """The run of model x split (created on first mention); its version is bumped."""
        key = (model, split)
        if key not in self.runs:
            self.runs[key] = RunView(model, split)
        self.runs[key].version = self._tick + 1
        return self.runs[key]

    def _on_RunStarted(self, event) -> set[str]:
        run = self.run(event.model, event.split)
        run.status = "running"
        run.n_samples = int(_field(event, "n_samples", 0) or 0)
        run.total = run.n_samples
        run.batch_size = int(_field(event, "batch_size", 0) or 0)
        run.positions = _field(event, "positions")
        run.intensity_scale = _field(event, "intensity_scale")
        run.device = _field(event, "device", "") or ""
        return {"runs"}

    def _on_BatchDone(self, event) -> set[str]:
        run = self.run(event.model, event.split)
        run.status = "running" if run.status in ("waiting", "running") else run.status
        run.done = int(event.done)
        run.total = int(event.total)
        run.inputs = _records(event.inputs)
        run.outputs = _records(event.outputs)
        run.seconds = float(_field(event, "seconds", 0.0) or 0.0)
        nonzero = run.output_nonzero_fraction()
        if nonzero is not None and math.isfinite(nonzero):
            run.nonzero_trend.append(nonzero)
        return {"runs"}

    def _on_FirstPatch(self, event) -> set[str]:
        import numpy as np  # noqa: PLC0415

        run = self.run(event.model, event.split)
        run.first_patch_inputs = {k: np.asarray(v) for k, v in (event.inputs or {}).items()}
        run.first_patch_outputs = {k: np.asarray(v) for k, v in (event.outputs or {}).items()}
        run.first_patch_index = _field(event, "index", 0)
        return {"runs"}

    def _on_LayerHealthUpdate(self, event) -> set[str]:
        from ptytui.core.health import LayerHealth  # noqa: PLC0415 - numpy loads with the first event, not the first frame

        records = {str(path): record if isinstance(record, LayerHealth) else LayerHealth.from_dict(record)
                   for path, record in (_field(event, "records") or {}).items()}
        key = (event.model, event.split)
        view = self.live_health.get(key) or LiveHealthView(event.model, event.split)
        view.batches = int(_field(event, "batches", 0) or 0)
        view.records = records
        view.updates += 1
        self.live_health[key] = view
        return {"health"}

    def _on_BatchSizeReduced(self, event) -> set[str]:
        run = self.run(event.model, event.split)
        run.batch_size = int(event.new)
        run.notes.append(f"batch size {event.old} -> {event.new}: {event.reason}")
        return {"runs"}

    def _on_RunFinished(self, event) -> set[str]:
        result = event.result
        if isinstance(result, Mapping):
            from ptytui.core.events import RunResult  # noqa: PLC0415

            result = RunResult.from_dict(dict(result))
        run = self.run(event.model, event.split)
        run.status = "finished"
        run.result = result
        run.n_samples = result.n_samples
        run.done = run.total = result.n_samples
        run.inputs = dict(result.inputs)
        run.outputs = dict(result.outputs)
        run.seconds = result.seconds
        run.batch_size = result.batch_size or run.batch_size
        run.positions = result.positions
        run.intensity_scale = result.intensity_scale
        run.notes = list(dict.fromkeys(run.notes + list(result.notes)))
        return {"runs"}

    def _on_RunCancelled(self, event) -> set[str]:
        run = self.run(event.model, event.split)
        run.status = "cancelled"
        run.done = int(_field(event, "done", run.done) or run.done)
        return {"runs"}

    def _on_RunFailed(self, event) -> set[str]:
        run = self.run(event.model, event.split)
        run.status = "failed"
        run.message = str(_field(event, "message", "failed"))
        return {"runs"}

    def _on_DiagnosisStage(self, event) -> set[str]:
        self.stage = str(_field(event, "message", "") or _field(event, "stage", "") or "")
        return {"status"}

    def _on_CardRead(self, event) -> set[str]:
        card = _as_dict(_field(event, "card"))
        if isinstance(card, Mapping):
            self.cards[event.model] = dict(card)
        return {"cards"}

    def _on_TraceDone(self, event) -> set[str]:
        raw = _field(event, "trace")
        trace = _as_dict(raw)
        if not isinstance(trace, Mapping):
            trace = {"model": event.model, "split": event.split,
                     "layers": _field(event, "layers", []) or [],
                     "first_collapse": _field(event, "first_collapse")}
        trace = dict(trace)
        trace["layers"] = [dict(layer) for layer in trace.get("layers") or []]
        # The engine's Trace carries one preview (one sample of one layer) beside to_dict().
        preview = getattr(raw, "preview", None) if raw is not None and not isinstance(raw, Mapping) \
            else trace.pop("preview", None)
        preview = _as_preview(preview)
        if preview is not None:
            path, image = preview
            for layer in trace["layers"]:
                if layer.get("path") == path:
                    layer["preview"] = image
        model = trace.get("model") or event.model
        split = trace.get("split") or event.split
        self.traces[(model, split)] = trace
        return {"traces"}

    def _on_PositionsMeasured(self, event) -> set[str]:
        import numpy as np  # noqa: PLC0415

        geometry = _field(event, "geometry")
        if geometry is not None and not isinstance(geometry, Mapping):
            # The engine's SplitGeometry: offsets (G, C, 2), canvas.patch / canvas.canvas.
            offsets = np.asarray(geometry.offsets, dtype=np.float64)
            patch, canvas = geometry.canvas.patch, geometry.canvas.canvas
            predicted = geometry.predicted_visible_fraction
        else:
            offsets = np.asarray(_field(event, "offsets", np.zeros((0, 2))), dtype=np.float64)
            patch, canvas = _field(event, "patch"), _field(event, "canvas")
            predicted = _field(event, "predicted_visible_fraction")
        offsets = offsets.reshape(-1, 2) if offsets.size else np.zeros((0, 2))
        observed = _field(event, "observed_nonzero_fraction")
        if observed is None and (event.model, event.split) in self.runs:
            observed = self.runs[(event.model, event.split)].output_nonzero_fraction()
        self.positions[(event.model, event.split)] = PositionsView(
            model=event.model, split=event.split, offsets=offsets, patch=patch, canvas=canvas,
            predicted_visible_fraction=predicted, observed_nonzero_fraction=observed)
        return {"positions"}

    _on_GeometryMeasured = _on_PositionsMeasured

    def _on_FindingRaised(self, event) -> set[str]:
        finding = _as_dict(_field(event, "finding"))
        if not isinstance(finding, Mapping):
            finding = {key: _field(event, key) for key in
                       ("id", "severity", "model", "split", "layer", "summary", "evidence", "actions")}
        self._add_finding(dict(finding))
        return {"findings"}

    def _add_finding(self, finding: dict[str, Any]) -> None:
        finding.setdefault("severity", "info")
        finding.setdefault("evidence", {})
        finding.setdefault("actions", [])
        identity = (finding.get("id"), finding.get("model"), finding.get("split"), finding.get("layer"))
        self.findings = [f for f in self.findings
                         if (f.get("id"), f.get("model"), f.get("split"), f.get("layer")) != identity]
        self.findings.append(finding)
        # Stable sort: severity first, arrival order within a severity.
        self.findings.sort(key=lambda f: severity_rank(f.get("severity")))
        self.verdict = None  # a finding after the end (a replay out of order) voids the verdict
        if finding.get("id") == "counterfactual-recovers":
            evidence = finding.get("evidence") or {}
            self._add_counterfactual({
                "model": finding.get("model"), "split": finding.get("split"),
                "intervention": evidence.get("intervention"),
                "nonzero_before": evidence.get("nonzero_before", evidence.get("before")),
                "nonzero_after": evidence.get("nonzero_after", evidence.get("after")),
                "source": "finding",
            })

    def _add_counterfactual(self, row: dict[str, Any]) -> None:
        """Add a re-run's result; the same model x split x intervention again replaces it in place."""
        identity = (row.get("model"), row.get("split"), row.get("intervention"))
        for i, existing in enumerate(self.counterfactuals):
            if (existing.get("model"), existing.get("split"), existing.get("intervention")) == identity:
                self.counterfactuals[i] = row
                return
        self.counterfactuals.append(row)

    def _on_CounterfactualDone(self, event) -> set[str]:
        self._add_counterfactual({
            "model": event.model, "split": event.split,
            "intervention": _field(event, "intervention"),
            "nonzero_before": _field(event, "nonzero_before"),
            "nonzero_after": _field(event, "nonzero_after"),
            "invalid": _field(event, "invalid"),
            "source": "event",
        })
        return {"findings"}

    def _on_HypothesisTested(self, event) -> set[str]:
        self._add_hypothesis({key: _field(event, key) for key in ("name", "test", "verdict", "evidence")})
        return {"findings"}

    def _add_hypothesis(self, hypothesis: Mapping[str, Any]) -> None:
        hypothesis = dict(hypothesis)
        hypothesis["name"] = hypothesis.get("name") or hypothesis.get("id") or hypothesis.get("hypothesis")
        self.hypotheses = [h for h in self.hypotheses if h.get("name") != hypothesis["name"]]
        self.hypotheses.append(hypothesis)

    def _on_DiagnosisFinished(self, event) -> set[str]:
        findings = _field(event, "findings")
        if findings is not None:
            self.findings = []
            self.counterfactuals = [r for r in self.counterfactuals if r.get("source") == "event"]
            for finding in findings:
                self._add_finding(dict(_as_dict(finding)))
        for hypothesis in _field(event, "hypotheses", None) or []:
            self._add_hypothesis(_as_dict(hypothesis))
        seconds = _field(event, "seconds")
        self.diagnosis_seconds = float(seconds) if seconds is not None else None
        # The same function as `diagnose` on the same finding dicts, so the workbench and the
        # headless diagnosis name the same cause; indexes refer to self.findings.
        self.verdict = build_verdict(self.findings, self.hypotheses)
        return {"findings"}

    def _on_RunsPlanned(self, event) -> set[str]:
        self.planned = [(str(model), str(split)) for model, split in _field(event, "runs", []) or []]
        for model, split in self.planned:
            self.run(model, split)
        return {"runs"}

    def _on_MetricsDone(self, event) -> set[str]:
        metrics = _as_dict(_field(event, "metrics")) or {}
        frc: dict[str, dict[str, list[float]]] = {}
        for row in metrics.get("frc", []):
            curve = frc.setdefault(str(row["model"]), {"bins": [], "amplitude": [], "phase": []})
            curve["bins"].append(float(row["frequency_bin"]))
            curve["amplitude"].append(_float_or_nan(row.get("amplitude_frc")))
            curve["phase"].append(_float_or_nan(row.get("phase_frc")))
        self.metrics = MetricsView(rows=[dict(r) for r in metrics.get("rows", [])], frc=frc,
                                   flags=[dict(f) for f in metrics.get("flags", [])])
        return {"metrics"}

    # ---- queries the screens use --------------------------------------------------------------
    def models(self) -> list[str]:
        """Model names in the order they first appeared (runs, then cards, then traces)."""
        names = [m for m, _ in self.runs] + list(self.cards) + [m for m, _ in self.traces]
        return list(dict.fromkeys(names))

    def splits(self) -> list[str]:
        names = [s for _, s in self.runs] + [s for _, s in self.traces] + [s for _, s in self.positions]
        return list(dict.fromkeys(names))

    def load_decisions(self, decisions: Iterable[Mapping[str, Any]]) -> set[str]:
        """Decisions read from the session's log (oldest first): the last one is current."""
        self.decisions = [dict(d) for d in decisions]
        return self.touch({"decisions"})

    @property
    def current_decision(self) -> dict[str, Any] | None:
        return self.decisions[-1] if self.decisions else None

    def input_errors(self) -> list[str]:
        """One line per input the engine could not read (a bad split), to show whole."""
        return [str(f.get("summary", "")) for f in self.findings if f.get("id") == UNREADABLE_SPLIT]

    def failing_run(self) -> RunKey | None:
        """The run the verdict's first cause names (its model on the split where it shows worst),
        else the first failed run or the run with the emptiest output."""
        if self.verdict is not None and self.verdict.causes:
            cause = self.verdict.causes[0]
            keys = [k for k in self.runs if k[0] == cause.model]
            if (cause.model, cause.split) in self.runs:
                return (cause.model, cause.split)
            if keys:
                return keys[0]
        failed = [k for k, r in self.runs.items() if r.status == "failed"]
        if failed:
            return failed[0]
        measured = [(r.output_nonzero_fraction(), k) for k, r in self.runs.items()
                    if r.output_nonzero_fraction() is not None]
        low = min(measured, default=None)
        return low[1] if low is not None and low[0] < 0.5 else None

    def severity_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            counts[finding.get("severity", "info")] = counts.get(finding.get("severity", "info"), 0) + 1
        return counts

    def summary_line(self) -> str:
        """One line for the status bar: what the engine is doing or has found."""
        if self.feed_status == "idle":
            return "no run yet: press r to run the workspace"
        if self.feed_status == "loading":
            return "loading TensorFlow and the models... (the first numbers appear when a run starts)"
        running = [r for r in self.runs.values() if r.status == "running"]
        finished = sum(r.status == "finished" for r in self.runs.values())
        planned = len(set(self.planned) | set(self.runs))
        counts = self.severity_counts()
        findings = (f"{counts['error']} error, {counts['warning']} warning, {counts['info']} info"
                    if self.findings else "no findings yet")
        if self.feed_status == "running":
            if running:
                run = running[-1]
                where = f"running {run.model} x {run.split} {run.done}/{run.total}"
            else:
                where = f"diagnosing: {self.stage}" if self.stage else "diagnosing"
            return f"{where} · {finished}/{planned} runs done · {findings}"
        if self.feed_status == "cancelled":
            return f"cancelled · {finished}/{planned} runs done · press r to run again"
        if self.feed_status == "failed":
            return f"engine error: {self.feed_error} · press r to retry"
        errors = self.input_errors()
        unread = f" · {len(errors)} input unreadable: " + "; ".join(errors) if errors else ""
        return f"done · {finished}/{planned} runs · {findings}{unread}"


def _as_preview(preview: Any) -> tuple[str, np.ndarray] | None:
    """(layer path, 2-D real image) of a layer preview (object with path/image, or a dict)."""
    if preview is None:
        return None
    path = preview.get("path") if isinstance(preview, Mapping) else getattr(preview, "path", None)
    image = preview.get("image") if isinstance(preview, Mapping) else getattr(preview, "image", None)
    if path is None or image is None:
        return None
    import numpy as np  # noqa: PLC0415

    image = np.asarray(image)
    return str(path), (np.abs(image) if np.iscomplexobj(image) else image.astype(np.float64))


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
