"""Keras 3 archives, legacy HDF5 model files and SavedModel folders: their cards (read without
deserializing) and their loading.

A SavedModel cannot be loaded by Keras 3's ``load_model``: it is wrapped in a
``keras.layers.TFSMLayer`` subclass inside a functional ``keras.Model`` (see the package
docstring).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from ptytui.core import tfload
from ptytui.errors import InputError
from ptytui.inputs.models.card import KIND_H5, ModelCard, _first_line
from ptytui.inputs.models.sources import _short_list, _Source
from ptytui.inputs.models.walk import _describe_model_config
from ptytui.inputs.ptychopinn import innermost_cause


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


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _load_keras_file(keras, source: _Source, card: ModelCard, *, trust: bool,
                     custom_objects: dict | None):
    """Load a .keras / .h5 file with Keras (Keras picks the reader by suffix)."""
    suffix = ".h5" if source.kind == KIND_H5 else ".keras"
    with tempfile.TemporaryDirectory(prefix="ptytui-model-") as private:
        if source.file.suffix.lower() in ((".h5", ".hdf5") if suffix == ".h5" else (".keras",)):
            file = source.file
        else:  # give Keras a correctly named link to the file
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
            raise load_error(card, exc) from None


def load_error(card: ModelCard, exc: BaseException) -> InputError:
    """One line for a model Keras could not load: the innermost cause in plain words."""
    cause = innermost_cause(exc)
    message = _first_line(exc)
    hint = None
    if "safe_mode" in message or "unsafe" in message.lower():
        hint = "re-run with --trust if you trust this file"
    elif "Could not locate" in message:
        hint = "a custom class is missing; see 'ptytui card'"
    found = f"{type(cause).__name__}: {_first_line(cause)}"
    if cause is not exc:
        found = f"{found} (while Keras deserialized the model: {type(exc).__name__})"
    return InputError(card.loaded_from, "a model Keras can load", found, hint=hint)


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
