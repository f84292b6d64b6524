"""Faults: a model that raises mid-run ends the run in one RunFailed line; cancellation at any
batch ends every run in RunCancelled or RunFinished, never half; a process killed with SIGKILL
while appending to the decision log or writing a file atomically leaves whole files only."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptytui.core.events import (
    BatchDone,
    BatchSizeReduced,
    FirstPatch,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
)
from ptytui.core.tfload import keras, tf
from ptytui.inputs.grouping import group_split
from ptytui.inputs.models import LoadedModel, load_model, read_card
from ptytui.inputs.npz import open_split
from ptytui.running.inference import run_inference
from tests.helpers_npz import make_arrays, write_npz

N = 8
ROOT = Path(__file__).resolve().parents[2]
TERMINAL = (RunFinished, RunCancelled, RunFailed)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    data = write_npz(folder / "split.npz", make_arrays(N, nx=4, ny=3))  # 12 patterns
    k = keras()
    inp = k.Input((N, N, 1), name="input")
    model = folder / "model.keras"
    k.Model(inp, k.layers.ReLU(name="out")(k.layers.Rescaling(-1.0, offset=0.5)(inp))).save(model)
    split = open_split(data, name="test")
    return {"folder": folder, "data": data, "model": model, "split": split,
            "grouping": group_split(split, 1), "loaded": load_model(model)}


def failing_model(files, fail_at_call: int, error):
    """A model whose ``fail_at_call``-th call (1-based) and every later one raise ``error``."""
    k, t = keras(), tf()
    calls = {"n": 0}

    def check(n):
        calls["n"] += 1
        if calls["n"] >= fail_at_call:
            raise error
        return n

    class FailAt(k.layers.Layer):
        def call(self, x):
            n = t.py_function(check, [t.shape(x)[0]], t.int32)
            with t.control_dependencies([n]):
                return t.identity(x)

    inp = k.Input((N, N, 1), name="input")
    model = k.Model(inp, k.layers.ReLU(name="out")(FailAt()(inp)))
    card = read_card(files["model"])
    return LoadedModel(model=model, card=card, intensity_scale=None, kind="keras", loaded_from="memory",
                       fallback=None)


def assert_well_formed(events) -> None:
    """One RunStarted first, exactly one terminal event and it is the last; progress monotonic."""
    assert isinstance(events[0], RunStarted)
    terminals = [e for e in events if isinstance(e, TERMINAL)]
    assert len(terminals) == 1 and events[-1] is terminals[0]
    done = [e.done for e in events if isinstance(e, BatchDone)]
    assert done == sorted(done)


def test_out_of_memory_at_batch_1_with_batch_size_1_fails_the_run(files):
    loaded = failing_model(files, 2, tf().errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"))
    events = list(run_inference(loaded, files["split"], files["grouping"], model_name="oom", batch_size=1))
    assert_well_formed(events)
    failed = events[-1]
    assert isinstance(failed, RunFailed) and "\n" not in failed.message
    assert "OOM" in failed.message or "ResourceExhausted" in failed.message
    assert [e.done for e in events if isinstance(e, BatchDone)] == [1]  # batch 0 went through
    assert not any(isinstance(e, BatchSizeReduced) for e in events)


def test_out_of_memory_that_persists_halves_down_to_1_then_fails(files):
    loaded = failing_model(files, 2, tf().errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"))
    events = list(run_inference(loaded, files["split"], files["grouping"], model_name="oom", batch_size=4))
    assert_well_formed(events)
    assert [(e.old, e.new) for e in events if isinstance(e, BatchSizeReduced)] == [(4, 2), (2, 1)]
    assert isinstance(events[-1], RunFailed)


@pytest.mark.parametrize("error", [
    ValueError("bad value\n  with a second line\n  and a third"),
    RuntimeError("device lost"),
    ZeroDivisionError("division by zero"),
])
def test_any_other_exception_mid_run_is_one_failed_line(files, error):
    loaded = failing_model(files, 2, error)
    events = list(run_inference(loaded, files["split"], files["grouping"], model_name="boom", batch_size=3))
    assert_well_formed(events)
    failed = events[-1]
    assert isinstance(failed, RunFailed)
    assert "\n" not in failed.message and len(failed.message) <= 500
    assert str(error).splitlines()[0] in failed.message
    assert not any(isinstance(e, BatchSizeReduced) for e in events)  # not mistaken for OOM


def test_a_failing_model_through_the_cli_is_one_line_exit_2(files, capsys):
    """``ptytui stats`` turns a RunFailed into one stderr line (exit 2)."""
    from ptytui.inputs.workspace import workspace_from_flags
    from ptytui.running.session import Session

    session = Session(workspace_from_flags([str(files["model"])], [str(files["data"])]), batch_size=2)
    name = next(iter(session.workspace.models))
    session._models[name] = failing_model(files, 3, RuntimeError("kernel exploded\nat line 2"))
    events = list(session.stats_events(session.plan()))
    assert_well_formed(events)
    assert isinstance(events[-1], RunFailed) and "kernel exploded" in events[-1].message


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cancel_after=st.integers(0, 7), batch_size=st.sampled_from([2, 3, 5]))
def test_cancellation_at_any_batch_ends_the_run_cleanly(files, cancel_after, batch_size):
    cancel = threading.Event()
    events = []
    batches = 0
    for event in run_inference(files["loaded"], files["split"], files["grouping"], model_name="m",
                               batch_size=batch_size, cancel=cancel):
        events.append(event)
        if isinstance(event, BatchDone):
            batches += 1
        if batches >= cancel_after and not isinstance(event, RunStarted | FirstPatch):
            cancel.set()
        if cancel_after == 0 and isinstance(event, RunStarted):
            cancel.set()
    assert_well_formed(events)
    total_batches = -(-12 // batch_size)
    if cancel_after >= total_batches:
        assert isinstance(events[-1], RunFinished)
    else:
        assert isinstance(events[-1], RunCancelled)
        last_done = [e.done for e in events if isinstance(e, BatchDone)]
        assert events[-1].done == (last_done[-1] if last_done else 0)


@pytest.fixture(scope="module")
def session(files):
    """Two models x two splits, opened once (models and splits cached across examples)."""
    from ptytui.inputs.workspace import workspace_from_flags
    from ptytui.running.session import Session

    workspace = workspace_from_flags([str(files["model"]), str(files["model"])],
                                     [f"a={files['data']}", f"b={files['data']}"])
    return Session(workspace, batch_size=4)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cancel_at_check=st.integers(1, 12))
def test_cancellation_across_a_session_never_leaves_a_run_half(session, cancel_at_check):
    """A cancel callable that turns true at its n-th check, over two models x two splits."""
    checks = {"n": 0}

    def cancel() -> bool:
        checks["n"] += 1
        return checks["n"] >= cancel_at_check

    events = list(session.stats_events(session.plan(), cancel=cancel))
    runs, current = [], None
    for event in events:
        if isinstance(event, RunStarted):
            assert current is None, "a run started before the previous one ended"
            current = [event]
        else:
            assert current is not None, "an event outside a run"
            current.append(event)
            if isinstance(event, TERMINAL):
                runs.append(current)
                current = None
    assert current is None and len(runs) == 4
    for run in runs:
        assert_well_formed(run)


# ---- SIGKILL while writing --------------------------------------------------------------------

LOG_WRITER = r"""
import sys
from ptytui.inputs.decisions import append_decision
folder, start = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
i = start
while True:
    append_decision(folder, {"option": "skip-baseline", "rationale": f"decision {i} " + "x" * (i % 700),
                             "evidence": {"source": None, "findings": []}, "who": "test@host",
                             "when": "2025-01-01T00:00:00+00:00", "index": i})
    print(i, flush=True)  # acknowledged: append_decision returned
    i += 1
"""

ATOMIC_WRITER = r"""
import hashlib, sys
from ptytui.core.atomic import atomic_write_text
target = sys.argv[1]
print("ready", flush=True)
i = 1
while True:
    body = (f"{i:08d}" * (2000 + 977 * (i % 300)))
    atomic_write_text(target, f"{i}\n{hashlib.sha256(body.encode()).hexdigest()}\n{body}")
    print(i, flush=True)
    i += 1
"""


def _run_and_kill(script: str, args: list[str], delay: float) -> list[int]:
    """Start ``script``, let it write for ``delay`` seconds after it is ready, SIGKILL it;
    return what it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return [int(line) for line in out.split()]


def test_sigkill_while_appending_to_the_decision_log(tmp_path):
    from ptytui.inputs.decisions import DECISIONS_FILE, read_decision_log

    rng = random.Random(1)
    log = tmp_path / DECISIONS_FILE
    acknowledged: list[int] = []
    torn_before = 0
    next_index = 0
    for _ in range(4):
        acknowledged += _run_and_kill(LOG_WRITER, [str(tmp_path), str(next_index)], rng.uniform(0.05, 0.4))
        raw = log.read_bytes().split(b"\n")
        whole, tail = raw[:-1], raw[-1]
        bad = 0
        for line in whole:
            try:
                json.loads(line)
            except ValueError:
                bad += 1
        # Only a line torn by an earlier kill (sealed by the next append) may fail to parse.
        assert bad <= torn_before
        if tail:
            try:
                json.loads(tail)
            except ValueError:
                torn_before += 1
        decisions = read_decision_log(tmp_path).decisions
        indices = [d["index"] for d in decisions]
        assert set(acknowledged) <= set(indices), "an acknowledged append was lost"
        assert indices == sorted(indices) and len(set(indices)) == len(indices)
        next_index = (max(indices) + 1) if indices else next_index + 1000
    assert len(acknowledged) > 0


def test_sigkill_while_writing_a_file_atomically(tmp_path):
    from ptytui.core.atomic import atomic_write_text

    rng = random.Random(2)
    target = tmp_path / "report.md"
    body = "00000000" * 10
    atomic_write_text(target, f"0\n{hashlib.sha256(body.encode()).hexdigest()}\n{body}")
    versions = {0}
    for _ in range(5):
        acknowledged = _run_and_kill(ATOMIC_WRITER, [str(target)], rng.uniform(0.05, 0.5))
        text = target.read_text()
        version, digest, content = text.split("\n", 2)
        assert hashlib.sha256(content.encode()).hexdigest() == digest, "a torn file"
        # Old or new: the last acknowledged version, or the one being written when killed.
        newest = max(acknowledged, default=0)
        assert int(version) in (newest, newest + 1) or (not acknowledged and int(version) in versions | {1})
        versions.add(int(version))
    # Temporary files a kill left behind are hidden (dot-prefixed) and never the target itself.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "report.md"]
    assert all(name.startswith(".report.md.") for name in leftovers)


def test_atomic_writes_give_new_files_the_umask_mode_and_keep_an_existing_files_mode(tmp_path):
    # mkstemp makes 0o600 files: a report must be readable as a plain open() would make it, and
    # rewriting a user's file (ptytui.toml on retrain) must not narrow its permissions.
    import os
    import stat

    from ptytui.core.atomic import atomic_path, atomic_write_text

    umask = os.umask(0o027)
    try:
        fresh = atomic_write_text(tmp_path / "report.md", "# report\n")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
        kept = tmp_path / "ptytui.toml"
        kept.write_text("[workspace]\n")
        kept.chmod(0o604)
        atomic_write_text(kept, "[workspace]\nname = 'x'\n")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o604
        with atomic_path(tmp_path / "model.keras", suffix=".keras") as temp:
            temp.unlink()
            temp.write_bytes(b"zip")  # a writer that replaces the file, as Keras does
        assert stat.S_IMODE((tmp_path / "model.keras").stat().st_mode) == 0o640
    finally:
        os.umask(umask)
