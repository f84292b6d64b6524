"""`ptytui decide`: record a decision about the failing model (option, rationale, the evidence it
rests on, who, when) in the session's append-only decision log; compare and export follow it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DECIDE_HELP = ("Record a decision in <session>/decisions.jsonl (append-only, fsynced). OPTION is one of "
               "skip-baseline, debug-baseline, retrain-baseline, accept-train-only, "
               "apply-fix:INTERVENTION (e.g. apply-fix:zero-positions). The evidence (finding ids and "
               "key numbers) comes from the session's saved diagnosis.json when there is one.")


def register(app: typer.Typer) -> None:
    @app.command(help=DECIDE_HELP)
    def decide(
        workspace: Path = typer.Argument(..., help="Folder with ptytui.toml, or the toml file."),
        option: str = typer.Option(..., "--option", help="skip-baseline | debug-baseline | retrain-baseline | "
                                   "accept-train-only | apply-fix:INTERVENTION"),
        reason: str = typer.Option(..., "--reason", help="The rationale, in your words (required)."),
        intervention: Optional[str] = typer.Option(None, "--intervention",
                                                   help="The fix apply-fix applies (or write apply-fix:NAME)."),
        model: Optional[list[str]] = typer.Option(None, "--model", help="Workspace model the decision is about "
                                                  "(repeatable; default: the Baseline models)."),
        json_out: bool = typer.Option(False, "--json", help="Print the recorded decision as JSON."),
    ) -> None:
        from ptytui.commands.common import emit_json  # noqa: PLC0415
        from ptytui.inputs.decisions import OPTION_DESCRIPTIONS, record_decision  # noqa: PLC0415
        from ptytui.inputs.workspace import load_workspace  # noqa: PLC0415

        ws = load_workspace(workspace)
        record, log = record_decision(ws, option, reason, intervention=intervention, models=model or None,
                                      source="cli")
        if json_out:
            emit_json({"decision": record, "log": str(log)})
            return
        from rich.console import Console  # noqa: PLC0415

        console = Console()
        shown = record["option"] + (f":{record['intervention']}" if record.get("intervention") else "")
        console.print(f"decision recorded: {shown} ({OPTION_DESCRIPTIONS[record['option']]})",
                      markup=False, highlight=False)
        console.print(f"  by {record['who']} at {record['when']} -> {log}", markup=False, highlight=False)
        evidence = record.get("evidence") or {}
        ids = [f"{f.get('id')} ({f.get('model') or '-'}/{f.get('split') or '-'})" for f in evidence.get("findings") or []]
        console.print("  evidence: " + (", ".join(ids) if ids else str(evidence.get("note"))),
                      markup=False, highlight=False)
