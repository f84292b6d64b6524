"""Model loading and the model card: what a saved model is, read from its files without running it.

Handles Keras 3 ``.keras`` archives, legacy ``.h5`` files, SavedModel folders and PtychoPINN
bundles (``wts.h5.zip``); pickled payloads (``*.dill``) and unsafe Keras code only with trust.

Conventions
-----------
- ``read_card`` deserializes nothing: it reads the ``.keras`` archive's ``config.json``, the
  ``.h5`` file's ``model_config`` attribute, a SavedModel's ``saved_model.pb`` signature, and the
  weight files' dataset shapes (h5py metadata). It works when the custom classes are missing.
- ``loaded_from`` names the exact file that was read; a member of an archive is written
  ``ARCHIVE!/MEMBER`` (``.../wts.h5.zip!/diffraction_to_obj/model.keras``).
- ``fallback`` is not None whenever the file read is not the one the caller plainly named: a
  folder holding several models (which one was chosen, and why), an ``expected`` file that was
  absent (the incident: ``baseline_model.h5`` missing, a PINN bundle loaded in its place), or a
  bundle without the inference member ``diffraction_to_obj/model.keras``.
- A SavedModel cannot be loaded by Keras 3's ``load_model``. ``load_model`` wraps its serving
  signature in a ``keras.layers.TFSMLayer`` subclass inside a functional ``keras.Model`` whose
  inputs carry the signature's input names, so it is called like any Keras model (a dict keyed by
  input name, or a list in ``card.inputs`` order); several outputs come back as a list in
  ``card.outputs`` order (signature keys in natural order: output_0, output_1, ...).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import math
import re
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ptytui.core import tfload
from ptytui.errors import InputError, MissingDependency

KIND_KERAS = "keras"
KIND_H5 = "h5"
KIND_SAVEDMODEL = "savedmodel"
KIND_BUNDLE = "ptychopinn-bundle"

BUNDLE_ZIP = "wts.h5.zip"
BUNDLE_INFERENCE_MEMBER = "diffraction_to_obj"  # the model that maps diffraction to object patches
BUNDLE_PTYCHO_MODULES = ("ptycho.custom_layers", "ptycho.model", "ptycho.tf_helper")
PTYTUI_LAYERS_MODULE = "ptytui.networks.layers"

# Class names the card reports as the reassembly (translation) layer: where positions enter.
REASSEMBLY_CLASSES = ("ReassemblePatches", "ReassemblePatchesLayer", "Translation", "TranslationLayer")
# Config keys holding the padded canvas size P and the patch size N, ours first, PtychoPINN's next.
CANVAS_KEYS = ("canvas_size", "padded_size", "canvas")
PATCH_KEYS = ("patch_size", "N")
# Classes whose deserialization runs code stored in the file (Keras safe mode refuses them).
UNSAFE_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda")
MODEL_CLASSES = ("Functional", "Sequential", "Model")
INTENSITY_SCALE_CLASSES = ("IntensityScale", "IntensityScaler")
# Names that mark an input as the diffraction or the positions input (checked in this order).
DIFFRACTION_INPUT_NAMES = ("input", "diffraction", "diff", "input_diffraction", "diffraction_input", "x")
POSITIONS_INPUT_NAMES = ("input_positions", "positions", "position", "offsets", "input_offsets",
                         "coords", "coordinates")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MODEL_FOLDER_EXPECTED = ("a model file (.keras, .h5), a SavedModel folder (saved_model.pb) or a "
                         "PtychoPINN bundle (wts.h5.zip)")

# Shape rules for layers whose output spec the card must infer (terminal layers of Keras 3 configs,
# every layer of Keras 2 configs), so that custom classes need not be importable.
_SHAPE_PRESERVING = frozenset((
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "BatchNormalization",
    "LayerNormalization", "GroupNormalization", "UnitNormalization", "Identity", "Masking",
    "ActivationLayer", "CenterMaskLayer", "IntensityScaler", "IntensityScaler_inv", "IntensityScale",
    "SquareLayer", "ProbeIllumination", "ScaledTanh",
))
_ELEMENTWISE_MERGE = frozenset(("Add", "Multiply", "Subtract", "Average", "Maximum", "Minimum"))
_COMPLEX_COMBINE = frozenset(("CombineComplex", "CombineComplexLayer"))
_CROP_CLASSES = frozenset(("Cropping2D", "TrimReconstructionLayer", "CenterCrop"))


# --------------------------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------------------------


@dataclass
class CustomClass:
    """A class a model config refers to that is not part of Keras."""

    class_name: str
    module: str | None
    registered_name: str | None
    importable: bool = False

    @property
    def qualname(self) -> str:
        """``module.Class`` (or the registered name when the config records no module)."""
        if self.module:
            return f"{self.module}.{self.class_name}"
        return self.registered_name or self.class_name

    def describe(self) -> str:
        """``Class (module)``, as the missing-classes message lists them."""
        where = self.module or (self.registered_name.split(">")[0] if self.registered_name and ">" in self.registered_name else None)
        return f"{self.class_name} ({where})" if where else self.class_name

    def to_dict(self) -> dict:
        return {"class_name": self.class_name, "module": self.module,
                "registered_name": self.registered_name, "importable": self.importable}


@dataclass
class ReassemblyLayer:
    """The layer that places patches on the padded canvas by -offset and crops back."""

    path: str  # outer/inner/layer
    type: str
    canvas: int | None  # padded canvas size P (pixels)
    patch: int | None  # patch size N (pixels)
    gridsize: int | None = None
    inferred: bool = False  # canvas/patch read off the neighbouring layers' shapes, not the config

    def to_dict(self) -> dict:
        return {"path": self.path, "type": self.type, "canvas": self.canvas, "patch": self.patch,
                "gridsize": self.gridsize, "inferred": self.inferred}


@dataclass
class ModelCard:
    """What a saved model is, read from its files without deserializing anything.

    ``to_dict()`` has every key of ``ptytui card --json`` (CLI.md) plus ``gridsize``,
    ``warnings`` and a few details. Shapes are lists with ``None`` for the batch dimension.
    """

    path: str
    kind: str
    loaded_from: str
    fallback: str | None = None
    inputs: list[dict] = field(default_factory=list)  # [{name, shape, dtype}] in model order
    outputs: list[dict] = field(default_factory=list)
    takes_positions: bool = False
    layers: dict[str, int] = field(default_factory=dict)  # class name -> count, nested models included
    custom_classes: list[CustomClass] = field(default_factory=list)
    reassembly: list[ReassemblyLayer] = field(default_factory=list)
    intensity_scale: float | None = None
    parameters: int | None = None
    gridsize: int | None = None
    warnings: list[str] = field(default_factory=list)
    unsafe_layers: list[str] = field(default_factory=list)  # paths of Lambda-like layers
    keras_version: str | None = None
    params: dict | None = None  # a bundle's params.dill scalars (only read with trust)

    @property
    def missing_classes(self) -> list[str]:
        """Custom classes that could not be resolved when the card was read (``module.Class``)."""
        return [c.qualname for c in self.custom_classes if not c.importable]

    def missing_description(self) -> str:
        return ", ".join(c.describe() for c in self.custom_classes if not c.importable)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "loaded_from": self.loaded_from,
            "fallback": self.fallback,
            "inputs": [dict(spec) for spec in self.inputs],
            "outputs": [dict(spec) for spec in self.outputs],
            "takes_positions": self.takes_positions,
            "layers": dict(self.layers),
            "custom_classes": [c.qualname for c in self.custom_classes],
            "missing_classes": self.missing_classes,
            "reassembly": [r.to_dict() for r in self.reassembly],
            "intensity_scale": self.intensity_scale,
            "parameters": self.parameters,
            "gridsize": self.gridsize,
            "warnings": list(self.warnings),
            "custom_class_details": [c.to_dict() for c in self.custom_classes],
            "unsafe_layers": list(self.unsafe_layers),
            "keras_version": self.keras_version,
            "params": self.params,
        }


@dataclass
class LoadedModel:
    """A model ready to call, with the card it was loaded under.

    ``model`` is a Keras model (for a SavedModel, a functional wrapper around its serving
    signature). ``intensity_scale`` is the factor the diffraction amplitude is multiplied by before
    the model sees it (None when the model carries none). ``params`` holds a bundle's
    ``params.dill`` scalars when loaded with trust, per model (never a global config).
    """

    model: Any
    card: ModelCard
    intensity_scale: float | None
    kind: str
    loaded_from: str
    fallback: str | None
    params: dict | None = None


class MissingCustomClasses(InputError, MissingDependency):
    """The model refers to custom classes that are not importable (exit 2, one line)."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def read_card(path: str | Path, *, trust: bool = False,
              expected: Iterable[str | Path] | None = None) -> ModelCard:
    """Read a model's card without deserializing it.

    Parameters
    ----------
    path : str or Path
        A ``.keras`` / ``.h5`` file, a SavedModel folder, a PtychoPINN bundle (the folder holding
        ``wts.h5.zip``, the zip itself, or an unpacked bundle folder), or a folder holding models.
    trust : bool
        Also read a bundle's ``params.dill`` (pickle: runs code from the file). Needs ``dill``.
    expected : iterable of str or Path, optional
        File names (relative to ``path`` when it is a folder) the caller meant to read, in order of
        preference. When none exists and something else is read, ``card.fallback`` says so.

    Returns
    -------
    ModelCard

    Raises
    ------
    InputError
        The path is missing or holds no readable model (one line naming the file).
    MissingDependency
        ``trust`` asked for a pickle and ``dill`` is not installed.
    """
    source = _resolve(Path(path), expected)
    return _card_for_source(source, trust=trust)


def load_model(path: str | Path, *, trust: bool = False,
               expected: Iterable[str | Path] | None = None) -> LoadedModel:
    """Load a model for inference (``compile=False``), with its card.

    ptytui's own layers (``ptytui.networks.layers``) and, when installed, PtychoPINN's ``ptycho``
    layers are imported first so their classes resolve. Without ``trust`` nothing is unpickled and
    Keras safe mode stays on (Lambda layers are refused); with ``trust`` a bundle's
    ``custom_objects.dill`` / ``params.dill`` are read with dill and safe mode is off.

    Raises
    ------
    InputError
        Bad or unreadable file; ``MissingCustomClasses`` (also an InputError) when custom classes
        the model needs are not importable, naming them.
    MissingDependency
        TensorFlow, or (with trust) dill, is not installed.
    """
    source = _resolve(Path(path), expected)
    _import_ptytui_layers()
    _import_ptycho_best_effort()
    card = _card_for_source(source, trust=trust)
    where = card.loaded_from

    if card.unsafe_layers and not trust:
        raise InputError(where, "no layers that run code stored in the file (Keras safe mode)",
                         f"{len(card.unsafe_layers)} such layer(s): {', '.join(card.unsafe_layers[:5])}",
                         hint="re-run with --trust if you trust this file")

    custom_objects: dict | None = None
    if trust and source.kind == KIND_BUNDLE:
        custom_objects = _trusted_bundle_custom_objects(source)
    missing = [c for c in card.custom_classes if not c.importable
               and not (custom_objects and (c.class_name in custom_objects
                                            or (c.registered_name or "") in custom_objects))]
    if missing:
        raise MissingCustomClasses(where, "custom classes importable",
                                   "missing " + ", ".join(c.describe() for c in missing),
                                   hint=_missing_hint(missing))

    keras = tfload.keras()
    if source.kind == KIND_SAVEDMODEL:
        model = _load_savedmodel(source.file, card)
    else:
        model = _load_keras_file(keras, source, card, trust=trust, custom_objects=custom_objects)
    return LoadedModel(model=model, card=card, intensity_scale=card.intensity_scale, kind=card.kind,
                       loaded_from=card.loaded_from, fallback=card.fallback, params=card.params)


def input_roles(model_or_card: Any) -> dict[str, str | None]:
    """Which input is the diffraction input and which the positions input.

    By name first (``input`` / ``diffraction`` ...; ``input_positions`` / ``positions`` ...), then
    by shape: (None, 1, 2, C) is positions, the remaining 4-D input is diffraction. A single input
    is the diffraction input.

    Parameters
    ----------
    model_or_card : ModelCard, LoadedModel, dict (card.to_dict()) or Keras model

    Returns
    -------
    dict
        ``{"diffraction": name | None, "positions": name | None}``.
    """
    specs = _input_specs_of(model_or_card)
    names = [s["name"] for s in specs]
    roles: dict[str, str | None] = {"diffraction": None, "positions": None}
    lowered = {str(n).lower(): n for n in names}
    for candidate in POSITIONS_INPUT_NAMES:
        if candidate in lowered:
            roles["positions"] = lowered[candidate]
            break
    if roles["positions"] is None:
        for spec in specs:
            if _looks_like_positions(spec):
                roles["positions"] = spec["name"]
                break
    for candidate in DIFFRACTION_INPUT_NAMES:
        if candidate in lowered and lowered[candidate] != roles["positions"]:
            roles["diffraction"] = lowered[candidate]
            break
    if roles["diffraction"] is None:
        rest = [s for s in specs if s["name"] != roles["positions"]]
        four_d = [s for s in rest if s.get("shape") is not None and len(s["shape"]) == 4]
        if four_d:
            roles["diffraction"] = four_d[0]["name"]
        elif rest:
            roles["diffraction"] = rest[0]["name"]
    return roles


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


# --------------------------------------------------------------------------------------------
# Reading cards
# --------------------------------------------------------------------------------------------


def _card_for_source(source: _Source, *, trust: bool) -> ModelCard:
    try:
        if source.kind == KIND_KERAS:
            with open(source.file, "rb") as handle:
                card = _card_from_keras_archive(handle, where=str(source.file))
            _read_sibling_intensity_scale(source.file, card)
        elif source.kind == KIND_H5:
            card = _card_from_h5(source.file)
        elif source.kind == KIND_SAVEDMODEL:
            card = _card_from_savedmodel(source.file)
        else:
            card = _card_from_bundle(source, trust=trust)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # unreadable, or a corrupt member
        raise InputError(source.loaded_from, "a readable model file",
                         f"{type(exc).__name__}: {_first_line(exc)}") from None
    card.path = str(source.path)
    card.kind = source.kind
    card.loaded_from = source.loaded_from
    card.fallback = source.fallback
    _finish_card(card)
    return card


def _read_sibling_intensity_scale(file: Path, card: ModelCard) -> None:
    """A model.keras taken out of a PtychoPINN bundle keeps its scale in the model.h5 beside it."""
    sibling = file.with_name("model.h5")
    if card.intensity_scale is not None or file.name != "model.keras" or not sibling.is_file():
        return
    try:
        import h5py  # noqa: PLC0415

        with h5py.File(sibling, "r") as handle:
            if "intensity_scale" in handle.attrs and "model_config" not in handle.attrs:
                card.intensity_scale = float(handle.attrs["intensity_scale"])
                card.warnings.append(f"intensity_scale read from {sibling} (PtychoPINN bundle layout)")
    except Exception:  # noqa: BLE001 - a sibling we cannot read just leaves the scale unknown
        return


def _blank_card() -> ModelCard:
    return ModelCard(path="", kind="", loaded_from="")


def _card_from_keras_archive(fileobj, *, where: str) -> ModelCard:
    """Card of a .keras archive (a seekable binary file object): config.json + weight shapes."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(where, "a Keras 3 archive (.keras zip with config.json)",
                         f"not a readable zip ({type(exc).__name__}: {exc})") from None
    with archive:
        names = archive.namelist()
        if "config.json" not in names:
            raise InputError(where, "a Keras 3 archive with config.json", f"a zip holding {_short_list(names)}")
        try:
            raw = archive.read("config.json")
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{where} (config.json)", "a readable config.json",
                             f"{type(exc).__name__}: {exc}") from None
        config = _parse_json(raw, f"{where} (config.json)")
        card = _blank_card()
        _describe_model_config(config, card, where=f"{where} (config.json)")
        if "metadata.json" in names:
            with contextlib.suppress(Exception):
                card.keras_version = json.loads(archive.read("metadata.json")).get("keras_version")
        if "model.weights.h5" in names:
            try:
                with _open_member(archive, "model.weights.h5") as weights:
                    card.parameters = _count_h5_parameters(weights, skip_top=("optimizer",))
            except Exception as exc:  # noqa: BLE001 - the card stays useful without a count
                card.warnings.append(f"parameter count unavailable: model.weights.h5 unreadable "
                                     f"({type(exc).__name__})")
        else:
            card.warnings.append("parameter count unavailable: no model.weights.h5 in the archive "
                                 "(sharded weights?)")
    return card


def _parse_json(raw: bytes | str, where: str) -> dict:
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(where, "valid JSON", f"{type(exc).__name__}: {exc}") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise InputError(where, "a Keras model config (an object with class_name and config)",
                         f"JSON of type {type(config).__name__}"
                         + (f" with keys {_short_list(sorted(config))}" if isinstance(config, dict) else ""))
    return config


def _card_from_h5(file: Path) -> ModelCard:
    import h5py  # noqa: PLC0415

    try:
        handle = h5py.File(file, "r")
    except Exception as exc:  # noqa: BLE001
        raise InputError(file, "a readable HDF5 model file", f"{type(exc).__name__}: {exc}") from None
    with handle:
        if "model_config" not in handle.attrs:
            found = ("a weights-only file (layer groups but no model_config attribute)"
                     if len(handle.keys()) else "an HDF5 file without a model_config attribute")
            raise InputError(file, "a whole model saved with model.save (a model_config attribute)",
                             found, hint="a weights-only file needs the code that builds the model")
        raw = handle.attrs["model_config"]
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        config = _parse_json(str(raw), f"{file} (model_config)")
        card = _blank_card()
        version = handle.attrs.get("keras_version")
        card.keras_version = version.decode() if isinstance(version, bytes) else (str(version) if version is not None else None)
        _describe_model_config(config, card, where=f"{file} (model_config)")
        if "model_weights" in handle:
            card.parameters = _count_h5_parameters(handle["model_weights"])
        else:
            card.warnings.append("parameter count unavailable: no model_weights group")
    if card.keras_version and card.keras_version.startswith("2."):
        card.warnings.append(f"saved by Keras {card.keras_version}: loads through Keras 3's legacy H5 reader")
    return card


def _count_h5_parameters(source, skip_top: tuple[str, ...] = ()) -> int:
    """Sum of dataset sizes in an HDF5 file or group (shapes only; no array is read)."""
    import h5py  # noqa: PLC0415

    total = 0

    def visit(name, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset) and name.split("/")[0] not in skip_top:
            total += int(obj.size)

    if isinstance(source, h5py.Group):
        source.visititems(visit)
    else:
        with h5py.File(source, "r") as handle:
            handle.visititems(visit)
    return total


def _card_from_bundle(source: _Source, *, trust: bool) -> ModelCard:
    member = source.member
    assert member is not None
    model_dir = member.split("/")[0]
    with _bundle_reader(source.file) as bundle:
        with bundle.open(member) as fileobj:
            card = _card_from_keras_archive(fileobj, where=source.loaded_from)
        scale_member = f"{model_dir}/model.h5"
        if bundle.has(scale_member):
            try:
                import h5py  # noqa: PLC0415

                with bundle.open(scale_member) as fileobj, h5py.File(fileobj, "r") as h5:
                    if "intensity_scale" in h5.attrs:
                        card.intensity_scale = float(h5.attrs["intensity_scale"])
            except Exception as exc:  # noqa: BLE001 - the scale is a detail of the card
                card.warnings.append(f"{scale_member}: intensity_scale unreadable ({type(exc).__name__})")
        if card.intensity_scale is None:
            card.warnings.append(f"no intensity_scale attribute in {scale_member}: the diffraction "
                                 "input scale is unknown")
        pickles = [n for n in (f"{model_dir}/params.dill", f"{model_dir}/custom_objects.dill",
                               "manifest.dill") if bundle.has(n)]
        if trust and bundle.has(f"{model_dir}/params.dill"):
            params = _unpickle_trusted(bundle, f"{model_dir}/params.dill", source)
            card.params = _scalar_params(params)
        elif pickles:
            card.warnings.append(f"not read without --trust (pickles run code): {', '.join(pickles)}")
    if card.params:
        stored = card.params.get("intensity_scale")
        if isinstance(stored, (int, float)) and card.intensity_scale and not math.isclose(
                float(stored), card.intensity_scale, rel_tol=1e-4):
            card.warnings.append(f"params.dill intensity_scale {stored} differs from model.h5's "
                                 f"{card.intensity_scale}")
    return card


def _open_member(archive: zipfile.ZipFile, name: str):
    """A zip member as a file object that h5py and zipfile can seek in cheaply.

    A deflated member seeks backwards by decompressing again from the start, and both readers
    (zip: central directory at the end; HDF5: metadata anywhere) seek a lot, so deflated members
    are read into memory (bundle members are tens of MB at most); stored members stream.
    """
    if archive.getinfo(name).compress_type == zipfile.ZIP_STORED:
        return archive.open(name)
    with archive.open(name) as member:
        return io.BytesIO(member.read())


class _BundleReader:
    """Reads members of a bundle, packed (wts.h5.zip) or unpacked (a folder)."""

    def __init__(self, file: Path):
        self.file = file
        self.archive = None if file.is_dir() else zipfile.ZipFile(file)
        self.names = set(self.archive.namelist()) if self.archive else {
            str(p.relative_to(file)).replace("\\", "/") for p in file.rglob("*") if p.is_file()}

    def has(self, name: str) -> bool:
        return name in self.names

    def open(self, name: str):
        """A seekable binary file object for one member."""
        if self.archive is not None:
            return _open_member(self.archive, name)
        return open(self.file / name, "rb")

    def extract(self, name: str, dest: Path) -> Path:
        """Copy one member to ``dest`` (a file path in our private temp folder)."""
        with self.open(name) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
        return dest

    def close(self):
        if self.archive is not None:
            self.archive.close()


@contextlib.contextmanager
def _bundle_reader(file: Path) -> Iterator[_BundleReader]:
    try:
        reader = _BundleReader(file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(file, "a readable PtychoPINN bundle", f"{type(exc).__name__}: {exc}") from None
    try:
        yield reader
    finally:
        reader.close()


def _unpickle_trusted(bundle: _BundleReader, name: str, source: _Source):
    """Unpickle a bundle member with dill. Only ever called with trust."""
    try:
        import dill  # noqa: PLC0415
    except ImportError:
        raise MissingDependency(f"{source.file}: --trust asks to read {name}, which needs the 'dill' "
                                "package, not installed (pip install dill)") from None
    try:
        with bundle.open(name) as fileobj:
            return dill.load(fileobj)
    except Exception as exc:  # noqa: BLE001 - unpickling arbitrary payloads fails in any way
        raise InputError(f"{source.file}!/{name}", "a pickle that loads",
                         f"{type(exc).__name__}: {_first_line(exc)}",
                         hint="custom_objects.dill needs PtychoPINN's `ptycho` package importable") from None


def _scalar_params(params: Any) -> dict | None:
    if not isinstance(params, dict):
        return None
    kept = {}
    for key, value in params.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            kept[str(key)] = value
        elif hasattr(value, "item") and getattr(value, "size", 2) == 1:
            with contextlib.suppress(Exception):
                kept[str(key)] = value.item()
    return kept


def _trusted_bundle_custom_objects(source: _Source) -> dict | None:
    member_dir = (source.member or "").split("/")[0]
    name = f"{member_dir}/custom_objects.dill"
    with _bundle_reader(source.file) as bundle:
        if not bundle.has(name):
            return None
        objects = _unpickle_trusted(bundle, name, source)
    if not isinstance(objects, dict):
        raise InputError(f"{source.file}!/{name}", "a dict of custom objects", type(objects).__name__)
    return objects


def _card_from_savedmodel(folder: Path) -> ModelCard:
    """Card of a SavedModel from saved_model.pb (protobuf, no code) and the variables index."""
    tf = tfload.tf()
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: PLC0415

    pb_path = folder / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(pb_path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise InputError(pb_path, "a SavedModel protobuf", f"{type(exc).__name__}: {exc}") from None
    if not proto.meta_graphs:
        raise InputError(pb_path, "a SavedModel with a meta graph", "none")
    meta = proto.meta_graphs[0]
    signatures = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}
    if not signatures:
        raise InputError(pb_path, "a SavedModel with a serving signature", "no signatures")
    name = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    signature = signatures[name]
    card = _blank_card()
    argument_order = _savedmodel_argument_order(meta)

    def spec(key, info):
        shape = None if info.tensor_shape.unknown_rank else [
            None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
        return {"name": key, "shape": shape, "dtype": tf.dtypes.as_dtype(info.dtype).name}

    def input_order(key):
        # signatures take keyword arguments (no order); the model's order is that of the
        # exported call function's positional arguments when there is one
        return (argument_order.index(key) if key in argument_order else len(argument_order), key)

    card.inputs = [spec(k, signature.inputs[k]) for k in sorted(signature.inputs, key=input_order)]
    card.outputs = [spec(k, signature.outputs[k]) for k in sorted(signature.outputs, key=_natural_key)]
    card.warnings.append(f"SavedModel (signature '{name}'): no layer graph is stored, so layers, custom "
                         "classes and the reassembly layer cannot be read")
    try:
        reader = tf.train.load_checkpoint(str(folder / "variables" / "variables"))
        shapes = reader.get_variable_to_shape_map()
        values = {k: v for k, v in shapes.items() if k.endswith("/.ATTRIBUTES/VARIABLE_VALUE")}
        keras_exported = {k: v for k, v in values.items() if k.startswith("variables/")}
        chosen = keras_exported or {k: v for k, v in values.items()
                                    if "optimizer" not in k and "save_counter" not in k}
        card.parameters = int(sum(math.prod(v) for v in chosen.values()))
    except Exception as exc:  # noqa: BLE001 - no variables at all is a valid SavedModel
        card.warnings.append(f"parameter count unavailable ({type(exc).__name__})")
    return card


def _savedmodel_argument_order(meta) -> list[str]:
    """Input names in the positional order of the exported call function (Keras ``serve``)."""
    try:
        tf = tfload.tf()
        from tensorflow.python.saved_model import nested_structure_coder  # noqa: PLC0415

        graph = meta.object_graph_def
        root = graph.nodes[0]
        for child in root.children:
            node = graph.nodes[child.node_id]
            if child.local_name not in ("serve", "__call__", "call") or node.WhichOneof("kind") != "function":
                continue
            for name in node.function.concrete_functions:
                structure = nested_structure_coder.decode_proto(
                    graph.concrete_functions[name].canonicalized_input_signature)
                return [spec.name for spec in tf.nest.flatten(structure[0])
                        if isinstance(spec, tf.TensorSpec) and spec.name]
    except Exception:  # noqa: BLE001 - private API or another exporter: fall back to name order
        pass
    return []


def _natural_key(text: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _finish_card(card: ModelCard) -> None:
    """Derived fields: takes_positions, gridsize, missing-class warnings."""
    roles = input_roles(card)
    card.takes_positions = roles["positions"] is not None
    positions = next((s for s in card.inputs if s["name"] == roles["positions"]), None)
    if positions and positions.get("shape") and positions["shape"][-1] is not None:
        channels = int(positions["shape"][-1])
        root = math.isqrt(channels)
        if root * root == channels:
            card.gridsize = root
    if card.gridsize is None:
        stored = [r.gridsize for r in card.reassembly if r.gridsize]
        if stored:
            card.gridsize = int(stored[0])
    if card.takes_positions and not card.reassembly and card.kind != KIND_SAVEDMODEL:
        card.warnings.append("the model takes positions but no reassembly layer was recognized")
    if card.unsafe_layers:
        card.warnings.append(f"{len(card.unsafe_layers)} layer(s) run code stored in the file "
                             f"({', '.join(card.unsafe_layers[:3])}): loading needs --trust")
    if card.missing_classes:
        card.warnings.append(f"custom classes not importable: {card.missing_description()}")


# --------------------------------------------------------------------------------------------
# Walking a model config (no deserialization)
# --------------------------------------------------------------------------------------------

Spec = dict  # {"shape": list | None, "dtype": str | None}


class _ConfigWalk:
    """Accumulates what the card needs while walking (nested) model configs."""

    def __init__(self, card: ModelCard, where: str):
        self.card = card
        self.where = where
        self.counts: Counter = Counter()
        self.customs: dict[tuple, CustomClass] = {}
        self.scale_candidates: list[float] = []
        self._builtin_names: set[str] | None = None

    # -- classes ------------------------------------------------------------------------------
    def class_of(self, layer: dict) -> tuple[str, str | None, str | None]:
        class_name = str(layer.get("class_name", "?"))
        registered = layer.get("registered_name")
        if ">" in class_name:  # legacy serialization writes the registered name as class_name
            registered = registered or class_name
            class_name = class_name.split(">")[-1]
        return class_name, layer.get("module"), registered

    def is_custom(self, class_name: str, module: str | None, registered: str | None) -> bool:
        if module:
            return module.split(".")[0] != "keras"
        if registered and ">" in registered:
            return True
        if class_name in MODEL_CLASSES or class_name in UNSAFE_CLASSES or class_name == "InputLayer":
            return False
        return class_name not in self.builtin_names()

    def builtin_names(self) -> set[str]:
        if self._builtin_names is None:
            try:
                keras = tfload.keras()
                self._builtin_names = {n for n in dir(keras.layers) if not n.startswith("_")}
            except MissingDependency:
                self._builtin_names = set()
        return self._builtin_names

    def note_class(self, class_name: str, module: str | None, registered: str | None) -> None:
        self.counts[class_name] += 1
        if self.is_custom(class_name, module, registered):
            key = (module, class_name, registered)
            if key not in self.customs:
                self.customs[key] = CustomClass(class_name, module, registered)


def _describe_model_config(config: dict, card: ModelCard, *, where: str) -> None:
    """Fill the card from a whole-model config (Keras 3 .keras or legacy .h5 model_config)."""
    walk = _ConfigWalk(card, where)
    class_name, module, registered = walk.class_of(config)
    if class_name not in MODEL_CLASSES and not isinstance((config.get("config") or {}).get("layers"), list):
        # a subclassed model: the file holds its class and weights, not its graph
        walk.note_class(class_name, module, registered)
        card.custom_classes = [CustomClass(class_name, module, registered, _class_importable(
            CustomClass(class_name, module, registered)))] if walk.customs else []
        card.layers = dict(walk.counts)
        card.warnings.append(f"class {class_name!r} is a subclassed model: its layer graph is not in "
                             "the file, so inputs, outputs and layers are unknown until it is loaded")
        return
    try:
        inputs, outputs = _walk_model(config, walk, prefix="", outer_inputs=None)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed configs fail in many shapes
        raise InputError(where, "a well-formed Keras model config",
                         f"{type(exc).__name__}: {_first_line(exc)}") from None
    card.inputs = inputs
    card.outputs = outputs
    card.layers = dict(sorted(walk.counts.items(), key=lambda kv: (-kv[1], kv[0])))
    for custom in walk.customs.values():
        custom.importable = _class_importable(custom)
    card.custom_classes = sorted(walk.customs.values(), key=lambda c: (c.module or "", c.class_name))
    if walk.scale_candidates and card.intensity_scale is None:
        card.intensity_scale = walk.scale_candidates[0]
    if any(o.get("shape") is None for o in outputs):
        card.warnings.append("some output shapes are not recorded in the config and could not be inferred")


def _walk_model(config: dict, walk: _ConfigWalk, *, prefix: str,
                outer_inputs: list[Spec] | None) -> tuple[list[dict], list[dict]]:
    """Walk one (possibly nested) model; return its input and output specs (named)."""
    class_name, _, _ = walk.class_of(config)
    body = config.get("config", {})
    name = body.get("name") or class_name
    path = f"{prefix}/{name}" if prefix else name
    if class_name == "Sequential" or ("input_layers" not in body and "layers" in body):
        return _walk_sequential(body, walk, path, outer_inputs)
    return _walk_functional(body, walk, path)


def _input_layer_spec(layer_config: dict) -> Spec:
    shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
    if shape is None and layer_config.get("shape") is not None:
        shape = [None, *layer_config["shape"]]
    dtype = layer_config.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    return {"shape": list(shape) if shape is not None else None, "dtype": dtype or "float32"}


def _tensor_refs(node: Any) -> list[tuple[tuple[str, int, int], Spec | None]]:
    """Tensors a node consumes: Keras 3 dict nodes carry shapes, legacy list nodes only names."""
    refs: list[tuple[tuple[str, int, int], Spec | None]] = []

    def visit(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                cfg = value.get("config", {})
                history = cfg.get("keras_history") or [None, 0, 0]
                refs.append(((history[0], int(history[1]), int(history[2])),
                             {"shape": cfg.get("shape"), "dtype": cfg.get("dtype")}))
                return
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int) \
                    and isinstance(value[2], int):  # legacy [layer, node, tensor, kwargs]
                refs.append(((value[0], value[1], value[2]), None))
                return
            for item in value:
                visit(item)

    if isinstance(node, dict):
        visit(node.get("args", []))
        visit(node.get("kwargs", {}))
    else:
        visit(node)
    return refs


def _layer_refs(spec_list: Any) -> list[tuple[str, int, int]]:
    """input_layers / output_layers: one [name, node, tensor], a list of them, or a dict of them."""
    if isinstance(spec_list, dict):
        spec_list = list(spec_list.values())
    if not spec_list:
        return []
    if isinstance(spec_list[0], str):
        return [(spec_list[0], int(spec_list[1]), int(spec_list[2]))]
    return [(item[0], int(item[1]), int(item[2])) for item in spec_list]


def _walk_functional(body: dict, walk: _ConfigWalk, path: str) -> tuple[list[dict], list[dict]]:
    layers = body.get("layers", [])
    known: dict[tuple[str, int, int], Spec] = {}
    for layer in layers:  # consumers record the shapes of what they consume (Keras 3 configs)
        for node in layer.get("inbound_nodes", []) or []:
            for ref, spec in _tensor_refs(node):
                if spec is not None and ref not in known:
                    known[ref] = spec
    by_name = {layer.get("name") or layer.get("config", {}).get("name"): layer for layer in layers}

    def lookup(ref):
        # keras_history counts a nested model's own construction node (and other graphs' calls of
        # a shared layer), so node indices can be offset from this graph's inbound_nodes order:
        # fall back to the one spec recorded for that layer output, when there is only one.
        if ref in known:
            return known[ref]
        same = [spec for key, spec in known.items() if key[0] == ref[0] and key[2] == ref[2]]
        return same[0] if len(same) == 1 else None

    node_inputs: dict[str, list[tuple[tuple[str, int, int], Spec]]] = {}
    consumers: dict[str, list[str]] = {}
    for layer in layers:
        layer_name = layer.get("name") or layer.get("config", {}).get("name")
        class_name, module, registered = walk.class_of(layer)
        layer_path = f"{path}/{layer_name}"
        walk.note_class(class_name, module, registered)
        cfg = layer.get("config", {}) or {}
        if class_name == "InputLayer":
            known.setdefault((layer_name, 0, 0), _input_layer_spec(cfg))
            continue
        nodes = layer.get("inbound_nodes", []) or []
        if nodes and not isinstance(nodes[0], dict) and isinstance(nodes[0], list) and nodes[0] \
                and isinstance(nodes[0][0], str):
            nodes = [nodes]  # a legacy single node written flat
        nested_outputs = None
        for node_index, node in enumerate(nodes):
            refs = _tensor_refs(node)
            in_specs = [spec if spec is not None else (lookup(ref) or {"shape": None, "dtype": None})
                        for ref, spec in refs]
            for ref, _ in refs:
                consumers.setdefault(ref[0], []).append(layer_name)
            if node_index == 0:
                node_inputs[layer_name] = list(zip([r for r, _ in refs], in_specs))
            if _is_nested_model(layer):
                if nested_outputs is None:  # walk (and count) a shared nested model once
                    _, nested_outputs = _walk_model(layer, walk, prefix=path, outer_inputs=in_specs)
                for i, out in enumerate(nested_outputs):
                    known.setdefault((layer_name, node_index, i), {"shape": out["shape"], "dtype": out["dtype"]})
                continue
            if not any(key[0] == layer_name and key[1] == node_index for key in known):
                known[(layer_name, node_index, 0)] = _infer_output_spec(layer, class_name, module, in_specs, walk)
        if not nodes and _is_nested_model(layer):
            _walk_model(layer, walk, prefix=path, outer_inputs=None)
        _note_layer_details(layer, class_name, layer_path, walk)

    for layer in layers:  # reassembly layers need their neighbours' shapes
        class_name, _, _ = walk.class_of(layer)
        if class_name in REASSEMBLY_CLASSES:
            layer_name = layer.get("name") or layer.get("config", {}).get("name")
            _note_reassembly(layer, class_name, f"{path}/{layer_name}", walk,
                             inputs=node_inputs.get(layer_name, []),
                             output=lookup((layer_name, 0, 0)),
                             producer=lambda ref: by_name.get(ref[0]),
                             producer_inputs=lambda name: [s for _, s in node_inputs.get(name, [])],
                             consumer_outputs=[(by_name.get(c), lookup((c, 0, 0)))
                                               for c in consumers.get(layer_name, [])])

    def named(refs):
        out = []
        for ref in refs:
            spec = lookup(ref) or {"shape": None, "dtype": None}
            out.append({"name": ref[0], "shape": spec.get("shape"), "dtype": spec.get("dtype")})
        return out

    return named(_layer_refs(body.get("input_layers"))), named(_layer_refs(body.get("output_layers")))


def _walk_sequential(body: dict, walk: _ConfigWalk, path: str,
                     outer_inputs: list[Spec] | None) -> tuple[list[dict], list[dict]]:
    layers = body.get("layers", [])
    spec: Spec = {"shape": None, "dtype": None}
    input_name = f"{body.get('name', 'sequential')}_input"
    if outer_inputs:
        spec = dict(outer_inputs[0])
    elif body.get("build_input_shape") is not None:
        spec = {"shape": list(body["build_input_shape"]), "dtype": "float32"}
    input_spec = None
    previous = None
    pending_reassembly = []
    for index, layer in enumerate(layers):
        layer_name = layer.get("name") or layer.get("config", {}).get("name") or f"layer_{index}"
        class_name, module, registered = walk.class_of(layer)
        walk.note_class(class_name, module, registered)
        cfg = layer.get("config", {}) or {}
        if class_name == "InputLayer":
            spec = _input_layer_spec(cfg)
            input_name = cfg.get("name", input_name)
            input_spec = dict(spec)
            continue
        if input_spec is None:
            if spec.get("shape") is None and cfg.get("batch_input_shape"):
                spec = _input_layer_spec(cfg)
            input_spec = dict(spec)
        in_spec = spec
        if _is_nested_model(layer):
            _, nested_outputs = _walk_model(layer, walk, prefix=path, outer_inputs=[spec])
            spec = {"shape": nested_outputs[0]["shape"], "dtype": nested_outputs[0]["dtype"]} \
                if nested_outputs else {"shape": None, "dtype": None}
        else:
            spec = _infer_output_spec(layer, class_name, module, [spec], walk)
        layer_path = f"{path}/{layer_name}"
        _note_layer_details(layer, class_name, layer_path, walk)
        if class_name in REASSEMBLY_CLASSES:
            pending_reassembly.append((index, layer, class_name, layer_path, in_spec, spec, previous))
        previous = (layer, in_spec)
    for index, layer, class_name, layer_path, in_spec, out_spec, prev in pending_reassembly:
        nxt = layers[index + 1] if index + 1 < len(layers) else None
        _note_reassembly(layer, class_name, layer_path, walk, inputs=[(("", 0, 0), in_spec)],
                         output=out_spec, producer=lambda ref, prev=prev: prev[0] if prev else None,
                         producer_inputs=lambda name, prev=prev: [prev[1]] if prev else [],
                         consumer_outputs=[(nxt, None)] if nxt is not None else [])
    spec_in = input_spec or {"shape": None, "dtype": None}
    # Keras names a Sequential model's output after its last layer
    last = [layer for layer in layers if walk.class_of(layer)[0] != "InputLayer"]
    output_name = ((last[-1].get("name") or last[-1].get("config", {}).get("name")) if last else None) \
        or body.get("name", "sequential")
    return ([{"name": input_name, "shape": spec_in.get("shape"), "dtype": spec_in.get("dtype")}],
            [{"name": output_name, "shape": spec.get("shape"), "dtype": spec.get("dtype")}])


def _is_nested_model(layer: dict) -> bool:
    cfg = layer.get("config", {}) or {}
    return isinstance(cfg, dict) and isinstance(cfg.get("layers"), list)


def _note_layer_details(layer: dict, class_name: str, layer_path: str, walk: _ConfigWalk) -> None:
    cfg = layer.get("config", {}) or {}
    if class_name in UNSAFE_CLASSES:
        walk.card.unsafe_layers.append(layer_path)
    if class_name in INTENSITY_SCALE_CLASSES:
        for key in ("intensity_scale", "scale"):
            value = cfg.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                walk.scale_candidates.append(float(value))
                break


def _spatial(spec: Spec | None) -> int | None:
    shape = (spec or {}).get("shape")
    if shape and len(shape) == 4 and isinstance(shape[1], int):
        return int(shape[1])
    return None


def _note_reassembly(layer, class_name, layer_path, walk, *, inputs, output, producer,
                     producer_inputs, consumer_outputs) -> None:
    cfg = layer.get("config", {}) or {}
    canvas = next((int(cfg[k]) for k in CANVAS_KEYS if isinstance(cfg.get(k), (int, float))), None)
    patch = next((int(cfg[k]) for k in PATCH_KEYS if isinstance(cfg.get(k), (int, float))), None)
    gridsize = cfg.get("gridsize") if isinstance(cfg.get("gridsize"), int) else None
    inferred = False
    if canvas is None or patch is None:
        # Infer from the shapes around it: a ZeroPadding2D before it pads N -> P; a crop after it
        # brings P back to N; its own input and output shapes bracket the two sizes.
        sizes = []
        first_in = inputs[0][1] if inputs else None
        in_h, out_h = _spatial(first_in), _spatial(output)
        sizes += [s for s in (in_h, out_h) if s]
        upstream = producer(inputs[0][0]) if inputs else None
        patch_candidates = [s for s in (in_h, out_h) if s]
        if upstream is not None and walk.class_of(upstream)[0] == "ZeroPadding2D":
            up_in = producer_inputs(upstream.get("name") or upstream.get("config", {}).get("name"))
            if up_in and _spatial(up_in[0]):
                patch_candidates.append(_spatial(up_in[0]))
        for consumer, consumer_out in consumer_outputs:
            if consumer is None:
                continue
            consumer_class = walk.class_of(consumer)[0]
            ccfg = consumer.get("config", {}) or {}
            if consumer_class in _CROP_CLASSES:
                crop_h = _spatial(consumer_out)
                if crop_h is None and isinstance(ccfg.get("output_size"), int):
                    crop_h = ccfg["output_size"]
                if crop_h:
                    patch_candidates.append(crop_h)
        if canvas is None and sizes:
            canvas = max(sizes)
            inferred = True
        if patch is None and patch_candidates:
            patch = min(patch_candidates)
            inferred = True
        if canvas is not None and patch is not None and canvas == patch:
            walk.card.warnings.append(f"{layer_path}: canvas and patch sizes could not be told apart "
                                      "from the neighbouring shapes")
    walk.card.reassembly.append(ReassemblyLayer(layer_path, class_name, canvas, patch, gridsize, inferred))


def _first_shape(specs: list[Spec]) -> list | None:
    return specs[0].get("shape") if specs else None


def _infer_output_spec(layer: dict, class_name: str, module: str | None, in_specs: list[Spec],
                       walk: _ConfigWalk) -> Spec:
    """Output spec of a layer from rules, else from Keras for built-in classes (config only)."""
    cfg = layer.get("config", {}) or {}
    shape = _first_shape(in_specs)
    dtype = in_specs[0].get("dtype") if in_specs else None
    if shape is None:
        return {"shape": None, "dtype": dtype}
    if class_name in _SHAPE_PRESERVING or class_name in _ELEMENTWISE_MERGE:
        return {"shape": list(shape), "dtype": dtype}
    if class_name in _COMPLEX_COMBINE:
        return {"shape": list(shape), "dtype": "complex64"}
    if class_name == "FFTAmplitude":
        return {"shape": list(shape), "dtype": "float32"}
    if class_name == "ExtractPatches" and isinstance(cfg.get("patch_size"), int) and len(in_specs) > 1:
        n, offsets = cfg["patch_size"], in_specs[1].get("shape")
        channels = offsets[-1] if offsets else None
        return {"shape": [shape[0], n, n, channels], "dtype": "complex64"}
    if class_name == "TrimReconstructionLayer" and isinstance(cfg.get("output_size"), int) and len(shape) == 4:
        n = cfg["output_size"]
        return {"shape": [shape[0], n, n, shape[3]], "dtype": dtype}
    if class_name in REASSEMBLY_CLASSES and len(shape) == 4:
        if class_name == "ReassemblePatches" and isinstance(cfg.get("patch_size"), int):
            n = cfg["patch_size"] if cfg.get("crop", True) else cfg.get("canvas_size", cfg["patch_size"])
        elif class_name == "ReassemblePatchesLayer" and isinstance(cfg.get("padded_size"), int):
            n = cfg["padded_size"]  # PtychoPINN's layer returns the padded canvas; a trim follows
        else:
            n = shape[1]
        return {"shape": [shape[0], n, n, 1], "dtype": "complex64"}
    if walk.is_custom(class_name, module, walk.class_of(layer)[2]) or class_name in UNSAFE_CLASSES:
        return {"shape": None, "dtype": None}
    return _keras_output_spec(layer, in_specs)


def _keras_output_spec(layer: dict, in_specs: list[Spec]) -> Spec:
    """Ask Keras for a built-in layer's output spec (safe mode; no custom or Lambda classes)."""
    try:
        keras = tfload.keras()
        from keras.src.saving import serialization_lib  # noqa: PLC0415

        class_name = str(layer.get("class_name"))
        builtin = getattr(keras.layers, class_name, None)
        with serialization_lib.SafeModeScope(True):
            if isinstance(builtin, type):  # works for legacy configs, which carry no module
                instance = builtin.from_config(dict(layer.get("config") or {}))
            else:  # keras.ops layers (GetItem, ...) are found through their module
                config = {k: layer[k] for k in ("module", "class_name", "config", "registered_name") if k in layer}
                instance = keras.layers.deserialize(config)
        tensors = [keras.KerasTensor(tuple(s["shape"]), dtype=s.get("dtype") or "float32") for s in in_specs]
        argument = tensors[0] if len(tensors) == 1 else tensors
        out = instance.compute_output_spec(argument)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return {"shape": [None if d is None else int(d) for d in out.shape], "dtype": str(out.dtype)}
    except Exception:  # noqa: BLE001 - inference is best effort; the card says what is unknown
        return {"shape": None, "dtype": None}


# --------------------------------------------------------------------------------------------
# Custom classes: can they be resolved now?
# --------------------------------------------------------------------------------------------


def _import_ptytui_layers() -> bool:
    """Register ptytui's own layers (``ptytui>...``) if that module exists."""
    try:
        importlib.import_module(PTYTUI_LAYERS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != PTYTUI_LAYERS_MODULE:
            raise
        return False
    return True


def _ptycho_installed() -> bool:
    try:
        return importlib.util.find_spec("ptycho") is not None
    except (ImportError, ValueError):
        return False


# Why importing a module of the ptycho package failed (module -> one line), for the hint.
_PTYCHO_IMPORT_ERRORS: dict[str, str] = {}


def _import_ptycho_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - its import-time code may fail in any way
        _PTYCHO_IMPORT_ERRORS[name] = f"{type(exc).__name__}: {_first_line(exc, 160)}"
        return None


def _import_ptycho_best_effort() -> list[str]:
    """Import PtychoPINN's layer modules (they register their classes); return what failed."""
    if not _ptycho_installed():
        return list(BUNDLE_PTYCHO_MODULES)
    return [name for name in BUNDLE_PTYCHO_MODULES if _import_ptycho_module(name) is None]


def _class_importable(custom: CustomClass) -> bool:
    """Whether Keras can resolve the class now. Imports only ptytui's and ptycho's modules:
    a config must not make us import arbitrary installed modules (that runs their code)."""
    module = custom.module
    top = (module or (custom.registered_name or "").split(">")[0] or "").split(".")[0]
    if top == "ptytui":
        _import_ptytui_layers()
        if module and module in sys.modules and hasattr(sys.modules[module], custom.class_name):
            return True
        return _registered(custom)
    if top == "ptycho":
        if not _ptycho_installed():
            return False
        imported = _import_ptycho_module(module) if module else None
        return (imported is not None and hasattr(imported, custom.class_name)) or _registered(custom)
    if module and module in sys.modules and hasattr(sys.modules[module], custom.class_name):
        return True
    return _registered(custom)


def _registered(custom: CustomClass) -> bool:
    if not tfload.is_loaded() and "keras" not in sys.modules:
        return False  # nothing can be registered with Keras before Keras is imported
    try:
        keras = tfload.keras()
        for name in {custom.registered_name, custom.class_name} - {None}:
            if keras.saving.get_registered_object(name) is not None:
                return True
    except Exception:  # noqa: BLE001
        return False
    return False


def _missing_hint(missing: list[CustomClass]) -> str:
    tops = {(c.module or (c.registered_name or "").split(">")[0]).split(".")[0] for c in missing}
    hints = []
    if "ptycho" in tops:
        failures = [f"{name}: {_PTYCHO_IMPORT_ERRORS[name]}" for name in sorted(_PTYCHO_IMPORT_ERRORS)]
        if _ptycho_installed() and failures:
            hints.append("PtychoPINN's `ptycho` is installed but importing it failed (" + "; ".join(failures) + ")")
        else:
            hints.append("install PtychoPINN's `ptycho` package")
    if "ptytui" in tops:
        hints.append("this ptytui does not define them: upgrade ptytui")
    if tops - {"ptycho", "ptytui"}:
        hints.append("import or register the module that defines them")
    return "; ".join(hints)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _load_keras_file(keras, source: _Source, card: ModelCard, *, trust: bool,
                     custom_objects: dict | None):
    """Load a .keras / .h5 file (or a bundle member) with Keras; archives go to a private temp dir."""
    suffix = ".h5" if source.kind == KIND_H5 else ".keras"
    with tempfile.TemporaryDirectory(prefix="ptytui-model-") as private:
        if source.kind == KIND_BUNDLE:
            with _bundle_reader(source.file) as bundle:
                file = bundle.extract(source.member, Path(private) / "model.keras")
        elif source.file.suffix.lower() in ((".h5", ".hdf5") if suffix == ".h5" else (".keras",)):
            file = source.file
        else:  # Keras picks the reader by suffix: give it a correctly named link to the file
            file = Path(private) / f"model{suffix}"
            try:
                file.symlink_to(source.file)
            except OSError:
                shutil.copyfile(source.file, file)
        try:
            with _quiet_keras():
                return keras.saving.load_model(str(file), compile=False, safe_mode=not trust,
                                               custom_objects=custom_objects)
        except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
            message = _first_line(exc)
            hint = None
            if "safe_mode" in message or "unsafe" in message.lower():
                hint = "re-run with --trust if you trust this file"
            elif "Could not locate" in message:
                hint = "a custom class is missing; see 'ptytui card'"
            raise InputError(card.loaded_from, "a model Keras can load",
                             f"{type(exc).__name__}: {message}", hint=hint) from None


@contextlib.contextmanager
def _quiet_keras():
    """Keras prints legacy-format notices through absl/warnings; keep stdout for results."""
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


_SIGNATURE_LAYER_CLASS = None


def _signature_layer_class():
    """A TFSMLayer that calls a serving signature with keyword arguments (input names)."""
    global _SIGNATURE_LAYER_CLASS
    if _SIGNATURE_LAYER_CLASS is not None:
        return _SIGNATURE_LAYER_CLASS
    keras = tfload.keras()

    class SavedModelSignatureLayer(keras.layers.TFSMLayer):
        """Calls ``signature(**{input_name: tensor})``; returns outputs in natural key order."""

        def __init__(self, filepath, input_names, output_names, **kwargs):
            super().__init__(filepath, call_endpoint=kwargs.pop("call_endpoint", "serving_default"), **kwargs)
            self.signature_input_names = list(input_names)
            self.signature_output_names = list(output_names)

        def call(self, inputs, training=False, **kwargs):
            if isinstance(inputs, dict):
                feed = dict(inputs)
            elif isinstance(inputs, (list, tuple)):
                feed = dict(zip(self.signature_input_names, inputs))
            else:
                feed = {self.signature_input_names[0]: inputs}
            result = self.call_endpoint_fn(**feed)
            if isinstance(result, dict):
                outputs = [result[name] for name in self.signature_output_names]
                return outputs[0] if len(outputs) == 1 else outputs
            return result

    _SIGNATURE_LAYER_CLASS = SavedModelSignatureLayer
    return _SIGNATURE_LAYER_CLASS


def _load_savedmodel(folder: Path, card: ModelCard):
    keras = tfload.keras()
    layer_cls = _signature_layer_class()
    input_names = [spec["name"] for spec in card.inputs]
    output_names = [spec["name"] for spec in card.outputs]
    try:
        with _quiet_keras():
            layer = layer_cls(str(folder), input_names, output_names, name="saved_model")
            inputs = [keras.Input(shape=tuple(spec["shape"][1:]), dtype=spec["dtype"], name=spec["name"])
                      for spec in card.inputs]
            outputs = layer(inputs if len(inputs) > 1 else inputs[0])
            return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs,
                               name=folder.name or "saved_model")
    except Exception as exc:  # noqa: BLE001
        raise InputError(folder, "a SavedModel with a callable serving signature",
                         f"{type(exc).__name__}: {_first_line(exc)}") from None


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_like_positions(spec: dict) -> bool:
    shape = spec.get("shape")
    return bool(shape) and len(shape) == 4 and shape[1] == 1 and shape[2] == 2


def _input_specs_of(thing: Any) -> list[dict]:
    if isinstance(thing, ModelCard):
        return thing.inputs
    if isinstance(thing, LoadedModel):
        return thing.card.inputs
    if isinstance(thing, dict) and "inputs" in thing:
        return thing["inputs"]
    inputs = getattr(thing, "inputs", None)
    if inputs is None:
        raise TypeError(f"input_roles: expected a ModelCard, LoadedModel or Keras model, got {type(thing).__name__}")
    specs = []
    for tensor in inputs:
        name = getattr(tensor, "name", None)
        name = name.split(":")[0] if isinstance(name, str) else name
        shape = getattr(tensor, "shape", None)
        specs.append({"name": name, "shape": list(shape) if shape is not None else None,
                      "dtype": str(getattr(tensor, "dtype", None))})
    return specs
