"""Writing an export: ``export_workspace`` (the CLI's) and ``WorkspaceExportWriter`` (the
workbench's action). Each file is written atomically; a dump or figure that fails is noted in
the report, and the report and JSON session are written last, listing every file written."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ptytui.core.atomic import atomic_write_text
from ptytui.errors import Cancelled, one_line
from ptytui.inputs.decisions import load_saved_diagnosis
from ptytui.inputs.workspace import load_workspace
from ptytui.outcome.export.dumps import collapsed_samples, failing_runs, write_collapsed_dump, write_debug_dump
from ptytui.outcome.export.figures import figure_layers, figure_positions, figure_reconstructions
from ptytui.outcome.export.gather import ReportInputs, gather_report_inputs
from ptytui.outcome.export.plan import (
    FIGURE_LAYERS,
    FIGURE_POSITIONS,
    FIGURE_RECONSTRUCTIONS,
    REPORT_MD,
    SESSION_JSON,
    collapsed_dump_name,
    debug_dump_name,
    default_out_dir,
    parse_formats,
    planned_files,
)
from ptytui.outcome.export.report import render_markdown
from ptytui.outcome.export.tables import write_metric_csvs, write_session_json
from ptytui.running.inference import is_cancelled
from ptytui.running.session import Session


@dataclass
class ExportResult:
    """What an export wrote (absolute paths, in writing order) and what it noted."""

    out_dir: Path
    files: list[Path]
    inputs: ReportInputs
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "files": [str(p) for p in self.files], "notes": list(self.notes),
                "seconds": round(self.seconds, 3),
                "diagnosis": self.inputs.diagnosis_note,
                "decision": self.inputs.decision,
                "collapsed_samples": list(self.inputs.collapsed_samples)}


def _check_cancel(cancel) -> None:
    if cancel is not None and is_cancelled(cancel):
        raise Cancelled("export")


def _write_dumps(session, inputs: ReportInputs, folder: Path, notes: list[str], *, cancel, say) -> list[Path]:
    """The failing batches' NPZ dumps; one that cannot be written is noted."""
    written = []
    pairs = failing_runs(inputs)
    if not pairs:
        notes.append("no failing batch to dump: no error finding names one and every output is mostly nonzero")
    for model, split in pairs:
        _check_cancel(cancel)
        target = folder / debug_dump_name(model, split)
        try:
            written.append(write_debug_dump(session, model, split, target))
            say(f"wrote {target.name}")
        except Exception as exc:  # noqa: BLE001 - a dump must not sink the report
            notes.append(f"debug dump of {model}/{split} not written: {one_line(exc)}")
    return written


def _write_collapsed(session, inputs: ReportInputs, folder: Path, written: list[Path], notes: list[str], *,
                     cancel, say) -> list[Path]:
    """One NPZ per (model, split) of the samples the diagnosis's sample-collapse findings name
    (``inputs.collapsed_samples`` gets each one's record); one that cannot be written is noted."""
    out = []
    taken = {p.name for p in written}
    for collapsed in collapsed_samples(inputs):
        _check_cancel(cancel)
        target = folder / collapsed_dump_name(collapsed.model, collapsed.split)
        if target.name in taken:  # two models or splits whose names reduce to the same file name
            notes.append(f"collapsed samples of {collapsed.model}/{collapsed.split} not written: {target.name} "
                         f"is already another file of this export")
            continue
        try:
            inputs.collapsed_samples.append(write_collapsed_dump(session, collapsed, target))
        except Exception as exc:  # noqa: BLE001 - a dump must not sink the report
            notes.append(f"collapsed samples of {collapsed.model}/{collapsed.split} not written: {one_line(exc)}")
            continue
        out.append(target)
        taken.add(target.name)
        say(f"wrote {target.name} ({collapsed.count} samples all zero after {collapsed.layer})")
    return out


def _write_figures(session, inputs: ReportInputs, folder: Path, notes: list[str], *, cancel, say) -> list[Path]:
    """The PNG figures; one that cannot be drawn, or has nothing to show, is noted."""
    written = []
    for name, draw in ((FIGURE_RECONSTRUCTIONS, lambda p: figure_reconstructions(session, inputs.comparison, p)),
                       (FIGURE_LAYERS, lambda p: figure_layers(session, p)),
                       (FIGURE_POSITIONS, lambda p: figure_positions(session, p))):
        _check_cancel(cancel)
        try:
            result = draw(folder / name)
        except Exception as exc:  # noqa: BLE001 - a figure must not sink the report
            notes.append(f"figure {name} not drawn: {one_line(exc)}")
            continue
        if result is None:
            notes.append(f"figure {name} not drawn: nothing to show")
        else:
            written.append(result)
            say(f"wrote {name}")
    return written


def export_workspace(session, *, formats: Iterable[str] | str | None = None, out_dir: str | Path | None = None,
                     comparison: Any = None, diagnosis: Any = "auto", stats: Any = "run", cancel=None,
                     log: Callable[[str], None] | None = None) -> ExportResult:
    """Write the report and its artifacts for ``session``'s workspace into ``out_dir``.

    Parameters
    ----------
    formats : "md,csv,json,npz,png" or an iterable
        Which kinds of file to write (default all).
    out_dir : path, optional
        Default ``<session>/export``.
    comparison, diagnosis, stats
        See ``gather_report_inputs``.

    Returns
    -------
    ExportResult
        Each file written atomically; a figure that cannot be drawn is noted, not fatal.
    """

    started = time.perf_counter()
    chosen = parse_formats(formats)
    folder = Path(out_dir) if out_dir is not None else default_out_dir(session.workspace)
    folder.mkdir(parents=True, exist_ok=True)
    say = log or (lambda text: None)
    inputs = gather_report_inputs(session, comparison=comparison, diagnosis=diagnosis,
                                  stats=stats if ("md" in chosen or "json" in chosen or "npz" in chosen) else None,
                                  cancel=cancel, log=log)
    written: list[Path] = []
    notes: list[str] = []
    if "npz" in chosen:
        written += _write_dumps(session, inputs, folder, notes, cancel=cancel, say=say)
        written += _write_collapsed(session, inputs, folder, written, notes, cancel=cancel, say=say)
    if "png" in chosen:
        written += _write_figures(session, inputs, folder, notes, cancel=cancel, say=say)
    if "csv" in chosen and inputs.comparison is not None:
        written += write_metric_csvs(inputs.comparison, folder)
    inputs.notes.extend(notes)
    # The report and the JSON session list every file of the export, themselves included.
    final_names = [p.name for p in written]
    if "json" in chosen:
        final_names.append(SESSION_JSON)
    if "md" in chosen:
        final_names.insert(0, REPORT_MD)
    if "json" in chosen:
        written.append(write_session_json(inputs, final_names, folder / SESSION_JSON))
    if "md" in chosen:
        written.append(atomic_write_text(folder / REPORT_MD, render_markdown(inputs, final_names) + "\n"))
    return ExportResult(out_dir=folder, files=written, inputs=inputs, notes=notes,
                        seconds=time.perf_counter() - started)


class WorkspaceExportWriter:
    """The workbench's export action: ``writer(state) -> [paths written]``, ``writer.plan(state)
    -> [paths it will write]`` (the shape ``WorkbenchApp(export_writer=...)`` takes).

    The workspace is opened afresh on each call (in the caller's worker thread). The findings
    come from the session's saved diagnosis for the same inputs, else from the workbench's own
    findings (``state.findings``), else a diagnosis is run. The statistics are the workbench's
    finished runs when they cover every planned model x split, and the metrics the comparison the
    workbench cached in the session folder; otherwise they are computed again.
    """

    def __init__(self, workspace_path: str | Path, *, formats: Iterable[str] | str | None = None,
                 out_dir: str | Path | None = None, trust: bool = False, seed: int = 0, batch_size: int | None = None,
                 collect_stats: bool = True, cancel=None):
        self.workspace_path = Path(workspace_path)
        self.formats = parse_formats(formats)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.options = {"trust": trust, "seed": seed, "batch_size": batch_size}
        self.collect_stats = collect_stats
        self.cancel = cancel

    def _folder(self, workspace=None) -> Path:
        if self.out_dir is not None:
            return self.out_dir
        if workspace is None:
            workspace = load_workspace(self.workspace_path)
        return default_out_dir(workspace)

    def plan(self, state: Any = None) -> list[str]:
        folder = self._folder()
        return [str(folder / name) for name in planned_files(self.formats)]

    def __call__(self, state: Any = None) -> list[str]:
        session = Session.open(self.workspace_path, **self.options)
        diagnosis: Any = "auto"
        findings = list(getattr(state, "findings", None) or [])
        if findings and load_saved_diagnosis(session.workspace.session_dir, session.workspace.hash()) is None:
            diagnosis = {"workspace": str(self.workspace_path), "findings": findings, "source": "workbench"}
        stats: Any = None
        if self.collect_stats:
            # The workbench's finished runs are the same streams (same session options): reuse
            # them when they cover every planned model x split, else stream again.
            runs = (getattr(state, "runs", None) or {}).values()
            results = {(run.model, run.split): run.result for run in runs if getattr(run, "result", None)}
            planned = [(plan.model, plan.split) for plan in session.plan()]
            stats = [results[key] for key in planned] if all(key in results for key in planned) else "run"
        result = export_workspace(session, formats=self.formats, out_dir=self._folder(session.workspace),
                                  diagnosis=diagnosis, stats=stats, cancel=self.cancel)
        return [str(path) for path in result.files]
