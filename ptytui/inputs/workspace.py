"""A workspace: which data splits, models and reference reconstruction a study compares, and how
each model is fed. Read from ``ptytui.toml`` (paths relative to it) or built from CLI flags.

Every problem in the toml or the flags is an ``InputError`` of one line naming the file and key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptytui.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

__all__ = [
    "DEFAULT_POSITION_MODE",
    "POSITION_MODES",
    "POSITION_MODE_MEANINGS",
    "TOML_NAME",
    "ModelEntry",
    "ReferenceEntry",
    "Workspace",
    "canonical_label",
    "load_workspace",
    "workspace_from_flags",
]

TOML_NAME = "ptytui.toml"
# Session folder used when a workspace comes from --model/--data flags (relative to the cwd).
FLAGS_SESSION_DIR = "ptytui-session"

# How a model's position input is fed (``ModelEntry.positions``, ``--positions``, the feeding in
# ptytui.running.inference): the one list of modes, each with its one-line meaning.
POSITION_MODE_MEANINGS = {
    "absolute": "the scan positions in object pixels: the incident's mistake",
    "relative": "-(position - group mean), what a PtychoPINN model expects; zeros at gridsize 1",
    "zero": "all zeros",
}
POSITION_MODES = tuple(POSITION_MODE_MEANINGS)
# The mode used when none is set: relative, as a PtychoPINN pipeline feeds its models.
DEFAULT_POSITION_MODE = "relative"
EXPECTED_KINDS = ("pinn", "supervised")
INTENSITY_SCALE_MODES = ("apply", "none")

# Keys each table accepts; anything else is refused by name (a typo must not be silently ignored).
_TOP_KEYS = {"workspace", "splits", "models", "reference"}
_WORKSPACE_KEYS = {"name", "session", "trust", "description"}
_MODEL_KEYS = {"path", "label", "gridsize", "positions", "intensity_scale", "expected_kind", "trust", "description"}
_REFERENCE_KEYS = {"path", "label", "split", "description"}

# Canonical model / reference ids (the metrics CSV uses them); matched case-insensitively.
_CANONICAL_LABELS = {
    "ptychopinn": "PtychoPINN",
    "pinn": "PtychoPINN",
    "baseline": "Baseline",
    "ptychi": "PtyChi",
    "pty-chi": "PtyChi",
    "tike": "Tike",
}


def canonical_label(label: str) -> str:
    """The canonical id for a label ("pinn" -> "PtychoPINN", "pty-chi" -> "PtyChi"); others unchanged."""
    return _CANONICAL_LABELS.get(label.strip().lower(), label)


@dataclass
class ModelEntry:
    """One model of the workspace and how to feed it.

    Attributes
    ----------
    name : the table name in ``[models.NAME]`` (or the file stem in flags mode).
    path : the model file or bundle directory (absolute).
    label : canonical id: "PtychoPINN", "Baseline" or another free label.
    gridsize : int, or None to infer it from the model.
    positions : one of ``POSITION_MODES``, or None for ``DEFAULT_POSITION_MODE`` (relative).
    intensity_scale : "apply" (multiply the diffraction input by the model's own intensity scale,
        as PtychoPINN does), "none", or a float used instead.
    expected_kind : "pinn" | "supervised" | None: what the study believed the model is.
    trust : allow pickled custom objects / unsafe deserialization for this model.
    description : free text from the toml (a retrain records there what it replaced, and when).
    """

    name: str
    path: Path
    label: str
    gridsize: int | None = None
    positions: str | None = None
    intensity_scale: str | float = "apply"
    expected_kind: str | None = None
    trust: bool = False
    description: str | None = None

    @property
    def effective_positions(self) -> str:
        """The position mode actually used: ``positions`` or ``DEFAULT_POSITION_MODE`` when unset."""
        return self.positions or DEFAULT_POSITION_MODE


@dataclass
class ReferenceEntry:
    """An iterative reconstruction to compare against (pty-chi / Tike NPZ)."""

    path: Path
    label: str
    split: str | None


@dataclass
class Workspace:
    """A study's splits, models and reference, with paths resolved.

    Attributes
    ----------
    root : the folder the paths are relative to (the toml's folder, or the cwd in flags mode).
    toml_path : the ptytui.toml, or None when built from flags.
    name : display name.
    splits : split name -> NPZ path (absolute), in toml order.
    models : model name -> ModelEntry, in toml order.
    reference : ReferenceEntry or None.
    session_dir : where measurements, findings and decisions of this workspace are kept.
    trust : read pickled split metadata (``[workspace] trust = true`` or --trust).
    """

    root: Path
    toml_path: Path | None
    name: str
    splits: dict[str, Path]
    models: dict[str, ModelEntry] = field(default_factory=dict)
    reference: ReferenceEntry | None = None
    session_dir: Path = Path(FLAGS_SESSION_DIR)
    trust: bool = False
    source_text: str = ""  # the toml text, or a canonical JSON of the flags (hashed by hash())

    def hash(self) -> str:
        """Identity of this workspace's inputs, for caching measurements.

        sha256 over: the toml text (in flags mode, a canonical JSON of the flags), then for every
        referenced path (splits, models, reference; sorted) its resolved path, size and mtime in
        nanoseconds; directories (bundles, SavedModels) contribute every file below them. File
        contents are not read, so the hash is cheap even for large splits; touching or replacing
        a file changes it.
        """
        h = hashlib.sha256()
        h.update(self.source_text.encode("utf-8"))
        referenced = list(self.splits.values()) + [m.path for m in self.models.values()]
        if self.reference is not None:
            referenced.append(self.reference.path)
        for path in sorted({Path(p).resolve() for p in referenced}, key=str):
            for file in _files_under(path):
                try:
                    st = file.stat()
                    h.update(f"\0{file}\0{st.st_size}\0{st.st_mtime_ns}".encode())
                except OSError:
                    h.update(f"\0{file}\0missing".encode())
        return h.hexdigest()

    def split_path(self, name: str) -> Path:
        """The NPZ path of split ``name``; InputError naming the known splits otherwise."""
        if name not in self.splits:
            raise InputError(self._where(), f"a split named one of {sorted(self.splits)}", repr(name))
        return self.splits[name]

    def model(self, name: str) -> ModelEntry:
        """The model ``name``; InputError naming the known models otherwise."""
        if name not in self.models:
            raise InputError(self._where(), f"a model named one of {sorted(self.models)}", repr(name))
        return self.models[name]

    def open_split(self, name: str, *, trust: bool | None = None):
        """Open split ``name`` with ptytui.inputs.npz.open_split (trust defaults to the workspace's)."""
        # numpy loads with the first split opened, not with the workbench's first frame.
        from ptytui.inputs.npz import open_split  # noqa: PLC0415

        return open_split(self.split_path(name), name, trust=self.trust if trust is None else trust)

    def _where(self) -> str:
        return str(self.toml_path) if self.toml_path is not None else "workspace"


def _files_under(path: Path) -> list[Path]:
    if path.is_dir():
        out = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            out.extend(Path(dirpath) / f for f in sorted(filenames))
        return out
    return [path]


# --------------------------------------------------------------------------------------------
# ptytui.toml
# --------------------------------------------------------------------------------------------


def load_workspace(path: str | Path) -> Workspace:
    """Read and validate a workspace.

    Parameters
    ----------
    path : str or Path
        A folder containing ``ptytui.toml``, or the toml file itself.

    Returns
    -------
    Workspace
        Paths resolved against the toml's folder; every referenced file checked to exist.

    Raises
    ------
    InputError
        One line naming the toml (and key) for: no toml, TOML syntax (with line and column),
        unknown tables or keys, missing ``[splits]``, a missing path, a path that does not exist,
        an unknown positions / intensity_scale / expected_kind value, a bad gridsize, a reference
        naming an unknown split.
    """
    p = Path(path)
    if p.is_dir():
        toml_path = p / TOML_NAME
        if not toml_path.is_file():
            raise InputError(str(p), f"a folder containing {TOML_NAME}", "no such file in it",
                             hint="or use --model/--data")
    elif p.is_file():
        toml_path = p
    else:
        raise InputError(str(p), f"a workspace folder or a {TOML_NAME} file", "no such file or folder")
    where = str(toml_path)
    try:
        text = toml_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(where, "a UTF-8 TOML text file", f"binary data (byte 0x{exc.object[exc.start]:02x} at "
                         f"offset {exc.start} is not UTF-8)", hint=f"is this the workspace's {TOML_NAME}?") from None
    except OSError as exc:
        raise InputError(where, "a readable UTF-8 TOML file", " ".join(str(exc).split())) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(where, "valid TOML", f"a syntax error: {' '.join(str(exc).split())}") from None
    root = toml_path.resolve().parent
    return _workspace_from_doc(doc, where, root, toml_path, text)


def _workspace_from_doc(doc: dict, where: str, root: Path, toml_path: Path, text: str) -> Workspace:
    _no_unknown_keys(where, "the top level", doc, _TOP_KEYS)

    ws_table = _table(where, doc, "workspace")
    _no_unknown_keys(where, "[workspace]", ws_table, _WORKSPACE_KEYS)
    name = _string(where, "workspace.name", ws_table.get("name", root.name))
    session = _string(where, "workspace.session", ws_table.get("session", "session"))
    trust = _boolean(where, "workspace.trust", ws_table.get("trust", False))

    if "splits" not in doc:
        raise InputError(where, "a [splits] table naming at least one NPZ (e.g. test = \"data/test.npz\")",
                         "no [splits] table")
    splits_table = _table(where, doc, "splits")
    if not splits_table:
        raise InputError(where, "at least one split in [splits]", "an empty [splits] table")
    splits: dict[str, Path] = {}
    for split_name, raw in splits_table.items():
        splits[split_name] = _existing_path(where, f"splits.{split_name}", raw, root, want="file")

    models: dict[str, ModelEntry] = {}
    for model_name, table in _table(where, doc, "models").items():
        key = f"models.{model_name}"
        if not isinstance(table, dict):
            raise InputError(where, f"[{key}] to be a table", f"{type(table).__name__} {table!r}")
        models[model_name] = _model_entry(where, model_name, table, root)

    reference = None
    if "reference" in doc:
        ref = _table(where, doc, "reference")
        _no_unknown_keys(where, "[reference]", ref, _REFERENCE_KEYS)
        if "path" not in ref:
            raise InputError(where, "reference.path (the reconstruction NPZ)", "no path key")
        ref_path = _existing_path(where, "reference.path", ref["path"], root, want="file")
        label = canonical_label(_string(where, "reference.label", ref.get("label", "reference")))
        ref_split = ref.get("split")
        if ref_split is None:
            ref_split = "test" if "test" in splits else (next(iter(splits)) if len(splits) == 1 else None)
        else:
            ref_split = _string(where, "reference.split", ref_split)
            if ref_split not in splits:
                raise InputError(where, f"reference.split to name one of the splits {sorted(splits)}", repr(ref_split))
        reference = ReferenceEntry(ref_path, label, ref_split)

    return Workspace(root=root, toml_path=toml_path, name=name, splits=splits, models=models,
                     reference=reference, session_dir=(root / session), trust=trust, source_text=text)


def _model_entry(where: str, name: str, table: dict, root: Path) -> ModelEntry:
    key = f"models.{name}"
    _no_unknown_keys(where, f"[{key}]", table, _MODEL_KEYS)
    if "path" not in table:
        raise InputError(where, f"{key}.path (a .keras/.h5 file, SavedModel or bundle folder)", "no path key")
    path = _existing_path(where, f"{key}.path", table["path"], root, want="any")
    label = canonical_label(_string(where, f"{key}.label", table.get("label", name)))

    gridsize = table.get("gridsize")
    if gridsize is not None and (isinstance(gridsize, bool) or not isinstance(gridsize, int) or gridsize < 1):
        raise InputError(where, f"{key}.gridsize an integer >= 1 (or absent to infer it)", repr(gridsize))

    positions = table.get("positions")
    if positions is not None and positions not in POSITION_MODES:
        raise InputError(where, f"{key}.positions one of {list(POSITION_MODES)}", repr(positions))

    scale = table.get("intensity_scale", "apply")
    if isinstance(scale, bool) or not (scale in INTENSITY_SCALE_MODES or isinstance(scale, (int, float))):
        raise InputError(where, f"{key}.intensity_scale \"apply\", \"none\" or a number", repr(scale))
    if isinstance(scale, (int, float)):
        if not math.isfinite(scale) or scale <= 0:
            raise InputError(where, f"{key}.intensity_scale a finite number > 0", repr(scale))
        scale = float(scale)

    kind = table.get("expected_kind")
    if kind is not None and kind not in EXPECTED_KINDS:
        raise InputError(where, f"{key}.expected_kind one of {list(EXPECTED_KINDS)}", repr(kind))
    trust = _boolean(where, f"{key}.trust", table.get("trust", False))
    description = table.get("description")
    return ModelEntry(name=name, path=path, label=label, gridsize=gridsize, positions=positions,
                      intensity_scale=scale, expected_kind=kind, trust=trust,
                      description=None if description is None else str(description))


def _no_unknown_keys(where: str, context: str, table: dict, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(where, f"keys {sorted(allowed)} in {context}", f"unknown keys {unknown}",
                         hint="a typo?")


def _table(where: str, doc: dict, key: str) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise InputError(where, f"[{key}] to be a table", f"{type(value).__name__} {value!r}")
    return value


def _string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(where, f"{key} a non-empty string", repr(value))
    return value


def _boolean(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(where, f"{key} true or false", repr(value))
    return value


def _existing_path(where: str, key: str, raw: Any, root: Path, *, want: str) -> Path:
    """Resolve ``raw`` against ``root`` and check it exists (want: "file" or "any")."""
    text = _string(where, key, raw)
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = root / path
    if not path.exists():
        raise InputError(where, f"{key} to name an existing {'file' if want == 'file' else 'path'}",
                         f"'{text}' (no such file: {path})")
    if want == "file" and not path.is_file():
        raise InputError(where, f"{key} to name a file", f"'{text}' is a directory")
    return path


# --------------------------------------------------------------------------------------------
# --model / --data flags
# --------------------------------------------------------------------------------------------


def workspace_from_flags(models: list[str], data: list[str], *, positions: str | None = None,
                         trust: bool = False) -> Workspace:
    """Build a workspace from ``--model PATH`` and ``--data [NAME=]NPZ`` flags.

    Parameters
    ----------
    models : list of str
        Model paths; each model is named after its file stem (made unique with a suffix) and fed
        the way a PtychoPINN pipeline feeds it: gridsize inferred from the model, relative
        positions, the model's own intensity scale applied.
    data : list of str
        ``NAME=PATH`` entries (``--data train=A.npz --data test=B.npz``); a single plain path
        becomes the split "data", several plain paths are named by their file stems.
    positions : str, optional
        One of ``POSITION_MODES``: how every model is fed positions (None: relative).
    trust : bool
        --trust: read pickled metadata and allow unsafe model deserialization.

    Returns
    -------
    Workspace
        root = the current folder, toml_path None, session_dir = ./ptytui-session.
    """
    if positions is not None and positions not in POSITION_MODES:
        raise InputError("--positions", f"one of {list(POSITION_MODES)}", repr(positions))
    if not data:
        raise InputError("--data", "at least one NPZ (--data PATH or --data NAME=PATH)", "none")
    root = Path.cwd()
    splits: dict[str, Path] = {}
    plain = [d for d in data if _split_name_and_path(d)[0] is None]
    for entry in data:
        split_name, raw = _split_name_and_path(entry)
        if split_name is None:
            split_name = "data" if len(plain) == 1 else Path(raw).stem
        if split_name in splits:
            raise InputError("--data", "distinct split names", f"{split_name!r} given twice")
        path = Path(os.path.expanduser(raw))
        if not path.is_absolute():
            path = root / path
        if not path.is_file():
            found = "a directory" if path.is_dir() else "no such file"
            raise InputError(f"--data {entry}", "an existing NPZ file", found)
        splits[split_name] = path

    entries: dict[str, ModelEntry] = {}
    for raw in models:
        path = Path(os.path.expanduser(raw))
        if not path.is_absolute():
            path = root / path
        if not path.exists():
            raise InputError(f"--model {raw}", "an existing model file or bundle folder", "no such file")
        base = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.stem
        model_name, n = base, 2
        while model_name in entries:
            model_name, n = f"{base}_{n}", n + 1
        entries[model_name] = ModelEntry(name=model_name, path=path, label=canonical_label(base),
                                         positions=positions, trust=trust)

    source = json.dumps({"models": [str(m.path) for m in entries.values()],
                         "data": {k: str(v) for k, v in splits.items()},
                         "positions": positions, "trust": trust}, sort_keys=True)
    return Workspace(root=root, toml_path=None, name="flags", splits=splits, models=entries,
                     reference=None, session_dir=root / FLAGS_SESSION_DIR, trust=trust, source_text=source)


def _split_name_and_path(entry: str) -> tuple[str | None, str]:
    """("train", "A.npz") for "train=A.npz"; (None, entry) for a plain path (even one with '=')."""
    name, sep, rest = entry.partition("=")
    if sep and name.isidentifier() and rest and not Path(entry).exists():
        return name, rest
    return None, entry
