"""Fixtures of the study tests: the tiny demo study (built once, cached like the tiny scenario)
and one local Dask cluster of 2 worker processes shared by every test that needs one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def copy_study(source: Path, target: Path) -> Path:
    """A private copy of a study (data and models hard-linked, empty session folders): cells
    write their session folders, and a cached build must stay as built."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, ignore=shutil.ignore_patterns("session", "study-session"))
    for toml in target.glob("runs/*/*/ptytui.toml"):
        (toml.parent / "session").mkdir(exist_ok=True)
    return target


@pytest.fixture(scope="session")
def demo_study_build(scenario_cache_dir) -> Path:
    """The cached tiny demo study (3 doses x baseline / pinn): read only."""
    pytest.importorskip("distributed")
    from ptytui.study.demo import build_demo_study

    return build_demo_study(cache_dir=scenario_cache_dir)


@pytest.fixture(scope="session")
def dask_client():
    """A distributed.Client on a LocalCluster of 2 single-threaded worker processes, TensorFlow
    warmed on each (what `ptytui study` starts by default)."""
    pytest.importorskip("distributed")
    from ptytui.study.cluster import study_client
    from ptytui.study.spec import ClusterSpec

    with study_client(ClusterSpec(), workers=2) as client:
        yield client
