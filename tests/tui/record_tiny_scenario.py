"""Record the engine's events on the tiny incident scenario: the UI tests' replay fixture.

Builds (or reuses) the tiny scenario workspace, runs the workbench's live feed on it (statistics
of every model x split, trace, geometry, counterfactuals, hypotheses, findings, then the metrics
of every model and the reference) and writes the events as JSON lines. Two things are left out
to keep the file small, neither of which the UI reads: histogram ``edges`` (always ``HIST_EDGES``; records rebuild from ``counts``) and the full
``Diagnosis`` record carried by ``DiagnosisFinished`` (its findings and hypotheses are kept).

The same run also gives the live-layer-health slice (``LIVE_SLICE``): the stream's events about
one model on its first split, from the model's first event up to its first event on another
split (its card, the streamed run with its ``LayerHealthUpdate`` events, the probe trace, and what
was raised meanwhile). The Layers screen's live tests replay it, stopping mid-run.

    .venv/bin/python tests/tui/record_tiny_scenario.py     # rewrites both recordings
    .venv/bin/python tests/tui/record_tiny_scenario.py --live-slice   # the slice only
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ptytui.tui.feeds import event_to_record, workspace_feed  # noqa: E402

OUT = Path(__file__).parent / "data" / "incident_tiny_recorded.jsonl"
LIVE_SLICE = Path(__file__).parent / "data" / "live_health_tiny_recorded.jsonl"
LIVE_MODEL = "baseline_gs1"  # the incident's model: its activations collapse at the reassembly


def slim(value):
    """Drop histogram edges (fixed bins) everywhere in a record."""
    if isinstance(value, dict):
        if set(value) == {"edges", "counts"}:
            return {"counts": value["counts"]}
        return {k: slim(v) for k, v in value.items()}
    if isinstance(value, list):
        return [slim(v) for v in value]
    return value


def live_slice(records: list[dict], model: str = LIVE_MODEL) -> list[dict]:
    """The records about ``model`` from its first one up to its first on a second split."""
    start = next(i for i, r in enumerate(records) if r.get("model") == model)
    first_split = next(r["split"] for r in records[start:] if r.get("model") == model and r.get("split"))
    out = []
    for record in records[start:]:
        if record.get("model") == model and record.get("split") not in ("", None, first_split):
            break
        if record.get("model") == model:
            out.append(record)
    return out


def write_lines(path: Path, records: list[dict]) -> None:
    lines = [json.dumps(record, allow_nan=True) for record in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(lines)} events, {path.stat().st_size} bytes)")


def main(argv: list[str]) -> None:
    from ptytui.commands.demo import build_demo_workspace

    workspace = build_demo_workspace("tiny", show_progress=False)
    records = []
    for event in workspace_feed(workspace)(threading.Event()):
        record = event_to_record(event)
        if record["type"] == "DiagnosisFinished":
            record["diagnosis"] = None
        records.append(slim(record))
    print(f"recorded the engine on {workspace}")
    if "--live-slice" not in argv:
        write_lines(OUT, records)
    write_lines(LIVE_SLICE, live_slice(records))


if __name__ == "__main__":
    main(sys.argv[1:])
