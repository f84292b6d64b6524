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

import zipfile
import zlib
from pathlib import Path
from typing import Iterable

from ptytui.core import tfload
from ptytui.errors import InputError
from ptytui.inputs.models.bundle import _card_from_bundle, load_bundle
from ptytui.inputs.models.card import (
    BUNDLE_INFERENCE_MEMBER,
    BUNDLE_ZIP,
    KIND_BUNDLE,
    KIND_H5,
    KIND_KERAS,
    KIND_SAVEDMODEL,
    REASSEMBLY_CLASSES,
    CustomClass,
    LoadedModel,
    MissingCustomClasses,
    ModelCard,
    ReassemblyLayer,
    _finish_card,
    _first_line,
    input_roles,
)
from ptytui.inputs.models.classes import import_ptytui_layers, missing_hint, ptycho_custom_objects, top_package
from ptytui.inputs.models.formats import (
    _card_from_h5,
    _card_from_keras_archive,
    _card_from_savedmodel,
    _load_keras_file,
    _load_savedmodel,
    _read_sibling_intensity_scale,
)
from ptytui.inputs.models.sources import _resolve, _Source

__all__ = ["BUNDLE_INFERENCE_MEMBER", "BUNDLE_ZIP", "KIND_BUNDLE", "KIND_H5", "KIND_KERAS",
           "KIND_SAVEDMODEL", "REASSEMBLY_CLASSES", "CustomClass", "LoadedModel", "MissingCustomClasses",
           "ModelCard", "ReassemblyLayer", "input_roles", "load_model", "read_card"]


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

    ptytui's own layers (``ptytui.networks.layers``) are imported first so their classes
    resolve; classes from PtychoPINN's ``ptycho`` are passed to Keras (imported quietly, only
    when the model names them). Without ``trust`` nothing is unpickled and Keras safe mode stays
    on (Lambda layers are refused); with ``trust`` a bundle's ``params.dill`` becomes its
    PtychoPINN configuration and ``custom_objects.dill`` adds its classes (see ``bundle``).

    Raises
    ------
    InputError
        Bad or unreadable file, or a model Keras cannot build (the innermost cause, in one
        line); ``MissingCustomClasses`` (also an InputError) when custom classes the model needs
        are not importable, naming them.
    MissingDependency
        TensorFlow, or (with trust) dill, is not installed.
    """
    source = _resolve(Path(path), expected)
    import_ptytui_layers()
    card = _card_for_source(source, trust=trust)
    where = card.loaded_from
    if card.unsafe_layers and not trust:
        raise InputError(where, "no layers that run code stored in the file (Keras safe mode)",
                         f"{len(card.unsafe_layers)} such layer(s): {', '.join(card.unsafe_layers[:5])}",
                         hint="re-run with --trust if you trust this file")
    keras = tfload.keras()
    if source.kind == KIND_BUNDLE:
        model = load_bundle(source, card, trust=trust)
    elif source.kind == KIND_SAVEDMODEL:
        _check_importable(card, {}, ptycho_imported=False)
        model = _load_savedmodel(source.file, card)
    else:
        custom_objects, _ = ptycho_custom_objects(card.custom_classes)
        _check_importable(card, custom_objects)
        model = _load_keras_file(keras, source, card, trust=trust, custom_objects=custom_objects or None)
    return LoadedModel(model=model, card=card, intensity_scale=card.intensity_scale, kind=card.kind,
                       loaded_from=card.loaded_from, fallback=card.fallback, params=card.params)


def _check_importable(card: ModelCard, custom_objects: dict, *, ptycho_imported: bool = True) -> None:
    """Every custom class resolvable; with ``ptycho_imported`` a ``ptycho`` class counts only
    when its import succeeded (``custom_objects``): the card judged it from its source alone."""
    missing = [c for c in card.custom_classes
               if not (c.class_name in custom_objects or (c.registered_name or "") in custom_objects)
               and not (c.importable and not (ptycho_imported and top_package(c) == "ptycho"))]
    if missing:
        raise MissingCustomClasses(card.loaded_from, "custom classes importable",
                                   "missing " + ", ".join(c.describe() for c in missing),
                                   hint=missing_hint(missing))


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
