"""The study file (``ptytui-study.toml``): its cells (workspaces with labels, listed or found by
a pattern such as ``runs/dose_{dose}/{view}/ptytui.toml``), run options and cluster settings.

Every problem is an ``InputError`` of one line naming the file and the key; unknown keys are
refused by name (a typo must not be silently ignored).
"""

from __future__ import annotations

import glob
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptytui.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STUDY_TOML = "ptytui-study.toml"
DEFAULT_SESSION = "study-session"
CLUSTER_KINDS = ("local", "slurm", "pbs")

_TOP_KEYS = {"study", "cell", "run", "cluster"}
_STUDY_KEYS = {"name", "description", "cells", "session"}
_CELL_KEYS = {"path", "labels", "id"}
_RUN_KEYS = {"batch_size", "n_groups", "seed", "trust", "split"}
_CLUSTER_KEYS = {"kind", "scheduler", "workers", "threads", "queue", "account", "cores", "processes",
                 "memory", "walltime", "jobs", "job_extra", "python", "interface", "local_directory"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Cell:
    """One cell of the study: a workspace (its ptytui.toml) and the labels that place it."""

    id: str
    path: Path
    labels: dict[str, str] = field(default_factory=dict)

    def label_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.labels.items()) or self.id


@dataclass(frozen=True)
class RunOptions:
    """How every cell is run: the options ``ptytui diagnose`` / ``compare`` take."""

    batch_size: int = 64
    n_groups: int | None = None
    seed: int = 0
    trust: bool = False
    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "n_groups": self.n_groups, "seed": self.seed,
                "trust": self.trust, "split": self.split}


@dataclass(frozen=True)
class ClusterSpec:
    """Where the cells run: a LocalCluster (default), an existing scheduler, or batch jobs
    started through dask-jobqueue (SLURM, PBS)."""

    kind: str = "local"
    scheduler: str | None = None
    workers: int | None = None  # local: worker processes (default one per core / GPU)
    threads: int | None = None  # TensorFlow threads per worker (default cores / workers)
    queue: str | None = None
    account: str | None = None
    cores: int | None = None
    processes: int | None = None
    memory: str | None = None
    walltime: str | None = None
    jobs: int | None = None
    job_extra: tuple[str, ...] = ()
    python: str | None = None
    interface: str | None = None
    local_directory: str | None = None


@dataclass(frozen=True)
class Study:
    """A parsed study file."""

    path: Path  # the study toml
    name: str
    cells: tuple[Cell, ...]
    run: RunOptions = RunOptions()
    cluster: ClusterSpec = ClusterSpec()
    session_dir: Path = Path(DEFAULT_SESSION)
    label_names: tuple[str, ...] = ()
    description: str = ""

    @property
    def root(self) -> Path:
        return self.path.parent


def find_study_toml(path: str | Path) -> Path | None:
    """The study toml that ``path`` names (the file itself, or a folder holding one); else None."""
    p = Path(path)
    if p.is_dir() and (p / STUDY_TOML).is_file():
        return p / STUDY_TOML
    if p.is_file() and p.name.endswith(".toml"):
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return p if p.name == STUDY_TOML else None
        return p if "study" in doc or p.name == STUDY_TOML else None
    return None


def load_study(path: str | Path) -> Study:
    """Read and validate a study file (a ``ptytui-study.toml`` or a folder holding one)."""
    p = Path(path)
    toml_path = p / STUDY_TOML if p.is_dir() else p
    where = str(toml_path)
    if not toml_path.is_file():
        raise InputError(str(p), f"a study file ({STUDY_TOML}) or a folder holding one", "no such file")
    try:
        doc = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(where, "a readable UTF-8 TOML file", " ".join(str(exc).split())) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(where, "valid TOML", f"a syntax error: {' '.join(str(exc).split())}") from None
    _no_unknown(where, "the top level", doc, _TOP_KEYS)
    table = _table(where, doc, "study")
    _no_unknown(where, "[study]", table, _STUDY_KEYS)
    root = toml_path.resolve().parent
    cells: list[Cell] = []
    label_names: list[str] = []
    pattern = table.get("cells")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern.strip():
            raise InputError(where, "[study] cells to be a path pattern such as "
                             "'runs/dose_{dose}/{view}/ptytui.toml'", repr(pattern))
        found, names = discover_cells(root, pattern)
        if not found:
            raise InputError(where, f"[study] cells '{pattern}' to match at least one workspace",
                             "no match", hint=f"looked under {root}")
        cells.extend(found)
        label_names.extend(names)
    listed = doc.get("cell", [])
    if not isinstance(listed, list):
        raise InputError(where, "[[cell]] tables (an array of tables)", type(listed).__name__)
    for i, entry in enumerate(listed):
        cells.append(_listed_cell(where, i, entry, root))
        for name in cells[-1].labels:
            if name not in label_names:
                label_names.append(name)
    if not cells:
        raise InputError(where, "cells: '[study] cells = PATTERN' or [[cell]] tables", "none")
    seen: dict[str, Path] = {}
    for cell in cells:
        if cell.id in seen:
            raise InputError(where, "each cell once", f"cell '{cell.id}' twice")
        seen[cell.id] = cell.path
    run = _run_options(where, doc.get("run", {}))
    cluster = _cluster_spec(where, doc.get("cluster", {}))
    session = table.get("session", DEFAULT_SESSION)
    if not isinstance(session, str) or not session:
        raise InputError(where, "[study] session to be a folder name", repr(session))
    session_dir = Path(session) if Path(session).is_absolute() else root / session
    name = table.get("name", root.name)
    return Study(path=toml_path, name=str(name), cells=tuple(cells), run=run, cluster=cluster,
                 session_dir=session_dir, label_names=tuple(label_names),
                 description=str(table.get("description", "")))


def discover_cells(root: Path, pattern: str) -> tuple[list[Cell], list[str]]:
    """Cells whose ptytui.toml matches ``pattern`` (placeholders ``{name}`` match one path part),
    sorted by their labels (numerically where a label is a number). A pattern naming a folder
    finds the ptytui.toml inside it."""
    names = []
    for name in _PLACEHOLDER.findall(pattern):
        if name not in names:
            names.append(name)
    regex_parts, last = [], 0
    seen: set[str] = set()
    for match in _PLACEHOLDER.finditer(pattern):
        regex_parts.append(re.escape(pattern[last:match.start()]))
        name = match.group(1)
        regex_parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)")
        seen.add(name)
        last = match.end()
    regex_parts.append(re.escape(pattern[last:]))
    regex = re.compile("".join(regex_parts) + r"(?:/ptytui\.toml)?")
    glob_pattern = _PLACEHOLDER.sub("*", pattern)
    cells = []
    for hit in sorted(glob.glob(str(root / glob_pattern))):
        hit_path = Path(hit)
        relative = hit_path.relative_to(root).as_posix()
        if hit_path.is_dir():
            if not (hit_path / "ptytui.toml").is_file():
                continue
            hit_path = hit_path / "ptytui.toml"
        match = regex.fullmatch(relative)
        if match is None:
            continue
        labels = {name: match.group(name) for name in names}
        cell_id = hit_path.parent.relative_to(root).as_posix()
        cells.append(Cell(id=cell_id, path=hit_path, labels=labels))
    cells.sort(key=lambda c: tuple(label_sort_key(c.labels.get(n, "")) for n in names))
    return cells, names


def label_sort_key(value: str) -> tuple:
    """Numbers first, in numeric order (``1e3 < 1e4``), then text."""
    try:
        number = float(value)
        if math.isfinite(number):
            return (0, number, "")
    except (TypeError, ValueError):
        pass
    return (1, 0.0, str(value))


def _label_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _listed_cell(where: str, index: int, entry: Any, root: Path) -> Cell:
    context = f"[[cell]] #{index + 1}"
    if not isinstance(entry, dict):
        raise InputError(where, f"{context} to be a table", type(entry).__name__)
    _no_unknown(where, context, entry, _CELL_KEYS)
    raw = entry.get("path")
    if not isinstance(raw, str) or not raw:
        raise InputError(where, f"{context} path to name a workspace folder or its ptytui.toml", repr(raw))
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = root / path
    if path.suffix != ".toml":
        path = path / "ptytui.toml"  # existence is checked when the cell runs (its own error)
    labels = entry.get("labels", {})
    if not isinstance(labels, dict):
        raise InputError(where, f"{context} labels to be a table such as {{ dose = 1e3 }}", repr(labels))
    labels = {str(k): _label_value(v) for k, v in labels.items()}
    cell_id = entry.get("id")
    if cell_id is None:
        try:
            cell_id = path.parent.relative_to(root).as_posix()
        except ValueError:
            cell_id = str(path.parent)
    return Cell(id=str(cell_id), path=path, labels=labels)


def _run_options(where: str, table: Any) -> RunOptions:
    if not isinstance(table, dict):
        raise InputError(where, "[run] to be a table", type(table).__name__)
    _no_unknown(where, "[run]", table, _RUN_KEYS)
    batch_size = _positive_int(where, "[run] batch_size", table.get("batch_size", 64))
    n_groups = table.get("n_groups")
    if n_groups is not None:
        n_groups = _positive_int(where, "[run] n_groups", n_groups)
    seed = table.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputError(where, "[run] seed to be an integer", repr(seed))
    trust = table.get("trust", False)
    if not isinstance(trust, bool):
        raise InputError(where, "[run] trust to be true or false", repr(trust))
    split = table.get("split")
    if split is not None and not isinstance(split, str):
        raise InputError(where, "[run] split to be a split name", repr(split))
    return RunOptions(batch_size=batch_size, n_groups=n_groups, seed=seed, trust=trust, split=split)


def _cluster_spec(where: str, table: Any) -> ClusterSpec:
    if not isinstance(table, dict):
        raise InputError(where, "[cluster] to be a table", type(table).__name__)
    _no_unknown(where, "[cluster]", table, _CLUSTER_KEYS)
    kind = table.get("kind", "local")
    if kind not in CLUSTER_KINDS:
        raise InputError(where, f"[cluster] kind to be one of {', '.join(CLUSTER_KINDS)}", repr(kind))
    values: dict[str, Any] = {"kind": kind}
    for key in ("workers", "threads", "cores", "processes", "jobs"):
        if key in table:
            values[key] = _positive_int(where, f"[cluster] {key}", table[key])
    for key in ("scheduler", "queue", "account", "memory", "walltime", "python", "interface",
                "local_directory"):
        if key in table:
            if not isinstance(table[key], str) or not table[key]:
                raise InputError(where, f"[cluster] {key} to be a string", repr(table[key]))
            values[key] = table[key]
    if "job_extra" in table:
        extra = table["job_extra"]
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise InputError(where, "[cluster] job_extra to be a list of strings such as "
                             "['--gres=gpu:1']", repr(extra))
        values["job_extra"] = tuple(extra)
    return ClusterSpec(**values)


def _positive_int(where: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(where, f"{key} to be a positive integer", repr(value))
    return value


def _table(where: str, doc: dict, key: str) -> dict:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise InputError(where, f"a [{key}] table", "none" if value is None else type(value).__name__)
    return value


def _no_unknown(where: str, context: str, table: dict, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(where, f"keys {sorted(allowed)} in {context}", f"unknown keys {unknown}",
                         hint="a typo?")
