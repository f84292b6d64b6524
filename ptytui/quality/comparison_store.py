"""The comparison as a record and as files: every entry's rows, flags and findings, written as
PtychoPINN-layout CSVs and a JSON document, and cached in the session folder.

``Comparison`` (one per split, made by ``compare.compare_workspace``) holds a ``ComparedModel`` per
workspace model and reference; ``metric_findings`` turns their sanity flags into the diagnosis's
``metric-degenerate`` findings (part of the JSON document). The files:

- ``comparison_metrics.csv`` (``METRICS_CSV``): tidy rows ``metrics.CSV_COLUMNS``;
- ``frc_curves.csv`` (``FRC_CSV``): FRC curves ``metrics.FRC_CSV_COLUMNS``;
- ``comparison.json`` (``COMPARISON_JSON``): ``Comparison.to_dict()``, the ``compare --json`` document;
- ``comparison_reconstructions.npz`` (``RECONSTRUCTIONS_NPZ``, session cache only): each entry's
  evaluated canvas, for figures.

``load_cached_comparison`` reads the session cache back when it was made on the same inputs and
under the same decision.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptytui.core.atomic import atomic_open, atomic_write_text
from ptytui.core.findings import SEVERITIES
from ptytui.core.jsonable import json_ready
from ptytui.quality.metrics import CSV_COLUMNS, FRC_CSV_COLUMNS

#: File names, in the session folder and in ``compare --out``.
METRICS_CSV = "comparison_metrics.csv"
FRC_CSV = "frc_curves.csv"
COMPARISON_JSON = "comparison.json"
RECONSTRUCTIONS_NPZ = "comparison_reconstructions.npz"

# How each metrics flag ranks as a metric-degenerate finding (unknown flags: warning).
_FLAG_SEVERITY = {
    "all-zero-prediction": "error",
    "nonfinite-prediction": "error",
    "ssim-degenerate": "warning",
    "frc-lost-at-once": "warning",
    "scale-factor-nonfinite": "warning",
    "registration-skipped": "warning",
    "registration-large-shift": "warning",
    "partial-coverage": "info",
    "zero-data-range": "info",
    "image-too-small": "info",
}
_BASELINE_ACTIONS = ["debug-baseline", "retrain-baseline", "skip-baseline", "accept-train-only"]


@dataclass
class ComparedModel:
    """One row group of the comparison: a workspace model or the reference.

    Attributes
    ----------
    model_id : the CSV id (see ``compare``'s module docstring).
    name : the workspace model name; None for the reference.
    label : canonical label.
    kind : "model" | "reference".
    split : the split it was evaluated on (the train split for a train-only Baseline).
    status : "evaluated" | "skipped" | "failed" | "train-only".
    rows, frc_rows : CSV rows (``metrics.CSV_COLUMNS`` / ``FRC_CSV_COLUMNS``).
    metrics : ``ModelMetrics.to_dict()``.
    flags : the metrics' sanity flags.
    positions, intensity_scale : how the model was fed (None for the reference).
    n_groups, gridsize : what was streamed.
    output_nonzero_fraction : share of output-patch pixels with nonzero amplitude.
    output_nonfinite_fraction : share of output-patch pixels that are NaN or Inf.
    seconds : inference time (the ``computation_time_s`` row).
    note : the decision's note, or why it failed / was skipped.
    path : the model or reference file.
    canvas, origin : the evaluated reconstruction (2-D complex) and the object (row, column) of
        its pixel (0, 0) (None when not known, e.g. a reference); kept in memory for figures.
    """

    model_id: str
    name: str | None
    label: str
    kind: str
    split: str
    status: str
    rows: list
    frc_rows: list
    metrics: dict
    flags: list
    positions: str | None = None
    intensity_scale: float | None = None
    n_groups: int = 0
    gridsize: int | None = None
    output_nonzero_fraction: float | None = None
    output_nonfinite_fraction: float | None = None
    seconds: float | None = None
    note: str | None = None
    path: str | None = None
    canvas: np.ndarray | None = field(default=None, repr=False)
    origin: tuple | None = None

    @classmethod
    def from_metrics(cls, metrics, *, model_id: str, name: str | None, label: str, kind: str, split: str,
                     status: str, **extra: Any) -> "ComparedModel":
        metrics.label = model_id
        if status == "train-only":
            for flag in metrics.flags:
                flag["message"] = f"{flag['message']} [train split]"
        rows = metrics.rows()
        if status == "train-only":
            # The tidy CSV has no room for a mark: one more scalar row says these numbers are
            # the train split's, accepted by decision.
            rows.append({"model": model_id, "metric": "train_only", "amplitude": "", "phase": "", "value": 1})
        summary = metrics.to_dict()
        return cls(model_id=model_id, name=name, label=label, kind=kind, split=split, status=status,
                   rows=rows, frc_rows=metrics.frc_rows(), metrics=summary,
                   flags=[dict(f) for f in summary["flags"]], **extra)

    def value(self, component: str, metric: str) -> float | None:
        """One metric value (``component`` "amplitude" / "phase" / "value"), None when empty."""
        for row in self.rows:
            if row["metric"] == metric:
                cell = row.get(component, "")
                if cell == "" or cell is None:
                    return None
                number = float(cell)
                return None if math.isnan(number) else number
        return None

    def to_dict(self) -> dict:
        return {
            "model_id": self.model_id, "name": self.name, "label": self.label, "kind": self.kind,
            "split": self.split, "status": self.status, "note": self.note, "path": self.path,
            "positions": self.positions, "intensity_scale": self.intensity_scale,
            "n_groups": self.n_groups, "gridsize": self.gridsize,
            "output_nonzero_fraction": self.output_nonzero_fraction,
            "output_nonfinite_fraction": self.output_nonfinite_fraction,
            "seconds": self.seconds, "origin": list(self.origin) if self.origin else None,
            "metrics": self.metrics, "flags": self.flags,
        }

    @classmethod
    def from_dict(cls, data: dict, rows: list, frc_rows: list) -> "ComparedModel":
        keys = ("model_id", "name", "label", "kind", "split", "status", "metrics", "flags", "positions",
                "intensity_scale", "n_groups", "gridsize", "output_nonzero_fraction",
                "output_nonfinite_fraction", "seconds", "note", "path")
        kwargs = {k: data.get(k) for k in keys}
        kwargs["flags"] = kwargs["flags"] or []
        kwargs["n_groups"] = kwargs["n_groups"] or 0
        origin = data.get("origin")
        return cls(rows=[r for r in rows if r["model"] == data["model_id"]],
                   frc_rows=[r for r in frc_rows if r["model"] == data["model_id"]],
                   origin=tuple(origin) if origin else None, **kwargs)


@dataclass
class Comparison:
    """Every entry's metrics on one split, with the decision that shaped them."""

    workspace: str
    workspace_hash: str
    split: str
    entries: list[ComparedModel]
    decision: dict | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    ground_truth_window: tuple | None = None  # not serialized

    def entry(self, model_id: str) -> ComparedModel:
        for entry in self.entries:
            if entry.model_id == model_id or entry.name == model_id:
                return entry
        raise KeyError(model_id)

    def rows(self) -> list[dict]:
        """Tidy rows ``model,metric,amplitude,phase,value`` of every entry."""
        return [row for entry in self.entries for row in entry.rows]

    def frc_rows(self) -> list[dict]:
        """FRC curve rows ``model,frequency_bin,amplitude_frc,phase_frc`` of every entry."""
        return [row for entry in self.entries for row in entry.frc_rows]

    def findings(self) -> list[dict]:
        """The metrics' sanity flags as ``metric-degenerate`` findings (diagnose's FINDING shape)."""
        return metric_findings(self)

    def to_dict(self) -> dict:
        """The ``compare --json`` document."""
        return json_ready({
            "workspace": self.workspace,
            "workspace_hash": self.workspace_hash,
            "split": self.split,
            "decision": self.decision,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "models": [entry.to_dict() for entry in self.entries],
            "rows": self.rows(),
            "frc_rows": self.frc_rows(),
            "findings": self.findings(),
        }, infinity="text")

    @classmethod
    def from_dict(cls, data: dict) -> "Comparison":
        rows, frc_rows = data.get("rows") or [], data.get("frc_rows") or []
        return cls(workspace=data["workspace"], workspace_hash=data["workspace_hash"], split=data["split"],
                   entries=[ComparedModel.from_dict(d, rows, frc_rows) for d in data.get("models", [])],
                   decision=data.get("decision"), seconds=float(data.get("seconds") or 0.0),
                   notes=list(data.get("notes") or []))


def metric_findings(comparison: Comparison) -> list[dict]:
    """Each entry's sanity flags as ``metric-degenerate`` findings, one per model x split and
    severity (the flags listed in its evidence): a broken model raises many flags at once (SSIM,
    FRC, registration...), and one finding per flag buried the list under repeats.

    Severity: "error" for an all-zero or non-finite prediction and for a model that failed to
    run; "info" for a model skipped by decision and for coverage / size notes; "warning" else.
    A model a retrain superseded (label ending "(superseded)", kept for comparison) has its
    errors lowered to warnings: the decision already answered them.
    """
    findings = []
    for entry in comparison.entries:
        actions = list(_BASELINE_ACTIONS) if (entry.kind == "model" and entry.label.startswith("Baseline")) else []
        superseded = entry.label.endswith("(superseded)")
        by_severity: dict[str, list[dict]] = {}
        for flag in entry.flags:
            name = flag.get("flag")
            if name == "model-not-evaluated":
                severity = "error" if entry.status == "failed" else "info"
            else:
                severity = _FLAG_SEVERITY.get(name, "warning")
            if superseded and severity == "error":
                severity = "warning"
            by_severity.setdefault(severity, []).append(flag)
        for severity in SEVERITIES:
            flags = by_severity.get(severity)
            if not flags:
                continue
            findings.append({
                "id": "metric-degenerate", "severity": severity,
                "model": entry.name or entry.model_id, "split": entry.split, "layer": None,
                "summary": "; ".join(str(flag.get("message")) for flag in flags),
                "evidence": {"flags": [flag.get("flag") for flag in flags],
                             "details": [{"flag": flag.get("flag"), "component": flag.get("component"),
                                          "value": flag.get("value")} for flag in flags],
                             "model_id": entry.model_id, "status": entry.status,
                             "superseded": superseded},
                "actions": actions if severity != "info" else [],
            })
    return findings


# ---- files -------------------------------------------------------------------------------------

def csv_text(rows: list[dict], columns) -> str:
    """CSV text with a header (``\\n`` line ends), NaN written as ``nan``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k, "")) for k in columns})
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return value


def write_comparison_files(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write ``comparison_metrics.csv``, ``frc_curves.csv`` and ``comparison.json`` atomically."""

    folder = Path(out_dir)
    written = [
        atomic_write_text(folder / METRICS_CSV, csv_text(comparison.rows(), CSV_COLUMNS)),
        atomic_write_text(folder / FRC_CSV, csv_text(comparison.frc_rows(), FRC_CSV_COLUMNS)),
        atomic_write_text(folder / COMPARISON_JSON,
                          json.dumps(comparison.to_dict(), indent=2, allow_nan=False) + "\n"),
    ]
    return written


def save_comparison(comparison: Comparison, session_dir: str | Path) -> list[Path]:
    """Cache a comparison in the session folder: the three files of ``write_comparison_files``
    plus ``comparison_reconstructions.npz`` (each entry's evaluated canvas, for figures)."""

    folder = Path(session_dir)
    if any(entry.status == "failed" for entry in comparison.entries):
        return []  # a comparison in which something failed is never cached
    written = write_comparison_files(comparison, folder)
    arrays = {}
    for i, entry in enumerate(comparison.entries):
        if entry.canvas is not None:
            arrays[f"canvas_{i}"] = np.asarray(entry.canvas)
    arrays["model_ids"] = np.array([e.model_id for e in comparison.entries], dtype=np.str_)
    with atomic_open(folder / RECONSTRUCTIONS_NPZ, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    written.append(folder / RECONSTRUCTIONS_NPZ)
    return written


def _same_decision(a: dict | None, b: dict | None) -> bool:
    if not a or not b:
        return not a and not b
    keys = ("option", "intervention", "when", "models")
    return all(a.get(k) == b.get(k) for k in keys)


def load_cached_comparison(session_dir: str | Path, *, workspace_hash: str, decision: dict | None,
                           split: str | None = None) -> Comparison | None:
    """The comparison cached in the session folder, if it was made on the same inputs (workspace
    hash), under the same decision and on ``split`` (when given); else None."""
    folder = Path(session_dir)
    path = folder / COMPARISON_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        comparison = Comparison.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if comparison.workspace_hash != workspace_hash or not _same_decision(comparison.decision, decision):
        return None
    if any(entry.status == "failed" for entry in comparison.entries):
        return None  # a comparison in which a model failed to run is never reused
    if split is not None and comparison.split != split:
        return None
    recon = folder / RECONSTRUCTIONS_NPZ
    if recon.is_file():
        try:
            with np.load(recon, allow_pickle=False) as archive:
                ids = list(archive["model_ids"])
                for i, entry in enumerate(comparison.entries):
                    key = f"canvas_{i}"
                    if key in archive.files and i < len(ids) and ids[i] == entry.model_id:
                        entry.canvas = archive[key]
        except (OSError, ValueError, KeyError):
            pass
    return comparison
