"""Usage errors (missing arguments, unknown options) are one stderr line and exit 2."""

import os
import signal
import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, needle", [
    (["card"], "Missing argument"),
    (["stats", "--bogus"], "--bogus"),
    (["stats", "--batch-size", "many"], "--batch-size"),
])
def test_usage_error_is_one_line_exit_2(argv, needle):
    out = subprocess.run([sys.executable, "-m", "ptytui", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0] and "Traceback" not in out.stderr


def _ptytui(*argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "ptytui", *argv], capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 60), **kwargs)


def test_mistyped_command_names_the_command_it_resembles(tmp_path):
    # The first argument doubles as the workspace path; a typo must not read as "No such command".
    out = _ptytui("diagnoze", str(tmp_path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "'diagnoze'" in lines[0] and "ptytui diagnose" in lines[0]


def test_existing_folder_named_like_a_command_stays_a_workspace(tmp_path):
    folder = tmp_path / "diagnoze"
    folder.mkdir()
    out = _ptytui(str(folder), cwd=tmp_path)
    assert out.returncode == 2
    assert "ptytui.toml" in out.stderr and "did you mean" not in out.stderr


def test_decide_on_a_binary_file_is_one_line_naming_it(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    out = _ptytui("decide", str(binary), "--option", "skip-baseline", "--reason", "x")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(binary) in lines[0] and "binary data" in lines[0] and "codec" not in lines[0]


def test_help_texts_keep_their_words():
    retrain = _ptytui("retrain", "--help", env={**os.environ, "COLUMNS": "200"}).stdout
    assert "diffraction -> [amplitude, phase]" in retrain
    stats = " ".join(_ptytui("stats", "--help", env={**os.environ, "COLUMNS": "200"}).stdout.split())
    assert "k counted from 0" in stats


def test_ctrl_c_is_exit_3_and_one_line(tiny_workspace):
    """SIGINT while `ptytui stats` streams: exit 3 and exactly one stderr line after the signal."""
    process = subprocess.Popen([sys.executable, "-m", "ptytui", "stats", str(tiny_workspace)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    before = []
    try:
        while True:  # the first finished run: TensorFlow is loaded and five runs are still to go
            line = process.stderr.readline()
            assert line, f"stats ended before any run finished: {before}"
            before.append(line)
            if "done in" in line:
                break
        process.send_signal(signal.SIGINT)
        after = process.stderr.read().splitlines()
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 3, (before, after)
    assert after == ["ptytui: cancelled (Ctrl-C)"], after


def test_tensorflow_banners_only_with_verbose(tiny_workspace):
    """TensorFlow's C++ banners (absl, oneDNN) reach stderr only under --verbose."""
    quiet = _ptytui("stats", str(tiny_workspace), "--model-name", "pinn_gs2", timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "oneDNN" not in quiet.stderr and "absl" not in quiet.stderr, quiet.stderr
    assert "pinn_gs2 / train" in quiet.stderr  # ptytui's own progress still gets through
    loud = _ptytui("--verbose", "stats", str(tiny_workspace), "--model-name", "pinn_gs2", timeout=300)
    assert loud.returncode == 0, loud.stderr
    assert "oneDNN" in loud.stderr and "absl" in loud.stderr
