"""`ptytui [WORKSPACE]`: the default command, which opens the Textual workbench on a workspace.

It imports neither Textual nor TensorFlow at import time: the app is imported inside the command,
and the engine (with TF) inside the app's worker, after the first frame is drawn. Without a
terminal (a batch job) or with ``--headless`` it prints what `ptytui diagnose` prints instead, with
the same exit code, and never loads Textual.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from ptytui.errors import UsageError

WORKSPACE_KEY = "ptytui.workspace"
FIRST_FRAME_ENV = "PTYTUI_FIRST_FRAME_FILE"  # startup benchmark: note the first frame, then quit
NOT_A_TERMINAL = ("ptytui: not a terminal: printing the diagnosis instead of opening the workbench "
                  "(use --headless to say so)")


def has_terminal() -> bool:
    """Whether the workbench can open here: stdin (keys) and stdout are both terminals."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout))


def wants_headless(headless: bool) -> bool:
    """Print the diagnosis instead of opening the workbench: ``--headless``, or no terminal."""
    return headless or not has_terminal()


def say_why_headless(headless: bool) -> None:
    """On stderr, once: the diagnosis is printed because there is no terminal (not asked for)."""
    if not headless:
        typer.echo(NOT_A_TERMINAL, err=True)


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
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Groups per inference batch (default: ptytui chooses, at most 64)."),
        n_groups: Optional[int] = typer.Option(None, "--n-groups", help="Run a contiguous, seeded "
                                               "subset of this many groups per split."),
        seed: int = typer.Option(0, "--seed", help="Seed for grouping and subsets."),
        headless: bool = typer.Option(False, "--headless", help="Print the diagnosis (what 'ptytui "
                                      "diagnose' prints, same exit code) instead of opening the "
                                      "workbench; the default without a terminal."),
    ) -> None:
        """Open the workbench on WORKSPACE (a folder with ptytui.toml, or the toml; default: here).

        Keys: 1-5 screens, ? help, r run, x cancel, q quit, ctrl+p command palette. Without a
        terminal, or with --headless, print the diagnosis instead (exit 1 on an error finding).
        """
        if ctx.invoked_subcommand is not None:
            return
        workspace = ctx.meta.get(WORKSPACE_KEY)
        check_options(theme=theme, screenshot_size=screenshot_size, batch_size=batch_size, n_groups=n_groups)
        if headless and screenshots is not None:
            raise UsageError("--headless and --screenshots: choose one (both run without a terminal)")
        # --screenshots and the startup probe draw the app headless: they need no terminal.
        if screenshots is None and not os.environ.get(FIRST_FRAME_ENV) and wants_headless(headless):
            for flag, given in (("--replay", replay), ("--record", record)):
                if given is not None:
                    raise UsageError(f"{flag}: needs the workbench, which needs a terminal (the headless "
                                     f"diagnosis runs the engine on the workspace; --screenshots DIR "
                                     f"renders a replay without one)")
            code = print_diagnosis(ctx, workspace, trust=trust, batch_size=batch_size, n_groups=n_groups,
                                   seed=seed, asked=headless, command=_headless_command(workspace))
        else:
            code = launch(workspace, theme=theme, replay=replay, record=record, screenshots=screenshots,
                          screenshot_size=screenshot_size, trust=trust, batch_size=batch_size,
                          n_groups=n_groups, seed=seed)
        if code:
            raise typer.Exit(code)


def _headless_command(workspace: str | None) -> str:
    """`study` for a study (its matrix is the headless Study screen), else `diagnose`."""
    from ptytui.study.spec import find_study_toml  # noqa: PLC0415 - no TF, no Textual

    return "study" if workspace and find_study_toml(workspace) is not None else "diagnose"


def print_diagnosis(ctx: typer.Context, workspace: str | None, *, trust: bool = False, batch_size: int | None = None,
                    n_groups: int | None = None, seed: int = 0, asked: bool = True,
                    command: str = "diagnose") -> int:
    """The headless workbench: run `ptytui diagnose` on the workspace (default: here), or `ptytui
    study` on a study, and return its exit code (1 on an error finding, 0 otherwise; bad input
    raises, which the CLI maps to 2).

    The sibling command is run through the group, so the text, the saved diagnosis.json and the
    exit code are the command's own. ``asked``: --headless was given; otherwise stderr says that
    there was no terminal, once the workspace is known to be good (bad input stays the one line
    on stderr).
    """
    args = [] if workspace is None else [str(workspace)]
    if command == "study":
        say_why_headless(asked)
    else:
        resolve_workspace(Path(workspace) if workspace is not None else Path.cwd())
        say_why_headless(asked)
        args += ["--seed", str(seed)] + (["--batch-size", str(batch_size)] if batch_size is not None else [])
        if n_groups is not None:
            args += ["--n-groups", str(n_groups)]
        if trust:
            args.append("--trust")
    sibling = ctx.command.get_command(ctx, command)
    result = sibling.main(args, prog_name=f"{ctx.command_path} {command}", standalone_mode=False)
    return int(result or 0)


def launch(workspace: str | Path | None = None, *, theme: str | None = None, replay: Path | None = None,
           record: Path | None = None, screenshots: Path | None = None, screenshot_size: str = "120x40",
           trust: bool = False, batch_size: int | None = None, n_groups: int | None = None, seed: int = 0) -> int:
    """Open the workbench on a workspace (what `ptytui [WORKSPACE]` and `ptytui demo` do).

    Returns the exit code. ``replay`` shows a recorded event file instead of running the engine;
    ``record`` also writes the engine's events to a file; ``screenshots`` renders every screen to
    SVG files in that folder, headless, once the run is over, instead of opening the terminal UI.
    """
    workspace_arg = str(workspace) if workspace is not None else None
    if workspace_arg and replay is None:
        from ptytui.study.spec import find_study_toml  # noqa: PLC0415 - no TF, no Textual

        if find_study_toml(workspace_arg) is not None:  # a study: the Study screen
            return launch_study(workspace_arg, theme=theme)
    size = check_options(theme=theme, screenshot_size=screenshot_size, batch_size=batch_size, n_groups=n_groups)

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

    from ptytui.tui.app import WorkbenchApp, run_workbench  # noqa: PLC0415 - Textual only for the TUI
    from ptytui.tui.screenshots import save_screens  # noqa: PLC0415 - Textual only for the TUI

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


def check_options(*, theme: str | None, screenshot_size: str, batch_size: int | None,
                  n_groups: int | None) -> tuple[int, int]:
    """Refuse bad workbench options (UsageError, one line); return the screenshot size (columns, rows)."""
    size = _parse_size(screenshot_size)
    if theme is not None:
        _check_theme(theme)
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, found {batch_size}")
    if n_groups is not None and n_groups < 1:
        raise UsageError(f"--n-groups: expected a positive integer, found {n_groups}")
    return size


def _check_theme(theme: str) -> None:
    """Refuse an unknown theme with the list of known ones (Textual imported only here)."""
    from textual.theme import BUILTIN_THEMES  # noqa: PLC0415

    if theme not in BUILTIN_THEMES:
        raise UsageError(f"--theme: expected one of {', '.join(sorted(BUILTIN_THEMES))}, found {theme!r}")


# ---- `ptytui STUDY`: the Study screen over a live run -------------------------------------------
# The study runs on Dask in a background thread for the whole session; enter on a cell leaves the
# Study screen for that cell's workbench, and quitting the workbench (q) comes back to the matrix.

_DONE = object()


class LiveStudy:
    """The study run in a thread; records queue up until the Study screen takes them."""

    def __init__(self, study, **options) -> None:
        self.study = study
        self.options = options
        self.records: queue.Queue = queue.Queue()
        self.error: str | None = None
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ptytui-study", daemon=True)

    def start(self) -> "LiveStudy":
        self.thread.start()
        return self

    def _run(self) -> None:
        from ptytui.errors import Cancelled, PtytuiError  # noqa: PLC0415
        from ptytui.study.cluster import run_study  # noqa: PLC0415

        def on_record(record):
            self.records.put(record)
            if self.cancel.is_set():
                raise KeyboardInterrupt  # run_study cancels the remaining cells

        try:
            run_study(self.study, on_record=on_record, **self.options)
        except Cancelled:
            pass
        except PtytuiError as exc:
            self.error = exc.one_line()
        except Exception as exc:  # noqa: BLE001 - shown on the Study screen
            self.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        finally:
            self.records.put(_DONE)

    def feed(self):
        """Records as they arrive, until the run ends (for one Study screen at a time)."""
        while True:
            item = self.records.get()
            if item is _DONE:
                self.records.put(_DONE)  # the next screen sees the end too
                if self.error:
                    raise RuntimeError(self.error)
                return
            yield item


def launch_study(path: str | Path, *, theme: str | None = None, scheduler: str | None = None,
                 workers: int | None = None) -> int:
    """Open the Study screen on a study file or folder; return the study's exit code."""
    from ptytui.study.cluster import require_dask, study_client  # noqa: PLC0415
    from ptytui.study.matrix import StudyResult  # noqa: PLC0415
    from ptytui.study.spec import load_study  # noqa: PLC0415
    from ptytui.tui.screens.study import StudyApp  # noqa: PLC0415

    study = load_study(path)
    require_dask()
    # The cluster starts here, in the main thread and before Textual takes the terminal: worker
    # processes spawned from the study's thread while the app starts failed ("Nanny failed to
    # start"). The study's thread then only submits to it.
    with study_client(study.cluster, scheduler=scheduler, workers=workers) as client:
        live = LiveStudy(study, client=client).start()
        result = StudyResult.for_study(study)
        selected = None
        while True:
            app = StudyApp(result, feed=live.feed(), theme=theme, selected=selected, on_quit=live.cancel.set)
            cell_id = app.run()
            if cell_id is None:
                break
            selected = cell_id
            _open_cell(study, cell_id, theme=theme)
        live.cancel.set()
        live.thread.join(timeout=30)
    return result.exit_code if result.complete else 3


def _open_cell(study, cell_id: str, *, theme: str | None) -> None:
    """The cell's workbench (its own screens); q returns here instead of leaving the process."""
    from ptytui.tui.app import WorkbenchApp  # noqa: PLC0415
    from ptytui.tui.feeds import workspace_feed  # noqa: PLC0415

    cell = next(c for c in study.cells if c.id == cell_id)
    label, path, session_dir = resolve_workspace(cell.path)
    opts = {"trust": study.run.trust, "seed": study.run.seed, "batch_size": study.run.batch_size}
    feed = workspace_feed(path, n_groups=study.run.n_groups, **opts)
    app = WorkbenchApp(feed, workspace_label=f"{label} ({cell_id})", session_dir=session_dir, theme=theme,
                       export_writer=DeferredExportWriter(path, **opts))
    app.run()
