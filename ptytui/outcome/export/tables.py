"""The export's tables: the tidy metric and FRC CSVs (PtychoPINN's layout, from ``compare``) and
the JSON session document."""

from __future__ import annotations

import json
from pathlib import Path

from ptytui import __version__
from ptytui.core.atomic import atomic_write_text
from ptytui.core.jsonable import json_ready
from ptytui.outcome.export.gather import ReportInputs
from ptytui.quality.comparison_store import FRC_CSV, METRICS_CSV, csv_text
from ptytui.quality.metrics import CSV_COLUMNS, FRC_CSV_COLUMNS


def write_metric_csvs(comparison, folder: Path) -> list[Path]:
    """``comparison_metrics.csv`` (model,metric,amplitude,phase,value) and ``frc_curves.csv``
    (model,frequency_bin,amplitude_frc,phase_frc) in ``folder``, each atomically."""
    return [atomic_write_text(folder / METRICS_CSV, csv_text(comparison.rows(), CSV_COLUMNS)),
            atomic_write_text(folder / FRC_CSV, csv_text(comparison.frc_rows(), FRC_CSV_COLUMNS))]


def session_document(inputs: ReportInputs, files: list[str]) -> dict:
    """The JSON session: workspace, statistics, diagnosis (or why none), metrics, decisions, files.
    Non-finite numbers are written as text ("nan", "inf")."""

    ws = inputs.workspace
    models = {name: {"path": str(e.path), "label": e.label, "gridsize": e.gridsize, "positions": e.positions,
                     "intensity_scale": e.intensity_scale, "expected_kind": e.expected_kind}
              for name, e in ws.models.items()}
    reference = None
    if ws.reference is not None:
        reference = {"path": str(ws.reference.path), "label": ws.reference.label, "split": ws.reference.split}
    return json_ready({
        "ptytui_version": __version__,
        "generated": inputs.generated,
        "workspace": {"name": ws.name, "toml": str(ws.toml_path) if ws.toml_path else None,
                      "hash": inputs.workspace_hash, "splits": {k: str(v) for k, v in ws.splits.items()},
                      "models": models, "reference": reference},
        "stats": {"runs": [run.to_dict() for run in inputs.stats_runs], "failures": inputs.stats_failures},
        "diagnosis": inputs.diagnosis if inputs.diagnosis is not None else {"run": False,
                                                                            "note": inputs.diagnosis_note},
        "diagnosis_source": inputs.diagnosis_note,
        "comparison": inputs.comparison.to_dict() if inputs.comparison is not None else None,
        "decisions": inputs.decisions,
        "current_decision": inputs.decision,
        "decision_log_warnings": inputs.decision_warnings,
        "files": files,
        "collapsed_samples": inputs.collapsed_samples,
        "notes": inputs.notes,
    }, infinity="text")


def write_session_json(inputs: ReportInputs, files: list[str], path: Path) -> Path:
    """``session_document`` as indented JSON at ``path``, atomically."""
    return atomic_write_text(path, json.dumps(session_document(inputs, files), indent=2, allow_nan=False) + "\n")
