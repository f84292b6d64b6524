"""Where a decision taken in the workbench goes: the one place the UI records decisions.

Until ``ptytui.engine.decisions`` exists this appends one JSON line to
``<session_dir>/decisions.jsonl``; swap ``record_decision`` for the engine's function when it does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

DECISIONS_FILE = "decisions.jsonl"

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

    The line is written with one ``write`` call on a file opened for appending and fsynced, so a
    crash leaves either the whole line or nothing, and earlier lines are never rewritten.
    """
    decision = dict(decision)
    findings = decision.pop("findings", None)
    try:
        from ptytui.engine import decisions as engine_decisions  # noqa: PLC0415
    except ImportError:
        engine_decisions = None
    if engine_decisions is not None and hasattr(engine_decisions, "append_decision"):
        if findings is not None and "evidence" not in decision:
            decision["evidence"] = engine_decisions.evidence_from_diagnosis(
                {"findings": findings}, source="workbench session")
        return Path(engine_decisions.append_decision(session_dir, decision))
    if findings is not None:
        decision.setdefault("evidence", {"findings": [f.get("id") for f in findings]})

    folder = Path(session_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / DECISIONS_FILE
    line = json.dumps(decision, sort_keys=True, allow_nan=False) + "\n"
    with log.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return log


def recorder_for(session_dir: str | Path) -> DecisionRecorder:
    """A decision callback bound to one session folder (what the app is given)."""
    return lambda decision: record_decision(session_dir, decision)
