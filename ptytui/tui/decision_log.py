"""Where a decision taken in the workbench goes: the one place the UI records decisions, through
``ptytui.inputs.decisions`` (append-only ``<session_dir>/decisions.jsonl``, fsynced)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ptytui.inputs.decisions import append_decision, evidence_from_diagnosis

DecisionRecorder = Callable[[dict[str, Any]], Path]


def record_decision(session_dir: str | Path, decision: dict[str, Any]) -> Path:
    """Append one decision to ``<session_dir>/decisions.jsonl`` and return the log's path.

    Parameters
    ----------
    session_dir
        The workspace's session folder (created if missing).
    decision
        At least ``option`` (one of the decision options) and ``rationale``; ``intervention``
        for ``apply-fix``; ``when``; ``findings``: the FINDING dicts on screen, turned into the
        record's ``evidence`` (error and warning findings with their key numbers).
    """
    decision = dict(decision)
    findings = decision.pop("findings", None)
    if findings is not None and "evidence" not in decision:
        decision["evidence"] = evidence_from_diagnosis({"findings": findings}, source="workbench session")
    return Path(append_decision(session_dir, decision))


def recorder_for(session_dir: str | Path) -> DecisionRecorder:
    """A decision callback bound to one session folder (what the app is given)."""
    return lambda decision: record_decision(session_dir, decision)
