"""The export and the workbench on PtychoPINN's bundle and splits, as a user with PtychoPINN
installed runs them: a workspace folder naming the fixtures, trusted (params.dill applied)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.ptychopinn.conftest import session_sharing


@pytest.fixture
def fixture_workspace(ptycho_on_path, bundle, splits, tmp_path) -> Path:
    """A workspace folder over the fixtures: the bundle fed absolute positions, as in the incident."""
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "ptytui.toml").write_text(f"""
[workspace]
name = "ptychopinn-fixtures"
session = "session"
trust = true

[splits]
train = "{splits['train']}"
test = "{splits['test']}"

[models.pinn_gs1]
path = "{bundle}"
label = "PtychoPINN"
gridsize = 1
positions = "absolute"
""", encoding="utf-8")
    return folder


def test_export_names_the_batch_merge_and_its_json_parses(fixture_workspace, loaded, tmp_path):
    from ptytui.inputs.workspace import load_workspace
    from ptytui.outcome.export import export_workspace

    session = session_sharing(load_workspace(fixture_workspace), loaded)
    result = export_workspace(session, formats="md,json", out_dir=tmp_path / "export", stats=None)
    names = {Path(p).name for p in result.files}
    assert {"report.md", "session.json"} <= names
    report = (tmp_path / "export" / "report.md").read_text(encoding="utf-8")
    assert "output-count-mismatch" in report or "batch-coupling" in report
    assert "positions-off-canvas" not in report.split("## Root cause")[-1].split("##")[0]  # its prediction fails here
    document = json.loads((tmp_path / "export" / "session.json").read_text(encoding="utf-8"))
    assert document["diagnosis"]["verdict"]["status"] in ("explained", "several-causes")


def test_the_workbench_runs_the_bundle_and_leads_with_the_verdict(fixture_workspace, tmp_path):
    from ptytui.tui.app import WorkbenchApp
    from ptytui.tui.feeds import workspace_feed

    app = WorkbenchApp(workspace_feed(fixture_workspace, trust=True), workspace_label="fixtures",
                       session_dir=fixture_workspace / "session", theme="textual-dark")

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            deadline = time.monotonic() + 600
            while app.state.verdict is None:  # the whole diagnosis runs in the app's worker
                assert time.monotonic() < deadline, "the diagnosis never finished"
                await pilot.pause(0.5)
            return app.state.verdict, [f["id"] for f in app.state.findings]

    verdict, ids = asyncio.run(scenario())
    assert "output-count-mismatch" in ids or "batch-coupling" in ids
    assert verdict.causes and verdict.causes[0].id in ("output-count-mismatch", "batch-coupling")
