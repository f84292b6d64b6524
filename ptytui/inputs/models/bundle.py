"""PtychoPINN bundles (``wts.h5.zip``, or the folder it unpacks to): their cards and loading.

A bundle holds ``diffraction_to_obj/`` (the inference model) and ``autoencoder/``, each with
``model.keras``, ``model.h5`` (only an ``intensity_scale`` attribute), ``params.dill`` (PtychoPINN's
whole configuration) and ``custom_objects.dill``; the pickles are read only with trust.
Loading follows PtychoPINN's own loader per bundle (see ``ptytui.inputs.ptychopinn``).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from ptytui.errors import InputError, MissingDependency
from ptytui.inputs import ptychopinn
from ptytui.inputs.models.card import MissingCustomClasses, ModelCard, _first_line
from ptytui.inputs.models.classes import missing_hint, ptycho_custom_objects, top_package
from ptytui.inputs.models.formats import _card_from_keras_archive, _open_member, load_error
from ptytui.inputs.models.sources import _Source
from ptytui.inputs.ptychopinn import card_parameters

TRUST_HINT = "re-run with --trust if you trust this file"


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
            card.training = card_parameters(card.params or {})
        elif pickles:
            card.warnings.append(f"not read without --trust (pickles run code): {', '.join(pickles)}")
    if card.params:
        stored = card.params.get("intensity_scale")
        if isinstance(stored, (int, float)) and card.intensity_scale and not math.isclose(
                float(stored), card.intensity_scale, rel_tol=1e-4):
            card.warnings.append(f"params.dill intensity_scale {stored} differs from model.h5's "
                                 f"{card.intensity_scale}")
    return card


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


def load_bundle(source: _Source, card: ModelCard, *, trust: bool):
    """Load a bundle's model member as PtychoPINN's loader would, under its own configuration.

    With trust, ``params.dill`` becomes the model's PtychoPINN configuration (applied while it is
    built and whenever its layers run) and ``custom_objects.dill`` adds its classes; without,
    every class ``config.json`` names is taken from the installed ``ptycho`` package. Returns
    the Keras model; raises ``MissingCustomClasses`` or ``InputError`` (one line).
    """
    model_dir = (source.member or "").split("/")[0]
    custom_objects, _ = ptycho_custom_objects(card.custom_classes)
    params = None
    with _bundle_reader(source.file) as bundle:
        has_params = bundle.has(f"{model_dir}/params.dill")
        if trust and has_params:
            params = _unpickle_trusted(bundle, f"{model_dir}/params.dill", source)
        if trust and bundle.has(f"{model_dir}/custom_objects.dill"):
            pickled = _unpickle_trusted(bundle, f"{model_dir}/custom_objects.dill", source)
            if not isinstance(pickled, dict):
                raise InputError(f"{source.file}!/{model_dir}/custom_objects.dill", "a dict of custom objects",
                                 type(pickled).__name__)
            custom_objects = {**pickled, **custom_objects}
    _check_classes(card, custom_objects)
    uses_ptycho = any(top_package(c) == "ptycho" for c in card.custom_classes)
    configuration = ptychopinn.BundleConfiguration(params if isinstance(params, dict) else None) \
        if uses_ptycho else None
    with tempfile.TemporaryDirectory(prefix="ptytui-model-") as private:
        with _bundle_reader(source.file) as bundle:
            file = bundle.extract(source.member, Path(private) / "model.keras")
        try:
            if configuration is None:
                from ptytui.core import tfload  # noqa: PLC0415 - TensorFlow is imported lazily

                return tfload.keras().saving.load_model(str(file), compile=False, safe_mode=not trust,
                                                        custom_objects=custom_objects or None)
            return ptychopinn.load_keras_archive(file, custom_objects=custom_objects,
                                                 configuration=configuration, trust=trust)
        except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
            raise _bundle_load_error(card, exc, model_dir, trust=trust, has_params=has_params,
                                     params=params) from None


def _check_classes(card: ModelCard, custom_objects: dict) -> None:
    """Every custom class resolvable before Keras runs (Keras would first hit a layer's missing
    configuration, masking a missing class)."""
    missing = [c for c in card.custom_classes
               if not (c.class_name in custom_objects or (c.registered_name or "") in custom_objects)
               and not (c.importable and top_package(c) != "ptycho")]
    if missing:
        raise MissingCustomClasses(card.loaded_from, "custom classes importable",
                                   "missing " + ", ".join(c.describe() for c in missing),
                                   hint=missing_hint(missing))


def _bundle_load_error(card: ModelCard, exc: BaseException, model_dir: str, *, trust: bool,
                       has_params: bool, params: Any) -> InputError:
    """A layer that looked up its PtychoPINN configuration and found nothing needs params.dill:
    without trust, say so and name --trust; else the innermost cause in plain words."""
    known = params if isinstance(params, dict) else {}
    key = ptychopinn.missing_configuration_key(exc, known)
    if key is not None and not trust and has_params:
        return InputError(card.loaded_from, "PtychoPINN layers built with the bundle's configuration",
                          f"'{key}' is not in PtychoPINN's defaults; it is in {model_dir}/params.dill, "
                          "a pickle, read only with --trust", hint=TRUST_HINT)
    if key is not None:
        return InputError(card.loaded_from, "PtychoPINN layers built with the bundle's configuration",
                          f"the configuration has no '{key}'"
                          + ("" if has_params else f" and the bundle has no {model_dir}/params.dill"))
    return load_error(card, exc)
