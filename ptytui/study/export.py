"""``ptytui export STUDY``: the study report from the saved run (study.json in the study's session
folder and each cell's saved diagnosis and comparison) when it is complete and every cell's inputs
are unchanged; otherwise the caller runs the study with ``--export``."""

from __future__ import annotations

from pathlib import Path

from ptytui.study.matrix import CELLS_FOLDER, STUDY_JSON, StudyResult, safe_name


def export_saved_study(study, out_dir: str | Path, *, log=None) -> list[Path] | None:
    """Write the study report from the saved results; None when they cannot be reused (no saved
    run, a cell missing or failed, or a cell's workspace changed since)."""
    from ptytui.inputs.workspace import load_workspace  # noqa: PLC0415
    from ptytui.running.session import Session  # noqa: PLC0415

    saved = Path(study.session_dir) / STUDY_JSON
    if not saved.is_file():
        return None
    try:
        result = StudyResult.load(saved)
    except (OSError, ValueError, KeyError):
        return None
    if result.cancelled or [c["cell"] for c in result.cells] != [c.id for c in study.cells] or not result.complete:
        return None
    sessions = {}
    for cell in study.cells:
        record = result.records[cell.id]
        if record.get("status") != "done":
            return None
        workspace = load_workspace(cell.path)
        if workspace.hash() != (record.get("diagnosis") or {}).get("workspace_hash"):
            return None  # inputs changed since the run
        sessions[cell.id] = Session(workspace, trust=study.run.trust, seed=study.run.seed,
                                    n_groups=study.run.n_groups, batch_size=study.run.batch_size)
    from ptytui.outcome.export import export_workspace  # noqa: PLC0415

    out = Path(out_dir)
    written: list[Path] = []
    for cell in study.cells:
        exported = export_workspace(sessions[cell.id], formats=("md", "csv", "json"),
                                    out_dir=out / CELLS_FOLDER / safe_name(cell.id),
                                    diagnosis=result.records[cell.id]["diagnosis"], stats=None, log=log)
        written.extend(exported.files)
    written.extend(result.write_report(out))
    return written
