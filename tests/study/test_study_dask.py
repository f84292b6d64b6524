"""The study on a local Dask cluster of 2 worker processes: the same records and findings as each
cell run alone, a worker killed mid-cell survived, cancel, joining a scheduler from the CLI with a
bad cell and an export, the job script dask-jobqueue would submit."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.study.conftest import copy_study

pytest.importorskip("distributed")

TIMING_KEYS = {"seconds", "computation_time_s", "workspace_hash", "worker"}


def _normal(value, root: str):
    """A record without timings and with the study's folder as '<root>' (two copies compare)."""
    if isinstance(value, dict):
        return {k: _normal(v, root) for k, v in value.items() if k not in TIMING_KEYS and not k.endswith("_time_s")}
    if isinstance(value, list):
        return [_normal(v, root) for v in value
                if not (isinstance(v, dict) and str(v.get("metric", "")).endswith("_time_s"))]
    if isinstance(value, str):
        return value.replace(root, "<root>")
    return value


def _assert_same(a, b, where="record"):
    """Equal, floats to 1e-6 (TensorFlow's reductions may sum in another order across threads)."""
    if isinstance(a, float) and isinstance(b, (float, int)):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b)), \
            f"{where}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _subset_study(root: Path, cells: list[str], extra: str = "") -> Path:
    lines = ['[study]', 'name = "subset"', 'session = "subset-session"']
    for cell in cells:
        lines += ["[[cell]]", f'path = "{cell}"']
    (root / "subset.toml").write_text("\n".join(lines) + "\n" + extra)
    return root / "subset.toml"


@pytest.fixture(scope="module")
def study_run(demo_study_build, dask_client, tmp_path_factory):
    """The whole demo study run once on the cluster (a private copy)."""
    from ptytui.study.cluster import run_study
    from ptytui.study.spec import load_study

    root = copy_study(demo_study_build, tmp_path_factory.mktemp("study") / "study")
    arrived = []
    result = run_study(load_study(root), client=dask_client, on_record=lambda r: arrived.append(r["cell"]))
    return root, result, arrived


def test_the_matrix_shows_the_pattern_and_the_exception(study_run):
    root, result, arrived = study_run
    assert sorted(arrived) == sorted(c["cell"] for c in result.cells) and len(arrived) == 6
    rows = {(r["labels"]["dose"], r["labels"]["view"]): r for r in result.rows()}
    for dose in ("1e3", "1e4", "1e5"):
        assert rows[(dose, "baseline")]["worst_severity"] == "error"
        assert rows[(dose, "baseline")]["root_cause"] == "positions-off-canvas"
        assert rows[(dose, "baseline")]["test_nonzero_fraction"] == 0.0
    assert rows[("1e4", "pinn")]["worst_severity"] == "error"
    assert rows[("1e4", "pinn")]["root_cause"] not in ("positions-off-canvas", None)
    for dose in ("1e3", "1e5"):
        assert rows[(dose, "pinn")]["worst_severity"] != "error"
        assert rows[(dose, "pinn")]["test_nonzero_fraction"] > 0.9
    assert result.exit_code == 1
    saved = json.loads((root / "study-session" / "study.json").read_text())
    assert len(saved["records"]) == 6


def test_each_cell_gives_exactly_what_it_gives_alone(study_run, demo_study_build, tmp_path):
    """diagnose + compare of each cell in this process, on a fresh copy, as the commands do."""
    from ptytui.inputs.workspace import load_workspace
    from ptytui.running.session import Session
    from ptytui.study.cell import compare_cell, diagnose_cell

    root, result, _ = study_run
    alone_root = copy_study(demo_study_build, tmp_path / "alone")
    for cell in result.cells:
        record = result.records[cell["cell"]]
        assert record["status"] == "done", record["error"]
        session = Session(load_workspace(alone_root / cell["cell"]), batch_size=64, seed=0)
        _, diagnosis = diagnose_cell(session, seed=0)
        comparison = compare_cell(session).to_dict()
        _assert_same(_normal(record["diagnosis"]["findings"], str(root)),
                     _normal(diagnosis["findings"], str(alone_root)), f"{cell['cell']} findings")
        _assert_same(_normal(record["diagnosis"], str(root)), _normal(diagnosis, str(alone_root)),
                     f"{cell['cell']} diagnosis")
        _assert_same(_normal(record["comparison"], str(root)), _normal(comparison, str(alone_root)),
                     f"{cell['cell']} comparison")
        saved = json.loads((root / cell["cell"] / "session" / "diagnosis.json").read_text())
        assert [f["id"] for f in saved["findings"]] == [f["id"] for f in diagnosis["findings"]]
        assert (root / cell["cell"] / "session" / "comparison.json").is_file()


def test_a_worker_killed_mid_cell_is_survived(demo_study_build, dask_client, tmp_path):
    from ptytui.study.cluster import run_study
    from ptytui.study.spec import load_study

    root = copy_study(demo_study_build, tmp_path / "study")
    cells = ["runs/dose_1e3/baseline", "runs/dose_1e3/pinn", "runs/dose_1e5/pinn"]
    study = load_study(_subset_study(root, cells))
    killed = {}

    def kill_a_busy_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = {w: keys for w, keys in dask_client.processing().items()
                    if any("ptytui-cell" in str(k) for k in keys)}
            if busy:
                time.sleep(1.0)  # well inside the cell (a tiny cell takes several seconds)
                worker = next(iter(busy))
                pid = dask_client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    arrived = []
    result = run_study(study, client=dask_client, on_record=lambda r: arrived.append(r["cell"]))
    killer.join(5)
    assert killed, "no worker was found busy with a cell"
    assert sorted(arrived) == sorted(cells), "a cell lost or counted twice"
    assert all(result.records[c]["status"] == "done" for c in cells), [result.records[c].get("error") for c in cells]
    assert all(not result.records[c]["worker"].endswith(f":{killed['pid']}") for c in cells)
    assert result.records["runs/dose_1e3/baseline"]["row"]["root_cause"] == "positions-off-canvas"
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next tests


def test_cancel_stops_every_task_and_says_cancelled(demo_study_build, dask_client, tmp_path):
    from ptytui.errors import Cancelled
    from ptytui.study.cluster import run_study
    from ptytui.study.spec import load_study

    root = copy_study(demo_study_build, tmp_path / "study")
    study = load_study(_subset_study(root, ["runs/dose_1e3/pinn", "runs/dose_1e4/pinn", "runs/dose_1e5/pinn",
                                            "runs/dose_1e4/baseline"]))

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(Cancelled) as info:
        run_study(study, client=dask_client, on_record=interrupt)
    result = info.value.result
    assert result.cancelled and result.exit_code == 3
    assert len(result.records) == 1
    deadline = time.monotonic() + 30
    while any("ptytui-cell" in str(k) for keys in dask_client.processing().values() for k in keys):
        assert time.monotonic() < deadline, "cells still running after the cancel"
        time.sleep(0.2)


def test_the_cli_joins_a_scheduler_reports_a_bad_cell_and_exports(demo_study_build, dask_client, tmp_path, capsys):
    from ptytui.cli import main

    root = copy_study(demo_study_build, tmp_path / "study")
    broken = root / "runs" / "broken"
    broken.mkdir()
    (broken / "ptytui.toml").write_text("[workspace]\nname = 'x'\n[splits]\ntrain = 'missing.npz'\n")
    toml = _subset_study(root, ["runs/dose_1e3/baseline", "runs/broken"])
    out = tmp_path / "report"
    code = main(["study", str(toml), "--scheduler", dask_client.scheduler.address, "--json",
                 "--export", str(out)])
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert code == 2, captured.err
    cells = {c["cell"]: c for c in document["cells"]}
    assert cells["runs/dose_1e3/baseline"]["root_cause"] == "positions-off-canvas"
    assert cells["runs/broken"]["status"] == "error"
    assert "missing.npz" in cells["runs/broken"]["error"] and "\n" not in cells["runs/broken"]["error"]
    assert document["cluster"] == f"scheduler {dask_client.scheduler.address}"
    for name in ("study_report.md", "study_matrix.csv", "study_heatmap.png", "study.json"):
        assert (out / name).is_file(), name
    assert (out / "cells" / "runs_dose_1e3_baseline" / "report.md").is_file()
    report = (out / "study_report.md").read_text()
    assert "positions-off-canvas" in report and "not diagnosed" in report
    csv_lines = (out / "study_matrix.csv").read_text().splitlines()
    assert csv_lines[0].startswith("cell,status,error,worst_severity,root_cause") and len(csv_lines) == 3
    assert (out / "study_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_of_a_study_reuses_the_saved_run(study_run, tmp_path, capsys):
    from ptytui.cli import main

    root, _, _ = study_run
    out = tmp_path / "export"
    code = main(["export", str(root), "--out", str(out), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["reused"] is True
    for name in ("study_report.md", "study_matrix.csv", "study_heatmap.png"):
        assert (out / name).is_file(), name
    for cell in ("runs_dose_1e3_baseline", "runs_dose_1e4_pinn"):
        report = (out / "cells" / cell / "report.md").read_text()
        assert "Root cause" in report
    assert "positions-off-canvas" in (out / "cells" / "runs_dose_1e3_baseline" / "report.md").read_text()
