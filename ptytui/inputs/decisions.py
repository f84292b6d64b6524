"""Decision options, the session's saved diagnosis and the append-only decision log
(``<session>/decisions.jsonl``).

A decision records what was chosen about a failing model, why, on which evidence, by whom and
when; the latest one shapes ``compare`` and ``export`` (which models are run, skipped or marked).
``OPTIONS`` is the one description of the options (names, sentences, short labels, the phrases
of findings and reports); ``save_diagnosis`` / ``load_saved_diagnosis`` own ``diagnosis.json``,
the evidence a decision is taken on.

Log format
----------
One JSON object per line (UTF-8), appended with ``O_APPEND`` in one ``write`` call, flushed and
fsynced, so a crash leaves either the whole line or a torn tail; earlier lines are never
rewritten. ``read_decisions`` ignores a torn last line (with a warning) and keeps every earlier
line. A record holds:

``option``         one of ``DECISION_OPTIONS``
``intervention``   the fix ``apply-fix`` applies (e.g. ``zero-positions``), else null
``models``         workspace model names the decision is about (null: the Baseline models)
``rationale``      why, in the user's words
``evidence``       ``{"source", "findings": [{id, severity, model, split, summary, numbers}]}``
                   taken from a diagnosis dict or the session's saved ``diagnosis.json``
``who``            ``user@host``
``when``           ISO 8601 UTC (``2025-01-31T12:00:00+00:00``)
``workspace``, ``workspace_hash``   which inputs the decision was taken on
``source``         "cli" | "tui" | ...
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import socket
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ptytui.core.atomic import atomic_write_text, fsync_directory
from ptytui.errors import InputError, UsageError
from ptytui.inputs.workspace import POSITION_MODES

__all__ = [
    "DECISIONS_FILE",
    "DECISION_OPTIONS",
    "DIAGNOSIS_FILE",
    "FEEDING_INTERVENTIONS",
    "OPTIONS",
    "OPTION_ACTIONS",
    "OPTION_DESCRIPTIONS",
    "OPTION_LABELS",
    "SUPERSEDED_SUFFIX",
    "DecisionLog",
    "DecisionOption",
    "ModelPolicy",
    "append_decision",
    "current_decision",
    "ensure_session_dir",
    "evidence_from_diagnosis",
    "feeding_override",
    "is_baseline_label",
    "key_numbers",
    "is_superseded_label",
    "load_saved_diagnosis",
    "make_decision",
    "model_policy",
    "parse_option",
    "read_decision_log",
    "read_decisions",
    "record_decision",
    "save_diagnosis",
]

DECISIONS_FILE = "decisions.jsonl"
#: Where the diagnosis is saved in the session folder (``save_diagnosis`` writes it for
#: ``diagnose`` and ``export``; ``load_saved_diagnosis`` reads it for decisions and the export).
DIAGNOSIS_FILE = "diagnosis.json"



@dataclass(frozen=True)
class DecisionOption:
    """One decision option and every text shown for it (the one place they are written).

    name         what ``ptytui decide --option`` takes and the log records
    usage        how it is spelled on a command line (``apply-fix`` names its intervention)
    description  one sentence: ``decide``'s confirmation and reports
    label        a short label: the workbench's radio buttons
    action       the phrase a finding's suggested action carries (``ptytui diagnose``)
    outcome      what the option means once decided, for a report's status; ``{intervention}``
                 stands for the intervention an ``apply-fix`` names
    """

    name: str
    usage: str
    description: str
    label: str
    action: str
    outcome: str

    def outcome_text(self, intervention: str | None = None) -> str:
        """``outcome`` with the intervention filled in (plain text, not escaped)."""
        return self.outcome.format(intervention=intervention or "")


OPTIONS: dict[str, DecisionOption] = {option.name: option for option in (
    DecisionOption(
        "skip-baseline", "skip-baseline",
        "Skip the Baseline: compare the PINN against the reference only (Baseline rows empty)",
        "compare PINN vs reference only",
        "skip the Baseline: compare the PINN with the reference only",
        "the Baseline is skipped: PINN against the reference only"),
    DecisionOption(
        "debug-baseline", "debug-baseline",
        "Debug the Baseline further (compare runs it as the workspace feeds it)",
        "Debug Baseline further",
        "debug the Baseline further",
        "debugging continues"),
    DecisionOption(
        "retrain-baseline", "retrain-baseline",
        "Retrain the Baseline with the supervised design ('ptytui retrain')",
        "Retrain Baseline (supervised design)",
        "retrain the Baseline with the supervised design",
        "the Baseline was retrained"),
    DecisionOption(
        "accept-train-only", "accept-train-only",
        "Accept train-only Baseline metrics (the Baseline is evaluated on the train split, marked)",
        "Accept train-only Baseline metrics",
        "accept train-only Baseline metrics",
        "Baseline metrics are accepted on the train split only"),
    DecisionOption(
        "apply-fix", "apply-fix:INTERVENTION",
        "Apply an input fix to the Baseline, naming the intervention (e.g. apply-fix:zero-positions)",
        "Apply an input fix (names the intervention)",
        "apply an input fix",
        "the input fix {intervention} is applied"),
)}
#: The option names, in the order they are offered.
DECISION_OPTIONS = tuple(OPTIONS)
#: Views of ``OPTIONS`` by text, for callers that need one text per option.
OPTION_DESCRIPTIONS = {name: option.description for name, option in OPTIONS.items()}
OPTION_LABELS = {name: option.label for name, option in OPTIONS.items()}
OPTION_ACTIONS = {name: option.action for name, option in OPTIONS.items()}

#: Interventions that are a change of how a model is fed; ``compare`` applies them for
#: ``apply-fix``. Other intervention names are recorded but change nothing in ``compare``.
FEEDING_INTERVENTIONS: dict[str, dict[str, Any]] = {
    "zero-positions": {"positions": "zero"},
    "relative-positions": {"positions": "relative"},
    "absolute-positions": {"positions": "absolute"},
    "no-intensity-scale": {"intensity_scale": "none"},
    "apply-intensity-scale": {"intensity_scale": "apply"},
}
_INTERVENTION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
# Numbers kept per finding in a decision's evidence (the log stays readable).
_MAX_EVIDENCE_NUMBERS = 12
_MAX_EVIDENCE_FINDINGS = 12


# ---- options -----------------------------------------------------------------------------------

def parse_option(text: str, intervention: str | None = None) -> tuple[str, str | None]:
    """Split ``apply-fix:zero-positions`` into ("apply-fix", "zero-positions") and validate.

    Parameters
    ----------
    text : str
        An option of ``DECISION_OPTIONS``, optionally ``apply-fix:INTERVENTION``.
    intervention : str, optional
        The intervention given separately (``--intervention``); must agree with one in ``text``.

    Raises
    ------
    UsageError
        Unknown option, ``apply-fix`` without an intervention, an intervention on another option.
    """
    option, _, named = str(text).strip().partition(":")
    option = option.strip().lower()
    named = named.strip() or None
    if option not in DECISION_OPTIONS:
        raise UsageError(f"--option: expected one of {', '.join(DECISION_OPTIONS)} "
                         f"(apply-fix:INTERVENTION), found {text!r}")
    given = (intervention or "").strip() or None
    if named and given and named != given:
        raise UsageError(f"--option names intervention {named!r} but --intervention says {given!r}")
    chosen = named or given
    if option == "apply-fix":
        if not chosen:
            raise UsageError("--option apply-fix: name the intervention, e.g. apply-fix:zero-positions "
                             f"(known feeding fixes: {', '.join(FEEDING_INTERVENTIONS)})")
        if not _INTERVENTION_PATTERN.match(chosen):
            raise UsageError(f"--option apply-fix: expected an intervention name of letters, digits "
                             f"and - _ . = +, found {chosen!r}")
    elif chosen:
        raise UsageError(f"--option {option}: takes no intervention (only apply-fix does), found {chosen!r}")
    return option, chosen


def feeding_override(intervention: str | None) -> dict[str, Any] | None:
    """How an ``apply-fix`` intervention changes a model's feeding, or None if it does not.

    Accepts the names of ``FEEDING_INTERVENTIONS`` and the ``key=value`` spelling of the
    workbench (``positions=zero``, ``intensity_scale=none``, ``intensity_scale=0.49``).
    """
    if not intervention:
        return None
    name = intervention.strip().lower()
    if name in FEEDING_INTERVENTIONS:
        return dict(FEEDING_INTERVENTIONS[name])
    key, sep, value = name.partition("=")
    key = key.replace("-", "_")
    if not sep:
        return None
    if key == "positions" and value in POSITION_MODES:
        return {"positions": value}
    if key == "intensity_scale":
        if value in ("none", "apply"):
            return {"intensity_scale": value}
        try:
            number = float(value)
        except ValueError:
            return None
        if math.isfinite(number) and number > 0:
            return {"intensity_scale": number}
    return None


SUPERSEDED_SUFFIX = " (superseded)"  # what a retrain appends to the label of the model it replaced


def is_superseded_label(label: str | None) -> bool:
    """True for a model a retrain replaced (kept in the workspace for comparison only)."""
    return bool(label) and str(label).endswith(SUPERSEDED_SUFFIX.strip())


def is_baseline_label(label: str | None) -> bool:
    """True for the canonical "Baseline" label (and the "Baseline (superseded)" a retrain leaves)."""
    return bool(label) and str(label).startswith("Baseline")


# ---- evidence ------------------------------------------------------------------------------

def key_numbers(evidence: Any, prefix: str = "", out: dict | None = None) -> dict:
    """The scalars of a finding's (or hypothesis's) evidence, for a decision's evidence and reports.

    Nested mappings are flattened one level (``{"train": 0.1}`` under ``observed`` becomes
    ``observed.train``: evidence is often per split); deeper levels, lists and strings over 80
    characters are left out, a non-finite number is kept as its text (``"nan"``), and at most
    ``_MAX_EVIDENCE_NUMBERS`` are kept, in the evidence's order. ``prefix`` and ``out`` are the
    recursion's state; callers pass only ``evidence``.
    """
    out = {} if out is None else out
    if not isinstance(evidence, Mapping):
        return out
    for key, value in evidence.items():
        if len(out) >= _MAX_EVIDENCE_NUMBERS:
            break
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value if math.isfinite(float(value)) else str(value)
        elif isinstance(value, str) and len(value) <= 80:
            out[name] = value
        elif isinstance(value, Mapping) and not prefix:
            key_numbers(value, f"{name}.", out)
    return out


def evidence_from_diagnosis(diagnosis: Mapping | None, *, source: str | None = None) -> dict:
    """The evidence block of a decision: error and warning findings with their key numbers.

    ``diagnosis`` is a ``diagnose --json`` document (``{"findings": [...]}``); None gives
    ``{"source": None, "findings": [], "note": "no diagnosis ..."}`` (never invented findings).
    """
    if not diagnosis:
        return {"source": None, "findings": [],
                "note": "no diagnosis available: run 'ptytui diagnose' to attach findings"}
    findings = diagnosis.get("findings") or []
    ranked = sorted((f for f in findings if isinstance(f, Mapping)),
                    key=lambda f: {"error": 0, "warning": 1}.get(str(f.get("severity")), 2))
    kept = []
    for finding in ranked:
        if finding.get("severity") not in ("error", "warning"):
            continue
        kept.append({
            "id": finding.get("id"), "severity": finding.get("severity"),
            "model": finding.get("model"), "split": finding.get("split"),
            "summary": finding.get("summary"),
            "numbers": key_numbers(finding.get("evidence") or {}),
        })
        if len(kept) >= _MAX_EVIDENCE_FINDINGS:
            break
    return {"source": source or "diagnosis", "findings": kept,
            "finding_count": len(findings)}


def load_saved_diagnosis(session_dir: str | Path, workspace_hash: str | None = None) -> dict | None:
    """The session's saved ``diagnosis.json`` (a ``diagnose --json`` document), or None.

    With ``workspace_hash``, a saved diagnosis that records a different ``workspace_hash`` is
    ignored (it describes other inputs). An unreadable file is ignored with a warning.
    """
    path = Path(session_dir) / DIAGNOSIS_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"{path}: ignored, not a readable diagnosis JSON ({' '.join(str(exc).split())})",
                      stacklevel=2)
        return None
    if not isinstance(document, dict) or not isinstance(document.get("findings"), list):
        warnings.warn(f"{path}: ignored, expected a diagnose --json document with 'findings'", stacklevel=2)
        return None
    saved_hash = document.get("workspace_hash")
    if workspace_hash and saved_hash and saved_hash != workspace_hash:
        return None
    return document


def save_diagnosis(document: Mapping, session_dir: str | Path) -> Path:
    """Save a ``diagnose --json`` document as the session's ``diagnosis.json``, atomically; return
    its path. The folder must exist (``ensure_session_dir``). ``load_saved_diagnosis`` reads it
    back; ``decide`` and ``export`` take their findings from it.

    Raises ValueError for a non-finite number or TypeError for a value JSON cannot hold (the
    document must be ``json_ready``), OSError when the folder is not writable.
    """
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    return atomic_write_text(Path(session_dir) / DIAGNOSIS_FILE, text)


# ---- records ---------------------------------------------------------------------------------

def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = os.environ.get("USER") or "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_decision(option: str, rationale: str, *, intervention: str | None = None, workspace=None,
                  diagnosis: Mapping | None = None, models: list[str] | None = None,
                  who: str | None = None, when: str | None = None, source: str = "cli") -> dict:
    """Build (not write) a decision record; see the module docstring for its keys.

    Parameters
    ----------
    option : str
        ``DECISION_OPTIONS`` member, or ``apply-fix:INTERVENTION``.
    rationale : str
        Why (required, non-empty).
    intervention : str, optional
        For apply-fix, when not given in ``option``.
    workspace : Workspace, optional
        Supplies ``workspace`` (name / toml), ``workspace_hash`` and, without ``diagnosis``, the
        saved ``diagnosis.json`` of its session folder for the evidence.
    diagnosis : dict, optional
        A ``diagnose --json`` document to take the evidence from.
    models : list of str, optional
        Workspace model names the decision concerns (default: the Baseline models).
    """
    chosen, fix = parse_option(option, intervention)
    text = " ".join(str(rationale or "").split())
    if not text:
        raise UsageError("--reason: expected the rationale of the decision, found an empty text")
    workspace_hash = None
    where = None
    source_name = "given"
    if workspace is not None:
        workspace_hash = workspace.hash()
        where = str(workspace.toml_path or workspace.root)
        if diagnosis is None:
            diagnosis = load_saved_diagnosis(workspace.session_dir, workspace_hash)
            source_name = str(Path(workspace.session_dir) / DIAGNOSIS_FILE)
        if models:
            for name in models:
                workspace.model(name)  # InputError naming the known models
    return {
        "option": chosen,
        "intervention": fix,
        "models": list(models) if models else None,
        "rationale": text,
        "evidence": evidence_from_diagnosis(diagnosis, source=source_name if diagnosis else None),
        "who": who or _who(),
        "when": when or _now(),
        "workspace": where,
        "workspace_hash": workspace_hash,
        "source": source,
    }


def _normalized(decision: Mapping, session_dir: Path | None = None) -> dict:
    """Accept the workbench's spelling (``reason``, ``time``) and fill who / when; without an
    ``evidence`` block, take it from the session's saved diagnosis (its hash noted)."""
    record = dict(decision)
    if "rationale" not in record and "reason" in record:
        record["rationale"] = record.pop("reason")
    if "when" not in record and "time" in record:
        record["when"] = record.pop("time")
    option = record.get("option")
    if option is None:
        raise UsageError("decision: expected an 'option', found none")
    chosen, fix = parse_option(str(option), record.get("intervention"))
    record["option"], record["intervention"] = chosen, fix
    if not " ".join(str(record.get("rationale") or "").split()):
        raise UsageError("decision: expected a rationale, found an empty text")
    record.setdefault("who", _who())
    if not record.get("when"):
        record["when"] = _now()
    if "evidence" not in record:
        saved = load_saved_diagnosis(session_dir) if session_dir is not None else None
        evidence = evidence_from_diagnosis(saved, source=str(Path(session_dir) / DIAGNOSIS_FILE) if saved else None)
        if saved is not None:
            evidence["diagnosis_workspace_hash"] = saved.get("workspace_hash")
        record["evidence"] = evidence
    return record


def append_decision(session_dir: str | Path, decision: Mapping) -> Path:
    """Append one decision to ``<session_dir>/decisions.jsonl`` durably; return the log's path.

    The line goes out in one ``os.write`` on a descriptor opened with ``O_APPEND``, then fsync
    (and the folder is fsynced when the log is new). When the log ends in a torn line (a crash
    mid-write), a newline is written first, so the new record starts on its own line.
    """
    record = _normalized(decision, Path(session_dir))
    line = json.dumps(record, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"
    folder = Path(session_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / DECISIONS_FILE
    existed = log.exists()
    payload = line.encode("utf-8")
    if existed and log.stat().st_size > 0:
        with open(log, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                payload = b"\n" + payload
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = 0
        while written < len(payload):  # os.write may write less than asked (signals, pipes)
            written += os.write(fd, payload[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    if not existed:

        fsync_directory(folder)
    return log


def record_decision(workspace, option: str, rationale: str, *, intervention: str | None = None,
                    diagnosis: Mapping | None = None, models: list[str] | None = None,
                    source: str = "cli") -> tuple[dict, Path]:
    """``make_decision`` for ``workspace`` then ``append_decision`` to its session folder."""
    record = make_decision(option, rationale, intervention=intervention, workspace=workspace,
                           diagnosis=diagnosis, models=models, source=source)
    return record, append_decision(workspace.session_dir, record)


@dataclass
class DecisionLog:
    """The decisions read from a log, oldest first, and what was skipped (one line each)."""

    path: Path
    decisions: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def current(self) -> dict | None:
        return self.decisions[-1] if self.decisions else None


def read_decision_log(session_dir: str | Path) -> DecisionLog:
    """Read ``decisions.jsonl``: every whole record, oldest first.

    A torn last line (no final newline, or not valid JSON: a crash mid-append) is ignored with a
    warning; so is a damaged line in the middle (its line number named). A missing log is an
    empty log. Never raises for the log's content.
    """
    path = Path(session_dir) / DECISIONS_FILE
    log = DecisionLog(path)
    if not path.is_file():
        return log
    data = path.read_bytes()
    lines = data.split(b"\n")
    last_index = len(lines) - 1  # the piece after the final "\n" ("" when the log is whole)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        torn = number - 1 == last_index  # no newline after it
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict) or "option" not in record:
                raise ValueError("not a decision record")
        except (UnicodeDecodeError, ValueError) as exc:
            what = "torn last line (an interrupted append)" if torn else f"damaged line {number}"
            log.warnings.append(f"{path}: ignored {what}: {' '.join(str(exc).split())[:120]}")
            continue
        if torn:
            # Valid JSON without its newline: the write completed but for the newline; keep it.
            log.warnings.append(f"{path}: last line has no final newline (kept: it is a whole record)")
        log.decisions.append(record)
    return log


def read_decisions(session_dir: str | Path) -> list[dict]:
    """Every whole decision in the log, oldest first; skipped lines raise a ``UserWarning``."""
    log = read_decision_log(session_dir)
    for message in log.warnings:
        warnings.warn(message, stacklevel=2)
    return log.decisions


def current_decision(session_dir: str | Path) -> dict | None:
    """The latest decision of the session (the one that shapes compare and export), or None."""
    return read_decision_log(session_dir).current


# ---- what a decision does to a model ---------------------------------------------------------

@dataclass
class ModelPolicy:
    """What the current decision asks compare / export to do with one model.

    action : "run" | "skip" | "train-only"
    feeding : overrides of the model's feeding ({"positions": ..., "intensity_scale": ...})
    note : one line for the report and JSON (None when the decision does not touch the model)
    """

    action: str = "run"
    feeding: dict = field(default_factory=dict)
    note: str | None = None


def _concerns(decision: Mapping, name: str, label: str | None) -> bool:
    models = decision.get("models")
    if models:
        return name in models
    return is_baseline_label(label)


def model_policy(decision: Mapping | None, name: str, label: str | None, *, retrained: bool = False) -> ModelPolicy:
    """The ``ModelPolicy`` of model ``name`` (workspace name, canonical ``label``) under ``decision``.

    - skip-baseline: the Baseline is not run; its rows stay empty with the reason.
    - accept-train-only: the Baseline is evaluated on the train split, marked train-only.
    - apply-fix: the intervention's feeding change (``feeding_override``) is applied to the
      Baseline (or the decision's ``models``); an intervention that is not a feeding change is
      noted and changes nothing.
    - retrain-baseline, debug-baseline: the Baseline runs as the workspace feeds it (a retrain
      rewires the workspace itself; ``retrained`` says it has happened, for the note).
    """
    if not decision or not _concerns(decision, name, label):
        return ModelPolicy()
    option = decision.get("option")
    stamp = f"decision '{option}' of {decision.get('when', '?')}"
    rationale = " ".join(str(decision.get("rationale") or decision.get("reason") or "").split())
    because = f": {rationale}" if rationale else ""
    if option == "skip-baseline":
        return ModelPolicy("skip", note=f"skipped by {stamp}{because}")
    if option == "accept-train-only":
        return ModelPolicy("train-only", note=f"train-only metrics accepted by {stamp}{because}")
    if option == "apply-fix":
        intervention = decision.get("intervention")
        override = feeding_override(intervention)
        if override is None:
            return ModelPolicy(note=f"{stamp} names intervention {intervention!r}, which is not a "
                                    f"feeding change; run as the workspace feeds it")
        return ModelPolicy(feeding=override, note=f"fed with {intervention} ({override}) per {stamp}")
    if option == "retrain-baseline":
        if str(label).endswith("(superseded)"):
            return ModelPolicy(note=f"superseded by the retrained model per {stamp}; kept for comparison")
        if retrained:
            return ModelPolicy(note=f"retrained per {stamp}")
        return ModelPolicy(note=f"{stamp}: run 'ptytui retrain' to replace it")
    return ModelPolicy(note=f"{stamp}: run as the workspace feeds it")


def ensure_session_dir(workspace) -> Path:
    """The workspace's session folder, created if missing (InputError if it cannot be)."""
    folder = Path(workspace.session_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(folder), "a writable session folder", " ".join(str(exc).split())) from None
    return folder
