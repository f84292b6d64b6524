"""Typer entry point: the headless commands and the default command that opens the workbench.

This module and the command modules it registers import neither TensorFlow nor Textual at
import time; each command imports the engine (and the engine TF) inside its body, so that
``ptytui --help`` stays fast. Errors the user can act on become one line on stderr and an exit
code from ``ptytui.errors``.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ptytui.errors import EXIT_CANCELLED, PtytuiError

app = typer.Typer(
    name="ptytui",
    help="A terminal workbench for debugging ptychography reconstruction models.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

# Each module defines ``register(app)`` and adds its commands. Keep the list in CLI.md order.
COMMAND_MODULES = [
    "ptytui.commands.workbench",
    "ptytui.commands.demo",
    "ptytui.commands.card",
    "ptytui.commands.stats",
    "ptytui.commands.trace",
    "ptytui.commands.diagnose",
    "ptytui.commands.compare",
    "ptytui.commands.study",
    "ptytui.commands.decide",
    "ptytui.commands.retrain",
    "ptytui.commands.export",
    "ptytui.commands.merge",
    "ptytui.commands.doctor",
]

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a command module not written yet must not break the rest
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map ptytui errors to one stderr line and their exit code."""
    try:
        # Without standalone mode click returns a command's typer.Exit code instead of raising.
        result = app(args=argv, prog_name="ptytui", standalone_mode=False)
    except PtytuiError as exc:
        typer.echo(f"ptytui: {exc.one_line()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("ptytui: interrupted", err=True)
        return EXIT_CANCELLED
    except typer.Exit as exc:  # raised by commands that choose their own exit code
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # click's usage errors land here
        click_exception = _click_exception_type()
        abort = getattr(typer, "Abort", None)
        if abort is not None and isinstance(exc, abort):
            typer.echo("ptytui: aborted", err=True)
            return EXIT_CANCELLED
        if click_exception is not None and isinstance(exc, click_exception):
            # One line, like every other bad-input message (click would print usage and a box).
            message = " ".join(exc.format_message().split())
            command = getattr(getattr(exc, "ctx", None), "command_path", "ptytui")
            typer.echo(f"ptytui: {message} (see '{command} --help')", err=True)
            return getattr(exc, "exit_code", 2) or 2
        raise
    return result if isinstance(result, int) else 0


def _click_exception_type():
    """The click exception class typer raises: its own copy of click (typer >= 0.26), else click's.

    The copy is tried first: click may be installed for another package and then is not the one
    typer raises from.
    """
    try:
        from typer._click.exceptions import ClickException  # noqa: PLC0415

        return ClickException
    except ImportError:
        try:
            import click  # noqa: PLC0415

            return click.ClickException
        except ModuleNotFoundError:  # pragma: no cover - depends on typer's layout
            return None


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
