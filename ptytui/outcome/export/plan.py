"""What an export writes: the formats, the file names, where they go and what each file holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from ptytui.errors import UsageError
from ptytui.quality.comparison_store import FRC_CSV, METRICS_CSV

EXPORT_FORMATS = ("md", "csv", "json", "npz", "png")
REPORT_MD = "report.md"
SESSION_JSON = "session.json"
FIGURE_RECONSTRUCTIONS = "reconstructions.png"
FIGURE_LAYERS = "layer_nonzero_fraction.png"
FIGURE_POSITIONS = "positions_vs_canvas.png"
DEFAULT_EXPORT_FOLDER = "export"

# One line per file for the report's Artifacts section (debug dumps: ``describe_artifact``).
ARTIFACT_DESCRIPTIONS = {
    REPORT_MD: "this report",
    METRICS_CSV: "metrics, tidy: model,metric,amplitude,phase,value (PtychoPINN layout)",
    FRC_CSV: "FRC curves: model,frequency_bin,amplitude_frc,phase_frc",
    SESSION_JSON: "the whole session: workspace, statistics, diagnosis, metrics, decisions",
    FIGURE_RECONSTRUCTIONS: "reconstructions beside the ground truth (amplitude, phase)",
    FIGURE_LAYERS: "per-layer nonzero fraction per model and split",
    FIGURE_POSITIONS: "scan positions per split, and offsets as fed against each model's canvas",
}


def parse_formats(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``md,csv,json,npz,png`` (any subset, comma separated) -> a tuple in canonical order."""
    if text is None:
        return EXPORT_FORMATS
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = {item.strip().lower() for item in items if item.strip()}
    unknown = sorted(chosen - set(EXPORT_FORMATS))
    if unknown or not chosen:
        raise UsageError(f"--format: expected a comma-separated subset of {','.join(EXPORT_FORMATS)}, "
                         f"found {text!r}")
    return tuple(f for f in EXPORT_FORMATS if f in chosen)


def default_out_dir(workspace) -> Path:
    """``<session>/export``: where an export goes unless told otherwise."""
    return Path(workspace.session_dir) / DEFAULT_EXPORT_FOLDER


def safe_name(text: str) -> str:
    """``text`` reduced to letters, digits and ``_ . -`` (other runs become ``-``), for file
    names and NPZ keys made from model, split and tensor names."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.")
    return cleaned or "model"


def debug_dump_name(model: str, split: str) -> str:
    """The file name of the failing batch of ``model`` on ``split``."""
    return f"debug_{safe_name(model)}_{safe_name(split)}.npz"


def collapsed_dump_name(model: str, split: str) -> str:
    """The file name of the samples of ``model`` on ``split`` that a sample-collapse finding names."""
    return f"collapsed_{safe_name(model)}_{safe_name(split)}.npz"


def planned_files(formats: Iterable[str]) -> list[str]:
    """File names an export of ``formats`` writes (dumps named per model/split: the failing batch,
    and the collapsed samples where the diagnosis names some)."""

    chosen = set(formats)
    names = []
    if "md" in chosen:
        names.append(REPORT_MD)
    if "csv" in chosen:
        names += [METRICS_CSV, FRC_CSV]
    if "json" in chosen:
        names.append(SESSION_JSON)
    if "npz" in chosen:
        names += ["debug_<model>_<split>.npz", "collapsed_<model>_<split>.npz"]
    if "png" in chosen:
        names += [FIGURE_RECONSTRUCTIONS, FIGURE_LAYERS, FIGURE_POSITIONS]
    return names


def describe_artifact(name: str) -> str:
    """What the exported file ``name`` holds, or "" for a file the export does not know."""
    if name in ARTIFACT_DESCRIPTIONS:
        return ARTIFACT_DESCRIPTIONS[name]
    if name.startswith("debug_") and name.endswith(".npz"):
        return "the failing batch: inputs as fed, positions (fed and absolute), outputs"
    if name.startswith("collapsed_") and name.endswith(".npz"):
        return ("the samples a sample-collapse finding names: their inputs as grouped (diffraction, positions, "
                "offsets, group and pattern indices) and the layer")
    return ""
