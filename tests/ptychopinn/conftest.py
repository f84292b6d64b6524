"""Tests against PtychoPINN's real ``ptycho`` package and the bundle and splits its own code wrote.

The package lives in ``<repo>/../shared/clients/ptychopinn`` (CI clones the project with a copy
of ``shared/`` beside it); it is put on ``sys.path`` (and on ``PYTHONPATH`` for subprocesses)
only here: ptytui itself finds PtychoPINN as users have it, an importable ``ptycho``. Everything
is skipped, with the reason, when the folder or the client's environment is absent.
TensorFlow and ``ptycho`` are imported once per test process (session fixtures).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PTYTUI_SHARED", REPO.parent / "shared"))
CLIENT = SHARED / "clients" / "ptychopinn"
FIXTURES = SHARED / "fixtures" / "ptychopinn"
ENVIRONMENT = ("dill", "tensorflow_probability", "tf_keras", "pandas", "yaml")


def _skip_reason() -> str | None:
    if not (CLIENT / "ptycho" / "__init__.py").is_file():
        return f"PtychoPINN's package not found at {CLIENT} (shared/ beside the checkout)"
    if not (FIXTURES / "bundle_gs1" / "wts.h5.zip").is_file():
        return f"PtychoPINN fixtures not found at {FIXTURES}"
    missing = [m for m in ENVIRONMENT if importlib.util.find_spec(m) is None]
    if missing:
        return f"PtychoPINN's environment is not installed ({', '.join(missing)}): pip install -e '.[ptychopinn]'"
    return None


SKIP_REASON = _skip_reason()


def pytest_collection_modifyitems(config, items):
    if SKIP_REASON is None:
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if str(item.fspath).startswith(str(Path(__file__).parent)):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def ptycho_on_path(tmp_path_factory):
    """``ptycho`` importable in this process; its first import happens in an empty folder, which
    must stay empty (no memoized_data)."""
    if str(CLIENT) not in sys.path:
        sys.path.insert(0, str(CLIENT))
    from ptytui.inputs import ptychopinn  # noqa: PLC0415

    empty = tmp_path_factory.mktemp("cwd")
    before = Path.cwd()
    os.chdir(empty)
    try:
        assert ptychopinn.import_module("ptycho.model") is not None, ptychopinn.IMPORT_ERRORS
    finally:
        os.chdir(before)
    assert list(empty.iterdir()) == []
    return CLIENT


@pytest.fixture(scope="session")
def bundle() -> Path:
    return FIXTURES / "bundle_gs1"


@pytest.fixture(scope="session")
def splits() -> dict[str, Path]:
    return {"train": FIXTURES / "lines_N64_train.npz", "test": FIXTURES / "lines_N64_test.npz"}


@pytest.fixture(scope="session")
def loaded(ptycho_on_path, bundle):
    """The bundle loaded with trust, once per process."""
    from ptytui.inputs.models import load_model  # noqa: PLC0415

    return load_model(bundle, trust=True)


def subprocess_env() -> dict[str, str]:
    """The environment for a ``python -m ptytui`` subprocess: this checkout and ``ptycho``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(CLIENT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def session_sharing(workspace, loaded, *, batch_size=None):
    """A Session over ``workspace`` whose every model is the already loaded bundle: its compiled
    step and probe traces are reused across sessions (tracing the bundle costs tens of seconds
    on 2 cores)."""
    from ptytui.running.session import Session  # noqa: PLC0415

    session = Session(workspace, trust=True, batch_size=batch_size)
    for name in workspace.models:
        session._models[name] = loaded
    return session
