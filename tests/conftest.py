"""Fixtures shared by every test: the tiny incident scenario, built once per code version.

The tiny scenario (ptytui.scenario, preset "tiny") is built into pytest's cache folder
(``.pytest_cache/d/ptytui-scenarios``, or ``$PTYTUI_TEST_CACHE_DIR``) and reused across sessions
and pytest-xdist workers: the builder takes a file lock (fcntl) and renames a finished build into
place, so concurrent workers wait for one build instead of racing. The cache key hashes the
scenario code, so editing it rebuilds automatically.

The cached workspace is shared: tests that write into a workspace (session folder, decisions)
must use ``tiny_workspace_copy``.
"""

from __future__ import annotations

import os

# Snapshots and colours must not depend on the developer's terminal settings.
os.environ.pop("NO_COLOR", None)
os.environ.pop("TEXTUAL_THEME", None)

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (e.g. building the default scenario preset)")


def pytest_collection_modifyitems(config, items):
    # Tests marked slow build or train more than the tiny scenario; CI runs them on request only.
    if config.getoption("--run-slow") or os.environ.get("PTYTUI_RUN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or PTYTUI_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _scenario_cache_dir(config, tmp_path_factory) -> Path:
    env = os.environ.get("PTYTUI_TEST_CACHE_DIR")
    if env:
        return Path(env)
    cache = getattr(config, "cache", None)
    if cache is not None:  # None when run with -p no:cacheprovider
        return Path(cache.mkdir("ptytui-scenarios"))
    # the parent of a worker's basetemp is shared by all xdist workers of this session
    return tmp_path_factory.getbasetemp().parent / "ptytui-scenarios"


@pytest.fixture(scope="session")
def scenario_cache_dir(request, tmp_path_factory) -> Path:
    """The cache root the test scenarios are built into (shared across sessions and workers)."""
    return _scenario_cache_dir(request.config, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_scenario(scenario_cache_dir):
    """Factory: ``tiny_scenario(defects=None) -> Path`` of a cached tiny build.

    ``defects=None`` plants the incident (absolute positions + model-kind label), ``()`` is
    healthy, otherwise the named defects (see ptytui.scenario.DEFECTS). Variants reuse
    the healthy build's trained models, so each costs about a second after the first build.
    """
    from ptytui.scenario import build_scenario

    def make(defects=None) -> Path:
        return build_scenario("tiny", defects=defects, cache_dir=scenario_cache_dir)

    return make


@pytest.fixture(scope="session")
def tiny_workspace(tiny_scenario) -> Path:
    """The tiny incident workspace folder (holding ptytui.toml), built once and shared: read only."""
    return tiny_scenario(None)


@pytest.fixture
def tiny_workspace_copy(tiny_workspace, tmp_path) -> Path:
    """A private copy of the tiny incident workspace, for tests that write into it."""
    target = tmp_path / "workspace"
    # The session folder is left behind: the cached workspace's may hold what another test
    # (or `ptytui demo --headless`) saved there, and each copy starts with a clean session.
    shutil.copytree(tiny_workspace, target, ignore=shutil.ignore_patterns("session"))
    (target / "session").mkdir()
    return target
