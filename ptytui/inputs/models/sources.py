"""Finding what to read: the file, folder, archive member or bundle a user's path names.

A member of an archive is written ``ARCHIVE!/MEMBER``; ``fallback`` says whenever the file read
is not the one the caller plainly named (see the package docstring).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ptytui.errors import InputError
from ptytui.inputs.models.card import (
    BUNDLE_INFERENCE_MEMBER,
    BUNDLE_ZIP,
    HDF5_SIGNATURE,
    KIND_BUNDLE,
    KIND_H5,
    KIND_KERAS,
    KIND_SAVEDMODEL,
    MODEL_FOLDER_EXPECTED,
)

# --------------------------------------------------------------------------------------------
# Finding what to read
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """The file that will be read, as resolved from what the user named."""

    kind: str
    path: Path  # what the user named
    file: Path  # the .keras / .h5 file, SavedModel folder, bundle zip or unpacked bundle folder
    member: str | None = None  # for bundles: the model member, e.g. "diffraction_to_obj/model.keras"
    fallback: str | None = None

    @property
    def loaded_from(self) -> str:
        if self.member is None:
            return str(self.file)
        if self.file.is_dir():
            return str(self.file / self.member)
        return f"{self.file}!/{self.member}"


def _resolve(path: Path, expected: Iterable[str | Path] | None) -> _Source:
    path = path.expanduser()
    if not path.exists():
        raise InputError(path, "an existing model file or folder", "nothing at that path")
    path = path.resolve()
    if path.is_dir():
        return _resolve_folder(path, list(expected or []))
    return _resolve_file(path, path)


def _resolve_file(file: Path, named: Path, fallback: str | None = None) -> _Source:
    """Classify a file by its contents (not only its suffix)."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise InputError(file, "a readable model file", f"{type(exc).__name__}: {exc.strerror}") from None
    if head == HDF5_SIGNATURE or (file.suffix.lower() in (".h5", ".hdf5") and _is_hdf5(file)):
        return _Source(KIND_H5, named, file, fallback=fallback)
    if zipfile.is_zipfile(file):
        try:
            with zipfile.ZipFile(file) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(file, "a readable zip archive", f"{type(exc).__name__}: {exc}") from None
        if "config.json" in names:
            return _Source(KIND_KERAS, named, file, fallback=fallback)
        member, member_fallback = _choose_bundle_member(names, file)
        if member is not None:
            return _Source(KIND_BUNDLE, named, file, member=member,
                           fallback=_join_fallbacks(fallback, member_fallback))
        raise InputError(file, "a Keras 3 archive (config.json) or a PtychoPINN bundle (*/model.keras)",
                         f"a zip holding {_short_list(names)}")
    suffix = file.suffix.lower()
    if suffix == ".keras":
        raise InputError(file, "a Keras 3 archive (.keras zip with config.json)",
                         "not a zip file (truncated or corrupt?)")
    if suffix in (".h5", ".hdf5"):
        raise InputError(file, "an HDF5 model file", "not an HDF5 file (truncated or corrupt?)")
    if suffix == ".zip":
        raise InputError(file, "a PtychoPINN bundle (wts.h5.zip)", "not a zip file (truncated or corrupt?)")
    raise InputError(file, MODEL_FOLDER_EXPECTED, f"a file that is none of these (starts {head[:8]!r})")


def _is_hdf5(file: Path) -> bool:
    try:
        import h5py  # noqa: PLC0415

        return bool(h5py.is_hdf5(str(file)))
    except Exception:  # noqa: BLE001 - a file h5py cannot even probe is not HDF5 for us
        return False


def _choose_bundle_member(names: list[str], file: Path) -> tuple[str | None, str | None]:
    """The bundle's model member: diffraction_to_obj, else another one (said loudly)."""
    preferred = f"{BUNDLE_INFERENCE_MEMBER}/model.keras"
    if preferred in names:
        return preferred, None
    others = sorted(n for n in names if n.endswith("/model.keras") and n.count("/") == 1)
    if not others:
        return None, None
    return others[0], (f"{file.name} has no {preferred} (the inference model); read {others[0]} "
                       f"instead, which is a different graph (its inputs and outputs differ)")


def _model_candidates(folder: Path) -> list[tuple[int, Path, str, str]]:
    """(priority, path, kind, why) for every model-looking entry in a folder, best first."""
    found = []
    if (folder / BUNDLE_ZIP).is_file():
        found.append((0, folder / BUNDLE_ZIP, KIND_BUNDLE, "a PtychoPINN bundle takes precedence"))
    elif (folder / BUNDLE_INFERENCE_MEMBER / "model.keras").is_file():
        found.append((0, folder, KIND_BUNDLE, "an unpacked PtychoPINN bundle takes precedence"))
    for entry in sorted(folder.iterdir()):
        name = entry.name.lower()
        if entry.is_file() and name.endswith(".keras"):
            found.append((1, entry, KIND_KERAS, ".keras archives come before .h5 files"))
        elif entry.is_file() and name.endswith((".h5", ".hdf5")) and not name.endswith(".weights.h5"):
            if _h5_has_model_config(entry):
                found.append((2, entry, KIND_H5, ".h5 model files come before SavedModel folders"))
        elif entry.is_dir() and (entry / "saved_model.pb").is_file():
            found.append((3, entry, KIND_SAVEDMODEL, "a SavedModel folder was the only kind left"))
    return sorted(found, key=lambda item: (item[0], str(item[1])))


def _h5_has_model_config(file: Path) -> bool:
    try:
        import h5py  # noqa: PLC0415

        with h5py.File(file, "r") as handle:
            return "model_config" in handle.attrs
    except Exception:  # noqa: BLE001 - unreadable files are simply not candidates
        return False


def _resolve_folder(folder: Path, expected: list[str | Path]) -> _Source:
    if (folder / "saved_model.pb").is_file():
        return _Source(KIND_SAVEDMODEL, folder, folder)
    expected_note = None
    if expected:
        for name in expected:
            candidate = Path(name)
            candidate = candidate if candidate.is_absolute() else folder / candidate
            if candidate.exists():
                return _resolve_child(candidate, folder, None)
        expected_note = (f"expected {' or '.join(str(e) for e in expected)} in {folder}: not found")
    if (folder / BUNDLE_INFERENCE_MEMBER / "model.keras").is_file() and not (folder / BUNDLE_ZIP).is_file():
        # an unpacked bundle folder is a bundle, not a folder of candidates
        members = [f"{p.parent.name}/model.keras" for p in folder.glob("*/model.keras")]
        if not _model_candidates_outside_bundle(folder):
            member, member_fallback = _choose_bundle_member(members, folder)
            fallback = _join_fallbacks(_loaded_instead(expected_note, folder, KIND_BUNDLE), member_fallback)
            return _Source(KIND_BUNDLE, folder, folder, member=member, fallback=fallback)
    candidates = _model_candidates(folder)
    if not candidates:
        entries = sorted(p.name for p in folder.iterdir())
        found = "an empty folder" if not entries else f"a folder holding {_short_list(entries)}"
        raise InputError(folder, MODEL_FOLDER_EXPECTED, found)
    _, chosen, kind, why = candidates[0]
    fallback = _loaded_instead(expected_note, chosen, kind)
    if len(candidates) > 1:
        names = ", ".join(_display_name(p, folder) for _, p, _, _ in candidates)
        fallback = _join_fallbacks(fallback, f"{folder} holds {len(candidates)} models ({names}); "
                                             f"chose {_display_name(chosen, folder)} ({why})")
    return _resolve_child(chosen, folder, fallback)


def _model_candidates_outside_bundle(folder: Path) -> bool:
    return any(kind != KIND_BUNDLE for _, _, kind, _ in _model_candidates(folder))


def _resolve_child(candidate: Path, folder: Path, fallback: str | None) -> _Source:
    if candidate.is_dir():
        if (candidate / "saved_model.pb").is_file():
            return _Source(KIND_SAVEDMODEL, folder, candidate, fallback=fallback)
        if (candidate / BUNDLE_INFERENCE_MEMBER / "model.keras").is_file():
            members = [f"{p.parent.name}/model.keras" for p in candidate.glob("*/model.keras")]
            member, member_fallback = _choose_bundle_member(members, candidate)
            return _Source(KIND_BUNDLE, folder, candidate, member=member,
                           fallback=_join_fallbacks(fallback, member_fallback))
        if candidate != folder:
            inner = _resolve_folder(candidate, [])
            inner.path = folder
            inner.fallback = _join_fallbacks(fallback, inner.fallback)
            return inner
        raise InputError(candidate, MODEL_FOLDER_EXPECTED, "a folder with none of these")
    return _resolve_file(candidate, folder, fallback)


def _loaded_instead(expected_note: str | None, chosen: Path, kind: str) -> str | None:
    if expected_note is None:
        return None
    what = {KIND_BUNDLE: "a PtychoPINN bundle", KIND_KERAS: "a .keras model", KIND_H5: "an .h5 model",
            KIND_SAVEDMODEL: "a SavedModel"}[kind]
    return f"{expected_note}; loaded {chosen.name} ({what}) instead"


def _display_name(path: Path, folder: Path) -> str:
    return "." if path == folder else path.name


def _join_fallbacks(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def _short_list(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} entries)" if len(names) > limit else shown

