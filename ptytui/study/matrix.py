"""The study's result: one record per cell as it arrives, the matrix (cells x worst severity,
root cause, test nonzero %, amplitude / phase SSIM and FRC50), the exit code, and its files
(study.json in the study's session folder; a report: Markdown table, CSV, one PNG heatmap).

numpy-free except the heatmap (matplotlib, imported when drawn); no TensorFlow, no Dask.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptytui.errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FINDING, EXIT_OK

STUDY_JSON = "study.json"
STUDY_REPORT_MD = "study_report.md"
STUDY_MATRIX_CSV = "study_matrix.csv"
STUDY_HEATMAP_PNG = "study_heatmap.png"
CELLS_FOLDER = "cells"

# Matrix columns after the labels: (key, header, kind)
MATRIX_COLUMNS = (
    ("worst_severity", "worst", "text"),
    ("root_cause", "root cause", "text"),
    ("model", "model", "text"),
    ("test_nonzero_fraction", "test nonzero", "pct"),
    ("amplitude_ssim", "amp SSIM", "num"),
    ("phase_ssim", "phase SSIM", "num"),
    ("amplitude_frc50", "amp FRC50", "num"),
    ("phase_frc50", "phase FRC50", "num"),
    ("reference_amplitude_ssim", "ref amp SSIM", "num"),
)
STATUS_SEVERITY = {"error": "failed", "pending": "pending", "running": "running", "cancelled": "cancelled"}


def safe_name(text: str) -> str:
    """A cell id as one folder name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "cell"


def format_value(value: Any, kind: str) -> str:
    if value is None or value == "":
        return "–"
    if kind == "pct":
        number = float(value)
        return "nan" if math.isnan(number) else f"{100 * number:.1f}%"
    if kind == "num":
        number = float(value)
        if math.isnan(number):
            return "nan"
        return f"{number:.3g}"
    return str(value)


@dataclass
class StudyResult:
    """Every cell's record so far (in the study's cell order), and whether the run was cancelled."""

    name: str
    path: str
    cells: list[dict]  # {"cell", "labels", "workspace"} in study order
    label_names: list[str]
    records: dict[str, dict] = field(default_factory=dict)
    cancelled: bool = False
    seconds: float = 0.0
    cluster: str | None = None

    @classmethod
    def for_study(cls, study) -> "StudyResult":
        return cls(name=study.name, path=str(study.path),
                   cells=[{"cell": c.id, "labels": dict(c.labels), "workspace": str(c.path)} for c in study.cells],
                   label_names=list(study.label_names))

    def add(self, record: dict) -> bool:
        """Keep a finished cell's record; False when that cell already had one (never twice)."""
        if record["cell"] in self.records:
            return False
        self.records[record["cell"]] = record
        return True

    def status(self, cell_id: str) -> str:
        record = self.records.get(cell_id)
        if record is None:
            return "cancelled" if self.cancelled else "pending"
        return record.get("status", "error")

    @property
    def complete(self) -> bool:
        return all(c["cell"] in self.records for c in self.cells)

    @property
    def exit_code(self) -> int:
        """3 cancelled; 2 a cell with bad input; 1 an error finding in any cell; else 0."""
        if self.cancelled:
            return EXIT_CANCELLED
        records = list(self.records.values())
        if any(r.get("status") != "done" for r in records):
            return EXIT_BAD_INPUT
        if any((r.get("row") or {}).get("worst_severity") == "error" or r.get("exit_code") == EXIT_FINDING
               for r in records):
            return EXIT_FINDING
        return EXIT_OK

    # ---- the matrix ------------------------------------------------------------------------
    def row(self, cell: dict) -> dict[str, Any]:
        """One matrix row: the cell, its labels, its status and the numbers (None when missing)."""
        record = self.records.get(cell["cell"]) or {}
        row = dict(record.get("row") or {})
        reference = row.pop("reference", None) or {}
        out = {"cell": cell["cell"], "labels": dict(cell["labels"]), "status": self.status(cell["cell"]),
               "error": record.get("error")}
        for key, _, _ in MATRIX_COLUMNS:
            out[key] = row.get(key)
        out["reference_amplitude_ssim"] = reference.get("amplitude_ssim")
        out["reference_phase_ssim"] = reference.get("phase_ssim")
        out["root_cause_summary"] = row.get("root_cause_summary")
        out["findings_count"] = row.get("findings")
        return out

    def rows(self) -> list[dict]:
        return [self.row(cell) for cell in self.cells]

    def severity_of(self, row: dict) -> str:
        """What colours a cell: error / warning / info / ok, or failed / pending / cancelled."""
        if row["status"] != "done":
            return STATUS_SEVERITY.get(row["status"], "failed")
        return row.get("worst_severity") or "ok"

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """The ``study --json`` document; ``full`` adds each cell's diagnosis and comparison."""
        cells = []
        for cell, row in zip(self.cells, self.rows()):
            record = self.records.get(cell["cell"]) or {}
            item = {**row, "workspace": cell["workspace"], "exit_code": record.get("exit_code"),
                    "seconds": record.get("seconds"), "worker": record.get("worker"),
                    "findings": _cell_findings(record), "report": record.get("report")}
            if full:
                item["diagnosis"] = record.get("diagnosis")
                item["comparison"] = record.get("comparison")
            cells.append(item)
        return _json_safe({
            "study": self.path, "name": self.name, "label_names": self.label_names,
            "seconds": round(self.seconds, 3), "cancelled": self.cancelled, "exit_code": self.exit_code,
            "cluster": self.cluster,
            "counts": {state: sum(self.severity_of(r) == state for r in self.rows())
                       for state in ("error", "warning", "info", "ok", "failed", "pending", "cancelled")},
            "cells": cells,
        })

    # ---- files -------------------------------------------------------------------------------
    def header(self) -> list[str]:
        return ["cell", *self.label_names, *(h for _, h, _ in MATRIX_COLUMNS)]

    def table(self) -> list[list[str]]:
        """The matrix as text cells (what the Markdown table, the console and the TUI show)."""
        out = []
        for row in self.rows():
            labels = [row["labels"].get(n, "") for n in self.label_names]
            if row["status"] != "done":
                worst = "FAILED" if row["status"] == "error" else row["status"]
                values = [worst, row["error"] or "", *["–"] * (len(MATRIX_COLUMNS) - 2)]
            else:
                values = [format_value(row.get(key), kind) if key != "worst_severity"
                          else (row.get(key) or "ok") for key, _, kind in MATRIX_COLUMNS]
            out.append([row["cell"], *labels, *values])
        return out

    def markdown(self, cell_reports: dict[str, str] | None = None) -> str:
        from ptytui.outcome.export import md_escape  # noqa: PLC0415 - numpy-light

        lines = [f"# Study: {md_escape(self.name)}", "",
                 f"Study file: <code>{md_escape(self.path)}</code>. {len(self.cells)} cells; "
                 f"exit code {self.exit_code}" + (" (cancelled)" if self.cancelled else "") + ".", "",
                 "## Matrix", ""]
        header = self.header() + (["report"] if cell_reports else [])
        lines.append("| " + " | ".join(md_escape(h) for h in header) + " |")
        lines.append("|" + "---|" * len(header))
        for cells in self.table():
            extra = []
            if cell_reports:
                link = cell_reports.get(cells[0])
                extra = [f"[report](<{link}>)" if link else "–"]
            lines.append("| " + " | ".join([md_escape(c) for c in cells] + extra) + " |")
        lines += ["", "Metrics are the cell's primary model (the model its worst finding names) against "
                  "the ground truth on the compared split; `ref amp SSIM` is the reference "
                  "reconstruction's.", "", "## Root causes", ""]
        for row in self.rows():
            if row["status"] != "done":
                lines.append(f"- {md_escape(row['cell'])}: not diagnosed: {md_escape(row['error'])}")
            elif row.get("root_cause"):
                lines.append(f"- {md_escape(row['cell'])}: {md_escape(row['worst_severity'])} "
                             f"{md_escape(row['root_cause'])}: {md_escape(row.get('root_cause_summary'))}")
            else:
                lines.append(f"- {md_escape(row['cell'])}: no finding")
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        import csv  # noqa: PLC0415
        import io  # noqa: PLC0415

        columns = ["cell", *self.label_names, "status", "error", *(k for k, _, _ in MATRIX_COLUMNS),
                   "reference_phase_ssim"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in self.rows():
            values = []
            for key in columns:
                value = row["labels"].get(key) if key in self.label_names else row.get(key)
                values.append("" if value is None else (repr(value) if isinstance(value, float) else value))
            writer.writerow(values)
        return buffer.getvalue()

    def heatmap(self, path: Path) -> Path:
        """One PNG: cells coloured by worst severity, each with its root cause and amp SSIM. Two
        labels make a grid (first label across, second down); otherwise one column of cells."""
        from ptytui.outcome.export.figures import pyplot, save_figure  # noqa: PLC0415 - matplotlib on use


        plt = pyplot()
        colours = {"error": "#d62728", "warning": "#ffbf00", "info": "#9ecae1", "ok": "#2ca02c",
                   "failed": "#7f7f7f", "pending": "#e0e0e0", "cancelled": "#e0e0e0"}
        rows = self.rows()
        if len(self.label_names) == 2:
            across, down = self.label_names
            xs = _ordered(r["labels"].get(across, "") for r in rows)
            ys = _ordered(r["labels"].get(down, "") for r in rows)
            place = {id(r): (xs.index(r["labels"].get(across, "")), ys.index(r["labels"].get(down, ""))) for r in rows}
            xlabel, ylabel = across, down
        else:
            xs, ys = [""], [r["cell"] for r in rows]
            place = {id(r): (0, i) for i, r in enumerate(rows)}
            xlabel, ylabel = "", "cell"
        fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len(xs), 1.0 + 0.9 * len(ys)))
        for r in rows:
            x, y = place[id(r)]
            state = self.severity_of(r)
            ax.add_patch(plt.Rectangle((x, y), 1, 1, facecolor=colours.get(state, "#7f7f7f"), edgecolor="white"))
            text = r.get("root_cause") or state if r["status"] == "done" else (r["status"] if r["status"] != "error" else "failed")
            if r["status"] == "done" and r.get("amplitude_ssim") is not None:
                text += f"\nSSIM {r['amplitude_ssim']:.2f}"
            ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=8)
        ax.set_xlim(0, len(xs))
        ax.set_ylim(len(ys), 0)
        ax.set_xticks([i + 0.5 for i in range(len(xs))], xs)
        ax.set_yticks([i + 0.5 for i in range(len(ys))], ys)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{self.name}: worst severity and root cause per cell", fontsize=9)
        return save_figure(fig, Path(path))

    def save(self, folder: Path) -> Path:
        """Keep the full result (every record) as study.json in the study's session folder."""
        from ptytui.core.atomic import atomic_write_text  # noqa: PLC0415

        folder.mkdir(parents=True, exist_ok=True)
        document = {"name": self.name, "path": self.path, "cells": self.cells, "label_names": self.label_names,
                    "cancelled": self.cancelled, "seconds": self.seconds, "cluster": self.cluster,
                    "records": [self.records[c["cell"]] for c in self.cells if c["cell"] in self.records]}
        return atomic_write_text(folder / STUDY_JSON, json.dumps(_json_safe(document), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "StudyResult":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        result = cls(name=data["name"], path=data["path"], cells=data["cells"], label_names=data["label_names"],
                     cancelled=bool(data.get("cancelled")), seconds=float(data.get("seconds") or 0.0),
                     cluster=data.get("cluster"))
        for record in data.get("records") or []:
            result.add(record)
        return result

    def write_report(self, out_dir: Path) -> list[Path]:
        """The study report: study_report.md (matrix + links to each cell's report), the matrix as
        CSV, one PNG heatmap, and study.json. Cell reports are written by the cells themselves
        (``cells/<cell>/``)."""
        from ptytui.core.atomic import atomic_write_text  # noqa: PLC0415

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        reports = {}
        for cell in self.cells:
            report = out_dir / CELLS_FOLDER / safe_name(cell["cell"]) / "report.md"
            if report.is_file():
                reports[cell["cell"]] = report.relative_to(out_dir).as_posix()
        written = [atomic_write_text(out_dir / STUDY_REPORT_MD, self.markdown(reports)),
                   atomic_write_text(out_dir / STUDY_MATRIX_CSV, self.csv()),
                   self.heatmap(out_dir / STUDY_HEATMAP_PNG),
                   atomic_write_text(out_dir / STUDY_JSON,
                                     json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")]
        return written


def _ordered(values) -> list[str]:
    from ptytui.study.spec import label_sort_key  # noqa: PLC0415

    return sorted(set(values), key=label_sort_key)


def _cell_findings(record: dict) -> list[dict]:
    if record.get("status") != "done":
        return []
    from ptytui.study.cell import _merged_findings  # noqa: PLC0415

    return _merged_findings(record.get("diagnosis") or {}, record.get("comparison") or {})


def _json_safe(value: Any) -> Any:
    """NaN / Inf as None (the JSON contract allows no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
