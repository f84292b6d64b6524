"""`ptytui [WORKSPACE]`: the default command, which opens the Textual workbench on a workspace.

It imports neither Textual nor TensorFlow at import time: the app is imported inside the command,
and the engine (with TF) inside the app's worker, after the first frame is drawn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from ptytui.errors import UsageError

WORKSPACE_KEY = "ptytui.workspace"
FIRST_FRAME_ENV = "PTYTUI_FIRST_FRAME_FILE"  # startup benchmark: note the first frame, then quit


class WorkbenchGroup(TyperGroup):
    """The top-level group: a first positional that is not a command name is the WORKSPACE.

    Click would otherwise read ``ptytui stats ...`` as WORKSPACE="stats"; here commands keep
    their names and anything else (``ptytui path/``) opens the workbench on it.
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        takes_value = {name for param in self.params if param.param_type_name == "option"
                       and not param.is_flag and not param.count
                       for name in (*param.opts, *param.secondary_opts)}
        args = list(args)
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                break
            if token.startswith("-"):
                i += 2 if token in takes_value else 1
                continue
            if token not in self.commands:
                _refuse_mistyped_command(token, self.commands)
                ctx.meta[WORKSPACE_KEY] = args.pop(i)
            break
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return ["[OPTIONS]", "[WORKSPACE]", "| COMMAND [ARGS]..."]


def _refuse_mistyped_command(token: str, commands) -> None:
    """A first argument that is no existing path but reads like a command name is a typo, not a
    workspace: say which command was meant instead of failing later on a missing workspace."""
    if Path(token).exists():
        return
    import difflib  # noqa: PLC0415 - only on this error path

    close = difflib.get_close_matches(token, list(commands), n=1, cutoff=0.75)
    if close:
        raise UsageError(f"no command {token!r} and no file or folder of that name; did you mean "
                         f"'ptytui {close[0]}'?")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--screenshot-size: expected WIDTHxHEIGHT (for example 120x40), found {text!r}") from None
    if width < 40 or height < 12:
        raise UsageError(f"--screenshot-size: expected at least 40x12, found {text!r}")
    return width, height


def resolve_workspace(path: Path) -> tuple[str, Path, Path]:
    """(label, workspace path, session folder) of a workspace, checked without importing TF."""
    from ptytui.inputs.workspace import load_workspace  # noqa: PLC0415

    workspace = load_workspace(path)
    return str(workspace.name), path, Path(workspace.session_dir)


def register(app: typer.Typer) -> None:
    @app.callback(cls=WorkbenchGroup, invoke_without_command=True)
    def workbench(
        ctx: typer.Context,
        theme: Optional[str] = typer.Option(None, "--theme", help="Textual theme (e.g. textual-dark, "
                                            "nord, gruvbox, textual-light); NO_COLOR is honoured."),
        replay: Optional[Path] = typer.Option(None, "--replay", help="Replay a recorded engine event file "
                                              "(JSON lines) instead of running the engine.", dir_okay=False),
        record: Optional[Path] = typer.Option(None, "--record", help="Also record the engine's events to "
                                              "this JSON-lines file (replay it with --replay).", dir_okay=False),
        screenshots: Optional[Path] = typer.Option(None, "--screenshots", help="Render every screen to SVG "
                                                   "files in this folder (headless) and exit.", file_okay=False),
        screenshot_size: str = typer.Option("120x40", "--screenshot-size", help="Terminal size for "
                                            "--screenshots, WIDTHxHEIGHT."),
        trust: bool = typer.Option(False, "--trust", help="Allow pickled custom objects and Keras "
                                   "unsafe deserialization."),
        batch_size: int = typer.Option(64, "--batch-size", help="Groups per inference batch."),
        n_groups: Optional[int] = typer.Option(None, "--n-groups", help="Run a contiguous, seeded "
                                               "subset of this many groups per split."),
        seed: int = typer.Option(0, "--seed", help="Seed for grouping and subsets."),
    ) -> None:
        """Open the workbench on WORKSPACE (a folder with ptytui.toml, or the toml; default: here).

        Keys: 1-5 screens, ? help, r run, x cancel, q quit, ctrl+p command palette.
        """
        if ctx.invoked_subcommand is not None:
            return
        code = launch(ctx.meta.get(WORKSPACE_KEY), theme=theme, replay=replay, record=record,
                      screenshots=screenshots, screenshot_size=screenshot_size, trust=trust,
                      batch_size=batch_size, n_groups=n_groups, seed=seed)
        if code:
            raise typer.Exit(code)


def launch(workspace: str | Path | None = None, *, theme: str | None = None, replay: Path | None = None,
           record: Path | None = None, screenshots: Path | None = None, screenshot_size: str = "120x40",
           trust: bool = False, batch_size: int = 64, n_groups: int | None = None, seed: int = 0) -> int:
    """Open the workbench on a workspace (what `ptytui [WORKSPACE]` and `ptytui demo` do).

    Returns the exit code. ``replay`` shows a recorded event file instead of running the engine;
    ``record`` also writes the engine's events to a file; ``screenshots`` renders every screen to
    SVG files in that folder, headless, once the run is over, instead of opening the terminal UI.
    """
    workspace_arg = str(workspace) if workspace is not None else None
    size = _parse_size(screenshot_size)
    if theme is not None:
        _check_theme(theme)
    if batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, found {batch_size}")
    if n_groups is not None and n_groups < 1:
        raise UsageError(f"--n-groups: expected a positive integer, found {n_groups}")

    from ptytui.tui.feeds import recording_feed, replay_feed, workspace_feed  # noqa: PLC0415

    export_writer = None  # a replay has no workspace to export from
    if replay is not None:
        feed = replay_feed(replay)
        label, session_dir = Path(replay).stem, Path.cwd() / "session"
        if workspace_arg:
            label, _, session_dir = resolve_workspace(Path(workspace_arg))
    else:
        label, path, session_dir = resolve_workspace(Path(workspace_arg) if workspace_arg else Path.cwd())
        feed = workspace_feed(path, trust=trust, batch_size=batch_size, n_groups=n_groups, seed=seed)
        export_writer = DeferredExportWriter(path, trust=trust, seed=seed, batch_size=batch_size)
    if record is not None:
        feed = recording_feed(feed, record)

    from ptytui.tui.app import WorkbenchApp, run_workbench, save_screens  # noqa: PLC0415

    first_frame = os.environ.get(FIRST_FRAME_ENV)
    app = WorkbenchApp(feed, workspace_label=label, session_dir=session_dir, theme=theme,
                       export_writer=export_writer,
                       first_frame_file=first_frame or None)
    if screenshots is not None:
        import asyncio  # noqa: PLC0415

        for written in asyncio.run(save_screens(app, screenshots, size=size)):
            typer.echo(str(written))
        return 0
    if first_frame:
        app.run(headless=True)
        return 0
    return run_workbench(app)


class DeferredExportWriter:
    """The Export screen's write action, ``engine.export.WorkspaceExportWriter`` built on first use.

    The export module loads numpy and the engine's helpers; building the writer when the Export
    screen first asks for it keeps them out of the first frame.
    """

    def __init__(self, workspace_path: Path, **options) -> None:
        self.workspace_path = workspace_path
        self.options = options
        self._writer = None

    def writer(self):
        if self._writer is None:
            from ptytui.outcome.export import WorkspaceExportWriter  # noqa: PLC0415

            self._writer = WorkspaceExportWriter(self.workspace_path, **self.options)
        return self._writer

    def plan(self, state=None) -> list[str]:
        return self.writer().plan(state)

    def __call__(self, state=None) -> list[str]:
        return self.writer()(state)


def _check_theme(theme: str) -> None:
    """Refuse an unknown theme with the list of known ones (Textual imported only here)."""
    from textual.theme import BUILTIN_THEMES  # noqa: PLC0415

    if theme not in BUILTIN_THEMES:
        raise UsageError(f"--theme: expected one of {', '.join(sorted(BUILTIN_THEMES))}, found {theme!r}")
