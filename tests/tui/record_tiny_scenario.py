"""Record the engine's events on the tiny incident scenario: the UI tests' replay fixture.

Builds (or reuses) the tiny scenario workspace, runs the workbench's live feed on it (statistics
of every model x split, trace, geometry, counterfactuals, hypotheses, findings, then the metrics
of every model and the reference) and writes the events as JSON lines. Two things are left out
to keep the file small, neither of which the UI reads: histogram ``edges`` (always ``HIST_EDGES``; records rebuild from ``counts``) and the full
``Diagnosis`` record carried by ``DiagnosisFinished`` (its findings and hypotheses are kept).

    .venv/bin/python tests/tui/record_tiny_scenario.py     # rewrites data/incident_tiny_recorded.jsonl
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ptytui.tui.feeds import event_to_record, workspace_feed  # noqa: E402

OUT = Path(__file__).parent / "data" / "incident_tiny_recorded.jsonl"


def slim(value):
    """Drop histogram edges (fixed bins) everywhere in a record."""
    if isinstance(value, dict):
        if set(value) == {"edges", "counts"}:
            return {"counts": value["counts"]}
        return {k: slim(v) for k, v in value.items()}
    if isinstance(value, list):
        return [slim(v) for v in value]
    return value


def main() -> None:
    from ptytui.commands.demo import build_demo_workspace

    workspace = build_demo_workspace("tiny", show_progress=False)
    lines = []
    for event in workspace_feed(workspace)(threading.Event()):
        record = event_to_record(event)
        if record["type"] == "DiagnosisFinished":
            record["diagnosis"] = None
        lines.append(json.dumps(slim(record), allow_nan=True))
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(lines)} events, {OUT.stat().st_size} bytes) from {workspace}")


if __name__ == "__main__":
    main()
