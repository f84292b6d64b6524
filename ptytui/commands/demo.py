"""`ptytui demo`: build (or reuse) the built-in incident scenario, copy it into a workspace the
user owns, and open it (or print its diagnosis).

The build is cached (``<cache>/scenarios/<key>``, see ``ptytui.scenario.cache_root``) and never
handed out: the user gets a copy (``./ptytui-demo/<name>`` or ``--out``), so decisions,
retraining and edits never change what a later ``ptytui demo`` serves. Stage progress goes to
stderr, the workspace path to stdout. No TensorFlow or Textual at import.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ptytui.commands.workbench import launch, print_diagnosis, wants_headless

DEFECT_HELP = (
    "Plant a defect (repeatable). Without --defect the incident is planted as the study wired it "
    "(absolute-positions + model-kind); '--defect none' builds a healthy workspace; 'incident' "
    "names the default pair. Defects: absolute-positions, model-kind, dead-layer, nan-weights, "
    "missing-scale, double-scale, swapped-xy, uint16-intensity."
)


def build_demo_workspace(preset: str = "default", *, dose: float = 1e3, defects: list[str] | None = None,
                         out: Path | None = None, rebuild: bool = False, seed: int = 0,
                         cache_dir: Path | None = None, show_progress: bool = True) -> Path:
    """Build the scenario workspace (cached) with a progress bar per stage on stderr.

    Parameters
    ----------
    preset : "tiny" | "default" | "large"
    dose : photons per diffraction pattern.
    defects : defect names as given on the command line; None or [] plants the incident
        (absolute positions + model-kind label), ["none"] gives a healthy workspace.
    out : copy the workspace into this folder (new, empty, or an unchanged copy of the same
        build) and return it; None returns the cached build itself, which callers must not change.
    rebuild : ignore the cache and rebuild (retrains the models).
    seed, cache_dir : see ``ptytui.scenario.build_scenario``.
    show_progress : draw the stage bars on stderr (a terminal) or one line per finished stage.

    Returns
    -------
    Path
        The workspace folder (holding ptytui.toml).
    """
    from ptytui.scenario import build_scenario  # noqa: PLC0415

    with _StageProgress(enabled=show_progress) as progress:
        return build_scenario(preset, dose=dose, defects=defects or None, seed=seed, out=out,
                              cache_dir=cache_dir, rebuild=rebuild, progress=progress)


class _StageProgress:
    """progress(stage, done, total) drawn as one Rich bar per stage on stderr."""

    def __init__(self, enabled: bool = True):
        from rich.console import Console  # noqa: PLC0415

        self.console = Console(stderr=True)
        self.enabled = enabled
        self._progress = None
        self._tasks: dict[str, object] = {}
        self._finished: set[str] = set()

    def __enter__(self):
        if self.enabled and self.console.is_terminal:
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._progress.add_task(stage, total=total)
            self._progress.update(self._tasks[stage], completed=done, total=total)
        elif done >= total and stage not in self._finished:
            self._finished.add(stage)
            self.console.print(f"demo: {stage} done", markup=False, highlight=False)


DEMO_FOLDER = Path("ptytui-demo")


def default_out(preset: str, defects, dose: float, seed: int) -> Path:
    """Where ``ptytui demo`` puts the user's copy without --out: ``./ptytui-demo/<workspace name>``
    (``incident-default``, ``healthy-tiny``, ...), so other settings get other folders."""
    from ptytui.scenario import workspace_name  # noqa: PLC0415 - the scenario package loads numpy

    return DEMO_FOLDER / workspace_name(preset, defects, dose=dose, seed=seed)


def demonstration_code(diagnose_code: int, defects) -> int:
    """The demo's exit code from the diagnosis' (see CLI.md): 0 when the diagnosis came out as the
    scenario was built to show it (an error finding for planted defects, none for a healthy
    build), 1 when it did not; 2 and 3 pass through."""
    from ptytui.errors import EXIT_FINDING, EXIT_OK  # noqa: PLC0415
    from ptytui.scenario import parse_defects  # noqa: PLC0415 - the scenario package loads numpy

    if diagnose_code not in (EXIT_OK, EXIT_FINDING):
        return diagnose_code
    expected = EXIT_FINDING if parse_defects(defects or None) else EXIT_OK
    if diagnose_code == expected:
        return EXIT_OK
    planted = ", ".join(parse_defects(defects or None)) or "none"
    typer.echo(f"ptytui: demo: the diagnosis {'found no error' if expected else 'raised an error'} "
               f"although the planted defects are: {planted}", err=True)
    return EXIT_FINDING


def register(app: typer.Typer) -> None:
    @app.command(help="Build the built-in incident scenario (cached), copy it into a workspace of "
                      "your own (./ptytui-demo/<name>, or --out) and open the workbench on it; "
                      "--headless prints the diagnosis instead. Exit 0 when the diagnosis finds what "
                      "was planted (the incident's error findings), 1 when it does not.")
    def demo(
        ctx: typer.Context,
        preset: str = typer.Option("default", "--preset",
                                   help="tiny (tests, seconds), default (the demo), large (N=128, 5,216 test positions)."),
        dose: float = typer.Option(1e3, "--dose", help="Photons per diffraction pattern (1e3, 1e4, 1e5)."),
        out: Optional[Path] = typer.Option(None, "--out", help="The workspace folder: new, empty, or an unchanged "
                                           "copy of this demo (default ./ptytui-demo/<name>). The cached build "
                                           "itself is never handed out, so nothing done here changes it."),
        headless: bool = typer.Option(False, "--headless", help="Print the diagnosis instead of opening the workbench."),
        defect: Optional[list[str]] = typer.Option(None, "--defect", help=DEFECT_HELP),
        rebuild: bool = typer.Option(False, "--rebuild", help="Ignore the cache: simulate and train again "
                                     "(and refresh an unchanged copy)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the scan, the noise and the training."),
        study: bool = typer.Option(False, "--study", help="Build the built-in study instead: doses 1e3, 1e4, "
                                   "1e5 x Baseline gs1 / PINN gs2 (absolute positions in every Baseline, a dead "
                                   "layer in the 1e4 PINN), then open it (--headless: run 'ptytui study')."),
    ) -> None:
        from ptytui.scenario import get_preset, parse_defects  # noqa: PLC0415

        get_preset(preset)  # usage errors before any work
        if study:
            code = run_demo_study(preset=preset, out=out, seed=seed, headless=headless)
            if code:
                raise typer.Exit(code)
            return
        parse_defects(defect or None)
        target = out if out is not None else default_out(preset, defect or None, dose, seed)
        workspace = build_demo_workspace(preset, dose=dose, defects=defect, out=target, rebuild=rebuild, seed=seed)
        typer.echo(f"demo: workspace {workspace} is your copy of the cached build: decide, retrain and "
                   "edit there freely", err=True)
        if wants_headless(headless):
            # The headless twin: the workspace folder, then exactly what `ptytui diagnose` prints.
            typer.echo(f"workspace: {workspace}")
            code = demonstration_code(print_diagnosis(ctx.parent, str(workspace), asked=headless), defect)
        else:
            code = launch(workspace)
        if code:
            raise typer.Exit(code)


def run_demo_study(*, preset: str = "tiny", out: Path | None = None, seed: int = 0,
                   headless: bool = False) -> int:
    """Build the demo study; headless (or off a terminal) print its matrix through
    ``ptytui study``, else open the Study screen. Returns the exit code."""
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
        from ptytui.commands.study import run  # noqa: PLC0415

        return run(folder)
    from ptytui.commands.workbench import launch_study  # noqa: PLC0415

    return launch_study(folder)
