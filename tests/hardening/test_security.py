"""Security: nothing from a file runs without --trust (a pickle in an NPZ's _metadata or in a
bundle's custom_objects.dill / params.dill, a Lambda layer in a .keras), unpickling and unsafe
deserialization appear in the source only behind trust, and nothing listens on the network."""

from __future__ import annotations

import ast
import functools
import json
import os
import pickle
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptytui.cli import main
from tests.helpers_npz import make_arrays, write_npz

N = 8
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "ptytui"


class TouchOnLoad:
    """Unpickling this creates ``marker``: stands for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from ptytui.core.tfload import keras

    k = keras()
    inp = k.Input((N, N, 1), name="input")
    path = tmp_path_factory.mktemp("security_model") / "model.keras"
    k.Model(inp, k.layers.ReLU(name="amplitude")(inp)).save(path)
    return path


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_payload_is_live(tmp_path):
    """The positive control: unpickling the payload really runs code."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(TouchOnLoad(marker)))
    assert marker.exists()


def test_pickle_in_npz_metadata_is_not_run_without_trust(tmp_path, model_path, capsys):
    marker = tmp_path / "metadata_ran"
    data = tmp_path / "evil_meta.npz"
    np.savez(data, **make_arrays(N, nx=3, ny=2), _metadata=np.array(TouchOnLoad(marker), dtype=object))
    code, out, err = run_cli(["stats", "--model", model_path, "--data", data, "--json"], capsys)
    assert code == 0 and not marker.exists()  # the split is used, its pickle never read
    code, out, err = run_cli(["stats", "--model", model_path, "--data", data, "--json", "--trust"], capsys)
    assert marker.exists()  # with --trust the pickle is read (and runs): trust means trust


def test_pickled_array_in_place_of_data_is_refused_without_trust(tmp_path, model_path, capsys):
    marker = tmp_path / "array_ran"
    arrays = make_arrays(N, nx=3, ny=2)
    arrays["xcoords"] = np.array([TouchOnLoad(marker)] * arrays["xcoords"].size, dtype=object)
    data = tmp_path / "evil_array.npz"
    np.savez(data, **arrays)
    code, _, err = run_cli(["stats", "--model", model_path, "--data", data], capsys)
    assert code == 2 and "pickled" in err and "evil_array.npz" in err and not marker.exists()


def _bundle(folder: Path, model_path: Path, marker_custom: Path, marker_params: Path) -> Path:
    bundle = folder / "bundle"
    bundle.mkdir()
    with zipfile.ZipFile(bundle / "wts.h5.zip", "w") as zf:
        zf.write(model_path, "diffraction_to_obj/model.keras")
        zf.writestr("diffraction_to_obj/custom_objects.dill", pickle.dumps(TouchOnLoad(marker_custom)))
        zf.writestr("diffraction_to_obj/params.dill", pickle.dumps(TouchOnLoad(marker_params)))
    return bundle


def test_bundle_pickles_are_not_run_without_trust(tmp_path, model_path, capsys):
    markers = tmp_path / "custom_ran", tmp_path / "params_ran"
    bundle = _bundle(tmp_path, model_path, *markers)
    data = write_npz(tmp_path / "data.npz", make_arrays(N, nx=3, ny=2))
    code, out, _ = run_cli(["card", bundle, "--json"], capsys)
    card = json.loads(out)
    assert code == 0 and card["kind"] == "ptychopinn-bundle"
    assert any("not read without --trust" in w for w in card.get("warnings", []))
    code, _, err = run_cli(["stats", "--model", bundle, "--data", data, "--json"], capsys)
    assert code == 0, err
    assert not any(m.exists() for m in markers)


def test_lambda_layer_is_not_deserialized_without_trust(tmp_path, capsys):
    """A Lambda layer's code runs when Keras rebuilds the model; safe mode must refuse it."""
    from ptytui.core.tfload import keras

    k = keras()
    marker = tmp_path / "lambda_ran"
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
    inp = k.Input((N, N, 1), name="input")
    path = tmp_path / "lambda.keras"
    k.Model(inp, k.layers.Lambda(touch, name="evil")(inp)).save(path)
    marker.unlink(missing_ok=True)  # building the model ran it once, here in the test
    data = write_npz(tmp_path / "data.npz", make_arrays(N, nx=3, ny=2))

    code, out, _ = run_cli(["card", path, "--json"], capsys)
    assert code == 0 and not marker.exists()
    code, _, err = run_cli(["stats", "--model", path, "--data", data], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "--trust" in lines[0] and "lambda.keras" in lines[0]
    assert not marker.exists()
    code, _, err = run_cli(["stats", "--model", path, "--data", data, "--trust", "--json"], capsys)
    assert code == 0 and marker.exists()  # the positive control: with --trust it is loaded


# ---- the source tree -------------------------------------------------------------------------


def _python_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=1)
def _parsed() -> tuple[tuple[Path, ast.AST], ...]:
    return tuple((path, _with_parents(ast.parse(path.read_text(encoding="utf-8")))) for path in _python_files())


def _with_parents(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node  # type: ignore[attr-defined]
    return tree


def _guarded_by_trust(node: ast.AST) -> bool:
    """True when an enclosing `if` tests something named *trust*, or the enclosing function
    says in its name that it is only called with trust."""
    current = node
    while hasattr(current, "parent"):
        current = current.parent  # type: ignore[attr-defined]
        if isinstance(current, ast.If) and "trust" in ast.unparse(current.test):
            return True
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)) and "trusted" in current.name:
            return True
    return False


def test_the_trust_guard_check_tells_guarded_from_unguarded_calls():
    code = ("def f(path, trust):\n"
            "    if trust:\n"
            "        np.load(path, allow_pickle=True)\n"
            "    np.load(path, allow_pickle=True)\n")
    calls = sorted((n for n in ast.walk(_with_parents(ast.parse(code))) if isinstance(n, ast.Call)),
                   key=lambda n: n.lineno)
    assert [_guarded_by_trust(c) for c in calls] == [True, False]


def test_np_load_and_read_array_never_allow_pickle_unless_trusted():
    offending = []
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg != "allow_pickle":
                    continue
                value = ast.unparse(keyword.value)
                if value == "False" or value in ("trust", "allow_pickle"):
                    continue  # off, or passed through from the caller's trust / guarded parameter
                if value == "True" and _guarded_by_trust(node):
                    continue
                offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: allow_pickle={value}")
    assert not offending, offending


def test_unpickling_and_unsafe_keras_only_behind_trust():
    offending = []
    loaders = re.compile(r"^(pickle|dill|cloudpickle|joblib|marshal|shelve|torch)\.(load|loads|open)$")
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if loaders.match(name) and not _guarded_by_trust(node):
                    offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
                if name.endswith("enable_unsafe_deserialization"):
                    offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
                for keyword in node.keywords:
                    if keyword.arg == "safe_mode" and ast.unparse(keyword.value) not in ("True", "not trust"):
                        offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: safe_mode="
                                         f"{ast.unparse(keyword.value)}")
    assert not offending, offending


NETWORK_SERVERS = re.compile(
    r"socketserver|http\.server|HTTPServer|xmlrpc\.server|SimpleXMLRPCServer|start_server|create_server"
    r"|socket\.socket\(|\.listen\(|\.bind\(\(|multiprocessing\.connection|Listener\(|aiohttp|websockets"
    r"|flask|fastapi|uvicorn|textual_serve|\bServer\(")


def test_the_source_starts_no_network_server():
    hits = []
    for path in _python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if NETWORK_SERVERS.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, hits


def _listening_inodes() -> set[str]:
    """Socket inodes in LISTEN state (TCP) or bound (UDP) on this machine."""
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            state, inode = fields[3], fields[9]
            if table.startswith("udp") or state == "0A":  # 0A: TCP_LISTEN
                inodes.add(inode)
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[len("socket:["):-1])
    except OSError:
        pass
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_ptytui_stats_opens_no_listening_socket(tmp_path, model_path):
    data = write_npz(tmp_path / "data.npz", make_arrays(N, nx=6, ny=5))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "ptytui", "stats", "--model", str(model_path),
                             "--data", str(data), "--batch-size", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    samples, listening = 0, set()
    while proc.poll() is None:
        owned = _socket_inodes(proc.pid)
        listening |= owned & _listening_inodes()
        samples += 1
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["runs"][0]["n_samples"] == 30
    assert samples > 5  # it was watched while it ran
    assert not listening
