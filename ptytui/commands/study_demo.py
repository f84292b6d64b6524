"""``ptytui demo --study``: build the built-in study (cached) and open it, or run it headless.
Kept apart from commands/demo.py so that the demo command stays one flag larger."""

from __future__ import annotations

import sys
from pathlib import Path


def run_demo_study(*, preset: str = "tiny", out: Path | None = None, seed: int = 0,
                   headless: bool = False) -> int:
    """Build the demo study; headless (or off a terminal) print its matrix through
    ``ptytui study``, else open the Study screen. Returns the exit code."""
    import typer  # noqa: PLC0415

    from ptytui.commands.demo import _StageProgress  # noqa: PLC0415
    from ptytui.study.demo import build_demo_study  # noqa: PLC0415

    if preset != "tiny":
        typer.echo(f"ptytui: demo --study uses the tiny preset (6 cells), not {preset!r}", err=True)
    with _StageProgress() as progress:
        folder = build_demo_study(out, preset="tiny", seed=seed, progress=progress)
    if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        typer.echo("ptytui: not a terminal: running the study headless instead of opening the "
                   "workbench (use --headless to say so)", err=True)
        headless = True
    typer.echo(f"study: {folder}")
    if headless:
        from ptytui.cli import main  # noqa: PLC0415

        return main(["study", str(folder)])
    from ptytui.commands.study_workbench import launch_study  # noqa: PLC0415

    return launch_study(folder)
