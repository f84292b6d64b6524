"""The root-cause verdict: which measured mechanism explains the symptoms, the chain from cause to
symptoms with the numbers that prove each link, what was ruled out and why, and the fixes ranked
by evidence.

A finding is either a *cause* (a mechanism: positions off the canvas, a wrong input scale, NaN
weights, a dead layer, swapped axes, ...) or a *symptom* (what the output shows: all zero,
sparse, constant, a collapse inside the network). Symptoms point to the causes of their model (or
of their split, for causes in the data). A cause whose prediction can be checked (the geometry
predicts a visible fraction) is named only when the prediction matches the observation within
``PREDICTION_TOLERANCE``; otherwise it is ruled out with the two numbers. Error symptoms no cause
explains make the verdict "unexplained": it never guesses.

Works on the JSON form of findings and hypotheses (``diagnose --json``), so the CLI, a saved
``diagnosis.json``, the export and a replayed workbench all derive the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ptytui.core.findings import severity_rank
from ptytui.core.thresholds import THRESHOLDS

#: Findings that name a mechanism. The order is the order of precedence in the headline.
CAUSE_IDS = (
    "split-unreadable",
    "positions-off-canvas",
    "output-count-mismatch",
    "batch-coupling",
    "scale-mismatch",
    "intensity-as-amplitude",
    "axes-swapped",
    "weights-nonfinite",
    "weights-all-zero",
    "dead-units",
    "nonfinite",
    "model-kind",
)
#: Findings that describe what the output shows; they point to a cause.
#: A predicted fraction holds within this of the observed one (the geometry's tolerance too).
PREDICTION_TOLERANCE = THRESHOLDS.prediction_tolerance

SYMPTOM_IDS = (
    "output-all-zero",
    "output-sparse",
    "output-constant",
    "activation-collapse",
    "sample-collapse",
    "nonfinite",
    "counterfactual-recovers",
    "metric-degenerate",
    "underflow",
)
#: "model-kind" explains why a model was fed as it was; next to another cause of the same model
#: it is that cause's context rather than a second cause.
CONTEXT_IDS = ("model-kind",)


def _is_cause(finding: Mapping[str, Any]) -> bool:
    fid = finding.get("id")
    if fid == "nonfinite":  # NaN in the data or the inputs as fed is a cause; in outputs, a symptom
        return (finding.get("evidence") or {}).get("where") in ("data", "input")
    if fid == "dead-units":
        return finding.get("severity") == "error"  # a layer entirely dead; half-silent ones are info
    return fid in CAUSE_IDS and finding.get("severity") == "error"


def _is_symptom(finding: Mapping[str, Any]) -> bool:
    return finding.get("id") in SYMPTOM_IDS and not _is_cause(finding)


@dataclass
class Link:
    """One step from cause to symptom, with the numbers that prove it."""

    text: str
    finding: int | None = None  # index into the diagnosis's findings
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "finding": self.finding, "numbers": self.numbers}


@dataclass
class Fix:
    """A decision option, ranked by the evidence behind it (a measured recovery first)."""

    command: str
    description: str
    evidence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "description": self.description, "evidence": self.evidence}


@dataclass
class Cause:
    """A mechanism that explains symptoms: its finding, the chain, the prediction check, fixes."""

    id: str
    model: str | None
    split: str | None
    summary: str
    finding: int
    chain: list[Link] = field(default_factory=list)
    symptoms: list[int] = field(default_factory=list)
    prediction: dict[str, Any] | None = None
    fixes: list[Fix] = field(default_factory=list)
    also: list[int] = field(default_factory=list)  # the same cause's findings on other splits

    also_splits: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "split": self.split, "summary": self.summary,
                "finding": self.finding, "also": self.also,
                "chain": [link.to_dict() for link in self.chain],
                "symptoms": self.symptoms, "prediction": self.prediction,
                "fixes": [fix.to_dict() for fix in self.fixes]}


@dataclass
class Verdict:
    """The diagnosis's conclusion: ``status`` is healthy, explained, several-causes or unexplained."""

    status: str
    headline: str
    causes: list[Cause] = field(default_factory=list)
    ruled_out: list[dict[str, Any]] = field(default_factory=list)
    unexplained: list[int] = field(default_factory=list)
    standalone: list[int] = field(default_factory=list)

    def cause_of(self, finding_index: int) -> int | None:
        """The index of the cause a finding is a symptom (or the finding) of, else None."""
        for i, cause in enumerate(self.causes):
            if finding_index in (cause.finding, *cause.also, *cause.symptoms):
                return i
            if any(link.finding == finding_index for link in cause.chain):
                return i
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "headline": self.headline,
                "causes": [c.to_dict() for c in self.causes], "ruled_out": self.ruled_out,
                "unexplained": self.unexplained, "standalone": self.standalone}


def build_verdict(findings: list[Mapping[str, Any]], hypotheses: Iterable[Mapping[str, Any]] = ()) -> Verdict:
    """The verdict of a diagnosis from its findings and hypotheses (``diagnose --json`` dicts)."""
    hypotheses = list(hypotheses)
    ruled_out = [_ruled_out_hypothesis(h) for h in hypotheses if h.get("verdict") == "rejected"]
    causes: list[Cause] = []
    for i, f in enumerate(findings):
        if not _is_cause(f):
            continue
        prediction = _prediction_check(f)
        if prediction is not None and not prediction["matches"]:
            ruled_out.append({"model": f.get("model"), "name": f.get("id"), "finding": i,
                              "why": "its prediction does not match the observation: " + prediction["text"]})
            continue
        same = next((c for c in causes if (c.id, c.model) == (f.get("id"), f.get("model"))), None)
        if same is not None:  # one mechanism seen on several splits is one cause
            same.also.append(i)
            if f.get("split"):
                same.also_splits.append(f["split"])
            continue
        causes.append(Cause(str(f["id"]), f.get("model"), f.get("split"), str(f.get("summary", "")), i,
                            prediction=prediction))
    causes = _fold_context(causes, findings)
    for cause in causes:
        cause.symptoms = [i for i, f in enumerate(findings) if _is_symptom(f) and _explains(cause, f)]
        cause.chain = _chain(cause, findings)
        cause.fixes = _fixes(cause, findings)
    causes.sort(key=lambda c: CAUSE_IDS.index(c.id) if c.id in CAUSE_IDS else len(CAUSE_IDS))
    explained = {i for c in causes for i in (c.finding, *c.also, *c.symptoms)} | {
        link.finding for c in causes for link in c.chain if link.finding is not None}
    unexplained = [i for i, f in enumerate(findings)
                   if i not in explained and _is_symptom(f) and f.get("severity") == "error"]
    standalone = [i for i, f in enumerate(findings) if i not in explained and i not in unexplained]
    status, headline = _headline(causes, unexplained, findings, ruled_out)
    return Verdict(status, headline, causes, ruled_out, unexplained, standalone)


# ---- the pieces ---------------------------------------------------------------------------------


def _ruled_out_hypothesis(h: Mapping[str, Any]) -> dict[str, Any]:
    return {"model": h.get("model"), "name": h.get("name"), "finding": None,
            "why": f"rejected: {h.get('test', '')}".rstrip(": ")}


def _prediction_check(finding: Mapping[str, Any]) -> dict[str, Any] | None:
    """For findings that predict an observation (positions-off-canvas: visible fraction vs
    nonzero fraction, per split), whether every split matches within the tolerance."""
    evidence = finding.get("evidence") or {}
    predicted = evidence.get("predicted_visible_fraction")
    observed = evidence.get("observed_nonzero_fraction")
    if not isinstance(predicted, Mapping) or not isinstance(observed, Mapping):
        return None
    rows, matches = [], True
    for split, p in predicted.items():
        o = observed.get(split)
        if p is None or o is None:
            continue
        ok = abs(float(p) - float(o)) <= PREDICTION_TOLERANCE
        matches &= ok
        rows.append(f"{split}: predicted {_pct(p)} visible, observed {_pct(o)} nonzero")
    if not rows:
        return None
    return {"matches": bool(matches), "tolerance": PREDICTION_TOLERANCE, "text": "; ".join(rows),
            "predicted": dict(predicted), "observed": dict(observed)}


def _fold_context(causes: list[Cause], findings) -> list[Cause]:
    """A model-kind finding beside another cause of the same model becomes that cause's context."""
    kept = []
    for cause in causes:
        others = [c for c in causes if c is not cause and c.model == cause.model and c.id not in CONTEXT_IDS]
        if cause.id in CONTEXT_IDS and cause.model is not None and others:
            continue
        kept.append(cause)
    return kept


def _explains(cause: Cause, symptom: Mapping[str, Any]) -> bool:
    """A model's cause explains that model's symptoms; a cause in a split's data explains the
    symptoms of every model on that split (or every split when it names none)."""
    if cause.model is not None:
        return symptom.get("model") == cause.model
    return cause.split is None or symptom.get("split") in (cause.split, None) or any(
        symptom.get("split") == findings_split for findings_split in cause.also_splits)


def _chain(cause: Cause, findings) -> list[Link]:
    """Context (why the model was fed so), the cause, then the symptoms from inside out."""
    chain = []
    for i, f in enumerate(findings):
        if f.get("id") in CONTEXT_IDS and f.get("model") == cause.model and i != cause.finding:
            chain.append(Link(str(f.get("summary", "")), i, _numbers(f)))
    chain.append(Link(cause.summary, cause.finding, _numbers(findings[cause.finding])))
    order = {"activation-collapse": 0, "sample-collapse": 0, "nonfinite": 1, "output-constant": 2, "output-all-zero": 3,
             "output-sparse": 3, "metric-degenerate": 4, "underflow": 5, "counterfactual-recovers": 6}
    for i in sorted(cause.symptoms, key=lambda i: (order.get(findings[i].get("id"), 9), findings[i].get("split") or "")):
        if findings[i].get("id") == "counterfactual-recovers":
            continue  # evidence for a fix, listed with the fixes
        chain.append(Link(str(findings[i].get("summary", "")), i, _numbers(findings[i])))
    return chain


def _numbers(finding: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar numbers of a finding's evidence (the ones a reader checks first)."""
    evidence = finding.get("evidence") or {}
    keep = ("nonzero_fraction", "count", "zero_count", "upstream_nonzero_fraction", "canvas", "patch",
            "positions", "predicted_visible_fraction", "observed_nonzero_fraction", "ratio", "fed_scale",
            "model_intensity_scale", "nan_count", "inf_count", "nonzero_before", "nonzero_after",
            "intervention", "expected_kind", "inputs", "outputs", "batch_size", "samples_all_zero")
    return {k: evidence[k] for k in keep if k in evidence and not isinstance(evidence[k], (list, tuple))}


def _fixes(cause: Cause, findings) -> list[Fix]:
    """Fixes ranked by evidence: an intervention measured to bring the output back first (with
    its before -> after), then the options the cause's finding suggests."""
    fixes: list[Fix] = []
    seen = set()
    recoveries = [findings[i] for i in cause.symptoms if findings[i].get("id") == "counterfactual-recovers"]
    recoveries.sort(key=lambda f: -((f.get("evidence") or {}).get("nonzero_after") or 0))
    for f in recoveries:
        ev = f.get("evidence") or {}
        command = f"apply-fix:{ev.get('intervention')}"
        if command in seen:
            continue
        seen.add(command)
        fixes.append(Fix(command, f"feed it {ev.get('intervention')}",
                         f"counterfactual on {f.get('split')}: {_pct(ev.get('nonzero_before'))} -> "
                         f"{_pct(ev.get('nonzero_after'))} nonzero"))
    for action in findings[cause.finding].get("actions") or []:
        command = action.get("command") if isinstance(action, Mapping) else str(action)
        if command and command not in seen:
            seen.add(command)
            fixes.append(Fix(command, str(action.get("description", command)) if isinstance(action, Mapping)
                             else command))
    return fixes


def _headline(causes: list[Cause], unexplained: list[int], findings, ruled_out) -> tuple[str, str]:
    if unexplained:
        first = findings[unexplained[0]]
        rejected = sorted({r["name"] for r in ruled_out if r.get("model") == first.get("model")})
        text = (f"unexplained: {first.get('summary')}; no measured mechanism explains it"
                + (f" (ruled out: {', '.join(rejected)})" if rejected else ""))
        if causes:
            text += f"; also {len(causes)} cause(s) elsewhere: " + "; ".join(_cause_line(c) for c in causes)
        return "unexplained", text
    if not causes:
        refuted = {r.get("finding") for r in ruled_out}
        errors = [f for i, f in enumerate(findings) if f.get("severity") == "error" and i not in refuted]
        if errors:  # errors that are neither causes nor symptoms (e.g. metric problems alone)
            worst = min(errors, key=lambda f: severity_rank(str(f.get("severity"))))
            return "unexplained", f"unexplained: {worst.get('summary')}"
        return "healthy", "no error finding: the models run as fed and their outputs look healthy"
    if len(causes) == 1:
        return "explained", _cause_line(causes[0])
    return "several-causes", f"{len(causes)} causes: " + "; ".join(_cause_line(c) for c in causes)


def _cause_line(cause: Cause) -> str:
    where = " on ".join(p for p in (cause.model, None if cause.model else cause.split) if p)
    return f"{where + ': ' if where else ''}{cause.id}" + (
        f" ({cause.prediction['text']})" if cause.prediction else "")


def _pct(x: Any) -> str:
    try:
        return f"{100 * float(x):.3g}%"
    except (TypeError, ValueError):
        return "n/a"
