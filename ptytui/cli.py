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
import typer.core
import typer.main

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


CANCELLED_LINE = "ptytui: cancelled (Ctrl-C)"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map ptytui errors to one stderr line and their exit code.

    Click's own ``main`` is bypassed on purpose: it turns Ctrl-C into a silent exit 130 before
    any handler here could see it. Driving the command's context directly lets every command's
    interrupt reach ``KeyboardInterrupt`` below: one line on stderr, exit 3 (EXIT_CANCELLED).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command = typer.main.get_command(app)
        _add_global_options(command)
        with command.make_context("ptytui", args) as ctx:
            result = command.invoke(ctx)
    except PtytuiError as exc:
        typer.echo(f"ptytui: {exc.one_line()}", err=True)
        return exc.exit_code
    except (KeyboardInterrupt, EOFError):
        typer.echo(CANCELLED_LINE, err=True)
        return EXIT_CANCELLED
    except typer.Exit as exc:  # raised by commands that choose their own exit code (and --help)
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
            command_path = getattr(getattr(exc, "ctx", None), "command_path", "ptytui")
            typer.echo(f"ptytui: {message} (see '{command_path} --help')", err=True)
            return getattr(exc, "exit_code", 2) or 2
        raise
    return result if isinstance(result, int) else 0


def _set_verbose(ctx, param, value) -> None:
    if value:
        from ptytui.core import tfload  # noqa: PLC0415 - only when asked: keeps --help light

        tfload.set_verbose(True)


def _add_global_options(command) -> None:
    """``--verbose``, before any command: let TensorFlow's C++ log and import banners through."""
    if any(getattr(param, "name", None) == "verbose" for param in command.params):
        return
    command.params.append(typer.core.TyperOption(
        param_decls=["--verbose"], is_flag=True, default=False, expose_value=False, is_eager=True,
        callback=_set_verbose,
        help="Show TensorFlow's own log (C++ banners, oneDNN notices) on stderr; quiet by default."))


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
