"""The layering of the package, enforced: import-linter's contracts in pyproject.toml (stages
point one way, the engine imports no UI, headless commands no Textual, widgets no screens, no
cycles), checked on this tree and shown to fail on a deliberately broken import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """Run import-linter with the project's contracts on the ``ptytui`` found in ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    script = ("import sys; from importlinter.cli import lint_imports_command; "
              "sys.exit(lint_imports_command.main(args=['--config', sys.argv[1], '--no-cache'], "
              "standalone_mode=False))")
    return subprocess.run([sys.executable, "-c", script, str(ROOT / "pyproject.toml")],
                          capture_output=True, text=True, env=env, cwd=package_parent, timeout=300)


def test_the_package_keeps_its_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module, line", [
    # the engine reaching up into the UI, inside a function (where imports hide)
    ("core/stats.py", "def _broken():\n    from ptytui.tui import app  # noqa\n"),
    # a stage reaching up one level
    ("running/inference.py", "from ptytui.diagnosis import findings  # noqa\n"),
    # a widget importing a screen
    ("tui/widgets/stats_table.py", "from ptytui.tui.screens import overview  # noqa\n"),
])
def test_a_broken_import_breaks_a_contract(tmp_path, module, line):
    copy = tmp_path / "ptytui"
    shutil.copytree(ROOT / "ptytui", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + "\n\n" + line)
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
