"""One cell of a study: diagnose and compare its workspace exactly as ``ptytui diagnose`` then
``ptytui compare`` would (same session options, same files in its session folder), and return a
plain, picklable record: the diagnosis document, the comparison document and the matrix row.

No Dask here: the same function runs in a plain loop, in a test, or as a Dask task.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from ptytui.core.findings import SEVERITIES, severity_rank
from ptytui.errors import Cancelled, PtytuiError, one_line


def run_cell(workspace: str | Path, *, cell_id: str | None = None, labels: dict | None = None,
             options: dict | None = None, cancel: Callable[[], bool] | None = None,
             export_dir: str | Path | None = None) -> dict[str, Any]:
    """Diagnose and compare one workspace; return the cell record (never raises for bad input).

    Parameters
    ----------
    workspace : the cell's ptytui.toml (or its folder).
    cell_id, labels : how the study names and places the cell (copied into the record).
    options : ``RunOptions.to_dict()`` (batch_size, n_groups, seed, trust, split).
    cancel : checked between batches; raises ``Cancelled`` (the study was cancelled).
    export_dir : also write the cell's report (report.md, CSVs, session.json) there.

    Returns
    -------
    dict
        ``status`` "done" or "error"; for "error" ``error`` is the one-line message and
        ``exit_code`` its exit code; for "done" ``diagnosis`` (the ``diagnose --json``
        document), ``comparison`` (the ``compare --json`` document) and ``row`` (the matrix row).
    """
    from ptytui.inputs.workspace import load_workspace  # noqa: PLC0415
    from ptytui.running.session import Session  # noqa: PLC0415

    opts = {"batch_size": 64, "n_groups": None, "seed": 0, "trust": False, "split": None, **(options or {})}
    started = time.perf_counter()
    record: dict[str, Any] = {"cell": cell_id or str(workspace), "labels": dict(labels or {}),
                              "workspace": str(workspace), "status": "error", "error": None,
                              "exit_code": None, "diagnosis": None, "comparison": None, "row": None,
                              "worker": f"{socket.gethostname()}:{os.getpid()}", "report": None}
    try:
        ws = load_workspace(workspace)
        session = Session(ws, trust=opts["trust"], seed=opts["seed"], n_groups=opts["n_groups"],
                          batch_size=opts["batch_size"])
        diagnosis, document = diagnose_cell(session, seed=opts["seed"], cancel=cancel)
        comparison = compare_cell(session, split=opts["split"], cancel=cancel)
        record.update(status="done", diagnosis=document, comparison=comparison.to_dict(),
                      exit_code=diagnosis.exit_code)
        record["row"] = matrix_row(document, record["comparison"], workspace_models=list(ws.models))
        if any(f.get("severity") == "error" for f in record["comparison"]["findings"]):
            record["exit_code"] = 1
        if export_dir is not None:
            from ptytui.outcome.export import export_workspace  # noqa: PLC0415

            result = export_workspace(session, formats=("md", "csv", "json"), out_dir=export_dir,
                                      comparison=comparison, diagnosis=document, stats=diagnosis.runs,
                                      cancel=cancel)
            record["report"] = [str(p) for p in result.files]
    except Cancelled:
        raise
    except PtytuiError as exc:
        record.update(error=exc.one_line(), exit_code=exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - one broken cell must not sink the study
        record.update(error=one_line(exc), exit_code=2)
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def diagnose_cell(session, *, seed: int = 0, cancel=None):
    """What ``ptytui diagnose WORKSPACE`` does: the diagnosis, saved as diagnosis.json in the
    session folder. Returns (Diagnosis, its document)."""
    from ptytui.diagnosis.diagnose import diagnose_workspace  # noqa: PLC0415 - TF in the worker
    from ptytui.inputs.decisions import ensure_session_dir, save_diagnosis  # noqa: PLC0415

    diagnosis = diagnose_workspace(session.workspace, session=session, seed=seed, cancel=cancel)
    document = diagnosis.to_dict()
    if getattr(session.workspace, "toml_path", None) is not None:
        save_diagnosis(document, ensure_session_dir(session.workspace))
    return diagnosis, document


def compare_cell(session, *, split: str | None = None, cancel=None):
    """What ``ptytui compare WORKSPACE`` does: the comparison under the session's current
    decision, cached in the session folder."""
    from ptytui.quality.compare import compare_workspace  # noqa: PLC0415 - TF in the worker
    from ptytui.quality.comparison_store import save_comparison  # noqa: PLC0415

    comparison = compare_workspace(session, split=split, decision="current", cancel=cancel)
    save_comparison(comparison, Path(session.workspace.session_dir))
    return comparison


def worst_severity(findings: list[dict]) -> str | None:
    ranked = [f.get("severity") for f in findings if f.get("severity") in SEVERITIES]
    return min(ranked, key=severity_rank) if ranked else None


def root_cause(diagnosis: dict) -> dict | None:
    """The cell's root cause as the diagnosis's verdict names it (the first cause; the verdict's
    headline when it is unexplained), or None for a healthy cell."""
    verdict = diagnosis.get("verdict") or {}
    causes = verdict.get("causes") or []
    if causes:
        first = causes[0]
        return {"id": first.get("id"), "summary": first.get("summary"), "model": first.get("model")}
    if verdict.get("status") == "unexplained":
        return {"id": "unexplained", "summary": verdict.get("headline"), "model": None}
    return None


def _merged_findings(diagnosis: dict, comparison: dict) -> list[dict]:
    """The diagnosis's findings and the comparison's metric findings, each (id, model, split) once."""
    out, seen = [], set()
    for finding in list(diagnosis.get("findings") or []) + list(comparison.get("findings") or []):
        key = (finding.get("id"), finding.get("model"), finding.get("split"), finding.get("severity"))
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


def _metric(rows: list[dict], model_id: str, metric: str, component: str) -> float | None:
    for row in rows:
        if row.get("model") == model_id and row.get("metric") == metric:
            value = row.get(component)
            if value in ("", None):
                return None
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            return None if number != number else number
    return None


def matrix_row(diagnosis: dict, comparison: dict, *, workspace_models: list[str]) -> dict[str, Any]:
    """The cell's row of the study matrix.

    The cell's numbers are those of its primary model: the model its worst finding is about
    (ties: workspace order), or its first model when no finding names one. Metrics are against
    the ground truth on the comparison's split; the reference's are given beside them.
    """
    findings = _merged_findings(diagnosis, comparison)
    worst = worst_severity(findings)
    cause = root_cause(diagnosis)
    models = [m for m in workspace_models]
    primary = None
    if cause is not None and cause.get("model") in models:
        primary = cause.get("model")
    if primary is None and worst is not None:
        for name in models:
            if any(f.get("model") == name and f.get("severity") == worst for f in findings):
                primary = name
                break
    if primary is None and models:
        primary = models[0]
    entries = comparison.get("models") or []
    entry = next((e for e in entries if e.get("name") == primary), None)
    reference = next((e for e in entries if e.get("kind") == "reference"), None)
    rows = comparison.get("rows") or []

    def metrics_of(e):
        if e is None:
            return {"amplitude_ssim": None, "phase_ssim": None, "amplitude_frc50": None, "phase_frc50": None}
        mid = e.get("model_id")
        return {"amplitude_ssim": _metric(rows, mid, "ssim", "amplitude"),
                "phase_ssim": _metric(rows, mid, "ssim", "phase"),
                "amplitude_frc50": _metric(rows, mid, "frc50", "amplitude"),
                "phase_frc50": _metric(rows, mid, "frc50", "phase")}

    counts = {s: sum(f.get("severity") == s for f in findings) for s in SEVERITIES}
    return {
        "worst_severity": worst,
        "root_cause": cause.get("id") if cause else None,
        "root_cause_summary": cause.get("summary") if cause else None,
        "root_cause_model": cause.get("model") if cause else None,
        "model": primary,
        "split": comparison.get("split"),
        "test_nonzero_fraction": entry.get("output_nonzero_fraction") if entry else None,
        **metrics_of(entry),
        "reference": {"model_id": reference.get("model_id"), **metrics_of(reference)} if reference else None,
        "findings": counts,
    }
