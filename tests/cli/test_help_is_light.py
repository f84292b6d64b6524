"""`ptytui --help` must import neither TensorFlow nor Textual (checked in a fresh process)."""

import subprocess
import sys


def test_help_imports_neither_tensorflow_nor_textual():
    code = (
        "import sys\n"
        "from ptytui.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('tensorflow', 'textual', 'keras') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY:\n" in out.stdout, out.stdout
    assert "stats" in out.stdout  # the help lists the commands


def test_every_subcommand_help_is_light():
    code = (
        "import sys\n"
        "from ptytui.cli import app, main\n"
        "import typer.main\n"
        "group = typer.main.get_command(app)\n"
        "for name in group.commands:\n"
        "    main([name, '--help'])\n"
        "heavy = [m for m in ('tensorflow', 'textual', 'keras') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY:\n" in out.stdout, out.stdout[-500:]
