"""`ptytui [WORKSPACE]`, the default command: it keeps the CLI import free of Textual and TF,
refuses bad input in one line, draws its first frame before TensorFlow, and writes screenshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ptytui.cli import main
from tests.tui.conftest import INCIDENT

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


def test_importing_the_cli_imports_neither_textual_nor_tensorflow():
    result = run_python("import sys, ptytui.cli; "
                        "print(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'tensorflow'}))")
    assert result.stdout.strip() == "[]", result.stderr


def test_a_missing_workspace_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err


def test_an_unknown_theme_is_refused_with_the_known_ones(capsys):
    assert main(["--theme", "no-such-theme", "--replay", str(INCIDENT)]) == 2
    assert "textual-dark" in capsys.readouterr().err


def test_command_names_are_not_taken_for_a_workspace(capsys):
    assert main(["stats", "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def first_frame_record(args: list[str], tmp_path: Path) -> dict:
    marker = tmp_path / "first_frame.json"
    result = run_python(f"from ptytui.cli import main; raise SystemExit(main({args!r}))",
                        env={"PTYTUI_FIRST_FRAME_FILE": str(marker)})
    assert result.returncode == 0, result.stderr
    return json.loads(marker.read_text())


def test_the_first_frame_of_a_replay_waits_for_neither_tensorflow_nor_numpy(tmp_path):
    record = first_frame_record(["--replay", str(INCIDENT)], tmp_path)
    assert record["tensorflow_imported"] is False
    assert record["heavy_modules"] == []


def test_the_first_frame_of_a_workspace_waits_for_neither_tensorflow_nor_numpy(tiny_workspace_copy, tmp_path):
    # The live path also builds the engine feed and the Export screen's writer before the app.
    record = first_frame_record([str(tiny_workspace_copy)], tmp_path)
    assert record["heavy_modules"] == []


def test_screenshots_of_every_screen(tmp_path, capsys):
    out = tmp_path / "screens"
    assert main(["--replay", str(INCIDENT), "--screenshots", str(out), "--screenshot-size", "80x24"]) == 0
    written = sorted(p.name for p in out.glob("*.svg"))
    assert written == ["export.svg", "findings.svg", "help.svg", "layers.svg", "metrics.svg", "overview.svg"]
    assert "<svg" in (out / "overview.svg").read_text()[:200]


def test_without_a_terminal_the_workbench_prints_the_diagnosis_and_exits(tiny_workspace_copy):
    # A batch job: `ptytui WORKSPACE </dev/null >out 2>err`. No TUI (no escape codes), no waiting
    # for keys: the headless diagnosis on stdout and diagnose's exit code (1: the incident's errors).
    environment = {**os.environ, "COLUMNS": "80"}
    environment.pop("NO_COLOR", None)
    result = subprocess.run([sys.executable, "-m", "ptytui", str(tiny_workspace_copy), "--n-groups", "40"],
                            cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout.startswith("findings: ")
    heads = [line.split()[:3] for line in result.stdout.splitlines() if line.startswith("✗ error")]
    assert ["✗", "error", "positions-off-canvas"] in heads
    assert "\x1b" not in result.stderr
    assert "not a terminal" in result.stderr
    assert (tiny_workspace_copy / "session" / "diagnosis.json").exists()  # what `diagnose` saves


def test_headless_refuses_what_needs_the_workbench(capsys):
    assert main(["--headless", "--replay", str(INCIDENT)]) == 2
    assert "--replay" in capsys.readouterr().err
