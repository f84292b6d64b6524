"""Export a workspace's session as an engineering blocker/resolution report and its artifacts:
Markdown, tidy CSVs, a JSON session, NPZ dumps of the failing batch and of the collapsed samples,
and PNG figures.

Every file is written atomically (``ptytui.core.atomic``). Findings come only from a real
diagnosis (the session's saved ``diagnosis.json`` or ``ptytui.diagnosis.diagnose``); without one the
report says the diagnosis was not run and claims no cause. Names taken from models and files
are escaped in the Markdown (``md_escape``).

Where each part lives:

``plan``      the formats, the file names, where they go and what each holds
``gather``    ``ReportInputs``: metrics, diagnosis, decisions, statistics (read back or computed)
``report``    the Markdown report, one renderer per section (``render_markdown`` composes them)
``markdown``  escaping and number formatting for the report
``tables``    the metric / FRC CSVs and the JSON session document
``dumps``     NPZ dumps of the failing batches and of the samples a sample-collapse finding names
``figures``   the PNG figures (matplotlib)
``writer``    ``export_workspace`` (CLI) and ``WorkspaceExportWriter`` (workbench): writes them all

This package re-exports the API its callers use (below), so they import from
``ptytui.outcome.export``; the submodules are for reading and for tests that replace one step.
"""

from ptytui.outcome.export.gather import ReportInputs, gather_report_inputs
from ptytui.outcome.export.markdown import md_escape
from ptytui.outcome.export.plan import EXPORT_FORMATS, parse_formats, planned_files
from ptytui.outcome.export.report import render_markdown
from ptytui.outcome.export.writer import ExportResult, WorkspaceExportWriter, export_workspace

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "ReportInputs",
    "WorkspaceExportWriter",
    "export_workspace",
    "gather_report_inputs",
    "md_escape",
    "parse_formats",
    "planned_files",
    "render_markdown",
]
